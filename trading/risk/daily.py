"""Daily stop: a strategy whose realised P&L for the CME trading day reaches −daily_stop_loss takes
no new entries for the rest of that day. The state is a row per strategy and session date, so it
survives restarts, and a new session starts clean; reading it fails closed (stopped).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from strategies.calendar import previous_trade_date, session_close, session_date
from trading.models import DailyRiskState, Position, RiskControl, Strategy, Trade
from trading.delivery.alerts import enqueue
from trading.risk.decision import ALLOW, RiskDecision, block_entry

log = logging.getLogger(__name__)


def record_realized(strategy: Strategy, session_date: date, pnl: Decimal, *, now: datetime | None = None) -> DailyRiskState:
    """Add a closed trade's P&L to the day; trip the daily stop (alerting once) when it is reached."""
    now = now or timezone.now()
    pnl = Decimal(pnl)
    day = DailyRiskState.objects.filter(strategy=strategy, session_date=session_date)
    add = _counted(pnl, 1)
    with transaction.atomic(savepoint=False):  # part of the caller's transaction (a booking) when it has one
        if not day.update(**add):  # the day's first trade: its row made first (by whoever gets there first)
            DailyRiskState.objects.get_or_create(strategy=strategy, session_date=session_date)
            day.update(**add)
        state = day.select_for_update().get()
        limit = Decimal(strategy.daily_stop_loss)
        if not state.stopped and state.realized_pnl <= -limit:
            state.stopped, state.stopped_at = True, now
            state.stop_reason = f"daily P&L {state.realized_pnl} reached the stop of -{limit}"
            state.save(update_fields=["stopped", "stopped_at", "stop_reason"])
            enqueue("emergency", f"Daily stop hit: {strategy.name}", strategy=strategy,
                    body=f"{state.stop_reason}; no new entries until the next CME session ({session_date} closed).",
                    fields={"P&L $": str(state.realized_pnl), "limit $": str(limit), "session": str(session_date)},
                    dedupe_key=f"daily-stop:{strategy.name}:{session_date}")
            log.warning("daily stop hit strategy=%s session=%s pnl=%s", strategy.name, session_date, state.realized_pnl)
    return state


def _counted(pnl: Decimal, sign: int) -> dict:
    """The day's summary columns with one trade of `pnl` added (sign 1) or taken out (sign -1)."""
    return {"realized_pnl": F("realized_pnl") + sign * pnl, "trades": F("trades") + sign,
            "wins": F("wins") + sign * int(pnl > 0), "won": F("won") + sign * max(pnl, Decimal(0)),
            "lost": F("lost") + sign * min(pnl, Decimal(0))}


def unrecord_realized(strategy: Strategy, session_date: date, pnl: Decimal) -> None:
    """Take a voided trade back out of its day's P&L (a daily stop it tripped stays for the day: fail safe)."""
    DailyRiskState.objects.filter(strategy=strategy, session_date=session_date).update(**_counted(Decimal(pnl), -1))


_STOPPED = (f"SELECT stopped, stop_reason FROM {DailyRiskState._meta.db_table} "
            "WHERE strategy_id = %s AND session_date = %s")


def entries_stopped(strategy: Strategy, session_date: date) -> RiskDecision:
    """The daily stop's answer for an entry in `session_date`; unreadable → blocked (fail closed). Read in a
    savepoint: a read that fails inside the worker's step leaves the step's transaction usable."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # plain SQL: read on the order's path
            cursor.execute(_STOPPED, [strategy.pk, connection.ops.adapt_datefield_value(session_date)])
            state = cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 — any failure to read must fail closed
        log.error("daily risk state unreadable strategy=%s (%s); entries blocked", strategy.name,
                  exc.__class__.__name__)
        return block_entry(RiskControl.UNREADABLE,
                           f"daily risk state unreadable ({exc.__class__.__name__}); entries blocked")
    if state and state[0]:
        return block_entry(RiskControl.DAILY_STOP, f"daily stop: {state[1]}")
    return ALLOW


def open_session(session_date: date) -> list[str]:
    """At the session boundary: start each strategy's day clean (idempotent); a daily stop of the
    previous session is lifted with one info alert per strategy."""
    opened = []
    previous = previous_trade_date(session_date)
    for strategy in Strategy.objects.all():
        _, created = DailyRiskState.objects.get_or_create(strategy=strategy, session_date=session_date)
        if created:
            opened.append(strategy.name)
        if DailyRiskState.objects.filter(strategy=strategy, session_date=previous, stopped=True).exists():
            enqueue("info", f"Daily stop lifted: {strategy.name}", strategy=strategy,
                    body=f"CME session {session_date} opened; entries allowed again.",
                    dedupe_key=f"daily-stop-lifted:{strategy.name}:{session_date}")
    if opened:
        log.info("daily risk reset session=%s strategies=%s", session_date, opened)
    return opened


def session_boundary(now: datetime | None = None) -> dict:
    """The Celery task's body: open the session `now` belongs to (17:00 America/Chicago onwards)."""
    now = now or timezone.now()
    day = session_date(now)
    return {"session_date": day.isoformat(), "opened": open_session(day)}


def follow_market(now: datetime) -> dict:
    """A replay's sessions (PINEOPS_MARKET_CLOCK=data): the market's clock passes 17:00 and 16:00 Chicago far
    faster than the wall clock's crontabs, so every few seconds the session `now` belongs to is opened (the
    daily stop reset) and the summary of a session that has just closed is queued. Both are idempotent: a
    session opened, a summary queued, is not again."""
    return {**session_boundary(now), "summaries": daily_summary(now)}


def daily_summary(now: datetime | None = None) -> list[str]:
    """After the close: one summary per strategy (trades, P&L, open positions) for the session that
    ended; nothing on a day without a session; queued once per strategy and day."""
    now = now or timezone.now()
    day = session_date(now - timedelta(hours=1))  # run after 16:00 CT: the hour before is the session
    if session_close(day) > now:
        return []
    sent = []
    for strategy in Strategy.objects.all():
        trades = Trade.objects.filter(strategy=strategy, session_date=day)
        agg = trades.aggregate(n=Count("id"), total=Sum("pnl"), wins=Count("id", filter=Q(pnl__gt=0)))
        open_rows = Position.objects.open().filter(strategy=strategy).select_related("instrument")
        open_list = ", ".join(f"{p.instrument.root} ×{p.size} @ {p.entry_price.normalize()}" for p in open_rows) or "none"
        state = DailyRiskState.objects.filter(strategy=strategy, session_date=day).first()
        if not strategy.enabled and not agg["n"] and open_list == "none":
            continue
        fields = {"Trades": str(agg["n"]), "Winners": str(agg["wins"]), "P&L $": f"{agg['total'] or Decimal(0):.2f}",
                  "Open positions": open_list, "Daily stop": "hit" if state and state.stopped else "no"}
        if enqueue("summary", f"{strategy.name}: session {day} summary", strategy=strategy, fields=fields,
                   dedupe_key=f"daily-summary:{strategy.name}:{day}"):
            sent.append(strategy.name)
    log.info("daily summary session=%s strategies=%s", day, sent)
    return sent
