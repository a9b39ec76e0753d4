"""The dashboard's performance figures, per strategy and for the live strategies together, checked against
an independent computation from the trade rows (pandas over CME trade dates, sessions without a trade as 0)."""
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
import pandas_market_calendars as pmc
import pytest
from django.core.management import call_command

from trading.models import Position, Signal, Strategy, Trade
from trading.risk.daily import record_realized

pytestmark = pytest.mark.django_db
UTC = timezone.utc
SESSION = date(2026, 10, 14)  # the market clock's session (a Wednesday)
TRADES = {  # strategy → (session, P&L)
    "ibs_a": [(date(2026, 10, 5), "410.20"), (date(2026, 10, 5), "-120.75"), (date(2026, 10, 7), "-300.00"),
              (date(2026, 10, 8), "95.50"), (date(2026, 10, 12), "-45.25"), (date(2026, 10, 14), "220.00"),
              (date(2026, 10, 14), "-80.10")],
    "ibs_b": [(date(2026, 10, 6), "150.00"), (date(2026, 10, 13), "-60.00")],
    "ibs_a_paper": [(date(2026, 10, 14), "999.99")],
}


@pytest.fixture
def books(webhook_env, settings, redis_prefix):
    settings.REDIS_PREFIX, settings.MARKET_CLOCK = redis_prefix, "data"
    call_command("load_demo")
    paper = Strategy.objects.get(name="ibs_a")
    paper.pk, paper.name, paper.mode, paper.broker_webhook = None, "ibs_a_paper", "paper", ""
    paper.save()
    from trading.health.heartbeat import beat

    beat("hub", state="running", interval=5, last_bar_time=datetime(2026, 10, 14, 15, tzinfo=UTC))
    strategies = {s.name: s for s in Strategy.objects.all()}
    cl = strategies["ibs_a"].legs.get(instrument__root="CL").instrument
    n = 0
    for name, rows in TRADES.items():
        for day, pnl in rows:
            at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=14, minutes=n)
            sig = Signal.objects.create(key=f"k{n}", strategy=strategies[name], instrument=cl, bar_time=at, action="buy",
                                        quantity=1, signal_price=Decimal("70"), reason="entry")
            Trade.objects.create(strategy=strategies[name], symbol="CL", entry_time=at, entry_price=Decimal("70"),
                                 entry_size=1, exit_time=at + timedelta(hours=1), exit_price=Decimal("70.1"), exit_size=1,
                                 pnl=Decimal(pnl), pnl_percent=0.1, exit_reason="ibs_exit", commission=Decimal("2.5"),
                                 point_value=Decimal("1000"), session_date=day, entry_signal=sig)
            record_realized(strategies[name], day, Decimal(pnl))  # the daily summary, as a booked exit keeps it
            n += 1
    sig = Signal.objects.create(key="open", strategy=strategies["ibs_a"], instrument=cl, bar_time=datetime(2026, 10, 14, 13, tzinfo=UTC),
                                action="buy", quantity=2, signal_price=Decimal("71"), reason="entry")
    Position.objects.create(strategy=strategies["ibs_a"], instrument=cl, contract="CLZ6", size=2, filled=True,
                            signal_time=sig.bar_time, entry_time=sig.bar_time + timedelta(hours=1),
                            entry_price=Decimal("71.00"), stop_price=Decimal("70.29"), commission_per_side=Decimal("1.25"),
                            point_value=Decimal("1000"), entry_signal=sig)
    return strategies


def expected(rows, session=SESSION) -> dict:
    frame = pd.DataFrame(rows, columns=["day", "pnl"]).astype({"pnl": float})
    days = pmc.get_calendar("CME_TradeDate").valid_days(str(frame["day"].min()), str(max(frame["day"].max(), session)))
    daily = frame.groupby("day")["pnl"].sum().reindex([d.date() for d in days], fill_value=0.0)
    equity = daily.cumsum()
    drawdown = (np.maximum.accumulate(np.maximum(equity.to_numpy(), 0)) - equity.to_numpy()).max()
    week = [d for d in daily.index if d.isocalendar()[:2] == session.isocalendar()[:2] and d <= session]
    wins, losses = frame[frame.pnl > 0].pnl, frame[frame.pnl < 0].pnl
    return {"pnl-all": frame.pnl.sum(), "pnl-session": daily.get(session, 0.0), "pnl-week": daily[week].sum(),
            "trades": len(frame), "win-rate": 100 * len(wins) / len(frame), "profit-factor": wins.sum() / -losses.sum() if len(losses) else None,
            "max-drawdown": drawdown, "sharpe": daily.mean() / daily.std(ddof=1) * np.sqrt(252)}


def shown(page: str, key: str) -> dict:
    row = re.search(rf'<tr class="figures-row" data-strategy="{key}"(.*?)>', page, re.S)[1]
    return {k: float(v) if v else None for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', row)}


def test_every_figure_equals_the_books(books, admin_client):
    page = admin_client.get("/admin/dashboard/").content.decode()
    for key, rows in [("ibs_a", TRADES["ibs_a"]), ("ibs_b", TRADES["ibs_b"]), ("ibs_a_paper", TRADES["ibs_a_paper"][:1]),
                      ("total", TRADES["ibs_a"] + TRADES["ibs_b"])]:
        figures, want = shown(page, key), expected(rows)
        for name, value in want.items():
            if key == "ibs_a_paper" and name == "sharpe":  # one session: no deviation
                assert figures["sharpe"] is None
                continue
            assert figures[name] == (None if value is None else pytest.approx(value, abs=0.005)), (key, name)
    # the open CL position loses (71.00 − 70.29) × 1000 × 2 at its stop; the paper strategy is in no total
    assert shown(page, "ibs_a")["open-risk"] == shown(page, "total")["open-risk"] == 1420.0
    assert shown(page, "ibs_b")["open-risk"] == 0.0
    assert 'data-strategy="ibs_a" data-session-pnl="139.90"' in page


def test_a_position_without_a_stop_makes_the_open_risk_unknown_not_zero(books, admin_client):
    Position.objects.update(stop_price=None)
    page = admin_client.get("/admin/dashboard/").content.decode()
    assert shown(page, "ibs_a")["open-risk"] is None and shown(page, "total")["open-risk"] is None
    assert "— (a position without a stop)" in page


def test_the_migration_fills_the_daily_summary_of_sessions_traded_before_it(books):
    """Trades booked before the summary had winners and gross sums: the migration fills every session from its
    trades (the books), and the summary then equals the trades session by session."""
    import importlib

    from django.apps import apps

    from trading.models import DailyRiskState
    from trading.performance import daily_rows, daily_rows_from_trades

    DailyRiskState.objects.all().delete()
    importlib.import_module("trading.migrations.0019_daily_summary").from_trades(apps, None)
    assert daily_rows() == daily_rows_from_trades() and len(daily_rows_from_trades()) == 3
