"""The worker in-process against real Redis, the database and the TradersPost stand-in over HTTP."""
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from strategies.bars import Bar
from trading.execution.worker import Worker, WorkerLockError
from trading.marketdata import streams
from trading.marketdata.barstore import store_bars
from trading.models import Notification, Position, Signal, Strategy, StrategyInstrument
from trading.risk.killswitch import set_mode
from tests.desk import HeldBack
from tests.strategies.builders import MID, hourly

pytestmark = pytest.mark.django_db(transaction=True)
UTC = timezone.utc
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # Tuesday 01:00 UTC, inside the entry window
SIGNAL = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1
EXIT = (99.5, 99.9, 99.1, 99.8)  # IBS 0.875


@pytest.fixture
def setup(settings, redis_prefix, webhook_env, monkeypatch, broker, tmp_path):
    settings.REDIS_PREFIX = redis_prefix
    settings.RUNTIME_DIR = tmp_path
    monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", f"{broker.url}/trading/webhook/worker-test-token")
    call_command("load_demo")
    StrategyInstrument.objects.filter(strategy__name="ibs_a").exclude(instrument__root="CL").update(enabled=False)
    StrategyInstrument.objects.filter(strategy__name="ibs_a").update(ml_enabled=False)
    return Strategy.objects.get(name="ibs_a")


def publish(rows, start=T0, root="CL"):
    for i, (o, h, l, c) in enumerate(rows):
        ts = start + timedelta(hours=i)
        streams.publish(Bar(root, "CLZ6", "1h", ts, o, h, l, c, 100, 10))
        streams.set_watermark(int((ts + timedelta(hours=1)).timestamp()) * 10**9)


def worker():
    w = Worker("ibs_a", block_ms=10)
    w.setup()
    return w


def test_history_in_the_store_and_streams_never_sends_an_order(setup, broker):
    history = hourly([SIGNAL, EXIT, SIGNAL, EXIT] * 30, start=T0 - timedelta(days=10))
    store_bars("CL", "1h", history, "test")
    publish([SIGNAL, EXIT, SIGNAL, EXIT], start=T0 - timedelta(hours=8))  # already published before the first start
    w = worker()
    assert len(w.frames["CL"]) > 100  # warm: history feeds the features …
    w.poll()
    assert Signal.objects.count() == 0 and broker.snapshot() == []  # … and never the order path
    publish([SIGNAL, MID])  # a live bar after the start is traded at once
    w.poll()
    assert [o["action"] for o in broker.orders()] == ["buy"]


def test_entry_then_exit_one_order_each_with_the_design_payload(setup, broker):
    w = worker()
    publish([SIGNAL])
    w.poll()
    publish([EXIT], start=T0 + timedelta(hours=1))
    w.poll()
    publish([MID], start=T0 + timedelta(hours=2))
    w.poll()
    buy, exit_ = broker.orders()
    assert (buy["ticker"], buy["action"], buy["quantity"], buy["orderType"], buy["timeInForce"]) == ("CLZ6", "buy", 1,
                                                                                                     "market", "day")
    assert buy["signalPrice"] == 99.2 and "price" not in buy and buy["stopLoss"] == {"type": "stop", "percent": 1.0}
    assert buy["extras"]["signal_id"] == "ibs_a:CL:2026-11-03T01:00:00Z:buy"
    assert (exit_["action"], exit_["extras"]["reason"]) == ("exit", "ibs_exit")
    assert "worker-test-token" not in str(Signal.objects.values_list("payload", flat=True))
    trade = setup.trades.get()  # filled at the open after each decision
    assert (float(trade.entry_price), float(trade.exit_price), trade.exit_reason) == (99.5, 100.0, "ibs_exit")
    assert trade.pnl == (100.0 - 99.5) * 1000 - 2 * 1.25


def test_a_fill_modelled_just_before_a_kill_is_booked_when_the_worker_starts_again(setup, broker, monkeypatch):
    """The step that models the exit's fill commits it (the position out of the book) and the trade is booked
    right after, off the order's path; killed in between, the next worker books it as it starts: one trade,
    the backtest's prices, nothing sent twice."""
    from trading.execution import exits

    w = worker()
    publish([SIGNAL, EXIT])
    w.poll()
    with monkeypatch.context() as killed:
        killed.setattr(exits, "book_filled_exits", lambda strategy: [])  # killed right after the step's commit
        publish([MID], start=T0 + timedelta(hours=2))
        w.poll()
    pos = Position.objects.get()
    assert pos.state == "exited" and pos.exit_signal.state == "sent" and not setup.trades.exists()
    worker()
    trade = setup.trades.get()
    assert (float(trade.entry_price), float(trade.exit_price), trade.exit_reason) == (99.5, 100.0, "ibs_exit")
    assert Position.objects.get().state == "closed" and [o["action"] for o in broker.orders()] == ["buy", "exit"]


def test_killswitch_blocks_and_records_the_entry_and_posts_nothing(setup, broker):
    set_mode("entries", "test", actor="t")
    w = worker()
    publish([SIGNAL, MID])
    w.poll()
    sig = Signal.objects.get()
    assert sig.state == "blocked" and "blocks entries" in sig.state_reason
    assert broker.snapshot() == [] and not Position.objects.exists()


def test_entries_only_killswitch_still_posts_the_exit(setup, broker):
    w = worker()
    publish([SIGNAL])
    w.poll()
    set_mode("entries", "standing aside", actor="t")
    publish([EXIT, MID], start=T0 + timedelta(hours=1))
    w.poll()
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]


def decided_entry_and_exit_unsent() -> Worker:
    """The worker decides an entry, models its fill and decides its exit; neither is sent yet."""
    w = Worker("ibs_a", block_ms=10, sender=HeldBack())
    w.setup()
    publish([SIGNAL, EXIT])
    w.poll()
    entry, exit_ = Signal.objects.order_by("bar_time")
    assert (entry.action, entry.state, exit_.action, exit_.state) == ("buy", "pending", "exit", "pending")
    assert Position.objects.get().state == "closing"
    return w


@pytest.mark.parametrize("refused", ["by the killswitch change", "at its send"])
def test_an_entry_that_never_reaches_the_broker_takes_the_exit_decided_for_it_with_it(setup, broker, monkeypatch,
                                                                                      refused):
    """Its position is cancelled and the exit is refused too, by the same control: no POST of an exit for a
    position the broker never had (it would answer 400, and the alerts would say the position stays open)."""
    decided_entry_and_exit_unsent()
    if refused == "by the killswitch change":
        set_mode("entries", "standing aside", actor="t")  # cancels what is not sent yet, in its transaction
    else:
        monkeypatch.setenv("POLICY_KILLSWITCH", "entries")  # the environment's override: caught at the send
    from trading.execution.outbox import send_pending_orders

    send_pending_orders()
    entry, exit_ = Signal.objects.order_by("bar_time")
    assert broker.snapshot() == []
    assert (entry.state, exit_.state) == ("blocked", "blocked")
    assert exit_.risk_control == entry.risk_control != ""
    assert exit_.state_reason.startswith(f"its entry {entry.key} never reached the broker")
    assert Position.objects.get().state == "cancelled" and not setup.trades.exists()
    assert not Notification.objects.filter(kind="emergency").exclude(title__startswith="Killswitch").exists()


def test_a_bracket_trade_booked_on_an_entry_that_never_reaches_the_broker_is_voided(setup, broker):
    """The model filled the entry and its stop inside the next bar (the broker's bracket: a trade booked at
    once), all before the sender sent the entry; the entry is then refused: the trade leaves the books and
    the day's P&L (the dashboard's summary equals the trades), alerted; the bracket's exit is not posted."""
    from trading.execution.outbox import send_pending_orders
    from trading.models import DailyRiskState
    from trading.performance import daily_rows, daily_rows_from_trades

    w = Worker("ibs_a", block_ms=10, sender=HeldBack())
    w.setup()
    publish([SIGNAL, (99.5, 99.6, 98.0, 98.2)])  # filled at 99.5, stopped at 98.505 inside the same bar
    w.poll()
    trade = setup.trades.get()
    assert trade.exit_reason == "stop_loss" and trade.pnl < 0
    assert DailyRiskState.objects.get(strategy=setup, session_date=trade.session_date).trades == 1
    set_mode("entries", "standing aside", actor="t")
    send_pending_orders()
    assert broker.snapshot() == [] and not setup.trades.exists()
    day = DailyRiskState.objects.get(strategy=setup, session_date=trade.session_date)
    assert (day.trades, day.realized_pnl, day.wins, day.won, day.lost) == (0, 0, 0, 0, 0)
    assert daily_rows() == daily_rows_from_trades() == {}
    assert set(Position.objects.values_list("state", flat=True)) == {"cancelled"}  # the next bar's entry too
    assert set(Signal.objects.values_list("action", "state")) == {("buy", "blocked"), ("exit", "blocked")}
    voided = Notification.objects.get(title__startswith="Trade voided")
    assert voided.kind == "emergency" and f"{trade.pnl:+.2f}" in voided.title and "never got" in voided.body


def test_env_override_wins_over_the_database(setup, broker, monkeypatch):
    monkeypatch.setenv("POLICY_KILLSWITCH", "YES")
    w = worker()
    publish([SIGNAL, MID])
    w.poll()
    assert Signal.objects.get().state == "blocked" and broker.snapshot() == []


def test_webhook_500_then_200_is_one_order(setup, broker):
    broker.script({"status": 500, "body": {"message": "busy"}})
    w = worker()
    publish([SIGNAL])
    w.poll()
    sig = Signal.objects.get()
    assert sig.state == "pending" and sig.last_status == 500
    Signal.objects.filter(pk=sig.pk).update(next_attempt_at=None)  # the backoff has passed
    w.poll()
    assert [e["status"] for e in broker.snapshot()] == [500, 200]
    assert Signal.objects.get().state == "sent"


def test_webhook_400_fails_with_the_body_and_alerts_without_retrying(setup, broker):
    broker.script({"status": 400, "body": {"message": "Unknown ticker CL"}})
    w = worker()
    publish([SIGNAL])
    for _ in range(3):
        w.poll()
    sig = Signal.objects.get()
    assert sig.state == "failed" and "Unknown ticker CL" in sig.last_error and len(broker.snapshot()) == 1
    assert Notification.objects.filter(kind="emergency", title__contains=sig.key).exists()
    assert not Position.objects.open().exists()  # the entry never happened


def test_config_change_reaches_the_running_worker_and_bad_config_is_refused(setup, broker):
    w = worker()
    Strategy.objects.filter(pk=setup.pk).update(ibs_entry_high=0.05)  # SIGNAL (IBS 0.1) no longer qualifies
    w._last_config_check = 0
    w.maybe_reload()
    publish([SIGNAL, MID])
    w.poll()
    assert broker.snapshot() == []
    StrategyInstrument.objects.filter(strategy=setup, instrument__root="CL").update(overrides={"ibs_entry_high": 7})
    w._last_config_check = 0
    w.maybe_reload()
    assert w.config.params["CL"].ibs_entry_high == 0.05  # the last good config stays
    assert Notification.objects.filter(title__contains="invalid config").exists()


def test_a_second_worker_is_refused(setup):
    first = Worker("ibs_a")
    first.acquire_lock()
    try:
        with pytest.raises(WorkerLockError, match="another worker for strategy ibs_a is running"):
            Worker("ibs_a").acquire_lock()
    finally:
        first.release_lock()


def test_a_restart_restores_an_open_position_even_with_its_levels_erased(setup, broker):
    w = worker()
    publish([SIGNAL, MID])
    w.poll()
    pos = Position.objects.get(state="open")
    assert pos.filled and pos.stop_price is not None
    Position.objects.filter(pk=pos.pk).update(stop_price=None, target_price=None)  # a hand edit in the database
    again = worker()
    book = again.portfolio.books["CL"].position
    assert book.entry_price == float(pos.entry_price)
    assert round(book.stop, 6) == round(float(pos.entry_price) * 0.99, 6)  # the strategy's 1 % stop
    publish([EXIT], start=T0 + timedelta(hours=2))
    again.poll()
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]
