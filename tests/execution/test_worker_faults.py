"""What one instrument's failure may not do to the rest: a model that fails when it scores is treated as
a model that failed to load (its leg's policy, one alert), every other instrument and every exit goes
on, and an hour that cannot be processed is tried a few times, recorded, alerted and passed by."""
from datetime import timedelta

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from strategies.ml import save, train_instrument
from strategies.params import IBSParams
from strategies.synthetic import hourly_bars, strategy_bars
from tests.desk import EXIT, MID, SIGNAL, T0, demo_desk, order_root, publish_hours, running_worker
from trading.execution.ledger import Ledger
from trading.execution.worker import MAX_HOUR_ATTEMPTS
from trading.marketdata import streams
from trading.marketdata.barstore import store_bars
from trading.models import Notification, Signal, StrategyInstrument, WorkerCursor

pytestmark = pytest.mark.django_db(transaction=True)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def cl_model(tmp_path_factory):
    """CL's real filter in a CL + GC strategy."""
    out = tmp_path_factory.mktemp("models")
    model, meta = train_instrument(strategy_bars(["CL", "GC"], 3000, seed=3), "CL", IBSParams(), seed=3, note="test")
    save(model, meta, out)
    return out


@pytest.fixture
def desk(settings, monkeypatch, broker, tmp_path, redis_prefix, webhook_env, cl_model):
    settings.MODELS_DIR = cl_model
    strategy = demo_desk(settings, monkeypatch, broker, tmp_path, redis_prefix, roots=("CL", "GC"))
    legs = StrategyInstrument.objects.filter(strategy=strategy)
    legs.filter(instrument__root="CL").update(ml_enabled=True, ml_threshold=0.0)
    for root in ("CL", "GC"):
        store_bars(root, "1h", hourly_bars(root, 400, seed=3, start="2026-10-01"), "test")
    streams.set_watermark(int(T0.timestamp()) * 10**9)
    return strategy


def break_cl_model(worker):
    """What the adversarial round found: a forest fitted on 5 columns behind metadata naming the right 13."""
    wrong = RandomForestClassifier(n_estimators=3, random_state=0).fit(np.random.rand(40, 5), np.arange(40) % 2)
    worker.scoring.models["CL"].model = wrong


def sent(broker):
    return sorted((order_root(o), o["action"], o["extras"]["bar_time"][:13]) for o in broker.orders())


@pytest.mark.parametrize("policy", ["skip_entries", "trade_unfiltered"])
def test_a_model_failing_at_scoring_follows_the_policy_alerts_once_and_stops_nothing_else(desk, broker, policy):
    StrategyInstrument.objects.filter(strategy=desk, instrument__root="CL").update(ml_failure_policy=policy)
    w = running_worker()
    break_cl_model(w)
    for root in ("CL", "GC"):
        publish_hours([SIGNAL, MID, EXIT, MID], root=root)
    w.poll()
    alerts = Notification.objects.filter(kind="emergency", title="ibs_a: ML model for CL unavailable")
    assert alerts.count() == 1 and "scoring failed" in alerts.get().body and "is expecting 5 features" in alerts.get().body
    assert w.cursor_ms == int((T0 + 3 * H).timestamp() * 1000)  # every hour decided: no loop on the first
    gc = [o for o in sent(broker) if o[0] == "GC"]
    assert [a for _, a, _ in gc] == ["buy", "exit"]  # the other instrument trades, its exit goes out
    cl = Signal.objects.get(instrument__root="CL", action="buy")
    if policy == "skip_entries":
        assert (cl.state, cl.risk_control) == ("blocked", "model_policy") and "scoring failed" in cl.state_reason
    else:
        assert cl.state == "sent" and cl.ml_score is None and ("CL", "exit", "2026-11-03T03") in sent(broker)
    publish_hours([SIGNAL, MID], start=T0 + 4 * H, root="CL")
    w.poll()
    assert alerts.count() == 1  # once, however many candidates follow


def test_an_hour_that_cannot_be_processed_is_passed_by_after_its_attempts_and_alerted(desk, broker, monkeypatch):
    StrategyInstrument.objects.filter(strategy=desk, instrument__root="CL").update(ml_enabled=False)
    bad = T0 + 2 * H
    real = Ledger.apply

    def apply(self, ts, *args, **kwargs):
        if ts == bad:
            raise ValueError("a defect that fails this hour every time")
        return real(self, ts, *args, **kwargs)

    monkeypatch.setattr(Ledger, "apply", apply)
    w = running_worker()
    publish_hours([SIGNAL, MID, MID, EXIT, MID], root="CL")
    failures = 0
    for _ in range(MAX_HOUR_ATTEMPTS + 2):  # the run loop: a failed step is rebuilt from the database and retried
        try:
            w.poll()
            break
        except ValueError:
            failures += 1
            w.hours.buffer.clear()
            w.setup()
    assert failures == MAX_HOUR_ATTEMPTS - 1
    alert = Notification.objects.get(kind="emergency", title="ibs_a: hour 2026-11-03 03:00 UTC could not be processed")
    assert f"Tried {MAX_HOUR_ATTEMPTS} times" in alert.body and "broker-side stop and target" in alert.body
    assert WorkerCursor.objects.get(strategy=desk).last_bar_ms == int((T0 + 4 * H).timestamp() * 1000)
    assert [a for _, a, _ in sent(broker)] == ["buy", "exit"]  # the hours after it were decided
