"""Every refused entry, whatever refused it, is a BLOCKED signal row naming the control, with the
reason, the entry's IBS and its ML score — decided by the running worker, scored by a real model."""
import math
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.db import connection

from strategies.calendar import session_date
from strategies.features import feature_row
from strategies.ml import train_strategy
from strategies.params import IBSParams
from strategies.synthetic import hourly_bars, strategy_bars
from tests.desk import MID, SIGNAL, T0, demo_desk, publish_hours, running_worker
from trading.marketdata import streams
from trading.marketdata.barstore import store_bars
from trading.models import DailyRiskState, Signal, Strategy, StrategyInstrument
from trading.risk.daily import record_realized
from trading.risk.killswitch import set_mode

pytestmark = pytest.mark.django_db(transaction=True)
SIGNAL_IBS = 0.1


@pytest.fixture(scope="module")
def cl_model(tmp_path_factory) -> Path:
    """A real CL filter for a one-instrument strategy, trained on generated bars."""
    out = tmp_path_factory.mktemp("models")
    train_strategy(strategy_bars(["CL"], 3000, seed=3), {"CL": IBSParams()}, out, seed=3, note="test model")
    return out


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env, cl_model):
    """ibs_a on CL with the ML filter on, warm: 400 hours of history in the bar store."""
    settings.MODELS_DIR = cl_model
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, ml=True)
    StrategyInstrument.objects.filter(strategy=strategy).update(ml_threshold=0.0)  # the filter passes all
    store_bars("CL", "1h", hourly_bars("CL", 400, seed=3, start="2026-10-01"), "test")
    streams.set_watermark(int(T0.timestamp()) * 10**9)  # the market is at T0 when the worker first starts
    return strategy


def blocked_entry() -> Signal:
    row = Signal.objects.get(action="buy")
    assert row.state == "blocked" and row.quantity == 1 and row.signal_price == Decimal("99.2")
    return row


def decide_the_signal_bar(w):
    publish_hours([SIGNAL, MID])
    w.poll()


def test_a_killswitch_entry_block_is_a_row_with_its_ibs_and_ml_score(desk, broker):
    set_mode("entries", "standing aside", actor="ops")
    w = running_worker()
    decide_the_signal_bar(w)
    row = blocked_entry()
    assert row.risk_control == "killswitch" and "entries mode blocks entries" in row.state_reason
    assert row.ibs == pytest.approx(SIGNAL_IBS, abs=1e-9) and 0.0 <= row.ml_score <= 1.0
    assert broker.snapshot() == []


def test_the_environment_override_is_named_as_the_control(desk, broker, monkeypatch):
    monkeypatch.setenv("POLICY_KILLSWITCH", "yes")
    w = running_worker()
    decide_the_signal_bar(w)
    row = blocked_entry()
    assert row.risk_control == "env" and row.state_reason.startswith("POLICY_KILLSWITCH")
    assert row.ml_score is not None and broker.snapshot() == []


def test_the_daily_stop_blocks_the_entry_as_a_row(desk, broker):
    record_realized(desk, session_date(T0 + timedelta(hours=1)), Decimal("-2000000"))
    w = running_worker()
    decide_the_signal_bar(w)
    row = blocked_entry()
    assert row.risk_control == "daily_stop" and row.state_reason.startswith("daily stop:")
    assert row.ibs == pytest.approx(SIGNAL_IBS, abs=1e-9) and row.ml_score is not None


def test_an_unreadable_daily_risk_state_blocks_the_entry_as_a_row_with_its_ibs_and_ml_score(desk, broker):
    """The daily risk table really cannot be read (renamed away under the running worker)."""
    w = running_worker()
    table = DailyRiskState._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        decide_the_signal_bar(w)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    row = blocked_entry()
    assert row.risk_control == "unreadable" and "daily risk state unreadable" in row.state_reason
    assert row.ibs == pytest.approx(SIGNAL_IBS, abs=1e-9) and 0.0 <= row.ml_score <= 1.0
    assert broker.snapshot() == []


def test_a_model_that_cannot_load_blocks_entries_by_the_legs_policy(desk, broker, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "no-models"
    w = running_worker()
    decide_the_signal_bar(w)
    row = blocked_entry()
    assert row.risk_control == "model_policy" and row.state_reason.startswith("ml model unavailable")
    assert row.ibs == pytest.approx(SIGNAL_IBS, abs=1e-9) and row.ml_score is None  # there is no model to score with


def test_the_ml_filter_refusing_an_entry_is_a_row_with_the_score(desk, broker):
    StrategyInstrument.objects.filter(strategy=desk).update(ml_threshold=1.0)  # no score reaches it
    w = running_worker()
    decide_the_signal_bar(w)
    row = blocked_entry()
    assert row.risk_control == "ml_filter" and "below threshold 1.0" in row.state_reason
    assert f"{row.ml_score:.3f}" in row.state_reason
    # The row keeps what the decision was made with: the threshold, and the features the model scored, which
    # give the recorded score again.
    assert row.ml_threshold == 1.0
    expected = feature_row(w.frames, "CL", int(row.bar_time.timestamp()) * 1_000_000_000)
    assert sorted(row.features) == sorted(expected.index)  # (PostgreSQL's jsonb keeps keys in an order of its own)
    assert [math.nan if row.features[k] is None else row.features[k] for k in expected.index] == pytest.approx([round(float(v), 6) for v in expected], nan_ok=True)
    model = w.scoring.models["CL"]
    assert float(model.probability(pd.DataFrame([expected]))[0]) == pytest.approx(row.ml_score, abs=1e-12)
    stored = pd.DataFrame([[row.features[k] for k in expected.index]], columns=expected.index).astype(float)
    assert float(model.probability(stored)[0]) == pytest.approx(row.ml_score, abs=1e-4)


def test_max_positions_refusing_an_entry_is_a_row(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env):
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("CL", "GC"))
    Strategy.objects.filter(pk=strategy.pk).update(max_positions=1)
    w = running_worker()
    publish_hours([SIGNAL, MID], root="CL")
    publish_hours([(100.0, 101.0, 99.0, 99.3), MID], root="GC")  # IBS 0.15: CL's 0.1 wins the one slot
    w.poll()
    assert Signal.objects.get(instrument__root="CL").state == "sent"
    row = Signal.objects.get(instrument__root="GC")
    assert (row.state, row.risk_control) == ("blocked", "max_positions") and row.ibs == pytest.approx(0.15)
    assert [o["ticker"] for o in broker.orders()] == ["CLZ6"]  # the front contract, never the root
