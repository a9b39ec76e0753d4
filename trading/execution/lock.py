"""The worker lock: one running copy per strategy, across every host sharing the Redis.

A second worker of the same strategy is refused; a holder known dead on this host (kill -9) loses the
lock at once; a holder elsewhere keeps it while it renews it within LOCK_TTL. A worker that finds its
lock gone stops, so that two workers never trade.
"""
from __future__ import annotations

import redis

from trading.delivery.locks import ProcessLock
from trading.redis_client import key

LOCK_TTL = 30  # s


class WorkerLockError(RuntimeError):
    pass


class WorkerLock:
    def __init__(self, client: redis.Redis, strategy: str):
        self.strategy = strategy
        self.lock = ProcessLock(client, key("lock", "worker", strategy), LOCK_TTL)

    def acquire(self) -> None:
        if not self.lock.acquire():
            raise WorkerLockError(f"another worker for strategy {self.strategy} is running ({self.lock.holder}); "
                                  "refusing to start a second copy that would trade twice")

    def refresh(self) -> None:
        if not self.lock.refresh():
            raise WorkerLockError(f"lost the lock of strategy {self.strategy}; stopping so that two workers never "
                                  "trade")

    def release(self) -> None:
        self.lock.release()
