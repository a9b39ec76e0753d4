"""An order sender frozen (SIGSTOP) in the middle of a POST, for longer than a claim's lease: the
orders of other instruments are still delivered within a minute (the Celery safety net takes over a
strategy whose sender stopped announcing itself); the frozen claim blocks only its own instrument;
after SIGCONT the frozen POST completes and nothing is sent twice. Real processes: runworker with
its sendorders child, the Celery worker and beat, the TradersPost stand-in."""
import os
import signal
import time

import pytest

from tests.e2e.appliance import Celery, ProcessEnv, processes_of, wait_until
from trading.sim.traderspost import TradersPostStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
LEASE_SECONDS = 5

ORDER = """
from datetime import timedelta
from django.utils import timezone
from trading.execution.signals import write_signal
from trading.models import Strategy
s = Strategy.objects.get(name='ibs_a')
now = timezone.now()
for root, minutes in {orders!r}:
    leg = s.legs.get(instrument__root=root)
    bar = now.replace(second=0, microsecond=0) - timedelta(hours=1, minutes=minutes)
    write_signal(s, leg.instrument, ticker=root, contract='', bar_time=bar, action='buy', quantity=1,
                 signal_price=100.0, reason='entry', decided=bar + timedelta(hours=1), now=now)
"""
STATES = ("import json; from trading.models import Signal\n"
          "print(json.dumps(dict(Signal.objects.values_list('key', 'state'))))")


def test_a_frozen_sender_blocks_only_its_instrument_and_nothing_is_sent_twice(tmp_path, fault_report):
    broker = TradersPostStandIn().start()
    env = ProcessEnv(tmp_path, {"TRADERSPOST_IBS_A_WEBHOOK": f"{broker.url}/trading/webhook/frozen-token",
                                "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused",
                                "PINEOPS_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS)})
    celery = Celery(env)
    try:
        env.migrate_with_demo()
        env.shell("from trading.models import StrategyInstrument; "
                  "StrategyInstrument.objects.filter(strategy__name='ibs_a').update(ml_enabled=False)")
        worker = env.spawn("runworker", "--strategy", "ibs_a", "--block-ms", "100", log_name="runworker.log")
        wait_until(lambda: processes_of(tmp_path, "sendorders --strategy ibs_a"), 90, "the order sender")
        celery.start()
        broker.script({"status": 200, "delay": 5.0})  # the first POST is answered after 5 s, inside its timeout
        env.shell(ORDER.format(orders=[("CL", 0)]))
        wait_until(lambda: len(broker.snapshot()) == 1, 60, "the CL order reaching the broker")
        (sender,) = processes_of(tmp_path, "sendorders --strategy ibs_a")
        os.kill(sender, signal.SIGSTOP)  # frozen mid-POST, its claim on CL held
        frozen_at = time.monotonic()
        env.shell(ORDER.format(orders=[("6A", 1), ("GC", 2), ("HG", 3), ("CL", 4)]))
        others = {"ibs_a:6A", "ibs_a:GC", "ibs_a:HG"}
        wait_until(lambda: {":".join(o["extras"]["signal_id"].split(":")[:2]) for o in broker.orders()} >= others,
                   60, "the other instruments' orders delivered while the sender is frozen")
        delivered_after = time.monotonic() - frozen_at
        states = env.shell_json(STATES)
        assert [st for k, st in states.items() if k.startswith("ibs_a:CL:")] and \
            sorted(st for k, st in states.items() if k.startswith("ibs_a:CL:")) == ["pending", "sending"]
        wait_until(lambda: time.monotonic() - frozen_at > 2 * LEASE_SECONDS, 30, "frozen past the lease")
        os.kill(sender, signal.SIGCONT)
        final = wait_until(lambda: (lambda s: s if set(s.values()) == {"sent"} else None)(
            dict(env.query("SELECT key, state FROM trading_signal"))), 90, "every order sent once the sender thawed")
        assert worker.poll() is None
    finally:
        celery.stop()
        env.cleanup()
        broker.stop()
    keys = [e["order"]["extras"]["signal_id"] for e in broker.snapshot()]
    duplicates = len(keys) - len(set(keys))
    fault_report("order sender frozen (SIGSTOP) mid-POST past its lease", runs=1, expected=5, received=len(keys),
                 duplicates=duplicates, lost=5 - len(set(keys)))
    assert duplicates == 0 and sorted(set(keys)) == sorted(final) and len(final) == 5
    assert delivered_after < 60
