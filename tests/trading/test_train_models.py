"""`manage.py train_models` on the bar store: walk-forward metadata, the data source and the training time."""
import json
from datetime import datetime, timezone

import pytest
from django.core.management import call_command

from strategies.synthetic import strategy_bars
from trading.models import StoredBar, StrategyInstrument

pytestmark = pytest.mark.django_db


def fill_bar_store(roots, hours=3000):
    for root, frame in strategy_bars(roots, hours, seed=3).items():
        StoredBar.objects.bulk_create(
            StoredBar(root=root, timeframe="1h", ts=datetime.fromtimestamp(int(r.ts) // 10**9, tz=timezone.utc),
                      contract=f"{root}Z6", open=r.open, high=r.high, low=r.low, close=r.close, volume=int(r.volume),
                      source="historical") for r in frame.itertuples())


@pytest.mark.parametrize("given, kind", [(None, "databento"), ("generated", "generated")])
def test_train_models_evaluates_walk_forward_and_records_where_the_bars_came_from(webhook_env, tmp_path, monkeypatch,
                                                                                   given, kind):
    monkeypatch.delenv("PINEOPS_DEMO", raising=False)
    call_command("load_demo")
    StrategyInstrument.objects.filter(strategy__name="ibs_a").exclude(instrument__root__in=["CL", "GC"]).update(
        enabled=False)
    StrategyInstrument.objects.filter(strategy__name="ibs_a", instrument__root="GC").update(commission_per_side=3)
    fill_bar_store(["CL", "GC"])
    options = {"data_source": given} if given else {}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    call_command("train_models", strategy="ibs_a", out=tmp_path, folds=3, embargo=12, **options)
    for root in ("CL", "GC"):
        meta = json.loads((tmp_path / f"{root}.json").read_text())
        assert meta["data_source"]["kind"] == kind and meta["data_source"]["dataset"] == "GLBX.MDP3"
        assert meta["data_source"]["bar_store"]["sources"] == ["historical"]
        assert meta["data_source"]["start"].startswith("2024-01-02") and meta["data_source"]["bars"] == 3000
        assert datetime.strptime(meta["trained_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) >= before
        assert len(meta["walk_forward"]["folds"]) == 3 and meta["walk_forward"]["embargo_bars"] == 12
        assert {"with_filter", "without_filter", "helps"} <= set(meta["comparison"])
    assert json.loads((tmp_path / "GC.json").read_text())["commission_per_side"] == 3.0
