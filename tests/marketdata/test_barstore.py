"""Warmup fills the bar store from DBN files (generated and real); commands read it back."""
import json
from datetime import date, datetime, timezone

import pandas as pd
import pytest
from django.core.management import call_command

from strategies.backtest import Leg, run
from strategies.bars import frame_from_bars
from strategies.params import IBSParams
from strategies.synthetic import strategy_bars
from trading.marketdata.barstore import load_frame, store_bars
from tests.conftest import glbx_samples
from tests.marketdata.hubrun import feed
from trading.marketdata.roll import FrontMonth
from trading.models import Contract, StoredBar, Strategy
from trading.sim.market import generate

pytestmark = pytest.mark.django_db



def test_warmup_from_generated_trades_keeps_the_front_the_hub_trades(tmp_path, capsys):
    """The bar store's hourly bars are the hub's, bar for bar, across a roll: the front of each
    session is the one the hub's rule picks from the same definitions and volumes (not simply each
    session's busiest outright: the hub rolls at the boundary after the volume moved)."""
    paths = generate(tmp_path, roots=["CL"], start=date(2026, 11, 2), days=5, seed=4, roll_day=2, trades_per_minute=2)
    call_command("load_demo")
    call_command("warmup", from_dir=tmp_path, roots="CL")
    assert "CL 1h" in capsys.readouterr().out
    run = feed([paths["CL"]], {"CL": FrontMonth("CL")})
    assert [(r.from_contract, r.to_contract) for r in run.rolls] == [("", "CLZ6"), ("CLZ6", "CLF7")]
    hub = frame_from_bars(run.bars["CL"]["1h"])
    stored = load_frame("CL", "1h")
    assert len(stored) == len(hub) > 100
    assert (stored["ts"].to_numpy() == hub["ts"].to_numpy()).all()
    for col in ("open", "high", "low", "close"):
        assert (abs(stored[col].to_numpy() - hub[col].to_numpy()) < 1e-9).all(), col
    assert (stored["volume"].to_numpy() == hub["volume"].to_numpy()).all()
    contracts = dict(StoredBar.objects.filter(root="CL", timeframe="1h").values_list("ts", "contract"))
    assert [contracts[b.ts] for b in run.bars["CL"]["1h"]] == [b.contract for b in run.bars["CL"]["1h"]]
    assert StoredBar.objects.filter(root="CL", timeframe="1d").count() == len(run.bars["CL"]["1d"])
    # … and the definitions are the contracts, with their real expiration
    clz6 = Contract.objects.get(instrument__root="CL", raw_symbol="CLZ6")
    assert clz6.expiration == datetime(2026, 11, 20, 19, 30, tzinfo=timezone.utc)
    assert not Contract.objects.filter(raw_symbol__contains="-").exists()  # spreads are not contracts
    call_command("warmup", from_dir=tmp_path, roots="CL")  # again: nothing new, nothing doubled
    assert "CL 1h: 0 new bars" in capsys.readouterr().out


def test_warmup_reads_the_real_glbx_ohlcv_samples(tmp_path):
    names = ("test_data.ohlcv-1h.dbn.zst", "test_data.ohlcv-1d.dbn.zst", "test_data.mbp-1.dbn.zst",
             "test_data.definition.dbn.zst")
    for name in names:
        (tmp_path / name).write_bytes((glbx_samples() / name).read_bytes())
    call_command("load_demo")
    call_command("warmup", from_dir=tmp_path, roots="ES")
    hours = load_frame("ES", "1h")
    assert len(hours) == 4 and (hours["low"] <= hours["close"]).all() and 3000 < hours["close"].iloc[0] < 4500
    assert StoredBar.objects.filter(root="ES", timeframe="1d").exists()
    esh1 = Contract.objects.get(instrument__root="ES")
    assert (esh1.raw_symbol, esh1.databento_id) == ("ESH1", 5482)
    assert esh1.expiration == datetime(2021, 3, 19, 13, 30, tzinfo=timezone.utc)
    assert esh1.last_session == date(2020, 12, 28) and esh1.last_session_volume > 0


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
    call_command("train_models", strategy="ibs_a", seed=3, out=tmp_path, folds=2)
    meta = json.loads((tmp_path / "CL.json").read_text())
    assert meta["seed"] == 3 and "x_GC_ret_24" in meta["features"] and "bar store" in meta["note"]
    call_command("backtest", strategy="ibs_a")  # the ML form, with the shipped models of MODELS_DIR
    assert '"trades"' in capsys.readouterr().out
