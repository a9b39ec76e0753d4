"""Order latency: bar complete → webhook received at the TradersPost stand-in, p50/p90/p99/max/mean.

One process, four paths measured side by side against one local TradersPost stand-in
(127.0.0.1, each path on its own webhook path). Each path sends the same number of orders, one at
a time, alternating buy / exit with the worker's payload shape. Latency ends at the stand-in's
`received_at` (time.time() in its handler thread, once the POST's body is read) and starts at:

  reference  just before a bare `requests.post` of an equivalent payload: the floor of a local POST.
  outbox     just before `outbox.send_one(pk)` of a pending Signal row (ibs_b) already committed:
             claim, killswitch, ${VAR} webhook resolve, attempt row, then the POST.
  worker     the full path: the bench plays the hub and the clock starts just before it writes an hour
             as the hub's BarPublisher does (the six roots' hourly bars, their closing minutes and the
             watermark in one script call); the real `Worker.run()` loop of ibs_a (the demo's 6 roots),
             in a thread of this process, picks the hour up, decides it (the ML filter on: every entry
             candidate scored through the production scoring path) and writes the step, then hands the
             orders to its sender: by default the production wiring of `runworker`, a `manage.py
             sendorders` child fed through its stdin pipe (DetachedSender), which sends with the
             per-webhook rate limiter; `--sender inline` sends from the worker thread.
  worker_noml  the same worker with the ML filter off on every leg: its blocks alternate with the ML-on
             ones (the configuration changed while the worker is parked, the run resumed once the worker
             has reloaded it).

The worker path publishes one hour at a time, as in production: once an hour's POST has arrived
the bench waits for the end of that poll round and for the sender to record the answer before
the next hour, so no latency includes the tail of the previous one. Only hours in which all six
roots trade on a regular session are published (after 250 quiet hours of history for the features).
Bars are crafted so that every hour yields exactly one order, the roots taking turns: IBS 0.1
(entry while flat), then IBS 0.875 at the next hour (exit of the position filled at that bar's
open), the other roots' bars at IBS 0.5; prices never touch stop or target and every trade wins
(the daily stop never trips). ibs_a: entry window 24 h, flat time none, ML threshold 0 (every
candidate is scored, none is refused by its score).
The outbox and worker paths go through the Redis rate limiter as production does (60/min, 500/h
per webhook); after each order, outside the timed span, the bench empties that webhook's window,
or orders past the 60th would wait for the window instead of measuring the path.

The paths take turns in blocks of --block orders (the worker parked at the top of its next poll
round while the others run), so machine load hits all of them alike; the first --warmup orders of
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
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (configure_environment, create_pg_database, delete_keys, drop_pg_database,  # noqa: E402
                          load_average, migrate_and_load_demo, throwaway_prefix)
from bench.latency_runs import OutboxRun, ReferenceRun, WorkerRun  # noqa: E402
from bench.standin import StandInProcess, signal_id  # noqa: E402

LABELS = {"reference": "requests.post → stand-in (reference)",
          "outbox": "Signal row → outbox.send_one → stand-in",
          "detached": "bar → Worker, ML on → sendorders → stand-in",
          "inline": "bar → Worker, ML on (inline send) → stand-in"}


# --- environment (before Django is imported) -------------------------------------------------------
def configure(args, tmp: Path) -> dict:
    """Point this process at its own runtime dir, database and Redis prefix, then set Django up."""
    ctx = {"prefix": throwaway_prefix("pineops-orderlat"), "pg": None, "db": "sqlite"}
    db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    if args.database_url:
        if not args.database_url.startswith(("postgres://", "postgresql://")):
            raise SystemExit("--database-url takes a PostgreSQL URL (the default is a temp SQLite file)")
        name, db_url = create_pg_database(args.database_url)
        ctx.update(pg=(args.database_url, name), db=f"postgresql (throw-away database {name})")
    configure_environment(tmp, db_url, ctx["prefix"], POLICY_KILLSWITCH="", LOG_LEVEL=args.log_level)
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
        delete_keys(ctx["prefix"])
    except Exception as exc:  # noqa: BLE001
        print(f"warning: Redis keys under {ctx['prefix']} not deleted: {exc}", file=sys.stderr)
    if ctx.get("pg"):
        drop_pg_database(*ctx["pg"])


# --- checks and statistics ----------------------------------------------------------------------------
def check(standin, ids: list[str], siblings: list[str] = ()) -> dict:
    """Exactly one POST per signal at the stand-in, all answered 200, nothing else on that path (but the
    orders of `siblings`: the worker's other mode, on the same webhook)."""
    expected, others = set(ids), set(siblings) - set(ids)
    snapshot = standin.snapshot()
    paths = {e["path"] for e in snapshot if signal_id(e) in expected}
    received = Counter(signal_id(e) for e in snapshot if e["path"] in paths and signal_id(e) not in others)
    statuses = Counter(e["status"] for e in snapshot if e["path"] in paths and signal_id(e) not in others)
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
    standin, runs, worker = None, {}, None
    try:
        migrate_and_load_demo()
        standin = StandInProcess(tmp)
        load = load_average()
        runs["reference"] = ReferenceRun(standin, args, ctx)
        runs["outbox"] = OutboxRun(standin, args, ctx)
        worker = WorkerRun(standin, args, ctx)
        runs["worker"], runs["worker_noml"] = worker.mode(ml=True), worker.mode(ml=False)
        latencies = {name: [] for name in runs}
        seconds = dict.fromkeys(runs, 0.0)
        # Interleaved blocks (the warm-up first), so that the three paths meet the same machine load.
        bounds = [0, args.warmup] if args.warmup else [0]
        bounds += list(range(args.warmup + args.block, total, args.block)) + [total]
        for lo, hi in zip(bounds, bounds[1:]):
            for name, run in runs.items():
                began = time.monotonic()
                if name.startswith("worker"):
                    run.resume()
                for i in range(lo, hi):
                    latencies[name].append(run.send(i))
                if name.startswith("worker"):
                    run.pause()
                seconds[name] += time.monotonic() - began
        worker_info = worker.finish()
        load = (load, load_average())
        # The first order after each switch of mode is the first after a config reload (the worker builds its
        # scorer again and loads the models at it): a rare event in production, reported on its own line.
        reloads = {name: set(getattr(run, "after_reload", ())) for name, run in runs.items()}
        results = {name: {**check(standin, run.ids, worker.ids if name.startswith("worker") else ()),
                          "seconds": round(seconds[name], 2),
                          "latency_ms": stats([v for i, v in enumerate(latencies[name])
                                               if i >= args.warmup and i not in reloads[name]]),
                          "after_reload_ms": stats([latencies[name][i] for i in sorted(reloads[name])
                                                    if i >= args.warmup])}
                   for name, run in runs.items()}
    finally:
        if worker is not None and worker.thread.is_alive():
            worker.close()
        if standin is not None:
            standin.stop()
        cleanup(ctx)
        ctx["log_file"].close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ok = all(not r["missing"] and not r["duplicates"] and not r["unexpected"] and set(r["statuses"]) == {"200"}
             for r in results.values())
    ok = ok and worker_info["db_states"] == {"sent": 2 * total} and worker_info["db_attempts"] == {"1": 2 * total} \
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
    labels = {"reference": LABELS["reference"], "outbox": LABELS["outbox"], "worker": LABELS[args.sender],
              "worker_noml": LABELS[args.sender].replace("ML on", "ML off")}
    print(f"{'path':<48}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}   (ms)")
    for name, label in labels.items():
        s = results[name]["latency_ms"]
        if not s["n"]:
            print(f"{label:<48}{0:>6}  (no POST arrived)")
            continue
        print(f"{label:<48}{s['n']:>6}" + "".join(f"{s[k]:>9.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    for name in ("worker", "worker_noml"):
        s = results[name]["after_reload_ms"]
        if s["n"]:
            print(f"  {labels[name]}: the first order after each of its {s['n']} config reloads (left out above): "
                  f"median {s['p50']:.2f}, max {s['max']:.2f} ms")
    ref, full = results["reference"]["latency_ms"], results["worker"]["latency_ms"]
    if ref.get("n") and full.get("n"):
        print(f"worker path over the HTTP floor: p50 +{full['p50'] - ref['p50']:.2f} ms, "
              f"p99 +{full['p99'] - ref['p99']:.2f} ms")
    print(f"worker loop: {worker_info['poll_rounds']:,} poll rounds while its {2 * total:,} hours ran; idle, "
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
