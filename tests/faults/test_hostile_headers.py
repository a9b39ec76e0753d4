"""A broker answering 429 with a Retry-After no order can honour — a trillion seconds, a date in the
year 9999, a negative number, NaN: each is recorded as the definite answer it is (not as a POST that
may have gone through), with a note on what was made of the header, and the order is then retried or
expired at its close — never left 'sending'. Real POSTs to the stand-in, on the simulated clock."""
from datetime import timedelta

import pytest

from strategies.calendar import session_close
from tests.faults.simdesk import DAY, chicago
from trading.models import DeliveryAttempt, Notification, Position, Signal

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


@pytest.mark.parametrize("header, note", [
    ("1e12", "capped"), ("Fri, 31 Dec 9999 23:59:59 GMT", "capped"), ("-5", "in the past"),
    ("NaN", "not a number"), ("soon-ish", "neither seconds nor an HTTP date")])
def test_hostile_retry_after_is_a_definite_answer_then_retried_or_expired(desk, fault_report, header, note):
    throttled = []

    def behaviour(now, payload):
        if len(throttled) < 2:  # the first two POSTs draw the hostile header, then the broker takes it
            throttled.append(now)
            return {"status": 429, "body": {"success": False, "message": "Too many requests"},
                    "headers": {"Retry-After": header}}
        return None

    desk.broker.behaviour = behaviour
    t0 = desk.clock.t
    made = {}
    desk.run(t0 + timedelta(seconds=5), [(t0, lambda: made.setdefault("cl", desk.entry("CL")))])
    sig = Signal.objects.get(pk=made["cl"].pk)
    first = DeliveryAttempt.objects.filter(signal=sig).order_by("number").first()
    assert (first.outcome, first.status_code) == ("retryable", 429)  # definite: the broker said no
    assert note in first.response and header[:8] in first.response
    assert sig.state in ("pending", "sent") and note in (sig.state_reason if sig.state == "pending" else note)
    assert sig.next_attempt_at is None or sig.next_attempt_at <= sig.expires_at  # never past the order's life

    desk.run(session_close(DAY) + timedelta(minutes=5), step=timedelta(seconds=30))
    sig.refresh_from_db()
    assert sig.state in ("sent", "expired"), sig.state  # retried and delivered, or expired at the close
    assert not Signal.objects.filter(state="sending").exists()
    assert not Notification.objects.filter(title__startswith="Order state unknown").exists()
    position = Position.objects.get(entry_signal=sig)
    assert position.state == ("open" if sig.state == "sent" else "cancelled")
    received = [e for e in desk.broker.received() if e["status"] == 200]
    fault_report(f"Retry-After {header!r}", runs=1, expected=1, received=len(received), duplicates=len(received) - 1
                 if received else 0, lost=0, errors=int(sig.state != "sent"))
    assert len(received) <= 1
    if header in ("1e12", "Fri, 31 Dec 9999 23:59:59 GMT"):  # held to the close: expired, not sent late
        assert sig.state == "expired" and sig.expires_at == session_close(DAY) and received == []
    else:
        assert sig.state == "sent" and throttled[-1] < chicago(10, 5)
