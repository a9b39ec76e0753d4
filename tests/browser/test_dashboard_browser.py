"""The operator dashboard in real headless Chromium, end to end with the worker.

Demo data (closed trades over three sessions, an open position priced by the hub's last price in
Redis) → the dashboard shows today's P&L and the equity chart → the operator pulls the killswitch
from the dashboard's own form (JS confirm included) → the running worker's next entry is blocked,
recorded, and nothing reaches the TradersPost stand-in.
"""
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone as dj_timezone

from strategies.bars import Bar
from strategies.calendar import previous_trade_date, session_date
from tests.browser.conftest import SCREENSHOTS, log_in, screenshot
from tests.trading.factories import make_trade
from trading.execution.worker import Worker
from trading.marketdata import streams
from trading.models import KillSwitch, KillSwitchEvent, Position, Signal, Strategy, StrategyInstrument
from trading.redis_client import get_redis, key
from trading.risk.killswitch import current_mode

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "chromium-dashboard-pw-7713"
UTC = timezone.utc
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # Tuesday 01:00 UTC, inside ibs_a's entry window
SIGNAL = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1: an entry
MID = (100.0, 100.4, 99.6, 100.0)  # IBS 0.5: neither entry nor exit
REASON = "FOMC in 10 minutes, standing aside"

# Realised P&L by session: ibs_a 100.00, -40.00 on the two sessions before today, 250.00 and -90.50 today;
# ibs_b 30.00 yesterday. Cumulative ibs_a: 100.00, 60.00, 219.50.
IBS_A_TODAY = Decimal("159.50")
GC_ENTRY, GC_LAST, GC_SIZE = Decimal("2640.0"), 2652.5, 2


@pytest.fixture
def demo(settings, redis_prefix, webhook_env, monkeypatch, broker, runtime_dir):
    """load_demo + trades on three sessions + an open GC position of ibs_a priced by the hub in Redis."""
    settings.REDIS_PREFIX = redis_prefix
    monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", f"{broker.url}/trading/webhook/dashboard-browser-token")
    call_command("load_demo")
    ibs_a, ibs_b = Strategy.objects.get(name="ibs_a"), Strategy.objects.get(name="ibs_b")
    # The worker trades CL and holds GC; no model files in a test run.
    StrategyInstrument.objects.filter(strategy=ibs_a).exclude(instrument__root__in=["CL", "GC"]).update(enabled=False)
    StrategyInstrument.objects.filter(strategy=ibs_a).update(ml_enabled=False)

    now = dj_timezone.now().replace(second=0, microsecond=0)
    today = session_date(now)
    # CME sessions, not calendar days: after Friday's close "today" is Monday's session, the one before Friday
    yesterday = previous_trade_date(today)
    sessions = {0: today, 1: yesterday, 2: previous_trade_date(yesterday)}
    for ago, pnl in [(2, "100.00"), (1, "-40.00"), (0, "250.00"), (0, "-90.50")]:
        make_trade(ibs_a, session_date=sessions[ago], pnl=Decimal(pnl))
    make_trade(ibs_b, session_date=yesterday, pnl=Decimal("30.00"), root="SI")

    gc = ibs_a.legs.get(instrument__root="GC").instrument
    sig = Signal.objects.create(key="ibs_a:GC:dashboard-open:buy", strategy=ibs_a, instrument=gc,
                                bar_time=now - timedelta(hours=3), action="buy", quantity=GC_SIZE,
                                signal_price=GC_ENTRY, reason="entry", state="sent")
    Position.objects.create(strategy=ibs_a, instrument=gc, contract="GCZ6", size=GC_SIZE, filled=True,
                            signal_time=now - timedelta(hours=3), entry_time=now - timedelta(hours=2),
                            entry_price=GC_ENTRY, stop_price=GC_ENTRY * Decimal("0.99"),
                            target_price=GC_ENTRY * Decimal("1.02"), ibs_entry=0.1,
                            commission_per_side=Decimal("1.25"), point_value=gc.point_value, entry_signal=sig)
    get_redis().set(key("last", "GC"), json.dumps({"close": GC_LAST, "ts": now.isoformat()}))
    return ibs_a, gc


@pytest.fixture
def running_worker(demo):
    """The ibs_a worker, started before the operator touches anything (as under supervisord)."""
    w = Worker("ibs_a", block_ms=10)
    w.setup()
    yield w
    w.release_lock()


@pytest.fixture
def dashboard(page, live_server, django_user_model, demo):
    log_in(page, live_server, django_user_model, next_path="/admin/dashboard/", ready="#killswitch-control",
           password=PASSWORD)
    assert page.url == f"{live_server.url}/admin/dashboard/"
    return page


def points(polyline) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in polyline.get_attribute("points").split()]


def publish(rows, start=T0, root="CL"):
    for i, (o, h, l, c) in enumerate(rows):
        ts = start + timedelta(hours=i)
        streams.publish(Bar(root, "CLZ6", "1h", ts, o, h, l, c, 100, 10))
        streams.set_watermark(int((ts + timedelta(hours=1)).timestamp()) * 10**9)


def test_dashboard_pnl_chart_killswitch_then_worker_entry_blocked(dashboard, demo, running_worker, broker):
    page = dashboard
    ibs_a, gc = demo
    js_errors = []
    page.on("pageerror", lambda e: js_errors.append(str(e)))

    # --- figures ------------------------------------------------------------------------------
    row = page.locator("tr.strategy-row[data-strategy=ibs_a]")
    assert row.locator("td.pnl").inner_text() == f"{IBS_A_TODAY:.2f}"
    assert "pos" in row.locator("td.pnl").get_attribute("class")
    cells = row.locator("td").all_inner_texts()
    assert cells[3] == "2"  # two trades today
    unrealised = (Decimal(str(GC_LAST)) - GC_ENTRY) * gc.point_value * GC_SIZE  # 12.5 × 100 × 2 = 2500
    assert cells[4] == f"{unrealised:.2f}" and cells[5] == "1 / 2"
    assert page.locator("tr.strategy-row[data-strategy=ibs_b] td.pnl").inner_text() == "0.00"
    positions = page.inner_text("#positions")
    assert "GCZ6" in positions and str(GC_LAST) in positions and f"{unrealised:.2f}" in positions
    assert "unavailable" not in positions

    # --- equity chart: one polyline per strategy and the live total, through the cumulative P&L by session ---
    svg = page.locator("#equity svg.equity-chart")
    box = svg.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 50  # laid out, not just present in the markup
    lines = {line.get_attribute("data-curve"): line for line in svg.locator("polyline.curve").all()}
    assert {name: (line.get_attribute("data-last"), len(points(line))) for name, line in lines.items()} == {
        "ibs_a": ("219.50", 3), "ibs_b": ("30.00", 3), "total (live)": ("249.50", 3)}  # ibs_b: 0, 30.00, 30.00
    a = points(lines["ibs_a"])
    # Linear in P&L: the same $ per pixel between every pair of points, higher P&L drawn higher; sessions
    # evenly spaced from left to right.
    cumulative = [100.0, 60.0, 219.5]
    slopes = [(a[i + 1][1] - a[i][1]) / (cumulative[i + 1] - cumulative[i]) for i in range(2)]
    assert slopes[0] < 0 and slopes[1] == pytest.approx(slopes[0], rel=0.02)  # (points to 0.1 px)
    assert a[0][0] < a[1][0] < a[2][0] and abs((a[1][0] - a[0][0]) - (a[2][0] - a[1][0])) < 0.11
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert screenshot(page, "dashboard-before").stat().st_size > 10_000

    # --- killswitch from the dashboard --------------------------------------------------------
    assert current_mode() == "off" and "Off" in page.inner_text("#killswitch-mode")
    page.select_option("#id_mode", "entries")
    page.fill("#id_reason", REASON)
    page.check("#id_confirm")
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.click("input[name=apply]")  # the operator has second thoughts: nothing changes
    page.wait_for_timeout(300)
    assert dialogs == ["Change the killswitch to Block entries (exits still go out)?"]
    assert current_mode() == "off" and not KillSwitchEvent.objects.exists()

    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    with page.expect_navigation():
        page.click("input[name=apply]")
    page.wait_for_selector(".messagelist .warning")
    assert len(dialogs) == 2
    assert "Killswitch off → entries (recorded for operator)" in page.inner_text(".messagelist")
    assert page.inner_text("#killswitch-mode") == "Block entries (exits still go out)"
    assert page.locator("#id_mode").input_value() == "entries"  # the form starts from the new mode
    assert f"operator: off → entries — {REASON}" in page.inner_text("#alerts")
    assert page.locator("tr.strategy-row[data-strategy=ibs_a] td.pnl").inner_text() == f"{IBS_A_TODAY:.2f}"
    screenshot(page, "dashboard-after")
    assert js_errors == []

    switch = KillSwitch.objects.get()
    assert (switch.mode, switch.reason, switch.changed_by) == ("entries", REASON, "operator")
    event = KillSwitchEvent.objects.get()
    assert (event.actor, event.user.username, event.previous_mode, event.mode, event.reason) == (
        "operator", "operator", "off", "entries", REASON)

    # --- the running worker's next entry is blocked ---------------------------------------------
    publish([SIGNAL, MID])
    assert running_worker.poll() == 2
    sig = Signal.objects.get(strategy=ibs_a, instrument__root="CL", bar_time=T0)
    assert (sig.action, sig.state) == ("buy", "blocked")
    assert sig.state_reason == "killswitch: entries mode blocks entries"
    assert broker.snapshot() == []
    assert not Position.objects.filter(strategy=ibs_a, instrument__root="CL").exists()
    assert Position.objects.get(strategy=ibs_a, state="open").instrument == gc  # the held position is untouched
