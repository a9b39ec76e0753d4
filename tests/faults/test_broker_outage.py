"""TradersPost answering 500, 429 or nothing for minutes, against the order outbox on a simulated clock.

The outbox (`send_pending_orders(now=…)`, as the order sender runs it) delivers to the real
TradersPost stand-in over HTTP; `Broker` decides, from the simulated time, what the stand-in answers
each POST (a scripted 500 / 429 with Retry-After / a slow answer past the timeout, or no listener at
all). Signals and positions are written by the worker's own ledger, with the clock of the simulation
(`django.utils.timezone.now` is the simulated clock here, so created_at, expiry and the Celery
stuck-order check agree with it). Every second of simulated time the outbox runs once, and every
minute the stuck-order check, as beat does.

What must hold: the queue is bounded (an order is retried with capped backoff only while it is
valid), an order is kept and delivered once the broker answers again, never twice, an alert goes out
once an order has failed MAX_ATTEMPTS times, a POST without an answer after it left is never resent,
and a day order the broker could not take before the session closed (16:00 America/Chicago) is
expired — alerted, its position cancelled — never sent late.
"""
import math
from datetime import datetime, timedelta

import pytest

from strategies.calendar import session_close
from tests.faults.simdesk import DAY, MAX_ATTEMPTS, SECOND, chicago, delivered_twice, emergency
from trading.models import DeliveryAttempt, Notification, Position, Signal, Trade

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


# --- (a) ---------------------------------------------------------------------------------------------
def test_a_broker_500_for_three_minutes(desk, fault_report):
    """500 from 10:00:10 to 10:03:10. Decided in the outage: a CL entry (at its start), a GC exit
    (1 min in) and a 6A entry (2 min 20 s in). Each order is kept (retried with backoff capped at a
    minute), alerted once it has failed MAX_ATTEMPTS times, and delivered exactly once after the
    broker recovers."""
    t0 = desk.clock.t
    down, up = t0 + 10 * SECOND, t0 + 190 * SECOND
    desk.broker.behaviour = lambda now, payload: (
        {"status": 500, "body": {"success": False, "message": "Internal Server Error"}} if down <= now < up else None)
    made = {}
    events = [(t0, lambda: made.setdefault("gc", desk.entry("GC"))), (t0 + 5 * SECOND, lambda: desk.fill("GC")),
              (down, lambda: made.setdefault("cl", desk.entry("CL"))),
              (t0 + 60 * SECOND, lambda: made.setdefault("gc_exit", desk.exit("GC"))),
              (t0 + 150 * SECOND, lambda: made.setdefault("6a", desk.entry("6A")))]
    desk.run(t0 + timedelta(minutes=20), events)

    assert Signal.objects.get(pk=made["gc"].pk).state == "sent"  # before the outage
    outcome = {}
    for name in ("cl", "gc_exit", "6a"):
        sig = Signal.objects.get(pk=made[name].pk)
        posts = desk.broker.posts_of(sig.key)
        assert len(posts) == sig.attempts == DeliveryAttempt.objects.filter(signal=sig).count()
        assert all(p.status == 500 for p in posts if p.at < up) and all(p.at >= up for p in posts if p.status == 200)
        assert sig.state == "sent", (name, sig.state, sig.state_reason)
        assert [p.status for p in posts].count(200) == 1 and posts[-1].status == 200
        assert (posts[-1].at - up).total_seconds() <= 75  # backoff is capped at a minute (+ jitter)
        if len(posts) > MAX_ATTEMPTS:
            assert emergency(sig.key) == [f"Order still not delivered: {sig.key}"]
        outcome[name] = f"sent after {len(posts)} attempts, {(posts[-1].at - up).total_seconds():.0f} s after recovery"
    orders = ("cl", "gc_exit", "6a")
    sent = [n for n in orders if Signal.objects.get(pk=made[n].pk).state == "sent"]
    duplicates = delivered_twice(desk.broker)
    print(f"\n(a) broker 500 for 3 min: {outcome}")
    fault_report("broker 500 for 3 min", runs=1, expected=len(orders), received=len(sent), duplicates=duplicates,
                 lost=len(orders) - len(sent), errors=0)
    assert duplicates == 0 and sent == list(orders)


# --- (b) ---------------------------------------------------------------------------------------------
def test_b_429_retry_after_is_respected(desk, fault_report):
    """The webhook is rate limited for two windows of 45 s from the first POST (each 429 says how
    long is left). A CL entry meets the 429s, a 6A entry is decided 10 s into the first window:
    no POST goes to the webhook inside a window it announced."""
    t0 = desk.clock.t
    windows: list[datetime] = []  # ends of the rate-limit windows announced so far

    def behaviour(now, payload):
        if windows and now < windows[-1]:
            left = math.ceil((windows[-1] - now).total_seconds())
            return {"status": 429, "body": {"success": False, "message": "Too many requests"},
                    "headers": {"Retry-After": str(left)}}
        if len(windows) < 2:
            windows.append(now + 45 * SECOND)
            return {"status": 429, "body": {"success": False, "message": "Too many requests"},
                    "headers": {"Retry-After": "45"}}
        return None

    desk.broker.behaviour = behaviour
    made = {}
    desk.run(t0 + timedelta(minutes=5), [(t0, lambda: made.setdefault("cl", desk.entry("CL"))),
                                         (t0 + 10 * SECOND, lambda: made.setdefault("6a", desk.entry("6A")))])

    early = []  # POSTs made inside a window the broker had announced (to any order of this webhook)
    for name, sig in made.items():
        sig.refresh_from_db()
        posts = desk.broker.posts_of(sig.key)
        assert sig.state == "sent" and [p.status for p in posts].count(200) == 1 and posts[-1].status == 200
        assert len(posts) <= MAX_ATTEMPTS
        for before, after in zip(posts, posts[1:]):  # the order's own Retry-After is honoured
            assert before.status == 429 and before.retry_after is not None
            assert after.at >= before.at + timedelta(seconds=before.retry_after), (name, before, after)
    for p in desk.broker.posts:
        announced = [q for q in desk.broker.posts if q.status == 429 and q.at < p.at]
        if any(p.at < q.at + timedelta(seconds=q.retry_after) for q in announced):
            early.append((p.key.split(":")[1], (p.at - t0).total_seconds()))
    duplicates = delivered_twice(desk.broker)
    print(f"\n(b) 429: POSTs {[(p.key.split(':')[1], (p.at - t0).total_seconds(), p.status) for p in desk.broker.posts]}; "
          f"inside a window announced for another order: {early}")
    fault_report("broker 429 + Retry-After", runs=1, expected=2, received=sum(p.status == 200 for p in desk.broker.posts),
                 duplicates=duplicates, lost=sum(Signal.objects.get(pk=s.pk).state != "sent" for s in made.values()))
    assert duplicates == 0
    # TradersPost limits per webhook URL: a Retry-After holds every order of the webhook, so the 6A
    # entry decided inside the window waits too instead of drawing a 429 of its own.
    assert early == []


# --- (c) ---------------------------------------------------------------------------------------------
def test_c_refused_connections_are_retried_and_delivered_once(desk, fault_report):
    """Nothing listens at the broker for 50 s (connection refused: no POST left this host), then it
    is back: the entry is retried within its budget and delivered exactly once."""
    t0 = desk.clock.t
    desk.broker.behaviour = lambda now, payload: "refused" if now < t0 + 50 * SECOND else None
    sig = {}
    desk.run(t0 + timedelta(minutes=3), [(t0, lambda: sig.setdefault("cl", desk.entry("CL")))])
    cl = Signal.objects.get(pk=sig["cl"].pk)
    posts = desk.broker.posts_of(cl.key)
    received = desk.broker.received()
    duplicates = delivered_twice(desk.broker)
    fault_report("broker refused 50 s", runs=1, expected=1, received=len(received), duplicates=duplicates,
                 lost=int(cl.state != "sent"))
    assert cl.state == "sent" and 1 < len(posts)
    assert all(p.outcome == "retryable" and "before the request left" in p.error for p in posts[:-1])
    assert len(received) == 1 and duplicates == 0


def test_c_read_timeout_is_ambiguous_and_is_not_resent(desk, fault_report):
    """The broker takes the order but answers after 1 s; the outbox gives up waiting at 0.25 s.
    The POST reached TradersPost (the stand-in recorded and accepted it): resending it is a second
    order, since TradersPost has no idempotency key. A timed-out read must be treated like a POST
    cut by a crash (execution.recovery): failed and alerted as ambiguous, not retried."""
    t0 = desk.clock.t
    slow = []

    def behaviour(now, payload):
        if not slow:
            slow.append(now)
            return {"status": 200, "delay": 1.0}
        return None

    desk.broker.behaviour = behaviour
    desk.timeout = 0.25
    sig = {}
    desk.run(t0 + timedelta(minutes=2), [(t0, lambda: sig.setdefault("cl", desk.entry("CL")))])
    cl = Signal.objects.get(pk=sig["cl"].pk)
    posts = desk.broker.posts_of(cl.key)
    received = [e for e in desk.broker.received() if e["order"]["extras"]["signal_id"] == cl.key]
    duplicates = delivered_twice(desk.broker)
    path = received[0]["path"]
    attempts = list(DeliveryAttempt.objects.filter(signal=cl).order_by("number").values_list("outcome", "status_code"))
    print(f"\n(c) read timeout: outbox saw {[(p.outcome, p.status, p.error) for p in posts]}; the stand-in received "
          f"{[(e['status'], e['order']['action']) for e in received]} (position there: "
          f"{desk.broker.standin.positions.get((path, 'CLZ6'))} CLZ6); signal {cl.state}/{cl.attempts} attempts; "
          f"attempt rows {attempts}")
    fault_report("broker read timeout (slow answer)", runs=1, expected=1, received=len(received),
                 duplicates=duplicates, lost=1 - len(received), errors=int(cl.state == "failed"))
    assert [p.outcome for p in posts] == ["ambiguous"] and "after the request left" in posts[0].error
    assert duplicates == 0 and len(received) == 1 and desk.broker.standin.positions.get((path, "CLZ6")) == 1
    assert cl.state == "failed" and "not resent" in cl.state_reason
    assert emergency(cl.key) == [f"Order state unknown: {cl.key}"]


# --- (d) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["500", "503 Retry-After 1 h"])
def test_d_broker_down_past_the_close_expires_rather_than_sends_late(desk, fault_report, answer):
    """GC is held (entered and filled before). At 15:00 Chicago, the session's last hourly decision,
    the worker enters CL and exits GC; the broker is down from 15:00 to 16:05 (plain 500s, or 503 with
    Retry-After: 3600 as for maintenance). Neither order may reach the broker after 16:00, the close
    of their day: each is retried while valid, then expired with an emergency alert; the CL entry's
    position is cancelled; the GC exit raises the emergency that the broker may still hold GC."""
    start = chicago(14, 59, 50)
    desk.clock.t = start
    close, up = session_close(DAY), chicago(16, 5)
    headers = {"Retry-After": "3600"} if answer.startswith("503") else {}
    status = int(answer[:3])
    desk.broker.behaviour = lambda now, payload: (
        {"status": status, "body": {"success": False, "message": "unavailable"}, "headers": headers}
        if chicago(15) <= now < up else None)
    made = {}
    events = [(start, lambda: made.setdefault("gc", desk.entry("GC"))), (start + 5 * SECOND, lambda: desk.fill("GC")),
              (chicago(15), lambda: made.setdefault("cl", desk.entry("CL"))),
              (chicago(15), lambda: made.setdefault("gc_exit", desk.exit("GC")))]
    desk.run(chicago(16, 20), events, step=5 * SECOND)

    assert Signal.objects.get(pk=made["gc"].pk).state == "sent"
    states = {}
    for name in ("cl", "gc_exit"):
        sig = Signal.objects.get(pk=made[name].pk)
        posts = desk.broker.posts_of(sig.key)
        assert sig.expires_at == close  # time in force 'day', counted from its decision at 15:00
        assert all(p.at < close for p in posts) and all(p.status != 200 for p in posts), "sent late"
        assert sig.state == "expired"
        assert f"Order expired undelivered: {sig.key}" in emergency(sig.key)
        if not headers:  # plain 500s: tried all through the hour, at most a minute apart
            gaps = [(b.at - a.at).total_seconds() for a, b in zip(posts, posts[1:])]
            assert len(posts) > MAX_ATTEMPTS and max(gaps) <= 75
        states[name] = f"{sig.state} after {len(posts)} POSTs ({sig.state_reason[:60]})"
    assert Position.objects.get(entry_signal=made["cl"]).state == "cancelled"
    gc = Position.objects.get(entry_signal=made["gc"])
    # The exit never reached the broker: the books keep the position open (no trade), alerted by name.
    assert gc.state == "open" and gc.exit_signal_id is None and not Trade.objects.filter(entry_signal=made["gc"]).exists()
    assert Notification.objects.filter(dedupe_key=f"exit-undelivered:{made['gc_exit'].key}", kind="emergency").exists()
    late = [e for e in desk.broker.received() if e["received_at"] and e["status"] == 200
            and e["order"]["extras"]["signal_id"] in (made["cl"].key, made["gc_exit"].key)]
    print(f"\n(d) {answer}: {states}; stuck alerts {desk.stuck_alerts}")
    fault_report(f"broker down past 16:00 CT ({answer})", runs=1, expected=0, received=len(late), duplicates=0,
                 lost=0, errors=sum(Signal.objects.get(pk=made[n].pk).state != "sent" for n in ("cl", "gc_exit")))
    assert late == []
    if headers:  # held by Retry-After until after the close: expired at its next turn, never posted again
        assert set(desk.stuck_alerts) == {made["cl"].key, made["gc_exit"].key}
