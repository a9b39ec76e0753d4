"""An instrument's ML model page: age, data source, walk-forward folds, with/without, warnings, escaping;
generated-data models marked wherever they are shown; a model's warnings alerted once."""
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from trading.execution.configuration import load_config
from trading.execution.scoring import ModelRegistry
from trading.modelcard import alert_warnings, model_card
from trading.models import Instrument, Notification, Strategy, StrategyInstrument

pytestmark = pytest.mark.django_db
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
NOW = datetime.now(timezone.utc)


@pytest.fixture
def demo(webhook_env):
    call_command("load_demo")


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", password="pw-for-tests-only"))
    return client


@pytest.fixture
def models(settings, tmp_path):
    """A copy of the shipped models in a directory of the test's own."""
    out = tmp_path / "models"
    shutil.copytree(REPO_MODELS, out)
    settings.MODELS_DIR = out
    return out


def edit(models: Path, root: str, **changes) -> dict:
    path = models / f"{root}.json"
    meta = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps(meta))
    return meta


def page(staff, root: str):
    response = staff.get(reverse("admin:trading_instrument_model", args=[Instrument.objects.get(root=root).pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_shipped_models_carry_the_walk_forward_metadata():
    for path in sorted(REPO_MODELS.glob("*.json")):
        meta = json.loads(path.read_text())
        assert meta["data_source"]["kind"] == "generated" and meta["trained_at"], path.name
        assert len(meta["walk_forward"]["folds"]) == 4 and meta["walk_forward"]["look_ahead"] == []
        for key in ("with_filter", "without_filter"):
            assert set(meta["comparison"][key]) == {"trades", "win_rate", "total_pnl", "max_drawdown"}
        assert "final_model" in meta and meta["training_window"]["end"] < meta["validation_window"]["start"]


def test_model_page_shows_age_source_folds_and_the_comparison(staff, demo, models):
    meta = json.loads((models / "CL.json").read_text())
    html = page(staff, "CL")
    assert "GENERATED DATA" in html and 'data-generated="1"' in html
    assert meta["data_source"]["start"][:10] in html and meta["data_source"]["end"][:10] in html
    assert "days ago" in html and meta["trained_at"] in html
    assert html.count('<tr class="fold') == 4
    for fold in meta["walk_forward"]["folds"]:
        assert f"{fold['threshold']:.2f}" in html and f"{fold['with_filter']['total_pnl']:,.2f}" in html
    with_, without = meta["comparison"]["with_filter"], meta["comparison"]["without_filter"]
    assert f"{with_['total_pnl']:,.2f}" in html and f"{without['max_drawdown']:,.2f}" in html
    # the shipped CL filter loses P&L out of sample: the page says so, as a warning
    assert meta["comparison"]["helps"] is False
    assert 'id="verdict">does not help' in html and "the filter does not help out of sample" in html
    assert "ibs_a" in html  # the strategies that use it, with the threshold in use


def test_a_helping_young_model_has_no_warning(staff, demo, models):
    html = page(staff, "6A")
    assert json.loads((models / "6A.json").read_text())["comparison"]["helps"] is True
    assert 'id="verdict">helps' in html and 'class="model-warning"' not in html


def test_an_old_model_is_flagged_by_the_configured_age(staff, demo, models, settings):
    edit(models, "6A", trained_at=(NOW - timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    settings.MODEL_MAX_AGE_DAYS = 60
    assert 'class="model-warning"' not in page(staff, "6A")
    settings.MODEL_MAX_AGE_DAYS = 30
    html = page(staff, "6A")
    assert "trained 45 days ago" in html and "PINEOPS_MODEL_MAX_AGE_DAYS=30" in html


def test_every_value_of_the_metadata_is_escaped(staff, demo, models):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    meta = edit(models, "GC", note=hostile, final_model=hostile,
                data_source={"kind": "generated", "detail": hostile, "start": hostile, "end": hostile})
    meta["walk_forward"]["folds"][0]["skipped"] = hostile
    edit(models, "GC", walk_forward=meta["walk_forward"])
    for html in (page(staff, "GC"), staff.get(reverse("admin:trading_instrument_changelist")).content.decode()):
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page(staff, "GC")


def test_a_missing_or_broken_model_file_is_said_not_raised(staff, demo, models):
    (models / "HG.json").unlink()
    assert "HG.json not in" in page(staff, "HG")
    (models / "SI.json").write_text("{not json")
    assert "SI.json unreadable" in page(staff, "SI")


def test_instrument_list_and_change_page_mark_generated_data_models(staff, demo, models):
    listing = staff.get(reverse("admin:trading_instrument_changelist")).content.decode()
    cl = Instrument.objects.get(root="CL")
    assert reverse("admin:trading_instrument_model", args=[cl.pk]) in listing
    assert listing.count('class="generated-mark"') == len(list(models.glob("*.json")))
    change = staff.get(reverse("admin:trading_instrument_change", args=[cl.pk])).content.decode()
    assert "GENERATED DATA" in change and reverse("admin:trading_instrument_model", args=[cl.pk]) in change
    edit(models, "CL", data_source={"kind": "databento", "dataset": "GLBX.MDP3", "start": "2025-01-02T00:00:00Z",
                                     "end": "2026-01-05T00:00:00Z"})
    html = page(staff, "CL")
    assert "GENERATED DATA" not in html and "Databento GLBX.MDP3, 2025-01-02 → 2026-01-05" in html


def test_the_model_page_needs_a_login(client, demo, models):
    response = client.get(reverse("admin:trading_instrument_model", args=[Instrument.objects.get(root="CL").pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_models_warnings_are_alerted_once_per_model_file(demo, models, settings):
    settings.MODEL_MAX_AGE_DAYS = 90
    meta = edit(models, "CL", trained_at=(NOW - timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    strategy = Strategy.objects.get(name="ibs_a")
    assert sorted(alert_warnings(strategy, "CL", meta)) == ["no-help", "old"]
    assert alert_warnings(strategy, "CL", meta) == []  # a restart, a second check: nothing more
    StrategyInstrument.objects.filter(strategy=strategy).update(ml_enabled=True)
    ModelRegistry(strategy, load_config("ibs_a").legs)  # the worker's model load checks every leg's model
    ModelRegistry(strategy, load_config("ibs_a").legs)  # and again after a restart
    rows = Notification.objects.filter(title__startswith="ibs_a: ML model for CL (generated data)")
    assert sorted(r.title.split(": ", 2)[2] for r in rows) == ["the filter does not help out of sample",
                                                             "trained 200 days ago (%s), more than "
                                                             "PINEOPS_MODEL_MAX_AGE_DAYS=90" % meta["trained_at"][:10]]
    assert all(r.kind == "info" for r in rows)
    # a helping, young model raises nothing; another model file for CL is a new model: alerted again
    assert not Notification.objects.filter(title__contains="ML model for 6A")
    assert alert_warnings(strategy, "CL", {**meta, "sha256": "f" * 64}) == ["no-help", "old"]
    assert model_card("CL").generated


def test_the_signal_page_marks_a_score_from_a_generated_data_model(staff, demo, models):
    from decimal import Decimal

    from trading.models import Signal, signal_key

    bar = datetime(2026, 11, 4, 15, tzinfo=timezone.utc)
    leg = Strategy.objects.get(name="ibs_a").legs.get(instrument__root="CL")
    signal = Signal.objects.create(key=signal_key("ibs_a", "CL", bar, "buy"), strategy=leg.strategy,
                                   instrument=leg.instrument, contract="CLZ6", bar_time=bar, action="buy", quantity=1,
                                   signal_price=Decimal("70.6"), reason="entry", ibs=0.1, ml_score=0.71,
                                   ml_threshold=0.55, state="sent", payload={})
    html = staff.get(reverse("admin:trading_signal_change", args=[signal.pk])).content.decode()
    assert "model trained on GENERATED DATA" in html
    assert reverse("admin:trading_instrument_model", args=[leg.instrument_id]) in html
    edit(models, "CL", data_source={"kind": "databento", "dataset": "GLBX.MDP3"})
    html = staff.get(reverse("admin:trading_signal_change", args=[signal.pk])).content.decode()
    assert "GENERATED DATA" not in html and "score 0.7100 ≥ threshold 0.55" in html
