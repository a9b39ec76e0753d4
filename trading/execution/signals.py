"""Writing a signal row: the one place an order (or a refused entry) gets its key, payload and expiry.

The key is deterministic (strategy, instrument, bar time, action), so writing the same decision
twice — a step re-run after a crash, a flatten repeated — returns the row already there.
"""
from __future__ import annotations

import math
from datetime import datetime

from django.db import connection

from strategies.calendar import next_trade_date, next_window, session_close, session_date
from strategies.pnl import price
from trading.execution.traderspost import order_payload
from trading.models import Instrument, Signal, Strategy, signal_key


_BY_KEY = f'SELECT id FROM {Signal._meta.db_table} WHERE "key" = %s'


def day_order_expiry(decided: datetime, now: datetime, root: str | None = None) -> datetime:
    """When a `day` order decided at `decided` (market time) stops being valid, on the clock `now` runs on.

    It is good until the close of the session it fills in (a decision at or after the close fills at
    the next session's open) — the product's own close when `root` is known, an early close included —
    counted from when it was decided: the same validity live, and in a replay of past data instead of
    expiring at once."""
    if root is not None:
        close = next_window(root, decided)[1]
    else:
        day = session_date(decided)
        if session_close(day) <= decided:
            day = next_trade_date(day, inclusive=False)
        close = session_close(day)
    return now + (close - decided)


def write_signal(strategy: Strategy, instrument: Instrument, *, ticker: str, contract: str, bar_time: datetime,
                 action: str, quantity: int, signal_price: float, reason: str, decided: datetime, now: datetime,
                 ibs: float | None = None, ml: float | None = None, state: str = Signal.State.PENDING,
                 state_reason: str = "", risk_control: str = "", fill: str = Signal.Fill.NEXT_OPEN, params=None,
                 key: str | None = None, ml_threshold: float | None = None, features: dict | None = None) -> Signal:
    """The signal row of one decision (created once; an existing key returns the row already there, marked
    `was_there`)."""
    key = key or signal_key(strategy.name, instrument.root, bar_time, action)
    with connection.cursor() as cursor:  # plain SQL: asked for every order on its path, nearly always absent
        cursor.execute(_BY_KEY, [key])
        found = cursor.fetchone()
    if found:
        existing = Signal.objects.get(pk=found[0])
        existing.was_there = True  # written before (a step re-run, a flatten repeated): nothing new made of it
        return existing
    ibs = None if ibs is None or math.isnan(ibs) else ibs
    ml = None if ml is None or math.isnan(ml) else ml
    extras = {"strategy": strategy.name, "signal_id": key, "bar_time": bar_time.isoformat(),
              "ibs": None if ibs is None else round(ibs, 4), "ml_score": ml, "reason": reason}
    # Entries carry broker-side protection relative to the actual fill, so it holds if the appliance dies.
    protect = action == "buy" and params is not None
    payload = order_payload(
        ticker=ticker, action=action, quantity=quantity, signal_price=float(price(signal_price)),
        time_in_force=strategy.time_in_force, extras=extras,
        stop_loss_percent=params.stop_loss_pct if protect else None,
        take_profit_percent=params.take_profit_pct if protect else None)
    row = Signal.objects.create(
        key=key, strategy=strategy, instrument=instrument, contract=contract, bar_time=bar_time, action=action,
        quantity=quantity, signal_price=price(signal_price), reason=reason, ibs=ibs, ml_score=ml,
        ml_threshold=ml_threshold, features=features, payload=payload,
        state=state, state_reason=state_reason[:300], risk_control=risk_control, fill=fill,
        expires_at=day_order_expiry(decided, now, instrument.root))
    row.was_there = False
    return row
