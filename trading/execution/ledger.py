"""Positions → trades: what one portfolio step means in the database, written in one transaction.

Every decision becomes a signal row (deterministic key, unique) before anything is sent, and every
refused entry a BLOCKED row naming the control that refused it, with its IBS and ML score. Entries
open a position (filled at the next bar's open). An exit decided at a close is an order filled at
the next open and booked as a trade once the broker has it (trading.execution.exits); a stop or
target touched inside a bar is the broker's own bracket, booked at once. Under a full halt an exit
is held, never refused. Re-running a step after a crash writes nothing twice: the keys exist.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from strategies.pnl import price
from strategies.portfolio import StepOutcome
from trading.execution.books import managed_rows
from trading.execution.exits import book_exit
from trading.execution.signals import write_signal
from trading.models import Position, RiskControl, Signal, Strategy, StrategyInstrument, Trade, WorkerCursor
from trading.delivery.alerts import enqueue
from trading.risk.decision import Kind, KillState, order_decision

log = logging.getLogger(__name__)
State, Fill, PState = Signal.State, Signal.Fill, Position.State
SKIP_CONTROLS = {"ml_filter": RiskControl.ML_FILTER, "max_positions": RiskControl.MAX_POSITIONS,
                 "session_close": RiskControl.MARKET_CLOSED}


@dataclass
class Leg:
    """What the ledger needs of a strategy instrument (read once per config load)."""
    row: StrategyInstrument
    root: str
    ticker: str  # its template (StrategyInstrument.broker_ticker makes each order's from it)
    size: int
    commission: Decimal
    point_value: Decimal
    roll_policy: str = StrategyInstrument.RollPolicy.EXIT
    exits_only: bool = False  # disabled (or its strategy is) but a position is still open: managed, no entries


class Ledger:
    def __init__(self, strategy: Strategy, legs: dict[str, Leg], timeframe_seconds: int = 3600, features=None):
        self.strategy = strategy
        self.legs = legs
        self.bar = timedelta(seconds=timeframe_seconds)
        self.features = features or (lambda root, bar_time: None)  # the feature row an entry's score came from

    def _signal(self, leg: Leg, bar_time: datetime, action: str, quantity: int, signal_price: float, reason: str,
                ibs: float | None, ml: float | None, *, contract: str, now: datetime, **kwargs) -> Signal:
        """The order for `contract`: the contract of the bar it was decided on (an exit: of its position). An
        entry of a leg with the ML filter on records the threshold it was decided with and the features."""
        params = kwargs.get("params")
        if action == "buy" and leg.row.ml_enabled and params is not None:
            kwargs.update(ml_threshold=params.ml_threshold, features=self.features(leg.root, bar_time))
        return write_signal(self.strategy, leg.row.instrument, ticker=leg.row.broker_ticker(contract, bar_time),
                            contract=contract, bar_time=bar_time, action=action, quantity=quantity,
                            signal_price=signal_price, reason=reason, decided=bar_time + self.bar, now=now, ibs=ibs,
                            ml=ml, **kwargs)

    # --- one step -----------------------------------------------------------------------------------
    def apply(self, ts: datetime, bars: dict, outcome: StepOutcome, params: dict, books: dict,
              kill: KillState | None = None, *, now: datetime | None = None,
              managed: dict | None = None, fence=None, positions: dict | None = None) -> list[Signal]:
        """Write the step at `ts` and advance the cursor, atomically; returns the signals to send now.
        `managed`: root → the bar a position was managed on instead of the front's (execution.rolls).
        `fence`: called last inside the transaction; raising there rolls the whole step back (the worker lock:
        a worker whose host was cut off while it decided must not commit once another host holds it).
        `positions`: the managed rows the caller locked in its transaction (books.managed_rows), the step
        decided on them; otherwise they are locked and read here."""
        from trading.risk.killswitch import state

        kill = kill or state()
        now = now or timezone.now()
        created: list[Signal] = []
        with transaction.atomic(savepoint=False):  # the caller's transaction when it has one: no savepoint
            open_positions = managed_rows(self.strategy, lock=True) if positions is None else positions
            for root in sorted(outcome.results):
                res, leg = outcome.results[root], self.legs[root]
                bar = (managed or {}).get(root) or bars[root]
                pos = open_positions.get(root)
                for trade in res.closed:
                    if trade.exit_signal_ts is not None and pos is not None:  # a pending exit filled at this open
                        self._exit_filled(pos, trade)
                        pos = None
                if res.filled is not None and pos is not None and not pos.filled:
                    f = res.filled
                    pos.filled, pos.entry_time, pos.entry_price = True, f.entry_ts, price(f.entry_price)
                    pos.stop_price, pos.target_price = price(f.stop), price(f.target)
                    pos.save(update_fields=["filled", "entry_time", "entry_price", "stop_price", "target_price"])
                for trade in res.closed:
                    if trade.exit_signal_ts is None and pos is not None:  # the broker's stop or target, inside this bar
                        created += self._bracket_exit(pos, trade, leg, bar, kill, now)
                        pos = None
                if pos is not None and books[root].position is not None:
                    pos.bars_held = books[root].position.bars_held
                    pos.save(update_fields=["bars_held"])
                if res.exit_signal is not None and pos is not None and pos.state == PState.OPEN \
                        and pos.exit_signal_id is None:
                    created += self._request_exit(pos, res.exit_signal, leg, kill, now)
            for entry in outcome.entries:
                leg, contract = self.legs[entry.root], bars[entry.root].contract
                sig = self._signal(leg, entry.signal.bar_ts, "buy", leg.size, entry.signal.price, "entry",
                                   entry.signal.ibs, entry.ml_score, contract=contract, now=now,
                                   params=params[entry.root])
                created.append(sig)
                if not sig.was_there or not Position.objects.filter(entry_signal=sig).exists():
                    Position.objects.create(
                        strategy=self.strategy, instrument=leg.row.instrument, contract=contract, size=leg.size,
                        signal_time=entry.signal.bar_ts, entry_time=entry.signal.bar_ts + self.bar,
                        entry_price=price(entry.signal.price), ibs_entry=entry.signal.ibs, ml_score=entry.ml_score,
                        commission_per_side=leg.commission, point_value=leg.point_value, entry_signal=sig)
                    enqueue("entry", f"{self.strategy.name}: buy {leg.size} {leg.root}", strategy=self.strategy,
                            fields={"symbol": contract or leg.root, "side": "long",
                                    "price": str(price(entry.signal.price)), "size": leg.size,
                                    "IBS": round(entry.signal.ibs, 3), "ML": entry.ml_score})
            for skip in outcome.skipped:
                self._refused(skip, bars, params, now)
            cursor_ms = int(ts.timestamp() * 1000)
            if not WorkerCursor.objects.filter(strategy=self.strategy).update(last_bar_ms=cursor_ms,
                                                                              updated_at=timezone.now()):
                WorkerCursor.objects.create(strategy=self.strategy, last_bar_ms=cursor_ms)
            if fence is not None:
                fence()
        return [s for s in created if s.state == State.PENDING]

    def _exit_filled(self, pos: Position, trade) -> None:
        """The exit decided at the last close fills at this open: the position is EXITED (out of the book, its
        fill kept), and its trade is booked once the broker has the exit and this step has committed:
        by the worker right after the step when the exit was delivered already (exits.book_filled_exits,
        off the order's path), else by the sender when the broker answers (exits.exit_delivered). Orders
        of one instrument reach the broker in decision order, so a new entry decided meanwhile goes out
        after this exit."""
        sig = pos.exit_signal
        if sig is None or pos.state != PState.CLOSING or sig.fill != Fill.NEXT_OPEN:
            return  # held, failed or replaced since: the database knows better than the book (worker reconciles)
        pos.state, pos.exit_time, pos.exit_price = PState.EXITED, trade.exit_ts, price(trade.exit_price)
        pos.save(update_fields=["state", "exit_time", "exit_price"])
        log.info("exit filled (modelled) strategy=%s root=%s signal=%s: booked once the broker has it",
                 self.strategy.name, pos.instrument.root, sig.key)

    def _bracket_exit(self, pos: Position, trade, leg: Leg, bar, kill: KillState, now: datetime) -> list[Signal]:
        """The broker's own bracket closed the position: booked at once. The worker's own `exit` after
        it is harmless (TradersPost refuses an exit with nothing open), and under a halt not sent."""
        decision = order_decision("exit", kill)
        quiet = decision.kind is Kind.HOLD_EXIT
        sig = self._signal(leg, bar.ts, "exit", pos.size, trade.exit_price, trade.reason, None, None,
                           contract=pos.contract, now=now, fill=Fill.BRACKET,
                           state=State.BLOCKED if quiet else State.PENDING,
                           state_reason="full halt: the broker's bracket closed the position; no order sent"
                           if quiet else "", risk_control=decision.control if quiet else "")
        previous = pos.exit_signal
        if previous is not None and previous.pk != sig.pk:
            Signal.objects.filter(pk=previous.pk, state__in=[State.PENDING, State.HELD]).update(
                state=State.BLOCKED, risk_control=RiskControl.SUPERSEDED,
                state_reason="superseded: the broker's bracket closed the position first")
        book_exit(pos, sig, exit_time=trade.exit_ts, exit_price=trade.exit_price, reason=trade.reason,
                  ibs_exit=trade.ibs_exit, via=Trade.ExitVia.BRACKET)
        return [] if quiet else [sig]

    def _request_exit(self, pos: Position, exit_signal, leg: Leg, kill: KillState, now: datetime) -> list[Signal]:
        decision = order_decision("exit", kill)
        held = decision.kind is Kind.HOLD_EXIT
        sig = self._signal(leg, exit_signal.bar_ts, "exit", pos.size, exit_signal.price, exit_signal.reason,
                           exit_signal.ibs, None, contract=pos.contract, now=now,
                           state=State.HELD if held else State.PENDING,
                           state_reason=decision.reason if held else "", risk_control=decision.control if held else "",
                           fill=Fill.AT_SEND if held else Fill.NEXT_OPEN)
        pos.state, pos.exit_signal = (PState.EXIT_HELD if held else PState.CLOSING), sig
        pos.exit_reason, pos.ibs_exit = exit_signal.reason, exit_signal.ibs
        pos.save(update_fields=["state", "exit_signal", "exit_reason", "ibs_exit"])
        if held:
            log.warning("exit held strategy=%s root=%s signal=%s reason=%r", self.strategy.name, leg.root, sig.key,
                        decision.reason)
            return []
        return [sig]

    def _refused(self, skip, bars: dict, params: dict, now: datetime) -> Signal:
        """A refused entry is a BLOCKED row: the reason, the control that refused it, its IBS and ML score."""
        leg = self.legs[skip.root]
        control = getattr(skip.veto, "control", "") if skip.veto is not None else SKIP_CONTROLS.get(skip.by, "")
        signal_price = skip.price if skip.price == skip.price else bars[skip.root].close  # NaN: the bar's close
        log.info("entry refused strategy=%s root=%s bar=%s control=%s reason=%s", self.strategy.name, skip.root,
                 skip.bar_ts.isoformat(), control, skip.reason)
        return self._signal(leg, skip.bar_ts, "buy", leg.size, signal_price, "entry", skip.ibs, skip.ml_score,
                            contract=bars[skip.root].contract, now=now, state=State.BLOCKED,
                            state_reason=skip.reason, risk_control=control, params=params[skip.root])
