"""The Redis connection of this process and the key naming under REDIS_PREFIX."""
from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30,
                                decode_responses=True)


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def key(*parts: str) -> str:
    """A Redis key under this appliance's prefix, e.g. key('bars', 'CL', '1m') → 'pineops:bars:CL:1m'."""
    return ":".join([settings.REDIS_PREFIX, *parts])
