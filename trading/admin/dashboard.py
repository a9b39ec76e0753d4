"""The operator dashboard: an admin page (login required) with P&L, positions, health and the killswitch.

Seeing it needs view permission on trades and positions; changing the killswitch from it needs
`trading.change_killswitch` (anyone else gets 403, and the attempt is logged). Every figure comes
from one bounded query (indexed, aggregated in the database), so the page stays fast with a long
trade history. Unrealised P&L uses the last 1-minute close the hub publishes in Redis; when Redis
is unreachable the page says so instead of guessing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django_celery_beat.models import PeriodicTask
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from strategies.calendar import session_close, session_open
from strategies.calendar import session_date as cme_session_date
from trading.execution.exits import exit_state, latest_flatten
from trading.health.heartbeat import is_fresh
from trading.marketdata.clock import describe, market_now
from trading.health.monitor import manager_alive
from trading.models import trade_pnl
from trading.admin.markets import MARKED_TRADES, market_panels
from trading.charts import bar_chart, line_chart
from trading.performance import TOTAL, Figures, curves, daily_rows, performance
from trading import supervisor
from trading.models import (DailyRiskState, Heartbeat, KillSwitch, KillSwitchEvent, Notification, Position, Signal,
                            Strategy, Trade)
from trading.execution.sender import registry_key as sender_key
from trading.redis_client import get_redis, key
from trading.risk.killswitch import current_mode, env_override, set_mode

log = logging.getLogger(__name__)
CHICAGO = ZoneInfo("America/Chicago")
VIEW_PERMISSIONS = ("trading.view_trade", "trading.view_position")
DAILY_BARS = 60  # sessions in the daily P&L chart
BEAT_FRESH_SECONDS = 120  # the beat's most frequent schedules run every few seconds (written at once)
CHANGE_KILLSWITCH = "trading.change_killswitch"


class KillSwitchControl(forms.Form):
    mode = forms.ChoiceField(choices=KillSwitch.Mode.choices)
    reason = forms.CharField(max_length=300, strip=True)
    confirm = forms.BooleanField(required=True, label="I confirm this change")


@dataclass
class StrategyRow:
    strategy: Strategy
    today_pnl: Decimal
    today_trades: int
    stopped: bool
    open_positions: list
    unrealized: Decimal | None
    figures: Figures


def last_prices(roots: list[str]) -> dict[str, float] | None:
    if not roots:
        return {}
    try:
        values = get_redis().mget([key("last", root) for root in roots])
    except Exception:  # noqa: BLE001 — the page must render without Redis
        return None
    return {root: float(json.loads(v)["close"]) for root, v in zip(roots, values) if v}


def unrealized_pnl(position: Position, price: float | None) -> Decimal | None:
    if price is None:
        return None
    # Unrealised: the trade's P&L if it closed at `price`, before commissions.
    return trade_pnl(position.entry_price, Decimal(str(price)), position.point_value, position.size, Decimal("0"))


@dataclass
class ProcessRow:
    name: str
    state: str
    ok: bool
    pid: int | None = None
    detail: str = ""
    beat: Heartbeat | None = None


def processes(now, beats: list[Heartbeat], strategies: list[Strategy]) -> tuple[list[ProcessRow], str]:
    """Every program supervisord runs, each with its heartbeat where it has one (hub, workers); the order
    sender of each enabled strategy (a child of its worker, alive while it renews its registry key in
    Redis); Celery beat by the last schedule it ran; heartbeats of processes supervisord does not run here.
    Second: why supervisord could not be asked ("" when it answered)."""
    by_program = {"hub": "hub", **{f"worker-{s.name}": f"worker:{s.name}" for s in strategies}}
    beats_of = {hb.process: hb for hb in beats}
    listed = supervisor.programs()
    rows, seen = [], set()
    for program in listed if isinstance(listed, list) else []:
        beat = beats_of.get(by_program.get(program["group"], ""))
        seen.add(beat and beat.process)
        running = program["state"] == "RUNNING"
        rows.append(ProcessRow(program["name"], program["state"].lower(), running and (beat is None or beat.fresh),
                               program["pid"], program["description"], beat))
    for hb in beats:
        if hb.process not in seen:
            rows.append(ProcessRow(hb.process, hb.state, hb.fresh, detail="heartbeat only", beat=hb))
    try:
        tokens = get_redis().mget([sender_key(s.name) for s in strategies if s.enabled]) if strategies else []
    except Exception:  # noqa: BLE001 — the page must render without Redis
        tokens = None
    for s, token in zip([s for s in strategies if s.enabled], tokens or []):
        pid = token.split(":")[1] if token and token.count(":") >= 2 else None
        rows.append(ProcessRow(f"sendorders ({s.name})", "running" if token else "absent", bool(token),
                               int(pid) if pid and pid.isdigit() else None,
                               f"order sender of worker-{s.name}" if token else
                               "no sender registered in Redis: Celery's safety net sends its due orders"))
    if tokens is None:
        rows.append(ProcessRow("order senders", "unknown", False, detail="Redis unreachable"))
    last_run = PeriodicTask.objects.filter(enabled=True).aggregate(last=Max("last_run_at"))["last"]
    rows.append(ProcessRow("celery beat (schedules)", "ran" if last_run else "no run yet",
                           bool(last_run and (now - last_run).total_seconds() < BEAT_FRESH_SECONDS),
                           detail=f"last schedule run {last_run:%Y-%m-%d %H:%M:%S} UTC" if last_run else ""))
    return rows, "" if isinstance(listed, list) else listed


def recent_trades(n: int) -> list[Trade]:
    """The last n trades. Keys first: with no index on (-exit_time, -id) the database sorts every
    trade, and sorting the keys is many times cheaper than sorting whole rows (SQLite, 100k: ~5 ms vs ~50 ms)."""
    keys = list(Trade.objects.values_list("pk", flat=True)[:n])
    return list(Trade.objects.filter(pk__in=keys).select_related("strategy"))


def dashboard_context(now=None, market=None, alert_kind: str | None = None) -> dict:
    """`now`: the wall clock (heartbeats are fresh or stale by it); `market`: the market's clock, whose
    session is "today" (trading.marketdata.clock: the wall clock live, the latest bar in a replay)."""
    now = now or timezone.now()
    market = market or market_now(now)
    today: date = cme_session_date(market)
    strategies = list(Strategy.objects.order_by("name"))
    stops = {s.strategy_id: s for s in DailyRiskState.objects.filter(session_date=today)}
    positions = list(Position.objects.open().select_related("instrument", "strategy", "exit_signal"))
    daily = daily_rows()
    figures, total = performance(strategies, positions, today, rows=daily)
    equity, by_session = curves(strategies, daily, today)
    panels, _ = market_panels(market, today)
    prices = last_prices(sorted({p.instrument.root for p in positions}))
    rows = []
    for s in strategies:
        mine = [p for p in positions if p.strategy_id == s.pk]
        for p in mine:
            p.last_price = None if prices is None else prices.get(p.instrument.root)
            p.unrealized = unrealized_pnl(p, p.last_price)
            p.exit_state = exit_state(p)
        known = [p.unrealized for p in mine if p.unrealized is not None]
        rows.append(StrategyRow(
            strategy=s, today_pnl=figures[s.pk].pnl_session, today_trades=figures[s.pk].trades_session,
            stopped=bool(stops.get(s.pk) and stops[s.pk].stopped), open_positions=mine,
            unrealized=sum(known, Decimal("0")) if mine and len(known) == len(mine) else None, figures=figures[s.pk]))
    beats = list(Heartbeat.objects.order_by("process"))
    for hb in beats:
        hb.fresh = is_fresh(hb, now)
    managers = {hb.process: hb for hb in beats}
    process_rows, supervisor_note = processes(now, beats, strategies)
    for row in rows:
        if not manager_alive(managers.get(f"worker:{row.strategy.name}"), now):
            for p in row.open_positions:
                p.exit_state = f"UNMANAGED (no {row.strategy.name} worker) · {p.exit_state}"
    return {
        "now": now, "session_date": today, "market_now": market,
        # As text: a template's date filter would show an aware time in UTC again.
        "session_hours": f"{session_open(today).astimezone(CHICAGO):%a %m-%d %H:%M} to "
                         f"{session_close(today).astimezone(CHICAGO):%a %m-%d %H:%M} Chicago", "market_clock": describe(market), "rows": rows,
        "total": total, "prices_unavailable": prices is None,
        "heartbeats": beats,
        "killswitch_mode": KillSwitch.Mode(current_mode()).label, "killswitch_forced": env_override() is not None,
        "killswitch_events": list(KillSwitchEvent.objects.all()[:5]),
        "recent_trades": recent_trades(15),
        "alerts": list((Notification.objects.filter(kind=alert_kind) if alert_kind else Notification.objects.all())
                       .select_related("strategy")[:15]),
        "alert_kinds": Notification.Kind.choices, "alert_kind": alert_kind,
        "chart": line_chart(equity, shade=TOTAL if TOTAL in equity else None, label="equity by session",
                            css="equity equity-chart"),
        "daily_chart": bar_chart(by_session[-DAILY_BARS:], label="P&L per session (live strategies)",
                                 css="daily-chart"),
        "daily_sessions": min(len(by_session), DAILY_BARS),
        "panels": panels, "marked_trades": MARKED_TRADES,
        "processes": process_rows, "supervisor_note": supervisor_note,
        "flatten": flatten_status(),
    }


def flatten_status() -> dict | None:
    """The last flatten and the state of each exit it emitted (newest flatten only)."""
    event = latest_flatten()
    if event is None:
        return None
    exits = list(Signal.objects.filter(reason="flatten", bar_time=event.at.replace(microsecond=0)).select_related(
        "strategy", "instrument").order_by("strategy__name", "instrument__root"))
    return {"event": event, "exits": exits, "done": bool(exits) and all(s.state == Signal.State.SENT for s in exits)}


def alert_kind(value: str | None) -> str | None:
    """The alerts' kind filter of the page's address; anything that is not a kind shows every kind."""
    return value if value in Notification.Kind.values else None


def dashboard_view(request, site=admin.site):
    user = request.user
    if request.method == "POST" and not user.has_perm(CHANGE_KILLSWITCH):
        log.warning("killswitch change refused user=%s mode=%r: needs %s", user.get_username(),
                    request.POST.get("mode", "")[:16], CHANGE_KILLSWITCH)
        raise PermissionDenied("changing the killswitch needs its change permission")
    if not user.has_perms(VIEW_PERMISSIONS):
        log.warning("dashboard refused user=%s: needs view permission on trades and positions", user.get_username())
        raise PermissionDenied("the dashboard needs view permission on trades and positions")
    form = KillSwitchControl(request.POST or None, initial={"mode": current_mode()})
    if request.method == "POST" and form.is_valid():
        event = set_mode(form.cleaned_data["mode"], form.cleaned_data["reason"], actor=request.user.get_username(),
                         user=request.user)
        messages.warning(request, f"Killswitch {event.previous_mode} → {event.mode} (recorded for {event.actor})")
        return redirect("admin:dashboard")
    context = {**site.each_context(request), "title": "Dashboard", "form": form,
               "can_change_killswitch": user.has_perm(CHANGE_KILLSWITCH),
               **dashboard_context(alert_kind=alert_kind(request.GET.get("kind")))}
    template = "admin/trading/dashboard_body.html" if request.GET.get("partial") else "admin/trading/dashboard.html"
    return TemplateResponse(request, template, context)


def landing_view(request, site=admin.site):
    """Where a login lands: the dashboard for trading staff, the admin index for anyone else."""
    return redirect("admin:dashboard" if request.user.has_perms(VIEW_PERMISSIONS) else "admin:index")


def dashboard_urls(site):
    return [path("dashboard/", site.admin_view(lambda request: dashboard_view(request, site)), name="dashboard"),
            path("landing/", site.admin_view(lambda request: landing_view(request, site)), name="landing")]
