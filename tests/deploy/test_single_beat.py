"""Two Celery beats on two hosts (issue 22's acceptance): real `celery beat` processes
(trading.beat.SingleBeatScheduler) on network namespaces A and B, PostgreSQL and Redis over the network, both on
one fast simulated clock (tests/deploy/fastclock.py: a day of the schedules in 36 s). Over a simulated day
(Tuesday 12:00 → Wednesday 12:00 Chicago) every periodic task is counted as it reaches the broker queue: the
interval tasks (every 3 h here) and the crontabs of the data migrations as they are (drift report 16:05, daily
summary 16:15, session open 17:00). The holder's host is cut off just after the 15:00 sends; the other beat takes
over once the lease has run out (a holder on another host is judged by its lease, never by a pid) and sends
each crontab that fell due meanwhile once, late, and every later run on time. The cut host returns and sends
nothing. Each task runs once per schedule: none twice, none missed. A holder stopped cleanly gives the lock up
at once.

The cut falls once the holder's last sends are in the database (a beat writes a task's last run just after
sending it): a host cut between the two leaves that run unrecorded, and the new holder sends it again. That is
at least once, by choice: every periodic task is idempotent (tasks.py), a run lost would not be."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from tests.deploy.desk import Bridge
from tests.deploy.netns import AVAILABLE, log_of, start_on
from tests.e2e.appliance import BEAT, ProcessEnv, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150),
              pytest.mark.skipif(not AVAILABLE, reason="needs root, ip (network namespaces) and socat")]

LEASE = 3  # s, real (PINEOPS_BEAT_LOCK_SECONDS; its least)
SPEED = 2400  # simulated seconds per real second: a day in 36 s, the lease 2 h
EVERY = timedelta(hours=3)  # every interval task's schedule here
DAY = datetime(2026, 11, 3, 18, 0, tzinfo=timezone.utc)  # Tuesday 12:00 Chicago (CST)
CRONTABS = {"trading.drift_reports": DAY + timedelta(hours=4, minutes=5),
            "trading.daily_summary": DAY + timedelta(hours=4, minutes=15),
            "trading.open_session": DAY + timedelta(hours=5)}
LATE = timedelta(minutes=40)  # how late a send may be seen (1 s real: a tick, the sends before it, the watch)
SCHEDULE = f"""
import json
from datetime import datetime
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every={int(EVERY.total_seconds())}, period=IntervalSchedule.SECONDS)
start = datetime.fromisoformat({DAY.isoformat()!r})
for task in PeriodicTask.objects.all():
    if task.interval_id:
        task.interval = every
    task.last_run_at, task.total_run_count, task.enabled = start, 0, True
    task.save()
print(json.dumps({{t.task: bool(t.interval_id) for t in PeriodicTask.objects.all()}}))
"""


class Queue:
    """The tasks beat puts on the broker queue (no Celery worker takes them), with when each arrived (real)."""

    def __init__(self, client: redis.Redis, name: str):
        self.client, self.name = client, name
        self.sent: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stopping.is_set():
            every = self.client.lrange(self.name, 0, -1)  # one atomic read; LPUSH: the newest are at the head
            now = time.time()
            for raw in reversed(every[:len(every) - len(self.sent)]):
                self.sent.append((now, json.loads(raw)["headers"]["task"]))
            time.sleep(0.02)

    def of(self, task: str) -> list[float]:
        return [at for at, name in list(self.sent) if name == task]

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


@pytest.fixture
def two_hosts(tmp_path):
    bridge = Bridge(tmp_path, ["a", "b"])
    try:
        (tmp_path / "beats").mkdir()
        yield bridge.attach(ProcessEnv(tmp_path / "beats", {"PINEOPS_BEAT_LOCK_SECONDS": str(LEASE),
                                                            "LOG_LEVEL": "INFO"}))
    finally:
        bridge.down()


def start_beat(env, host: str, origin) -> None:
    clock = ("-m", "tests.deploy.fastclock", "--start", str(DAY.timestamp()), "--speed", str(SPEED), "--origin",
             str(origin), "--", "-A", "pineops")
    start_on(env, host, f"beat-{host}", *BEAT, program=clock)


def sends(env, host: str) -> int:
    return log_of(env, f"beat-{host}").count("Sending due task")


def test_two_beats_on_two_hosts_run_each_task_once_per_schedule_over_a_simulated_day_with_a_host_cut(two_hosts,
                                                                                                   fault_report):
    env = two_hosts
    tasks = json.loads(env.shell(SCHEDULE).strip().splitlines()[-1])
    intervals = sorted(t for t, is_interval in tasks.items() if is_interval)
    assert set(CRONTABS) <= set(tasks) and "trading.check_heartbeats" in intervals, tasks
    client = redis.Redis.from_url(env.env["REDIS_URL"], decode_responses=True)
    lock_key = f"{env.redis_prefix}:lock:beat"
    origin = env.tmp / "clock-origin"
    queue = Queue(client, f"{env.redis_prefix}.tasks")
    sim = lambda real: DAY + timedelta(seconds=(real - started) * SPEED)  # noqa: E731
    try:
        for host in ("a", "b"):
            start_beat(env, host, origin)
        holder = wait_until(lambda: client.get(lock_key), 60, "a beat holding the lock")
        first, second = ("a", "b") if holder.startswith("host-a:") else ("b", "a")
        wait_until(lambda: "another beat holds the lock" in log_of(env, f"beat-{second}"), 60,
                   f"host {second}'s beat waiting")
        started = time.time() + 0.2
        origin.write_text(repr(started))  # the simulated day begins (Tuesday 12:00 Chicago)

        # The 15:00 runs sent by the holder (and recorded); its host is cut off just after them.
        recorded = "SELECT COUNT(*) FROM django_celery_beat_periodictask WHERE interval_id IS NOT NULL AND total_run_count = 1"
        wait_until(lambda: env.query(recorded) == [(len(intervals),)], 30, "the 15:00 runs", interval=0.01)
        env.network.link(first, "down")
        cut = time.time()
        took = wait_until(lambda: (client.get(lock_key) or "").startswith(f"host-{second}:") and time.time(),
                          LEASE + 5, f"host {second}'s beat taking the lock", interval=0.01)
        assert took - cut <= LEASE + 1.0, f"took over {took - cut:.1f} s after the cut (lease {LEASE} s)"

        # The crontabs due meanwhile are sent by the new holder; then the cut host returns and stays quiet.
        wait_until(lambda: all(queue.of(t) for t in CRONTABS), 10, "each crontab of the afternoon")
        env.network.link(first, "up")
        # (a query in flight at the cut waits for TCP's next retransmission, which backs off to tens of seconds)
        wait_until(lambda: "beat lost its lock" in log_of(env, f"beat-{first}"), 60, f"host {first}'s beat waiting")
        end = DAY + timedelta(days=1)
        wait_until(lambda: sim(time.time()) > end + timedelta(hours=1), 60, "the simulated day's end")
        sent_by_first = sends(env, first)

        # The holder stopped cleanly releases the lock (says so as it goes): the returned beat has it at once, well
        # within the lease it would otherwise have waited out (timed from the stopped beat's exit: its shutdown
        # under load is not the lock's doing).
        os.killpg(env.procs[f"beat-{second}"].pid, signal.SIGTERM)
        env.procs[f"beat-{second}"].wait(20)
        exited = time.monotonic()
        assert "beat released its lock" in log_of(env, f"beat-{second}"), "the stopped beat did not release its lock"
        back = wait_until(lambda: (client.get(lock_key) or "").startswith(f"host-{first}:") and time.monotonic(),
                          10, f"host {first}'s beat taking the released lock", interval=0.02)
        assert back - exited < LEASE * 2 / 3, f"took {back - exited:.1f} s after the release: the lock was not free"
        assert "beat released its lock" in log_of(env, f"beat-{second}")
        os.killpg(env.procs[f"beat-{first}"].pid, signal.SIGTERM)
        env.procs[f"beat-{first}"].wait(20)
        wait_until(lambda: len(queue.sent) == client.llen(queue.name), 5, "the queue's watcher seeing every send")
    finally:
        queue.stop()

    # (an interval task's next run is due EVERY after its last; the day's eighth is due at its end, a little later)
    day = {task: [sim(at) for at in queue.of(task) if sim(at) <= end + timedelta(hours=1)] for task in tasks}
    expected = {task: [DAY + EVERY * k for k in range(1, 9)] for task in intervals}
    expected.update({task: [due] for task, due in CRONTABS.items()})
    twice = sum(max(len(day[t]) - len(expected[t]), 0) for t in expected)
    missed = sum(max(len(expected[t]) - len(day[t]), 0) for t in expected)
    fault_report("two beats on two hosts, a holder's host cut (a simulated day)", runs=1,
                 expected=sum(map(len, expected.values())), received=sum(map(len, day.values())), duplicates=twice,
                 lost=missed)
    taken = sim(took)
    for task, due in expected.items():
        assert len(day[task]) == len(due), f"{task}: {len(day[task])} runs in the day, {len(due)} scheduled"
    for task in intervals:  # each run due EVERY after the one before: on time across the takeover too
        runs = [DAY, *day[task]]
        gaps = [b - a for a, b in zip(runs, runs[1:])]
        assert all(EVERY - LATE <= gap <= EVERY + LATE for gap in gaps), f"{task}: {[str(g) for g in gaps]}"
    for task, due in CRONTABS.items():  # on time, or (due while no beat held the lock) as soon as one had it
        assert due <= day[task][0] <= max(due, taken) + LATE, f"{task} due {due:%H:%M} sent {day[task][0]:%H:%M}"
    cut_at, none_between = sim(cut), [(t, sim(at)) for at, t in queue.sent if cut + 0.2 < at < took]
    assert none_between == [], f"sent while no beat held the lock (cut {cut_at:%H:%M}): {none_between}"
    assert any(CRONTABS[t] < taken for t in CRONTABS), "the cut covered no crontab: the takeover was not tested"
    # Who sent what: the first host's beat until its cut, none after its return; the other from its takeover.
    assert sent_by_first == len([1 for at, _ in queue.sent if at < took]), "the cut host's beat sent after its return"

    # Every send is one run in the database.
    runs = dict(env.query("SELECT task, total_run_count FROM django_celery_beat_periodictask"))
    assert {task: runs[task] for task in tasks} == {task: len(queue.of(task)) for task in tasks}
    assert sends(env, first) + sends(env, second) == len(queue.sent)
