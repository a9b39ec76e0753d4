"""A refused model file in the running worker: nothing executed, the leg's ML failure policy applied,
one alert naming the file and the reason."""
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from strategies.bars import Bar
from strategies.features import OWN
from trading.execution.scoring import ModelRegistry
from trading.execution.worker import Worker
from trading.marketdata import streams
from trading.models import Notification, Signal, Strategy, StrategyInstrument
from tests.strategies import hostile_models as hostile

pytestmark = pytest.mark.django_db(transaction=True)
UTC = timezone.utc
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # inside the entry window
SIGNAL = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1: an entry candidate
MID = (99.5, 99.8, 99.2, 99.5)  # no stop, no target, no IBS exit


@pytest.fixture
def setup(settings, redis_prefix, webhook_env, monkeypatch, broker, tmp_path):
    settings.REDIS_PREFIX = redis_prefix
    settings.RUNTIME_DIR = tmp_path
    settings.MODELS_DIR = tmp_path / "models"
    monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", f"{broker.url}/trading/webhook/model-test-token")
    call_command("load_demo")
    legs = StrategyInstrument.objects.filter(strategy__name="ibs_a")
    legs.exclude(instrument__root="CL").update(enabled=False)
    legs.update(ml_enabled=True)
    return Strategy.objects.get(name="ibs_a")


def publish(rows, start=T0):
    for i, (o, h, l, c) in enumerate(rows):
        ts = start + timedelta(hours=i)
        streams.publish(Bar("CL", "CLZ6", "1h", ts, o, h, l, c, 100, 10))
        streams.set_watermark(int((ts + timedelta(hours=1)).timestamp()) * 10**9)


@pytest.mark.parametrize("policy, orders", [("skip_entries", []), ("trade_unfiltered", ["buy"])])
@pytest.mark.parametrize("payload", ["exec_chain", "eval_key", "pickled_array"])
def test_a_hostile_model_is_refused_the_policy_applies_and_one_alert_names_it(setup, broker, tmp_path, policy,
                                                                             orders, payload):
    StrategyInstrument.objects.filter(strategy=setup, instrument__root="CL").update(ml_failure_policy=policy)
    marker = tmp_path / "marker"
    model_file = hostile.write_model(tmp_path / "models", "CL", getattr(hostile, payload)(marker, len(OWN)), list(OWN))
    w = Worker("ibs_a", block_ms=10)
    w.setup()
    assert "CL" not in w.scoring.models and str(model_file) in w.model_errors["CL"]
    w.scoring = ModelRegistry(w.config.strategy, w.config.legs)  # loaded again (as after a config change): one alert
    publish([SIGNAL, MID])
    w.poll()
    assert not marker.exists()  # nothing of the file ran, at load or at the entry candidate
    assert [o["action"] for o in broker.orders()] == orders
    if policy == "skip_entries":
        blocked = Signal.objects.get(action="buy")
        assert (blocked.state, blocked.risk_control) == ("blocked", "model_policy")
        assert "ml model unavailable" in blocked.state_reason
    alerts = Notification.objects.filter(kind="emergency", title__contains="ML model for CL")
    assert alerts.count() == 1
    body = alerts.get().body
    assert str(model_file) in body and "refused" in body and "Policy:" in body


def test_a_sound_model_is_used(setup, broker, tmp_path):
    import skops.io as sio

    hostile.write_model(tmp_path / "models", "CL", sio.dumps(hostile.forest(len(OWN))), list(OWN))
    w = Worker("ibs_a", block_ms=10)
    w.setup()
    assert "CL" in w.scoring.models and not w.model_errors
    assert not Notification.objects.filter(title__contains="ML model").exists()
