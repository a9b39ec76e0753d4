"""Bars: the message format between hub and workers, and aggregation trades → 1m → 1h → CME day.

The streaming builders (used live by the hub and worker) and the batch functions (used by the
backtest and tests) must give identical bars; a minute without trades makes no bar (never a
flat fake one). A bar never completes before time has passed its end.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from strategies.calendar import session_close, session_date_ns, session_dates

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

UTC = timezone.utc
TIMEFRAME_SECONDS = {"1m": 60, "1h": 3600}
NS = 1_000_000_000


# What Bar.to_message reuses: the message's start per (symbol, contract, timeframe), the date per
# day since 1970 and "HH:MM" per minute of the day.
_HEADS: dict[tuple[str, str, str], str] = {}
_DAYS: dict[int, str] = {}
_HHMM = [f"{m // 60:02d}:{m % 60:02d}" for m in range(1440)]
_PLAIN = (float, float, float, float, int, int)
_PRICES: dict[float, str] = {}  # price → repr(price): a feed's prices repeat, and a float's repr is costly


def _price(p: float) -> str:
    """repr(p), remembered."""
    text = _PRICES.get(p)
    if text is None:
        text = repr(p)
        if p:  # 0.0 and -0.0 are one key with two texts: never remembered
            if len(_PRICES) >= 100_000:
                _PRICES.clear()
            _PRICES[p] = text
    return text


class BarError(ValueError):
    """A bar message or row that cannot be a bar; the message says what is wrong."""


@dataclass(frozen=True)
class Bar:
    symbol: str  # the root, e.g. CL
    contract: str  # e.g. CLZ6 (the front month the bar was built from)
    timeframe: str  # '1m' | '1h' | '1d'
    ts: datetime  # bar start, timezone-aware UTC (for '1d': 00:00 UTC of the session date)
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int

    @property
    def stream(self) -> str:
        """The name of the stream the bar goes to: its root's (HeldBar: its contract's)."""
        return self.symbol

    @property
    def end(self) -> datetime:
        if self.timeframe == "1d":
            return session_close(self.ts.date())
        return self.ts + timedelta(seconds=TIMEFRAME_SECONDS[self.timeframe])

    def to_message(self) -> str:
        """Compact JSON, exactly as `json.dumps(..., separators=(",", ":"))` writes it. Spelled out
        by hand for the usual bar (float prices, int counts, a whole-second UTC time): the hub
        encodes every bar, and json.dumps with strftime was its costliest step per bar."""
        o, h, l, c = self.open, self.high, self.low, self.close
        seconds = self.ts.timestamp()
        if (type(o), type(h), type(l), type(c), type(self.volume), type(self.trades)) != _PLAIN or \
                not math.isfinite(o + h + l + c) or seconds % 60 or self.ts.microsecond:
            return json.dumps({"symbol": self.symbol, "contract": self.contract, "timeframe": self.timeframe,
                               "ts": self.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "open": o, "high": h,
                               "low": l, "close": c, "volume": self.volume, "trades": self.trades},
                              separators=(",", ":"))
        head = _HEADS.get((self.symbol, self.contract, self.timeframe))
        if head is None:
            if len(_HEADS) > 10_000:
                _HEADS.clear()
            head = _HEADS[(self.symbol, self.contract, self.timeframe)] = (
                f'{{"symbol":{json.dumps(self.symbol)},"contract":{json.dumps(self.contract)},'
                f'"timeframe":{json.dumps(self.timeframe)},"ts":"')
        minute = int(seconds) // 60
        day = _DAYS.get(minute // 1440)
        if day is None:
            day = _DAYS[minute // 1440] = datetime.fromtimestamp(minute // 1440 * 86400, UTC).strftime("%Y-%m-%dT")
        try:
            texts = _PRICES[o], _PRICES[h], _PRICES[l], _PRICES[c]
        except KeyError:
            texts = tuple(map(_price, (o, h, l, c)))
        return (f'{head}{day}{_HHMM[minute % 1440]}:00Z","open":{texts[0]},"high":{texts[1]},"low":{texts[2]},'
                f'"close":{texts[3]},"volume":{self.volume},"trades":{self.trades}}}')

    @classmethod
    def make(cls, symbol: str, contract: str, timeframe: str, ts: datetime, open: float, high: float, low: float,
             close: float, volume: int, trades: int) -> "Bar":
        """A bar from trusted parts (the builders below), without the frozen dataclass's per-field
        `object.__setattr__`: the same object (its fields' dict set whole), built in a fraction of the time."""
        bar = object.__new__(cls)
        object.__setattr__(bar, "__dict__", {"symbol": symbol, "contract": contract, "timeframe": timeframe, "ts": ts,
                                             "open": open, "high": high, "low": low, "close": close, "volume": volume,
                                             "trades": trades})
        return bar

    @classmethod
    def from_message(cls, message: str | bytes | dict) -> "Bar":
        """Parse and validate; BarError names the problem (never a half-valid bar)."""
        try:
            data = json.loads(message) if isinstance(message, (str, bytes)) else dict(message)
        except (TypeError, ValueError) as exc:
            raise BarError(f"not JSON: {exc}") from None
        missing = [k for k in ("symbol", "contract", "timeframe", "ts", "open", "high", "low", "close", "volume",
                               "trades") if k not in data]
        if missing:
            raise BarError(f"missing {', '.join(missing)}")
        try:
            ts = datetime.fromisoformat(str(data["ts"]).replace("Z", "+00:00"))
        except ValueError:
            raise BarError(f"bad ts {data['ts']!r}") from None
        if ts.tzinfo is None:
            raise BarError(f"ts {data['ts']!r} has no time zone")
        try:
            bar = cls(symbol=str(data["symbol"]), contract=str(data["contract"]), timeframe=str(data["timeframe"]),
                      ts=ts.astimezone(UTC), open=float(data["open"]), high=float(data["high"]),
                      low=float(data["low"]), close=float(data["close"]), volume=int(data["volume"]),
                      trades=int(data["trades"]))
        except (TypeError, ValueError) as exc:
            raise BarError(f"bad value: {exc}") from None
        validate(bar)
        return bar


class HeldBar(Bar):
    """A bar of a contract that is no longer the front but still held (a position opened before its roll):
    published under its contract's own stream, so the position is managed on its own prices."""

    @property
    def stream(self) -> str:
        return self.contract

    @classmethod
    def of(cls, bar: Bar) -> "HeldBar":
        return cls.make(bar.symbol, bar.contract, bar.timeframe, bar.ts, bar.open, bar.high, bar.low, bar.close,
                        bar.volume, bar.trades)


def validate(bar: Bar) -> None:
    if bar.timeframe not in ("1m", "1h", "1d"):
        raise BarError(f"unknown timeframe {bar.timeframe!r}")
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) and p > 0 for p in prices):
        raise BarError(f"{bar.symbol} {bar.ts:%Y-%m-%d %H:%M}: prices must be finite and > 0, got {prices}")
    if bar.high < bar.low or not (bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high):
        raise BarError(f"{bar.symbol} {bar.ts:%Y-%m-%d %H:%M}: inconsistent OHLC {prices}")
    if bar.volume < 0 or bar.trades < 0:
        raise BarError(f"{bar.symbol} {bar.ts:%Y-%m-%d %H:%M}: negative volume or trade count")


# --- streaming -------------------------------------------------------------------------------
# Builders keep their open bar as a list [contract, open, high, low, close, volume, trades] and
# make a Bar only when it completes (a frozen Bar per update was most of the hub's cost per bar).
# `due_ns`: the time from which `close_through` completes the open bar (NEVER when none is open),
# so the hub checks a number instead of calling every builder each minute.
NEVER = 2**63 - 1
HOUR_NS = 3600 * NS


class MinuteBarBuilder:
    """Trades of one root (front contract only, filtered upstream) → completed 1-minute bars."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self._minute: int | None = None  # minute start, ns
        self._bar: list | None = None  # [contract, o, h, l, c, volume, trades]
        self.last_ts = -1
        self.due_ns = NEVER

    def push(self, ts_ns: int, price: float, size: int, contract: str) -> list[Bar]:
        """Add one trade; returns bars completed by it. A trade older than the open minute is refused."""
        return self.push_minute(ts_ns - ts_ns % (60 * NS), ts_ns, price, price, price, price, size, 1, contract)

    def push_minute(self, minute: int, last_ts: int, first: float, high: float, low: float, last: float,
                    volume: int, trades: int, contract: str) -> list[Bar]:
        """Add `trades` trades of one minute at once (first/high/low/last price, summed volume, newest
        time `last_ts`): the same bars as pushing them one by one."""
        out = []
        if self._minute is not None and minute != self._minute:
            if minute < self._minute:
                raise BarError(f"{self.symbol}: trade at {last_ts} is older than the open minute {self._minute}")
            out = self.close_through(minute)
        if last_ts > self.last_ts:
            self.last_ts = last_ts
        b = self._bar
        if b is None:
            self._minute = minute
            self.due_ns = minute + 60 * NS
            self._bar = [contract, first, high, low, last, volume, trades]
        else:
            b[0], b[4], b[5], b[6] = contract, last, b[5] + volume, b[6] + trades
            if high > b[2]:
                b[2] = high
            if low < b[3]:
                b[3] = low
        return out

    def close_through(self, ts_ns: int) -> list[Bar]:
        """Complete the open minute if `ts_ns` is at or past its end."""
        if ts_ns < self.due_ns:
            return []
        c, o, h, l, cl, v, n = self._bar
        bar = Bar.make(self.symbol, c, "1m", datetime.fromtimestamp(self._minute // NS, UTC), o, h, l, cl, v, n)
        self._bar = self._minute = None
        self.due_ns = NEVER
        return [bar]

    @property
    def open_minute(self) -> int | None:
        return self._minute


def _start(bar: Bar) -> list:
    return [bar.contract, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades]


def _add(acc: list, bar: Bar) -> None:
    acc[0], acc[4], acc[5], acc[6] = bar.contract, bar.close, acc[5] + bar.volume, acc[6] + bar.trades
    if bar.high > acc[2]:
        acc[2] = bar.high
    if bar.low < acc[3]:
        acc[3] = bar.low


def _ns(ts: datetime | int) -> int:
    return ts if isinstance(ts, int) else int(ts.timestamp()) * NS


class HourlyAggregator:
    """1-minute bars → hourly bars stamped at the hour's start (UTC)."""

    def __init__(self):
        self._acc: list | None = None
        self._hour = 0  # ns
        self._symbol = ""
        self.due_ns = NEVER

    def push(self, bar: Bar, start_ns: int | None = None) -> list[Bar]:
        """Add a minute bar (`start_ns`: its start in ns, when the caller has it)."""
        start = _ns(bar.ts) if start_ns is None else start_ns
        hour = start - start % HOUR_NS
        out = []
        if self._acc is not None and hour > self._hour:
            out = self.close_through(hour)
        if self._acc is None:
            self._acc, self._hour, self._symbol, self.due_ns = _start(bar), hour, bar.symbol, hour + HOUR_NS
        elif hour == self._hour:
            _add(self._acc, bar)
        else:
            raise BarError(f"{bar.symbol}: minute bar {bar.ts} is older than the open hour "
                           f"{datetime.fromtimestamp(self._hour // NS, UTC)}")
        return out

    def close_through(self, ts: datetime | int) -> list[Bar]:
        """Complete the open hour if `ts` (a datetime or ns) is at or past its end."""
        if _ns(ts) < self.due_ns:
            return []
        done = Bar.make(self._symbol, self._acc[0], "1h", datetime.fromtimestamp(self._hour // NS, UTC),
                        *self._acc[1:])
        self._acc = None
        self.due_ns = NEVER
        return [done]


class DailyAggregator:
    """1-minute or hourly bars → CME trading-day bars (ts = 00:00 UTC of the session date)."""

    def __init__(self):
        self._acc: list | None = None
        self._day: date | None = None
        self._symbol = ""
        self.due_ns = NEVER  # the session's close (16:00 Chicago)

    def push(self, bar: Bar, start_ns: int | None = None, day: date | None = None) -> list[Bar]:
        """Add a bar (`start_ns`, `day`: its start in ns and session date, when the caller has them)."""
        if day is None:
            day = session_date_ns(_ns(bar.ts) if start_ns is None else start_ns)
        out = []
        if self._day is not None and day > self._day:
            out = self.close_through(bar.ts, force=True)
        if self._acc is None:
            self._acc, self._day, self._symbol = _start(bar), day, bar.symbol
            self.due_ns = int(session_close(day).timestamp()) * NS
        elif day == self._day:
            _add(self._acc, bar)
        else:
            raise BarError(f"{bar.symbol}: bar {bar.ts} belongs to an earlier session than {self._day}")
        return out

    def close_through(self, ts: datetime | int, force: bool = False) -> list[Bar]:
        """Complete the open session if `ts` (a datetime or ns) is at or past its close (or `force`)."""
        if self._acc is None or (not force and _ns(ts) < self.due_ns):
            return []
        day = self._day
        done = Bar.make(self._symbol, self._acc[0], "1d", datetime(day.year, day.month, day.day, tzinfo=UTC),
                        *self._acc[1:])
        self._acc = self._day = None
        self.due_ns = NEVER
        return [done]


# --- batch -----------------------------------------------------------------------------------
BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "trades"]


def _aggregate(frame: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    grouped = frame.assign(_key=keys).groupby("_key", sort=True)
    out = grouped.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
                      volume=("volume", "sum"), trades=("trades", "sum"))
    return out


def trades_to_minutes(ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray) -> pd.DataFrame:
    """Trades (sorted by time) → 1-minute bars; columns ts (int64 ns, minute start), OHLCV, trades."""
    import numpy as np
    import pandas as pd  # in the batch functions only: a process reading bars (the order sender) needs neither

    frame = pd.DataFrame({"open": price, "high": price, "low": price, "close": price, "volume": size,
                          "trades": np.ones(len(price), dtype=np.int64)})
    keys = np.asarray(ts_ns, dtype=np.int64) // (60 * NS) * (60 * NS)
    out = _aggregate(frame, keys)
    return out.rename_axis("ts").reset_index()


def to_hourly(minutes: pd.DataFrame) -> pd.DataFrame:
    """1-minute bars (ts int64 ns) → hourly bars stamped at the hour start."""
    import numpy as np

    keys = minutes["ts"].to_numpy(dtype=np.int64) // (3600 * NS) * (3600 * NS)
    return _aggregate(minutes, keys).rename_axis("ts").reset_index()


def to_daily(bars: pd.DataFrame) -> pd.DataFrame:
    """Intraday bars (ts int64 ns) → CME trading-day bars; ts = session date at 00:00 UTC in ns."""
    import numpy as np

    days = session_dates(bars["ts"].to_numpy(dtype=np.int64)).astype("datetime64[ns]").astype(np.int64)
    return _aggregate(bars, days).rename_axis("ts").reset_index()


def frame_from_bars(bars: list[Bar]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    return pd.DataFrame({
        "ts": np.array([int(b.ts.timestamp()) * NS for b in bars], dtype=np.int64),
        "open": [b.open for b in bars], "high": [b.high for b in bars], "low": [b.low for b in bars],
        "close": [b.close for b in bars], "volume": [b.volume for b in bars], "trades": [b.trades for b in bars]})


class StepBar:
    """One bar as the strategy step reads it (`Portfolio.step`, the ML labels): position, start, OHLC and
    contract, without a DataFrame row's cost."""
    __slots__ = ("i", "ts", "open", "high", "low", "close", "contract")

    def __init__(self, i, ts, o, h, l, c, contract=""):  # noqa: E741 — the bar's low
        self.i, self.ts, self.open, self.high, self.low, self.close = i, ts, o, h, l, c
        self.contract = contract


def step_bars(frame: pd.DataFrame, contracts=None) -> list[StepBar]:
    """A bar frame (ts int64 ns UTC, open, high, low, close) as StepBars; `contracts`: each bar's contract."""
    import numpy as np
    import pandas as pd

    ts = pd.DatetimeIndex(frame["ts"].to_numpy(dtype=np.int64).view("datetime64[ns]"), tz="UTC").to_pydatetime()
    o, h, l, c = (frame[k].to_numpy(dtype=float).tolist() for k in ("open", "high", "low", "close"))  # noqa: E741
    names = contracts if contracts is not None else [""] * len(frame)
    return [StepBar(i, *values) for i, values in enumerate(zip(ts, o, h, l, c, names))]
