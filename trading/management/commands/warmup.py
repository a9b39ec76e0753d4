"""`manage.py warmup`: fill the bar store (hourly and daily bars) so workers warm up offline."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.config import ConfigError, resolve
from trading.marketdata.barstore import download_history, warm_from_files
from trading.models import Instrument


class Command(BaseCommand):
    help = "Load hourly and daily bars into the bar store from DBN files or Databento's historical API."

    def add_arguments(self, parser):
        parser.add_argument("--from-dir", type=Path, help="read DBN files (trades or ohlcv) from this directory")
        parser.add_argument("--days", type=int, default=370, help="history to fetch from Databento (calendar days)")
        parser.add_argument("--roots", help="comma-separated roots (default: every instrument)")

    def handle(self, *args, from_dir=None, days=370, roots=None, **options):
        wanted = {r.strip().upper() for r in roots.split(",")} if roots else set(
            Instrument.objects.values_list("root", flat=True))
        if from_dir is None:
            try:
                key = resolve("${DATABENTO_API_KEY}", "DATABENTO_API_KEY")
            except ConfigError as exc:
                raise CommandError(f"{exc} (or use --from-dir with local DBN files)") from None
            end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
            cache = settings.RUNTIME_DIR / "warmup"
            download_history(key, sorted(wanted), end - timedelta(days=days), end, cache)
            from_dir = cache
        if not from_dir.is_dir():
            raise CommandError(f"{from_dir} is not a directory")
        report = warm_from_files(from_dir, wanted)
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
