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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"
TARGET_MS = 200.0
NEWLINE = b"\n"
PAGE_SIZE = 100  # Django's list_per_page (TradeAdmin keeps the default)

# Rough price levels of the demo roots a year ago, and annual volatility (log returns).
BASE_PRICE = {"6A": 0.66, "6B": 1.27, "6C": 0.74, "6M": 0.058, "6N": 0.61, "6S": 1.13, "CL": 75.0, "GC": 2350.0,
              "HG": 4.4, "SI": 29.0, "YM": 39500.0, "ES": 5300.0}
ANNUAL_VOL = {"6A": 0.09, "6B": 0.07, "6C": 0.06, "6M": 0.13, "6N": 0.09, "6S": 0.07, "CL": 0.32, "GC": 0.16,
              "HG": 0.24, "SI": 0.28, "YM": 0.14, "ES": 0.16}
BAR_MINUTES, SESSION_HOURS_PER_YEAR = 60, 252 * 23
# Assumed share of each exit reason: mostly the IBS exit, then stop, target and the time-outs.
EXIT_REASONS = ("ibs_exit", "stop_loss", "take_profit", "max_bars", "flat_time")
EXIT_SHARE = (0.55, 0.15, 0.15, 0.10, 0.05)


# --- environment (before django.setup) ---------------------------------------------------------------

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


def create_pg_database(server_url: str) -> tuple[str, str]:
    """Create pineops_bench_<random> on the server; returns (its name, its DATABASE_URL)."""
    import psycopg

    name = f"pineops_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(server_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(parts._replace(path=f"/{name}"))


def drop_pg_database(server_url: str, name: str) -> None:
    import psycopg

    parts = urlsplit(server_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_environment(runtime_dir: Path, database_url: str, redis_prefix: str) -> None:
    # Set, not setdefault: an inherited DATABASE_URL (say the CI database) must never be written into.
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "pineops.settings",
        "PINEOPS_ENV_FILE": "/dev/null",
        "PINEOPS_ENV": "development",
        "RUNTIME_DIR": str(runtime_dir),
        "DATABASE_URL": database_url,
        "REDIS_PREFIX": redis_prefix,
        "DEBUG": "false",  # measured as served: no debug toolbar of queries, like production
        "LOG_LEVEL": "WARNING",
    })


# --- seeding ---------------------------------------------------------------------------------------

@dataclass
class LegInfo:
    strategy: object
    instrument: object
    size: int
    commission: Decimal
    row: object  # the StrategyInstrument: each order's ticker from its template


def demo_legs() -> list[LegInfo]:
    from trading.models import StrategyInstrument

    return [LegInfo(leg.strategy, leg.instrument, leg.size, leg.commission_per_side, leg)
            for leg in StrategyInstrument.objects.select_related("strategy", "instrument").order_by("id")]


def front_contract(root: str, when: datetime) -> str:
    """The quarterly contract after `when`'s month (H M U Z), as trading.sim.market names it."""
    from strategies.instruments import MONTH_CODES

    month = when.month + 1
    year = when.year
    while month % 3:
        month += 1
    if month > 12:
        month, year = month - 12, year + 1
    return f"{root}{MONTH_CODES[month - 1]}{year % 10}"


def round_tick(value: float, tick: Decimal) -> Decimal:
    return (Decimal(str(value)) / tick).quantize(Decimal("1")) * tick


def generate_trades(legs: list[LegInfo], n: int, now: datetime, seed: int) -> list[dict]:
    """n closed trades over the last year, spread over the legs; per leg they never overlap.

    Entry times sit on even minutes of weekdays (so every leg's entries and exits are distinct,
    as the signal constraint one_signal_per_bar_and_action requires); holding times are
    log-normal around 4 hours, at most max_bars_held bars; prices follow a random walk per root
    with its volatility; exit reasons follow EXIT_SHARE (stops and targets exit at the default
    stop / target percent); P&L is the model's formula (trading.models.trade_pnl).
    """
    import numpy as np

    from strategies.calendar import session_dates
    from strategies.params import IBSParams
    from trading.models import trade_pnl

    params = IBSParams()
    stop, target, max_hold = params.stop_loss_pct / 100, params.take_profit_pct / 100, \
        params.max_bars_held * BAR_MINUTES
    reason_cdf = np.cumsum(EXIT_SHARE)[:-1]
    rng = np.random.default_rng(seed)
    start = now - timedelta(days=365)
    start_min = int(start.timestamp() // 60)
    end_min = int((now - timedelta(hours=3)).timestamp() // 60)
    grid = np.arange(start_min + (start_min % 2), end_min, 2, dtype=np.int64)  # even minutes
    weekday = ((grid // 1440) + 3) % 7 < 5  # 1970-01-01 was a Thursday (index 3, Monday = 0)
    grid = grid[weekday]
    per_leg = rng.multinomial(n, rng.dirichlet(np.full(len(legs), 8.0)))
    if per_leg.max() > len(grid):
        raise SystemExit(f"--trades {n} is more than this generator fits in a year ({len(grid)} per leg)")
    now_min = int(now.timestamp() // 60)
    trades = []
    for leg, k in zip(legs, per_leg):
        if not k:
            continue
        root = leg.instrument.root
        entry_min = np.sort(rng.choice(grid, size=k, replace=False))
        gaps = np.diff(np.append(entry_min, now_min))
        hold = np.minimum(np.clip(rng.lognormal(math.log(240), 0.8, size=k).astype(np.int64), 1, gaps - 1), max_hold)
        exit_min = entry_min + hold
        years = np.diff(np.insert(entry_min, 0, start_min)) / (365 * 1440)
        log_price = math.log(BASE_PRICE.get(root, 100.0)) + np.cumsum(
            rng.normal(0, ANNUAL_VOL.get(root, 0.2), size=k) * np.sqrt(years))
        vol = ANNUAL_VOL.get(root, 0.2)
        ret = 0.0003 + rng.normal(0, 1, size=k) * vol * np.sqrt(hold / BAR_MINUTES / SESSION_HOURS_PER_YEAR)
        kind = rng.random(size=k)
        exit_ns = exit_min * 60_000_000_000
        days = session_dates(exit_ns)
        for i in range(k):
            entry_t = datetime.fromtimestamp(int(entry_min[i]) * 60, dt_timezone.utc)
            exit_t = datetime.fromtimestamp(int(exit_min[i]) * 60, dt_timezone.utc)
            r = float(ret[i])
            reason = EXIT_REASONS[int(np.searchsorted(reason_cdf, kind[i], side="right"))]
            if reason == "stop_loss":
                r = -stop
            elif reason == "take_profit":
                r = target
            tick = leg.instrument.tick_size
            entry_p = round_tick(math.exp(log_price[i]), tick)
            exit_p = max(round_tick(float(entry_p) * (1 + r), tick), tick)
            trades.append(dict(
                leg=leg, root=root, contract=front_contract(root, entry_t), entry_time=entry_t, exit_time=exit_t,
                entry_price=entry_p, exit_price=exit_p, reason=reason,
                pnl=trade_pnl(entry_p, exit_p, leg.instrument.point_value, leg.size, leg.commission),
                pnl_percent=float((exit_p - entry_p) / entry_p * 100),
                ml_score=round(float(rng.uniform(0.5, 0.95)), 4), ibs_entry=round(float(rng.uniform(0, 0.2)), 4),
                ibs_exit=round(float(rng.uniform(0.7, 1.0) if reason == "ibs_exit" else rng.uniform(0, 1)), 4),
                session_date=days[i].astype(object)))
    return trades


def insert_trades(trades: list[dict], batch: int) -> None:
    """Bulk-insert the trades with their entry and exit signals, in exit-time order (as written live)."""
    from django.db import transaction

    from strategies.params import IBSParams
    from trading.execution.traderspost import order_payload
    from trading.models import Signal, Trade, signal_key

    hour, params = timedelta(minutes=BAR_MINUTES), IBSParams()

    def signal(t, action):
        leg, bar_time = t["leg"], (t["entry_time"] if action == "buy" else t["exit_time"]) - hour
        key = signal_key(leg.strategy.name, t["root"], bar_time, action)
        price = t["entry_price"] if action == "buy" else t["exit_price"]
        reason = "entry" if action == "buy" else t["reason"]
        ibs = t["ibs_entry"] if action == "buy" else t["ibs_exit"]
        ml = t["ml_score"] if action == "buy" else None
        extras = {"strategy": leg.strategy.name, "signal_id": key, "bar_time": bar_time.isoformat(), "ibs": ibs,
                  "ml_score": ml, "reason": reason}
        payload = order_payload(ticker=leg.row.broker_ticker(t["contract"], bar_time), action=action, quantity=leg.size,
                                signal_price=float(price),
                                extras=extras, stop_loss_percent=params.stop_loss_pct if action == "buy" else None,
                                take_profit_percent=params.take_profit_pct if action == "buy" else None)
        decided = bar_time + hour
        return Signal(key=key, strategy=leg.strategy, instrument=leg.instrument, contract=t["contract"],
                      bar_time=bar_time, action=action, quantity=leg.size, signal_price=price, reason=reason, ibs=ibs,
                      ml_score=ml, payload=payload, state=Signal.State.SENT, attempts=1, last_status=200,
                      expires_at=decided + timedelta(hours=8), sent_at=decided + timedelta(seconds=1))

    trades = sorted(trades, key=lambda t: t["exit_time"])
    with transaction.atomic():
        for i in range(0, len(trades), batch):
            chunk = trades[i:i + batch]
            entries = Signal.objects.bulk_create([signal(t, "buy") for t in chunk])
            exits = Signal.objects.bulk_create([signal(t, "exit") for t in chunk])
            if any(s.pk is None for s in entries + exits):
                raise SystemExit("bulk_create returned no primary keys (SQLite older than 3.35?)")
            Trade.objects.bulk_create([
                Trade(strategy=t["leg"].strategy, symbol=t["root"], contract=t["contract"], side="long",
                      entry_time=t["entry_time"], entry_price=t["entry_price"], entry_size=t["leg"].size,
                      exit_time=t["exit_time"], exit_price=t["exit_price"], exit_size=t["leg"].size, pnl=t["pnl"],
                      pnl_percent=t["pnl_percent"], exit_reason=t["reason"], ml_score=t["ml_score"],
                      ibs_entry=t["ibs_entry"], ibs_exit=t["ibs_exit"],
                      commission=2 * t["leg"].commission * t["leg"].size,
                      point_value=t["leg"].instrument.point_value, session_date=t["session_date"],
                      entry_signal=e, exit_signal=x)
                for t, e, x in zip(chunk, entries, exits)], batch_size=batch)


def seed_open_positions(legs: list[LegInfo], now: datetime) -> list[str]:
    """A few open positions (as the dashboard shows them) and the hub's last prices of their roots in Redis."""
    import json

    from trading.models import Position, Signal, signal_key
    from trading.redis_client import get_redis, key

    by_strategy: dict[str, list[LegInfo]] = {}
    for leg in legs:
        by_strategy.setdefault(leg.strategy.name, []).append(leg)
    bar_time = (now - timedelta(minutes=90)).replace(second=0, microsecond=0)
    if bar_time.minute % 2 == 0:  # odd minute: never one of a generated trade's entry bars
        bar_time -= timedelta(minutes=1)
    roots = []
    for name, mine in by_strategy.items():
        for leg in mine[:mine[0].strategy.max_positions]:
            root = leg.instrument.root
            price = round_tick(BASE_PRICE.get(root, 100.0), leg.instrument.tick_size)
            sig = Signal.objects.create(
                key=signal_key(name, root, bar_time, "buy"), strategy=leg.strategy, instrument=leg.instrument,
                contract=front_contract(root, now), bar_time=bar_time, action="buy", quantity=leg.size,
                signal_price=price, reason="entry", state=Signal.State.SENT, attempts=1, last_status=200)
            Position.objects.create(
                strategy=leg.strategy, instrument=leg.instrument, contract=sig.contract, size=leg.size,
                signal_time=bar_time, filled=True, entry_time=bar_time + timedelta(hours=1), entry_price=price,
                commission_per_side=leg.commission, point_value=leg.instrument.point_value, entry_signal=sig)
            roots.append(root)
    try:
        get_redis().mset({key("last", root): json.dumps({"close": float(BASE_PRICE.get(root, 100.0)) * 1.001})
                          for root in roots})
    except Exception as exc:  # noqa: BLE001 — the dashboard then shows "prices unavailable"; still measurable
        print(f"note: Redis unreachable ({exc.__class__.__name__}); the dashboard renders without last prices")
    return roots


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
    redis_prefix = f"pineops-bench-{uuid.uuid4().hex[:12]}"
    pg_name = None
    if args.postgres:
        pg_name, database_url = create_pg_database(args.postgres)
    elif args.database_url:
        database_url = args.database_url
    else:
        database_url = f"sqlite:///{runtime_dir / 'bench.sqlite3'}"
    configure_environment(runtime_dir, database_url, redis_prefix)
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
        from trading.redis_client import get_redis

        client = get_redis()
        for k in client.scan_iter(f"{redis_prefix}:*"):
            client.delete(k)
    except Exception:  # noqa: BLE001 — cleanup is best effort (Django may not have started)
        pass


def bench(args) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from trading.models import Trade

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_demo", stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
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
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

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
          f"load average now {os.getloadavg()[0]:.2f})")
    print_table(runs, args.trades)
    bad = [(n, p.label, status_text(r)) for n, results in runs for p, r in results if r.statuses != {200}]
    for n, label, status in bad:
        print(f"FAIL: {label} with {n:,} trades answered {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
