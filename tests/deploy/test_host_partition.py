"""Hosts on a real network: two network namespaces (veth pairs on a bridge, addresses of their own) as hosts B
and C, each running a real `runworker --strategy ibs_a` as supervisord's worker programs run them, with
PostgreSQL and Redis reached over that network. Host B's link is cut: its worker is alive but unreachable, and
C's standby takes ibs_a over within the lock lease; when B's link returns, B's worker finds its lock gone and
stops without trading. Needs root (ip netns); skipped otherwise."""
from __future__ import annotations

import subprocess
import time
import uuid

import pytest
import redis

from tests.conftest import remember_secret
from tests.deploy.netns import AVAILABLE, Network, log_of, start_on, tear_down
from tests.e2e.appliance import ProcessEnv, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(not AVAILABLE, reason="needs root, ip (network namespaces) and socat")]

LEASE = 5  # s (PINEOPS_WORKER_LOCK_SECONDS)


@pytest.fixture
def hosts(tmp_path):
    network = Network(["b", "c"]).up()
    database = f"pineops_netns_{uuid.uuid4().hex[:10]}"
    env = None
    try:
        redis_port, pg_port = free_port(), free_port()
        (tmp_path / "redis").mkdir()
        network.serve("redis-server", "--bind", network.address, "--port", str(redis_port), "--dir",
                      str(tmp_path / "redis"), "--protected-mode", "no", "--save", "")
        network.forward(pg_port, 5432)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {database}"],
                       check=True, capture_output=True)
        env = ProcessEnv(tmp_path, {
            "DATABASE_URL": f"postgres://postgres@{network.address}:{pg_port}/{database}",
            "REDIS_URL": f"redis://{network.address}:{redis_port}/0",
            "PINEOPS_WORKER_LOCK_SECONDS": str(LEASE), "PINEOPS_WORKER_WAITS_FOR_LOCK": "true", "LOG_LEVEL": "INFO",
            "TRADERSPOST_IBS_A_WEBHOOK": remember_secret(f"http://{network.address}:9/trading/webhook/netns-a-8b1f"),
            "DISCORD_WEBHOOK_URL": remember_secret(f"http://{network.address}:9/api/webhooks/22/netns-4c2d"),
        })
        wait_until(lambda: redis.Redis.from_url(env.env["REDIS_URL"]).ping(), 20, "Redis on the bridge")
        env.migrate_with_demo()
        env.network, env.procs = network, {}
        yield env
    finally:
        tear_down(env, network, database)


def start_worker(env, host: str) -> subprocess.Popen:
    return start_on(env, host, f"worker-{host}", "runworker", "--strategy", "ibs_a")


def worker_log(env, host: str) -> str:
    return log_of(env, f"worker-{host}")


def test_a_host_cut_off_the_network_loses_its_strategy_to_the_standby_and_does_not_trade_it_on_return(hosts):
    env = hosts
    client = redis.Redis.from_url(env.env["REDIS_URL"], decode_responses=True)
    lock_key = f"{env.redis_prefix}:lock:worker:ibs_a"
    beating = lambda: env.query("SELECT host FROM trading_heartbeat WHERE process = %s", ("worker:ibs_a",))  # noqa: E731

    start_worker(env, "b")
    wait_until(lambda: (client.get(lock_key) or "").startswith("host-b:"), 60, "host B's worker holding the lock")
    wait_until(lambda: beating() == [("host-b",)], 30, "host B's worker beating")
    start_worker(env, "c")
    wait_until(lambda: "worker standby strategy=ibs_a" in worker_log(env, "c"), 60, "host C's standby waiting")

    env.network.link("b", "down")  # host B is cut off; its worker runs on, unable to reach Redis or PostgreSQL
    cut = time.monotonic()
    took = wait_until(lambda: (client.get(lock_key) or "").startswith("host-c:") and time.monotonic(), LEASE + 15,
                      "host C taking ibs_a over", interval=0.05)
    assert took - cut <= LEASE + 2.5, f"host C took ibs_a {took - cut:.1f} s after the cut (lease {LEASE} s)"
    wait_until(lambda: beating() == [("host-c",)], 30, "host C's worker beating")
    assert env.procs["worker-b"].poll() is None, "host B's worker is cut off, not dead"

    env.network.link("b", "up")  # host B returns: its worker finds the lock gone and stops, trading nothing more
    assert wait_until(lambda: env.procs["worker-b"].poll() is not None, 60, "host B's worker stopping") != 0
    assert "lost the lock of strategy ibs_a" in worker_log(env, "b")
    assert (client.get(lock_key) or "").startswith("host-c:") and beating() == [("host-c",)]
    assert worker_log(env, "b").count("worker ready") == 1, "host B's worker started trading ibs_a again"
