"""An hourly stream trimmed (XTRIM) or flushed past the worker's position mid-session: the worker fills
the skipped hours from the bar store and decides what the backtest decides; with the bar store
lacking them too it names the missing hours in an emergency and goes on. The running worker against
real Redis, the database and the TradersPost stand-in."""
from datetime import timedelta

import pytest

from strategies.backtest import Leg, run
from strategies.bars import Bar, frame_from_bars
from strategies.params import IBSParams
from tests.desk import EXIT, MID, SIGNAL, T0, demo_desk, running_worker
from trading.marketdata import streams
from trading.marketdata.barstore import store_bar
from trading.models import Notification, Position, StoredBar
from trading.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)
# T0 signal · fill · four quiet hours · the IBS exit bar (in the trimmed span) · quiet hours after
ROWS = [SIGNAL, MID, MID, MID, MID, MID, EXIT, MID, MID, MID]
TRIMMED = range(2, 8)  # hours published and then removed from the stream before the worker read them


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    return demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix)


def hub_publishes(i: int) -> Bar:
    """What runhub does with each hourly bar: the stream, the bar store, then the watermark past it."""
    o, h, l, c = ROWS[i]
    bar = Bar("CL", "CLZ6", "1h", T0 + i * H, o, h, l, c, 100, 10)
    streams.publish(bar)
    store_bar(bar)
    streams.set_watermark(int((bar.ts + H).timestamp()) * 10**9)
    return bar


def expected_orders() -> list[tuple[str, str]]:
    frame = frame_from_bars([Bar("CL", "CLZ6", "1h", T0 + i * H, *r, 100, 10) for i, r in enumerate(ROWS)])
    result = run([Leg("CL", frame, IBSParams(), 1000.0, 1.25)], max_positions=2, use_ml=False)
    orders = [("buy", t["signal_time"][:19]) for t in result.trades]
    orders += [("exit", t["exit_signal_time"][:19]) for t in result.trades if t["exit_reason"] != "end_of_data"]
    return sorted(orders)


def received(broker) -> list[tuple[str, str]]:
    return sorted((o["action"], o["extras"]["bar_time"][:19]) for o in broker.orders())


def trim_mid_session(w):
    for i in range(2):
        hub_publishes(i)
    w.poll()  # the entry, then its fill
    for i in TRIMMED:
        hub_publishes(i)
    get_redis().xtrim(streams.stream_key("CL", "1h"), maxlen=0)  # gone before the worker read them
    for i in range(TRIMMED.stop, len(ROWS)):
        hub_publishes(i)
    w.poll()
    w.poll()


def test_hours_trimmed_from_the_stream_are_filled_from_the_bar_store_and_orders_equal_the_backtest(desk, broker,
                                                                                                  fault_report):
    w = running_worker()
    trim_mid_session(w)
    want, got = expected_orders(), received(broker)
    fault_report("hourly stream trimmed past the worker", runs=1, expected=len(want), received=len(got),
                 duplicates=len(got) - len(set(got)), lost=len(set(want) - set(got)))
    assert received(broker) == expected_orders() and ("exit", (T0 + 6 * H).isoformat()[:19]) in received(broker)
    assert not Notification.objects.filter(title__contains="hours missing").exists()
    assert w.cursor_ms == int((T0 + (len(ROWS) - 1) * H).timestamp() * 1000)


def test_hours_missing_from_the_bar_store_too_are_named_in_an_emergency_and_the_worker_goes_on(desk, broker):
    w = running_worker()
    for i in range(2):
        hub_publishes(i)
    w.poll()
    for i in TRIMMED:
        hub_publishes(i)
    get_redis().xtrim(streams.stream_key("CL", "1h"), maxlen=0)
    StoredBar.objects.filter(root="CL", ts__gte=T0 + 2 * H).delete()  # the bar store lost them as well
    for i in range(TRIMMED.stop, len(ROWS)):
        hub_publishes(i)
    w.poll()
    alert = Notification.objects.get(kind="emergency", title="ibs_a: CL hours missing from the streams and the bar store")
    named = [f"{T0 + i * H:%Y-%m-%d %H:%M}" for i in TRIMMED]
    assert all(hour in alert.body for hour in named) and "broker-side stop and target" in alert.body
    assert [a for a, _ in received(broker)] == ["buy"]  # the exit bar is lost: no exit decided …
    assert Position.objects.get().state == "open"  # … the position stays open, its brackets at the broker
    assert w.cursor_ms == int((T0 + (len(ROWS) - 1) * H).timestamp() * 1000)  # and the worker went on


def test_a_flushed_redis_is_noticed_like_a_trim(desk, broker, fault_report):
    w = running_worker()
    for i in range(2):
        hub_publishes(i)
    w.poll()
    for i in TRIMMED:
        hub_publishes(i)
    get_redis().delete(streams.stream_key("CL", "1h"))  # what FLUSHALL does to this worker's stream
    for i in range(TRIMMED.stop, len(ROWS)):
        hub_publishes(i)
    w.poll()
    w.poll()
    want, got = expected_orders(), received(broker)
    fault_report("hourly stream deleted (FLUSHALL) past the worker", runs=1, expected=len(want), received=len(got),
                 duplicates=len(got) - len(set(got)), lost=len(set(want) - set(got)))
    assert got == want
