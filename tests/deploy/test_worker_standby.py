"""A worker moves between hosts: two real `runworker --strategy ibs_a` processes as supervisord's worker programs
run them (PINEOPS_WORKER_WAITS_FOR_LOCK) on two hosts (PINEOPS_HOST_NAME) sharing one database and Redis. One
holds the strategy's lock and beats; the other waits, naming the holder, and takes the strategy over once the
lost host's lease has run out (never by a pid check); a standby stopped while waiting leaves without trading."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from tests.conftest import remember_secret
from tests.e2e.appliance import ROOT, ProcessEnv, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LEASE = 4  # s (PINEOPS_WORKER_LOCK_SECONDS)


@pytest.fixture
def hosts(tmp_path):
    env = ProcessEnv(tmp_path, {
        "PINEOPS_WORKER_LOCK_SECONDS": str(LEASE), "PINEOPS_WORKER_WAITS_FOR_LOCK": "true", "LOG_LEVEL": "INFO",
        "TRADERSPOST_IBS_A_WEBHOOK": remember_secret("http://127.0.0.1:9/trading/webhook/standby-a-1c9e2f"),
        "DISCORD_WEBHOOK_URL": remember_secret("http://127.0.0.1:9/api/webhooks/22/standby-7d3a"),
    })
    env.workers = {}
    try:
        env.migrate_with_demo()
        yield env
    finally:
        env.cleanup()


def start_worker(env, host: str) -> subprocess.Popen:
    log = (env.tmp / f"worker-{host}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "manage.py", "runworker", "--strategy", "ibs_a"], cwd=ROOT,
                            env={**env.env, "PINEOPS_HOST_NAME": host}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    env.children.append(proc)
    env.workers[host] = proc
    return proc


def worker_log(env, host: str) -> str:
    return (env.tmp / f"worker-{host}.log").read_text(errors="replace")


def heartbeat_host(env) -> str | None:
    rows = env.query("SELECT host FROM trading_heartbeat WHERE process = %s AND state != %s", ("worker:ibs_a", "stopped"))
    return rows[0][0] if rows else None


def test_a_standby_worker_takes_the_strategy_over_once_the_lost_hosts_lease_runs_out(hosts):
    env = hosts
    client = redis.Redis.from_url(env.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
    lock_key = f"{env.redis_prefix}:lock:worker:ibs_a"
    start_worker(env, "host-b")
    wait_until(lambda: (client.get(lock_key) or "").startswith("host-b:"), 40, "host-b's worker holding the lock")
    wait_until(lambda: heartbeat_host(env) == "host-b", 30, "host-b's worker beating")
    start_worker(env, "host-c")
    wait_until(lambda: "worker standby strategy=ibs_a" in worker_log(env, "host-c"), 40, "host-c waiting")
    assert f"holder={client.get(lock_key)}" in worker_log(env, "host-c")
    assert env.workers["host-c"].poll() is None, "the standby exited instead of waiting"

    # Host B is lost: its worker (and its order sender) die without releasing anything.
    os.killpg(env.workers["host-b"].pid, signal.SIGKILL)
    lost = time.monotonic()
    env.workers["host-b"].wait(10)
    took = wait_until(lambda: (client.get(lock_key) or "").startswith("host-c:") and time.monotonic(), LEASE + 10,
                      "host-c taking the lock", interval=0.05)
    assert LEASE * 0.5 <= took - lost <= LEASE + 2.5, f"took over {took - lost:.1f} s after host B was lost"
    wait_until(lambda: heartbeat_host(env) == "host-c", 30, "host-c's worker beating")
    assert "worker lock taken strategy=ibs_a" in worker_log(env, "host-c")

    # Host B comes back: its worker is now the standby, and leaves cleanly when stopped.
    start_worker(env, "host-b")
    wait_until(lambda: "worker standby strategy=ibs_a" in worker_log(env, "host-b"), 40, "host-b waiting")
    os.killpg(env.workers["host-b"].pid, signal.SIGTERM)
    assert env.workers["host-b"].wait(20) == 0
    assert (client.get(lock_key) or "").startswith("host-c:") and heartbeat_host(env) == "host-c"
    assert "worker ready" not in worker_log(env, "host-b"), "the returning host traded the strategy again"
