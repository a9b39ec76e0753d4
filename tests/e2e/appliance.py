"""Run the appliance as its container does (deploy/entrypoint.sh → supervisord) in a temp dir.

The processes get their own database (SQLite file, or a throw-away PostgreSQL database when the
suite runs on PostgreSQL), their own Redis started by supervisord on a free port, and their own
web port; nothing touches the developer's data.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import redis
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


def to_ts(value) -> float:
    """A timestamp column as read by ProcessEnv.query: a datetime (PostgreSQL) or UTC text (SQLite)."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


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
        self.own_db_url = db_url
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

    def migrate_with_demo(self) -> None:
        """This environment's database as `manage.py migrate` and `manage.py load_demo` leave it: a copy of a
        template this test process made with those two commands the first time (two Django starts saved on
        every later environment; the copy is the file itself, or PostgreSQL's CREATE DATABASE … TEMPLATE)."""
        if self.env["DATABASE_URL"] != self.own_db_url:  # a database the caller brought (e.g. behind a proxy)
            self.manage("migrate", "--no-input", "-v0")
            self.manage("load_demo")
            return
        template = _demo_template(self)
        if self.pg_db:
            for sql in (f"DROP DATABASE {self.pg_db}", f"CREATE DATABASE {self.pg_db} TEMPLATE {template}"):
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True, capture_output=True)
        else:
            for suffix in ("", "-wal"):  # (a closed WAL database keeps no -wal file; copied if one is left)
                if Path(f"{template}{suffix}").exists():
                    shutil.copyfile(f"{template}{suffix}", self.tmp / f"pineops.sqlite3{suffix}")

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

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one SQL read on this environment's database (`%s` placeholders). Cheap enough to poll:
        a `shell` starts Python and Django each time, and polling with it keeps a CPU busy."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            import sqlite3

            with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as con:
                return con.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as con:
            return con.execute(sql, params).fetchall()

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


_TEMPLATES: dict[str, object] = {}


def _demo_template(env: ProcessEnv):
    """The migrated database with the demo loaded, made once per test process and engine (dropped at exit)."""
    engine = "postgresql" if env.pg_db else "sqlite"
    if engine not in _TEMPLATES:
        tmp = Path(tempfile.mkdtemp(prefix="pineops-template-"))
        maker = ProcessEnv(tmp)
        maker.manage("migrate", "--no-input", "-v0")
        maker.manage("load_demo")
        if maker.pg_db:
            _TEMPLATES[engine] = maker.pg_db
            atexit.register(subprocess.run, ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c",
                                             f"DROP DATABASE IF EXISTS {maker.pg_db} WITH (FORCE)"], capture_output=True)
        else:
            _TEMPLATES[engine] = tmp / "pineops.sqlite3"
        atexit.register(shutil.rmtree, tmp, True)
    return _TEMPLATES[engine]


class RedisServer:
    """A redis-server of this test's own, with the appliance's config (append-only file)."""

    def __init__(self, tmp):
        self.port = free_port()
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(["redis-server", str(ROOT / "deploy" / "redis.conf"), "--port", str(self.port),
                                      "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis(port=self.port).ping(), 20, "redis-server up")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


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


# As supervisord.conf runs them (prefork pool, two children), without worker events; the node name
# carries the Redis prefix so the run's broker keys can be found and removed afterwards.
WORKER = ["worker", "--loglevel=INFO", "--concurrency=2", "--without-gossip", "--without-mingle",
          "--without-heartbeat"]
BEAT = ["beat", "--loglevel=INFO", "--scheduler", "trading.beat:SingleBeatScheduler", "--pidfile="]
SUCCEEDED = re.compile(r"Task (trading\.\w+)\[[0-9a-f-]+\] succeeded")


# --- processes -----------------------------------------------------------------------------------

class Celery:
    """A worker and a beat of one ProcessEnv, optionally on a clock shifted by `offset` seconds."""

    def __init__(self, env: ProcessEnv, offset: float | None = None):
        self.env, self.offset = env, offset
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> "Celery":
        self._spawn("worker", [*WORKER, "-n", f"{self.env.redis_prefix}@%h"])
        self._spawn("beat", BEAT)
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        if self.offset is None:
            cmd = [sys.executable, "-m", "celery", "-A", "pineops", *args]
        else:
            cmd = [sys.executable, "-m", "tests.e2e.clockshift", "--offset", repr(self.offset), "--",
                   "-A", "pineops", *args]
        log = (self.env.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        self.env.children.append(proc)  # ProcessEnv.cleanup SIGKILLs whatever is left

    def log(self, name: str) -> str:
        path = self.env.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{self.log(name)[-4000:]}" for name in self.procs)

    def succeeded(self, task: str) -> int:
        """How many runs of `task` the worker finished."""
        return sum(1 for m in SUCCEEDED.finditer(self.log("worker")) if m.group(1) == task)

    def wait(self, predicate, timeout: float, what: str):
        """wait_until `predicate`, failing at once (with the logs) if the worker or beat exits."""
        def check():
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            return ("exited", dead) if dead else predicate()

        try:
            result = wait_until(check, timeout, what, interval=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None
        if isinstance(result, tuple) and result[:1] == ("exited",):
            raise AssertionError(f"celery exited {result[1]} while waiting for {what}\n{self.tails()}")
        return result

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (warm shutdown: the worker acks its tasks, beat saves last_run_at), then SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.forget_broker_bindings()

    def forget_broker_bindings(self) -> None:
        """Kombu's binding tables are keyed outside the prefix (_kombu.binding.EXCHANGE,
        _kombu.binding_permanent.EXCHANGE, _kombu.binding_deadlines): drop this run's entries."""
        prefix = self.env.redis_prefix.encode()
        client = redis.Redis.from_url(self.env.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        for key in client.scan_iter("_kombu.binding*"):
            if prefix in key:
                client.delete(key)
            elif client.type(key) == b"set":
                if stale := [m for m in client.smembers(key) if prefix in m]:
                    client.srem(key, *stale)
            elif client.type(key) == b"zset":
                if stale := [m for m in client.zrange(key, 0, -1) if prefix in m]:
                    client.zrem(key, *stale)
