"""kill -9 of the Celery worker at random moments while a replayed week trades (gateway → hub →
worker → TradersPost stand-in; Celery delivering alerts to the Discord stand-in): orders are the
worker's senders' alone, so they still equal the backtest, none twice; every alert is delivered
(a kill between a POST and its bookkeeping may repeat one alert: alerts are at-least-once)."""
import os
import random
import signal
import time
from datetime import date

import pytest

from tests.conftest import remember_secret
from tests.e2e.appliance import WORKER, Celery, wait_until
from tests.e2e.reference import expected_bars
from tests.e2e.trading_setup import Expected, TradingRun, received
from trading.sim.discord import DiscordStandIn
from trading.sim.market import front_month, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KEY = "db-" + "faultsCeleryKillKey0000000005"
ROOTS = ["6A", "CL"]
KILLS = int(os.environ.get("PINEOPS_CELERY_KILLS", "20"))


def test_celery_worker_killed_at_random_moments(tmp_path, fault_report):
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 2), days=5, seed=6, roll_day=30,
                     trades_per_minute=3.0)
    fronts = {r: front_month(r, date(2026, 11, 2)) for r in ROOTS}
    days = {r: len(expected_bars(paths[r], fronts[r])["1d"]) for r in ROOTS}
    rng = random.Random(int(os.environ.get("PINEOPS_KILL_SEED", "2")))
    discord = DiscordStandIn().start()
    hook = remember_secret(f"{discord.url}/api/webhooks/9/{os.urandom(8).hex()}")
    kills = 0
    try:
        with TradingRun(tmp_path, paths, fronts, days, key=KEY, speed=10_000, block_ms=100,
                        extra_env={"DISCORD_WEBHOOK_URL": hook}) as run:
            run.env.shell("from django_celery_beat.models import PeriodicTask, IntervalSchedule\n"
                          "every, _ = IntervalSchedule.objects.get_or_create(every=1, period='seconds')\n"
                          "PeriodicTask.objects.filter(task='trading.deliver_notifications').update(interval=every)")
            celery = Celery(run.env).start()
            while kills < KILLS:
                time.sleep(rng.uniform(0.5, 2.5))
                worker = celery.procs["worker"]
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
                kills += 1
                celery._spawn("worker", [*WORKER, "-n", f"{run.env.redis_prefix}-{kills}@%h"])
            run.wait_caught_up()
            frames, summary = run.frames(), run.summary()
            wait_until(lambda: run.env.query("SELECT COUNT(*) FROM trading_notification"
                                             " WHERE state IN ('pending', 'sending')") == [(0,)],
                       120, "every alert delivered")
            alerts = run.env.shell_json("import json; from trading.models import Notification\n"
                                        "print(json.dumps(list(Notification.objects.values_list('title', 'state'))))")
        orders = run.broker.orders(status=None)
        got = [m["embeds"][0] for m in discord.messages()]
    finally:
        discord.stop()

    expected = Expected(frames)
    buys, exits, duplicates = received(orders)
    lost = len(set(expected.buys) - set(buys)) + len(set(expected.exits) - set(exits))
    fault_report("kill -9 celery worker at random moments", runs=kills,
                 expected=len(expected.buys) + len(expected.exits), received=len(orders), duplicates=duplicates,
                 lost=lost, errors=len(summary["ambiguous"]))
    assert duplicates == 0 and lost == 0 and summary["ambiguous"] == []
    assert (buys, exits) == (expected.buys, expected.exits)
    # Every alert reached Discord: sent on its own, or inside a summary of a flood.
    assert {state for _, state in alerts} <= {"sent", "coalesced"}
    titles = {e.get("title", "") for e in got}
    summaries = "\n".join(e.get("description", "") for e in got)
    missing = [t for t, state in alerts if t not in titles and t not in summaries]
    assert missing == [], f"alerts not delivered: {missing[:5]}"
