"""The real Celery worker and beat (DatabaseScheduler, local Redis) running the appliance's periodic
task rows: the heartbeat monitor raises one alert for a stopped worker and clears it once, and the
daily-stop reset fires at 17:00 America/Chicago (22:00 UTC in daylight time, 23:00 UTC in standard
time), with beat and worker on a shifted clock (tests/e2e/clockshift.py, time-machine)."""
from __future__ import annotations

import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.appliance import Celery, ProcessEnv, to_ts, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHICAGO = ZoneInfo("America/Chicago")
UTC = timezone.utc
SESSION_TASK = "CME session open (daily-stop reset)"



@pytest.fixture
def celery_env(tmp_path):
    """A migrated database with the demo strategies (ibs_a enabled, ibs_b disabled) and the
    periodic task rows of the migrations; Discord pointed at a closed local port."""
    env = ProcessEnv(tmp_path, {"DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/e2e-celery",
                                "LOG_LEVEL": "INFO"})
    env.celery = None
    try:
        env.migrate_with_demo()
        yield env
    finally:
        if env.celery is not None:
            env.celery.stop()
        env.cleanup()


# --- heartbeat monitor ---------------------------------------------------------------------------

HEARTBEAT_SETUP = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
task = PeriodicTask.objects.get(task="trading.check_heartbeats", enabled=True)
task.interval = every
task.save()
"""

BEAT_ONCE = """
import json
from datetime import timedelta
from django.utils import timezone
from trading.health.heartbeat import beat, stale_after
now = timezone.now()
last = now - timedelta(seconds={ago})
beat("worker:ibs_a", state="running", interval={interval}, now=last)
print(json.dumps({{"last_seen": last.timestamp(), "stale_at": (last + stale_after({interval})).timestamp()}}))
"""

def heartbeat_alerts(env) -> dict:
    """worker:ibs_a's alerts and its heartbeat's incident flag, by SQL: polled, so no Django start each time."""
    rows = env.query("SELECT kind, title, created_at FROM trading_notification WHERE title LIKE %s ORDER BY id",
                     ("%worker:ibs_a",))
    flag = env.query("SELECT stale_alerted FROM trading_heartbeat WHERE process = %s", ("worker:ibs_a",))
    return {"alerts": [[kind, title, to_ts(at)] for kind, title, at in rows],
            "stale_alerted": bool(flag[0][0]) if flag else None}


def test_heartbeat_monitor_alerts_once_for_a_stopped_worker_and_once_on_recovery(celery_env):
    env = celery_env
    env.shell(HEARTBEAT_SETUP)
    celery = env.celery = Celery(env).start()
    runs = lambda: celery.succeeded("trading.check_heartbeats")  # noqa: E731
    alerts = lambda: heartbeat_alerts(env)  # noqa: E731
    celery.wait(lambda: runs() >= 2, 60, "the heartbeat monitor running every second")

    # worker:ibs_a beats every 2 s; it is stale after max(3 × 2 s, 60 s). Its last beat was 45 s ago
    # (so the stop happens during the test without a minute of waiting): fresh for 15 s more.
    hb = env.shell_json(BEAT_ONCE.format(ago=45, interval=2))
    assert hb["stale_at"] - hb["last_seen"] == 60
    seen = runs()
    celery.wait(lambda: runs() >= seen + 3, 20, "three monitor runs while the heartbeat is fresh")
    state = alerts()
    assert time.time() < hb["stale_at"], "the fresh-phase check ran too late to mean anything"
    assert state == {"alerts": [], "stale_alerted": False}, "no alert while the worker is fresh"

    # The worker has stopped beating: one emergency alert once its heartbeat is stale.
    state = celery.wait(lambda: (s := alerts())["alerts"] and s, 40, "the stale-heartbeat alert")
    assert [a[:2] for a in state["alerts"]] == [["emergency", "Stale heartbeat: worker:ibs_a"]]
    assert state["alerts"][0][2] >= hb["stale_at"], "alerted before the heartbeat was stale"
    assert state["stale_alerted"] is True

    # Still stale for several more monitor runs: still that one alert (one per incident).
    seen = runs()
    celery.wait(lambda: runs() >= seen + 4, 20, "four more monitor runs while stale")
    assert [a[:2] for a in alerts()["alerts"]] == [["emergency", "Stale heartbeat: worker:ibs_a"]]

    # It beats again: one recovery alert, and the incident is closed.
    env.shell_json(BEAT_ONCE.format(ago=0, interval=2))
    state = celery.wait(lambda: len((s := alerts())["alerts"]) >= 2 and s, 20, "the recovery alert")
    seen = runs()
    celery.wait(lambda: runs() >= seen + 4, 20, "four more monitor runs after recovery")
    state = alerts()
    assert [a[:2] for a in state["alerts"]] == [["emergency", "Stale heartbeat: worker:ibs_a"],
                                                ["info", "Heartbeat recovered: worker:ibs_a"]]
    assert state["stale_alerted"] is False


# --- daily reset at the CME session boundary -----------------------------------------------------

LEAD = 15.0  # seconds of simulated time between starting Celery and the boundary

RESET_SETUP = """
import json
from datetime import datetime, timedelta
from django_celery_beat.models import PeriodicTask
from trading.models import DailyRiskState, Strategy
boundary = datetime.fromisoformat("{boundary}")
# The appliance has been running: the reset last fired at the previous boundary, today's summary
# (16:15 Chicago) has gone out, and the interval tasks are due. Without this, beat would take
# the rows' date_changed (the real date, months away from the simulated one) as their last run.
PeriodicTask.objects.filter(name="{session_task}").update(last_run_at=boundary - timedelta(days=1))
PeriodicTask.objects.filter(task="trading.daily_summary").update(last_run_at=boundary - timedelta(minutes=40))
PeriodicTask.objects.filter(interval__isnull=False).update(last_run_at=boundary - timedelta(hours=1))
# ibs_a hit its daily stop in the session that is about to end.
DailyRiskState.objects.create(strategy=Strategy.objects.get(name="ibs_a"), session_date="{today}",
                              stopped=True, stop_reason="e2e: daily stop hit")
task = PeriodicTask.objects.get(name="{session_task}")
print(json.dumps({{"crontab": [task.crontab.minute, task.crontab.hour, task.crontab.day_of_week,
                              str(task.crontab.timezone)], "runs": task.total_run_count}}))
"""

RESET_STATE = """
import json
from django_celery_beat.models import PeriodicTask
from trading.models import DailyRiskState, Notification
task = PeriodicTask.objects.get(name="{session_task}")
print(json.dumps({{
    "states": sorted([s.strategy.name, s.session_date.isoformat(), s.stopped] for s in DailyRiskState.objects.all()),
    "lifted": [[n.title, n.created_at.timestamp()] for n in Notification.objects.filter(title__startswith="Daily stop lifted")],
    "last_run_at": task.last_run_at.timestamp() if task.last_run_at else None,
    "runs": task.total_run_count,
}}))
"""


def quick_state(env) -> dict:
    """RESET_STATE's daily states, lifted alerts and run count, by SQL (no Django start)."""
    states = env.query("SELECT s.name, d.session_date, d.stopped FROM trading_dailyriskstate d"
                       " JOIN trading_strategy s ON s.id = d.strategy_id")
    lifted = env.query("SELECT title FROM trading_notification WHERE title LIKE %s", ("Daily stop lifted%",))
    (runs,), = env.query("SELECT total_run_count FROM django_celery_beat_periodictask WHERE name = %s",
                         (SESSION_TASK,))
    return {"states": sorted([name, str(day)[:10], bool(stopped)] for name, day, stopped in states),
            "lifted": [title for title, in lifted], "runs": runs}


@pytest.mark.parametrize("boundary, today, next_session, utc_hour", [
    pytest.param(datetime(2026, 7, 14, 17, 0, tzinfo=CHICAGO), date(2026, 7, 14), date(2026, 7, 15), 22,
                 id="daylight-time-CDT"),
    pytest.param(datetime(2026, 11, 24, 17, 0, tzinfo=CHICAGO), date(2026, 11, 24), date(2026, 11, 25), 23,
                 id="standard-time-CST"),
])
def test_daily_reset_fires_at_the_session_boundary(celery_env, boundary, today, next_session, utc_hour):
    env = celery_env
    b = boundary.timestamp()
    setup = env.shell_json(RESET_SETUP.format(boundary=boundary.isoformat(), today=today,
                                              session_task=SESSION_TASK))
    assert setup == {"crontab": ["0", "17", "0-4", "America/Chicago"], "runs": 0}
    state = lambda: env.shell_json(RESET_STATE.format(session_task=SESSION_TASK))  # noqa: E731

    offset = (b - LEAD) - time.time()  # simulated = real + offset, for beat, worker and this test
    fake_now = lambda: time.time() + offset  # noqa: E731
    celery = env.celery = Celery(env, offset=offset).start()

    # Worker and beat run on the simulated date: the interval tasks go through before the boundary.
    fake_day = time.strftime("%Y-%m-%d %H:%M", time.localtime(b - LEAD))  # as the log's asctime
    celery.wait(lambda: celery.succeeded("trading.check_heartbeats") >= 1, LEAD, "a first task run")
    assert fake_day in celery.log("worker") and "beat: Starting" in celery.log("beat"), celery.tails()

    # A moment before 17:00 Chicago: nothing reset yet (and no early run of the task). Read straight from
    # the database: a Django shell takes seconds on a loaded machine and would read after the boundary.
    wait_until(lambda: fake_now() >= b - 3, LEAD, "the simulated clock to near the boundary", interval=0.05)
    before = quick_state(env)
    assert fake_now() < b, "the before-boundary snapshot was taken too late"
    assert before["states"] == [["ibs_a", today.isoformat(), True]]
    assert before["lifted"] == [] and before["runs"] == 0
    assert celery.succeeded("trading.open_session") == 0

    # At the boundary the worker opens the next session for every strategy.
    after = celery.wait(lambda: len((s := quick_state(env))["states"]) == 3 and s, 30, f"the reset for {next_session}")
    assert after["states"] == [["ibs_a", today.isoformat(), True], ["ibs_a", next_session.isoformat(), False],
                               ["ibs_b", next_session.isoformat(), False]]
    celery.wait(lambda: quick_state(env)["lifted"], 15, "the daily-stop-lifted alert")
    celery.stop()  # beat saves the entry's last_run_at on shutdown
    env.celery = None

    final = state()
    assert final["states"] == after["states"]
    assert final["runs"] == 1, "the reset ran once"
    fired = datetime.fromtimestamp(final["last_run_at"], UTC)
    assert 0 <= fired.timestamp() - b < 2, f"beat sent the reset at {fired}, not at the boundary {boundary}"
    assert (fired.hour, fired.minute) == (utc_hour, 0), f"17:00 Chicago on {today} is {utc_hour}:00 UTC"
    assert (fired.astimezone(CHICAGO).hour, fired.astimezone(CHICAGO).minute) == (17, 0)
    (title, lifted_at), = final["lifted"]
    assert title == "Daily stop lifted: ibs_a"
    assert 0 <= lifted_at - b < 10
    assert celery.succeeded("trading.open_session") == 1
    assert f"'session_date': '{next_session.isoformat()}'" in celery.log("worker")
