"""A broker that takes 8–9 s to answer each of 50 orders, with the stuck-order recovery running every
second alongside (on the simulated clock of tests/faults/simdesk.py; the POSTs are real, to the
TradersPost stand-in). One sender pass lasts far longer than the claim lease: every claim must be
stamped when it is made, so none looks dead while its POST is in flight — not to a recovery on this
host (which judges a local holder by its process) and not to one on another host (which judges it
by the lease)."""
import random
from datetime import timedelta

import pytest

from tests.faults.simdesk import SECOND, delivered_twice
from trading.execution.outbox import send_pending_orders
from trading.execution.recovery import claim_lease, recover_interrupted
from trading.execution.signals import write_signal
from trading.health import process
from trading.models import DeliveryAttempt, Notification, Signal

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]
ORDERS = 50


def queue_orders(desk, n: int) -> list[Signal]:
    """`n` entries decided within the last hour, over ibs_a's instruments (a busy hour's queue)."""
    now = desk.clock.now()
    legs = list(desk.config.legs.values())
    out = []
    for i in range(n):
        leg = legs[i % len(legs)]
        bar = now - timedelta(hours=1, minutes=i)
        contract = f"{leg.root}Z6"
        out.append(write_signal(desk.config.strategy, leg.row.instrument, ticker=leg.row.broker_ticker(contract, bar),
                                contract=contract,
                                bar_time=bar, action="buy", quantity=1, signal_price=100.0, reason="entry",
                                decided=bar + timedelta(hours=1), now=now))
    return out


@pytest.mark.parametrize("recovery_host", ["this host", "another host"])
def test_slow_broker_with_recovery_every_second_sends_each_order_once(desk, fault_report, monkeypatch,
                                                                     recovery_host):
    rng = random.Random(11)
    real_host = process.socket.gethostname()
    recovered = []

    def slow(url, payload, timeout):
        result = desk.broker.deliver(url, payload, timeout)  # reaches the stand-in, which accepts it …
        end = desk.clock.t + timedelta(seconds=rng.uniform(8.0, 9.0))
        while desk.clock.t < end:  # … and its answer takes 8–9 s, while the recovery runs every second
            desk.clock.t += SECOND
            if recovery_host == "another host":
                monkeypatch.setattr(process.socket, "gethostname", lambda: "recovery-host")
            try:
                outcome = recover_interrupted()
            finally:
                monkeypatch.setattr(process.socket, "gethostname", lambda: real_host)
            recovered.extend(outcome["requeued"] + outcome["ambiguous"])
        return result

    orders = queue_orders(desk, ORDERS)
    started = desk.clock.now()
    report = send_pending_orders(deliver=slow, limiter=desk.limiter)
    took = desk.clock.now() - started

    accepted = {e["order"]["extras"]["signal_id"] for e in desk.broker.received() if e["status"] == 200}
    states = dict(Signal.objects.filter(pk__in=[o.pk for o in orders]).values_list("key", "state"))
    failed_but_accepted = sorted(k for k, st in states.items() if st != "sent" and k in accepted)
    duplicates = delivered_twice(desk.broker)
    fault_report(f"broker answering after 8-9 s, recovery every second ({recovery_host})", runs=1,
                 expected=ORDERS, received=len(desk.broker.received()), duplicates=duplicates,
                 lost=ORDERS - len(accepted), errors=len(failed_but_accepted))
    assert took > 3 * claim_lease()  # the pass ran far longer than a claim's lease
    assert recovered == [] and failed_but_accepted == [] and duplicates == 0
    assert len(report.sent) == ORDERS and set(states.values()) == {"sent"} and len(desk.broker.received()) == ORDERS
    # Each claim was stamped when it was made, not when the pass began.
    stamps = list(DeliveryAttempt.objects.order_by("attempted_at").values_list("attempted_at", flat=True))
    assert len(stamps) == ORDERS and all((b - a).total_seconds() >= 8 for a, b in zip(stamps, stamps[1:]))
    assert not Notification.objects.filter(kind="emergency").exists()
