import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.backtest import Leg, main, report, run
from strategies.params import IBSParams
from strategies.synthetic import hourly_bars
from tests.strategies.builders import hourly

ROOT = Path(__file__).resolve().parents[2]


def write_bars(path: Path, frame):
    out = frame.copy()
    out["ts"] = [__import__("pandas").Timestamp(t, tz="UTC").isoformat() for t in out["ts"]]
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def bars_csv(tmp_path):
    return write_bars(tmp_path / "cl.csv", hourly_bars("CL", 1500, seed=3))


def test_cli_writes_trades_report_and_plot(bars_csv, tmp_path):
    out = tmp_path / "trades.csv"
    result = subprocess.run([sys.executable, "-m", "strategies.backtest", str(bars_csv), "--symbol", "CL", "--no-ml",
                             "--trades", str(out), "--report", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert rows and {"symbol", "side", "entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl",
                     "pnl_percent", "exit_reason", "ibs_entry", "ibs_exit", "ml_score"} <= set(rows[0])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["trades"] == len(rows)
    assert rep["total_pnl"] == pytest.approx(sum(float(r["pnl"]) for r in rows), abs=0.01)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # point value 1000 and commission 1.25 by default for CL
    r = rows[0]
    expected = (float(r["exit_price"]) - float(r["entry_price"])) * 1000 - 2.5
    assert float(r["pnl"]) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("mutate, words", [
    (lambda f: f.drop(columns=["low"]), "missing column(s) low"),
    (lambda f: f.iloc[[0, 2, 1] + list(range(3, len(f)))], "line 4: timestamps not in ascending order"),
    (lambda f: f.iloc[[0, 1, 1] + list(range(3, len(f)))], "line 4: duplicate timestamp"),
    (lambda f: f.assign(high=[f["low"].iloc[0] - 1] + list(f["high"].iloc[1:])), "line 2: high is below low"),
    (lambda f: f.assign(close=[None] * 5 + list(f["close"].iloc[5:])), "line 2: close is missing or not a number"),
])
def test_bad_input_is_one_clear_error_and_leaves_no_file(tmp_path, capsys, mutate, words):
    frame = mutate(hourly_bars("CL", 50, seed=3))
    path = write_bars(tmp_path / "bad.csv", frame)
    out = tmp_path / "trades.csv"
    assert main([str(path), "--symbol", "CL", "--no-ml", "--trades", str(out), "--report", str(tmp_path / "r.json")]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("args, words", [
    (["--set", "stop_loss_pctt=2"], "stop_loss_pctt: unknown parameter"),
    (["--set", "ibs_entry_high=1.5"], "ibs_entry_high: 1.5 is outside [0, 1]"),
    (["--set", "max_bars_held=x"], "max_bars_held: 'x' is not a valid int"),
    (["--size", "0"], "size: 0 must be at least 1"),
])
def test_bad_parameter_is_named(bars_csv, tmp_path, capsys, args, words):
    out = tmp_path / "trades.csv"
    assert main([str(bars_csv), "--symbol", "CL", "--no-ml", "--trades", str(out), *args]) == 2
    assert words in capsys.readouterr().err and not out.exists()


def test_single_symbol_ml_needs_the_other_instruments(bars_csv, tmp_path, capsys):
    assert main([str(bars_csv), "--symbol", "CL", "--trades", str(tmp_path / "t.csv")]) == 2
    assert "also reads the bars of" in capsys.readouterr().err


prices = st.lists(st.tuples(st.floats(95, 105), st.floats(0, 2), st.floats(0, 2), st.floats(0, 1)),
                  min_size=5, max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=prices, b=prices, max_positions=st.integers(1, 2))
def test_properties_pnl_sums_and_no_overlap(a, b, max_positions):
    def frame(rows):
        bars = []
        for mid, up, down, where in rows:
            high, low = mid + up, mid - down
            bars.append((low + (high - low) * where, high, low, low + (high - low) * (1 - where)))
        return hourly(bars)

    legs = [Leg("CL", frame(a), IBSParams(), 1000.0), Leg("GC", frame(b), IBSParams(), 100.0)]
    result = run(legs, max_positions=max_positions)
    assert report(result)["total_pnl"] == pytest.approx(sum(t["pnl"] for t in result.trades), abs=0.01)
    for root in ("CL", "GC"):
        mine = sorted((t["entry_time"], t["exit_time"]) for t in result.trades if t["symbol"] == root)
        for (_, exit_a), (entry_b, _) in zip(mine, mine[1:]):
            assert entry_b >= exit_a  # one position at a time per instrument
    # never more than max_positions open at once
    points = sorted([(t["entry_time"], 1) for t in result.trades] + [(t["exit_time"], -1) for t in result.trades],
                    key=lambda p: (p[0], p[1]))
    open_now = 0
    for _, delta in points:
        open_now += delta
        assert open_now <= max_positions
