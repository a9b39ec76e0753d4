"""`manage.py train_models --strategy NAME`: train each instrument's ML filter on the bar store, walk-forward."""
import os
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Max, Min

from strategies.ml import ModelError
from strategies.training import summary_line, train_strategy
from trading.marketdata.barstore import load_frame
from trading.models import StoredBar, Strategy


def bar_store_source(roots: list[str], datasets: set[str], given: str | None) -> dict:
    """Where the bars came from: generated (the demo's market) or Databento, from the bar store's records."""
    rows = StoredBar.objects.filter(root__in=roots, timeframe="1h")
    origins = sorted(set(rows.values_list("source", flat=True)))
    span = rows.aggregate(start=Min("ts"), end=Max("ts"))
    kind = given or ("generated" if os.environ.get("PINEOPS_DEMO") == "1" else "databento")
    detail = (f"the demo's generated market (PINEOPS_DEMO=1), bar store sources {', '.join(origins)}"
              if kind == "generated" and not given else f"bar store sources {', '.join(origins)}")
    return {"kind": kind, "dataset": ", ".join(sorted(datasets)) or "GLBX.MDP3", "detail": detail,
            "bar_store": {"sources": origins, "first_bar": span["start"] and span["start"].isoformat(),
                          "last_bar": span["end"] and span["end"].isoformat()}}


class Command(BaseCommand):
    help = ("Train the per-instrument ML filters of a strategy from the bar store: purged walk-forward evaluation "
            "with and without the filter, then the shipped model (thin wrapper of strategies.training).")

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--folds", type=int, default=4, help="walk-forward evaluation folds (default 4)")
        parser.add_argument("--embargo", type=int, default=24, help="bars between a training label and a fold")
        parser.add_argument("--data-source", choices=["generated", "databento"], default=None,
                            help="what the bar store holds (default: generated with PINEOPS_DEMO=1, else databento)")
        parser.add_argument("--out", type=Path, default=None, help="default: MODELS_DIR")

    def handle(self, *args, strategy, seed=42, folds=4, embargo=24, data_source=None, out=None, **options):
        try:
            s = Strategy.objects.get(name=strategy)
        except Strategy.DoesNotExist:
            raise CommandError(f"no strategy named {strategy!r}") from None
        legs = list(s.legs.filter(enabled=True).select_related("instrument"))
        frames = {leg.instrument.root: load_frame(leg.instrument.root, "1h") for leg in legs}
        empty = [root for root, frame in frames.items() if frame.empty]
        if empty:
            raise CommandError(f"no hourly bars for {', '.join(empty)} in the bar store; run `manage.py warmup`")
        source = bar_store_source(list(frames), {leg.instrument.dataset for leg in legs}, data_source)
        try:
            metas = train_strategy(frames, {leg.instrument.root: leg.params() for leg in legs},
                                   out or settings.MODELS_DIR, seed=seed, folds=folds, embargo=embargo,
                                   source=source, trained_at=datetime.now(timezone.utc),
                                   commission_by_root={leg.instrument.root: float(leg.commission_per_side)
                                                       for leg in legs},
                                   note=f"trained by manage.py train_models on the bar store ({strategy})")
        except ModelError as exc:
            raise CommandError(str(exc)) from None
        for root, meta in metas.items():
            self.stdout.write(summary_line(root, meta))
