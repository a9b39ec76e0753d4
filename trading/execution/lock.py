"""The worker lock: one running copy per strategy, across every host sharing the Redis.

A second worker of the same strategy is refused, or, as a standby (the worker programs supervisord runs:
PINEOPS_WORKER_WAITS_FOR_LOCK), waits until the holder is gone; a holder known dead on this host (kill -9)
loses the lock at once; a holder elsewhere keeps it while it renews it within its lease
(PINEOPS_WORKER_LOCK_SECONDS), so a worker of a lost host moves to another host with the strategy in its
list once the lease has run out. A worker that finds its lock gone stops, so that two workers never trade.
"""
from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from trading.delivery.locks import ProcessLock
from trading.redis_client import key

log = logging.getLogger(__name__)


class WorkerLockError(RuntimeError):
    pass


class WorkerLock:
    def __init__(self, client: redis.Redis, strategy: str):
        self.strategy = strategy
        self.lock = ProcessLock(client, key("lock", "worker", strategy), settings.WORKER_LOCK_SECONDS)
        self.held = False  # taken by acquire(); what the step fence checks

    def acquire(self, *, wait: bool = False, stopping=lambda: False) -> bool:
        """Take the lock. Held by another worker: refused, or with `wait`, taken once its holder is gone
        (False when `stopping` turns true first)."""
        said = None
        while True:
            try:
                if self.lock.acquire():
                    self.held = True
                    if said is not None:
                        log.warning("worker lock taken strategy=%s holder=%s (the previous holder %s is gone)",
                                    self.strategy, self.lock.token, said)
                    return True
                holder = self.lock.holder
            except redis.RedisError as exc:
                if not wait:
                    raise
                holder = f"unknown (Redis: {exc.__class__.__name__})"
            if not wait:
                raise WorkerLockError(f"another worker for strategy {self.strategy} is running ({holder}); "
                                      "refusing to start a second copy that would trade twice")
            if holder != said:
                log.info("worker standby strategy=%s: another worker holds the lock holder=%s; taking over when "
                         "its lease of %ss runs out", self.strategy, holder, self.lock.ttl)
                said = holder
            for _ in range(10):
                if stopping():
                    return False
                time.sleep(0.1)

    def refresh(self) -> None:
        if not self.lock.refresh():
            raise WorkerLockError(f"lost the lock of strategy {self.strategy}; stopping so that two workers never "
                                  "trade")

    def fence(self) -> None:
        """Inside a step's transaction, just before it commits: the lock must still be this worker's (a host cut
        off mid-step must not commit once another holds the strategy). Nothing to check for a lock never taken."""
        if self.held:
            self.refresh()

    def release(self) -> None:
        self.held = False
        self.lock.release()
