"""What the bar writer's and the hub lease's tests share: a Redis client on this test's own key prefix."""
import pytest
import redis


@pytest.fixture
def prefixed(settings, redis_prefix):
    """A Redis client (answers decoded), the appliance's keys under this test's own prefix."""
    settings.REDIS_PREFIX = redis_prefix
    return redis.Redis(decode_responses=True)
