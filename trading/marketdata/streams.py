"""Bar streams in Redis: one capped stream per root and timeframe, entry id = bar start in ms (and one
per contract still held after its roll, strategies.bars.HeldBar, named by the contract).

Using the bar time as the entry id makes a duplicate bar impossible (Redis refuses an id not
above the last one) and lets a worker resume exactly after the last bar it processed.
"""
from __future__ import annotations

import hashlib
import logging
from collections import deque

import redis

from strategies.bars import Bar, BarError
from trading.marketdata.lease import LeaseLost
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

    `flush(wait=False)` sends the call and leaves its answer to be read later, so the hub builds bars
    while Redis writes the last ones: up to MAX_IN_FLIGHT calls wait for their answers on the
    publisher's one connection (read as they come, never waited for until that many are out). Calls
    on one connection run in order, and calls whose answers are lost (Redis went away) are sent
    again: bars they did write come back as duplicates, none is lost.

    With `lease` (trading.marketdata.lease.HubLease) each call writes only while that lease is this hub's,
    checked inside the same script: a call refused so raises LeaseLost (unless the lease was free and is taken
    back: its bars are then held and sent again), and nothing of it is written.
    """

    CHUNK = 1000  # bars per script call (Redis runs a script atomically: keep each call short)
    MAX_IN_FLIGHT = 8  # calls sent and not answered yet, at most

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
        self._in_flight: deque = deque()  # (bars, keys, args) of the calls not answered yet, oldest first
        self._conn = None  # the connection they were sent on

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

    def flush(self, force: bool = False, wait: bool = True, *, again: bool = True) -> int:
        """Write what is buffered (and a new watermark); returns how many bars were written, as far as
        Redis has answered (with wait=False, answers not there yet are read by a later flush)."""
        written = self._collect(block=False)
        bars, self.pending = self.pending, []
        if bars or force:
            for start in range(0, max(len(bars), 1), self.CHUNK):
                if len(self._in_flight) >= self.MAX_IN_FLIGHT:
                    written += self._collect_one()
                if self.pending or not self._send(bars[start:start + self.CHUNK],
                                                  self.watermark_ns if start + self.CHUNK >= len(bars) else 0):
                    # a call failed: its bars (and every later one's) are held, these go behind them
                    self.pending += bars[start:]
                    return written
        if wait:
            written += self._collect(block=True)
            if self.pending and not self.failures and again:  # refused while the lease was free, taken back
                written += self.flush(wait=True, again=False)
        return written

    def _send(self, bars: list[Bar], watermark_ns: int) -> bool:
        keys, args, bars = _bar_call(bars, watermark_ns, self.lease)  # bars in the order of the call's answers
        try:
            if self._conn is None:
                self._conn = self.client.connection_pool.get_connection()
            self._conn.send_command("EVALSHA", _WRITE_BARS_SHA, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)  # the calls out before it are held; its own bars are the caller's to hold
            return False
        self._in_flight.append((bars, keys, args))
        return True

    def _collect(self, block: bool) -> int:
        """Read the answers that are there (`block`: every answer, waiting for them)."""
        written = 0
        while self._in_flight and self._conn is not None:
            if not block and len(self._in_flight) < self.MAX_IN_FLIGHT:
                try:
                    if self._conn._sock is not None and not self._conn.can_read(timeout=0):
                        break
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    pass  # the read below finds what is wrong
            written += self._collect_one()
        return written

    def _collect_one(self) -> int:
        """Read the oldest call's answer; when there is none (the connection lost), every call out is held."""
        if getattr(self._conn, "_sock", None) is None:  # dropped under the calls: their answers are gone
            self._lost(redis.ConnectionError("connection closed with calls unanswered"))
            return 0
        bars, keys, args = self._in_flight[0]
        try:
            try:
                results = self._conn.read_response()
            except redis.exceptions.NoScriptError:  # a restarted Redis has no scripts: send it whole
                results = self.client.eval(_WRITE_BARS, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)
            return 0
        except redis.ResponseError as exc:
            if not str(exc).startswith("FENCED"):
                self._in_flight.popleft()
                raise
            self._lost(exc, quiet=True)
            log.error("bars refused: this hub does not hold the feed's lease (%s); %d bars held", exc, len(self.pending))
            self.lease.renew(force=True)  # LeaseLost when another hub holds it; taken back when it was free
            if not self.lease.held:
                raise LeaseLost(f"this hub no longer holds the feed ({exc})")
            return 0
        self._in_flight.popleft()
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

    def _lost(self, exc: Exception, quiet: bool = False) -> None:
        """The calls out get no (more) answers: their bars go back in front of the buffer, in order, and the
        connection is dropped (a later call takes a new one)."""
        held = [bar for bars, _, _ in self._in_flight for bar in bars]
        self._in_flight.clear()
        self.pending = held + self.pending
        if self._conn is not None:
            self._conn.disconnect()
            self.client.connection_pool.release(self._conn)
            self._conn = None
        if not quiet:
            self._failed(len(self.pending), exc)

    def _failed(self, held: int, exc: Exception) -> None:
        self.failures += 1
        if self.failures <= 5 or self.failures % 100 == 0:
            log.error("redis unavailable, %d bars held for the next flush (%s)", held, exc.__class__.__name__)


# KEYS: streams, then 'last' keys, then the watermark key, then the hub's lease key.
# ARGV: #streams, #last keys, watermark ms ('' for none), the lease holder's token ('' for no check), MAXLEN per
# stream, the stream number of each 'last' key, then per stream in order: its number of bars and (entry id,
# message) per bar. Returns per bar, stream after stream, 1 (written), 0 (duplicate) or an error; with a token
# that is not the lease's holder, an error and no write. Each stream is trimmed once per call, after its bars
# (what MAXLEN ~ on every XADD did, without its arguments and check per bar). A 'last' key takes the newest bar
# of its stream written by this call (a replay's older bars leave it alone).
_WRITE_BARS = """
local S, L = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[4] ~= '' then
  local holder = redis.call('GET', KEYS[S + L + 2])
  if holder ~= ARGV[4] then return redis.error_reply('FENCED holder=' .. (holder or '(none)')) end
end
local out, newest, n = {}, {}, 0
local i = 5 + S + L
for s = 1, S do
  local k, count, wrote = KEYS[s], tonumber(ARGV[i]), nil
  i = i + 1
  for _ = 1, count do
    local r = redis.pcall('XADD', k, ARGV[i], 'bar', ARGV[i + 1])
    n = n + 1
    if type(r) == 'table' and r.err then
      if string.find(r.err, 'equal or smaller', 1, true) then out[n] = 0 else out[n] = r.err end
    else
      out[n] = 1
      wrote = ARGV[i + 1]
    end
    i = i + 2
  end
  if wrote then
    newest[s] = wrote
    redis.call('XTRIM', k, 'MAXLEN', '~', ARGV[4 + s])
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


def _bar_call(bars: list[Bar], watermark_ns: int, lease=None) -> tuple[list[str], list, list[Bar]]:
    """Keys and arguments of one _WRITE_BARS call, and the bars in the order its answers come: stream by stream
    (in the order of each stream's first bar), each stream's bars in their order, its newest minute as its
    'last' bar, then the watermark (monotone), checked against `lease` (its key and token) when given. Readers
    see a call's writes all at once (a script is atomic), so only the order within a stream matters."""
    groups: dict[tuple[str, str], list[Bar]] = {}
    for bar in bars:
        group = groups.get((bar.stream, bar.timeframe))  # a held contract's stream is its own (HeldBar)
        if group is None:
            group = groups[(bar.stream, bar.timeframe)] = []
        group.append(bar)
    ordered: list[Bar] = []
    entries: list = []
    last: list[tuple[str, int]] = []  # (name, number of its 1m stream)
    for number, ((name, timeframe), group) in enumerate(groups.items(), 1):
        if timeframe == "1m":
            last.append((name, number))
        entries.append(len(group))
        for bar in group:
            entries += (entry_id(bar), bar.to_message())
        ordered += group
    keys = [stream_key(root, tf) for root, tf in groups] + [key("last", name) for name, _ in last]
    keys += [key("watermark", "1h"), lease.key if lease else key("lock", "hub", "-")]
    args = [len(groups), len(last), str(watermark_ns // 1_000_000) if watermark_ns else "",
            lease.token if lease else "", *(MAXLEN[tf] for _, tf in groups), *(n for _, n in last), *entries]
    return keys, args, ordered


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
    keys, args, _ = _bar_call([], hour_ns)
    (client or get_redis()).eval(_WRITE_BARS, len(keys), *keys, *args)


def watermark_ms(client: redis.Redis | None = None) -> int:
    value = (client or get_redis()).get(key("watermark", "1h"))
    return int(value) if value else 0
