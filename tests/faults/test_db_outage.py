"""The database away for 30 s in the middle of a replayed week, real processes (gateway → runhub →
runworker → its sendorders child → TradersPost stand-in): no process dies or crash-loops into lost
state, no order goes out without its signal row, and afterwards the orders received still equal the
backtest of the same bars, none twice, none lost.

The database really goes away for the processes: they reach PostgreSQL through a TCP proxy of this
test, which is cut (every open connection closed, new ones dropped at once, as a PostgreSQL that went
down) for 30 s and then restored. The scenario runs on PostgreSQL in both passes of `make test`
(on a throw-away database of its own), since the point is the network between the processes and the
database, which SQLite does not have.
"""
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from contextlib import suppress
import itertools
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.db import OperationalError

from tests.e2e import trading_setup
from tests.e2e.appliance import ProcessEnv, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, TradingRun, received
from strategies.bars import Bar
from trading.execution import worker as worker_module
from trading.execution.ledger import Ledger
from trading.execution.worker import Worker
from trading.marketdata import streams
from trading.models import Signal, Strategy, StrategyInstrument, WorkerCursor
from trading.sim.market import front_month, generate
from trading.sim.traderspost import TradersPostStandIn

KEY = "db-" + "faultsDbOutageKey000000000005"
ROOTS = ["6A", "CL"]
OUTAGE = 30.0


def postgres_server() -> tuple[str, int]:
    """host, port of the suite's PostgreSQL (DATABASE_URL's when it is one, else 127.0.0.1:5432)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 5432
    return "127.0.0.1", 5432


def psql(host: str, port: int, sql: str, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-h", host, "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=check, capture_output=True, text=True, timeout=60)


class DatabaseProxy:
    """127.0.0.1:`port` → PostgreSQL, byte for byte. `cut()` closes every open connection and drops
    each new one as soon as it is accepted, until `restore()`."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.accepted = self.dropped = self.cut_connections = 0
        self._thread = threading.Thread(target=self._accept, name="db-proxy", daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            if not self.up.is_set():
                self.dropped += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            with self._lock:
                self._open.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)
            src.close()

    def cut(self) -> int:
        """The database goes away: every connection through the proxy is closed, new ones are dropped."""
        self.up.clear()
        with self._lock:
            live = list(self._open)
        for s in live:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.cut_connections += len(live) // 2
        return len(live) // 2

    def restore(self):
        self.up.set()

    def stop(self):
        self.listener.close()
        self.cut()


class ProxiedRun(TradingRun):
    """TradingRun whose processes (and its migrate/shell commands) use `database_url`."""

    def __init__(self, *args, database_url: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.database_url = database_url

    def _env(self, tmp, extra):
        with mock.patch.dict(os.environ):
            os.environ.pop("DATABASE_URL", None)  # ProcessEnv would create a PostgreSQL database of its own
            return ProcessEnv(tmp, {**extra, "DATABASE_URL": self.database_url})

    def __enter__(self):
        with mock.patch.object(trading_setup, "ProcessEnv", self._env):
            return super().__enter__()


def log_time(stamp: str) -> float:
    """A log line's local time stamp (`2026-01-02 03:04:05,678`) as epoch seconds."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_count(path, text: str) -> int:
    return path.read_text(errors="replace").count(text) if path.exists() else 0


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_database_away_30s_mid_session(tmp_path, fault_report):
    host, port = postgres_server()
    if subprocess.run(["pg_isready", "-h", host, "-p", str(port)], capture_output=True).returncode:
        pytest.fail(f"PostgreSQL is not reachable at {host}:{port}: this scenario always runs on PostgreSQL "
                    "(`make services` starts it)")
    # The volume moves to the next contract on the 2nd day: the hub rolls ~2 days into the replay,
    # while the database is away.
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 2), days=5, seed=4, roll_day=1,
                     trades_per_minute=3.0)
    fronts = {r: front_month(r, date(2026, 11, 2)) for r in ROOTS}
    days = {r: len(expected_bars(paths[r], fronts[r])["1d"]) for r in ROOTS}

    database = f"pineops_dbout_{uuid.uuid4().hex[:10]}"
    psql(host, port, f"CREATE DATABASE {database}")
    proxy = DatabaseProxy((host, port))
    url = f"postgres://postgres@127.0.0.1:{proxy.port}/{database}"
    try:
        with ProxiedRun(tmp_path, paths, fronts, days, key=KEY, speed=8_000, block_ms=100, database_url=url) as run:
            hub, worker = run.hub, run.worker
            wait_until(lambda: run.broker.snapshot(), 120, "the first order at the broker")
            assert not run.replay_done(), "the replay ended before the outage"
            cut_at = time.time()
            closed = proxy.cut()
            time.sleep(OUTAGE)
            alive_in_outage = hub.poll() is None and worker.poll() is None
            proxy.restore()
            restored_at = time.time()
            wait_until(lambda: run.replay_done() or hub.poll() is not None or worker.poll() is not None, 240,
                       "the replay, after the outage")
            assert hub.poll() is None and worker.poll() is None, "a process exited after the outage:\n" + "".join(
                (tmp_path / f).read_text(errors="replace")[-1500:] for f in ("hub.log", "worker-0.log"))
            run.wait_caught_up()  # also asserts that hub and worker are alive
            assert run.hub is hub and run.worker is worker
            frames, summary = run.frames(), run.summary()
            keys = [o["order"]["extras"]["signal_id"] for o in run.broker.snapshot()]
            rows = run.env.shell_json("import json; from trading.models import Signal\n"
                                      f"print(json.dumps(dict(Signal.objects.filter(key__in={keys!r})"
                                      ".values_list('key', 'state'))))")
            fronts_db = run.env.shell_json("import json; from trading.models import Instrument, ContractRoll\n"
                                           f"print(json.dumps([dict(Instrument.objects.filter(root__in={ROOTS!r})"
                                           ".values_list('root', 'active_contract')), sorted(ContractRoll.objects"
                                           ".values_list('instrument__root', 'from_contract', 'to_contract'))]))")
            states = run.env.shell_json("import json; from django.db.models import Count; from trading.models import Signal\n"
                                        "print(json.dumps(dict(Signal.objects.values_list('state')"
                                        ".annotate(n=Count('id')).values_list('state', 'n'))))")
        posts = run.broker.snapshot()
    finally:
        proxy.stop()
        psql(host, port, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", check=False)

    orders = [p["order"] for p in posts]
    expected = Expected(frames)
    buys, exits, duplicates = received(orders)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    unrecorded = [k for k in keys if rows.get(k) != "sent"]
    during = [p for p in posts if cut_at + 1 < p["received_at"] < restored_at]
    worker_log = tmp_path / "worker-0.log"
    hub_fronts = json.loads((tmp_path / "hub_heartbeat.json").read_text())["fronts"]
    rolls = re.findall(r"^(\S+ \S+) INFO \S+ contract roll root=(\S+) from=(\S+) to=(\S+)",
                       (tmp_path / "hub.log").read_text(), re.M)
    rolls_in_outage = [r for r in rolls if cut_at < log_time(r[0]) < restored_at]
    rebuilds = log_count(worker_log, "rebuilding state from the database")
    senders = log_count(worker_log, "order sender started")
    print(f"\ndatabase away {OUTAGE:g}s: {closed} connections cut, {proxy.dropped} dropped while away; "
          f"worker rebuilt {rebuilds}x, senders started {senders}; orders {len(orders)} "
          f"({len(during)} during the outage); signal states {states}; rolls {len(rolls)} "
          f"({len(rolls_in_outage)} during the outage), recorded {fronts_db}")
    fault_report("database away 30 s", runs=1, expected=len(expected.buys) + len(expected.exits),
                 received=len(orders), duplicates=duplicates, lost=lost,
                 errors=len(summary["ambiguous"]) + len(unrecorded) + (not alive_in_outage)
                 + (fronts_db[0] != hub_fronts))
    assert alive_in_outage, "hub or worker exited while the database was away"
    assert proxy.dropped > 0, "no process tried the database while it was away: the outage was not exercised"
    assert senders == 1, "the order sender died during the outage"
    assert during == [], "orders reached the broker while their signals could not be recorded"
    assert unrecorded == [], f"orders at the broker whose signal is not recorded as sent: {unrecorded}"
    assert duplicates == 0 and lost == 0 and summary["ambiguous"] == []
    assert (buys, exits) == (expected.buys, expected.exits)
    assert summary["open"] == expected.open_at_end
    # A roll the hub made while the database was away is recorded once it is back (not only logged).
    assert rolls_in_outage, "no roll fell in the outage: the scenario did not exercise it"
    assert fronts_db[0] == hub_fronts, "the database's front contracts differ from the hub's"
    assert fronts_db[1] == sorted([r, f, t] for _, r, f, t in rolls)


@pytest.mark.django_db(transaction=True)
def test_worker_whose_rebuild_fails_too_rebuilds_before_going_on(settings, redis_prefix, webhook_env, monkeypatch,
                                                                 tmp_path):
    """The order of failures the outage above makes, at its worst moment: the database drops while
    the worker writes an hour, is still away when the worker rebuilds its state (2 s later), and is
    back by its next round. That round must rebuild first: the hour was read from the stream and
    stepped in memory but never written, so going on would skip it (its entry never decided)."""
    settings.REDIS_PREFIX, settings.RUNTIME_DIR = redis_prefix, tmp_path
    with TradersPostStandIn() as broker:
        monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", f"{broker.url}/trading/webhook/db-outage-test-token")
        call_command("load_demo")
        StrategyInstrument.objects.filter(strategy__name="ibs_a").exclude(instrument__root="CL").update(enabled=False)
        StrategyInstrument.objects.filter(strategy__name="ibs_a").update(ml_enabled=False)
        t0 = datetime(2026, 11, 3, 1, 0, tzinfo=timezone.utc)  # inside the entry window
        WorkerCursor.objects.create(strategy=Strategy.objects.get(name="ibs_a"),
                                    last_bar_ms=int((t0 - timedelta(hours=1)).timestamp() * 1000))
        for i, (o, h, l, c) in enumerate([(100.0, 101.0, 99.0, 99.2), (100.0, 100.4, 99.6, 100.0)]):  # IBS 0.1, 0.5
            ts = t0 + timedelta(hours=i)
            streams.publish(Bar("CL", "CLZ6", "1h", ts, o, h, l, c, 100, 10))
            streams.set_watermark(int((ts + timedelta(hours=1)).timestamp()) * 10**9)

        calls = {"setup": 0, "apply": 0}
        real_setup, real_apply = Worker.setup, Ledger.apply

        def setup(self):
            calls["setup"] += 1
            if calls["setup"] == 2:  # the rebuild after the failed write: the database is still away
                raise OperationalError("server closed the connection unexpectedly")
            return real_setup(self)

        def apply(self, *args, **kwargs):
            calls["apply"] += 1
            if calls["apply"] == 1:  # the first hour's write: the database goes away
                raise OperationalError("server closed the connection unexpectedly")
            return real_apply(self, *args, **kwargs)

        monkeypatch.setattr(Worker, "setup", setup)
        monkeypatch.setattr(Ledger, "apply", apply)
        monkeypatch.setattr(worker_module, "time", SimpleNamespace(sleep=lambda s: None, monotonic=worker_module.time.monotonic))
        rounds = itertools.count()
        Worker("ibs_a", block_ms=10, stopping=lambda: next(rounds) >= 8).run()
        orders = broker.orders()

    assert calls["apply"] >= 2, "the failed hour was never written again"
    assert list(Signal.objects.values_list("key", "state")) == [("ibs_a:CL:2026-11-03T01:00:00Z:buy", "sent")]
    assert [(o["action"], o["extras"]["signal_id"]) for o in orders] == [("buy", "ibs_a:CL:2026-11-03T01:00:00Z:buy")]
