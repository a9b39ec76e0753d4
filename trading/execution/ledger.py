"""Positions → trades: what one portfolio step means in the database, written in one transaction.

Every decision becomes a signal row (deterministic key, unique) before anything is sent; entries
open a position (filled at the next bar's open), exits close it into a trade with the
instrument's point value and the leg's commission. Blocked entries are rows too, with the reason.
Re-running the same step after a crash writes nothing twice: the keys already exist.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from strategies.calendar import next_trade_date, session_close, session_date
from strategies.ibs import ClosedTrade, ExitSignal
from strategies.portfolio import StepOutcome
from trading.execution.traderspost import order_payload
from trading.models import Position, Signal, Strategy, StrategyInstrument, Trade, WorkerCursor, signal_key, trade_pnl
from trading.notify.outbox import enqueue
from trading.risk.daily import record_realized

log = logging.getLogger(__name__)
RISK_PREFIXES = ("killswitch", "daily stop", "ml model")


def price(value: float) -> Decimal:
    return Decimal(repr(round(float(value), 9)))


@dataclass
class Leg:
    """What the ledger needs of a strategy instrument (read once per config load)."""
    row: StrategyInstrument
    root: str
    ticker: str
    size: int
    commission: Decimal
    point_value: Decimal
    contract: str = ""


class Ledger:
    def __init__(self, strategy: Strategy, legs: dict[str, Leg], timeframe_seconds: int = 3600):
        self.strategy = strategy
        self.legs = legs
        self.bar = timedelta(seconds=timeframe_seconds)

    # --- signals ----------------------------------------------------------------------------------
    def _signal(self, leg: Leg, bar_time: datetime, action: str, quantity: int, signal_price: float, reason: str,
                ibs: float | None, ml: float | None, state: str = Signal.State.PENDING, state_reason: str = "",
                params=None) -> Signal:
        key = signal_key(self.strategy.name, leg.root, bar_time, action)
        existing = Signal.objects.filter(key=key).first()
        if existing:
            return existing
        decided = bar_time + self.bar
        ibs = None if ibs is None or math.isnan(ibs) else ibs
        extras = {"strategy": self.strategy.name, "signal_id": key, "bar_time": bar_time.isoformat(),
                  "ibs": None if ibs is None else round(ibs, 4), "ml_score": ml, "reason": reason}
        # Entries carry broker-side protection relative to the actual fill, so it holds if the appliance dies.
        protect = action == "buy" and params is not None
        payload = order_payload(
            ticker=leg.ticker, action=action, quantity=quantity, signal_price=float(price(signal_price)),
            time_in_force=self.strategy.time_in_force, extras=extras,
            stop_loss_percent=params.stop_loss_pct if protect else None,
            take_profit_percent=params.take_profit_pct if protect else None)
        # A day order is good until the close of the session it fills in (a decision at the close
        # fills at the next session's open), counted from when it was decided: the same deadline
        # live, and in a replay of past data the same validity instead of expiring at once.
        day = session_date(decided)
        if session_close(day) <= decided:
            day = next_trade_date(day, inclusive=False)
        left = session_close(day) - decided
        return Signal.objects.create(
            key=key, strategy=self.strategy, instrument=leg.row.instrument, contract=leg.contract, bar_time=bar_time,
            action=action, quantity=quantity, signal_price=price(signal_price), reason=reason,
            ibs=ibs, ml_score=ml, payload=payload, state=state,
            state_reason=state_reason, expires_at=timezone.now() + left)

    # --- one step -----------------------------------------------------------------------------------
    def apply(self, ts: datetime, bars: dict, outcome: StepOutcome, params: dict, books: dict) -> list[Signal]:
        """Write the step at `ts` and advance the cursor, atomically; returns new pending signals."""
        created: list[Signal] = []
        with transaction.atomic():
            open_positions = {p.instrument.root: p for p in Position.objects.select_for_update().filter(
                strategy=self.strategy, state__in=[Position.State.OPEN, Position.State.CLOSING]).select_related("instrument")}
            for root in sorted(outcome.results):
                res, bar, leg = outcome.results[root], bars[root], self.legs[root]
                pos = open_positions.get(root)
                for trade in res.closed:
                    if trade.exit_signal_ts is not None:  # a pending exit filled at this open
                        self._close(pos, trade, leg, exit_signal=pos.exit_signal)
                        open_positions.pop(root, None)
                        pos = None
                if res.filled is not None and pos is not None and not pos.filled:
                    f = res.filled
                    pos.filled, pos.entry_time, pos.entry_price = True, f.entry_ts, price(f.entry_price)
                    pos.stop_price, pos.target_price = price(f.stop), price(f.target)
                    pos.save(update_fields=["filled", "entry_time", "entry_price", "stop_price", "target_price"])
                for trade in res.closed:
                    if trade.exit_signal_ts is None and pos is not None:  # stop or target inside this bar
                        sig = self._signal(leg, bar.ts, "exit", pos.size, trade.exit_price, trade.reason, None, None)
                        created.append(sig)
                        self._close(pos, trade, leg, exit_signal=sig)
                        open_positions.pop(root, None)
                        pos = None
                if pos is not None and books[root].position is not None:
                    pos.bars_held = books[root].position.bars_held
                    pos.save(update_fields=["bars_held"])
                if res.exit_signal is not None and pos is not None:
                    created.append(self._request_exit(pos, res.exit_signal, leg))
            for entry in outcome.entries:
                leg = self.legs[entry.root]
                sig = self._signal(leg, entry.signal.bar_ts, "buy", leg.size, entry.signal.price, "entry",
                                   entry.signal.ibs, entry.ml_score, params=params[entry.root])
                created.append(sig)
                if not Position.objects.filter(entry_signal=sig).exists():
                    Position.objects.create(
                        strategy=self.strategy, instrument=leg.row.instrument, contract=leg.contract, size=leg.size,
                        signal_time=entry.signal.bar_ts, entry_time=entry.signal.bar_ts + self.bar,
                        entry_price=price(entry.signal.price), ibs_entry=entry.signal.ibs, ml_score=entry.ml_score,
                        commission_per_side=leg.commission, point_value=leg.point_value, entry_signal=sig)
                    enqueue("entry", f"{self.strategy.name}: buy {leg.size} {leg.root}", strategy=self.strategy,
                            fields={"symbol": leg.contract or leg.root, "side": "long", "price": str(price(entry.signal.price)),
                                    "size": leg.size, "IBS": round(entry.signal.ibs, 3), "ML": entry.ml_score})
            for skip in outcome.skipped:
                if skip.reason.startswith(RISK_PREFIXES):
                    leg = self.legs[skip.root]
                    bar = bars[skip.root]
                    self._signal(leg, skip.bar_ts, "buy", leg.size, bar.close, "entry", None, None,
                                 state=Signal.State.BLOCKED, state_reason=skip.reason[:300])
                log.info("entry skipped strategy=%s root=%s bar=%s reason=%s", self.strategy.name, skip.root,
                         skip.bar_ts.isoformat(), skip.reason)
            WorkerCursor.objects.update_or_create(strategy=self.strategy,
                                                  defaults={"last_bar_ms": int(ts.timestamp() * 1000)})
        return [s for s in created if s.state == Signal.State.PENDING]

    def _request_exit(self, pos: Position, exit_signal: ExitSignal, leg: Leg) -> Signal:
        sig = self._signal(leg, exit_signal.bar_ts, "exit", pos.size, exit_signal.price, exit_signal.reason,
                           exit_signal.ibs, None)
        pos.state, pos.exit_signal, pos.exit_reason, pos.ibs_exit = Position.State.CLOSING, sig, exit_signal.reason, \
            exit_signal.ibs
        pos.save(update_fields=["state", "exit_signal", "exit_reason", "ibs_exit"])
        return sig

    def _close(self, pos: Position, trade: ClosedTrade, leg: Leg, exit_signal: Signal) -> Trade:
        entry, exit_ = price(trade.entry_price), price(trade.exit_price)
        pnl = trade_pnl(entry, exit_, pos.point_value, pos.size, pos.commission_per_side)
        day = session_date(trade.exit_ts)
        row = Trade.objects.create(
            strategy=self.strategy, symbol=leg.root, contract=pos.contract, side="long", entry_time=trade.entry_ts,
            entry_price=entry, entry_size=pos.size, exit_time=trade.exit_ts, exit_price=exit_, exit_size=pos.size,
            pnl=pnl, pnl_percent=float((exit_ - entry) / entry * 100), exit_reason=trade.reason, ml_score=pos.ml_score,
            ibs_entry=pos.ibs_entry, ibs_exit=trade.ibs_exit, commission=2 * pos.commission_per_side * pos.size,
            point_value=pos.point_value, session_date=day, entry_signal=pos.entry_signal, exit_signal=exit_signal)
        pos.state, pos.exit_signal = Position.State.CLOSED, exit_signal
        pos.save(update_fields=["state", "exit_signal"])
        record_realized(self.strategy, day, pnl)
        held = trade.exit_ts - trade.entry_ts
        enqueue("exit", f"{self.strategy.name}: exit {leg.root} {pnl:+.2f} $", strategy=self.strategy,
                fields={"symbol": pos.contract or leg.root, "P&L $": str(pnl), "P&L %": f"{row.pnl_percent:.2f}",
                        "exit price": str(exit_), "duration": str(held), "reason": trade.reason})
        return row
