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


class BarPublisher:
    """The hub's writer: bars are buffered and written in one pipelined round trip per flush.

    The hub flushes whenever its record queue is drained (so live bars leave at once) and the
    buffer flushes itself every `batch` bars; the hourly watermark is written only after every
    bar before it (one ordered pipeline), so a worker never decides an hour with a bar missing.
    Duplicates (a bar already in its stream after a reconnect) are counted, never written.
    """

    def __init__(self, client: redis.Redis | None = None, *, batch: int = 500, on_fresh=None, counters=None):
        self.client = client or get_redis()
        self.batch = batch
        self.on_fresh = on_fresh or (lambda bar: None)  # called for each bar written, after the write
        self.counters = counters
        self.pending: list[Bar] = []
        self.watermark_ns = 0
        self.failures = 0

    def add(self, bar: Bar) -> bool:
        self.pending.append(bar)
        if len(self.pending) >= self.batch and (not self.failures or len(self.pending) % self.batch == 0):
            self.flush()
        return True

    def watermark(self, hour_ns: int) -> None:
        self.watermark_ns = max(self.watermark_ns, hour_ns)
        self.flush(force=True)

    def flush(self, force: bool = False) -> int:
        """Write what is buffered (and a new watermark); returns how many bars were written."""
        bars, self.pending = self.pending, []
        if not bars and not force:
            return 0
        pipe = self.client.pipeline(transaction=False)
        last: dict[str, str] = {}
        for bar in bars:
            message = bar.to_message()
            pipe.xadd(stream_key(bar.symbol, bar.timeframe), {"bar": message}, id=entry_id(bar),
                      maxlen=MAXLEN[bar.timeframe], approximate=True)
            if bar.timeframe == "1m":
                last[bar.symbol] = message
        for symbol, message in last.items():
            pipe.set(key("last", symbol), message)
        if self.watermark_ns:
            _queue_watermark(pipe, self.watermark_ns)
        try:
            results = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis away: keep every bar, in order, for the next flush; nothing is lost or reordered.
            self.pending = bars + self.pending
            self.failures += 1
            if self.failures <= 5 or self.failures % 100 == 0:
                log.error("redis unavailable, %d bars held for the next flush (%s)", len(self.pending),
                          exc.__class__.__name__)
            return 0
        if self.failures:
            log.warning("redis back: %d held bars written after %d failed flushes", len(bars), self.failures)
            self.failures = 0
        written = 0
        for bar, result in zip(bars, results):
            if isinstance(result, redis.ResponseError):
                if "equal or smaller" not in str(result):
                    raise result
                if self.counters is not None:
                    self.counters["duplicate_bars"] += 1
                    self.counters[f"bars_{bar.timeframe}"] -= 1
                continue
            written += 1
            self.on_fresh(bar)
        for result in results[len(bars):]:
            if isinstance(result, Exception):
                raise result
        return written


def last_bar_ms(root: str, timeframe: str = "1m", client: redis.Redis | None = None) -> int | None:
    """Start (ms) of the newest bar of a stream, None when it is empty."""
    newest = (client or get_redis()).xrevrange(stream_key(root, timeframe), count=1)
    return int(newest[0][0].split("-")[0]) if newest else None


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


_WATERMARK = ("local v = tonumber(redis.call('GET', KEYS[1]) or '0') "
              "if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 0")


def _queue_watermark(client, hour_ns: int):
    return client.eval(_WATERMARK, 1, key("watermark", "1h"), str(hour_ns // 1_000_000))


def set_watermark(hour_ns: int, client: redis.Redis | None = None) -> None:
    """Every hourly bar that ends at or before `hour_ns` is in the streams (monotone)."""
    _queue_watermark(client or get_redis(), hour_ns)


def watermark_ms(client: redis.Redis | None = None) -> int:
    value = (client or get_redis()).get(key("watermark", "1h"))
    return int(value) if value else 0
