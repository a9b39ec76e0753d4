"""The array backtest (strategies.arraybacktest) makes the per-bar Portfolio.step path's trades, skips and
pending entries exactly, over random parameters, portfolios and ML scores on generated bars; the cases it
cannot take go the per-bar way and say so; its money rule is strategies.pnl's to the cent."""
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.backtest import Leg, main, report, run
from strategies.params import IBSParams
from strategies.pnl import trade_money
from strategies.pnlarrays import trade_cents
from strategies.synthetic import strategy_bars
from tests.strategies.builders import MID, leg

ROOT = Path(__file__).resolve().parents[2]
ROOTS = ["6A", "CL", "ES", "GC", "YM"]
STARTS = ["2026-11-20", "2026-12-20", "2027-03-01", "2045-12-18"]  # Thanksgiving, Christmas, DST, the calendar's end


def same(legs, **kw):
    arrays, per_bar = run(legs, **kw), run(legs, engine="per_bar", **kw)
    assert arrays.engine == "arrays" and per_bar.engine.startswith("per-bar")
    for i, (a, b) in enumerate(zip(arrays.trades, per_bar.trades)):
        assert a == b, f"trade {i}"
    assert len(arrays.trades) == len(per_bar.trades)
    assert arrays.skipped == per_bar.skipped
    assert arrays.pending_entries == per_bar.pending_entries
    assert (arrays.bars, arrays.bars_in_position) == (per_bar.bars, per_bar.bars_in_position)
    return arrays


params = st.fixed_dictionaries({
    "ibs_entry_high": st.sampled_from([0.1, 0.2, 0.35]),
    "ibs_exit_low": st.sampled_from([0.6, 0.8, 0.95]),
    "stop_loss_pct": st.sampled_from([0.2, 0.5, 1.0]),
    "take_profit_pct": st.sampled_from([0.3, 1.0, 2.0]),
    "max_bars_held": st.integers(1, 12),
    "entry_windows": st.sampled_from(["00:00-15:00,17:00-24:00", "00:00-24:00", "02:30-11:00,18:00-23:00"]),
    "flat_time": st.sampled_from(["15:00", "none", "09:30", "23:00"]),
    "window_tz": st.sampled_from(["UTC", "America/Chicago"]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=params, seed=st.integers(0, 10_000), count=st.integers(1, 4), hours=st.integers(30, 500),
       start=st.sampled_from(STARTS), max_positions=st.sampled_from([None, 1, 2, 3]), ml=st.booleans(),
       product_hours=st.booleans())
def test_the_arrays_make_the_per_bar_steps_trades(p, seed, count, hours, start, max_positions, ml, product_hours):
    rng = np.random.default_rng(seed)
    roots = list(rng.choice(ROOTS, count, replace=False))
    frames = strategy_bars(roots, hours, seed=seed, start=start)
    legs = []
    for i, (root, frame) in enumerate(frames.items()):
        frame = frame.iloc[: len(frame) - i * 7]  # legs of different lengths: bar times not shared
        scores = rng.uniform(0, 1, len(frame))
        scores[rng.uniform(0, 1, len(frame)) < 0.1] = np.nan
        legs.append(Leg(root, frame.reset_index(drop=True), IBSParams(**p), float(10 + i), 1.25 + i, 1 + i % 2,
                        scores if i % 2 == 0 else None))
    same(legs, max_positions=max_positions, use_ml=ml, product_hours=product_hours)


@pytest.mark.parametrize("seed", range(3))
def test_a_whole_strategy_over_months_is_the_same_trade_for_trade(seed):
    frames = strategy_bars(["6A", "6C", "6M", "CL", "GC", "HG"], 3000, seed=seed, start="2026-06-01")
    rng = np.random.default_rng(seed)
    legs = [Leg(root, frame, IBSParams(), 1000.0, 4.5, 1, rng.uniform(0.2, 0.9, len(frame)))
            for root, frame in frames.items()]
    result = same(legs, max_positions=2)
    reasons = {t["exit_reason"] for t in result.trades}
    assert {"stop_loss", "take_profit", "ibs_exit", "max_bars", "flat_time"} <= reasons
    assert any("max positions" in s["reason"] for s in result.skipped)
    assert any("ml score" in s["reason"] for s in result.skipped)


def test_daily_bars_and_an_entry_on_the_last_bar_are_the_same():
    signal = (100.0, 101.0, 99.0, 99.2)
    same([leg("CL", [MID, signal, MID, (99.5, 99.9, 99.1, 99.8), signal])])
    same([leg("CL", [MID, signal, MID, signal, MID]), leg("GC", [signal, MID, signal, MID])], timeframe="1d",
         max_positions=1)


def test_a_veto_an_opening_book_or_a_roll_take_the_per_bar_path_and_say_so():
    legs = [leg("CL", [MID, MID])]
    assert run(legs).engine == "arrays"
    assert "veto" in run(legs, entry_block=lambda root, ts: None).engine
    opened = run([Leg("CL", legs[0].bars, IBSParams(), 1000.0, opening={"pending_entry": None})])
    assert opened.engine.startswith("per-bar") and "opening book" in opened.engine
    rolled = Leg("CL", legs[0].bars, IBSParams(), 1000.0, contracts=("CLZ6", "CLF7"))
    assert "more than one contract" in run([rolled]).engine


@pytest.mark.parametrize("point_value, size, commission", [(1000.0, 1, 1.25), (100000.0, 3, 4.5), (5.0, 2, 0.0),
                                                           (12.5, 7, 2.375)])
def test_the_money_rule_over_arrays_is_trade_money_to_the_cent(point_value, size, commission):
    rng = np.random.default_rng(int(point_value))
    entry = np.round(rng.uniform(0.5, 40_000, 4000), rng.integers(0, 6))
    exit_ = entry * rng.uniform(0.97, 1.03, len(entry))  # stop and target prices: off the tick
    exit_[:50] = np.arange(1, 101, 2)[:50] / 1024 + 70  # a 9th-decimal tie in binary
    exit_[50:60] = rng.uniform(1e6, 1e8, 10)  # beyond 15 digits
    cents = trade_cents(entry, exit_, point_value, size, commission)
    expected = [trade_money(a, b, point_value, size, commission) for a, b in zip(entry.tolist(), exit_.tolist())]
    assert [Decimal(int(c)) / 100 for c in cents.tolist()] == expected


def test_the_cli_without_ml_imports_neither_sklearn_nor_skops(tmp_path):
    frame = strategy_bars(["CL"], 300, seed=2)["CL"]
    frame.assign(ts=pd.to_datetime(frame["ts"], utc=True).astype(str)).to_csv(tmp_path / "cl.csv", index=False)
    code = ("import sys; from strategies.backtest import main; "
            f"main([{str(tmp_path / 'cl.csv')!r}, '--symbol', 'CL', '--no-ml', '--trades', {str(tmp_path / 't.csv')!r}]);"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'skops', 'scipy'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_bars_past_the_calendar_are_backtested_and_reported_with_a_note(tmp_path, capsys):
    frame = strategy_bars(["CL"], 600, seed=5, start="2045-12-01")["CL"]
    result = same([Leg("CL", frame, IBSParams(), 1000.0)])
    assert result.trades and result.trades[-1]["exit_time"] > "2046"
    assert report(result)["trades"] == len(result.trades)  # no ValueError from the session dates
    frame.assign(ts=pd.to_datetime(frame["ts"], utc=True).astype(str)).to_csv(tmp_path / "cl.csv", index=False)
    assert main([str(tmp_path / "cl.csv"), "--symbol", "CL", "--no-ml", "--trades", str(tmp_path / "t.csv")]) == 0
    assert "past the CME calendar" in capsys.readouterr().err


@pytest.mark.parametrize("day", ["2026-11-27", "2026-12-24"])
def test_early_closes_with_bars_after_the_close_are_the_same(day):
    """tests/execution/test_early_closes.py's session (the worker against the backtest), arrays against steps."""
    start = pd.Timestamp(day, tz="UTC").to_pydatetime().replace(hour=6)
    signal = (100.0, 100.5, 99.5, 99.55)
    rows = [signal if h in (8, 13, 17, 19, 20) else MID for h in range(6, 22)]
    legs = [leg(root, rows, start=start, point_value=1.0, flat_time="none", max_bars_held=20)
            for root in ("6A", "CL", "ES")]
    result = same(legs, max_positions=3, use_ml=False)
    assert "early_close" in {t["exit_reason"] for t in result.trades}
    assert any("market is closed" in s["reason"] for s in result.skipped)
