"""Flatten with N positions open across two strategies, their workers and order senders killed -9 at
random moments while the exits go out: the TradersPost stand-in receives exactly N exits, none twice,
and a position becomes a trade only once its exit was delivered."""
import json
import os
import random
import signal
import time

import pytest

from tests.e2e.appliance import ProcessEnv, processes_of, wait_until
from trading.execution.traderspost import deliver, order_payload
from trading.sim.traderspost import TradersPostStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KILLS = int(os.environ.get("PINEOPS_FLATTEN_KILLS", "20"))
HOLDINGS = {"ibs_a": ["6A", "6C", "6M", "CL", "GC", "HG"], "ibs_b": ["6B", "6N", "6S", "SI", "YM"]}
ANSWER_DELAY = 0.35  # s: a slow broker, so the kills land while exits are in flight

OPEN_POSITIONS = """
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from trading.models import Position, Signal, Strategy, StrategyInstrument
Strategy.objects.update(enabled=True, daily_stop_loss=10**6)
at = datetime(2026, 11, 3, 1, tzinfo=timezone.utc)
for leg in StrategyInstrument.objects.select_related('strategy', 'instrument'):
    sig = Signal.objects.create(key=f'{leg.strategy.name}:{leg.instrument.root}:held:buy', strategy=leg.strategy,
                                instrument=leg.instrument, bar_time=at, action='buy', quantity=1,
                                signal_price=Decimal('1'), reason='entry', state='sent', payload={})
    Position.objects.create(strategy=leg.strategy, instrument=leg.instrument, size=1, filled=True, signal_time=at,
                            entry_time=at + timedelta(hours=1), entry_price=Decimal('1'), stop_price=Decimal('0.5'),
                            target_price=Decimal('2'), commission_per_side=leg.commission_per_side,
                            point_value=leg.instrument.point_value, entry_signal=sig)
"""
STATE = """
import json
from trading.models import Position, Signal, Trade
exits = Signal.objects.filter(reason='flatten')
print(json.dumps({'exits': sorted(exits.values_list('key', 'state')),
                  'open': sorted(Position.objects.open().values_list('strategy__name', 'instrument__root', 'state')),
                  'trades': sorted(Trade.objects.values_list('strategy__name', 'symbol', 'exit_signal__key'))}))
"""


def test_flatten_under_random_kills_sends_each_exit_once(tmp_path, fault_report):
    broker = TradersPostStandIn().start()
    hooks = {name: f"{broker.url}/trading/webhook/flatten-{name}-token" for name in HOLDINGS}
    env = ProcessEnv(tmp_path, {"TRADERSPOST_IBS_A_WEBHOOK": hooks["ibs_a"], "TRADERSPOST_IBS_B_WEBHOOK": hooks["ibs_b"],
                                "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused"})
    rng = random.Random(int(os.environ.get("PINEOPS_KILL_SEED", "3")))
    workers, kills = {}, []
    try:
        env.migrate_with_demo()
        env.shell(OPEN_POSITIONS)
        for name, roots in HOLDINGS.items():  # the broker holds every one of them
            for root in roots:
                assert deliver(hooks[name], order_payload(ticker=root, action="buy", quantity=1, signal_price=1.0)).delivered
        n = sum(len(r) for r in HOLDINGS.values())
        broker.script(*[{"status": 200, "delay": ANSWER_DELAY}] * (3 * n))

        def start(name):
            workers[name] = env.spawn("runworker", "--strategy", name, "--block-ms", "100",
                                      log_name=f"worker-{name}-{len([k for k in kills if k[1] == name])}.log")
        for name in HOLDINGS:
            start(name)
        wait_until(lambda: all(processes_of(tmp_path, f"sendorders --strategy {name}") for name in HOLDINGS), 90,
                   "both order senders running")

        env.shell("from trading.risk.killswitch import set_mode; set_mode('flatten', 'drill under kills', actor='test')")
        deadline = time.monotonic() + 120
        while len(kills) < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.1, 0.45))
            name = rng.choice(sorted(HOLDINGS))
            if rng.random() < 0.5:
                os.killpg(workers[name].pid, signal.SIGKILL)  # the worker's group; its sender lives on
                workers[name].wait(10)
                kills.append(("worker", name))
                start(name)
            else:
                senders = processes_of(tmp_path, f"sendorders --strategy {name}")
                if not senders:
                    continue  # its worker is starting a new one
                os.kill(rng.choice(senders), signal.SIGKILL)
                kills.append(("sender", name))
        wait_until(lambda: env.query("SELECT COUNT(*) FROM trading_signal WHERE reason = 'flatten'"
                                     " AND state NOT IN ('sent', 'failed')") == [(0,)], 180,
                   "every flatten exit sent or failed")
        state = env.shell_json(STATE)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
        env.cleanup()
        broker.stop()

    posts = [o for o in broker.orders(status=None) if o["action"] == "exit"]
    keys = [o["extras"]["signal_id"] for o in posts]
    duplicates = len(keys) - len(set(keys))
    sent = {k for k, st in state["exits"] if st == "sent"}
    failed = {k for k, st in state["exits"] if st == "failed"}  # a sender killed mid-POST: ambiguous, never resent
    fault_report("flatten under kill -9 of workers and senders", runs=len(kills), expected=n, received=len(posts),
                 duplicates=duplicates, lost=n - len(set(keys)), errors=len(failed))
    print(f"\nflatten: {len(kills)} kills {json.dumps(kills)}; {len(sent)} exits sent, {len(failed)} ambiguous")
    assert len(kills) >= min(KILLS, 10), "the flatten ended before enough kills"
    assert len(state["exits"]) == n  # one exit per open position, from one flatten
    assert duplicates == 0 and sorted(set(keys)) == sorted(k for k, _ in state["exits"])  # each exactly once
    # Books follow the broker: a trade for each delivered exit, and only for those.
    assert sorted(t[2] for t in state["trades"]) == sorted(sent)
    assert len(state["open"]) == len(failed) and all(st == "open" for _, _, st in state["open"])
