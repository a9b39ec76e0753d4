"""Roles of one image (PINEOPS_ROLES, PINEOPS_WORKER_STRATEGIES): supervisord, started by the real entrypoint,
starts only the programs of the container's roles; a wrong role stops the entrypoint with one line naming it."""
import subprocess

import pytest

from tests.conftest import remember_secret
from tests.e2e.appliance import ROOT, Appliance, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CORE = ("web", "hub", "celery-worker", "celery-beat", "sync-workers")
WEBHOOKS = {"TRADERSPOST_IBS_A_WEBHOOK": "http://127.0.0.1:9/trading/webhook/roles-a-5f1c0d",
            "TRADERSPOST_IBS_B_WEBHOOK": "http://127.0.0.1:9/trading/webhook/roles-b-77e2a9",
            "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/22/roles-test-4b1e"}


@pytest.fixture
def appliance(tmp_path):
    made = []

    def make(**env):
        for value in WEBHOOKS.values():
            remember_secret(value)
        app = Appliance(tmp_path, {**WEBHOOKS, "DATABENTO_API_KEY": "db-" + "RolesTestKey0000000000000000", **env})
        made.append(app)
        return app

    yield make
    for app in made:
        app.cleanup()


def started(app) -> dict[str, str]:
    """Every program supervisord knows, with its state, once nothing is still starting."""
    def settled():
        states = {name: info["statename"] for name, info in app.states().items()}
        return states if "STARTING" not in states.values() else None

    return wait_until(settled, 60, "every program started or left stopped")


def test_web_role_runs_only_the_web_and_the_local_redis(appliance):
    app = appliance(PINEOPS_ROLES="web")
    app.migrate_with_demo()  # ibs_a enabled: a container with the workers role would run its worker
    app.start()
    app.wait_running("web")
    states = started(app)
    assert states["web"] == "RUNNING" and states["redis"] == "RUNNING"
    assert {name: states[name] for name in CORE if name != "web"} == dict.fromkeys(
        ("hub", "celery-worker", "celery-beat", "sync-workers"), "STOPPED")
    assert not [name for name in states if name.startswith("worker-")], states
    assert app.get("/healthz").status_code in (200, 503)  # the web answers (no hub or worker here: 503)
    assert "entrypoint: roles web" in app.log.read_text()


def test_workers_role_with_a_strategy_list_runs_only_that_strategys_worker(appliance):
    app = appliance(PINEOPS_ROLES="workers", PINEOPS_WORKER_STRATEGIES="ibs_a")
    app.migrate_with_demo()
    app.shell("from trading.models import Strategy; Strategy.objects.filter(name='ibs_b').update(enabled=True)")
    assert app.query("SELECT name FROM trading_strategy WHERE enabled ORDER BY name") == [("ibs_a",), ("ibs_b",)]
    app.start()
    app.wait_running("sync-workers")
    app.wait_running("worker-ibs_a")
    states = started(app)
    assert [name for name in states if name.startswith("worker-")] == ["worker-ibs_a"]
    assert {name: states[name] for name in ("web", "hub", "celery-worker", "celery-beat")} == dict.fromkeys(
        ("web", "hub", "celery-worker", "celery-beat"), "STOPPED")
    workers_conf = (app.tmp / "supervisor" / "workers.conf").read_text()
    assert "[program:worker-ibs_a]" in workers_conf and "ibs_b" not in workers_conf


def test_a_wrong_role_stops_the_entrypoint_naming_it(appliance, tmp_path):
    app = appliance(PINEOPS_ROLES="web,wrokers")
    result = subprocess.run(["bash", str(ROOT / "deploy" / "entrypoint.sh")], cwd=ROOT, env=app.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [
        "configuration error: PINEOPS_ROLES: 'wrokers' is not a role; use a comma list of web, hub, workers, "
        "celery, beat (default: all of them)"]
    assert not (tmp_path / "supervisor.sock").exists()
