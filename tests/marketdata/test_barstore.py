"""Warmup fills the bar store from DBN files (generated and real); commands read it back."""
import json
from datetime import date

import pandas as pd
import pytest
from django.core.management import call_command

from strategies.backtest import Leg, run
from strategies.calendar import session_dates
from strategies.params import IBSParams
from strategies.synthetic import strategy_bars
from trading.marketdata.barstore import load_frame, store_bars
from trading.models import StoredBar, Strategy
from trading.sim.market import generate
from tests.conftest import glbx_samples

pytestmark = pytest.mark.django_db



def test_warmup_from_generated_trades_keeps_the_busiest_outright_per_session(tmp_path, capsys):
    paths = generate(tmp_path, roots=["CL"], start=date(2026, 11, 2), days=5, seed=4, roll_day=2, trades_per_minute=2)
    call_command("warmup", from_dir=tmp_path, roots="CL")
    assert "CL 1h" in capsys.readouterr().out
    import databento as db

    trades = db.DBNStore.from_file(paths["CL"]).to_df(price_type="float").reset_index()
    trades = trades[~trades["symbol"].str.contains("-")]
    trades["session"] = session_dates(trades["ts_event"].astype("int64").to_numpy())
    volume = trades.groupby(["session", "symbol"])["size"].sum().reset_index()
    busiest = volume.sort_values(["session", "size", "symbol"]).groupby("session").tail(1)
    front = trades.merge(busiest[["session", "symbol"]], on=["session", "symbol"])
    hourly = front.groupby(front["ts_event"].dt.floor("h")).agg(open=("price", "first"), high=("price", "max"),
                                                                low=("price", "min"), close=("price", "last"),
                                                                volume=("size", "sum"))
    stored = load_frame("CL", "1h")
    assert len(stored) == len(hourly)
    assert (abs(stored["close"].to_numpy() - hourly["close"].to_numpy()) < 1e-9).all()
    assert (stored["volume"].to_numpy() == hourly["volume"].to_numpy()).all()
    assert StoredBar.objects.filter(root="CL", timeframe="1d").count() == trades["session"].nunique()
    call_command("warmup", from_dir=tmp_path, roots="CL")  # again: nothing new, nothing doubled
    assert "CL 1h: 0 new bars" in capsys.readouterr().out


def test_warmup_reads_the_real_glbx_ohlcv_samples(tmp_path):
    for name in ("test_data.ohlcv-1h.dbn.zst", "test_data.ohlcv-1d.dbn.zst", "test_data.mbp-1.dbn.zst"):
        (tmp_path / name).write_bytes((glbx_samples() / name).read_bytes())
    call_command("warmup", from_dir=tmp_path, roots="ES")
    hours = load_frame("ES", "1h")
    assert len(hours) == 4 and (hours["low"] <= hours["close"]).all() and 3000 < hours["close"].iloc[0] < 4500
    assert StoredBar.objects.filter(root="ES", timeframe="1d").exists()


def test_warmup_without_a_key_or_files_says_what_to_do(monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    with pytest.raises(CommandError, match="DATABENTO_API_KEY is not set .*--from-dir"):
        call_command("warmup")


@pytest.fixture
def stored_strategy(webhook_env):
    call_command("load_demo")
    roots = ["6A", "6C", "6M", "CL", "GC", "HG"]
    frames = strategy_bars(roots, 2500, seed=21)
    for root, frame in frames.items():
        store_bars(root, "1h", frame, "test")
    return frames


def test_manage_backtest_equals_the_library_on_the_same_bars(stored_strategy, capsys, tmp_path):
    call_command("backtest", strategy="ibs_a", no_ml=True, trades=tmp_path / "t.csv")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    s = Strategy.objects.get(name="ibs_a")
    legs = [Leg(r, f, IBSParams(), 1.0) for r, f in stored_strategy.items()]
    expected = run(legs, max_positions=s.max_positions, use_ml=False)
    assert summary["trades"] == len(expected.trades) > 50
    assert len(pd.read_csv(tmp_path / "t.csv")) == summary["trades"]


def test_manage_train_models_writes_verified_artifacts(stored_strategy, tmp_path, capsys):
    call_command("train_models", strategy="ibs_a", seed=3, out=tmp_path)
    meta = json.loads((tmp_path / "CL.json").read_text())
    assert meta["seed"] == 3 and "x_GC_ret_24" in meta["features"] and "bar store" in meta["note"]
    call_command("backtest", strategy="ibs_a")  # the ML form, with the shipped models of MODELS_DIR
    assert '"trades"' in capsys.readouterr().out
