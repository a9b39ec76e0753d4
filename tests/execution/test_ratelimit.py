"""Per-webhook sliding-window limits (60/minute, 500/hour), in Redis and in memory, with an injected clock."""
import os
import threading

import pytest
import redis

from trading.execution.ratelimit import MemoryRateLimiter, RedisRateLimiter
from trading.execution.traderspost import fingerprint

URL = "https://webhooks.example.invalid/trading/webhook/abc/very-secret-token"
OTHER = "https://webhooks.example.invalid/trading/webhook/def/another-token"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def client():
    c = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    yield c
    c.close()


@pytest.fixture(params=["redis", "memory"])
def make(request, client, redis_prefix):
    def build(clock, limits=((60, 60.0), (500, 3600.0))):
        if request.param == "redis":
            return RedisRateLimiter(client, limits=limits, prefix=redis_prefix, clock=clock)
        return MemoryRateLimiter(limits=limits, clock=clock)
    return build


def test_sixty_per_minute_then_wait_until_the_oldest_leaves_the_window(make):
    clock = Clock()
    limiter = make(clock)
    for i in range(60):
        assert limiter.acquire(URL) == 0.0
        clock.advance(0.5)  # 60 posts over 30 s
    assert limiter.acquire(URL) == pytest.approx(30.0)  # the first leaves the window at t0 + 60 s
    assert limiter.acquire(URL) == pytest.approx(30.0)  # a refusal takes no slot
    clock.advance(29.999)
    assert limiter.acquire(URL) > 0
    clock.advance(0.002)
    assert limiter.acquire(URL) == 0.0
    assert limiter.acquire(URL) == pytest.approx(0.5 - 0.001, abs=1e-6)  # now the second is the oldest


def test_five_hundred_per_hour_even_when_each_minute_is_under_sixty(make):
    clock = Clock()
    limiter = make(clock)
    for minute in range(10):
        for _ in range(50):
            assert limiter.acquire(URL) == 0.0
            clock.advance(1.0)
        clock.advance(10.0)  # 60 s per minute in all
    # 500 taken in 600 s; the first of them leaves the hour at t0 + 3600.
    assert limiter.acquire(URL) == pytest.approx(3600.0 - 600.0)
    clock.advance(3000.0)
    assert limiter.acquire(URL) == 0.0


def test_each_webhook_has_its_own_budget(make):
    clock = Clock()
    limiter = make(clock, limits=((2, 10.0),))
    assert [limiter.acquire(URL) for _ in range(3)] == [0.0, 0.0, pytest.approx(10.0)]
    assert limiter.acquire(OTHER) == 0.0


def test_redis_keys_carry_the_fingerprint_never_the_url(client, redis_prefix):
    limiter = RedisRateLimiter(client, prefix=redis_prefix, clock=Clock())
    limiter.acquire(URL)
    keys = [k.decode() for k in client.scan_iter(f"{redis_prefix}*")]
    assert keys == [f"{redis_prefix}:{fingerprint(URL)}"]
    assert client.ttl(keys[0]) > 3600  # expires on its own when the webhook goes quiet
    assert "secret" not in repr(limiter) and "very-secret-token" not in keys[0]


def test_redis_limit_is_shared_by_several_limiters_and_threads(client, redis_prefix):
    # Separate limiter objects stand for separate workers/hosts; the server's clock is the one clock.
    limiters = [RedisRateLimiter(client, limits=((60, 60.0), (500, 3600.0)), prefix=redis_prefix) for _ in range(4)]
    granted = []

    def hammer(limiter):
        for _ in range(40):
            if limiter.acquire(URL) == 0.0:
                granted.append(1)

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 60  # 160 attempts, exactly 60 slots
    wait = limiters[0].acquire(URL)
    assert 59.0 < wait <= 60.0


def test_memory_limiter_is_exact_under_threads():
    limiter = MemoryRateLimiter(limits=((60, 60.0),), clock=Clock())
    granted = []
    threads = [threading.Thread(target=lambda: granted.extend(
        1 for _ in range(40) if limiter.acquire(URL) == 0.0)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 60


def test_limits_must_be_sane():
    with pytest.raises(ValueError):
        MemoryRateLimiter(limits=())
    with pytest.raises(ValueError):
        MemoryRateLimiter(limits=((0, 60.0),))


def test_a_hold_from_the_broker_stops_every_caller_of_that_webhook_until_it_ends(make):
    t = [1000.0]
    limiter = make(lambda: t[0])
    url, other = "https://example.test/hook/a", "https://example.test/hook/b"
    assert limiter.acquire(url) == 0.0
    limiter.hold(url, 45)
    limiter.hold(url, 10)  # a shorter hold never shortens the first
    assert limiter.acquire(url) == pytest.approx(45)
    t[0] += 30
    assert limiter.acquire(url) == pytest.approx(15) and limiter.acquire(other) == 0.0
    t[0] += 15
    assert limiter.acquire(url) == 0.0


def test_the_senders_limiter_is_traderspost_s_limit_unless_configured(settings, redis_prefix):
    from trading.execution.sender import limiter

    settings.REDIS_PREFIX = redis_prefix
    assert limiter().limits == ((60, 60.0), (500, 3600.0))  # the default of PINEOPS_TRADERSPOST_RATE_LIMITS
    settings.TRADERSPOST_RATE_LIMITS = ((20, 5.0),)
    assert limiter().limits == ((20, 5.0),)
