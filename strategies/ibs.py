"""The IBS strategy, bar by bar: the one piece of decision code the backtest and the worker share.

`InstrumentBook.on_bar(bar)` applies the exact fill model of the design to a completed bar and
returns what happened (fills, closed trades, an exit decided at the close); `entry_candidate`
says whether the bar's close is an entry signal. Live, a decision is sent the moment the bar
completes; the modelled fill is the next bar's open. Nothing here reads a clock or a database.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime

from strategies.params import IBSParams


def ibs(high: float, low: float, close: float) -> float:
    """(close − low) / (high − low); NaN when high == low (no signal)."""
    span = high - low
    return (close - low) / span if span > 0 else math.nan


def minute_of_day(ts: datetime, params: IBSParams) -> int:
    local = ts.astimezone(params.tz)
    return local.hour * 60 + local.minute


def in_entry_window(ts: datetime, params: IBSParams) -> bool:
    """Bar START time-of-day (window_tz) inside any [start, end) entry window."""
    m = minute_of_day(ts, params)
    return any(start <= m < end for start, end in params.windows)


def is_flat_bar(ts: datetime, seconds: int, params: IBSParams) -> bool:
    """The bar whose [start, start + length) holds flat_time (window_tz); never when 'none'."""
    flat = params.flat_minute
    if flat is None:
        return False
    start = minute_of_day(ts, params)
    end = start + seconds // 60
    return start <= flat < end or (end > 1440 and flat < end - 1440)


@dataclass(frozen=True)
class EntrySignal:
    bar_ts: datetime  # start of the bar whose close signalled
    price: float  # that close: the order's signalPrice
    ibs: float


@dataclass(frozen=True)
class ExitSignal:
    bar_ts: datetime
    price: float
    reason: str  # ibs_exit | max_bars | flat_time | early_close | roll
    ibs: float


@dataclass
class Position:
    entry_ts: datetime  # fill bar start
    entry_price: float
    stop: float
    target: float
    ibs_entry: float
    ml_score: float | None = None
    bars_held: int = 0
    signal_ts: datetime | None = None
    # The caller has an exit on its way or held for this position (live only: flatten, a full halt);
    # no exit is decided at a close while it is, but the broker-side stop and target still count.
    exit_held: bool = False


@dataclass(frozen=True)
class ClosedTrade:
    entry_ts: datetime
    entry_price: float
    exit_ts: datetime
    exit_price: float
    reason: str
    ibs_entry: float
    ibs_exit: float | None
    ml_score: float | None
    bars_held: int
    entry_signal_ts: datetime | None = None
    exit_signal_ts: datetime | None = None  # bar of the close-based exit decision (None: intrabar/end)
    decided_reason: str | None = None  # end of data with an exit already decided (live: that order went out)


@dataclass
class BarResult:
    filled: Position | None = None  # entry filled at this bar's open
    closed: list[ClosedTrade] = field(default_factory=list)
    exit_signal: ExitSignal | None = None  # decided at this bar's close: exit at the next open
    ibs: float = math.nan
    flat_at_close: bool = True


def entry_candidate(bar, params: IBSParams, seconds: int | None) -> EntrySignal | None:
    """IBS in the entry range and (intraday) the bar inside an entry window; other filters are the caller's."""
    value = ibs(bar.high, bar.low, bar.close)
    if math.isnan(value) or not (params.ibs_entry_low <= value <= params.ibs_entry_high):
        return None
    if seconds is not None and not in_entry_window(bar.ts, params):
        return None
    return EntrySignal(bar.ts, bar.close, value)


class InstrumentBook:
    """State of one instrument of one strategy: the open position and orders awaiting a fill."""

    def __init__(self, params: IBSParams, seconds: int | None = 3600):
        self.params = params
        self.seconds = seconds  # bar length; None for daily bars (no windows, no flat time)
        self.position: Position | None = None
        self.pending_entry: EntrySignal | None = None
        self.pending_entry_ml: float | None = None
        self.pending_exit: ExitSignal | None = None

    @property
    def flat(self) -> bool:
        return self.position is None and self.pending_entry is None

    def accept_entry(self, signal: EntrySignal, ml_score: float | None = None) -> None:
        if not self.flat:
            raise RuntimeError("entry accepted while a position or entry is open")
        self.pending_entry, self.pending_entry_ml = signal, ml_score

    def _close(self, bar_ts, price, reason, ibs_exit, exit_signal_ts=None) -> ClosedTrade:
        p = self.position
        self.position = None
        return ClosedTrade(p.entry_ts, p.entry_price, bar_ts, price, reason, p.ibs_entry, ibs_exit, p.ml_score,
                           p.bars_held, p.signal_ts, exit_signal_ts)

    def on_bar(self, bar, force: str | None = None) -> BarResult:
        """Apply one completed bar: pending fills at its open, stop/target inside it, exits at its close.
        `force`: the reason a position still open after the strategy's own exits must be exited at this close
        anyway (filled at the next open): 'early_close' (the session closes before the next bar could
        complete), 'roll' (its contract is no longer the front and the instrument exits at the roll)."""
        params, result = self.params, BarResult()
        result.ibs = ibs(bar.high, bar.low, bar.close)
        if self.pending_exit is not None and self.position is not None:
            sig = self.pending_exit
            result.closed.append(self._close(bar.ts, bar.open, sig.reason, sig.ibs, sig.bar_ts))
        self.pending_exit = None
        if self.pending_entry is not None:
            fill = bar.open
            self.position = Position(
                entry_ts=bar.ts, entry_price=fill, stop=fill * (1 - params.stop_loss_pct / 100),
                target=fill * (1 + params.take_profit_pct / 100), ibs_entry=self.pending_entry.ibs,
                ml_score=self.pending_entry_ml, signal_ts=self.pending_entry.bar_ts)
            result.filled = self.position
            self.pending_entry = self.pending_entry_ml = None
        pos = self.position
        if pos is not None:
            pos.bars_held += 1
            exit_price, reason = stop_or_target(pos, bar)
            if reason:
                result.closed.append(self._close(bar.ts, exit_price, reason, None))
        if self.position is not None and not self.position.exit_held:
            value = result.ibs
            if not math.isnan(value) and params.ibs_exit_low <= value <= params.ibs_exit_high:
                reason = "ibs_exit"
            elif self.position.bars_held >= params.max_bars_held:
                reason = "max_bars"
            elif self.seconds is not None and is_flat_bar(bar.ts, self.seconds, params):
                reason = "flat_time"
            elif force:
                reason = force
            else:
                reason = None
            if reason:
                self.pending_exit = result.exit_signal = ExitSignal(bar.ts, bar.close, reason, value)
        result.flat_at_close = self.position is None
        return result

    def finish(self, last_bar) -> ClosedTrade | None:
        """Data ended with a position open: exit at the last close ('end_of_data')."""
        if self.position is None:
            return None
        pending, self.pending_exit = self.pending_exit, None
        trade = self._close(last_bar.ts, last_bar.close, "end_of_data", ibs(last_bar.high, last_bar.low, last_bar.close),
                            pending.bar_ts if pending else None)
        if pending:
            trade = replace(trade, decided_reason=pending.reason)
        return trade


def stop_or_target(pos: Position, bar) -> tuple[float, str | None]:
    """Intrabar exit of the fill model: gaps at the open first; both touched → the stop."""
    if bar.open <= pos.stop:
        return bar.open, "stop_loss"
    if bar.open >= pos.target:
        return bar.open, "take_profit"
    if bar.low <= pos.stop:
        return pos.stop, "stop_loss"
    if bar.high >= pos.target:
        return pos.target, "take_profit"
    return math.nan, None


def bar_length(timeframe: str) -> int | None:
    return {"1m": 60, "1h": 3600, "1d": None}[timeframe]


__all__ = ["BarResult", "ClosedTrade", "EntrySignal", "ExitSignal", "InstrumentBook", "Position", "bar_length",
           "entry_candidate", "ibs", "in_entry_window", "is_flat_bar", "stop_or_target"]
