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

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from strategies.calendar import session_date as cme_session_date
from trading.execution.exits import exit_state, latest_flatten
from trading.health.heartbeat import is_fresh
from trading.marketdata.clock import describe, market_now
from trading.health.monitor import manager_alive
from trading.models import trade_pnl
from trading.performance import Figures, performance
from trading.models import (DailyRiskState, Heartbeat, KillSwitch, KillSwitchEvent, Notification, Position, Signal,
                            Strategy, Trade)
from trading.redis_client import get_redis, key
from trading.risk.killswitch import current_mode, env_override, set_mode

log = logging.getLogger(__name__)
VIEW_PERMISSIONS = ("trading.view_trade", "trading.view_position")
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


def equity_curve(days: int = 120) -> dict[str, list[tuple[str, float]]]:
    """Cumulative realised P&L per strategy by CME session date (last `days` sessions)."""
    rows = (Trade.objects.values("strategy__name", "session_date").annotate(pnl=Sum("pnl"))
            .order_by("strategy__name", "session_date"))
    curves: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        series = curves.setdefault(row["strategy__name"], [])
        total = (series[-1][1] if series else 0.0) + float(row["pnl"])
        series.append((row["session_date"].isoformat(), round(total, 2)))
    return {name: series[-days:] for name, series in curves.items()}


def svg_chart(curves: dict[str, list[tuple[str, float]]], width=720, height=220) -> SafeString:
    """A small inline SVG line chart (no external scripts: the appliance has no CDN). Every value placed
    in it is escaped where it is written (a strategy's name may hold anything the ORM let through), so
    the result is safe to insert as it is."""
    points = [v for series in curves.values() for _, v in series]
    if not points:
        return SafeString("")
    lo, hi = min(points + [0.0]), max(points + [0.0])
    span = (hi - lo) or 1.0
    dates = sorted({d for series in curves.values() for d, _ in series})
    x_of = {d: 40 + i * (width - 60) / max(len(dates) - 1, 1) for i, d in enumerate(dates)}
    y = lambda v: 10 + (hi - v) * (height - 30) / span  # noqa: E731
    colours = ["#2b7bb9", "#d9822b", "#3a9d23", "#b93a3a"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="equity" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="equity curve">',
             f'<line x1="40" x2="{width - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999" stroke-dasharray="4"/>',
             f'<text x="2" y="{y(hi) + 4:.1f}" font-size="10">{hi:,.0f}</text>',
             f'<text x="2" y="{y(lo) + 4:.1f}" font-size="10">{lo:,.0f}</text>']
    for i, (name, series) in enumerate(sorted(curves.items())):
        coords = " ".join(f"{x_of[d]:.1f},{y(v):.1f}" for d, v in series)
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        parts.append(f'<text x="{50 + 90 * i}" y="{height - 4}" font-size="11" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — numbers and escaped names only


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
    daily = {s.strategy_id: s for s in DailyRiskState.objects.filter(session_date=today)}
    positions = list(Position.objects.open().select_related("instrument", "strategy", "exit_signal"))
    figures, total = performance(strategies, positions, today)
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
            stopped=bool(daily.get(s.pk) and daily[s.pk].stopped), open_positions=mine,
            unrealized=sum(known, Decimal("0")) if mine and len(known) == len(mine) else None, figures=figures[s.pk]))
    beats = list(Heartbeat.objects.order_by("process"))
    for hb in beats:
        hb.fresh = is_fresh(hb, now)
    managers = {hb.process: hb for hb in beats}
    for row in rows:
        if not manager_alive(managers.get(f"worker:{row.strategy.name}"), now):
            for p in row.open_positions:
                p.exit_state = f"UNMANAGED (no {row.strategy.name} worker) · {p.exit_state}"
    return {
        "now": now, "session_date": today, "market_now": market, "market_clock": describe(market), "rows": rows,
        "total": total, "prices_unavailable": prices is None,
        "heartbeats": beats,
        "killswitch_mode": KillSwitch.Mode(current_mode()).label, "killswitch_forced": env_override() is not None,
        "killswitch_events": list(KillSwitchEvent.objects.all()[:5]),
        "recent_trades": recent_trades(15),
        "alerts": list((Notification.objects.filter(kind=alert_kind) if alert_kind else Notification.objects.all())
                       .select_related("strategy")[:15]),
        "alert_kinds": Notification.Kind.choices, "alert_kind": alert_kind,
        "chart": svg_chart(equity_curve()),
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
