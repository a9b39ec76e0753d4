"""kill -9 of the worker at random moments of a replayed week: the final orders, trades and
positions equal an uninterrupted run (the backtest of the same bars) and no order arrives twice."""
import os
import random
import signal
import time
from datetime import date

import pytest
import redis

from tests.e2e.appliance import ProcessEnv, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, configure_ibs_a, hourly_frames, received
from trading.sim.gateway import LiveGateway
from trading.sim.market import generate, listings
from trading.sim.traderspost import TradersPostStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
KEY = "db-" + "faultsWorkerKillKey00000000003"
ROOTS = ["6A", "CL", "GC"]
KILLS = int(os.environ.get("PINEOPS_KILLS", "20"))


def test_worker_killed_at_random_moments(tmp_path):
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 2), days=5, seed=9, roll_day=30,
                     trades_per_minute=3.0)
    fronts = {r: listings(r, date(2026, 11, 5))[0].raw_symbol for r in ROOTS}
    days = {r: len(expected_bars(paths[r], fronts[r])["1d"]) for r in ROOTS}
    # ~5 trading days of data replayed in about 40 s, so the kills land all through it.
    gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2, speed=11_000).start()
    broker = TradersPostStandIn().start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}",
                                "TRADERSPOST_IBS_A_WEBHOOK": f"{broker.url}/trading/webhook/kill-test-token",
                                "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused"})
    rng = random.Random(int(os.environ.get("PINEOPS_KILL_SEED", "1")))
    kills = 0
    try:
        env.manage("migrate", "--no-input", "-v0")
        env.manage("load_demo")
        configure_ibs_a(env, fronts)
        worker = env.spawn("runworker", "--strategy", "ibs_a", "--block-ms", "100", log_name="worker-0.log")
        wait_until(lambda: (tmp_path / "ibs_a_worker_heartbeat.json").exists(), 60, "worker up")
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub.log")
        client = redis.Redis(decode_responses=True)
        prefix = env.redis_prefix
        replay_done = lambda: all(client.xlen(f"{prefix}:bars:{r}:1d") >= days[r] for r in ROOTS)  # noqa: E731
        while kills < KILLS and not replay_done():
            time.sleep(rng.uniform(0.3, 2.0))
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
            kills += 1
            worker = env.spawn("runworker", "--strategy", "ibs_a", "--block-ms", "100", log_name=f"worker-{kills}.log")
        wait_until(replay_done, 240, "hub replayed the week")
        target = max(int(client.xrevrange(f"{prefix}:bars:{r}:1h", count=1)[0][0].split("-")[0]) for r in ROOTS)
        state_code = ("import json; from trading.models import WorkerCursor, Signal\n"
                      "c = WorkerCursor.objects.get(strategy__name='ibs_a')\n"
                      "print(json.dumps([c.last_bar_ms, Signal.objects.filter(state__in=['pending','sending']).count()]))")
        wait_until(lambda: env.shell_json(state_code) == [target, 0], 240, "worker caught up")
        frames = hourly_frames(client, prefix, ROOTS)
        summary = env.shell_json(
            "import json; from trading.models import Trade, Signal, Position\n"
            "print(json.dumps({'trades': [[t.symbol, t.entry_time.isoformat(), float(t.entry_price), t.exit_time.isoformat(),"
            " float(t.exit_price), t.exit_reason] for t in Trade.objects.order_by('exit_time', 'symbol')],"
            " 'ambiguous': list(Signal.objects.filter(state='failed').values_list('key', 'state_reason')),"
            " 'open': sorted(Position.objects.filter(state__in=['open','closing']).values_list('instrument__root', flat=True))}))")
        hub.terminate(), worker.terminate()
        hub.wait(30), worker.wait(60)
    finally:
        gateway.stop()
        env.cleanup()
        broker.stop()

    expected = Expected(frames)
    orders = broker.orders(status=None)
    buys, exits, duplicates = received(orders)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    print(f"\nworker kills: {kills}  orders expected: {len(expected.buys) + len(expected.exits)}  "
          f"orders received: {len(orders)}  duplicates: {duplicates}  lost: {lost}  "
          f"ambiguous: {len(summary['ambiguous'])}")
    assert kills >= min(KILLS, 10), "the replay ended before enough kills"
    assert summary["ambiguous"] == []
    assert duplicates == 0 and lost == 0
    assert (buys, exits) == (expected.buys, expected.exits)
    assert [(t[0], t[1][:19], round(t[2], 6), t[3][:19], round(t[4], 6), t[5]) for t in summary["trades"]] == [
        (t["symbol"], t["entry_time"][:19], round(t["entry_price"], 6), t["exit_time"][:19], round(t["exit_price"], 6),
         t["exit_reason"]) for t in expected.closed]
    assert summary["open"] == expected.open_at_end
