"""Performance figures of the dashboard, per strategy and for all live strategies together, from the books.

The daily summary (a row per strategy and CME session, kept with each trade booked) gives each strategy's
realised P&L per session; everything else is worked out
from those daily rows, over the sessions from the first one traded up to the market's current session
(sessions without a trade count as 0, as they do in an account):
- P&L all time, this session, this week (the sessions of the current session's Monday-to-Friday week);
- trades, win rate (trades with P&L > 0), profit factor (gross win / gross loss);
- max drawdown: the largest fall of the cumulative daily P&L from its running peak (starting at 0);
- Sharpe: mean / standard deviation (n − 1) of the daily P&L × √252;
- open risk: what the open positions lose if each hits its stop (before commissions).
A paper strategy has its own row and is never in the live total.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Count, Q, Sum

from strategies.calendar import next_trade_date
from trading.models import DailyRiskState, Position, Strategy, Trade

ZERO = Decimal("0.00")


@dataclass
class Figures:
    pnl_all: Decimal
    pnl_session: Decimal
    pnl_week: Decimal
    trades_session: int
    trades: int
    wins: int
    win_rate: float | None  # percent
    profit_factor: float | None  # None: no losing trade
    max_drawdown: Decimal
    sharpe: float | None  # None: fewer than two sessions, or no variation
    open_risk: Decimal | None  # None: an open position has no stop


@dataclass
class Day:
    pnl: Decimal
    trades: int
    wins: int
    won: Decimal
    lost: Decimal


def daily_rows() -> dict[int, dict[date, Day]]:
    """strategy id → session → that session's realised P&L, trades, winners, gross win and gross loss: the
    daily summary kept with each trade booked (DailyRiskState), a row per strategy and session, so the
    dashboard reads as fast with a million trades as with a thousand."""
    rows = (DailyRiskState.objects.filter(trades__gt=0).order_by()
            .values_list("strategy_id", "session_date", "realized_pnl", "trades", "wins", "won", "lost"))
    out: dict[int, dict[date, Day]] = {}
    for strategy, day, pnl, n, wins, won, lost in rows:
        out.setdefault(strategy, {})[day] = Day(cents(pnl), n, wins, cents(won), cents(lost))
    return out


def daily_rows_from_trades() -> dict[int, dict[date, Day]]:
    """The same from the trades themselves (every row read): what the summary must always equal."""
    rows = (Trade.objects.values("strategy_id", "session_date").order_by()
            .annotate(total=Sum("pnl"), n=Count("id"), wins=Count("id", filter=Q(pnl__gt=0)),
                      won=Sum("pnl", filter=Q(pnl__gt=0)), lost=Sum("pnl", filter=Q(pnl__lt=0))))
    out: dict[int, dict[date, Day]] = {}
    for r in rows:
        out.setdefault(r["strategy_id"], {})[r["session_date"]] = Day(
            cents(r["total"]), r["n"], r["wins"], cents(r["won"] or 0), cents(r["lost"] or 0))
    return out


def cents(value) -> Decimal:
    """A sum as the database gives it (SQLite may give a float or a shortened Decimal) as dollars and cents."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def sessions(first: date, last: date) -> list[date]:
    out, day = [], next_trade_date(first)
    while day <= last:
        out.append(day)
        day = next_trade_date(day, inclusive=False)
    return out


def figures(days: dict[date, Day], session: date, open_risk: Decimal | None) -> Figures:
    pnl_all = sum((d.pnl for d in days.values()), ZERO)
    week = session.isocalendar()[:2]
    pnl_week = sum((d.pnl for s, d in days.items() if s.isocalendar()[:2] == week and s <= session), ZERO)
    trades = sum(d.trades for d in days.values())
    wins = sum(d.wins for d in days.values())
    won, lost = sum((d.won for d in days.values()), ZERO), -sum((d.lost for d in days.values()), ZERO)
    series = [days[s].pnl if s in days else ZERO for s in sessions(min(days), max(max(days), session))] if days else []
    peak = equity = drawdown = ZERO
    for pnl in series:
        equity += pnl
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    sharpe = None
    if len(series) >= 2:
        values = [float(v) for v in series]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        sharpe = mean / sd * math.sqrt(252) if sd > 0 else None
    return Figures(pnl_all=pnl_all, pnl_session=days[session].pnl if session in days else ZERO, pnl_week=pnl_week,
                   trades_session=days[session].trades if session in days else 0, trades=trades, wins=wins, win_rate=100.0 * wins / trades if trades else None,
                   profit_factor=float(won / lost) if lost > 0 else None, max_drawdown=drawdown, sharpe=sharpe,
                   open_risk=open_risk)


def open_risk(positions: list[Position]) -> Decimal | None:
    total = ZERO
    for p in positions:
        if p.stop_price is None:
            return None
        total += max(p.entry_price - p.stop_price, Decimal(0)) * p.point_value * p.size
    return total.quantize(Decimal("0.01"))


def performance(strategies: list[Strategy], positions: list[Position], session: date,
                rows: dict[int, dict[date, Day]] | None = None) -> tuple[dict, Figures]:
    """(strategy id → its figures, the figures of every live strategy together); `rows`: daily_rows()."""
    rows = daily_rows() if rows is None else rows
    per = {s.pk: figures(rows.get(s.pk, {}), session, open_risk([p for p in positions if p.strategy_id == s.pk]))
           for s in strategies}
    live = [s for s in strategies if not s.paper]
    together: dict[date, Day] = {}
    for s in live:
        for day, d in rows.get(s.pk, {}).items():
            t = together.setdefault(day, Day(ZERO, 0, 0, ZERO, ZERO))
            t.pnl, t.trades, t.wins, t.won, t.lost = t.pnl + d.pnl, t.trades + d.trades, t.wins + d.wins, \
                t.won + d.won, t.lost + d.lost
    risks = [per[s.pk].open_risk for s in live]
    total_risk = None if any(r is None for r in risks) else sum(risks, ZERO)
    return per, figures(together, session, total_risk)


TOTAL = "total (live)"


def curves(strategies: list[Strategy], rows: dict[int, dict[date, Day]], session: date, last: int = 250
           ) -> tuple[dict[str, list[tuple[str, float]]], list[tuple[str, float]]]:
    """The charts' data over the last `last` CME sessions up to `session`: cumulative realised P&L per
    strategy and of the live strategies together (TOTAL; a paper strategy has its own line, never in the
    total), and the live strategies' P&L of each session."""
    days = [d for s in strategies for d in rows.get(s.pk, {})]
    if not days:
        return {}, []
    axis = sessions(min(days), max(max(days), session))
    live = [s for s in strategies if not s.paper]
    daily_total = {d: sum((rows.get(s.pk, {}).get(d, Day(ZERO, 0, 0, ZERO, ZERO)).pnl for s in live), ZERO)
                   for d in axis}
    out: dict[str, list[tuple[str, float]]] = {}
    for name, per_day in [(str(s), {d: v.pnl for d, v in rows.get(s.pk, {}).items()})
                          for s in strategies if rows.get(s.pk)] + ([(TOTAL, daily_total)] if live else []):
        equity, series = ZERO, []
        for d in axis:
            equity += per_day.get(d, ZERO)
            series.append((d.isoformat(), float(equity)))
        out[name] = series[-last:]
    return out, [(d.isoformat(), float(daily_total[d])) for d in axis][-last:]
