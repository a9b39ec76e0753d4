import json
import re
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from strategies.calendar import session_date
from trading.models import KillSwitch, KillSwitchEvent, Position, Signal, Strategy, Trade
from trading.redis_client import get_redis, key
from trading.risk.daily import record_realized

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_trading(webhook_env, settings, redis_prefix):
    """Demo strategies with two closed trades today and one open CL position priced by the hub."""
    settings.REDIS_PREFIX = redis_prefix
    call_command("load_demo")
    strategy = Strategy.objects.get(name="ibs_a")
    cl = strategy.legs.get(instrument__root="CL").instrument
    now = timezone.now().replace(second=0, microsecond=0)
    today = session_date(now)
    for i, pnl in enumerate([Decimal("250.00"), Decimal("-90.50")]):
        sig = Signal.objects.create(key=f"t{i}", strategy=strategy, instrument=cl, bar_time=now - timedelta(hours=5 + i),
                                    action="buy", quantity=1, signal_price=Decimal("70"), reason="entry")
        Trade.objects.create(strategy=strategy, symbol="CL", entry_time=now - timedelta(hours=4), entry_price=Decimal("70"),
                             entry_size=1, exit_time=now - timedelta(hours=1), exit_price=Decimal("70.25"), exit_size=1,
                             pnl=pnl, pnl_percent=0.3, exit_reason="ibs_exit", commission=Decimal("2.5"),
                             point_value=Decimal("1000"), session_date=today, entry_signal=sig)
        record_realized(strategy, today, pnl)  # the daily summary, as a booked exit keeps it
    sig = Signal.objects.create(key="open", strategy=strategy, instrument=cl, bar_time=now - timedelta(hours=2),
                                action="buy", quantity=2, signal_price=Decimal("71"), reason="entry")
    Position.objects.create(strategy=strategy, instrument=cl, contract="CLF7", size=2, entry_time=now - timedelta(hours=1), signal_time=now - timedelta(hours=2), filled=True,
                            entry_price=Decimal("71.00"), commission_per_side=Decimal("1.25"),
                            point_value=Decimal("1000"), entry_signal=sig)
    get_redis().set(key("last", "CL"), json.dumps({"close": 71.5, "ts": now.isoformat()}))
    return strategy


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", password="x-test-only"))
    return client


def test_dashboard_requires_login(client, demo_trading):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_dashboard_shows_todays_pnl_unrealised_and_chart(staff, demo_trading):
    page = staff.get("/admin/dashboard/").content.decode()
    assert "159.50" in page  # 250.00 - 90.50 today
    assert "1000.00" in page  # (71.5 - 71.0) × 1000 × 2 unrealised
    assert "<svg" in page and "polyline" in page
    assert 'id="killswitch-control"' in page


def test_dashboard_killswitch_needs_confirmation_and_reason(staff, demo_trading):
    refused = staff.post("/admin/dashboard/", {"mode": "halt", "reason": "storm"})
    assert refused.status_code == 200 and KillSwitch.objects.get().mode == "off"
    done = staff.post("/admin/dashboard/", {"mode": "halt", "reason": "storm", "confirm": "on"})
    assert done.status_code == 302 and KillSwitch.objects.get().mode == "halt"
    assert KillSwitchEvent.objects.get().actor == "ops"


def test_dashboard_without_redis_says_prices_are_unavailable(staff, demo_trading, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    page = staff.get("/admin/dashboard/?partial=1").content.decode()
    assert "Last prices unavailable" in page and "159.50" in page


def test_recent_alerts_show_every_kind_and_filter_by_kind(staff, demo_trading):
    from trading.delivery.alerts import enqueue

    for kind in ("startup", "entry", "exit", "summary", "emergency", "info"):
        enqueue(kind, f"{kind} alert for the dashboard")
    page = staff.get("/admin/dashboard/").content.decode()
    for kind in ("startup", "entry", "exit", "summary", "emergency", "info"):
        assert f'data-kind="{kind}"' in page and f"{kind} alert for the dashboard" in page
    only = staff.get("/admin/dashboard/?kind=exit&partial=1").content.decode()
    assert "exit alert for the dashboard" in only and "entry alert for the dashboard" not in only
    assert set(re.findall(r'<li class="alert" data-kind="(\w+)"', only)) == {"exit"}
    garbage = staff.get("/admin/dashboard/?kind=<script>").content.decode()  # not a kind: every kind, nothing echoed
    assert "entry alert for the dashboard" in garbage and "<script>" not in garbage.split("Recent alerts")[1][:2000]


def test_a_market_panel_reads_market_closed_after_its_close_and_stale_only_while_its_market_trades(
        staff, demo_trading, settings):
    """The replay clock at Friday's 16:00 Chicago close: every panel reads "market closed", GC's day-old last
    bar included; the same books an hour before the close: CL live at the hub's last bar, GC STALE."""
    from strategies.calendar import is_trading
    from trading.models import Heartbeat, StoredBar

    utc = dt_timezone.utc
    settings.MARKET_CLOCK = "data"
    close = datetime(2026, 10, 16, 21, 0, tzinfo=utc)  # Friday 16:00 in Chicago (CDT)
    for root, last in (("CL", close - timedelta(hours=1)), ("GC", close - timedelta(hours=27))):
        StoredBar.objects.bulk_create(
            StoredBar(root=root, timeframe="1h", ts=last - timedelta(hours=h), contract=f"{root}Z6", open=70, high=71,
                      low=69, close=70.5, volume=100, source="hub") for h in range(6))
    get_redis().delete(key("last", "GC"))

    def panels(hub_minute: datetime) -> dict[str, tuple[str, str]]:
        Heartbeat.objects.update_or_create(process="hub", defaults={"last_seen": hub_minute, "state": "running",
                                                                    "last_bar_time": hub_minute})
        get_redis().set(key("last", "CL"), json.dumps({"ts": hub_minute.strftime("%Y-%m-%dT%H:%M:00Z"),
                                                       "close": 70.5, "contract": "CLZ6"}))
        page = staff.get("/admin/dashboard/").content.decode()
        found = re.findall(r'<div class="market-panel" data-root="(\w+)" data-state="(\w+)".*?<h3>(.*?)</h3>', page,
                           re.S)
        return {root: (state, " ".join(h3.split())) for root, state, h3 in found}

    assert not is_trading("CL", close) and not is_trading("GC", close) and is_trading("GC", close - timedelta(hours=1))
    after = panels(close - timedelta(minutes=1))  # the hub's last minute bar 15:59: the clock at 16:00
    assert after["CL"][0] == after["GC"][0] == "closed"
    assert all(state == "closed" for state, _ in after.values())
    assert "market closed" in after["GC"][1] and "STALE" not in after["GC"][1] and "live" not in after["CL"][1]
    before = panels(close - timedelta(hours=1, minutes=1))  # 14:59: both markets trade
    assert before["CL"][0] == "ok" and "live" in before["CL"][1] and "market closed" not in before["CL"][1]
    assert before["GC"][0] == "stale" and "STALE" in before["GC"][1]


MARKET = datetime(2026, 10, 14, 18, 1, tzinfo=dt_timezone.utc)  # the market panels' clock in these tests
HOUR_TRADES = [("10:05", "15:10", "70.10", "ibs_exit"), ("11:20", "15:30", "70.40", "ibs_exit"),
               ("12:00", "15:59", "70.25", "ibs_exit"), ("13:15", "16:45", "69.90", "stop_loss")]


def cl_session_of_trades(strategy, trades=HOUR_TRADES) -> None:
    """Eleven stored CL hourly bars before MARKET and only `trades` (entry, exit, exit price, reason) on
    2026-10-14: the exits at 15:10, 15:30 and 15:59 share one hour bar."""
    from trading.models import StoredBar

    Trade.objects.all().delete()
    Position.objects.all().delete()
    StoredBar.objects.bulk_create(
        StoredBar(root="CL", timeframe="1h", ts=MARKET - timedelta(hours=h, minutes=1), contract="CLZ6", open=70,
                  high=71, low=69, close=70.5, volume=100, source="hub") for h in range(1, 12))
    cl = strategy.legs.get(instrument__root="CL").instrument
    at = lambda hm: datetime(2026, 10, 14, *map(int, hm.split(":")), tzinfo=dt_timezone.utc)  # noqa: E731
    for i, (entry, exit_, price, reason) in enumerate(trades):
        sig = Signal.objects.create(key=f"m{i}", strategy=strategy, instrument=cl, bar_time=at(entry), action="buy",
                                    quantity=1, signal_price=Decimal("70"), reason="entry")
        Trade.objects.create(strategy=strategy, symbol="CL", entry_time=at(entry), entry_price=Decimal("70.00"),
                             entry_size=1, exit_time=at(exit_), exit_price=Decimal(price), exit_size=1, pnl=Decimal(1),
                             pnl_percent=0.1, exit_reason=reason, commission=Decimal("2.5"),
                             point_value=Decimal("1000"), session_date=date(2026, 10, 14), entry_signal=sig)


def cl_panel(markets_module):
    return next(p for p in markets_module.market_panels(MARKET, session_date(MARKET))[0]
                if p.instrument.root == "CL")


def test_trades_sharing_an_hour_bar_share_one_marker_counted_by_the_database(staff, demo_trading):
    """Three CL exits in one hour bar: one exit marker titled with how many and their range; a lone trade keeps
    its own title; the panel counts every trade it marks."""
    from trading.admin import markets

    cl_session_of_trades(demo_trading)
    panel = cl_panel(markets)
    assert panel.markers == 8  # 4 entries and 4 exits
    titles = re.findall(r'<polygon class="marker (entry|exit)"[^>]*>\s*<title>([^<]*)</title>', str(panel.chart))
    exits = sorted(t for kind, t in titles if kind == "exit")
    assert exits == ["3 exits 70.10 to 70.40", "ibs_a exit 69.90 (stop_loss)"]
    assert sorted(t for kind, t in titles if kind == "entry") == ["ibs_a entry 70.00"] * 4


def test_beyond_the_newest_marked_trades_the_panel_marks_only_those_and_says_from_when(staff, demo_trading,
                                                                                       monkeypatch):
    from trading.admin import markets

    cl_session_of_trades(demo_trading)
    assert cl_panel(markets).markers == 8 and cl_panel(markets).marked_from is None  # within the limit: every trade
    monkeypatch.setattr(markets, "MARKED_TRADES", 2)
    capped = cl_panel(markets)
    assert capped.markers == 4 and capped.marked_from == datetime(2026, 10, 14, 15, 59, tzinfo=dt_timezone.utc)
    entries = re.findall(r'<polygon class="marker entry" data-x="([^"]+)"', str(capped.chart))
    assert sorted(entries) == ["2026-10-14T12:00", "2026-10-14T13:00"]  # the entries of the two newest trades
