"""`manage.py prepare_demo`: the demo's market, made once.

Generates synthetic CME trades for every demo instrument in two spans: history (read into the
bar store, so workers start with their indicators and ML features warm) and a live span (what
the local Databento gateway replays to the hub). Each strategy's worker starts right after the
history, so the first replayed hour is its first live decision. Running it again changes nothing.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Max

from trading.marketdata.barstore import warm_from_files
from trading.models import Instrument, StoredBar, Strategy, WorkerCursor
from trading.sim.market import front_month, generate

HISTORY_START = date(2026, 9, 28)
HISTORY_DAYS = 24
LIVE_DAYS = 14  # through the end of daylight time on 2026-11-01


class Command(BaseCommand):
    help = "Generate the demo market (history into the bar store, a live span for the local gateway)."

    def add_arguments(self, parser):
        parser.add_argument("--dir", dest="directory", type=Path, help="where the DBN files go (default: RUNTIME_DIR/demo-market)")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, directory=None, seed=7, **options):
        base = directory or settings.RUNTIME_DIR / "demo-market"
        history, live = base / "history", base / "live"
        roots = sorted(Instrument.objects.values_list("root", flat=True))
        live_start = HISTORY_START + timedelta(days=HISTORY_DAYS)
        if not (live / "done").exists():
            generate(history, roots=roots, start=HISTORY_START, days=HISTORY_DAYS, seed=seed)
            generate(live, roots=roots, start=live_start, days=LIVE_DAYS, seed=seed + 1)
            fronts = {root: front_month(root, live_start) for root in roots}
            for instrument in Instrument.objects.all():
                instrument.active_contract = fronts[instrument.root]
                instrument.save(update_fields=["active_contract", "updated_at"])
            (live / "done").write_text("generated\n")
            self.stdout.write(f"demo market: {len(roots)} roots, history from {HISTORY_START}, live from {live_start}")
        report = warm_from_files(history, set(roots))
        for name, reason in report.bad_files.items():
            self.stderr.write(f"skipped {name}: {reason}")
        self.stdout.write(f"bar store: {sum(report.added.values())} new bars")
        for strategy in Strategy.objects.all():
            legs = strategy.legs.values_list("instrument__root", flat=True)
            last = StoredBar.objects.filter(root__in=list(legs), timeframe="1h").aggregate(last=Max("ts"))["last"]
            if last is None:
                continue
            _, made = WorkerCursor.objects.get_or_create(strategy=strategy,
                                                         defaults={"last_bar_ms": int(last.timestamp() * 1000)})
            if made:
                self.stdout.write(f"{strategy.name}: starts after {last:%Y-%m-%d %H:%M} UTC")
        self.stdout.write(f"live data for the gateway: {live}")

