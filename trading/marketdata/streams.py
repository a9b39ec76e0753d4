"""Bar streams in Redis: one capped stream per root and timeframe, entry id = bar start in ms.

Using the bar time as the entry id makes a duplicate bar impossible (Redis refuses an id not
above the last one) and lets a worker resume exactly after the last bar it processed.
"""
from __future__ import annotations

import logging

import redis

from strategies.bars import Bar, BarError
from trading.redis_client import get_redis, key

log = logging.getLogger(__name__)
MAXLEN = {"1m": 20_000, "1h": 5_000, "1d": 1_000}


def stream_key(root: str, timeframe: str) -> str:
    return key("bars", root, timeframe)


def entry_id(bar: Bar) -> str:
    return f"{int(bar.ts.timestamp() * 1000)}-0"


def publish(bar: Bar, client: redis.Redis | None = None) -> bool:
    """Append a bar; False (and nothing written) when that bar or a later one is already there."""
    client = client or get_redis()
    try:
        client.xadd(stream_key(bar.symbol, bar.timeframe), {"bar": bar.to_message()}, id=entry_id(bar),
                    maxlen=MAXLEN[bar.timeframe], approximate=True)
    except redis.ResponseError as exc:
        if "equal or smaller" in str(exc):
            return False
        raise
    if bar.timeframe == "1m":
        client.set(key("last", bar.symbol), bar.to_message())
    return True


def read_bars(streams: dict[str, str], *, block_ms: int | None = None, count: int = 500,
              client: redis.Redis | None = None) -> list[tuple[str, str, Bar | None, str]]:
    """Read after the given ids {stream key: last id}; returns (stream, id, bar or None, error)."""
    client = client or get_redis()
    out = []
    for stream, entries in client.xread(streams, count=count, block=block_ms) or []:
        for entry, fields in entries:
            try:
                out.append((stream, entry, Bar.from_message(fields.get("bar", "")), ""))
            except BarError as exc:
                log.error("garbled bar stream=%s id=%s error=%s", stream, entry, exc)
                out.append((stream, entry, None, str(exc)))
    return out


def set_watermark(hour_ns: int, client: redis.Redis | None = None) -> None:
    """Every hourly bar that ends at or before `hour_ns` is in the streams (monotone)."""
    client = client or get_redis()
    client.eval("local v = tonumber(redis.call('GET', KEYS[1]) or '0') "
                "if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 0",
                1, key("watermark", "1h"), str(hour_ns // 1_000_000))


def watermark_ms(client: redis.Redis | None = None) -> int:
    value = (client or get_redis()).get(key("watermark", "1h"))
    return int(value) if value else 0
