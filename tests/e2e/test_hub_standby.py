"""One hub per feed: two real `runhub` processes as two hosts (PINEOPS_HOST_NAME) on one database, one Redis and
one local gateway. Only the holder of the feed's lease subscribes and writes; the other stands by naming it. The
holder frozen (kill -STOP): the standby takes over within the lease, rebuilding the day from the streams (its
bars already there are refused as duplicates); the frozen hub woken (kill -CONT) appends nothing and stands by;
the new holder killed (-9): the first takes the feed back within the lease. The streams then hold exactly the
bars an independent pandas model makes of the trades: none missing, none twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date

import pandas as pd
import pytest
import redis

from strategies.bars import Bar
from tests.e2e.appliance import ROOT, ProcessEnv, wait_until
from tests.e2e.reference import expected_bars
from trading.sim.gateway import LiveGateway
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
KEY = "db-" + "e2eHubStandbyKey000000000001"
ROOTS = ["6A", "CL"]
START = date(2026, 11, 2)  # Monday
LEASE = 3  # s (PINEOPS_HUB_LOCK_SECONDS)
SPEED = 5000  # the replayed market runs this many times faster than the wall clock


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    paths = generate(out, roots=ROOTS, start=START, days=3, seed=5, trades_per_minute=2.0)
    first = {root: front_month(root, START) for root in ROOTS}
    return paths, first, {root: expected_bars(paths[root], first[root]) for root in ROOTS}


def start_hub(env, host: str) -> subprocess.Popen:
    runtime = env.tmp / host  # each host its own RUNTIME_DIR (heartbeat file, logs); one database
    runtime.mkdir(exist_ok=True)
    log = (env.tmp / f"hub-{host}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "manage.py", "runhub", "--heartbeat", "0.5"], cwd=ROOT,
                            env={**env.env, "PINEOPS_HOST_NAME": host, "RUNTIME_DIR": str(runtime)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    env.children.append(proc)
    return proc


def hub_log(env, host: str) -> str:
    return (env.tmp / f"hub-{host}.log").read_text(errors="replace")


def stream_bars(client, prefix, root, timeframe) -> list[tuple[str, Bar]]:
    return [(i, Bar.from_message(f["bar"])) for i, f in client.xrange(f"{prefix}:bars:{root}:{timeframe}")]


def test_only_the_lease_holder_publishes_and_a_standby_takes_over_without_a_missing_or_doubled_bar(tmp_path, market):
    paths, first, expected = market
    gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2, speed=SPEED).start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}",
                                "PINEOPS_HUB_LOCK_SECONDS": str(LEASE), "LOG_LEVEL": "INFO"})
    client = redis.Redis(decode_responses=True)
    minutes = f"{env.redis_prefix}:bars:CL:1m"
    try:
        env.migrate_with_demo()
        env.shell("from trading.models import Instrument\n" + "\n".join(
            f"Instrument.objects.filter(root='{r}').update(active_contract='{c}')" for r, c in first.items()))
        a = start_hub(env, "host-a")
        wait_until(lambda: "hub holds the feed" in hub_log(env, "host-a"), 60, "host-a's hub to take the feed")
        b = start_hub(env, "host-b")
        wait_until(lambda: "another hub holds the feed" in hub_log(env, "host-b"), 60, "host-b's hub to stand by")
        assert f"holder=host-a:{a.pid}:" in hub_log(env, "host-b")  # it names the holder
        wait_until(lambda: client.xlen(minutes) > 100, 60, "host-a's bars")
        assert gateway.counters.connections == 1  # the standby never subscribed

        os.kill(a.pid, signal.SIGSTOP)  # host-a frozen: its lease is no longer renewed
        frozen = time.monotonic()
        wait_until(lambda: "hub took over the feed" in hub_log(env, "host-b"), LEASE + 10, "host-b to take over")
        assert time.monotonic() - frozen < LEASE + 3
        assert f"the previous holder host-a:{a.pid}:" in hub_log(env, "host-b")
        wait_until(lambda: gateway.counters.connections == 2, 30, "host-b's subscription")
        took = client.xlen(minutes)
        wait_until(lambda: client.xlen(minutes) > took + 50, 60, "host-b's new bars")

        os.kill(a.pid, signal.SIGCONT)  # host-a wakes with its session and its bars: fenced, it stands by
        wait_until(lambda: "hub lost the feed" in hub_log(env, "host-a"), 30, "host-a to find its lease gone")
        wait_until(lambda: f"holder=host-b:{b.pid}:" in hub_log(env, "host-a").split("hub lost the feed", 1)[1], 30,
                   "host-a to stand by naming host-b")
        assert gateway.counters.connections == 2 and a.poll() is None

        os.killpg(b.pid, signal.SIGKILL)  # host-b lost: host-a takes the feed back once the lease runs out
        b.wait(10)
        lost = time.monotonic()
        wait_until(lambda: hub_log(env, "host-a").count("hub took over the feed") == 1, LEASE + 10,
                   "host-a to take the feed back")
        assert time.monotonic() - lost < LEASE + 3
        want = {r: len(expected[r]["1d"]) for r in ROOTS}
        wait_until(lambda: all(client.xlen(f"{env.redis_prefix}:bars:{r}:1d") >= want[r] for r in ROOTS), 240,
                   "all daily bars")
        assert gateway.counters.connections == 3
        for root in ROOTS:
            for tf in ("1m", "1h", "1d"):
                got = stream_bars(client, env.redis_prefix, root, tf)
                ids = [i for i, _ in got]
                assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: int(i.split("-")[0]))
                mine = pd.DataFrame([{"ts": pd.Timestamp(b.ts), "open": b.open, "high": b.high, "low": b.low,
                                      "close": b.close, "volume": b.volume, "trades": b.trades} for _, b in got])
                ref = expected[root][tf]
                assert list(mine["ts"]) == list(ref.index), f"{root} {tf}: bar times differ (missing or extra)"
                for col in ("open", "high", "low", "close"):
                    assert (mine[col].to_numpy() - ref[col].to_numpy()).__abs__().max() < 1e-9, f"{root} {tf} {col}"
                assert (mine["volume"].to_numpy() == ref["volume"].to_numpy()).all(), f"{root} {tf} volume"
                assert (mine["trades"].to_numpy() == ref["trades"].to_numpy()).all(), f"{root} {tf} trades"
        beat = json.loads((tmp_path / "host-a" / "hub_heartbeat.json").read_text())
        assert beat["counters"]["duplicate_bars"] > 0  # the takeover rebuilt bars already there: refused, not doubled
        a.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0
        assert "hub released the feed" in hub_log(env, "host-a")
    finally:
        gateway.stop()
        env.cleanup()
