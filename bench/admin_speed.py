"""Admin speed: the Trade changelist, its CSV export and the operator dashboard with 100k trades.

Seeds a throw-away database with the demo configuration (`load_demo`: ibs_a, ibs_b and their
legs) and a year of closed trades (with their entry and exit signals, as the worker writes
them), then measures SERVER time: a Django test Client logged in as a superuser, the clock
around `client.get`/`client.post` (streamed CSV bodies are read inside the clock), median and
p95 of --repeat requests after a warm-up, and the number of SQL queries of one more request.
A reference run with --reference trades (1,000) is measured first in the same process, on the
same pages, so the scaling is visible side by side. Target: < 200 ms with 100k trades for the
trade list and the dashboard. Exit status 1 if a page did not answer 200.

The database is never yours: a temp SQLite file by default; --postgres creates a throw-away
PostgreSQL database pineops_bench_<random> and drops it at the end; --database-url uses the
given (empty) database as it is. Redis keys live under a unique REDIS_PREFIX, deleted at the end.
Run: .venv/bin/python bench/admin_speed.py [--trades 100000] [--reference 1000 | --no-reference]
     [--postgres [postgres://postgres@127.0.0.1:5432] | --database-url URL] [--repeat 15]
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (configure_environment, create_pg_database, delete_keys, drop_pg_database,  # noqa: E402
                          load_average, migrate_and_load_demo, throwaway_prefix)
from bench.tradegen import demo_legs, generate_trades, insert_trades, seed_open_positions  # noqa: E402

DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"
TARGET_MS = 200.0
NEWLINE = b"\n"
PAGE_SIZE = 100  # Django's list_per_page (TradeAdmin keeps the default)


# --- command line ----------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trades", type=int, default=100_000, help="trades of the main run (default 100000)")
    p.add_argument("--reference", type=int, default=1_000, help="trades of the reference run (default 1000)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference run")
    p.add_argument("--repeat", type=int, default=15, help="timed requests per page (default 15)")
    p.add_argument("--csv-repeat", type=int, default=3, help="timed requests of the full CSV export (default 3)")
    db = p.add_mutually_exclusive_group()
    db.add_argument("--database-url", help="use this (empty) database as it is, e.g. a throw-away PostgreSQL one")
    db.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL",
                    help=f"create a throw-away PostgreSQL database on SERVER_URL (default {DEFAULT_PG_SERVER}), "
                         f"drop it at the end")
    p.add_argument("--batch", type=int, default=2000, help="bulk_create batch size (default 2000)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the generated trades")
    args = p.parse_args(argv)
    if args.trades < 1 or args.repeat < 1 or args.csv_repeat < 1:
        p.error("--trades, --repeat and --csv-repeat must be at least 1")
    if args.no_reference or args.reference <= 0 or args.reference >= args.trades:
        args.reference = 0
    return args


# --- measuring -------------------------------------------------------------------------------------

@dataclass
class Page:
    label: str
    path: str
    data: dict | None = None  # POST body (CSV export); None = GET
    repeat: int = 15
    target: bool = False  # held to TARGET_MS at the main size
    rows: str = ""  # what the page returned (filled by measure)


@dataclass
class Result:
    times: list[float] = field(default_factory=list)
    queries: int = 0
    statuses: set = field(default_factory=set)
    rows: str = ""

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def p95(self):
        ordered = sorted(self.times)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def pages(n: int, repeat: int, csv_repeat: int) -> list[Page]:
    from trading.models import Strategy, Trade

    ibs_a = Strategy.objects.get(name="ibs_a")
    changelist = "/admin/trading/trade/"
    last_page = min(50, math.ceil(n / PAGE_SIZE))
    first_ids = list(Trade.objects.values_list("pk", flat=True)[:PAGE_SIZE])  # the rows page 1 shows
    return [
        Page("trade list", changelist, repeat=repeat, target=True),
        Page("trade list: filter + search", f"{changelist}?strategy__id__exact={ibs_a.pk}&q=CL", repeat=repeat),
        Page("trade list: page 50", f"{changelist}?p={last_page}", repeat=repeat),
        Page("CSV export: 100 selected", changelist,
             data={"action": "export_csv", "index": "0", "_selected_action": first_ids}, repeat=repeat),
        Page("CSV export: all trades", changelist,
             data={"action": "export_csv", "index": "0", "select_across": "1", "_selected_action": first_ids[:1]},
             repeat=csv_repeat),
        Page("dashboard", "/admin/dashboard/", repeat=repeat, target=True),
    ]


def request(client, page: Page):
    """One request; returns (seconds, status, rows description)."""
    t0 = time.perf_counter()
    response = client.get(page.path) if page.data is None else client.post(page.path, page.data)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    elapsed = time.perf_counter() - t0
    rows = ""
    if response.get("Content-Type", "").startswith("text/csv"):
        rows = f"{body.count(NEWLINE) - 1:,} csv rows"
    elif getattr(response, "context_data", None) and "cl" in response.context_data:
        cl = response.context_data["cl"]
        rows = f"p{cl.page_num}: {len(cl.result_list)} rows"
    elif getattr(response, "context_data", None) and "recent_trades" in response.context_data:
        rows = f"{len(response.context_data['recent_trades'])} recent"
    return elapsed, response.status_code, rows


def measure(client, page: Page) -> Result:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = Result()
    for _ in range(1 if page.data and "select_across" in page.data else 2):  # warm-up: templates, caches
        request(client, page)
    for _ in range(page.repeat):
        elapsed, status, _ = request(client, page)
        result.times.append(elapsed * 1000)
        result.statuses.add(status)
    with CaptureQueriesContext(connection) as ctx:  # counted apart, so the capture costs no timed request
        _, status, result.rows = request(client, page)
    result.statuses.add(status)
    result.queries = len(ctx.captured_queries)
    return result


def run_pages(client, n: int, args) -> list[tuple[Page, Result]]:
    out = []
    for page in pages(n, args.repeat, args.csv_repeat):
        out.append((page, measure(client, page)))
    return out


def status_text(result: Result) -> str:
    return ",".join(str(s) for s in sorted(result.statuses))


def print_table(runs: list[tuple[int, list[tuple[Page, Result]]]], main_n: int) -> None:
    width = max(len(p.label) for _, results in runs for p, _ in results)
    cell = "{:>9} {:>9} {:>7} {:>6} {:>16}"
    head1 = " " * width + " | " + " | ".join(f"{f'{n:,} trades':^51}" for n, _ in runs) + " | target"
    head2 = f"{'page':<{width}} | " + " | ".join(cell.format("median ms", "p95 ms", "queries", "status", "returned")
                                                 for _ in runs) + " |"
    print(head1)
    print(head2)
    print("-" * len(head2) + "-" * 12)
    labels = [p.label for p, _ in runs[0][1]]
    for i, label in enumerate(labels):
        cells, verdict = [], ""
        for n, results in runs:
            page, r = results[i]
            cells.append(cell.format(f"{r.median:.1f}", f"{r.p95:.1f}", r.queries, status_text(r), r.rows))
            if page.target and n == main_n:
                verdict = f"< {TARGET_MS:.0f} ms: " + ("ok" if r.p95 < TARGET_MS else
                                                       "ok (median)" if r.median < TARGET_MS else "SLOW")
        print(f"{label:<{width}} | " + " | ".join(cells) + f" | {verdict}")


def main(argv=None) -> int:
    args = parse_args(argv)
    runtime_dir = Path(tempfile.mkdtemp(prefix="pineops-admin-bench-"))
    redis_prefix = throwaway_prefix()
    pg_name = None
    if args.postgres:
        pg_name, database_url = create_pg_database(args.postgres)
    elif args.database_url:
        database_url = args.database_url
    else:
        database_url = f"sqlite:///{runtime_dir / 'bench.sqlite3'}"
    # DEBUG off: measured as served, no debug toolbar of queries, like production.
    configure_environment(runtime_dir, database_url, redis_prefix, DEBUG="false", LOG_LEVEL="WARNING")
    try:
        return bench(args)
    finally:
        cleanup(redis_prefix)
        if pg_name:
            drop_pg_database(args.postgres, pg_name)
        shutil.rmtree(runtime_dir, ignore_errors=True)


def cleanup(redis_prefix: str) -> None:
    try:
        from django.db import connections

        connections.close_all()
        delete_keys(f"{redis_prefix}:")
    except Exception:  # noqa: BLE001 — cleanup is best effort (Django may not have started)
        pass


def bench(args) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from trading.models import Trade

    t0 = time.perf_counter()
    migrate_and_load_demo()
    if Trade.objects.exists():
        print("refusing to seed: the database already holds trades (give an empty, throw-away database)")
        return 2
    vendor = connection.vendor
    if vendor == "sqlite":
        import sqlite3

        vendor += f" {sqlite3.sqlite_version}"
    else:
        vendor += f" {connection.pg_version // 10000}" if vendor == "postgresql" else ""
    print(f"database: {vendor} ({settings.DATABASES['default']['NAME']}); migrate + load_demo "
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load average {load_average():.2f}")

    now = timezone.now().replace(second=0, microsecond=0)
    legs = demo_legs()
    t0 = time.perf_counter()
    trades = generate_trades(legs, args.trades, now, args.seed)
    print(f"generated {len(trades):,} trades over {len(legs)} legs "
          f"({', '.join(sorted({leg.strategy.name for leg in legs}))}) in {time.perf_counter() - t0:.1f} s")
    seed_open_positions(legs, now)

    user = get_user_model().objects.create_superuser("bench", "bench@example.invalid", None)
    host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*" and h.strip(".")), "localhost")
    client = Client(HTTP_HOST=host)
    client.force_login(user)

    import random

    order = list(range(len(trades)))
    random.Random(args.seed).shuffle(order)
    phases = ([args.reference] if args.reference else []) + [args.trades]
    done, runs = 0, []
    for n in phases:
        t0 = time.perf_counter()
        insert_trades([trades[i] for i in order[done:n]], args.batch)
        done = n
        if vendor.startswith("postgresql"):
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load like this
        print(f"seeded {n:,} trades ({Trade.objects.count():,} in the table) in {time.perf_counter() - t0:.1f} s; "
              f"measuring...", flush=True)
        runs.append((n, run_pages(client, n, args)))

    print()
    print(f"Server time of the admin pages (Django test Client as superuser, host {host}; median and p95 of "
          f"{args.repeat} requests, {args.csv_repeat} for the full CSV; queries of one request; "
          f"load average now {load_average():.2f})")
    print_table(runs, args.trades)
    bad = [(n, p.label, status_text(r)) for n, results in runs for p, r in results if r.statuses != {200}]
    for n, label, status in bad:
        print(f"FAIL: {label} with {n:,} trades answered {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
