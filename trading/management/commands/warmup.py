"""`manage.py warmup`: fill the bar store (hourly and daily bars) and the contracts, so workers start
warm and the hub knows every root's contracts on its first start.

From Databento (`--days`): the cost is printed before anything is downloaded, and a download above
the configured amount (`--max-cost`, PINEOPS_WARMUP_MAX_COST) needs `--yes`; downloads are cached,
so a second run downloads nothing. From a directory (`--from-dir`): DBN files as they are.
"""
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.config import ConfigError, resolve
from trading.marketdata import history
from trading.marketdata.barstore import warm_from_files, warm_from_paths
from trading.models import Instrument


class Command(BaseCommand):
    help = "Load hourly and daily bars and the contracts into the database from Databento's historical API or DBN files."

    def add_arguments(self, parser):
        parser.add_argument("--from-dir", type=Path, help="read DBN files (trades or ohlcv, and definitions) from here")
        parser.add_argument("--days", type=int, default=370, help="history to fetch from Databento (calendar days)")
        parser.add_argument("--end", type=lambda s: datetime.combine(datetime.fromisoformat(s).date(), time(),
                                                                     tzinfo=timezone.utc),
                            help="last day fetched, exclusive (YYYY-MM-DD; default: today, UTC)")
        parser.add_argument("--roots", help="comma-separated roots (default: every instrument)")
        parser.add_argument("--yes", action="store_true", help="download even when it costs more than --max-cost")
        parser.add_argument("--max-cost", type=float, default=None,
                            help="US$ above which a download needs --yes (default: PINEOPS_WARMUP_MAX_COST)")
        parser.add_argument("--retries", type=int, default=5, help="retries of a request Databento asks to retry")

    def handle(self, *args, from_dir=None, days=370, end=None, roots=None, yes=False, max_cost=None, retries=5,
               **options):
        wanted = {r.strip().upper() for r in roots.split(",")} if roots else set(
            Instrument.objects.values_list("root", flat=True))
        if from_dir is not None:
            if not from_dir.is_dir():
                raise CommandError(f"{from_dir} is not a directory")
            self._report(warm_from_files(from_dir, wanted))
            return
        try:
            key = resolve("${DATABENTO_API_KEY}", "DATABENTO_API_KEY")
        except ConfigError as exc:
            raise CommandError(f"{exc} (or use --from-dir with local DBN files)") from None
        end = end or datetime.combine(datetime.now(timezone.utc).date(), time(), tzinfo=timezone.utc)
        downloads = history.plan(sorted(wanted), end - timedelta(days=days), end, settings.RUNTIME_DIR / "warmup")
        limit = settings.WARMUP_MAX_COST if max_cost is None else max_cost
        try:
            client = history.client(key, settings.DATABENTO_HISTORICAL_GATEWAY)
            todo = [d for d in downloads if not d.cached]
            if todo:
                price = history.cost(client, todo, retries=retries)
                self.stdout.write(f"Databento: ${price:.2f} for {len(todo)} download(s) ({', '.join(d.describe() for d in todo)})")
                if price > limit and not yes:
                    raise CommandError(f"the download costs ${price:.2f}, more than ${limit:.2f} "
                                       f"(--max-cost or PINEOPS_WARMUP_MAX_COST): run again with --yes to download it")
            else:
                self.stdout.write("everything is cached: nothing to download")
            for d in todo:
                history.fetch(client, d, retries=retries)
        except history.HistoryError as exc:
            raise CommandError(str(exc)) from None
        self._report(warm_from_paths([d.path for d in downloads], wanted, source="historical"))

    def _report(self, report) -> None:
        for name, reason in report.bad_files.items():
            self.stderr.write(f"skipped {name}: {reason}")
        for name, counts in report.bad_records.items():
            self.stderr.write(f"{name}: left out or flagged records: "
                              + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())))
        for name, count in sorted(report.added.items()):
            self.stdout.write(f"{name}: {count} new bars")
        if not report.added:
            self.stdout.write("no new bars")
        if report.bad_files:
            self.stderr.write(f"{len(report.bad_files)} bad file(s) skipped; the other files were loaded")
