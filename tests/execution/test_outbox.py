"""The order outbox against the database: once delivered never again, failures kept and alerted."""
import os
import socket
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from tests.e2e.appliance import free_port
from trading.execution.outbox import MAX_ATTEMPTS, backoff_seconds, send_pending_orders
from trading.execution.recovery import recover_interrupted
from trading.execution.ratelimit import RedisRateLimiter
from trading.execution.sender import settle_own_claims
from trading.health.process import _stat, process_token
from trading.models import DeliveryAttempt, Notification, Signal, Strategy, signal_key
from trading.risk.killswitch import set_mode

pytestmark = pytest.mark.django_db


@dataclass
class Result:
    outcome: str
    status_code: int | None = None
    body: str = ""
    retry_after: float | None = None
    error: str = ""


class ScriptedBroker:
    """Answers POSTs from a script of results and records what it was sent."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []

    def __call__(self, url, payload, timeout):
        self.calls.append((url, payload))
        return self.script.pop(0) if self.script else Result("delivered", 200, "ok")


@pytest.fixture
def signal(webhook_env):
    call_command("load_demo")
    strategy = Strategy.objects.get(name="ibs_a")
    cl = strategy.legs.get(instrument__root="CL").instrument
    bar = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return Signal.objects.create(
        key=signal_key("ibs_a", "CL", bar, "buy"), strategy=strategy, instrument=cl, bar_time=bar, action="buy",
        quantity=1, signal_price=Decimal("71.25"), reason="entry",
        payload={"ticker": "CL", "action": "buy", "quantity": 1, "orderType": "market", "signalPrice": 71.25,
                 "timeInForce": "day"})


def test_delivered_signal_is_never_sent_again(signal, webhook_env):
    broker = ScriptedBroker(Result("delivered", 200, "ok"))
    report = send_pending_orders(deliver=broker)
    assert report.sent == [signal.key]
    assert broker.calls == [(webhook_env["TRADERSPOST_IBS_A_WEBHOOK"], signal.payload)]
    for _ in range(3):
        send_pending_orders(deliver=broker, now=timezone.now() + timedelta(hours=1))
    assert len(broker.calls) == 1
    signal.refresh_from_db()
    assert signal.state == "sent" and signal.attempts == 1 and signal.sent_at is not None


def test_500_then_200_is_one_order(signal):
    broker = ScriptedBroker(Result("retryable", 500, "boom"), Result("delivered", 200, "ok"))
    t0 = timezone.now()
    first = send_pending_orders(deliver=broker, now=t0)
    assert first.retrying == [signal.key]
    assert send_pending_orders(deliver=broker, now=t0).sent == []  # not due yet: backoff
    signal.refresh_from_db()
    assert signal.state == "pending" and signal.next_attempt_at > t0
    assert send_pending_orders(deliver=broker, now=signal.next_attempt_at).sent == [signal.key]
    assert len(broker.calls) == 2
    assert list(DeliveryAttempt.objects.values_list("outcome", "status_code")) == [("retryable", 500), ("delivered", 200)]


def test_400_is_failed_with_the_body_alerted_and_not_retried(signal):
    broker = ScriptedBroker(Result("permanent", 400, '{"message": "Invalid ticker"}'))
    assert send_pending_orders(deliver=broker).failed == [signal.key]
    for _ in range(3):
        send_pending_orders(deliver=broker, now=timezone.now() + timedelta(hours=1))
    assert len(broker.calls) == 1
    signal.refresh_from_db()
    assert signal.state == "failed" and "Invalid ticker" in signal.last_error and "HTTP 400" in signal.state_reason
    alert = Notification.objects.get(kind="emergency", dedupe_key=f"order-failed:{signal.key}")
    assert "Invalid ticker" in alert.body


def test_retries_are_bounded(signal):
    broker = ScriptedBroker(*[Result("retryable", 503, "unavailable")] * (MAX_ATTEMPTS + 3))
    now = timezone.now()
    for _ in range(MAX_ATTEMPTS + 3):
        send_pending_orders(deliver=broker, now=now)
        now += timedelta(hours=1)
    assert len(broker.calls) == MAX_ATTEMPTS
    signal.refresh_from_db()
    assert signal.state == "failed" and f"gave up after {MAX_ATTEMPTS} attempts" in signal.state_reason


def test_retry_after_is_honoured(signal):
    broker = ScriptedBroker(Result("retryable", 429, "slow down", retry_after=90))
    t0 = timezone.now()
    send_pending_orders(deliver=broker, now=t0)
    signal.refresh_from_db()
    assert signal.next_attempt_at >= t0 + timedelta(seconds=90)


def test_killswitch_cancels_an_unsent_entry_when_pulled_and_nothing_is_posted(signal):
    set_mode("entries", "test", actor="t")
    signal.refresh_from_db()
    assert (signal.state, signal.risk_control) == ("blocked", "killswitch") and "blocks entries" in signal.state_reason
    broker = ScriptedBroker()
    assert send_pending_orders(deliver=broker).sent == [] and broker.calls == []


def test_env_killswitch_blocks_an_entry_at_send_time_and_nothing_is_posted(signal, monkeypatch):
    monkeypatch.setenv("POLICY_KILLSWITCH", "true")
    broker = ScriptedBroker()
    assert send_pending_orders(deliver=broker).blocked == [signal.key]
    assert broker.calls == []
    signal.refresh_from_db()
    assert (signal.state, signal.risk_control) == ("blocked", "env") and "blocks entries" in signal.state_reason


@pytest.mark.django_db(transaction=True)  # as the sender runs: autocommit, its own transactions
def test_a_refusal_and_what_follows_from_it_commit_together(signal, monkeypatch):
    """The entry's state and its position's cancellation are one transaction: when the second fails (the
    process killed, the database gone), the entry is not left refused with its position still in the books;
    it is pending again, refused whole at the next pass."""
    from trading.execution import exits
    from trading.models import Position

    strategy, cl = signal.strategy, signal.instrument
    pos = Position.objects.create(strategy=strategy, instrument=cl, contract="CLZ6", size=1, signal_time=signal.bar_time,
                                  entry_time=signal.bar_time + timedelta(hours=1), entry_price=Decimal("71.25"),
                                  commission_per_side=Decimal("1.25"), point_value=Decimal("1000"), entry_signal=signal)
    monkeypatch.setenv("POLICY_KILLSWITCH", "true")
    cancel = exits.cancel_unsent_entry

    def cut_off(sig, reason):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(exits, "cancel_unsent_entry", cut_off)
    with pytest.raises(ConnectionError):
        send_pending_orders(deliver=ScriptedBroker())
    signal.refresh_from_db()
    pos.refresh_from_db()
    assert (signal.state, signal.risk_control, pos.state) == ("pending", "", "open")
    monkeypatch.setattr(exits, "cancel_unsent_entry", cancel)
    assert send_pending_orders(deliver=ScriptedBroker()).blocked == [signal.key]
    pos.refresh_from_db()
    assert pos.state == "cancelled"


def test_day_order_expires_rather_than_going_out_late(signal):
    Signal.objects.filter(pk=signal.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    broker = ScriptedBroker()
    assert send_pending_orders(deliver=broker).expired == [signal.key]
    assert broker.calls == []
    assert Notification.objects.filter(kind="emergency", title__contains="expired").exists()


def test_unset_webhook_fails_with_the_variable_named(signal, monkeypatch):
    monkeypatch.delenv("TRADERSPOST_IBS_A_WEBHOOK")
    broker = ScriptedBroker()
    send_pending_orders(deliver=broker)
    signal.refresh_from_db()
    assert signal.state == "failed" and "TRADERSPOST_IBS_A_WEBHOOK is not set" in signal.last_error
    assert broker.calls == []


def test_second_sender_cannot_claim_a_claimed_signal(signal):
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now())
    broker = ScriptedBroker()
    send_pending_orders(deliver=broker)
    assert broker.calls == []


def test_crash_before_post_is_requeued_and_sent_once(signal):
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now() - timedelta(minutes=5))
    assert recover_interrupted()["requeued"] == [signal.key]
    broker = ScriptedBroker()
    assert send_pending_orders(deliver=broker).sent == [signal.key]
    assert len(broker.calls) == 1


def test_crash_during_post_is_never_resent_and_is_alerted(signal):
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now() - timedelta(minutes=5),
                                               attempts=1)
    DeliveryAttempt.objects.create(signal=signal, number=1, attempted_at=timezone.now(), outcome="started")
    assert recover_interrupted()["ambiguous"] == [signal.key]
    broker = ScriptedBroker()
    send_pending_orders(deliver=broker)
    assert broker.calls == []
    signal.refresh_from_db()
    assert signal.state == "failed" and "not resent" in signal.state_reason
    assert Notification.objects.filter(title__contains="state unknown").exists()


def test_recent_claim_is_left_to_its_sender(signal):
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now(), claimed_by=process_token())
    assert recover_interrupted() == {"requeued": [], "ambiguous": []}  # its sender lives


def test_claim_of_a_dead_sender_is_settled_at_once(signal):
    dead = subprocess.Popen(["true"])
    dead.wait()
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now(),
                                               claimed_by=f"{socket.gethostname()}:{dead.pid}")
    assert recover_interrupted()["requeued"] == [signal.key]


def test_backoff_grows_and_is_capped():
    delays = [backoff_seconds(n, rng=lambda: 0.0) for n in range(1, 12)]
    assert delays[:4] == [2, 4, 8, 16] and max(delays) == 60
    assert backoff_seconds(1, retry_after=30, rng=lambda: 0.0) == 30


def test_long_pending_signal_is_alerted_once(signal):
    from trading.execution.recovery import alert_stuck_pending

    later = timezone.now() + timedelta(minutes=10)
    assert alert_stuck_pending(now=later) == [signal.key]
    assert alert_stuck_pending(now=later + timedelta(minutes=1)) == []
    assert Notification.objects.filter(dedupe_key=f"order-stuck:{signal.key}").count() == 1


def test_periodic_tasks_exist_after_migrate_and_are_registered():
    from django_celery_beat.models import PeriodicTask

    from pineops.celery import app

    import trading.tasks  # noqa: F401 — registers the tasks

    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"trading.check_heartbeats", "trading.send_pending_orders", "trading.check_stuck_orders"} <= names
    assert names <= set(app.tasks)


def test_an_exit_never_overtakes_its_held_back_entry(signal):
    """The entry is held back (rate limit or retry) when its exit becomes due: the exit waits,
    then both reach the broker in decision order."""
    exit_bar = signal.bar_time + timedelta(hours=1)
    exit_ = Signal.objects.create(key=signal_key("ibs_a", "CL", exit_bar, "exit"), strategy=signal.strategy,
                                  instrument=signal.instrument, bar_time=exit_bar, action="exit", quantity=1,
                                  signal_price=Decimal("71.5"), reason="ibs_exit",
                                  payload={"ticker": "CL", "action": "exit", "timeInForce": "day"})
    now = timezone.now()
    Signal.objects.filter(pk=signal.pk).update(next_attempt_at=now + timedelta(seconds=30))
    broker = ScriptedBroker(Result("delivered", 200, "ok"), Result("delivered", 200, "ok"))
    assert send_pending_orders(deliver=broker, now=now).sent == []
    assert broker.calls == []
    report = send_pending_orders(deliver=broker, now=now + timedelta(seconds=31))
    assert report.sent == [signal.key, exit_.key]
    assert [payload["action"] for _, payload in broker.calls] == ["buy", "exit"]


def test_a_day_order_is_retried_until_the_close_then_expires_never_sent_late(signal):
    now = timezone.now()
    Signal.objects.filter(pk=signal.pk).update(expires_at=now + timedelta(minutes=10))
    broker = ScriptedBroker(*[Result("retryable", 500, "down")] * 40)
    for _ in range(40):  # a broker down for 13 minutes, tried every 20 s
        send_pending_orders(deliver=broker, now=now)
        now += timedelta(seconds=20)
    signal.refresh_from_db()
    assert len(broker.calls) > MAX_ATTEMPTS  # kept while valid, not given up after a minute
    assert signal.state == "expired"
    stills = Notification.objects.filter(dedupe_key=f"order-retrying:{signal.key}")
    assert stills.count() == 1 and f"{MAX_ATTEMPTS} attempts failed" in stills.get().body


def test_a_day_order_delivered_when_the_broker_recovers_within_the_session(signal):
    now = timezone.now()
    Signal.objects.filter(pk=signal.pk).update(expires_at=now + timedelta(hours=2))
    broker = ScriptedBroker(*[Result("retryable", 503, "down")] * 12, Result("delivered", 200, "ok"))
    for _ in range(30):  # 5 minutes of outage, then it answers
        send_pending_orders(deliver=broker, now=now)
        now += timedelta(seconds=30)
    signal.refresh_from_db()
    assert signal.state == "sent" and len(broker.calls) == 13


def test_an_ambiguous_post_is_failed_alerted_never_resent_and_its_position_kept(signal):
    from trading.models import Position

    Position.objects.create(strategy=signal.strategy, instrument=signal.instrument, size=1,
                            signal_time=signal.bar_time, entry_time=signal.bar_time + timedelta(hours=1),
                            entry_price=Decimal("71.25"), commission_per_side=Decimal("1.25"),
                            point_value=Decimal("1000"), entry_signal=signal)
    broker = ScriptedBroker(Result("ambiguous", error="timeout after 10s (ReadTimeout, after the request left)"))
    for _ in range(3):
        send_pending_orders(deliver=broker, now=timezone.now() + timedelta(hours=1))
    assert len(broker.calls) == 1
    signal.refresh_from_db()
    assert signal.state == "failed" and "not resent" in signal.state_reason
    assert Position.objects.get(entry_signal=signal).state == "open"  # the broker may hold it: keep managing it
    assert Notification.objects.filter(title=f"Order state unknown: {signal.key}").exists()


def test_an_exit_that_never_reaches_the_broker_raises_a_named_emergency(signal):
    exit_bar = signal.bar_time + timedelta(hours=1)
    Signal.objects.filter(pk=signal.pk).update(state="sent")
    exit_ = Signal.objects.create(key=signal_key("ibs_a", "CL", exit_bar, "exit"), strategy=signal.strategy,
                                  instrument=signal.instrument, bar_time=exit_bar, action="exit", quantity=1,
                                  signal_price=Decimal("71.5"), reason="ibs_exit",
                                  payload={"ticker": "CL", "action": "exit", "timeInForce": "day"})
    send_pending_orders(deliver=ScriptedBroker(Result("permanent", 400, '{"message": "Unknown ticker"}')))
    alert = Notification.objects.get(dedupe_key=f"exit-undelivered:{exit_.key}")
    assert alert.kind == "emergency" and "the position stays open" in alert.title
    assert "may still hold" in alert.body and "flatten" in alert.body


def test_redis_away_between_the_claim_and_the_post_leaves_the_order_pending_then_sends_it_once(signal, redis_prefix):
    """The rate limiter (Redis) fails after the claim: nothing was posted, so the order is pending again
    rather than claimed by a live sender, which would hold back every later order of its instrument."""
    away = redis.Redis(port=free_port(), socket_connect_timeout=1)
    broker = ScriptedBroker()
    with pytest.raises(redis.ConnectionError):
        send_pending_orders(deliver=broker, limiter=RedisRateLimiter(away, prefix=redis_prefix))
    signal.refresh_from_db()
    assert (signal.state, signal.attempts, broker.calls) == ("pending", 0, [])
    assert not DeliveryAttempt.objects.exists()
    back = RedisRateLimiter(redis.Redis(), prefix=redis_prefix)
    assert send_pending_orders(deliver=broker, limiter=back).sent == [signal.key]
    assert len(broker.calls) == 1


def test_a_sender_settles_its_own_claims_after_a_failed_pass_and_only_its_own(signal):
    """When even the release failed (the database away too), the sender's next failed-pass handler settles
    what it still holds: never posted → pending; posted → failed as ambiguous. Another live sender's
    claim is left alone."""
    strategy, cl = signal.strategy, signal.instrument
    parent_token = f"{socket.gethostname()}:{os.getppid()}:{_stat(os.getppid())[19]}"
    posted = Signal.objects.create(
        key=signal_key("ibs_a", "GC", signal.bar_time, "buy"), strategy=strategy,
        instrument=strategy.legs.get(instrument__root="GC").instrument, bar_time=signal.bar_time, action="buy",
        quantity=1, signal_price=Decimal("2000"), reason="entry", payload=signal.payload, state="sending",
        claimed_at=timezone.now(), claimed_by=process_token(), attempts=1)
    DeliveryAttempt.objects.create(signal=posted, number=1, attempted_at=timezone.now(), outcome="started")
    other = Signal.objects.create(
        key=signal_key("ibs_a", "CL", signal.bar_time + timedelta(hours=1), "exit"), strategy=strategy,
        instrument=cl, bar_time=signal.bar_time + timedelta(hours=1), action="exit", quantity=1,
        signal_price=Decimal("71.5"), reason="ibs_exit", payload=signal.payload, state="sending",
        claimed_at=timezone.now(), claimed_by=parent_token)  # a live sender, not this process
    Signal.objects.filter(pk=signal.pk).update(state="sending", claimed_at=timezone.now(), claimed_by=process_token())
    settle_own_claims(strategy)
    states = dict(Signal.objects.values_list("key", "state"))
    assert (states[signal.key], states[posted.key], states[other.key]) == ("pending", "failed", "sending")


def test_an_error_after_the_claim_was_stamped_for_the_post_never_requeues_the_order(signal):
    """The POST may have left (its attempt is logged as started): even with a fixed clock, where the stamp for
    the POST equals the claim's first stamp, the order is not released as never posted; the recovery fails it."""
    now = timezone.now()

    def broken(url, payload, timeout):
        raise RuntimeError("the connection broke mid-request")

    with pytest.raises(RuntimeError):
        send_pending_orders(deliver=broken, now=now)
    signal.refresh_from_db()
    assert (signal.state, signal.attempts) == ("sending", 1)
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["started"]
    assert recover_interrupted(mine=True)["ambiguous"] == [signal.key]
    broker = ScriptedBroker()
    send_pending_orders(deliver=broker, now=now + timedelta(minutes=1))
    assert broker.calls == [] and Signal.objects.get(pk=signal.pk).state == "failed"
