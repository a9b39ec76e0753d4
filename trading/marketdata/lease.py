"""One hub per feed across every host: a lease in Redis the hub takes before it subscribes and renews while it runs.

A second hub (a container started twice by mistake, a replacement started early) waits as a standby, saying
who holds the feed, and takes over once the holder's lease (PINEOPS_HUB_LOCK_SECONDS) runs out, at once when
the holder is a process of this host known dead (kill -9) or stopped cleanly (it releases the lease). The
bar writer's script checks the lease in the same call as every write (trading.marketdata.streams), so a hub
that lost its lease (frozen past it, cut off from Redis) appends nothing more, whatever it still holds.
"""
from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from trading.delivery.locks import ProcessLock
from trading.redis_client import key

log = logging.getLogger(__name__)
WAITING_SAID_EVERY = 60.0  # s: a standby repeats who holds the feed this often (and at every change of holder)


class LeaseLost(RuntimeError):
    """Another hub holds the feed now: this one must stop writing and stand by."""


def lease_key(feed: str) -> str:
    return key("lock", "hub", feed)


class HubLease:
    def __init__(self, client: redis.Redis, feed: str, ttl: int | None = None):
        self.feed = feed
        self.lock = ProcessLock(client, lease_key(feed), ttl or settings.HUB_LOCK_SECONDS)
        self.renew_every = max(self.lock.ttl / 3, 0.5)
        self.held = False
        self._renewed = 0.0  # monotonic time of the last renewal

    @property
    def key(self) -> str:
        return self.lock.key

    @property
    def token(self) -> str:
        return self.lock.token

    def wait(self, stopping=lambda: False, poll: float = 0.5) -> bool:
        """Take the lease, standing by while another hub holds it; False when `stopping()` turns true first."""
        said, said_at = None, 0.0
        while not stopping():
            try:
                if self.lock.acquire():
                    self.held, self._renewed = True, time.monotonic()
                    if said is not None:
                        log.warning("hub took over the feed feed=%s holder=%s (the previous holder %s is gone)",
                                    self.feed, self.token, said)
                    else:
                        log.info("hub holds the feed feed=%s holder=%s lease=%ss", self.feed, self.token,
                                 self.lock.ttl)
                    return True
                holder = self.lock.holder
            except redis.RedisError as exc:  # restarting, or not up yet: waited for, a line a second naming it
                log.error("hub waiting for Redis before it subscribes: %s: %s", exc.__class__.__name__, exc)
                self._pause(1.0, stopping)
                continue
            if holder != said or time.monotonic() - said_at >= WAITING_SAID_EVERY:
                log.info("another hub holds the feed feed=%s holder=%s: this hub (%s) stands by and takes over when "
                         "the holder's lease of %ss runs out", self.feed, holder, self.token, self.lock.ttl)
                said, said_at = holder, time.monotonic()
            self._pause(poll, stopping)
        return False

    @staticmethod
    def _pause(seconds: float, stopping) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stopping():
            time.sleep(0.05)

    def renew(self, force: bool = False) -> None:
        """Renew the lease when a third of it has passed (`force`: now). Raises LeaseLost when another hub holds
        it; a lease found free (it lapsed with no one taking it, or Redis restarted without it) is taken back.
        Redis away: logged, and the hub goes on (its writes wait for Redis, and are checked there)."""
        if not self.held or (not force and time.monotonic() - self._renewed < self.renew_every):
            return
        lock = self.lock
        try:
            if lock.refresh() or lock.acquire():
                self._renewed = time.monotonic()
                return
            holder = lock.holder
        except redis.RedisError as exc:
            log.warning("hub cannot renew its lease feed=%s (%s); its writes wait for Redis", self.feed,
                        exc.__class__.__name__)
            return
        self.held = False
        raise LeaseLost(f"another hub holds the feed {self.feed} now (holder={holder}); this hub ({self.token}) "
                        "stops writing and stands by")

    def release(self) -> None:
        if self.held and self.lock.release():
            log.info("hub released the feed feed=%s: a standby may take over at once", self.feed)
        self.held = False
