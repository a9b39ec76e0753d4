"""Scaled out across real hosts (issue 22's first acceptance line): the hub, Celery beat and a Celery worker on
network namespace A, ibs_a's worker on B, ibs_b's on C, PostgreSQL, Redis, the gateway and the TradersPost
stand-in over the network (tests/deploy/desk.py). A generated week trades. Beside it, on the same bridge and at
the same time, one host S runs all of those programs against a database, Redis prefix, gateway and stand-in of
its own: the single-host run of the same week. The orders TradersPost received from the three hosts equal the
single host's order by order (strategy, contract, action, quantity, bar time), and both equal the backtest of
each strategy: none missing, none twice."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.deploy.desk import ROOTS, Bridge, by_strategy, generate_market, twice
from tests.deploy.netns import AVAILABLE, CELERY
from tests.e2e.appliance import BEAT, WORKER, wait_until
from tests.e2e.trading_setup import received

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.skipif(not AVAILABLE, reason="needs root, ip (network namespaces) and socat")]

SPEED = 40000  # an hour of market in 0.09 s


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return generate_market(tmp_path_factory.mktemp("market"))


@pytest.fixture
def bridge(tmp_path):
    bridge = Bridge(tmp_path, ["a", "b", "c", "s"])
    try:
        yield bridge
    finally:
        bridge.down()


def test_a_week_on_three_hosts_sends_the_orders_of_one_host_and_of_the_backtest(bridge, market, tmp_path,
                                                                                fault_report):
    spread, single = bridge.desk(tmp_path / "spread", market, speed=SPEED), bridge.desk(tmp_path / "single", market,
                                                                                         speed=SPEED)
    layouts = {"spread": (spread, {"ibs_a": "b", "ibs_b": "c", "hub": "a"}),
               "single": (single, {"ibs_a": "s", "ibs_b": "s", "hub": "s"})}
    for desk, host in layouts.values():
        for strategy in ROOTS:
            desk.worker(host[strategy], strategy)
        desk.on(host["hub"], "beat", *BEAT, program=CELERY)
        desk.on(host["hub"], "celery", *WORKER, "-n", f"{desk.redis_prefix}@%h", program=CELERY)
    for desk, host in layouts.values():
        for strategy in ROOTS:
            desk.wait_holding(strategy, host[strategy])
    for desk, host in layouts.values():
        desk.on(host["hub"], "hub", "runhub", "--heartbeat", "0.5")

    wait_until(lambda: spread.caught_up() and single.caught_up(), 240, "both runs replayed, decided, sent")
    for name, (desk, host) in layouts.items():
        dead = {n: p.returncode for n, p in desk.procs.items() if p.poll() is not None}
        assert dead == {}, f"{name}: exited {dead}"
        assert desk.client.get(f"{desk.redis_prefix}:lock:beat").startswith(f"host-{host['hub']}:"), "one beat"
        for strategy in ROOTS:
            assert desk.holder(strategy).startswith(f"host-{host[strategy]}:")

    spread_orders, single_orders = spread.orders(), single.orders()
    missing = Counter(single_orders) - Counter(spread_orders)
    extra = Counter(spread_orders) - Counter(single_orders)
    duplicates = twice(spread.broker.orders())
    fault_report("scaled out: hub+beat on A, ibs_a on B, ibs_b on C, a week", runs=1, expected=len(single_orders),
                 received=len(spread_orders), duplicates=duplicates, lost=sum(missing.values()))
    assert duplicates == 0 and twice(single.broker.orders()) == 0, "an order was posted twice"
    assert missing == Counter() and extra == Counter(), f"three hosts vs one: missing {missing}, extra {extra}"
    assert sorted(spread_orders) == sorted(single_orders)
    for desk in (spread, single):
        assert [e for e in desk.broker.snapshot() if e["status"] != 200] == []
        for entry in desk.broker.snapshot():  # each strategy's orders through its own webhook
            assert f"/webhook/{entry['body']['extras']['strategy'][-1]}-" in entry["path"]
    for strategy in ROOTS:
        buys, exits, _ = received(by_strategy(spread.broker.orders(), strategy))
        want_buys, want_exits = spread.backtest(strategy)
        assert buys and exits, f"{strategy} traded the week"
        assert (buys, exits) == (want_buys, want_exits), f"{strategy}'s orders are not its backtest's"
