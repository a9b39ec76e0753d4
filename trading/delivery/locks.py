"""Process locks in Redis: one holder at a time across every host sharing the Redis, named by its process
token (host:pid:start, trading.health.process).

A holder known dead on this host (kill -9) loses the lock at once; a holder elsewhere, or alive here,
keeps it until its time to live runs out, unless it renews it. The worker lock (one worker per strategy)
and the alert delivery run (one run at a time, so no two send a webhook's messages out of order) use it.
"""
from __future__ import annotations

import logging

import redis

from trading.health.process import holder_dead, process_token

log = logging.getLogger(__name__)

_TAKE_OVER = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) else return nil end")
_RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) "
          "else return 0 end")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"


class ProcessLock:
    def __init__(self, client: redis.Redis, name: str, ttl: int):
        self.client, self.key, self.ttl = client, name, int(ttl)
        self.token = process_token()
        self.holder = ""  # who held it when `acquire` found it taken

    def acquire(self) -> bool:
        """Take the lock (or take it over from a dead holder); False while a live or remote holder keeps it."""
        if self.client.set(self.key, self.token, nx=True, ex=self.ttl):
            return True
        holder = self.client.get(self.key) or ""
        if isinstance(holder, bytes):
            holder = holder.decode()
        if holder_dead(holder) and self.client.eval(_TAKE_OVER, 1, self.key, holder, self.token, self.ttl):
            log.warning("took over lock %s of dead holder %s", self.key, holder)
            return True
        self.holder = holder
        return False

    def refresh(self) -> bool:
        """Renew the time to live; False when the lock is no longer this holder's."""
        return bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl))

    def release(self) -> bool:
        """Give the lock up if it is still this holder's; False when it was not (expired, or taken over)."""
        try:
            return bool(self.client.eval(_RELEASE, 1, self.key, self.token))
        except redis.RedisError:
            return False  # gone with Redis: it expires by itself
