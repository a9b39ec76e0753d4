"""Run the appliance as its container does (deploy/entrypoint.sh → supervisord) in a temp dir.

The processes get their own database (SQLite file, or a throw-away PostgreSQL database when the
suite runs on PostgreSQL), their own Redis started by supervisord on a free port, and their own
web port; nothing touches the developer's data.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(runtime_dir: Path, needle: str) -> list[int]:
    """Pids of live processes whose command line holds `needle` and whose RUNTIME_DIR is `runtime_dir`
    (so parallel test runs never see each other's processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle not in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if f"RUNTIME_DIR={runtime_dir}".encode() in environ and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 — keep polling; report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class ProcessEnv:
    """An environment for the project's commands as separate processes: own database (SQLite file,
    or a throw-away PostgreSQL database when the suite runs on PostgreSQL), own Redis prefix."""

    def __init__(self, tmp: Path, extra_env: dict | None = None):
        self.tmp = tmp
        self.pg_db = None
        db_url = os.environ.get("DATABASE_URL", "")
        if db_url.startswith("postgres"):
            self.pg_db = f"pineops_e2e_{uuid.uuid4().hex[:10]}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {self.pg_db}"],
                           check=True, capture_output=True)
            db_url = db_url.rsplit("/", 1)[0] + "/" + self.pg_db
        else:
            db_url = f"sqlite:///{tmp / 'pineops.sqlite3'}"
        self.redis_prefix = f"pineops-e2e-{uuid.uuid4().hex[:10]}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
            "PINEOPS_ENV_FILE": "/dev/null",
            "RUNTIME_DIR": str(tmp),
            "DATABASE_URL": db_url,
            "REDIS_PREFIX": self.redis_prefix,
            "PINEOPS_PYTHON": sys.executable,
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.children: list[subprocess.Popen] = []

    def manage(self, *args: str, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=180)
        if check and result.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code).stdout

    def shell_json(self, code: str):
        """Run `code` (which prints one JSON document last) and parse that last line."""
        import json

        lines = [line for line in self.shell(code).splitlines() if line.strip()]
        return json.loads(lines[-1])

    def spawn(self, *args: str, log_name: str) -> subprocess.Popen:
        log = (self.tmp / log_name).open("wb")
        proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(proc)
        return proc

    def cleanup(self):
        for proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        import redis

        try:
            client = redis.Redis.from_url(self.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
            for key in client.scan_iter(f"{self.redis_prefix}*"):
                client.delete(key)
        except redis.ConnectionError:
            pass  # the appliance's own Redis is gone with it
        if self.pg_db:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c",
                            f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)"], capture_output=True)


class Appliance(ProcessEnv):
    def __init__(self, tmp: Path, extra_env: dict | None = None):
        self.web_port = free_port()
        self.redis_port = free_port()
        super().__init__(tmp, {
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PINEOPS_START_REDIS": "true",
            "PINEOPS_WEB_BIND": f"127.0.0.1:{self.web_port}",
            "PINEOPS_ALLOW_ROOT": "1",
            "PINEOPS_LOAD_DEMO": "1",
            "PINEOPS_ADMIN_PASSWORD": "e2e-admin-password",
            **(extra_env or {}),
        })
        self.proc = None
        self.log = tmp / "appliance.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self):
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(["bash", str(ROOT / "deploy" / "entrypoint.sh")], cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: (self.tmp / "supervisor.sock").exists() or self.proc.poll() is not None, 90,
                   "supervisord socket")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return self

    def rpc(self):
        import xmlrpc.client

        from supervisor.xmlrpc import SupervisorTransport

        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
            None, None, f"unix://{self.tmp / 'supervisor.sock'}"))

    def states(self) -> dict[str, dict]:
        return {p["name"]: p for p in self.rpc().supervisor.getAllProcessInfo()}

    def wait_running(self, name: str, timeout: float = 60) -> dict:
        return wait_until(lambda: (self.states().get(name) or {}).get("statename") == "RUNNING"
                          and self.states()[name], timeout, f"{name} RUNNING")

    def get(self, path: str, **kw):
        return requests.get(self.url + path, timeout=5, **kw)

    def stop(self, timeout: float = 120) -> float:
        """SIGTERM supervisord and wait; returns seconds taken."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._log.close()
        return time.monotonic() - started

    def cleanup(self):
        self.stop()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError, AttributeError):
            pass
        super().cleanup()
