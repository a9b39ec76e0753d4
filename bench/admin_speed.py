"""Admin speed: the Trade changelist, its CSV export and the operator dashboard at 1k, 100k and 1M trades, interleaved.

Each size has its own throw-away database, seeded with the demo configuration (`load_demo`: ibs_a, ibs_b
and their legs) and a year of closed trades (with their entry and exit signals and the daily summary, as
the worker writes them), served by its own process: a Django test Client logged in as a superuser, the
clock around `client.get` (streamed CSV bodies are read inside the clock). This process asks the sizes in
turn, one request each, page after page, round after round (the order of the sizes rotates each round),
so the machine's load falls on every size alike; it prints the median and p95 of --repeat requests after
a warm-up, the SQL queries of one more request, and the load average at the start, at each round and at
the end. Target: trade list and dashboard <= 100 ms at the largest size. Exit status 1 if a page did not
answer 200.

The databases are never yours: temp SQLite files by default; --postgres creates throw-away PostgreSQL
databases pineops_bench_<random> and drops them at the end. Redis keys live under a unique REDIS_PREFIX per
size, deleted at the end.
Run: .venv/bin/python bench/admin_speed.py [--sizes 1000,100000,1000000] [--repeat 15] [--csv-repeat 3]
     [--postgres [postgres://postgres@127.0.0.1:5432]]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (configure_environment, create_pg_database, delete_keys, drop_pg_database,  # noqa: E402
                          load_average, migrate_and_load_demo, throwaway_prefix)

DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"
TARGET_MS = 100.0
NEWLINE = b"\n"
PAGE_SIZE = 100  # Django's list_per_page (TradeAdmin keeps the default)
LABELS = ["trade list", "trade list: filter + search", "trade list: page 50", "CSV export: one session",
          "CSV export: all trades", "dashboard"]
TARGETS = {"trade list", "dashboard"}
CSV_ALL = "CSV export: all trades"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,100000,1000000", help="trades of each database (default 1k, 100k, 1M)")
    p.add_argument("--repeat", type=int, default=15, help="timed requests per page and size (default 15)")
    p.add_argument("--csv-repeat", type=int, default=3, help="timed requests of the full CSV export (default 3)")
    p.add_argument("--postgres", nargs="?", const=DEFAULT_PG_SERVER, metavar="SERVER_URL",
                   help=f"throw-away PostgreSQL databases on SERVER_URL (default {DEFAULT_PG_SERVER}), dropped at the end")
    p.add_argument("--batch", type=int, default=2000, help="rows per insert batch (default 2000)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the generated trades")
    p.add_argument("--serve", help=argparse.SUPPRESS)  # internal: one size's server process (JSON lines on stdio)
    args = p.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not args.sizes or args.sizes[0] < 1 or args.repeat < 1 or args.csv_repeat < 1:
        p.error("--sizes must be positive, --repeat and --csv-repeat at least 1")
    return args


# --- one size's server (a child process) -----------------------------------------------------------

def serve(args) -> int:
    """Seed this process's database with `n` trades, say ready, then answer one request per line asked."""
    spec = json.loads(args.serve)
    n = spec["trades"]
    global PROTOCOL
    PROTOCOL, sys.stdout = sys.stdout, sys.stderr  # stdout carries the answers only; anything printed goes aside
    configure_environment(Path(spec["runtime_dir"]), spec["database_url"], spec["redis_prefix"],
                          LOG_LEVEL="WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from bench.tradegen import demo_legs, generate_trades, insert_trades, seed_hourly_bars, seed_open_positions
    from trading.models import Trade

    t0 = time.perf_counter()
    migrate_and_load_demo()
    if Trade.objects.exists():
        raise SystemExit("refusing to seed: the database already holds trades")
    now = timezone.now().replace(second=0, microsecond=0)
    legs = demo_legs()
    trades = generate_trades(legs, n, now, args.seed)
    seed_open_positions(legs, now)
    seed_hourly_bars(legs, now)  # the market panels' charts, on which the trades are marked
    insert_trades(trades, args.batch)
    del trades
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load like this
    user = get_user_model().objects.create_superuser("bench", "bench@example.invalid", None)
    host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*" and h.strip(".")), "localhost")
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    paths = page_paths(n)
    reply({"ready": n, "in_table": Trade.objects.count(), "seconds": round(time.perf_counter() - t0, 1),
           "vendor": vendor(connection), "host": host})
    for line in sys.stdin:
        ask = json.loads(line)
        if ask.get("quit"):
            break
        reply(measure(client, paths[ask["page"]], count_queries=ask.get("queries", False)))
    connection.close()
    return 0


PROTOCOL = sys.stdout


def reply(message: dict) -> None:
    PROTOCOL.write(json.dumps(message) + "\n")
    PROTOCOL.flush()


def vendor(connection) -> str:
    if connection.vendor == "sqlite":
        import sqlite3

        return f"sqlite {sqlite3.sqlite_version}"
    return f"postgresql {connection.pg_version // 10000}" if connection.vendor == "postgresql" else connection.vendor


def page_paths(n: int) -> list[str]:
    from datetime import timedelta

    from trading.models import DailyRiskState, Strategy

    ibs_a = Strategy.objects.get(name="ibs_a")
    changelist = "/admin/trading/trade/"
    days = list(DailyRiskState.objects.filter(trades__gt=0).order_by("-session_date").values_list(
        "session_date", flat=True).distinct()[:2])
    day = days[-1] if days else None  # the last whole session (the latest may still be trading)
    one_session = f"session_date__gte={day}&session_date__lt={day + timedelta(days=1)}" if day else ""
    return [changelist, f"{changelist}?strategy__id__exact={ibs_a.pk}&q=CL",
            f"{changelist}?p={min(50, math.ceil(n / PAGE_SIZE))}", f"{changelist}export/?{one_session}",
            f"{changelist}export/", "/admin/dashboard/"]


def measure(client, path: str, count_queries: bool) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if count_queries:  # apart from the timed requests, so the capture costs none of them
        with CaptureQueriesContext(connection) as ctx:
            out = request(client, path)
        return {**out, "queries": len(ctx.captured_queries)}
    return request(client, path)


def request(client, path: str) -> dict:
    t0 = time.perf_counter()
    response = client.get(path)
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
    return {"ms": elapsed * 1000, "status": response.status_code, "rows": rows}


# --- the conductor ---------------------------------------------------------------------------------

class Size:
    """One size's server process and what it measured."""

    def __init__(self, n: int, database_url: str, runtime_dir: Path, args):
        self.n, self.redis_prefix = n, throwaway_prefix()
        spec = {"trades": n, "database_url": database_url, "runtime_dir": str(runtime_dir),
                "redis_prefix": self.redis_prefix}
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(spec),
                   "--batch", str(args.batch), "--seed", str(args.seed)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.times: dict[int, list[float]] = {i: [] for i in range(len(LABELS))}
        self.statuses: dict[int, set] = {i: set() for i in range(len(LABELS))}
        self.queries: dict[int, int] = {}
        self.rows: dict[int, str] = {}
        self.ready: dict = {}

    def wait_ready(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.n:,}-trade server ended before it was ready (its error is above)")
        self.ready = json.loads(line)
        return self.ready

    def ask(self, page: int, timed: bool = True, queries: bool = False) -> None:
        self.process.stdin.write(json.dumps({"page": page, "queries": queries}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        self.statuses[page].add(answer["status"])
        if timed:
            self.times[page].append(answer["ms"])
        if queries:
            self.queries[page], self.rows[page] = answer["queries"], answer["rows"]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def print_table(sizes: list[Size]) -> None:
    width = max(len(label) for label in LABELS)
    cell = "{:>9} {:>9} {:>7} {:>6} {:>17}"
    head1 = " " * width + " | " + " | ".join(f"{f'{s.n:,} trades':^52}" for s in sizes) + " | target"
    head2 = f"{'page':<{width}} | " + " | ".join(cell.format("median ms", "p95 ms", "queries", "status", "returned")
                                                 for _ in sizes) + " |"
    print(head1)
    print(head2)
    print("-" * len(head2) + "-" * 20)
    for i, label in enumerate(LABELS):
        cells = [cell.format(f"{statistics.median(s.times[i]):.1f}", f"{p95(s.times[i]):.1f}", s.queries.get(i, 0),
                             ",".join(str(c) for c in sorted(s.statuses[i])), s.rows.get(i, "")) for s in sizes]
        verdict = ""
        if label in TARGETS:
            median = statistics.median(sizes[-1].times[i])
            verdict = f"<= {TARGET_MS:.0f} ms at {sizes[-1].n:,}: " + (
                "ok" if p95(sizes[-1].times[i]) <= TARGET_MS else "ok (median)" if median <= TARGET_MS else "SLOW")
        print(f"{label:<{width}} | " + " | ".join(cells) + f" | {verdict}")


def conduct(args, sizes: list[Size]) -> int:
    t0 = time.perf_counter()
    for s in sizes:
        ready = s.wait_ready()
        print(f"{ready['vendor']}: seeded {ready['ready']:,} trades ({ready['in_table']:,} in the table) in "
              f"{ready['seconds']:.1f} s (with migrate and load_demo)", flush=True)
    print(f"all sizes ready after {time.perf_counter() - t0:.1f} s; load average {load_average():.2f}; measuring...",
          flush=True)
    for page in range(len(LABELS)):  # warm-up: templates, caches, the database's pages
        for s in sizes:
            for _ in range(1 if LABELS[page] == CSV_ALL else 2):
                s.ask(page, timed=False)
    loads = []
    for round_ in range(args.repeat):
        turn = sizes[round_ % len(sizes):] + sizes[:round_ % len(sizes)]
        for page, label in enumerate(LABELS):
            if label == CSV_ALL and round_ >= args.csv_repeat:
                continue
            for s in turn:
                s.ask(page)
        loads.append(load_average())
    for page in range(len(LABELS)):
        for s in sizes:
            s.ask(page, timed=False, queries=True)
    print()
    print(f"Server time of the admin pages (Django test Client as superuser, host {sizes[0].ready['host']}; sizes "
          f"interleaved request by request; median and p95 of {args.repeat} requests, {args.csv_repeat} for the full "
          f"CSV; queries of one request; {os.cpu_count()} CPUs, load average over the rounds "
          f"{min(loads):.2f}-{max(loads):.2f}, now {load_average():.2f})")
    print_table(sizes)
    bad = [(s.n, LABELS[i], statuses) for s in sizes for i, statuses in s.statuses.items() if statuses != {200}]
    for n, label, statuses in bad:
        print(f"FAIL: {label} with {n:,} trades answered {','.join(str(c) for c in sorted(statuses))}")
    return 1 if bad else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    runtime_dir = Path(tempfile.mkdtemp(prefix="pineops-admin-bench-"))
    pg_names, sizes = [], []
    print(f"admin bench: sizes {', '.join(f'{n:,}' for n in args.sizes)}; {os.cpu_count()} CPUs, "
          f"load average {load_average():.2f}", flush=True)
    try:
        for n in args.sizes:
            if args.postgres:
                name, url = create_pg_database(args.postgres)
                pg_names.append(name)
            else:
                url = f"sqlite:///{runtime_dir / f'bench-{n}.sqlite3'}"
            (runtime_dir / str(n)).mkdir()
            sizes.append(Size(n, url, runtime_dir / str(n), args))
        return conduct(args, sizes)
    finally:
        for s in sizes:
            s.stop()
        cleanup([s.redis_prefix for s in sizes], runtime_dir)
        for name in pg_names:
            drop_pg_database(args.postgres, name)
        shutil.rmtree(runtime_dir, ignore_errors=True)


def cleanup(prefixes: list[str], runtime_dir: Path) -> None:
    """Each size's Redis keys (its server deletes nothing: it may have been killed)."""
    try:
        configure_environment(runtime_dir, "sqlite:///:memory:", prefixes[0] if prefixes else "x")
        import django

        django.setup()
        for prefix in prefixes:
            delete_keys(f"{prefix}:")
    except Exception:  # noqa: BLE001 — cleanup is best effort (Redis may be away)
        pass


if __name__ == "__main__":
    sys.exit(main())
