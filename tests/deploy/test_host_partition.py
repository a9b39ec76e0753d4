"""Hosts on a real network: two network namespaces (veth pairs on a bridge, addresses of their own) as hosts B
and C, each running a real `runworker --strategy ibs_a` as supervisord's worker programs run them, with
PostgreSQL and Redis reached over that network. Host B's link is cut: its worker is alive but unreachable, and
C's standby takes ibs_a over within the lock lease; when B's link returns, B's worker finds its lock gone and
stops without trading. Needs root (ip netns); skipped otherwise."""
from __future__ import annotations

import subprocess
import time

import pytest
import redis

from tests.conftest import remember_secret
from tests.deploy.desk import Bridge
from tests.deploy.netns import AVAILABLE, log_of, start_on
from tests.e2e.appliance import ProcessEnv, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(not AVAILABLE, reason="needs root, ip (network namespaces) and socat")]

LEASE = 5  # s (PINEOPS_WORKER_LOCK_SECONDS)


@pytest.fixture
def hosts(tmp_path):
    bridge = Bridge(tmp_path, ["b", "c"])
    try:
        (tmp_path / "desk").mkdir()
        yield bridge.attach(ProcessEnv(tmp_path / "desk", {
            "PINEOPS_WORKER_LOCK_SECONDS": str(LEASE), "PINEOPS_WORKER_WAITS_FOR_LOCK": "true", "LOG_LEVEL": "INFO",
            "TRADERSPOST_IBS_A_WEBHOOK": remember_secret(f"http://{bridge.network.address}:9/trading/webhook/netns-a-8b1f"),
            "DISCORD_WEBHOOK_URL": remember_secret(f"http://{bridge.network.address}:9/api/webhooks/22/netns-4c2d"),
        }))
    finally:
        bridge.down()


def start_worker(env, host: str) -> subprocess.Popen:
    return start_on(env, host, f"worker-{host}", "runworker", "--strategy", "ibs_a")


def worker_log(env, host: str) -> str:
    return log_of(env, f"worker-{host}")


def test_a_host_cut_off_the_network_loses_its_strategy_to_the_standby_and_does_not_trade_it_on_return(hosts,
                                                                                                      fault_report):
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
    # (no market here: the row counts workers trading ibs_a after B's return, one expected)
    traders = [h for h in ("b", "c") if worker_log(env, h).count("worker ready") > (h == "b")]
    fault_report("worker host partitioned (netns), back after the lease", runs=1, expected=1, received=len(traders),
                 duplicates=len(traders) - 1, lost=int(not traders))
    assert (client.get(lock_key) or "").startswith("host-c:") and beating() == [("host-c",)]
    assert worker_log(env, "b").count("worker ready") == 1, "host B's worker started trading ibs_a again"
