"""Process footprint: RSS of a real `runworker` and its `sendorders` child after warmup, and the time
`runworker` takes to be ready, each beside a reference started the same way.

The subject is ibs_a as `load_demo` makes it: 6 instruments (6A 6C 6M CL GC HG), the ML filter on for
each (the shipped models/), started as supervisord starts it (`manage.py runworker --strategy ibs_a`,
which starts its own `manage.py sendorders` child). The bench plays the hub: before the start it
publishes --history hourly bars per root (the worker's feature history), then --hours more hours
after it is ready (bars of IBS 0.1 and 0.875 in turn, so entry candidates are scored and orders go
to a local TradersPost stand-in, exits booked by the sender), and waits until the worker has decided
the last hour and no order is pending. Then it reads VmRSS (and VmHWM, the peak) of both processes.

  ready     Popen of the worker → its "worker ready" log line (setup done: models loaded, history read).
  reference `python -c "import django; django.setup()"` (the floor of any Django process here) and a
            plain `python -c pass`, measured to their exit, RSS read at the end of the same process.

The three are interleaved --repeat times, so machine load hits them alike; the load average is
printed before and after. No figure is asserted; exit status 1 when a run fails (no ready line, a
process died, an order left unsent).

Isolation: a temp RUNTIME_DIR with its SQLite database (or --database-url postgres://…: a throw-away
database on that server, dropped afterwards), a unique REDIS_PREFIX whose keys are deleted at the end.
Run: .venv/bin/python bench/process_footprint.py [--repeat 3] [--hours 6] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (configure_environment, create_pg_database, delete_keys, drop_pg_database,  # noqa: E402
                          load_average, migrate_and_load_demo, throwaway_prefix)

UTC = timezone.utc
HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday: live hours start here, history before it
ROOTS = ["6A", "6C", "6M", "CL", "GC", "HG"]
WAIT_S = 60.0
REFERENCE = "import django; django.setup()"
RSS_PRINT = "print('RSS', *[l.split()[1] for l in open('/proc/self/status') if l.startswith(('VmRSS', 'VmHWM'))])"


def memory_kb(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a live process, kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def reference(code: str, env: dict) -> dict:
    """A short Python process: wall time to its exit and its RSS at the end (printed by itself)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", f"{code}; {RSS_PRINT}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    wall = time.monotonic() - started
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RSS ")]
    if done.returncode or not line:
        raise RuntimeError(f"reference {code!r} failed: {done.stderr[-2000:]}")
    rss, hwm = (int(v) for v in line[-1].split()[1:])
    return {"seconds": wall, "rss_mb": rss / 1024, "peak_mb": hwm / 1024}


# --- the bench plays the hub -------------------------------------------------------------------------
def bar_of(root: str, ts: datetime, ibs: float, base: float):
    from strategies.bars import Bar

    low, high = base * 0.995, base * 1.005
    close = low + ibs * (high - low)
    return Bar(root, f"{root}H6", "1h", ts, base, high, low, close, 100, 10)


def publish_hour(ts: datetime, ibs: float, step: int) -> None:
    """What the hub does when an hour completes: every root's bar into its stream, then the watermark."""
    from trading.marketdata import streams

    for k, root in enumerate(ROOTS):
        streams.publish(bar_of(root, ts, ibs, 100.0 + k + 0.01 * (step % 50)))
    streams.set_watermark(int((ts + HOUR).timestamp()) * 1_000_000_000)


def publish_history(hours: int) -> None:
    import math

    for i in range(hours, 0, -1):
        publish_hour(T0 - i * HOUR, 0.5 + 0.4 * math.sin(i / 3.0), i)


class Output(threading.Thread):
    """The worker's merged stdout/stderr: kept, and the moments its lines of interest arrive."""

    def __init__(self, proc: subprocess.Popen, log_path: Path):
        super().__init__(daemon=True)
        self.proc, self.log_path, self.lines, self.seen = proc, log_path, [], {}
        self.changed = threading.Condition()

    def run(self) -> None:
        with self.log_path.open("a") as log:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                with self.changed:
                    self.lines.append(line)
                    for marker in ("worker ready", "order sender started", "order sender running"):
                        if marker in line and marker not in self.seen:
                            self.seen[marker] = (time.monotonic(), line)
                    self.changed.notify_all()
        with self.changed:
            self.seen["eof"] = (time.monotonic(), "")
            self.changed.notify_all()

    def wait_for(self, marker: str, timeout: float = WAIT_S):
        with self.changed:
            self.changed.wait_for(lambda: marker in self.seen or "eof" in self.seen, timeout)
            return self.seen.get(marker)


def wait_until(predicate, timeout: float = WAIT_S, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def worker_run(env: dict, first_hour: int, hours: int, tmp: Path, settle: float) -> dict:
    """One start of the real worker: time to ready, then --hours hours decided, then both RSS."""
    from django.db import connections

    from trading.models import Signal, WorkerCursor

    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "--strategy", "ibs_a",
                             "--block-ms", "200"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Output(proc, tmp / "worker.log")
    out.start()
    result = {"ok": False}
    try:
        ready = out.wait_for("worker ready")
        if ready is None:
            raise RuntimeError("no 'worker ready' line: " + "".join(out.lines[-20:]))
        result["ready_s"] = ready[0] - started
        spawned = out.wait_for("order sender started")
        if spawned is None:
            raise RuntimeError("the worker started no order sender")
        sender_pid = int(spawned[1].rsplit("pid=", 1)[1].split()[0])
        last = None
        for i in range(first_hour, first_hour + hours):
            ts = T0 + i * HOUR
            publish_hour(ts, 0.1 if i % 2 == 0 else 0.875, i)
            last = int(ts.timestamp() * 1000)
            if not wait_until(lambda: WorkerCursor.objects.filter(strategy__name="ibs_a", last_bar_ms__gte=last)
                              .exists()):
                raise RuntimeError(f"the worker did not decide hour {ts:%Y-%m-%d %H:%M}")
        if not wait_until(lambda: not Signal.objects.filter(strategy__name="ibs_a",
                                                            state__in=["pending", "sending"]).exists()):
            raise RuntimeError("orders still pending after the last hour")
        time.sleep(settle)  # both loops back at rest
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode})")
        worker, sender = memory_kb(proc.pid), memory_kb(sender_pid)
        result.update(ok=True, worker_mb=worker["VmRSS"] / 1024, worker_peak_mb=worker["VmHWM"] / 1024,
                      sender_mb=sender["VmRSS"] / 1024, sender_peak_mb=sender["VmHWM"] / 1024)
    except Exception as exc:  # noqa: BLE001 — reported with the run
        result["error"] = f"{exc.__class__.__name__}: {exc}"
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the worker closes its sender's pipe and waits for it
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.join(5)
        connections.close_all()
    return result


# --- statistics and output ---------------------------------------------------------------------------
def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def show(report: dict) -> None:
    print(f"process footprint, ibs_a: {len(ROOTS)} instruments, ML on; {report['repeat']} interleaved runs; "
          f"database {report['db']}")
    print(f"load average {report['load_before']:.2f} before, {report['load_after']:.2f} after")
    rows = [("runworker RSS after warmup", "worker_mb", "MB"), ("  its peak (VmHWM)", "worker_peak_mb", "MB"),
            ("sendorders RSS after warmup", "sender_mb", "MB"), ("  its peak (VmHWM)", "sender_peak_mb", "MB"),
            ("runworker ready", "ready_s", "s"),
            ("reference: django.setup() RSS", "django_mb", "MB"), ("reference: django.setup() to exit", "django_s", "s"),
            ("reference: plain python RSS", "python_mb", "MB"), ("reference: plain python to exit", "python_s", "s")]
    for label, name, unit in rows:
        s = report["figures"].get(name)
        if s:
            print(f"  {label:36s} {s['median']:8.2f} {unit}  (min {s['min']:.2f}, max {s['max']:.2f})")
    print(f"targets: worker ≤ 200 MB, sender ≤ 70 MB, ready < 3 s; runs failed: {len(report['errors'])}")
    for error in report["errors"]:
        print(f"  FAIL {error}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each (default 3)")
    parser.add_argument("--history", type=int, default=240, help="hourly bars per root before the start")
    parser.add_argument("--hours", type=int, default=6, help="hours published after the worker is ready")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of rest before RSS is read")
    parser.add_argument("--database-url", help="postgres://USER@HOST:PORT/…: a throw-away database on that server")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, worker.log)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pineops-footprint-"))
    prefix, pg, db = throwaway_prefix("pineops-footprint"), None, "sqlite"
    db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    if args.database_url:
        name, db_url = create_pg_database(args.database_url)
        pg, db = (args.database_url, name), f"postgresql (throw-away database {name})"
    try:
        return run(args, tmp, db_url, prefix, db)
    finally:
        try:
            delete_keys(prefix)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: Redis keys under {prefix} not deleted: {exc}", file=sys.stderr)
        if pg:
            from django.db import connections

            connections.close_all()
            drop_pg_database(*pg)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, db_url: str, prefix: str, db: str) -> int:
    from trading.sim.traderspost import TradersPostStandIn

    configure_environment(tmp, db_url, prefix, POLICY_KILLSWITCH="", LOG_LEVEL="INFO")
    for name in ("BAR_STORE_DIR", "STATIC_ROOT", "SUPERVISOR_PROCESS_NAME"):
        os.environ.pop(name, None)
    import django

    django.setup()
    migrate_and_load_demo()
    from trading.models import Signal, Strategy, StrategyInstrument

    standin = TradersPostStandIn().start()
    os.environ["TRADERSPOST_IBS_A_WEBHOOK"] = f"{standin.url}/trading/webhook/bench-footprint"
    Strategy.objects.filter(name="ibs_a").update(entry_windows="00:00-24:00", flat_time="none")
    legs = StrategyInstrument.objects.filter(strategy__name="ibs_a")
    assert sorted(legs.filter(enabled=True, ml_enabled=True).values_list("instrument__root", flat=True)) == ROOTS
    publish_history(args.history)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    report = {"repeat": args.repeat, "db": db, "load_before": load_average(), "runs": [], "errors": []}
    figures: dict[str, list[float]] = {}
    hour = 0
    for i in range(args.repeat):
        for name, code in (("python", "pass"), ("django", REFERENCE)):
            ref = reference(code, env)
            figures.setdefault(f"{name}_mb", []).append(ref["rss_mb"])
            figures.setdefault(f"{name}_s", []).append(ref["seconds"])
        run_ = worker_run(env, hour, args.hours, tmp, args.settle)
        hour += args.hours
        report["runs"].append(run_)
        if not run_["ok"]:
            report["errors"].append(f"run {i + 1}: {run_.get('error')}")
            continue
        for name in ("worker_mb", "worker_peak_mb", "sender_mb", "sender_peak_mb", "ready_s"):
            figures.setdefault(name, []).append(run_[name])
    report["load_after"] = load_average()
    report["figures"] = {name: summary(values) for name, values in figures.items()}
    report["orders"] = {"signals": Signal.objects.filter(strategy__name="ibs_a").count(),
                        "sent": Signal.objects.filter(strategy__name="ibs_a", state="sent").count(),
                        "posts": len(standin.snapshot())}
    report["ok"] = not report["errors"]
    print(json.dumps(report) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        show(report)
        print(f"orders: {report['orders']['signals']} signals, {report['orders']['sent']} sent, "
              f"{report['orders']['posts']} POSTs at the stand-in")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
