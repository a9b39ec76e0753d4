"""Per-webhook sliding-window rate limits (TradersPost: about 60/minute and 500/hour per URL).

`acquire(url)` either takes a slot and returns 0.0, or takes nothing and returns the seconds to
wait; `hold(url, seconds)` makes every caller wait (the broker's own Retry-After, for the webhook). The Redis limiter is shared by every process and host (one atomic Lua script per call); the
memory limiter has the same interface for tests and the simulator. Keys use the URL's fingerprint,
never the URL.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict, deque

from trading.execution.traderspost import fingerprint

DEFAULT_LIMITS: tuple[tuple[int, float], ...] = ((60, 60.0), (500, 3600.0))  # (requests, window seconds)


def _check_limits(limits) -> tuple[tuple[int, float], ...]:
    limits = tuple((int(n), float(w)) for n, w in limits)
    if not limits or any(n < 1 or w <= 0 for n, w in limits):
        raise ValueError("limits must be non-empty (count ≥ 1, window > 0 s) pairs")
    return limits


# Both scripts start from the caller's time (ARGV[1], µs) or, when it is "", the Redis server's.
_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""


# KEYS[1] the webhook's sorted set (member: unique id, score: time in µs); KEYS[2] its hold (see hold()).
# Numbers are formatted with %.0f: Lua's default %.14g would round epoch microseconds.
# ARGV: now_us (or "" to use the Redis server's clock), member, then count/window_us pairs.
# Returns the wait in µs (0 when a slot was taken).
_ACQUIRE = _NOW + """
local function num(x) return string.format('%.0f', x) end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > now then return held - now end
local longest = 0
local wait = 0
for i = 3, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  if window > longest then longest = window end
  local inside = redis.call('ZCOUNT', KEYS[1], '(' .. num(now - window), '+inf')
  if inside >= limit then
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(now - window), '+inf',
                              'WITHSCORES', 'LIMIT', inside - limit, 1)
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now - longest))
redis.call('ZADD', KEYS[1], num(now), ARGV[2])
redis.call('PEXPIRE', KEYS[1], num(math.ceil(longest / 1000) + 1000))
return 0
"""


# KEYS[1] the webhook's hold key; ARGV: now_us (or ""), seconds_us. Keeps the later of two holds.
_HOLD = _NOW + """
local untl = now + tonumber(ARGV[2])
if untl > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', string.format('%.0f', math.ceil(tonumber(ARGV[2]) / 1000) + 1000))
end
return 0
"""


class RedisRateLimiter:
    """Shared sliding-window log in Redis. `clock=None` uses the Redis server's clock (one clock for all hosts)."""

    def __init__(self, client, *, limits=DEFAULT_LIMITS, prefix: str = "pineops:ratelimit", clock=None):
        self.client = client
        self.limits = _check_limits(limits)
        self.prefix = prefix
        self.clock = clock
        self._script = client.register_script(_ACQUIRE)
        self._hold = client.register_script(_HOLD)

    def key(self, url: str) -> str:
        return f"{self.prefix}:{fingerprint(url)}"

    def _now(self) -> str:
        return "" if self.clock is None else str(int(round(self.clock() * 1_000_000)))

    def acquire(self, url: str) -> float:
        args = [self._now(), uuid.uuid4().hex]
        for count, window in self.limits:
            args += [count, int(round(window * 1_000_000))]
        wait_us = int(self._script(keys=[self.key(url), self.key(url) + ":hold"], args=args))
        return wait_us / 1_000_000 if wait_us > 0 else 0.0

    def hold(self, url: str, seconds: float) -> None:
        """The broker said wait (429/503 Retry-After): no order to this webhook for `seconds`."""
        self._hold(keys=[self.key(url) + ":hold"], args=[self._now(), int(round(seconds * 1_000_000))])

    def __repr__(self) -> str:
        return f"RedisRateLimiter(prefix={self.prefix!r}, limits={self.limits})"


class MemoryRateLimiter:
    """The same sliding window in process memory (thread-safe), for tests and the simulator."""

    def __init__(self, *, limits=DEFAULT_LIMITS, clock=time.time):
        self.limits = _check_limits(limits)
        self.clock = clock
        self._log: dict[str, deque] = defaultdict(deque)
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def hold(self, url: str, seconds: float) -> None:
        with self._lock:
            key = fingerprint(url)
            self._held[key] = max(self._held.get(key, 0.0), self.clock() + seconds)

    def acquire(self, url: str) -> float:
        longest = max(w for _, w in self.limits)
        with self._lock:
            now, key = self.clock(), fingerprint(url)
            if self._held.get(key, 0.0) > now:
                return self._held[key] - now
            times = self._log[key]
            while times and times[0] <= now - longest:
                times.popleft()
            wait = 0.0
            for count, window in self.limits:
                inside = [t for t in times if t > now - window]
                if len(inside) >= count:
                    wait = max(wait, inside[len(inside) - count] + window - now)
            if wait > 0:
                return wait
            times.append(now)
            return 0.0

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(limits={self.limits})"
