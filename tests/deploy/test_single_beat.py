"""Two real `celery beat` processes (trading.beat.SingleBeatScheduler) on one database and one Redis, as two
hosts (PINEOPS_HOST_NAME): one holds the lock and sends each periodic task once per schedule, the other waits
saying who holds it; kill -9 of the holder, and the other takes over once the lease has run out (a holder of
another host is judged by its lease, never by a pid), without sending any task twice; a holder stopped cleanly
gives the lock up at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from tests.e2e.appliance import ROOT, ProcessEnv, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LEASE = 4  # s (PINEOPS_BEAT_LOCK_SECONDS)
EVERY = 2  # s: every interval task's schedule here
SCHEDULE = f"""
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every={EVERY}, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.filter(interval__isnull=True).update(enabled=False)  # the crontab ones: not due in a test
for task in PeriodicTask.objects.filter(interval__isnull=False):
    task.interval, task.last_run_at, task.total_run_count, task.enabled = every, None, 0, True
    task.save()
print(sorted(PeriodicTask.objects.filter(enabled=True).values_list("task", flat=True)))
"""


class Queue:
    """The tasks beat puts on the broker queue (no Celery worker takes them), with when each arrived."""

    def __init__(self, client: redis.Redis, name: str):
        self.client, self.name = client, name
        self.sent: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stopping.is_set():
            every = self.client.lrange(self.name, 0, -1)  # one atomic read; LPUSH: the newest are at the head
            now = time.monotonic()
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
    env = ProcessEnv(tmp_path, {"PINEOPS_BEAT_LOCK_SECONDS": str(LEASE), "LOG_LEVEL": "INFO"})
    env.beats = {}
    try:
        env.migrate_with_demo()
        yield env
    finally:
        env.cleanup()
        client = redis.Redis.from_url(env.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        for key in client.scan_iter("_kombu.binding*"):
            if env.redis_prefix.encode() in key:
                client.delete(key)


def start_beat(env, host: str) -> subprocess.Popen:
    log = (env.tmp / f"beat-{host}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "pineops", "beat", "--loglevel=INFO",
                             "--scheduler", "trading.beat:SingleBeatScheduler", "--pidfile="],
                            cwd=ROOT, env={**env.env, "PINEOPS_HOST_NAME": host}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    env.children.append(proc)
    env.beats[host] = proc
    return proc


def beat_log(env, host: str) -> str:
    return (env.tmp / f"beat-{host}.log").read_text(errors="replace")


def test_two_beats_send_each_task_once_and_the_second_takes_over_after_the_lease(two_hosts):
    env = two_hosts
    tasks = eval(env.shell(SCHEDULE).strip().splitlines()[-1])  # noqa: S307 — our own print of a list
    assert "trading.check_heartbeats" in tasks and len(tasks) >= 2
    client = redis.Redis.from_url(env.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
    lock_key = f"{env.redis_prefix}:lock:beat"
    queue = Queue(client, f"{env.redis_prefix}.tasks")
    try:
        for host in ("host-a", "host-b"):
            start_beat(env, host)
        holder = wait_until(lambda: client.get(lock_key), 30, "a beat holding the lock")
        first, second = ("host-a", "host-b") if holder.startswith("host-a:") else ("host-b", "host-a")
        wait_until(lambda: "another beat holds the lock" in beat_log(env, second), 30,
                   f"{second} saying another beat holds the lock")
        assert f"holder={holder}:" in beat_log(env, second) or f"holder={holder} " in beat_log(env, second)

        # Both beats run; for 4 schedules of every task, each is sent once per schedule.
        wait_until(lambda: all(len(queue.of(t)) >= 4 for t in tasks), 40, "four sends of every task")
        assert all(p.poll() is None for p in env.beats.values()), "a beat exited"
        for task in tasks:
            sent = queue.of(task)
            gaps = [b - a for a, b in zip(sent, sent[1:])]
            assert min(gaps) > EVERY * 0.75, f"{task} sent twice within one schedule: {gaps}"
        assert "beat took the lock" not in beat_log(env, second)

        # kill -9 of the holder, just after a send (its last run is in the database by then).
        count = len(queue.sent)
        wait_until(lambda: len(queue.sent) > count, 10, "the next send", interval=0.02)
        time.sleep(0.3)
        os.killpg(env.beats[first].pid, signal.SIGKILL)
        killed = time.monotonic()
        env.beats[first].wait(10)
        # A send the killed beat made just before its end may be seen by the queue's watcher (20 ms rounds, on
        # a busy machine later) after the kill; one seen half a second after its end is the standby's.
        dead = time.monotonic() + 0.5
        before = {task: len(queue.of(task)) for task in tasks}

        took_over = wait_until(lambda: (v := client.get(lock_key)) and v.startswith(f"{second}:") and time.monotonic(),
                               LEASE + 10, f"{second} taking the lock", interval=0.02)
        waited = took_over - killed
        # The lease was renewed at most LEASE/3 before the kill; the waiting beat tries every second.
        assert LEASE * 2 / 3 - 0.5 <= waited <= LEASE + 2, f"took over {waited:.1f} s after the kill"
        wait_until(lambda: "beat took the lock" in beat_log(env, second), 10, f"{second} saying it holds the lock")

        # The new holder goes on from the database's last runs: each task once per schedule, none twice.
        wait_until(lambda: all(len(queue.of(t)) >= before[t] + 3 for t in tasks), 30, "three more sends of each")
        for task in tasks:
            sent = queue.of(task)
            gaps = [b - a for a, b in zip(sent, sent[1:])]
            assert min(gaps) > EVERY * 0.75, f"{task} sent twice within one schedule: {gaps}"
            assert not [at for at in sent if dead < at < took_over], f"{task} sent while no beat held the lock"

        # The first host's beat comes back and waits; the holder stopped cleanly gives the lock up at once.
        start_beat(env, first)
        wait_until(lambda: "another beat holds the lock" in beat_log(env, first), 30, f"{first} waiting again")
        os.killpg(env.beats[second].pid, signal.SIGTERM)
        stopped = time.monotonic()
        env.beats[second].wait(20)
        back = wait_until(lambda: (v := client.get(lock_key)) and v.startswith(f"{first}:") and time.monotonic(),
                          10, f"{first} taking the released lock", interval=0.02)
        assert back - stopped < LEASE * 2 / 3, f"took {back - stopped:.1f} s: the lock was not released"
        assert "beat released its lock" in beat_log(env, second)
        count = {task: len(queue.of(task)) for task in tasks}
        wait_until(lambda: all(len(queue.of(t)) >= count[t] + 1 for t in tasks), 20, "a send of each by the new holder")
    finally:
        queue.stop()
    for proc in env.beats.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    runs = dict(env.query("SELECT task, total_run_count FROM django_celery_beat_periodictask"))
    assert {task: runs[task] for task in tasks} == {task: len(queue.of(task)) for task in tasks}, \
        "every send is one run in the database"
    assert set(task for _, task in queue.sent) == set(tasks)
