"""The worker's books follow the database: each instrument's book holds what its position row says.

An entry the broker never got leaves nothing; an exit held, failed or flattened elsewhere is taken
over; a position the broker still holds is never forgotten. The strategy library's books are memory;
the position rows are the truth, and this is where the one is made to match the other.
"""
from __future__ import annotations

import logging
import math

from django.db import connection

from strategies.ibs import EntrySignal, ExitSignal
from strategies.ibs import Position as BookPosition
from trading.models import Instrument, Position, Signal

log = logging.getLogger(__name__)
FLAT = (False, False, False, False)


def expected_shape(pos: Position | None) -> tuple[bool, bool, bool, bool]:
    """What an instrument's book must hold for managed position row `pos`: (entry awaiting its fill,
    position, its exit held or already on its way at the market, an exit awaiting the next open).
    An EXITED position (filled in the model, the broker's answer still to come) is out of the book."""
    if pos is None:
        return FLAT
    if not pos.filled:
        return True, False, False, False
    ex = pos.exit_signal
    if pos.state == Position.State.OPEN:
        return False, True, False, False
    if pos.state == Position.State.CLOSING and ex is not None and ex.fill == Signal.Fill.NEXT_OPEN:
        return False, True, False, True  # decided at a close: the book fills it at the next open
    return False, True, True, False  # held through a halt, or sent at the market (flatten, released)


def managed_rows(strategy, *, lock: bool = False, instruments: dict | None = None) -> dict[str, Position]:
    """`strategy`'s managed position rows by root, each with its instrument and exit signal (its entry's is
    read only when a book is restored from it); `lock`: locked for the caller's transaction (a step's). Read
    every hour on the order's path: the rows in one plain statement, no join; `strategy` is set, not read,
    and so is an instrument found in `instruments` (id → row: the worker's legs'), only others are read."""
    quote, states = connection.ops.quote_name, Position.MANAGED_STATES
    sql = (f"SELECT * FROM {quote(Position._meta.db_table)} WHERE {quote('strategy_id')} = %s AND "
           f"{quote('state')} IN ({', '.join(['%s'] * len(states))})")
    if lock and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    rows = list(Position.objects.raw(sql, [strategy.pk, *states]))
    known = instruments or {}
    missing = {pos.instrument_id for pos in rows} - known.keys()
    instruments = {**known, **Instrument.objects.in_bulk(missing)} if missing else known
    exits = Signal.objects.in_bulk([pos.exit_signal_id for pos in rows if pos.exit_signal_id])
    out = {}
    for pos in rows:
        pos.strategy, pos.instrument = strategy, instruments[pos.instrument_id]
        pos.exit_signal = exits.get(pos.exit_signal_id)
        out[pos.instrument.root] = pos
    return out


def reconcile(portfolio, strategy, params: dict, rows: dict[str, Position] | None = None,
              instruments: dict | None = None) -> dict[str, str]:
    """Make every book of `portfolio` hold what `strategy`'s managed position rows say (`rows`: read already,
    by managed_rows, else read here with `instruments`); returns the contract of each root's position
    (root → raw symbol, '' when none)."""
    rows = managed_rows(strategy, instruments=instruments) if rows is None else rows
    for root in rows:
        if root not in portfolio.books:
            log.error("open position in %s which is not a managed instrument; it is left to the operator", root)
    for root, book in portfolio.books.items():
        pos = rows.get(root)
        want = expected_shape(pos)
        have = (book.pending_entry is not None, book.position is not None,
                bool(book.position and book.position.exit_held), book.pending_exit is not None)
        if want == have:
            continue
        if have != FLAT:
            log.warning("book follows the database strategy=%s root=%s book=%s database=%s", strategy.name, root,
                        have, want)
        book.pending_entry = book.pending_entry_ml = book.pending_exit = None
        book.position = None
        if pos is not None and want != FLAT:
            _restore(book, pos, want, params[root])
    return {root: pos.contract for root, pos in rows.items() if root in portfolio.books}


def _restore(book, pos: Position, want: tuple, params) -> None:
    sig = pos.entry_signal
    if not pos.filled:
        book.pending_entry = EntrySignal(sig.bar_time, float(sig.signal_price), pos.ibs_entry or 0.0)
        book.pending_entry_ml = pos.ml_score
        return
    entry = float(pos.entry_price)
    stop, target = pos.stop_price, pos.target_price
    if stop is None or target is None:  # a row edited by hand: the strategy's own levels, said loudly
        stop = entry * (1 - params.stop_loss_pct / 100) if stop is None else stop
        target = entry * (1 + params.take_profit_pct / 100) if target is None else target
        log.error("open position %s had no stop/target; using the strategy's: stop=%s target=%s",
                  pos.instrument.root, stop, target)
    book.position = BookPosition(pos.entry_time, entry, float(stop), float(target), pos.ibs_entry or 0.0,
                                 pos.ml_score, pos.bars_held, pos.signal_time, exit_held=want[2])
    if want[3]:
        ex = pos.exit_signal
        book.pending_exit = ExitSignal(ex.bar_time, float(ex.signal_price), ex.reason,
                                       ex.ibs if ex.ibs is not None else math.nan)
