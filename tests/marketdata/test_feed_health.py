"""Feed health on the market's clock: a root with no trades while its market trades is degraded, a
weekend, the daily halt or a holiday's early close is not, and a feed that goes silent is noticed
at the wall clock's pace. One alert per incident, one on recovery."""
from datetime import datetime, timedelta, timezone

from trading.marketdata.feed import FeedHealth

UTC = timezone.utc
NS = 1_000_000_000


def ns(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


class Wall:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def watch():
    alerts, wall = [], Wall()
    return FeedHealth(timedelta(minutes=10), alert=lambda kind, title, body: alerts.append((kind, title)), wall=wall), \
        alerts, wall


def test_no_trades_for_a_root_while_its_market_trades_is_a_gap_alerted_once_and_its_recovery_once():
    feed, alerts, _ = watch()
    tuesday = ns(2026, 11, 3, 15, 0)  # 09:00 Chicago
    assert feed.check(tuesday, {"CL": tuesday - 60 * NS, "GC": tuesday - 60 * NS}) == {}
    later = tuesday + 11 * 60 * NS
    problems = feed.check(later, {"CL": tuesday - 60 * NS, "GC": later - NS})
    assert list(problems) == ["CL"] and "no CL trade since 2026-11-03 14:59 UTC" in problems["CL"]
    assert feed.check(later + 60 * NS, {"CL": tuesday - 60 * NS, "GC": later})  # still: no second alert
    assert feed.check(later + 120 * NS, {"CL": later + 100 * NS, "GC": later}) == {}
    assert alerts == [("emergency", "Feed gap: no trades for CL"), ("info", "Feed recovered: CL")]


def test_a_weekend_the_daily_halt_and_a_new_session_open_are_not_gaps():
    feed, alerts, _ = watch()
    friday_close = ns(2026, 11, 6, 21, 59)  # 15:59 Chicago
    assert feed.check(ns(2026, 11, 7, 15, 0), {"CL": friday_close}) == {}  # Saturday
    assert feed.check(ns(2026, 11, 9, 22, 30), {"CL": ns(2026, 11, 9, 21, 58)}) == {}  # Monday's 16:00-17:00 halt
    assert feed.check(ns(2026, 11, 9, 23, 5), {"CL": ns(2026, 11, 9, 21, 58)}) == {}  # 5 min into the session
    assert alerts == []


def test_thanksgivings_early_close_is_no_gap_for_es_but_a_gap_before_it_is():
    after_close, before_close = watch()[0], watch()[0]
    assert after_close.check(ns(2026, 11, 26, 19, 0), {"ES": ns(2026, 11, 26, 17, 59)}) == {}  # ES closed at 12:00 CT
    assert list(before_close.check(ns(2026, 11, 26, 17, 0), {"ES": ns(2026, 11, 26, 16, 0)})) == ["ES"]


def test_a_feed_that_goes_silent_is_noticed_at_the_wall_clocks_pace():
    feed, alerts, wall = watch()
    tuesday = ns(2026, 11, 3, 15, 0)
    assert feed.check(tuesday, {"6A": tuesday}) == {}
    wall.t += 9 * 60  # nothing arrives, not even a heartbeat: the market's clock runs on at wall pace
    assert feed.check(tuesday, {"6A": tuesday}) == {}
    wall.t += 2 * 60
    assert list(feed.check(tuesday, {"6A": tuesday})) == ["6A"] and len(alerts) == 1
