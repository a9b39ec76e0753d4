"""Dependency outages during a replayed week, real processes (gateway → runhub → runworker → stand-in):
the orders received still equal the backtest of the same bars, none twice, none lost."""
import os
import signal
import time
from datetime import date

import pytest

from tests.e2e.appliance import RedisServer, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, TradingRun, received
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KEY = "db-" + "faultsOutageTestKey0000000004"
ROOTS = ["6A", "CL"]


@pytest.fixture
def market(tmp_path):
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 2), days=5, seed=4, roll_day=30,
                     trades_per_minute=3.0)
    fronts = {r: front_month(r, date(2026, 11, 2)) for r in ROOTS}
    days = {r: len(expected_bars(paths[r], fronts[r])["1d"]) for r in ROOTS}
    return paths, fronts, days


def test_redis_restarted_twice_mid_session_loses_and_doubles_nothing(tmp_path, market, fault_report):
    paths, fronts, days = market
    server = RedisServer(tmp_path).start()
    restarts = 0
    try:
        with TradingRun(tmp_path, paths, fronts, days, key=KEY, speed=11_000, block_ms=100,
                        redis_url=server.url) as run:
            stream = f"{run.prefix}:bars:{ROOTS[0]}:1h"
            seen = 0
            for _ in range(2):  # mid-session: after the next 20 hours of bars
                wait_until(lambda: run.client.xlen(stream) >= seen + 20, 120, "20 more hours of bars")
                server.stop()  # down for 4 s: the hub holds its bars, the worker waits
                time.sleep(4)
                server.start()
                restarts += 1
                assert run.hub.poll() is None and run.worker.poll() is None, "a process died with Redis"
                seen = run.client.xlen(stream)
            # A hub that starts while Redis is away (a container booting before it): it waits, naming it.
            wait_until(lambda: run.client.xlen(stream) >= seen + 20, 120, "20 more hours of bars")
            server.stop()
            os.killpg(run.hub.pid, signal.SIGKILL)
            run.hub.wait(10)
            run.start_hub()
            log = tmp_path / f"hub-{run.hubs - 1}.log"
            wait_until(lambda: "hub waiting for Redis before it subscribes: ConnectionError" in log.read_text(), 60,
                       "the new hub waiting for Redis")
            assert run.hub.poll() is None
            server.start()
            restarts += 1
            run.wait_caught_up()
            frames, summary = run.frames(), run.summary()
        orders = run.broker.orders(status=None)
    finally:
        server.stop()
    expected = Expected(frames)
    buys, exits, duplicates = received(orders)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    fault_report("redis restarted mid-session", runs=restarts, expected=len(expected.buys) + len(expected.exits),
                 received=len(orders), duplicates=duplicates, lost=lost, errors=len(summary["ambiguous"]))
    assert duplicates == 0 and lost == 0 and summary["ambiguous"] == []
    assert (buys, exits) == (expected.buys, expected.exits)
    assert summary["open"] == expected.open_at_end
