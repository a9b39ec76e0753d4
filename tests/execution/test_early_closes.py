"""CME early closes (Thanksgiving Friday, Christmas Eve 2026) for CL, 6A and ES, each by its own product
hours from the calendar library: no order is decided while a product's market is closed, no entry
in the last bar before its early close, a position still open is exited before it — and the running
worker's orders equal the backtest's on the same bars."""
from datetime import datetime, timedelta, timezone

import pytest

from strategies.backtest import Leg, run
from strategies.bars import Bar, frame_from_bars
from strategies.calendar import early_close, is_trading
from strategies.params import IBSParams
from tests.desk import MID, demo_desk, running_worker
from trading.marketdata import streams
from trading.models import Instrument, Signal, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db(transaction=True)
UTC = timezone.utc
H = timedelta(hours=1)
ROOTS = ("6A", "CL", "ES")
SIGNAL = (100.0, 100.5, 99.5, 99.55)  # IBS 0.05, and never near a 1 % stop or target
PARAMS = {"flat_time": "none", "max_bars_held": 20}  # only the early close can force a position flat
DAYS = {"thanksgiving friday": datetime(2026, 11, 27, tzinfo=UTC), "christmas eve": datetime(2026, 12, 24, tzinfo=UTC)}


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("6A", "CL"))
    StrategyInstrument.objects.create(strategy=strategy, instrument=Instrument.objects.get(root="ES"), ml_enabled=False)
    Strategy.objects.filter(pk=strategy.pk).update(max_positions=3, **PARAMS)
    return strategy


def session_bars(day: datetime) -> dict[str, list[Bar]]:
    """From 06:00 UTC to 21:00 UTC: an IBS entry signal every few hours, calm bars between (no stop, no target).
    The generated data keeps trading after a product's early close, as a replay may: the worker must not."""
    out = {}
    for root in ROOTS:
        bars = []
        for h in range(6, 22):
            ts = day.replace(hour=h)
            o, hi, lo, c = SIGNAL if h in (8, 13, 17, 19, 20) else MID
            bars.append(Bar(root, f"{root}Z6", "1h", ts, o, hi, lo, c, 100, 10))
        out[root] = bars
    return out


def decided_at(signal) -> datetime:
    return signal.bar_time + H


@pytest.mark.parametrize("name", sorted(DAYS))
def test_no_order_after_a_products_early_close_and_the_forced_flat_comes_before_it(desk, broker, name):
    day = DAYS[name]
    bars = session_bars(day)
    closes = {root: early_close(root, day.replace(hour=12)) for root in ROOTS}
    assert all(closes.values()), closes  # each product really closes early that day
    streams.set_watermark(int(day.replace(hour=6).timestamp()) * 10**9)
    w = running_worker()
    for i in range(len(bars["CL"])):
        for root in ROOTS:
            streams.publish(bars[root][i])
        streams.set_watermark(int((bars["CL"][i].ts + H).timestamp()) * 10**9)
        w.poll()

    sent = Signal.objects.filter(state="sent").select_related("instrument")
    for sig in sent:
        root, at = sig.instrument.root, decided_at(sig)
        assert is_trading(root, at) and at < closes[root], (sig.key, closes[root])  # never after the close
        if sig.action == "buy":
            assert at + H <= closes[root], sig.key  # never in the last bar before it
    forced = {s.instrument.root: decided_at(s) for s in sent if s.action == "exit" and s.reason == "early_close"}
    assert set(forced) == set(ROOTS) and all(at < closes[root] for root, at in forced.items())  # flat before it
    refused = Signal.objects.filter(state="blocked", risk_control="market_closed")
    assert {s.instrument.root for s in refused} == set(ROOTS)
    assert all("market is closed" in s.state_reason for s in refused)  # the signals after each close

    legs = [Leg(root, frame_from_bars(bars[root]), IBSParams(**PARAMS), 1.0) for root in ROOTS]
    expected = run(legs, max_positions=3, use_ml=False)
    want = sorted([(t["symbol"], "buy", t["signal_time"][:19]) for t in expected.trades] +
                  [(t["symbol"], "exit", t["exit_signal_time"][:19]) for t in expected.trades
                   if t["exit_reason"] != "end_of_data"])
    root_of = {bar.contract: root for root in ROOTS for bar in bars[root]}  # orders name contracts, never roots
    got = sorted((root_of[o["ticker"]], o["action"], o["extras"]["bar_time"][:19]) for o in broker.orders())
    assert got == want  # the worker decides as the backtest does, early closes included
