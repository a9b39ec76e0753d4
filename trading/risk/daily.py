"""Daily stop: a strategy whose realised P&L for the CME trading day reaches −daily_stop_loss takes
no new entries for the rest of that day. The state is a row per strategy and session date, so it
survives restarts, and a new session starts clean; reading it fails closed (stopped).
"""
from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from trading.models import DailyRiskState, Strategy
from trading.notify.outbox import enqueue

log = logging.getLogger(__name__)


def record_realized(strategy: Strategy, session_date: date, pnl: Decimal, *, now: datetime | None = None) -> DailyRiskState:
    """Add a closed trade's P&L to the day; trip the daily stop (alerting once) when it is reached."""
    now = now or timezone.now()
    with transaction.atomic():
        DailyRiskState.objects.get_or_create(strategy=strategy, session_date=session_date)
        DailyRiskState.objects.filter(strategy=strategy, session_date=session_date).update(
            realized_pnl=F("realized_pnl") + Decimal(pnl), trades=F("trades") + 1)
        state = DailyRiskState.objects.select_for_update().get(strategy=strategy, session_date=session_date)
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


def entries_stopped(strategy: Strategy, session_date: date) -> tuple[bool, str]:
    """Whether the daily stop blocks entries today, and why; unreadable → stopped (fail closed)."""
    try:
        state = DailyRiskState.objects.filter(strategy=strategy, session_date=session_date).first()
    except Exception as exc:  # noqa: BLE001
        return True, f"daily risk state unreadable ({exc.__class__.__name__}); entries blocked"
    if state and state.stopped:
        return True, f"daily stop: {state.stop_reason}"
    return False, ""


def open_session(session_date: date) -> list[str]:
    """At the session boundary: start each strategy's day clean (idempotent)."""
    opened = []
    for strategy in Strategy.objects.all():
        _, created = DailyRiskState.objects.get_or_create(strategy=strategy, session_date=session_date)
        if created:
            opened.append(strategy.name)
    if opened:
        log.info("daily risk reset session=%s strategies=%s", session_date, opened)
    return opened
