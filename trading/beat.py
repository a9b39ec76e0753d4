"""Celery beat once across every host: a DatabaseScheduler that ticks only while it holds a lease in Redis.

Each container with the `beat` role runs one (`celery beat --scheduler trading.beat:SingleBeatScheduler`).
The holder of `{REDIS_PREFIX}:lock:beat` renews it at every tick (lease: PINEOPS_BEAT_LOCK_SECONDS); any
other beat sends nothing, logs who holds the lock, and takes over once the lease has run out (at once when
the holder is a process of this host known dead, as every ProcessLock). A new holder reads every schedule
from the database first, so a task its predecessor sent (last_run_at is saved at each send) is not sent
again. It must never send a task without the lock: the lease is confirmed again right before each send, since a
tick can stall after its first check (a host cut off mid-tick, waiting on the database) past the lease.
"""
from __future__ import annotations

import datetime
import logging
import time

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

from trading.delivery.locks import ProcessLock
from trading.redis_client import get_redis, key

log = logging.getLogger(__name__)

WAITING_SAID_EVERY = 60.0  # s: a waiting beat repeats who holds the lock this often (and at every change)
STANDBY_POLL = 1.0  # s: how often a waiting beat tries the lock


class SingleBeatScheduler(DatabaseScheduler):
    lock: ProcessLock | None = None
    leading = False
    closed = False

    def __init__(self, *args, **kwargs):
        ttl = settings.BEAT_LOCK_SECONDS
        self.lock = ProcessLock(get_redis(), key("lock", "beat"), ttl)
        self.renew_every = max(ttl / 3, 0.5)
        self._said = ("", 0.0)  # (holder, monotonic time) of the last "waiting" line
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        if self.closed:
            # SIGTERM's handler (celery.apps.beat) closed the scheduler and raised SystemExit, but the exit was
            # lost inside a send (a database error while it unwound, logged as "Message Error"): exit now,
            # without taking the lock back.
            raise SystemExit("beat stopped")
        try:
            if not self.holds_lock():
                return min(STANDBY_POLL, self.renew_every)
            return min(super().tick(*args, **kwargs), self.renew_every)
        except DatabaseError as exc:
            # The database away (restarting, this host cut off): celery's beat would exit on it, and one that
            # keeps failing at start is given up by supervisord. Wait it out instead: nothing is sent until the
            # schedules can be read again; the schedule in memory keeps the runs already sent.
            log.error("beat cannot read its schedules (%s: %s): sending nothing until the database answers",
                      exc.__class__.__name__, str(exc).splitlines()[0] if str(exc) else "")
            close_old_connections()
            return min(STANDBY_POLL, self.renew_every)

    def holds_lock(self) -> bool:
        """Renew the lease, or try to take the lock; True while this beat may send."""
        lock = self.lock
        try:
            if self.leading:
                if lock.refresh():
                    return True
                self.leading = False
                log.warning("beat lost its lock key=%s (its lease ran out or another beat took it); sending "
                            "nothing until it holds the lock again", lock.key)
            taken = lock.acquire() or (lock.holder == lock.token and lock.refresh())  # still ours after an outage
        except redis.RedisError as exc:
            if self.leading:
                log.warning("beat cannot renew its lock key=%s (%s): sending nothing until Redis answers",
                            lock.key, exc.__class__.__name__)
            self.leading = False
            return False
        if taken:
            self.leading = True
            log.info("beat took the lock key=%s holder=%s lease=%ss: this beat sends the periodic tasks",
                     lock.key, lock.token, lock.ttl)
            self.read_schedules()
            return True
        said_holder, said_at = self._said
        if lock.holder != said_holder or time.monotonic() - said_at >= WAITING_SAID_EVERY:
            log.info("another beat holds the lock key=%s holder=%s: this beat (%s) waits and takes over when the "
                     "holder's lease of %ss runs out", lock.key, lock.holder, lock.token, lock.ttl)
            self._said = (lock.holder, time.monotonic())
        return False

    def is_due(self, entry):
        """Due, and this beat holds the lock at this moment (renewed now): the check at the start of the tick may
        be older than the lease by the time a stalled tick gets here, and another beat may have taken over."""
        due, next_time = super().is_due(entry)
        if due and not self.confirm_lock():
            return False, min(STANDBY_POLL, self.renew_every)
        return due, next_time

    def confirm_lock(self) -> bool:
        try:
            if self.lock.refresh():
                return True
        except redis.RedisError as exc:
            log.warning("beat cannot renew its lock key=%s before a send (%s): sending nothing until Redis answers",
                        self.lock.key, exc.__class__.__name__)
        else:
            log.warning("beat lost its lock key=%s before a send (its tick outlasted the lease and another beat took "
                        "it); sending nothing until it holds the lock again", self.lock.key)
        self.leading = False
        return False

    def reserve(self, entry):
        """The entry's next run, kept in the schedule too (as celery's own schedulers do): a schedule re-read
        between a send and the next tick (an admin edit, another beat starting) must not find the entry as
        it was before the send and send it again."""
        new_entry = super().reserve(entry)
        if self._schedule is not None and entry.name in self._schedule:
            self._schedule[entry.name] = new_entry
        return new_entry

    def install_default_entries(self, data) -> None:
        """None: there is no result backend to clean (CELERY_RESULT_BACKEND is None), and writing the entry at
        every start would mark the schedule changed for the beat that holds the lock."""

    def read_schedules(self) -> None:
        """Every schedule as the database has it now (the last runs of the previous holder included)."""
        self.sync()
        self._schedule = self.all_as_schedule()
        self._last_full_sync = datetime.datetime.now()
        self._heap = None  # Scheduler.tick rebuilds the heap from the new entries

    def close(self) -> None:
        self.closed = True
        super().close()
        if self.leading and self.lock.release():
            log.info("beat released its lock key=%s: another beat may take over at once", self.lock.key)
        self.leading = False
