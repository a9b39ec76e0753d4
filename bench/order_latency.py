"""Order latency: bar complete → webhook received at the TradersPost stand-in, p50/p90/p99/max/mean.

One process, three paths measured side by side against one local TradersPost stand-in
(127.0.0.1, each path on its own webhook path). Each path sends the same number of orders, one at
a time, alternating buy / exit with the worker's payload shape. Latency ends at the stand-in's
`received_at` (time.time() in its handler thread, once the POST's body is read) and starts at:

  reference  just before a bare `requests.post` of an equivalent payload: the floor of a local POST.
  outbox     just before `outbox.send_one(pk)` of a pending Signal row (ibs_b) already committed:
             claim, killswitch, ${VAR} webhook resolve, attempt row, then the POST.
  worker     the full path: the bench plays the hub and the clock starts just before it XADDs the CL
             hourly bar (then it sets the 1h watermark, as the hub does); the real `Worker.run()` loop
             of ibs_a, in a thread of this process, picks the hour up, decides and writes the step,
             then hands the orders to its sender: by default the production wiring of `runworker`,
             a `manage.py sendorders` child woken through its stdin pipe (DetachedSender), which
             sends with the per-webhook rate limiter; `--sender inline` sends from the worker thread.

The worker path publishes one hour at a time, as in production: once an hour's POST has arrived
the bench waits for the end of that poll round and for the sender to record the answer before
the next hour, so no latency includes the tail of the previous one. Bars are crafted so that
every hour yields exactly one order: IBS 0.1 (entry while flat) alternating with IBS 0.875 (exit
of the position filled at that bar's open), with prices that never touch stop or target and win
every trade (the daily stop never trips).
ibs_a trades CL only, ML filter off, entry window 24 h, flat time none (else load_demo's defaults).
The outbox and worker paths go through the Redis rate limiter as production does (60/min, 500/h
per webhook); after each order, outside the timed span, the bench empties that webhook's window,
or orders past the 60th would wait for the window instead of measuring the path.

The paths take turns in blocks of --block orders (the worker parked at the top of its next poll
round while the others run), so machine load hits all three alike; the first --warmup orders of
each path are sent and checked but left out of the statistics. Every order is checked: exactly one
POST per signal at the stand-in (none missing, duplicated or unexpected, all answered 200) and,
for the worker, every Signal row 'sent' after one attempt. Exit status 1 when a check fails; no
timing is asserted.

Isolation: DJANGO_SETTINGS_MODULE=pineops.settings, PINEOPS_ENV_FILE=/dev/null, a temp RUNTIME_DIR
holding the SQLite database (or, with --database-url postgres://USER@HOST:PORT/…, a throw-away
database created on that server and dropped afterwards), a unique REDIS_PREFIX whose keys are
deleted at the end. The appliance logs at INFO as in production, into a file in the temp dir.
Run: .venv/bin/python bench/order_latency.py [--signals 1000] [--sender inline] [--json]
     [--database-url postgres://postgres@127.0.0.1:5432/postgres]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UTC = timezone.utc
HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday; the 24 h entry window makes every hour eligible
ENTRY_BAR = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1: entry while flat (and the pending exit fills at 100.0)
EXIT_BAR = (99.5, 99.9, 99.1, 99.8)  # IBS 0.875: exit; the entry filled at 99.5, stop 98.5, target 100.5
MID_BAR = (100.0, 100.4, 99.6, 100.0)  # IBS 0.5: no decision (the worker's first hours)
WAIT_S = 15.0  # longest wait for one POST before it is counted missing
LABELS = {"reference": "requests.post → stand-in (reference)",
          "outbox": "Signal row → outbox.send_one → stand-in",
          "detached": "bar → Worker → sendorders → stand-in",
          "inline": "bar → Worker (inline send) → stand-in"}


# --- environment (before Django is imported) -------------------------------------------------------
def throwaway_postgres(url: str) -> tuple[str, str]:
    """Create an empty database on the server of `url` (through its maintenance database 'postgres',
    so the database named in `url` need not exist); returns (its URL, its name)."""
    import psycopg

    name = f"pineops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, "")), name


def drop_postgres(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure(args, tmp: Path) -> dict:
    """Point this process at its own runtime dir, database and Redis prefix, then set Django up."""
    ctx = {"prefix": f"pineops-orderlat-{uuid.uuid4().hex[:12]}", "pg": None, "db": "sqlite"}
    db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    if args.database_url:
        if not args.database_url.startswith(("postgres://", "postgresql://")):
            raise SystemExit("--database-url takes a PostgreSQL URL (the default is a temp SQLite file)")
        db_url, name = throwaway_postgres(args.database_url)
        ctx.update(pg=(args.database_url, name), db=f"postgresql (throw-away database {name})")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "pineops.settings",
        "PINEOPS_ENV_FILE": "/dev/null",
        "PINEOPS_ENV": "development",
        "RUNTIME_DIR": str(tmp),
        "DATABASE_URL": db_url,
        "REDIS_PREFIX": ctx["prefix"],
        "POLICY_KILLSWITCH": "",
        "LOG_LEVEL": args.log_level,
    })
    for name in ("BAR_STORE_DIR", "STATIC_ROOT"):
        os.environ.pop(name, None)
    import django

    django.setup()
    import logging

    ctx["log_path"] = tmp / "bench.log"
    log_file = ctx["log_path"].open("a")
    for handler in logging.getLogger().handlers:  # production formatting and redaction, into a file
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(log_file)
    ctx["log_file"] = log_file
    return ctx


def cleanup(ctx: dict) -> None:
    from django.db import connections

    connections.close_all()
    try:
        from trading.redis_client import get_redis

        client = get_redis()
        for k in list(client.scan_iter(f"{ctx['prefix']}*")):
            client.delete(k)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: Redis keys under {ctx['prefix']} not deleted: {exc}", file=sys.stderr)
    if ctx.get("pg"):
        drop_postgres(*ctx["pg"])


# --- the stand-in and the worker, instrumented without changing them --------------------------------
def signal_id(entry: dict) -> str | None:
    body = entry.get("body")
    extras = body.get("extras") if isinstance(body, dict) else None
    return extras.get("signal_id") if isinstance(extras, dict) else None


def make_standin():
    from trading.sim.traderspost import TradersPostStandIn

    class WatchedStandIn(TradersPostStandIn):
        """The stand-in, plus a condition to wait on until a given signal's POST has arrived."""

        def __init__(self):
            super().__init__()
            self.arrived = threading.Condition()
            self.by_id: dict[str, list[dict]] = {}

        def answered(self, entry: dict, status: int) -> None:
            super().answered(entry, status)
            with self.arrived:
                self.by_id.setdefault(signal_id(entry), []).append(entry)
                self.arrived.notify_all()

        def wait_for(self, sid: str, timeout: float = WAIT_S) -> dict | None:
            with self.arrived:
                self.arrived.wait_for(lambda: sid in self.by_id, timeout)
                got = self.by_id.get(sid)
                return got[0] if got else None

    return WatchedStandIn().start()


def make_sender(kind: str, name: str, log_path: Path):
    """The order sender the worker hands its orders to: production's `sendorders` child (as
    `runworker` wires it), or the in-process one."""
    from trading.execution.sender import DetachedSender, InlineSender

    if kind == "inline":
        return InlineSender(name)

    class QuietDetachedSender(DetachedSender):
        """The production sender child; its stderr (its log) goes to the bench log, not the terminal."""

        def _spawn(self) -> None:
            saved = os.dup(2)
            try:
                with open(log_path, "ab") as log:
                    os.dup2(log.fileno(), 2)
                super()._spawn()
            finally:
                os.dup2(saved, 2)
                os.close(saved)

    return QuietDetachedSender(name)


def reset_rate_limit(url: str) -> None:
    """Empty the per-webhook sliding window (60/min, 500/h) this bench's orders filled."""
    from trading.execution.sender import limiter
    from trading.redis_client import get_redis

    get_redis().delete(limiter().key(url))


def make_worker(name: str, stop: threading.Event, sender):
    from trading.execution.worker import Worker

    class WatchedWorker(Worker):
        """The real worker; counts finished poll rounds, says when setup is done, can be parked."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.ready = threading.Event()
            self.round_done = threading.Condition()
            self.rounds = 0
            self.gate, self.parked = threading.Event(), threading.Event()
            self.gate.set()

        def setup(self) -> None:
            super().setup()
            self.ready.set()

        def poll(self) -> int:
            if not self.gate.is_set():
                self.parked.set()
                self.gate.wait()
                self.parked.clear()
            try:
                return super().poll()
            finally:
                with self.round_done:
                    self.rounds += 1
                    self.round_done.notify_all()

        def park(self) -> None:
            """Hold the loop before its next poll round (returns once it is held)."""
            self.gate.clear()
            if not self.parked.wait(WAIT_S):
                raise RuntimeError("the worker loop did not reach its next poll round")

        def unpark(self) -> None:
            self.gate.set()

        def wait_rounds_after(self, seen: int, timeout: float = WAIT_S) -> bool:
            with self.round_done:
                return self.round_done.wait_for(lambda: self.rounds > seen, timeout)

    return WatchedWorker(name, block_ms=50, stopping=stop.is_set, sender=sender)


# --- payloads and the plan of orders ------------------------------------------------------------------
def action_of(i: int) -> str:
    return "buy" if i % 2 == 0 else "exit"


def payload_like_the_worker(strategy: str, ticker: str, sid: str, bar_time: datetime, action: str, bar) -> dict:
    """The body the ledger builds for this decision (same fields, same protective orders on a buy)."""
    from strategies.ibs import ibs
    from strategies.params import IBSParams
    from trading.execution.traderspost import order_payload

    _, h, l, c = bar
    p = IBSParams()
    extras = {"strategy": strategy, "signal_id": sid, "bar_time": bar_time.isoformat(), "ibs": round(ibs(h, l, c), 4),
              "ml_score": None, "reason": "entry" if action == "buy" else "ibs_exit"}
    buy = action == "buy"
    return order_payload(ticker=ticker, action=action, quantity=1, signal_price=c, time_in_force="day", extras=extras,
                         stop_loss_percent=p.stop_loss_pct if buy else None,
                         take_profit_percent=p.take_profit_pct if buy else None)


# --- the runs: one order at a time, `send(i)` returns ms from its start to the stand-in's receipt ----
def ms_since(started: float, entry: dict | None) -> float:
    return (entry["received_at"] - started) * 1000 if entry else float("nan")


class ReferenceRun:
    """A bare `requests.post` (a new connection each time, as `deliver` makes) of the worker's payload shape."""

    def __init__(self, standin, args, ctx):
        import requests

        self.standin, self.post = standin, requests.post
        self.url = f"{standin.url}/trading/webhook/bench-reference-{secrets.token_hex(8)}"
        self.ids: list[str] = []

    def send(self, i: int) -> float:
        action, bar_time = action_of(i), T0 + i * HOUR
        sid = f"bench_reference:CL:{bar_time:%Y-%m-%dT%H:%M:%SZ}:{action}"
        payload = payload_like_the_worker("bench_reference", "CL", sid, bar_time, action,
                                          ENTRY_BAR if action == "buy" else EXIT_BAR)
        self.ids.append(sid)
        started = time.time()
        self.post(self.url, json=payload, timeout=10)
        return ms_since(started, self.standin.wait_for(sid))


class OutboxRun:
    """`outbox.send_one` of a pending Signal row of ibs_b (created and committed before the clock starts)."""

    def __init__(self, standin, args, ctx):
        from trading.execution.sender import limiter
        from trading.models import Strategy

        self.url = f"{standin.url}/trading/webhook/bench-outbox-{secrets.token_hex(8)}"
        os.environ["TRADERSPOST_IBS_B_WEBHOOK"] = self.url
        self.standin, self.limiter = standin, limiter()
        self.strategy = Strategy.objects.get(name="ibs_b")
        self.leg = self.strategy.legs.select_related("instrument").order_by("instrument__root").first()
        self.ids: list[str] = []

    def send(self, i: int) -> float:
        from django.utils import timezone as dj_tz

        from trading.execution import outbox
        from trading.models import Signal, signal_key

        action, bar_time, leg = action_of(i), T0 + i * HOUR, self.leg
        bar = ENTRY_BAR if action == "buy" else EXIT_BAR
        key = signal_key("ibs_b", leg.instrument.root, bar_time, action)
        sig = Signal.objects.create(
            key=key, strategy=self.strategy, instrument=leg.instrument, bar_time=bar_time, action=action, quantity=1,
            signal_price=str(bar[3]), reason="entry" if action == "buy" else "ibs_exit",
            payload=payload_like_the_worker("ibs_b", leg.broker_ticker(f"{leg.instrument.root}Z6", bar_time), key,
                                            bar_time, action, bar),
            expires_at=dj_tz.now() + timedelta(days=1))
        self.ids.append(key)
        started = time.time()
        outbox.send_one(sig.pk, limiter=self.limiter)
        entry = self.standin.wait_for(key)
        reset_rate_limit(self.url)
        return ms_since(started, entry)


def prepare_worker_strategy() -> None:
    from trading.models import Strategy, StrategyInstrument

    Strategy.objects.filter(name="ibs_a").update(entry_windows="00:00-24:00", flat_time="none")
    legs = StrategyInstrument.objects.filter(strategy__name="ibs_a")
    legs.exclude(instrument__root="CL").update(enabled=False)
    legs.update(ml_enabled=False)


class WorkerRun:
    """The bench plays the hub; the real `Worker.run()` loop of ibs_a runs in a thread of this process.

    Between blocks of the other runs the worker is parked at the top of its next poll round, so its
    loop never competes with them for the CPU or the GIL.
    """

    def __init__(self, standin, args, ctx):
        from django.db import connections

        self.url = f"{standin.url}/trading/webhook/bench-worker-{secrets.token_hex(8)}"
        os.environ["TRADERSPOST_IBS_A_WEBHOOK"] = self.url  # before the sender child inherits the environment
        prepare_worker_strategy()
        self.standin, self.ids, self.errors = standin, [], []
        self.stop = threading.Event()
        self.worker = make_worker("ibs_a", self.stop, make_sender(args.sender, "ibs_a", ctx["log_path"]))
        self.busy_rounds = 0

        def loop():
            try:
                self.worker.run()
            except BaseException as exc:  # noqa: BLE001 — reported after the run
                self.errors.append(exc)
            finally:
                connections.close_all()

        self.thread = threading.Thread(target=loop, name="bench-worker", daemon=True)
        self.thread.start()
        if not self.worker.ready.wait(60):
            raise RuntimeError(f"the worker did not start: {self.errors}")
        if args.sender == "detached":  # the child is up once it has registered (its first loop)
            from trading.execution.sender import registry_key
            from trading.redis_client import get_redis

            deadline = time.monotonic() + 60
            while not get_redis().exists(registry_key("ibs_a")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the order sender child did not start (see --keep and bench.log)")
                time.sleep(0.02)
        for k in (2, 1):  # two quiet hours first: the worker reaches its steady loop (a watermark exists)
            self.publish(T0 - k * HOUR, MID_BAR)
        deadline = time.monotonic() + WAIT_S
        while self.worker.cursor_ms < int((T0 - HOUR).timestamp() * 1000) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.pause()

    @staticmethod
    def publish(ts: datetime, ohlc) -> None:
        """What the hub does when an hour completes: the bar into its stream, then the watermark."""
        from strategies.bars import Bar
        from trading.marketdata import streams

        streams.publish(Bar("CL", "CLH6", "1h", ts, *ohlc, 100, 10))
        streams.set_watermark(int((ts + HOUR).timestamp()) * 1_000_000_000)

    def pause(self) -> None:
        self.worker.park()

    def resume(self) -> None:
        self.worker.unpark()

    def send(self, i: int) -> float:
        from trading.models import Signal, signal_key

        action, ts = action_of(i), T0 + i * HOUR
        key = signal_key("ibs_a", "CL", ts, action)
        self.ids.append(key)
        before = self.worker.rounds
        started = time.time()
        self.publish(ts, ENTRY_BAR if action == "buy" else EXIT_BAR)
        entry = self.standin.wait_for(key)
        # The next hour comes once this one is over: the worker's round ended and the sender has
        # recorded the answer (in production the next bar is an hour away).
        seen = self.worker.rounds
        self.worker.wait_rounds_after(seen)
        deadline = time.monotonic() + WAIT_S
        while (Signal.objects.filter(key=key, state__in=["pending", "sending"]).exists()
               and time.monotonic() < deadline):
            time.sleep(0.001)
        reset_rate_limit(self.url)
        self.busy_rounds += self.worker.rounds - before
        return ms_since(started, entry)

    def close(self) -> None:
        """Stop the worker loop (it sends what is still due, then releases its lock)."""
        self.stop.set()
        self.resume()
        self.thread.join(30)

    def finish(self) -> dict:
        from trading.models import Signal

        self.resume()
        idle_from, idle_s = self.worker.rounds, 0.5
        time.sleep(idle_s)  # nothing published: how often the loop goes round with nothing to do
        idle_rate = (self.worker.rounds - idle_from) / idle_s
        self.close()
        rows = Signal.objects.filter(strategy__name="ibs_a")
        states = Counter(rows.values_list("state", flat=True))
        attempts = Counter(rows.values_list("attempts", flat=True))
        return {"db_states": dict(states), "db_attempts": {str(k): v for k, v in attempts.items()},
                "poll_rounds": self.busy_rounds, "idle_poll_rounds_per_s": idle_rate,
                "errors": [f"{e.__class__.__name__}: {e}" for e in self.errors], "stopped": not self.thread.is_alive()}


# --- checks and statistics ----------------------------------------------------------------------------
def check(standin, ids: list[str]) -> dict:
    """Exactly one POST per signal at the stand-in, all answered 200, nothing else on that path."""
    expected = set(ids)
    snapshot = standin.snapshot()
    paths = {e["path"] for e in snapshot if signal_id(e) in expected}
    received = Counter(signal_id(e) for e in snapshot if e["path"] in paths)
    statuses = Counter(e["status"] for e in snapshot if e["path"] in paths)
    return {"expected": len(ids), "posts": sum(received.values()), "signals_posted": len(expected & set(received)),
            "missing": sorted(expected - set(received)),
            "duplicates": sorted(k for k, n in received.items() if n > 1),
            "unexpected": sorted(str(k) for k in set(received) - expected),
            "statuses": {str(k): v for k, v in statuses.items()}}


def stats(values: list[float]) -> dict:
    import numpy as np

    arr = np.array([v for v in values if v == v], dtype=float)
    if not len(arr):
        return {"n": 0}
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"n": int(len(arr)), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(arr.max()),
            "mean": float(arr.mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=1000, help="orders measured per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=10, help="orders sent first on each path, not counted")
    parser.add_argument("--block", type=int, default=100, help="the paths take turns in blocks of this many orders")
    parser.add_argument("--sender", choices=("detached", "inline"), default="detached",
                        help="the worker's order sender: the `sendorders` child as in production (default), "
                             "or in-process")
    parser.add_argument("--database-url", help="postgres://USER@HOST:PORT/…: run on a throw-away database "
                                               "created on that server (default: a temp SQLite file)")
    parser.add_argument("--log-level", default="INFO", help="the appliance's log level (logs go to a temp file)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, bench.log)")
    args = parser.parse_args(argv)
    if args.signals < 1 or args.warmup < 0 or args.block < 1:
        parser.error("--signals and --block must be at least 1, --warmup at least 0")
    total = args.warmup + args.signals

    tmp = Path(tempfile.mkdtemp(prefix="pineops-orderlat-"))
    ctx = configure(args, tmp)
    standin, runs = None, {}
    try:
        from io import StringIO

        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        call_command("load_demo", stdout=StringIO(), stderr=StringIO())
        standin = make_standin()
        load = os.getloadavg()[0]
        for name, cls in (("reference", ReferenceRun), ("outbox", OutboxRun), ("worker", WorkerRun)):
            runs[name] = cls(standin, args, ctx)
        latencies = {name: [] for name in runs}
        seconds = dict.fromkeys(runs, 0.0)
        # Interleaved blocks (the warm-up first), so that the three paths meet the same machine load.
        bounds = [0, args.warmup] if args.warmup else [0]
        bounds += list(range(args.warmup + args.block, total, args.block)) + [total]
        for lo, hi in zip(bounds, bounds[1:]):
            for name, run in runs.items():
                began = time.monotonic()
                if name == "worker":
                    run.resume()
                for i in range(lo, hi):
                    latencies[name].append(run.send(i))
                if name == "worker":
                    run.pause()
                seconds[name] += time.monotonic() - began
        worker_info = runs["worker"].finish()
        load = (load, os.getloadavg()[0])
        results = {name: {**check(standin, run.ids), "seconds": round(seconds[name], 2),
                          "latency_ms": stats(latencies[name][args.warmup:])} for name, run in runs.items()}
    finally:
        if "worker" in runs and runs["worker"].thread.is_alive():
            runs["worker"].close()
        if standin is not None:
            standin.stop()
        cleanup(ctx)
        ctx["log_file"].close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ok = all(not r["missing"] and not r["duplicates"] and not r["unexpected"] and set(r["statuses"]) == {"200"}
             for r in results.values())
    ok = ok and worker_info["db_states"] == {"sent": total} and worker_info["db_attempts"] == {"1": total} \
        and not worker_info["errors"] and worker_info["stopped"]
    report = {"ok": ok, "signals": args.signals, "warmup": args.warmup, "block": args.block, "sender": args.sender,
              "database": ctx["db"],
              "load_average_1m": load, "runs": results,
              "worker": worker_info, "tmp": str(tmp) if args.keep else None}
    if args.json:
        print(json.dumps(report))
        return 0 if ok else 1

    print(f"signals: {args.signals:,} per path (+{args.warmup} warm-up, not counted), paths interleaved in blocks "
          f"of {args.block}; database: {ctx['db']}; load average {load[0]:.2f} → {load[1]:.2f} on {os.cpu_count()} CPUs")
    labels = {"reference": LABELS["reference"], "outbox": LABELS["outbox"], "worker": LABELS[args.sender]}
    print(f"{'path':<42}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}   (ms)")
    for name, label in labels.items():
        s = results[name]["latency_ms"]
        if not s["n"]:
            print(f"{label:<42}{0:>6}  (no POST arrived)")
            continue
        print(f"{label:<42}{s['n']:>6}" + "".join(f"{s[k]:>9.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    ref, full = results["reference"]["latency_ms"], results["worker"]["latency_ms"]
    if ref.get("n") and full.get("n"):
        print(f"worker path over the HTTP floor: p50 +{full['p50'] - ref['p50']:.2f} ms, "
              f"p99 +{full['p99'] - ref['p99']:.2f} ms")
    print(f"worker loop: {worker_info['poll_rounds']:,} poll rounds while its {total:,} hours ran; idle, "
          f"{worker_info['idle_poll_rounds_per_s']:,.0f} rounds/s; signal rows: {worker_info['db_states']}")
    for name in labels:
        r = results[name]
        verdict = "exactly one POST each" if not (r["missing"] or r["duplicates"] or r["unexpected"]) else (
            f"MISSING {len(r['missing'])}, DUPLICATED {len(r['duplicates'])}, UNEXPECTED {len(r['unexpected'])}")
        print(f"check {name:<10} {r['signals_posted']:,}/{r['expected']:,} signals posted, {verdict}; "
              f"statuses {r['statuses']}; {r['seconds']:.1f} s")
    if worker_info["errors"]:
        print(f"worker errors: {worker_info['errors']}")
    if not ok:
        print("FAIL: an order was missing, duplicated, unexpected or not answered 200 (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
