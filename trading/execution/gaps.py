"""Hours a worker would otherwise skip: a bar stream trimmed or flushed past the worker's position.

Redis Streams resume a reader at the next entry that exists, so entries removed under a reader
(XTRIM, eviction, FLUSHALL) would be skipped without a word. The worker knows where it was: when a
stream's first entry lies past that point, the hours in between come from the bar store (the hub
writes every hourly bar there); the trading hours the store lacks too are named in an emergency,
and open positions keep their broker-side stop and target as protection. Never a silent skip.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import redis

from strategies.bars import Bar
from strategies.calendar import is_trading
from trading.models import StoredBar

log = logging.getLogger(__name__)
UTC = timezone.utc
HOUR = timedelta(hours=1)


def entry_ms(entry_id: str) -> int:
    return int(str(entry_id).split("-")[0])


def first_entries_past(client: redis.Redis, last_ids: dict[str, str]) -> dict[str, int]:
    """Stream → its first entry (ms), for each of `last_ids` (stream → the last entry read) whose first entry
    lies after the one read: what was between is gone. One round trip for them all."""
    read = [stream for stream, last in last_ids.items() if entry_ms(last)]  # never read: nothing can be skipped
    if not read:
        return {}
    pipe = client.pipeline(transaction=False)
    for stream in read:
        pipe.xrange(stream, count=1)
    return {stream: entry_ms(first[0][0]) for stream, first in zip(read, pipe.execute())
            if first and entry_ms(first[0][0]) > entry_ms(last_ids[stream])}


def hours_between(root: str, after_ms: int, before_ms: int) -> tuple[list[Bar], list[datetime]]:
    """Hourly bars of `root` strictly between the two bar starts, from the bar store, and the hours in
    which its market traded that the store has no bar for."""
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    before = datetime.fromtimestamp(before_ms / 1000, UTC)
    rows = StoredBar.objects.filter(root=root, timeframe="1h", ts__gt=after, ts__lt=before).order_by("ts")
    bars = [Bar(root, row.contract, "1h", row.ts.astimezone(UTC), row.open, row.high, row.low, row.close, row.volume,
                row.trades) for row in rows]
    have = {b.ts for b in bars}
    missing, hour = [], after + HOUR
    while hour < before:
        if hour not in have and (is_trading(root, hour) or is_trading(root, hour + HOUR - timedelta(minutes=1))):
            missing.append(hour)
        hour += HOUR
    return bars, missing
