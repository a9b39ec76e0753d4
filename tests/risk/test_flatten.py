"""Flatten: one `exit` per open position of every strategy, delivered once through the outbox, booked
at the market of its send; entries blocked, and entries decided but not sent cancelled."""
from datetime import timedelta
from decimal import Decimal

import pytest

from strategies.bars import Bar, HeldBar
from tests.desk import EXIT, MID, SIGNAL, T0, demo_desk, held_position, publish_hours, publish_minute, running_worker
from trading.execution import traderspost
from trading.execution.outbox import send_pending_orders
from trading.marketdata import streams
from trading.models import Notification, Position, Signal, Strategy, StrategyInstrument, Trade
from trading.risk.killswitch import set_mode

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    return demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix)


@pytest.fixture
def three_open(desk):
    """ibs_a holds CL and GC, ibs_b holds SI; the hub's last prices for each."""
    ibs_b = Strategy.objects.get(name="ibs_b")
    positions = [held_position(desk, "CL", entry=70.0), held_position(desk, "GC", entry=2000.0, size=2),
                 held_position(ibs_b, "SI", entry=30.0)]
    for root, close in (("CL", 70.5), ("GC", 1990.0), ("SI", 30.2)):
        publish_minute(root, close, T0 + 4 * H)
    return positions


def exits_received(broker):
    return sorted((o["extras"]["strategy"], o["ticker"], o["quantity"]) for o in broker.orders() if o["action"] == "exit")


def test_flatten_emits_one_exit_per_open_position_across_strategies_each_delivered_once(three_open, broker):
    set_mode("flatten", "risk off into the close", actor="ops")
    exits = list(Signal.objects.filter(action="exit").order_by("key"))
    assert [(s.strategy.name, s.instrument.root, s.state, s.fill, s.reason) for s in exits] == [
        ("ibs_a", "CL", "pending", "at_send", "flatten"), ("ibs_a", "GC", "pending", "at_send", "flatten"),
        ("ibs_b", "SI", "pending", "at_send", "flatten")]
    assert not Trade.objects.exists()  # a position becomes a trade only once its exit is delivered
    for _ in range(3):  # the sender runs again and again: nothing goes twice
        send_pending_orders()
    assert exits_received(broker) == [("ibs_a", "CLZ6", 1), ("ibs_a", "GCZ6", 2), ("ibs_b", "SIZ6", 1)]
    assert all(o["orderType"] == "market" and "stopLoss" not in o for o in broker.orders() if o["action"] == "exit")
    trades = {t.symbol: t for t in Trade.objects.all()}
    assert {r: (t.exit_price, t.exit_reason, t.exit_via) for r, t in trades.items()} == {
        "CL": (Decimal("70.5"), "flatten", "order"), "GC": (Decimal("1990"), "flatten", "order"),
        "SI": (Decimal("30.2"), "flatten", "order")}
    assert trades["GC"].pnl == (Decimal("1990") - Decimal("2000")) * 100 * 2 - 2 * Decimal("1.25") * 2
    assert not Position.objects.open().exists()
    assert Notification.objects.filter(title="Flatten complete: every position is flat").count() == 1
    set_mode("flatten", "pulled again", actor="ops")  # nothing is open: no exit, one more 'flat' note
    assert Signal.objects.filter(action="exit").count() == 3


def test_flatten_blocks_entries_and_cancels_those_decided_but_not_sent(desk, broker):
    broker.script({"status": 503, "body": {"message": "busy"}})  # the entry waits for a retry
    w = running_worker()
    publish_hours([SIGNAL])
    w.poll()
    waiting = Signal.objects.get(action="buy")
    assert waiting.state == "pending"
    set_mode("flatten", "out", actor="ops")
    waiting.refresh_from_db()
    assert (waiting.state, waiting.risk_control) == ("blocked", "killswitch")
    assert Position.objects.get().state == "cancelled"
    publish_hours([SIGNAL, MID], start=T0 + H)
    w.poll()
    later = Signal.objects.get(action="buy", bar_time=T0 + H)
    assert (later.state, later.risk_control) == ("blocked", "killswitch") and "flatten mode blocks entries" in \
        later.state_reason
    assert len(broker.snapshot()) == 1 and not Position.objects.open().exists()


def test_a_running_worker_hands_a_flattened_position_over_and_decides_no_second_exit(desk, broker):
    w = running_worker()
    publish_hours([SIGNAL, MID])
    w.poll()
    broker.script({"status": 500, "body": {"message": "busy"}})  # the flatten exit waits for a retry
    set_mode("flatten", "out", actor="ops")
    w.poll()
    flat = Signal.objects.get(action="exit")
    assert flat.state == "pending" and w.portfolio.books["CL"].position.exit_held
    publish_hours([EXIT, MID], start=T0 + 2 * H)  # an IBS exit bar: the book decides nothing more
    publish_minute("CL", 100.2, T0 + 4 * H)
    Signal.objects.filter(pk=flat.pk).update(next_attempt_at=None)
    w.poll()
    assert Signal.objects.filter(action="exit").count() == 1
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]
    assert Trade.objects.get().exit_reason == "flatten" and w.portfolio.books["CL"].flat


def test_an_entry_on_its_way_when_flatten_is_pulled_is_flattened_once_it_lands(desk, broker):
    """The broker is taking the entry (the POST in flight) when the operator pulls flatten: the entry
    reaches the broker, so its position gets its own flatten exit."""
    real = traderspost.deliver

    def deliver(url, payload, timeout):
        set_mode("flatten", "pulled while an entry is in flight", actor="ops")
        return real(url, payload, timeout)

    w = running_worker()
    publish_hours([SIGNAL])
    entry_key = "ibs_a:CL:2026-11-03T01:00:00Z:buy"
    w.poll()  # the inline sender posted it with the real deliver; undo and redo it as if in flight
    assert Signal.objects.get(key=entry_key).state == "sent"
    Trade.objects.all().delete()
    Signal.objects.filter(key=entry_key).update(state="pending")
    broker.reset()
    publish_minute("CL", 99.6, T0 + H + timedelta(minutes=2))
    send_pending_orders(deliver=deliver)
    send_pending_orders()
    assert [o["action"] for o in broker.orders()] == ["buy", "exit"]
    flat = Signal.objects.get(action="exit")
    assert flat.reason == "flatten" and flat.state == "sent"
    assert Trade.objects.get().exit_price == Decimal("99.6")


def test_a_flatten_exit_the_broker_refuses_keeps_the_position_open_and_alerts_it(three_open, broker):
    broker.script({"status": 200}, {"status": 400, "body": {"success": False, "message": "Unknown ticker GC"}},
                  {"status": 200})  # the exits go out in the order they were made: CL, GC, SI
    set_mode("flatten", "risk off", actor="ops")
    send_pending_orders()
    gc = Position.objects.get(instrument__root="GC")
    assert gc.state == "open" and gc.exit_signal is None  # the broker still holds it: so do the books
    refused = Signal.objects.get(action="exit", instrument__root="GC")
    assert refused.state == "failed" and "Unknown ticker GC" in refused.last_error
    assert Notification.objects.filter(kind="emergency", title__startswith="Exit not delivered: ibs_a GC").count() == 1
    assert not Notification.objects.filter(title__startswith="Flatten complete").exists()
    assert set(Trade.objects.values_list("symbol", flat=True)) == {"CL", "SI"}


def test_flatten_uses_each_legs_broker_ticker(desk, broker):
    StrategyInstrument.objects.filter(strategy__name="ibs_a", instrument__root="CL").update(
        ticker="{root}{month}{year}")
    held_position(desk, "CL", entry=70.0)
    set_mode("flatten", "out", actor="ops")
    send_pending_orders()
    assert ("ibs_a", "CLZ2026", 1) in exits_received(broker)


def test_a_flatten_after_the_roll_is_priced_and_named_on_the_positions_own_contract(desk, broker):
    """The position is in CLZ6; the front has rolled to CLF7, 3.00 lower. The flatten's exit names CLZ6
    and the trade is booked at CLZ6's own last price (last:CLZ6, as the hub publishes a held contract)."""
    held_position(desk, "CL", entry=70.0)  # CLZ6
    streams.publish(Bar("CL", "CLF7", "1m", T0 + 4 * H, 67.0, 67.0, 67.0, 67.0, 10, 1))  # the root's stream
    streams.publish(HeldBar("CL", "CLZ6", "1m", T0 + 4 * H, 70.4, 70.4, 70.4, 70.4, 10, 1))  # its own
    set_mode("flatten", "out", actor="ops")
    send_pending_orders()
    assert exits_received(broker) == [("ibs_a", "CLZ6", 1)]
    trade = Trade.objects.get()
    assert (trade.contract, trade.exit_price, trade.exit_reason) == ("CLZ6", Decimal("70.4"), "flatten")
