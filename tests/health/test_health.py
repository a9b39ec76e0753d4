import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from trading.health.heartbeat import beat
from trading.health.monitor import check_heartbeats
from trading.models import Heartbeat, Notification, Strategy
from trading.redis_client import get_redis, key

pytestmark = pytest.mark.django_db


@pytest.fixture
def isolated_redis(settings, redis_prefix):
    settings.REDIS_PREFIX = redis_prefix
    return redis_prefix


@pytest.fixture
def demo(webhook_env):
    call_command("load_demo")  # ibs_a enabled, ibs_b disabled


def all_fresh(now):
    beat("hub", state="running", interval=5, now=now)
    beat("worker:ibs_a", state="running", interval=30, now=now)


def test_beat_writes_row_file_and_redis_key(tmp_path, isolated_redis):
    bar = timezone.now().replace(second=0, microsecond=0)
    beat("worker:ibs_a", state="running", interval=30, last_bar_time=bar, open_positions=2,
         file=tmp_path / "ibs_a_worker_heartbeat.json")
    row = Heartbeat.objects.get(process="worker:ibs_a")
    assert (row.state, row.open_positions, row.last_bar_time) == ("running", 2, bar)
    on_disk = json.loads((tmp_path / "ibs_a_worker_heartbeat.json").read_text())
    assert on_disk["process"] == "worker:ibs_a" and on_disk["open_positions"] == 2 and on_disk["pid"] > 0
    assert json.loads(get_redis().get(key("heartbeat", "worker:ibs_a")))["state"] == "running"


def test_healthz_is_200_when_everything_is_fresh(client, demo, isolated_redis):
    all_fresh(timezone.now())
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ok"
    assert set(response.json()["checks"]) == {"database", "redis", "hub", "feed", "worker:ibs_a"}


def test_healthz_is_503_naming_a_root_whose_feed_is_gone(client, demo, isolated_redis):
    all_fresh(timezone.now())
    beat("hub", state="running", interval=5, details={"feed": {"CL": "no CL trade since 2026-11-03 14:02 UTC"}})
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["feed"]
    assert "CL: no CL trade since 2026-11-03 14:02 UTC" in response.json()["checks"]["feed"]["error"]


def test_healthz_is_503_naming_a_stale_worker_and_a_missing_one(client, demo, isolated_redis, webhook_env):
    all_fresh(timezone.now() - timedelta(minutes=10))
    beat("hub", state="running", interval=5)
    Strategy.objects.filter(name="ibs_b").update(enabled=True)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker:ibs_a", "worker:ibs_b"]
    assert "stale" in body["checks"]["worker:ibs_a"]["error"]
    assert body["checks"]["worker:ibs_b"]["error"] == "no heartbeat yet"
    assert all(secret not in response.content.decode() for secret in webhook_env.values())


def test_healthz_is_503_when_redis_is_unreachable(client, demo, settings):
    all_fresh(timezone.now())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["redis"]


def test_healthz_needs_no_login_and_refuses_post(client, demo):
    assert client.post("/healthz").status_code == 405


def test_monitor_alerts_once_per_incident_and_once_on_recovery(demo, isolated_redis):
    t0 = timezone.now()
    all_fresh(t0)
    assert check_heartbeats(now=t0) == {"stale": [], "recovered": [], "unmanaged": []}
    later = t0 + timedelta(minutes=5)
    beat("hub", state="running", interval=5, now=later)
    assert check_heartbeats(now=later)["stale"] == ["worker:ibs_a"]
    assert check_heartbeats(now=later + timedelta(seconds=30))["stale"] == []  # same incident: no second alert
    beat("worker:ibs_a", state="running", interval=30, now=later + timedelta(minutes=1))
    assert check_heartbeats(now=later + timedelta(minutes=1))["recovered"] == ["worker:ibs_a"]
    titles = list(Notification.objects.order_by("id").values_list("title", flat=True))
    assert titles == ["Stale heartbeat: worker:ibs_a", "Heartbeat recovered: worker:ibs_a"]


def test_a_planned_stop_or_restart_is_never_alerted_but_a_process_that_died_is(demo, isolated_redis):
    t0 = timezone.now()
    all_fresh(t0)
    beat("hub", state="stopped", interval=5, now=t0)  # a clean stop: Ctrl-C, supervisorctl stop, an upgrade
    beat("worker:ibs_a", state="stopped", interval=30, now=t0)
    for minutes in (1, 5, 60):  # however long the appliance stays down, and while it starts again
        assert check_heartbeats(now=t0 + timedelta(minutes=minutes)) == {"stale": [], "recovered": [], "unmanaged": []}
    later = t0 + timedelta(minutes=61)
    all_fresh(later)  # restarted, then killed -9: no "stopped" this time, the beats just end
    assert check_heartbeats(now=later) == {"stale": [], "recovered": [], "unmanaged": []}
    assert sorted(check_heartbeats(now=later + timedelta(minutes=5))["stale"]) == ["hub", "worker:ibs_a"]
    assert not Notification.objects.filter(title__startswith="Heartbeat recovered").exists()
