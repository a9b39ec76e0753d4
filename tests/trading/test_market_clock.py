"""One market clock (trading.marketdata.clock): with PINEOPS_MARKET_CLOCK=data (a replay, the demo) the
dashboard's session, the daily-stop reset and the daily summary follow the time of the latest bar, while
heartbeats stay fresh or stale by the wall clock; with the wall clock (live) they follow now."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone as djtz

from strategies.calendar import session_date
from trading.admin.dashboard import dashboard_context
from trading.health.heartbeat import beat
from trading.marketdata.clock import market_now
from trading.risk.daily import record_realized
from trading.models import DailyRiskState, Notification, Signal, Strategy, StoredBar, Trade
from trading.tasks import follow_market_clock

pytestmark = pytest.mark.django_db
UTC = timezone.utc
REPLAYED = datetime(2026, 10, 14, 15, 41, tzinfo=UTC)  # the replay's latest minute bar (a Wednesday, 10:41 Chicago)


@pytest.fixture
def replay(settings, webhook_env, redis_prefix):
    settings.MARKET_CLOCK, settings.REDIS_PREFIX = "data", redis_prefix
    call_command("load_demo")
    beat("hub", state="running", interval=5, last_bar_time=REPLAYED)
    return Strategy.objects.get(name="ibs_a")


def trade(strategy, day, pnl: str, at: datetime) -> Trade:
    cl = strategy.legs.get(instrument__root="CL").instrument
    sig = Signal.objects.create(key=f"k{at.timestamp()}", strategy=strategy, instrument=cl, bar_time=at,
                                action="buy", quantity=1, signal_price=Decimal("70"), reason="entry")
    trade = Trade.objects.create(strategy=strategy, symbol="CL", entry_time=at, entry_price=Decimal("70"), entry_size=1,
                                 exit_time=at + timedelta(hours=1), exit_price=Decimal("70.1"), exit_size=1,
                                 pnl=Decimal(pnl), pnl_percent=0.1, exit_reason="ibs_exit", commission=Decimal("2.5"),
                                 point_value=Decimal("1000"), session_date=day, entry_signal=sig)
    record_realized(strategy, day, trade.pnl)  # the daily summary, as a booked exit keeps it
    return trade


def test_the_replay_clock_is_the_end_of_the_hubs_latest_bar_and_the_wall_clock_is_now(replay, settings):
    assert market_now() == REPLAYED + timedelta(minutes=1)
    settings.MARKET_CLOCK = "wall"
    wall = datetime(2026, 12, 2, 15, tzinfo=UTC)
    assert market_now(wall) == wall


def test_without_a_hub_heartbeat_the_replay_clock_is_the_bar_stores_latest_hour(replay):
    from trading.models import Heartbeat

    Heartbeat.objects.filter(process="hub").delete()
    StoredBar.objects.create(root="CL", timeframe="1h", ts=REPLAYED.replace(minute=0), open=1, high=1, low=1, close=1,
                             volume=1, trades=1, source="hub")
    assert market_now() == REPLAYED.replace(minute=0) + timedelta(hours=1)


def test_the_dashboard_shows_the_replayed_session_and_its_pnl_with_heartbeats_by_the_wall_clock(replay):
    day = session_date(REPLAYED)
    trade(replay, day, "312.40", REPLAYED - timedelta(hours=3))
    trade(replay, day, "-40.15", REPLAYED - timedelta(hours=2))
    trade(replay, session_date(djtz.now()), "999.00", djtz.now() - timedelta(hours=2))  # the wall clock's session
    DailyRiskState.objects.filter(strategy=replay, session_date=day).update(stopped=True, stop_reason="test")
    context = dashboard_context()
    assert context["session_date"] == day and context["market_now"] == REPLAYED + timedelta(minutes=1)
    row = next(r for r in context["rows"] if r.strategy == replay)
    assert (row.today_pnl, row.today_trades, row.stopped) == (Decimal("272.25"), 2, True)
    assert [hb.fresh for hb in context["heartbeats"] if hb.process == "hub"] == [True]  # beaten just now (wall)
    assert "replay clock (latest bar), 2026-10-14 15:42 UTC" in context["market_clock"]


def test_the_replay_clock_opens_each_session_and_summarises_the_one_that_closed(replay, settings):
    from trading.models import Heartbeat

    day = session_date(REPLAYED)
    trade(replay, day, "120.00", REPLAYED)
    DailyRiskState.objects.filter(strategy=replay, session_date=day).update(stopped=True, stop_reason="test")
    follow_market_clock()
    assert Notification.objects.filter(kind="summary").count() == 0  # the session is still open
    # The replay passes 16:00 Chicago (21:00 UTC in daylight time): that session's summary, once.
    Heartbeat.objects.filter(process="hub").update(last_bar_time=datetime(2026, 10, 14, 21, 10, tzinfo=UTC))
    follow_market_clock()
    follow_market_clock()
    summaries = list(Notification.objects.filter(kind="summary").values_list("title", flat=True))
    assert summaries == [f"ibs_a: session {day} summary"]
    # ... and 17:00 Chicago: the next session opens with a clean daily stop, the stop lifted with one alert.
    Heartbeat.objects.filter(process="hub").update(last_bar_time=datetime(2026, 10, 14, 22, 1, tzinfo=UTC))
    follow_market_clock()
    follow_market_clock()
    nxt = session_date(datetime(2026, 10, 14, 22, 2, tzinfo=UTC))
    assert nxt > day and DailyRiskState.objects.get(strategy=replay, session_date=nxt).stopped is False
    assert Notification.objects.filter(title="Daily stop lifted: ibs_a").count() == 1
    assert not DailyRiskState.objects.filter(session_date=session_date(djtz.now())).exclude(
        session_date__in=[day, nxt]).exists()  # nothing opened on the wall clock's date


def test_with_the_wall_clock_the_replay_task_does_nothing(replay, settings):
    settings.MARKET_CLOCK = "wall"
    assert follow_market_clock() is None
    assert not DailyRiskState.objects.exists() and not Notification.objects.filter(kind="summary").exists()
