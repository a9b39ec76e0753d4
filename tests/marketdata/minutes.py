"""Minute bars of CLZ6 for the bar writer's and the hub lease's tests."""
from datetime import datetime, timedelta, timezone

from strategies.bars import Bar

T0 = datetime(2026, 11, 3, 14, tzinfo=timezone.utc)


def minute(i, root="CL"):
    """Minute bar i after T0 (prices rising by 1 a minute)."""
    return Bar(root, "CLZ6", "1m", T0 + timedelta(minutes=i), 70 + i, 71 + i, 69 + i, 70.5 + i, 10, 3)
