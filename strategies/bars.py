"""Bars: the message format between hub and workers, and aggregation trades → 1m → 1h → CME day.

The streaming builders (used live by the hub and worker) and the batch functions (used by the
backtest and tests) must give identical bars; a minute without trades makes no bar (never a
flat fake one). A bar never completes before time has passed its end.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from strategies.calendar import session_close, session_date, session_date_ns, session_dates

UTC = timezone.utc
TIMEFRAME_SECONDS = {"1m": 60, "1h": 3600}
NS = 1_000_000_000


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
    def end(self) -> datetime:
        if self.timeframe == "1d":
            return session_close(self.ts.date())
        return self.ts + timedelta(seconds=TIMEFRAME_SECONDS[self.timeframe])

    def to_message(self) -> str:
        # Fields spelled out: dataclasses.asdict deep-copies and is the hub's costliest step.
        data = {"symbol": self.symbol, "contract": self.contract, "timeframe": self.timeframe,
                "ts": self.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "open": self.open, "high": self.high,
                "low": self.low, "close": self.close, "volume": self.volume, "trades": self.trades}
        return json.dumps(data, separators=(",", ":"))

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


def _merge(acc: Bar, bar: Bar) -> Bar:
    return Bar(acc.symbol, bar.contract, acc.timeframe, acc.ts, acc.open, max(acc.high, bar.high), min(acc.low, bar.low),
               bar.close, acc.volume + bar.volume, acc.trades + bar.trades)


# --- streaming -------------------------------------------------------------------------------
class MinuteBarBuilder:
    """Trades of one root (front contract only, filtered upstream) → completed 1-minute bars."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self._minute: int | None = None  # minute start, ns
        self._bar: list | None = None  # [contract, o, h, l, c, volume, trades]
        self.last_ts = -1

    def push(self, ts_ns: int, price: float, size: int, contract: str) -> list[Bar]:
        """Add one trade; returns bars completed by it. A trade older than the open minute is refused."""
        minute = ts_ns - ts_ns % (60 * NS)
        out = []
        if self._minute is not None and minute < self._minute:
            raise BarError(f"{self.symbol}: trade at {ts_ns} is older than the open minute {self._minute}")
        if self._minute is not None and minute > self._minute:
            out = self.close_through(minute)
        self.last_ts = max(self.last_ts, ts_ns)
        if self._bar is None:
            self._minute = minute
            self._bar = [contract, price, price, price, price, size, 1]
        else:
            b = self._bar
            b[0], b[2], b[3], b[4], b[5], b[6] = contract, max(b[2], price), min(b[3], price), price, b[5] + size, b[6] + 1
        return out

    def close_through(self, ts_ns: int) -> list[Bar]:
        """Complete the open minute if `ts_ns` is at or past its end."""
        if self._bar is None or ts_ns < self._minute + 60 * NS:
            return []
        c, o, h, l, cl, v, n = self._bar
        bar = Bar(self.symbol, c, "1m", datetime.fromtimestamp(self._minute / NS, UTC), o, h, l, cl, v, n)
        self._bar = None
        self._minute = None
        return [bar]

    @property
    def open_minute(self) -> int | None:
        return self._minute


class HourlyAggregator:
    """1-minute bars → hourly bars stamped at the hour's start (UTC)."""

    def __init__(self):
        self._acc: Bar | None = None

    def push(self, bar: Bar) -> list[Bar]:
        hour = bar.ts.replace(minute=0, second=0, microsecond=0)
        out = []
        if self._acc is not None and hour > self._acc.ts:
            out = self.close_through(hour)
        if self._acc is None:
            self._acc = replace(bar, timeframe="1h", ts=hour)
        elif hour == self._acc.ts:
            self._acc = _merge(self._acc, bar)
        else:
            raise BarError(f"{bar.symbol}: minute bar {bar.ts} is older than the open hour {self._acc.ts}")
        return out

    def close_through(self, ts: datetime) -> list[Bar]:
        if self._acc is None or ts < self._acc.ts + timedelta(hours=1):
            return []
        done, self._acc = self._acc, None
        return [done]


class DailyAggregator:
    """1-minute or hourly bars → CME trading-day bars (ts = 00:00 UTC of the session date)."""

    def __init__(self):
        self._acc: Bar | None = None
        self._day: date | None = None

    def push(self, bar: Bar) -> list[Bar]:
        day = session_date_ns(int(bar.ts.timestamp()) * NS)
        out = []
        if self._day is not None and day > self._day:
            out = self.close_through(bar.ts, force=True)
        if self._acc is None:
            self._day = day
            self._acc = replace(bar, timeframe="1d", ts=datetime(day.year, day.month, day.day, tzinfo=UTC))
        elif day == self._day:
            self._acc = _merge(self._acc, bar)
        else:
            raise BarError(f"{bar.symbol}: bar {bar.ts} belongs to an earlier session than {self._day}")
        return out

    def close_through(self, ts: datetime, force: bool = False) -> list[Bar]:
        if self._acc is None or (not force and ts < session_close(self._day)):
            return []
        done, self._acc, self._day = self._acc, None, None
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
    frame = pd.DataFrame({"open": price, "high": price, "low": price, "close": price, "volume": size,
                          "trades": np.ones(len(price), dtype=np.int64)})
    keys = np.asarray(ts_ns, dtype=np.int64) // (60 * NS) * (60 * NS)
    out = _aggregate(frame, keys)
    return out.rename_axis("ts").reset_index()


def to_hourly(minutes: pd.DataFrame) -> pd.DataFrame:
    """1-minute bars (ts int64 ns) → hourly bars stamped at the hour start."""
    keys = minutes["ts"].to_numpy(dtype=np.int64) // (3600 * NS) * (3600 * NS)
    return _aggregate(minutes, keys).rename_axis("ts").reset_index()


def to_daily(bars: pd.DataFrame) -> pd.DataFrame:
    """Intraday bars (ts int64 ns) → CME trading-day bars; ts = session date at 00:00 UTC in ns."""
    days = session_dates(bars["ts"].to_numpy(dtype=np.int64)).astype("datetime64[ns]").astype(np.int64)
    return _aggregate(bars, days).rename_axis("ts").reset_index()


def frame_from_bars(bars: list[Bar]) -> pd.DataFrame:
    return pd.DataFrame({
        "ts": np.array([int(b.ts.timestamp()) * NS for b in bars], dtype=np.int64),
        "open": [b.open for b in bars], "high": [b.high for b in bars], "low": [b.low for b in bars],
        "close": [b.close for b in bars], "volume": [b.volume for b in bars], "trades": [b.trades for b in bars]})
