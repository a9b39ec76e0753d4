"""Exits and the books: a position becomes a trade only once the broker has its exit.

- `book_exit` writes the trade of a position (P&L, daily P&L, the exit alert): called for an exit
  the broker's own bracket made (the worker, at once), or for an exit order once it was delivered
  (the worker at the fill bar, or the sender the moment the broker answered).
- An exit the broker never got (refused, ambiguous, expired) leaves its position open, alerted.
- A full halt holds exits instead of refusing them: the position stays open as "exit held" (no
  trade, not in the daily P&L) and its exit is sent when the halt lifts, booked at the market of
  that moment.
- Flatten emits one exit per open position, each with a deterministic key, through the outbox.
What must never happen here: a trade row for an exit that did not reach the broker, or two exits
for one position from one flatten.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from strategies.calendar import session_date
from strategies.pnl import price
from trading.execution.signals import write_signal
from trading.marketdata import streams
from trading.models import KillSwitch, KillSwitchEvent, Position, RiskControl, Signal, StrategyInstrument, Trade, trade_pnl
from trading.delivery.alerts import enqueue
from trading.risk.daily import record_realized, unrecord_realized
from trading.risk.decision import Kind, KillState, order_decision

log = logging.getLogger(__name__)
State = Signal.State
PState = Position.State
Fill = Signal.Fill
Mode = KillSwitch.Mode
UNSENT = (State.PENDING, State.HELD)


# --- booking ---------------------------------------------------------------------------------------
def book_exit(pos: Position, exit_signal: Signal | None, *, exit_time: datetime, exit_price: float | Decimal,
              reason: str, ibs_exit: float | None, via: str = Trade.ExitVia.ORDER) -> Trade:
    """Close `pos` (locked by the caller) into its trade; count it in the day's P&L; alert the exit."""
    entry, exit_ = Decimal(pos.entry_price), price(exit_price)
    pnl = trade_pnl(entry, exit_, pos.point_value, pos.size, pos.commission_per_side)
    day = session_date(exit_time)
    root, strategy = pos.instrument.root, pos.strategy
    row = Trade.objects.create(
        strategy=strategy, symbol=root, contract=pos.contract, side=pos.side, entry_time=pos.entry_time,
        entry_price=entry, entry_size=pos.size, exit_time=exit_time, exit_price=exit_, exit_size=pos.size, pnl=pnl,
        pnl_percent=float((exit_ - entry) / entry * 100), exit_reason=reason, exit_via=via, ml_score=pos.ml_score,
        ibs_entry=pos.ibs_entry, ibs_exit=ibs_exit, commission=2 * pos.commission_per_side * pos.size,
        point_value=pos.point_value, session_date=day, entry_signal_id=pos.entry_signal_id, exit_signal=exit_signal)
    pos.state, pos.exit_signal = PState.CLOSED, exit_signal
    pos.save(update_fields=["state", "exit_signal"])
    record_realized(strategy, day, pnl)
    held = exit_time - pos.entry_time
    enqueue("exit", f"{strategy.name}: exit {root} {pnl:+.2f} $", strategy=strategy,
            fields={"symbol": pos.contract or root, "P&L $": str(pnl), "P&L %": f"{row.pnl_percent:.2f}",
                    "exit price": str(exit_), "duration": str(held), "reason": reason,
                    "via": "broker's bracket" if via == Trade.ExitVia.BRACKET else "exit order"})
    log.info("trade booked strategy=%s root=%s exit=%s reason=%s via=%s pnl=%s", strategy.name, root, exit_, reason,
             via, pnl)
    return row


def contract_minute(contract: str, root: str):
    """The newest 1-minute bar of `contract`: its own stream's while it is held after a roll, else the root's
    while it is the front. None when neither has it (no price of this contract is known)."""
    for name in (contract, root) if contract else (root,):
        bar = streams.last_minute(name)
        if bar is not None and (bar.contract == contract or not contract):
            return bar
    return None


def market_at_send(sig: Signal) -> tuple[Decimal | None, datetime | None]:
    """The market when an order leaves: its contract's newest 1-minute close and the end of that minute
    (None: no price of that contract, the signal's own reference is used)."""
    bar = contract_minute(sig.contract, sig.instrument.root)
    if bar is None:
        return None, None
    return price(bar.close), bar.ts + timedelta(minutes=1)


def exit_delivered(sig: Signal) -> Trade | None:
    """The broker has exit `sig` (the sender's delivery transaction): book its position when its fill
    is known — the market at the send for an exit sent at once, else the fill the worker modelled."""
    pos = (Position.objects.select_for_update(of=("self",))
           .filter(exit_signal=sig, state__in=[PState.CLOSING, PState.EXITED])
           .select_related("strategy", "instrument", "entry_signal").first())
    if pos is None:
        return None
    if sig.fill == Fill.AT_SEND:
        exit_time = sig.market_time or max(pos.entry_time, sig.bar_time)
        exit_price = sig.market_price or sig.signal_price
    elif pos.state == PState.EXITED:  # the worker modelled the fill before the broker answered
        exit_time, exit_price = pos.exit_time, pos.exit_price
    else:
        return None  # the worker books it once it has modelled the fill (book_filled_exits)
    trade = book_exit(pos, sig, exit_time=exit_time, exit_price=exit_price, reason=pos.exit_reason or sig.reason,
                      ibs_exit=pos.ibs_exit)
    if sig.reason == "flatten":
        _maybe_flat()
    return trade


def book_filled_exits(strategy) -> list[Trade]:
    """The trades of `strategy`'s positions whose exit the worker modelled filled (EXITED) and the broker has
    (the exit sent), each booked in its own transaction: called by the worker right after each step's commit
    (the booking off the order's path) and as it starts (a worker killed in between books them then)."""
    booked = []
    delivered = Signal.objects.filter(state=State.SENT, closed_position__strategy=strategy,
                                      closed_position__state=PState.EXITED)
    for sig in delivered.select_related("strategy", "instrument"):
        with transaction.atomic():
            trade = exit_delivered(sig)  # under the position's lock: a sender booking it meanwhile goes first
        if trade is not None:
            booked.append(trade)
    return booked


def _cancel_newer_unsent(pos: Position, why: str) -> None:
    """Entries of `pos`'s instrument decided after it left the book (queued behind its exit) and not
    sent: cancelled, since the broker still holds `pos`."""
    newer = Position.objects.managed().filter(strategy=pos.strategy, instrument=pos.instrument).exclude(pk=pos.pk)
    for later in newer:
        if Signal.objects.filter(pk=later.entry_signal_id, state__in=UNSENT).update(
                state=State.BLOCKED, risk_control=RiskControl.POSITION_OPEN, state_reason=why[:300]):
            later.state = PState.CANCELLED
            later.save(update_fields=["state"])


def _back_in_the_book(pos: Position, **changes) -> int:
    """Move `pos` back under the worker (open, or exit held) unless a newer position of its instrument
    already reached the broker; returns 1 when it moved."""
    if Position.objects.managed().filter(strategy=pos.strategy, instrument=pos.instrument).exclude(pk=pos.pk).exists():
        return 0
    return Position.objects.filter(pk=pos.pk).update(**changes)


def exit_not_delivered(sig: Signal, reason: str) -> None:
    """Exit `sig` did not reach the broker (refused, expired, or possibly sent without an answer): its
    position stays open in the books, and the operator is told at once, by name. Entries of that
    instrument decided since (queued behind the exit) are cancelled: the broker still holds the first."""
    root = sig.instrument.root
    pos = Position.objects.filter(exit_signal=sig, state__in=[PState.CLOSING, PState.EXIT_HELD, PState.EXITED]).first()
    reopened = 0
    if pos is not None:
        _cancel_newer_unsent(pos, f"the exit of the previous {root} position ({sig.key}) did not reach the broker")
        reopened = _back_in_the_book(pos, state=PState.OPEN, exit_signal=None, exit_time=None, exit_price=None,
                                     exit_reason="", ibs_exit=None)
    books = ("The books keep the position open and the worker manages it again" if reopened or pos is None else
             f"A newer {root} position already reached the broker, so this one cannot be managed by the worker: "
             "the books keep it (state exited, no trade) for the operator")
    enqueue("emergency", f"Exit not delivered: {sig.strategy.name} {root} — the position stays open",
            strategy=sig.strategy,
            body=(f"The exit of {sig.quantity} {root} ({sig.key}) did not reach the broker: {reason[:600]}. "
                  f"{books}; check the broker, which may still hold it (flatten it there, or correct the "
                  "position in the admin)."),
            fields={"signal": sig.key, "quantity": sig.quantity, "symbol": sig.contract or root},
            dedupe_key=f"exit-undelivered:{sig.key}")
    log.error("exit not delivered signal=%s reopened=%d reason=%r", sig.key, reopened, reason)


def cancel_unsent_entry(sig: Signal, reason: str) -> None:
    """An entry that never reached the broker opens nothing: its modelled position is cancelled. A worker
    catching up decides faster than its sender sends, so the model may have gone on meanwhile: an exit
    decided for the position is never sent (refused by the entry's own control rather than posted for a
    position the broker does not hold), and a trade booked from the broker's bracket in the model is voided."""
    positions = list(Position.objects.filter(entry_signal=sig, state__in=[*Position.OPEN_STATES, PState.CLOSED])
                     .values_list("pk", "state", "exit_signal_id"))
    if not positions:
        return
    Position.objects.filter(pk__in=[pk for pk, _, _ in positions]).update(state=PState.CANCELLED)
    log.warning("position cancelled signal=%s reason=%r", sig.key, reason)
    if any(state == PState.CLOSED for _, state, _ in positions):
        _void_trades(sig, reason)
    exits = [pk for _, _, pk in positions if pk is not None]
    if exits:
        control = Signal.objects.filter(pk=sig.pk).values_list("risk_control", flat=True).first() or ""
        for key in Signal.objects.filter(pk__in=exits, state__in=UNSENT).values_list("key", flat=True):
            log.warning("exit not sent signal=%s: its entry %s never reached the broker", key, sig.key)
        Signal.objects.filter(pk__in=exits, state__in=UNSENT).update(
            state=State.BLOCKED, risk_control=control, next_attempt_at=None,
            state_reason=f"its entry {sig.key} never reached the broker ({reason})"[:300])


def _void_trades(sig: Signal, reason: str) -> None:
    """The trades booked on entry `sig`, which the broker never got: out of the books and the day's P&L, each
    alerted (its exit was alerted when it was booked)."""
    for trade in Trade.objects.filter(entry_signal=sig).select_related("strategy"):
        unrecord_realized(trade.strategy, trade.session_date, trade.pnl)
        trade.delete()
        enqueue("emergency", f"Trade voided: {trade.strategy.name} {trade.symbol} {trade.pnl:+.2f} $",
                strategy=trade.strategy,
                body=(f"The trade booked from the broker's bracket at {trade.exit_time:%Y-%m-%d %H:%M} UTC had an "
                      f"entry the broker never got ({sig.key}: {reason}); it is out of the books and the "
                      f"{trade.session_date} P&L. Check the broker holds nothing."),
                fields={"symbol": trade.contract or trade.symbol, "P&L $": str(trade.pnl), "entry": sig.key},
                dedupe_key=f"trade-voided:{sig.key}")
        log.error("trade voided strategy=%s root=%s entry=%s pnl=%s: its entry never reached the broker",
                  trade.strategy.name, trade.symbol, sig.key, trade.pnl)


# --- full halt -------------------------------------------------------------------------------------
def hold_exit(sig: Signal, reason: str, control: str, *, from_state: str = State.SENDING) -> bool:
    """Keep exit `sig` back through a full halt: the position stays open ("exit held"), and the exit is
    priced at the market of its eventual send."""
    if not Signal.objects.filter(pk=sig.pk, state=from_state).update(
            state=State.HELD, state_reason=reason[:300], risk_control=control, fill=Fill.AT_SEND,
            next_attempt_at=None):
        return False
    pos = Position.objects.filter(exit_signal=sig, state__in=[PState.CLOSING, PState.EXITED]).first()
    if pos is not None:  # even if its modelled fill came and went: the broker still holds it
        _cancel_newer_unsent(pos, f"{reason} (the previous {sig.instrument.root} position's exit is held)")
        _back_in_the_book(pos, state=PState.EXIT_HELD, exit_time=None, exit_price=None)
    log.warning("exit held signal=%s reason=%r", sig.key, reason)
    return True


def release_held_exits(kill: KillState) -> list[str]:
    """Once the halt is lifted: every held exit goes to the outbox, to be sent (and booked) now."""
    if kill.halted:
        return []
    released = []
    for sig in Signal.objects.filter(state=State.HELD, action=Signal.Action.EXIT).select_related("strategy",
                                                                                                  "instrument"):
        with transaction.atomic():
            if not Signal.objects.filter(pk=sig.pk, state=State.HELD).update(
                    state=State.PENDING, state_reason="the halt was lifted: sent now", next_attempt_at=None):
                continue
            Position.objects.filter(exit_signal=sig, state=PState.EXIT_HELD).update(state=PState.CLOSING)
            enqueue("info", f"{sig.strategy.name}: held exit of {sig.instrument.root} sent (halt lifted)",
                    strategy=sig.strategy, body=f"{sig.key}: held through the halt, sent now at the market.",
                    dedupe_key=f"exit-released:{sig.key}")
        released.append(sig.key)
    if released:
        log.warning("held exits released %s", released)
    return released


# --- flatten ---------------------------------------------------------------------------------------
def _flatten_key(pos: Position, at: datetime) -> str:
    return f"{pos.strategy.name}:{pos.instrument.root}:{at:%Y-%m-%dT%H:%M:%SZ}:flatten"


def flatten_position(pos: Position, event: KillSwitchEvent, kill: KillState, *, now: datetime) -> Signal | None:
    """One market `exit` for open position `pos` (locked by the caller) for flatten `event`, sent at once
    through the outbox and booked at the market of its send. Its key is fixed by the event: asking
    twice gives the same signal."""
    at = event.at.replace(microsecond=0)
    leg = StrategyInstrument.objects.filter(strategy=pos.strategy, instrument=pos.instrument).first()
    last = contract_minute(pos.contract, pos.instrument.root)
    reference = last.close if last is not None else float(pos.entry_price)
    decision = order_decision("exit", kill)
    held = decision.kind is Kind.HOLD_EXIT
    sig = write_signal(pos.strategy, pos.instrument,
                       ticker=leg.broker_ticker(pos.contract, at) if leg else pos.contract or pos.instrument.root,
                       contract=pos.contract, bar_time=at, action=Signal.Action.EXIT, quantity=pos.size,
                       signal_price=reference, reason="flatten", decided=now, now=now,
                       state=State.HELD if held else State.PENDING, state_reason=decision.reason if held else "",
                       risk_control=decision.control if held else "", fill=Fill.AT_SEND,
                       key=_flatten_key(pos, at))
    pos.state, pos.exit_signal, pos.exit_reason = (PState.EXIT_HELD if held else PState.CLOSING), sig, "flatten"
    pos.save(update_fields=["state", "exit_signal", "exit_reason"])
    log.warning("flatten exit strategy=%s root=%s signal=%s state=%s", pos.strategy.name, pos.instrument.root,
                sig.key, sig.state)
    return sig


def cancel_unsent_entries(reason: str, control: str) -> list[str]:
    """Entries decided but not sent yet are cancelled (an entry already on its way is caught at its send)."""
    keys = []
    for sig in Signal.objects.filter(state__in=UNSENT, action=Signal.Action.BUY):
        if Signal.objects.filter(pk=sig.pk, state__in=UNSENT).update(state=State.BLOCKED, state_reason=reason[:300],
                                                                     risk_control=control):
            cancel_unsent_entry(sig, reason)
            keys.append(sig.key)
    return keys


def flatten(event: KillSwitchEvent, kill: KillState, *, now: datetime | None = None) -> list[Signal]:
    """Flatten every strategy: one exit for each position the broker holds and no exit is on its way for."""
    now = now or timezone.now()
    out = []
    rows = (Position.objects.select_for_update(of=("self",)).filter(state=PState.OPEN, exit_signal__isnull=True,
                                                        entry_signal__state=State.SENT)
            .select_related("strategy", "instrument"))
    for pos in rows:
        out.append(flatten_position(pos, event, kill, now=now))
    if not out and not Position.objects.open().exists():
        _maybe_flat()
    return out


def latest_flatten() -> KillSwitchEvent | None:
    return KillSwitchEvent.objects.filter(mode=Mode.FLATTEN).order_by("-at", "-id").first()


def after_entry_sent(sig: Signal, kill: KillState, *, now: datetime | None = None) -> Signal | None:
    """An entry that was already on its way when flatten was pulled opens a position: flatten it too."""
    if kill.mode != Mode.FLATTEN:
        return None
    event = latest_flatten()
    pos = Position.objects.select_for_update(of=("self",)).filter(entry_signal=sig, state=PState.OPEN,
                                                      exit_signal__isnull=True).select_related(
        "strategy", "instrument").first()
    if event is None or pos is None:
        return None
    return flatten_position(pos, event, kill, now=now or timezone.now())


def _maybe_flat() -> None:
    """One alert for a flatten once no position is open anywhere."""
    event = latest_flatten()
    if event is None or Position.objects.open().exists():
        return
    enqueue("info", "Flatten complete: every position is flat",
            body=f"Flatten pulled by {event.actor} at {event.at:%Y-%m-%d %H:%M:%S} UTC: every exit was delivered.",
            dedupe_key=f"flatten-complete:{event.pk}")


# --- the killswitch's consequences -------------------------------------------------------------------
def apply_mode(event: KillSwitchEvent, kill: KillState) -> dict:
    """What a killswitch change does to orders, in the transaction that changed it (see README's table)."""
    out = {"cancelled": [], "flatten": [], "released": []}
    entry = order_decision("buy", kill)
    if not entry.allowed:
        out["cancelled"] = cancel_unsent_entries(f"{entry.reason} (decided before the change, never sent)",
                                                 entry.control)
    if event.mode == Mode.FLATTEN:
        out["flatten"] = [s.key for s in flatten(event, kill)]
    out["released"] = release_held_exits(kill)
    return out


def exit_state(pos: Position) -> str:
    """How far a position's exit is, in words for the dashboard."""
    sig = pos.exit_signal
    if pos.state == PState.EXIT_HELD:
        return "exit held (halt)"
    if sig is None:
        return "—"
    return {State.PENDING: "exit pending", State.SENDING: "exit sending", State.SENT: "exit delivered"}.get(
        sig.state, sig.get_state_display())


__all__ = ["apply_mode", "book_exit", "book_filled_exits", "cancel_unsent_entry", "exit_delivered", "exit_not_delivered",
           "exit_state", "flatten", "hold_exit", "release_held_exits"]
