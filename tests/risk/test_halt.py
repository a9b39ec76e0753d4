"""Full halt: no order leaves, and the books never part from the broker.

The worker runs in-process against real Redis, the database and the TradersPost stand-in over HTTP;
its orders go out through the real outbox (InlineSender)."""
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.desk import EXIT, MID, SIGNAL, T0, demo_desk, publish_hours, publish_minute, running_worker
from trading.models import DailyRiskState, Notification, Position, Signal, Trade
from trading.risk.killswitch import set_mode

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    return demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix)


def open_cl(w):
    """A CL entry at T0 (IBS 0.1) filled at the 01:00+1h open (100.0): the broker holds it."""
    publish_hours([SIGNAL, MID])
    w.poll()
    pos = Position.objects.get(state="open")
    assert pos.filled and pos.entry_price == Decimal("100")
    return pos


def test_halt_holds_an_ibs_exit_until_lifted_then_posts_it_once_and_books_it_at_the_send(desk, broker):
    w = running_worker()
    pos = open_cl(w)
    set_mode("halt", "exchange incident", actor="ops")
    publish_hours([EXIT, MID, MID], start=T0 + 2 * H)  # the IBS exit bar closes during the halt
    w.poll()

    exit_ = Signal.objects.get(action="exit")
    pos.refresh_from_db()
    assert (exit_.state, exit_.risk_control, exit_.reason) == ("held", "killswitch", "ibs_exit")
    assert pos.state == "exit_held" and pos.exit_signal_id == exit_.pk
    assert [o["action"] for o in broker.orders()] == ["buy"]  # nothing left during the halt
    assert not Trade.objects.exists()  # the books still hold what the broker holds
    assert not DailyRiskState.objects.filter(trades__gt=0).exists()  # and the day's P&L excludes it
    assert Signal.objects.filter(action="exit").count() == 1  # held, not decided again every hour

    last = publish_minute("CL", 100.3, T0 + 5 * H + timedelta(minutes=17))  # the market when the halt lifts
    set_mode("off", "incident over", actor="ops")
    w.poll()
    w.poll()

    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]  # sent once, after the halt
    assert broker.orders()[1]["extras"]["signal_id"] == exit_.key
    trade = Trade.objects.get()
    assert (trade.exit_price, trade.exit_time, trade.exit_reason, trade.exit_via) == (
        Decimal("100.3"), last.ts + timedelta(minutes=1), "ibs_exit", "order")  # the price and time of the send
    assert trade.pnl == Decimal("0.3") * 1000 - 2 * Decimal("1.25")
    assert DailyRiskState.objects.get(strategy=desk).realized_pnl == trade.pnl
    assert Notification.objects.filter(title__contains="held exit of CL sent").count() == 1
    assert Position.objects.get(pk=pos.pk).state == "closed"


def test_halt_blocks_an_entry_and_never_sends_it_late(desk, broker):
    w = running_worker()
    set_mode("halt", "no trading today", actor="ops")
    publish_hours([SIGNAL, MID])
    w.poll()
    entry = Signal.objects.get(action="buy")
    assert (entry.state, entry.risk_control) == ("blocked", "killswitch") and "full halt" in entry.state_reason
    set_mode("off", "back", actor="ops")
    publish_hours([MID], start=T0 + 2 * H)
    w.poll()
    assert broker.snapshot() == [] and not Position.objects.exists()


def test_halt_cancels_an_entry_decided_before_it_and_not_sent_yet(desk, broker):
    broker.script({"status": 503, "body": {"message": "busy"}})  # the entry waits for a retry
    w = running_worker()
    publish_hours([SIGNAL])
    w.poll()
    entry = Signal.objects.get(action="buy")
    assert entry.state == "pending"
    set_mode("halt", "stop everything", actor="ops")
    entry.refresh_from_db()
    assert (entry.state, entry.risk_control) == ("blocked", "killswitch")
    assert Position.objects.get().state == "cancelled"
    Signal.objects.filter(pk=entry.pk).update(next_attempt_at=None)
    w.poll()
    assert len(broker.snapshot()) == 1  # only the 503'd attempt, never again


def test_a_bracket_exit_during_a_halt_is_booked_as_a_bracket_exit_and_nothing_is_sent(desk, broker):
    w = running_worker()
    pos = open_cl(w)
    set_mode("halt", "exchange incident", actor="ops")
    publish_hours([(99.9, 100.2, 98.5, 99.0)], start=T0 + 2 * H)  # low 98.5 < stop 99.0: the broker's stop fills
    w.poll()
    trade = Trade.objects.get()
    assert (trade.exit_reason, trade.exit_via, trade.exit_price) == ("stop_loss", "bracket", Decimal("99"))
    bracket = trade.exit_signal
    assert (bracket.state, bracket.fill, bracket.risk_control) == ("blocked", "bracket", "killswitch")
    assert [o["action"] for o in broker.orders()] == ["buy"]
    assert Position.objects.get(pk=pos.pk).state == "closed"
    assert not Notification.objects.filter(title__startswith="Exit not delivered").exists()


def test_an_exit_pending_when_the_halt_is_pulled_is_held_not_failed(desk, broker):
    w = running_worker()
    pos = open_cl(w)
    broker.script({"status": 500, "body": {"message": "busy"}})
    publish_hours([EXIT], start=T0 + 2 * H)
    w.poll()
    exit_ = Signal.objects.get(action="exit")
    assert exit_.state == "pending"  # retrying after the 500
    set_mode("halt", "incident", actor="ops")
    Signal.objects.filter(pk=exit_.pk).update(next_attempt_at=None)
    publish_hours([MID], start=T0 + 3 * H)  # its modelled fill bar comes and goes
    w.poll()
    exit_.refresh_from_db()
    pos.refresh_from_db()
    assert exit_.state == "held" and pos.state == "exit_held" and not Trade.objects.exists()
    assert w.portfolio.books["CL"].position is not None and w.portfolio.books["CL"].position.exit_held
    assert not Notification.objects.filter(title__startswith="Exit not delivered").exists()
    publish_minute("CL", 100.1, T0 + 4 * H + timedelta(minutes=3))
    set_mode("entries", "incident over, no new risk", actor="ops")  # block entries lifts the halt too
    w.poll()
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]
    assert Trade.objects.get().exit_price == Decimal("100.1")
