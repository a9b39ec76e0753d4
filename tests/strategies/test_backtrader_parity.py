"""Our backtest, backtrader's broker and the bench's plain loop agree trade for trade (the bench does 1M bars)."""
import importlib.util
import sys
from pathlib import Path

import pytest

from strategies.backtest import Leg, run
from strategies.params import IBSParams
from strategies.synthetic import hourly_bars

spec = importlib.util.spec_from_file_location("backtest_speed", Path(__file__).resolve().parents[2] / "bench" / "backtest_speed.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["backtest_speed"] = bench  # backtrader's metaclass looks the module up
spec.loader.exec_module(bench)


@pytest.mark.parametrize("seed, overrides", [(1, {}), (2, {"stop_loss_pct": 0.4, "take_profit_pct": 0.5}),
                                             (3, {"max_bars_held": 3, "flat_time": "none"})])
def test_same_trades_as_backtrader(seed, overrides):
    frame = hourly_bars("GC", 4000, seed=seed)
    params = IBSParams().with_overrides(overrides)
    ours = [(t["entry_time"], round(t["entry_price"], 9), t["exit_time"], round(t["exit_price"], 9), t["exit_reason"])
            for t in run([Leg("GC", frame, params, 100.0)], product_hours=False).trades]  # backtrader knows no calendar
    fmt = lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    theirs = [(fmt(a), round(b, 9), fmt(c), round(d, 9), r) for a, b, c, d, r in bench.run_backtrader(frame, params)]
    assert len(ours) > 50
    assert ours == theirs
    assert {t[4] for t in ours} >= {"stop_loss", "take_profit", "ibs_exit"}


@pytest.mark.parametrize("seed, overrides", [(4, {}), (5, {"stop_loss_pct": 0.3, "take_profit_pct": 0.3,
                                                          "max_bars_held": 2}), (6, {"flat_time": "none"})])
def test_same_trades_as_the_plain_loop(seed, overrides):
    frame = bench.bench_bars(120_000, seed=seed)  # three blocks: the joins between them too
    params = IBSParams().with_overrides(overrides)
    ours = [(t["entry_time"], t["entry_price"], t["exit_time"], t["exit_price"], t["exit_reason"])
            for t in run([Leg("CL", frame, params, 1000.0)], product_hours=False).trades]
    plain = [(bench.iso(a), b, bench.iso(c), d, r) for a, b, c, d, r in bench.run_plain(frame, params)]
    assert len(ours) > 5000 and ours == plain
