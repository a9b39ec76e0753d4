"""`manage.py train_models --strategy NAME`: train each instrument's ML filter on the bar store."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from strategies.ml import ModelError, train_strategy
from trading.marketdata.barstore import load_frame
from trading.models import Strategy


class Command(BaseCommand):
    help = "Train the per-instrument ML filters of a strategy from the bar store (thin wrapper of strategies.ml)."

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--out", type=Path, default=None, help="default: MODELS_DIR")

    def handle(self, *args, strategy, seed=42, out=None, **options):
        try:
            s = Strategy.objects.get(name=strategy)
        except Strategy.DoesNotExist:
            raise CommandError(f"no strategy named {strategy!r}") from None
        legs = list(s.legs.filter(enabled=True).select_related("instrument"))
        frames = {leg.instrument.root: load_frame(leg.instrument.root, "1h") for leg in legs}
        empty = [root for root, frame in frames.items() if frame.empty]
        if empty:
            raise CommandError(f"no hourly bars for {', '.join(empty)} in the bar store; run `manage.py warmup`")
        try:
            metas = train_strategy(frames, {leg.instrument.root: leg.params() for leg in legs}, out or settings.MODELS_DIR,
                                   seed=seed, note=f"trained by manage.py train_models on the bar store ({strategy})")
        except ModelError as exc:
            raise CommandError(str(exc)) from None
        for root, meta in metas.items():
            self.stdout.write(f"{root}: threshold {meta['threshold']} validation {meta['validation']}")
