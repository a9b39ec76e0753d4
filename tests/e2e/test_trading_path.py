"""The whole trading path with real processes: synthetic market → local gateway → runhub (official
client, real Redis) → runworker → local TradersPost. The orders received equal the trades of
strategies.backtest on the same hourly bars; every order arrives once."""
from datetime import date

import pytest
import redis

from tests.e2e.appliance import ProcessEnv, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, configure_ibs_a, hourly_frames, received
from strategies.instruments import CONTRACT_SPECS
from trading.sim.gateway import LiveGateway
from trading.sim.market import generate, listings
from trading.sim.traderspost import TradersPostStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KEY = "db-" + "e2eWorkerTestKey00000000000002"
ROOTS = ["6A", "CL", "GC"]
START = date(2026, 11, 2)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    paths = generate(out, roots=ROOTS, start=START, days=9, seed=5, roll_day=20, trades_per_minute=3.0)
    fronts = {root: listings(root, date(2026, 11, 5))[0].raw_symbol for root in ROOTS}
    days = {root: len(expected_bars(paths[root], fronts[root])["1d"]) for root in ROOTS}
    return paths, fronts, days


def test_orders_received_equal_the_backtest(tmp_path, market):
    paths, fronts, days = market
    gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2).start()
    broker = TradersPostStandIn().start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}",
                                "TRADERSPOST_IBS_A_WEBHOOK": f"{broker.url}/trading/webhook/e2e-secret-token",
                                "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused"})
    try:
        env.manage("migrate", "--no-input", "-v0")
        env.manage("load_demo")
        configure_ibs_a(env, fronts)
        worker = env.spawn("runworker", "--strategy", "ibs_a", "--block-ms", "200", log_name="worker.log")
        wait_until(lambda: (tmp_path / "ibs_a_worker_heartbeat.json").exists() or worker.poll() is not None, 60, "worker up")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub.log")
        client = redis.Redis(decode_responses=True)
        prefix = env.redis_prefix

        def last_hour_ms():
            ids = [client.xrevrange(f"{prefix}:bars:{r}:1h", count=1) for r in ROOTS]
            return max(int(i[0][0].split("-")[0]) for i in ids if i) if all(ids) else None

        wait_until(lambda: all(client.xlen(f"{prefix}:bars:{r}:1d") >= days[r] for r in ROOTS), 240, "hub replayed the days")
        target = last_hour_ms()
        wait_until(lambda: env.shell_json((
            "import json; from trading.models import WorkerCursor, Signal\n"
            "c = WorkerCursor.objects.get(strategy__name='ibs_a')\n"
            "print(json.dumps([c.last_bar_ms, Signal.objects.filter(state__in=['pending','sending']).count()]))"
        )) == [target, 0], 240, "worker caught up with no order outstanding")
        assert worker.poll() is None and hub.poll() is None
        frames = hourly_frames(client, prefix, ROOTS)
        db_trades = env.shell_json((
            "import json; from trading.models import Trade\n"
            "print(json.dumps([[t.symbol, t.entry_time.isoformat(), str(t.entry_price), t.exit_time.isoformat(),"
            " str(t.exit_price), t.exit_reason, str(t.pnl)] for t in Trade.objects.order_by('exit_time', 'symbol')]))"))
        hub.terminate(), worker.terminate()
        hub.wait(30), worker.wait(60)
    finally:
        gateway.stop()
        env.cleanup()
        broker.stop()

    expected = Expected(frames)
    assert len(expected.closed) > 20
    orders = broker.orders()
    rejected = [e for e in broker.snapshot() if e["status"] != 200]
    assert rejected == [], f"every POST was accepted: {rejected}"
    buys, exits, duplicates = received(orders)
    assert duplicates == 0, "no order was posted twice"
    assert buys == expected.buys
    assert exits == expected.exits
    assert all(o["timeInForce"] == "day" and o["orderType"] == "market" and "price" not in o for o in orders)
    assert all(o["stopLoss"] == {"type": "stop", "percent": 1.0} for o in orders if o["action"] == "buy")

    # The modelled trades in the database are the backtest's, price for price (within one tick).
    assert len(db_trades) == len(expected.closed)
    for (sym, entry_t, entry_p, exit_t, exit_p, reason, _), t in zip(db_trades, expected.closed):
        tick = float(CONTRACT_SPECS[sym].tick_size)
        assert (sym, reason) == (t["symbol"], t["exit_reason"])
        assert entry_t[:19] == t["entry_time"][:19] and exit_t[:19] == t["exit_time"][:19]
        assert abs(float(entry_p) - t["entry_price"]) < tick and abs(float(exit_p) - t["exit_price"]) < tick
