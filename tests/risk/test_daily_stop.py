from datetime import date, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from trading.models import DailyRiskState, Notification, Strategy
from strategies.calendar import previous_trade_date
from tests.trading.factories import make_trade
from trading.risk.decision import Kind
from trading.risk.daily import daily_summary, entries_stopped, open_session, record_realized, session_boundary

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 24)


@pytest.fixture
def strategy(webhook_env):
    call_command("load_demo")
    s = Strategy.objects.get(name="ibs_a")
    s.daily_stop_loss = Decimal("1000")
    s.save()
    return s


def test_daily_stop_trips_at_the_limit_and_alerts_once(strategy):
    record_realized(strategy, DAY, Decimal("-600"))
    assert entries_stopped(strategy, DAY).allowed
    state = record_realized(strategy, DAY, Decimal("-400"))
    assert state.stopped and state.realized_pnl == Decimal("-1000") and state.trades == 2
    decision = entries_stopped(strategy, DAY)
    assert decision.kind is Kind.BLOCK_ENTRY and decision.control == "daily_stop" and "-1000" in decision.reason
    record_realized(strategy, DAY, Decimal("-50"))  # a later exit the same day
    assert Notification.objects.filter(kind="emergency", title="Daily stop hit: ibs_a").count() == 1


def test_next_session_starts_clean_and_the_stop_survives_restart(strategy):
    record_realized(strategy, DAY, Decimal("-1500"))
    # A restart is a new process reading the same rows.
    assert not entries_stopped(Strategy.objects.get(pk=strategy.pk), DAY).allowed
    assert open_session(date(2026, 11, 25)) == ["ibs_a", "ibs_b"]
    assert open_session(date(2026, 11, 25)) == []
    assert entries_stopped(strategy, date(2026, 11, 25)).allowed


def test_profits_do_not_trip_and_other_strategies_are_unaffected(strategy):
    record_realized(strategy, DAY, Decimal("2500"))
    record_realized(strategy, DAY, Decimal("-3000"))
    assert entries_stopped(strategy, DAY).allowed  # net -500
    other = Strategy.objects.get(name="ibs_b")
    record_realized(other, DAY, Decimal("-99999"))
    assert entries_stopped(strategy, DAY).allowed


def test_unreadable_state_blocks_entries(strategy):
    """The table really cannot be read (renamed away): blocked, and the caller's transaction still usable."""
    table = DailyRiskState._meta.db_table
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        decision = entries_stopped(strategy, DAY)
        assert Strategy.objects.filter(pk=strategy.pk).exists()  # the step's transaction goes on
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    assert decision.kind is Kind.BLOCK_ENTRY and decision.control == "unreadable" and "unreadable" in decision.reason


def chicago(y, m, d, hh, mm=0):
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("America/Chicago"))


@pytest.mark.parametrize("when, session", [
    (chicago(2026, 7, 14, 17, 0), date(2026, 7, 15)),    # daylight time: 22:00 UTC
    (chicago(2026, 11, 24, 17, 0), date(2026, 11, 25)),  # standard time: 23:00 UTC
    (chicago(2026, 11, 25, 17, 0), date(2026, 11, 27)),  # Thanksgiving has no session
])
def test_session_boundary_opens_the_right_day_and_lifts_a_stop_once(strategy, when, session):
    previous = previous_trade_date(session)
    record_realized(strategy, previous, Decimal("-5000"))
    assert not entries_stopped(strategy, previous).allowed
    result = session_boundary(when)
    assert result["session_date"] == session.isoformat() and "ibs_a" in result["opened"]
    assert entries_stopped(strategy, session).allowed
    session_boundary(when)
    assert Notification.objects.filter(title="Daily stop lifted: ibs_a").count() == 1


def test_daily_summary_after_the_close_counts_the_days_trades_once(strategy):
    make_trade(strategy, session_date=date(2026, 11, 24), pnl=Decimal("250"))
    make_trade(strategy, session_date=date(2026, 11, 24), pnl=Decimal("-100"))
    make_trade(strategy, session_date=date(2026, 11, 23), pnl=Decimal("999"))  # another day
    assert daily_summary(chicago(2026, 11, 24, 15, 30)) == []  # session still open: nothing yet
    assert daily_summary(chicago(2026, 11, 24, 16, 15)) == ["ibs_a"]
    note = Notification.objects.get(kind="summary", strategy=strategy)
    assert note.fields["Trades"] == "2" and note.fields["P&L $"] == "150.00" and note.fields["Winners"] == "1"
    assert daily_summary(chicago(2026, 11, 24, 16, 20)) == []  # queued once per day
    assert daily_summary(chicago(2026, 11, 26, 16, 15)) == []  # Thanksgiving: no session, no summary
