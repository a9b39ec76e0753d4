"""bench/process_footprint.py on a short run: the real worker and its sender start, decide every hour,
send every order, and both are measured beside the references. No figure is asserted.

The bench configures Django for itself (own runtime dir, database and Redis prefix), so it runs as a
subprocess beside pytest-django's test database and reports through --json.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_worker_and_sender_are_measured_after_warmup_beside_the_references():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    command = [sys.executable, str(ROOT / "bench" / "process_footprint.py"), "--repeat", "1",
               "--hours", "2", "--settle", "0.2", "--json"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):  # the suite on PostgreSQL: the bench too
        command += ["--database-url", os.environ["DATABASE_URL"]]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.stdout.strip(), f"no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and report["ok"] and done.returncode == 0, report["errors"]
    figures = report["figures"]
    for name in ("worker_mb", "sender_mb", "ready_s", "django_mb", "django_s", "python_mb", "python_s"):
        assert figures[name]["n"] == 1 and figures[name]["median"] > 0, name
    assert figures["sender_mb"]["median"] < figures["worker_mb"]["median"]
    orders = report["orders"]
    assert orders["signals"] > 0 and orders["sent"] == orders["posts"] > 0  # entries and exits, each posted once
