"""The worker lock: one running copy per strategy, across every host sharing the Redis.

A second worker of the same strategy is refused; a holder known dead on this host (kill -9) loses the
lock at once; a holder elsewhere keeps it while it renews it within LOCK_TTL. A worker that finds its
lock gone stops, so that two workers never trade.
"""
from __future__ import annotations

import logging

import redis

from trading.health.process import holder_dead, process_token
from trading.redis_client import key

log = logging.getLogger(__name__)
LOCK_TTL = 30  # s

_TAKE_OVER = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) else return nil end")
_RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) "
          "else return 0 end")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"


class WorkerLockError(RuntimeError):
    pass


class WorkerLock:
    def __init__(self, client: redis.Redis, strategy: str):
        self.client, self.strategy = client, strategy
        self.key = key("lock", "worker", strategy)
        self.token = process_token()

    def acquire(self) -> None:
        if self.client.set(self.key, self.token, nx=True, ex=LOCK_TTL):
            return
        holder = self.client.get(self.key) or ""
        if holder_dead(holder) and self.client.eval(_TAKE_OVER, 1, self.key, holder, self.token, LOCK_TTL):
            log.warning("took over the lock of dead worker %s strategy=%s", holder, self.strategy)
            return
        raise WorkerLockError(f"another worker for strategy {self.strategy} is running ({holder}); refusing to "
                              "start a second copy that would trade twice")

    def refresh(self) -> None:
        if not self.client.eval(_RENEW, 1, self.key, self.token, LOCK_TTL):
            raise WorkerLockError(f"lost the lock of strategy {self.strategy}; stopping so that two workers never "
                                  "trade")

    def release(self) -> None:
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            pass  # gone with Redis: it expires by itself
