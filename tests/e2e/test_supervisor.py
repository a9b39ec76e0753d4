"""The appliance under the real supervisord with the real config and entrypoint."""
import os
import signal
import time

import pytest

from tests.e2e.appliance import Appliance, wait_until
from trading.health.process import process_alive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# The worker programs run this stand-in until the test of the full trading path replaces it:
# this test is about supervisord following the database, not about trading.
PLACEHOLDER_WORKER = "%(ENV_PINEOPS_PYTHON)s -c \"import time; time.sleep(10**6)\" {strategy}"


@pytest.fixture
def appliance(tmp_path):
    app = Appliance(tmp_path, {"PINEOPS_WORKER_COMMAND": PLACEHOLDER_WORKER})
    yield app.start()
    app.cleanup()


def test_workers_follow_the_database_and_everything_stops_cleanly(appliance):
    for name in ("redis", "web", "celery-worker", "celery-beat", "sync-workers", "worker-ibs_a"):
        appliance.wait_running(name, timeout=90)
    assert "worker-ibs_b" not in appliance.states()  # disabled in the demo data
    assert wait_until(lambda: appliance.get("/admin/login/").status_code == 200, 30, "admin login page")
    assert appliance.get("/healthz").status_code in (200, 503)

    # Enabling a strategy in the database starts its worker; disabling one removes it.
    appliance.shell("from trading.models import Strategy; Strategy.objects.filter(name='ibs_b').update(enabled=True)")
    appliance.wait_running("worker-ibs_b", timeout=30)
    appliance.shell("from trading.models import Strategy; Strategy.objects.filter(name='ibs_a').update(enabled=False)")
    wait_until(lambda: "worker-ibs_a" not in appliance.states(), 30, "worker-ibs_a removed")

    # kill -9 of a program: supervisord brings it back with a new pid.
    before = appliance.states()["celery-beat"]["pid"]
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: appliance.states()["celery-beat"]["statename"] == "RUNNING"
               and appliance.states()["celery-beat"]["pid"] != before, 60, "celery-beat restarted")

    pids = {name: info["pid"] for name, info in appliance.states().items() if info["pid"]}
    took = appliance.stop()
    assert appliance.proc.returncode == 0, appliance.log.read_text()[-3000:]
    assert took < 60, f"stop took {took:.1f}s"
    time.sleep(0.5)
    assert [name for name, pid in pids.items() if process_alive(pid)] == []
