from datetime import date
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import call_command

from trading.models import DailyRiskState, Notification, Strategy
from trading.risk.daily import entries_stopped, open_session, record_realized

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
    assert entries_stopped(strategy, DAY) == (False, "")
    state = record_realized(strategy, DAY, Decimal("-400"))
    assert state.stopped and state.realized_pnl == Decimal("-1000") and state.trades == 2
    stopped, why = entries_stopped(strategy, DAY)
    assert stopped and "-1000" in why
    record_realized(strategy, DAY, Decimal("-50"))  # a later exit the same day
    assert Notification.objects.filter(kind="emergency", title="Daily stop hit: ibs_a").count() == 1


def test_next_session_starts_clean_and_the_stop_survives_restart(strategy):
    record_realized(strategy, DAY, Decimal("-1500"))
    # A restart is a new process reading the same rows.
    assert entries_stopped(Strategy.objects.get(pk=strategy.pk), DAY)[0] is True
    assert open_session(date(2026, 11, 25)) == ["ibs_a", "ibs_b"]
    assert open_session(date(2026, 11, 25)) == []
    assert entries_stopped(strategy, date(2026, 11, 25)) == (False, "")


def test_profits_do_not_trip_and_other_strategies_are_unaffected(strategy):
    record_realized(strategy, DAY, Decimal("2500"))
    record_realized(strategy, DAY, Decimal("-3000"))
    assert not entries_stopped(strategy, DAY)[0]  # net -500
    other = Strategy.objects.get(name="ibs_b")
    record_realized(other, DAY, Decimal("-99999"))
    assert not entries_stopped(strategy, DAY)[0]


def test_unreadable_state_blocks_entries(strategy):
    with mock.patch.object(DailyRiskState.objects, "filter", side_effect=RuntimeError("db gone")):
        stopped, why = entries_stopped(strategy, DAY)
    assert stopped and "unreadable" in why
