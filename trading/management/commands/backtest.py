"""`manage.py backtest --strategy NAME`: the strategy as configured, over the bar store."""
import json
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from strategies import ml
from strategies.backtest import Leg, report, run, write_trades_csv
from strategies.params import ParameterError
from trading.marketdata.barstore import load_frame
from trading.models import Strategy


def strategy_legs(strategy: Strategy, *, with_ml: bool) -> list[Leg]:
    legs = []
    for row in strategy.legs.filter(enabled=True).select_related("instrument").order_by("instrument__root"):
        bars = load_frame(row.instrument.root, "1h")
        if bars.empty:
            raise CommandError(f"no hourly bars for {row.instrument.root} in the bar store; run `manage.py warmup`")
        legs.append(Leg(row.instrument.root, bars, row.params(), float(row.instrument.point_value),
                        float(Decimal(row.commission_per_side)), row.size))
    if with_ml:
        frames = {leg.root: leg.bars for leg in legs}
        ml_roots = set(strategy.legs.filter(enabled=True, ml_enabled=True).values_list("instrument__root", flat=True))
        legs = [Leg(**{**leg.__dict__, "ml_scores": ml.scores(frames, leg.root, settings.MODELS_DIR)})
                if leg.root in ml_roots else leg for leg in legs]
    return legs


class Command(BaseCommand):
    help = "Backtest a configured strategy (its instruments, parameters and limits) on the bar store."

    def add_arguments(self, parser):
        parser.add_argument("--strategy", required=True)
        parser.add_argument("--no-ml", action="store_true")
        parser.add_argument("--trades", type=Path)
        parser.add_argument("--report", type=Path)

    def handle(self, *args, strategy, no_ml=False, trades=None, report_path=None, **options):
        report_path = options.get("report")
        try:
            s = Strategy.objects.get(name=strategy)
        except Strategy.DoesNotExist:
            raise CommandError(f"no strategy named {strategy!r}") from None
        try:
            legs = strategy_legs(s, with_ml=not no_ml)
        except (ParameterError, ml.ModelError) as exc:
            raise CommandError(str(exc)) from None
        result = run(legs, max_positions=s.max_positions, use_ml=not no_ml)
        summary = report(result)
        if trades:
            write_trades_csv(result.trades, trades)
        if report_path:
            report_path.write_text(json.dumps({**summary, "trade_list": result.trades}, indent=1, default=str))
        self.stdout.write(json.dumps(summary, default=str))
