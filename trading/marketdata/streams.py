"""Bar streams in Redis: one capped stream per root and timeframe, entry id = bar start in ms (and one
per contract still held after its roll, strategies.bars.HeldBar, named by the contract).

Using the bar time as the entry id makes a duplicate bar impossible (Redis refuses an id not
above the last one) and lets a worker resume exactly after the last bar it processed.
"""
from __future__ import annotations

import hashlib
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
        client.xadd(stream_key(bar.stream, bar.timeframe), {"bar": bar.to_message()}, id=entry_id(bar),
                    maxlen=MAXLEN[bar.timeframe], approximate=True)
    except redis.ResponseError as exc:
        if "equal or smaller" in str(exc):
            return False
        raise
    if bar.timeframe == "1m":
        client.set(key("last", bar.stream), bar.to_message())
    return True


class BarPublisher:
    """The hub's writer: bars are buffered and written by one Lua call per flush (per CHUNK bars).

    The hub flushes whenever its record queue is drained (so live bars leave at once) and the
    buffer flushes itself every `batch` bars; the hourly watermark is written in the same call
    after every bar before it, so a worker never decides an hour with a bar missing.
    Duplicates (a bar already in its stream after a reconnect) are counted, never written.
    One script call instead of a pipeline of XADDs: the hub spent most of its time per bar in the
    client packing commands; the script does the same writes inside Redis.

    `flush(wait=False)` sends the call and leaves its reply to be read by the next flush, so
    the hub builds bars while Redis writes the last ones. Calls on the one connection run in
    order, and a call whose reply is lost (Redis went away) is sent again: bars it did write come
    back as duplicates, none is lost.

    With `lease` (trading.marketdata.lease.HubLease) each call writes only while that lease is this hub's,
    checked inside the same script: a call refused so raises LeaseLost (unless the lease was free and is taken
    back: its bars are then held and sent again), and nothing of it is written.
    """

    CHUNK = 1000  # bars per script call (Redis runs a script atomically: keep each call short)

    def __init__(self, client: redis.Redis | None = None, *, batch: int = 500, on_fresh=None, on_duplicate=None,
                 lease=None):
        self.client = client or get_redis()
        self.lease = lease
        self.batch = batch
        self.on_fresh = on_fresh or (lambda bar: None)  # called for each bar written, after the write
        self.on_duplicate = on_duplicate or (lambda bar: None)  # each bar its stream already held (Hub.duplicate)
        self.pending: list[Bar] = []
        self.watermark_ns = 0
        self.failures = 0
        self._in_flight: tuple | None = None  # (bars, keys, args, connection) of a call not yet answered

    def add(self, bar: Bar) -> None:
        self.pending.append(bar)
        if len(self.pending) >= self.batch and (not self.failures or len(self.pending) % self.batch == 0):
            self.flush(wait=False)

    def watermark(self, hour_ns: int) -> None:
        self.watermark_ns = max(self.watermark_ns, hour_ns)
        self.flush(force=True, wait=False)

    def send(self) -> int:
        """What the hub calls when its feed is drained: write without waiting for the answer."""
        return self.flush(wait=False)

    def flush(self, force: bool = False, wait: bool = True) -> int:
        """Write what is buffered (and a new watermark); returns how many bars were written, as
        far as Redis has answered (with wait=False the newest call's answer is read next time)."""
        written = self._collect()
        bars, self.pending = self.pending, []
        if not bars and not force:
            return written
        for start in range(0, max(len(bars), 1), self.CHUNK):
            chunk = bars[start:start + self.CHUNK]
            last = start + self.CHUNK >= len(bars)
            if not self._send(chunk, self.watermark_ns if last else 0):
                self.pending = bars[start:] + self.pending
                return written
            if wait or not last:
                written += self._collect()
                if self.pending:  # that call failed: its bars are held, the rest goes behind them
                    self.pending += bars[start + self.CHUNK:]
                    return written
        return written

    def _send(self, bars: list[Bar], watermark_ns: int) -> bool:
        keys, args = _bar_call(bars, watermark_ns, self.lease)
        pool = self.client.connection_pool
        conn = None
        try:
            conn = pool.get_connection()
            conn.send_command("EVALSHA", _WRITE_BARS_SHA, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if conn is not None:
                conn.disconnect()
                pool.release(conn)
            self._failed(len(bars) + len(self.pending), exc)
            return False
        self._in_flight = (bars, keys, args, conn)
        return True

    def _collect(self) -> int:
        """Read the answer to the call in flight; its bars go back to the buffer if there is none."""
        if self._in_flight is None:
            return 0
        bars, keys, args, conn = self._in_flight
        self._in_flight = None
        try:
            try:
                results = conn.read_response()
            except redis.exceptions.NoScriptError:  # a restarted Redis has no scripts: send it whole
                results = self.client.eval(_WRITE_BARS, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            conn.disconnect()
            self.pending = bars + self.pending
            self._failed(len(self.pending), exc)
            return 0
        except redis.ResponseError as exc:
            if not str(exc).startswith("FENCED"):
                raise
            self.pending = bars + self.pending
            log.error("bars refused: this hub does not hold the feed's lease (%s); %d bars held", exc, len(self.pending))
            self.lease.renew(force=True)  # LeaseLost when another hub holds it; taken back when it was free
            return 0
        finally:
            self.client.connection_pool.release(conn)
        if self.failures:
            log.warning("redis back: %d held bars written after %d failed flushes", len(bars), self.failures)
            self.failures = 0
        written, errors = 0, []
        for bar, result in zip(bars, results):
            if result == 1:
                written += 1
                self.on_fresh(bar)
            elif result == 0:
                self.on_duplicate(bar)
            else:
                errors.append(f"{bar.symbol} {bar.timeframe} {bar.ts:%Y-%m-%d %H:%M}: "
                              f"{result.decode() if isinstance(result, bytes) else result}")
        if errors:
            raise redis.ResponseError(f"{len(errors)} bar(s) refused by Redis, first: {errors[0]}")
        return written

    def _failed(self, held: int, exc: Exception) -> None:
        self.failures += 1
        if self.failures <= 5 or self.failures % 100 == 0:
            log.error("redis unavailable, %d bars held for the next flush (%s)", held, exc.__class__.__name__)


# KEYS: streams, then 'last' keys, then the watermark key, then the hub's lease key.
# ARGV: #streams, #last keys, watermark ms ('' for none), the lease holder's token ('' for no check), MAXLEN per
# stream, the stream number of each 'last' key, then (stream number, entry id, message) per bar. Returns per bar
# 1 (written), 0 (duplicate) or an error; with a token that is not the lease's holder, an error and no write.
# A 'last' key takes the newest bar of its stream written by this call (a replay's older bars leave it alone).
_WRITE_BARS = """
local S, L = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[4] ~= '' then
  local holder = redis.call('GET', KEYS[S + L + 2])
  if holder ~= ARGV[4] then return redis.error_reply('FENCED holder=' .. (holder or '(none)')) end
end
local out, newest = {}, {}
for i = 5 + S + L, #ARGV, 3 do
  local s = tonumber(ARGV[i])
  local r = redis.pcall('XADD', KEYS[s], 'MAXLEN', '~', ARGV[4 + s], ARGV[i + 1], 'bar', ARGV[i + 2])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'equal or smaller', 1, true) then out[#out + 1] = 0 else out[#out + 1] = r.err end
  else
    out[#out + 1] = 1
    newest[s] = ARGV[i + 2]
  end
end
for j = 1, L do
  local m = newest[tonumber(ARGV[4 + S + j])]
  if m then redis.call('SET', KEYS[S + j], m) end
end
if ARGV[3] ~= '' then
  local v = tonumber(redis.call('GET', KEYS[S + L + 1]) or '0')
  if tonumber(ARGV[3]) > v then redis.call('SET', KEYS[S + L + 1], ARGV[3]) end
end
return out
"""
_WRITE_BARS_SHA = hashlib.sha1(_WRITE_BARS.encode()).hexdigest()


def _bar_call(bars: list[Bar], watermark_ns: int, lease=None) -> tuple[list[str], list]:
    """Keys and arguments of one _WRITE_BARS call: the bars in order, each stream's newest minute as its
    'last' bar, then the watermark (monotone), checked against `lease` (its key and token) when given."""
    streams: dict[tuple[str, str], int] = {}
    last: dict[str, int] = {}  # name → number of its 1m stream
    entries: list = []
    for bar in bars:
        name = bar.stream  # the root's stream; a held contract's own (strategies.bars.HeldBar)
        number = streams.get((name, bar.timeframe))
        if number is None:
            number = streams[(name, bar.timeframe)] = len(streams) + 1
            if bar.timeframe == "1m":
                last[name] = number
        entries += (number, entry_id(bar), bar.to_message())
    keys = [stream_key(root, tf) for root, tf in streams] + [key("last", root) for root in last]
    keys += [key("watermark", "1h"), lease.key if lease else key("lock", "hub", "-")]
    args = [len(streams), len(last), str(watermark_ns // 1_000_000) if watermark_ns else "",
            lease.token if lease else "", *(MAXLEN[tf] for _, tf in streams), *last.values(), *entries]
    return keys, args


def last_bar_ms(root: str, timeframe: str = "1m", client: redis.Redis | None = None) -> int | None:
    """Start (ms) of the newest bar of a stream, None when it is empty."""
    newest = (client or get_redis()).xrevrange(stream_key(root, timeframe), count=1)
    return int(newest[0][0].split("-")[0]) if newest else None


def last_minute(name: str, client: redis.Redis | None = None) -> Bar | None:
    """The newest 1-minute bar of a root's front (or of a held contract, by its name): the market's last
    price and time; None when there is none or Redis cannot be read."""
    try:
        message = (client or get_redis()).get(key("last", name))
        return Bar.from_message(message) if message else None
    except (redis.RedisError, BarError) as exc:
        log.warning("last bar unreadable name=%s: %s", name, exc.__class__.__name__)
        return None


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
    """Every hourly bar that ends at or before `hour_ns` is in the streams (monotone): the bar
    writer's script with no bars."""
    keys, args = _bar_call([], hour_ns)
    (client or get_redis()).eval(_WRITE_BARS, len(keys), *keys, *args)


def watermark_ms(client: redis.Redis | None = None) -> int:
    value = (client or get_redis()).get(key("watermark", "1h"))
    return int(value) if value else 0
