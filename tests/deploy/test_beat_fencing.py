"""Celery beat's lock is confirmed right before each send (trading.beat.SingleBeatScheduler.is_due): a beat whose
tick stalled past its lease (its host cut off while it read the schedules) finds the lock taken by another beat
and sends nothing, though its tick began holding it."""
from __future__ import annotations

import pytest

from trading.beat import SingleBeatScheduler
from trading.redis_client import get_redis


class DueEntry:
    """A schedule entry that is due (and would be due again in 10 s)."""

    name = "a task"

    def is_due(self):
        return True, 10.0


@pytest.fixture
def beat(settings, redis_prefix, db):
    settings.REDIS_PREFIX, settings.BEAT_LOCK_SECONDS = redis_prefix, 3
    from pineops.celery import app

    scheduler = SingleBeatScheduler(app=app, lazy=True)
    assert scheduler.holds_lock() and scheduler.leading
    return scheduler


def test_a_due_task_is_sent_while_the_lock_is_this_beats(beat):
    assert beat.is_due(DueEntry()) == (True, 10.0)
    assert get_redis().ttl(beat.lock.key) > 2  # confirmed: the lease renewed


def test_a_due_task_is_not_sent_when_another_beat_took_the_lock_during_the_tick(beat, caplog):
    get_redis().set(beat.lock.key, "host-x:1:1", ex=3)  # the lease ran out mid-tick; another beat has it
    due, wait = beat.is_due(DueEntry())
    assert not due and wait <= 1.0
    assert not beat.leading and "beat lost its lock" in caplog.text
    assert get_redis().get(beat.lock.key) == "host-x:1:1", "the other beat's lock was left alone"
    assert not beat.holds_lock(), "a waiting beat again, until the other's lease runs out"


def test_a_due_task_is_not_sent_when_redis_cannot_confirm_the_lock(beat, monkeypatch):
    import redis

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("cut off")

    monkeypatch.setattr(beat.lock, "refresh", unreachable)
    assert beat.is_due(DueEntry())[0] is False and not beat.leading


def test_the_database_away_mid_tick_is_waited_out_and_the_beat_sends_again_once_it_answers(beat, monkeypatch, caplog):
    """A tick whose schedule read fails (the database restarting, the host cut off) neither exits the beat (celery
    would, and supervisord gives up on a program that keeps failing at start) nor sends: it says so and ticks
    again within a second; once the database answers, the next tick reads the schedules as before."""
    from django.db import OperationalError
    from django_celery_beat.schedulers import DatabaseScheduler

    reads = []

    def away(self, *args, **kwargs):
        reads.append("tick")
        raise OperationalError('connection failed: connection to server at "10.0.0.1" failed')

    monkeypatch.setattr(DatabaseScheduler, "tick", away)
    assert beat.tick() <= 1.0 and reads == ["tick"]
    assert "beat cannot read its schedules (OperationalError: connection failed" in caplog.text
    assert beat.leading, "it still holds the lock: no other beat would have a database to read either"
    monkeypatch.undo()
    monkeypatch.setattr(DatabaseScheduler, "tick", lambda self, *a, **kw: reads.append("read") or 7.0)
    assert beat.tick() == min(7.0, beat.renew_every) and reads == ["tick", "read"]
