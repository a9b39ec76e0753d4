"""bench/order_latency.py on a tiny count: every signal of every path reaches the stand-in exactly once.

The bench configures Django for itself (own runtime dir, database and Redis prefix), so it runs as a
subprocess beside pytest-django's test database and reports through --json. No timing is asserted.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIGNALS, WARMUP, BLOCK = 20, 2, 7


def test_every_signal_is_posted_exactly_once_on_every_path():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    command = [sys.executable, str(ROOT / "bench" / "order_latency.py"), "--signals", str(SIGNALS),
               "--warmup", str(WARMUP), "--block", str(BLOCK), "--json"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):  # the suite on PostgreSQL: the bench too
        command += ["--database-url", os.environ["DATABASE_URL"]]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip(), f"no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])

    total = SIGNALS + WARMUP
    assert set(report["runs"]) == {"reference", "outbox", "worker", "worker_noml"}
    for name, run in report["runs"].items():
        assert (run["missing"], run["duplicates"], run["unexpected"]) == ([], [], []), name
        assert run["expected"] == run["posts"] == run["signals_posted"] == total, name
        assert run["statuses"] == {"200": total}, name
        # every measured order counted once: in the figures, or on the line of the first orders after a reload
        reloads = run["after_reload_ms"]["n"]
        assert run["latency_ms"]["n"] + reloads == SIGNALS, name
        assert reloads == 0 if not name.startswith("worker") else 1 <= reloads <= -(-SIGNALS // BLOCK) + 1, name
    worker = report["worker"]  # one worker, its blocks alternating between the ML filter on and off
    assert worker["db_states"] == {"sent": 2 * total} and worker["db_attempts"] == {"1": 2 * total}
    assert worker["errors"] == [] and worker["stopped"]
    assert report["ok"] and done.returncode == 0, done.stderr[-3000:]
