"""Planned restarts of the whole appliance (`make demo`, Ctrl-C, `make demo` again), as the operator does
them: the real entrypoint and supervisord.conf with the demo stand-ins (tests/e2e/test_appliance_demo)."""
import time

import pytest

from tests.e2e.appliance import SUCCEEDED, wait_until
from tests.e2e.test_appliance_demo import demo, received  # noqa: F401 — the appliance fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


ALERTS = ("import json; from trading.models import Notification, Signal\n"
          "print(json.dumps({'emergency': list(Notification.objects.filter(kind='emergency').values_list('title', flat=True)),"
          " 'stale': list(Notification.objects.filter(title__startswith='Stale heartbeat').values_list('title', flat=True)),"
          " 'stopped': list(Notification.objects.filter(kind='shutdown').values_list('title', 'state')),"
          " 'failed': list(Signal.objects.filter(state='failed').values_list('key', 'state_reason'))}))")


def heartbeat_checks(demo) -> int:
    """How many runs of the Celery heartbeat monitor finished (supervisord collects every program's lines)."""
    return sum(1 for m in SUCCEEDED.finditer(demo.log.read_text(errors="replace"))
               if m.group(1) == "trading.check_heartbeats")


EVERY_5_SECONDS = ("from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
                   "every, _ = IntervalSchedule.objects.get_or_create(every=5, period='seconds')\n"
                   "task = PeriodicTask.objects.get(task='trading.check_heartbeats')\n"
                   "task.interval = every\n"
                   "task.save()")  # a save (not update()) tells the running beat to reload its schedule


def test_two_clean_restarts_inside_two_minutes_raise_no_alert_and_fail_no_order(demo, fault_report):
    """Ctrl-C and `make demo` again, twice, within two minutes, with positions held at the stand-in: no
    emergency, no stale heartbeat, no failed order; each planned stop's own 'stopped' alert is delivered
    (Celery stops last)."""
    for name in ("hub", "worker-ibs_a", "celery-worker", "celery-beat"):
        demo.wait_running(name, timeout=120)
    wait_until(lambda: received(demo.ports["traderspost"]), 240, "an order at the TradersPost stand-in")
    started = time.monotonic()
    for _ in range(2):
        last_stop = time.monotonic()
        demo.stop()
        assert demo.proc.returncode == 0, demo.log.read_text()[-3000:]
        demo.start()
        last_start = time.monotonic()
        for name in ("hub", "worker-ibs_a", "celery-worker", "celery-beat"):
            demo.wait_running(name, timeout=90)
        wait_until(lambda: demo.get("/healthz").status_code == 200, 60, "/healthz 200 after the restart")
    # The operator's two restarts (stop, start, up again, stop, start) inside two minutes; how long the second
    # start takes to come up is the machine's (a loaded one takes longer), and no alert may come of it either.
    assert last_start - started < 120, "the two restarts were not inside two minutes"
    # Long enough for a process that was not back to go stale (no heartbeat for 60 s since the last stop), and
    # two monitor runs after that (every 5 s from now on), so one started after it and finished.
    demo.shell(EVERY_5_SECONDS)
    wait_until(lambda: time.monotonic() - last_stop > 61, 90, "a minute since the last stop")
    checks = heartbeat_checks(demo)
    wait_until(lambda: heartbeat_checks(demo) >= checks + 2, 60, "two heartbeat checks a minute after the stop")
    state = demo.shell_json(ALERTS)
    orders = received(demo.ports["traderspost"])
    refused = [o for o in orders if o["status"] >= 400]
    keys = [o["body"]["extras"]["signal_id"] for o in orders]
    raised = [t for t in state["emergency"] if not t.startswith("Daily stop hit:")]
    fault_report("two clean appliance restarts in 2 min", runs=2, expected=len(orders), received=len(orders),
                 duplicates=len(keys) - len(set(keys)), lost=len(refused), errors=len(raised) + len(state["stale"]) + len(state["failed"]))
    # the daily stop is the risk control doing its job on the demo's generated market, not the restarts
    assert raised == [] and state["stale"] == [] and state["failed"] == [], state
    stopped = [s for title, s in state["stopped"] if title == "Hub stopped"]
    assert len(stopped) == 2 and set(stopped) == {"sent"}, state["stopped"]  # both planned stops, delivered
    assert len(keys) == len(set(keys)) and refused == []  # the stand-in keeps its positions on disk: no exit of a held position refused
