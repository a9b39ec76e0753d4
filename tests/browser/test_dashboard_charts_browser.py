"""The dashboard's charts, market panels and processes in headless Chromium at 1280×800, each number read off
the page and compared with what the test computes from the database (tests/trading/test_performance.py's
books: trades of ibs_a, ibs_b and a paper copy, the market's clock on 2026-10-14 15:01 UTC)."""
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from strategies.calendar import session_open, trade_date_offset
from tests.browser.conftest import log_in, screenshot
from tests.trading.test_performance import SESSION, TRADES, books, expected  # noqa: F401 — books is a fixture
from trading.execution.sender import registry_key
from trading.models import Instrument, Position, StoredBar, Trade
from trading.performance import sessions
from trading.redis_client import get_redis, key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
UTC = timezone.utc
MARKET = datetime(2026, 10, 14, 15, 1, tzinfo=UTC)  # the hub's last bar (14:59–15:00) + 1 min


@pytest.fixture
def market(books):  # noqa: F811
    """Hourly CL and GC bars of the chart's sessions (GC's stop 3 hours before the clock: stale), CL's last
    1-minute bar in Redis, and ibs_a's order sender registered."""
    since = session_open(trade_date_offset(SESSION, -2))
    hours = int((MARKET - since).total_seconds() // 3600)
    for root, stop in (("CL", 0), ("GC", 3)):
        StoredBar.objects.bulk_create(
            StoredBar(root=root, timeframe="1h", ts=since + timedelta(hours=h), contract=f"{root}Z6", open=70 + h / 100,
                      high=70.5 + h / 100, low=69.5 + h / 100, close=70.1 + h / 100, volume=100, source="hub")
            for h in range(hours - stop))
    get_redis().set(key("last", "CL"), json.dumps({"symbol": "CL", "contract": "CLZ6", "timeframe": "1m",
                                                   "ts": "2026-10-14T14:59:00Z", "close": 70.37}))
    get_redis().set(registry_key("ibs_a"), "host:4242:99", ex=60)
    return since


def data(page, selector: str, name: str) -> list[str]:
    return page.eval_on_selector_all(selector, f"els => els.map(e => e.getAttribute('data-{name}'))")


def test_charts_panels_and_processes_read_as_the_books_at_1280_px(page, live_server, django_user_model, market):
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, django_user_model, next_path="/admin/dashboard/", ready="#markets")

    # Equity: one line per strategy and the live total, each ending at its realised P&L, over every session
    # from the first traded one to the clock's; the live total's drawdown shaded as the performance table has it.
    first = min(day for rows in TRADES.values() for day, _ in rows)
    axis = sessions(first, SESSION)
    lines = dict(zip(data(page, "svg.equity-chart polyline.curve", "curve"),
                     zip(data(page, "svg.equity-chart polyline.curve", "last"),
                         data(page, "svg.equity-chart polyline.curve", "points"))))
    total = TRADES["ibs_a"] + TRADES["ibs_b"]
    want = {"ibs_a": TRADES["ibs_a"], "ibs_b": TRADES["ibs_b"], "ibs_a_paper (paper)": TRADES["ibs_a_paper"],
            "total (live)": total}
    assert set(lines) == set(want)
    for name, rows in want.items():
        assert lines[name] == (f"{sum(Decimal(p) for _, p in rows):.2f}", str(len(axis))), name
    drawdown = data(page, "svg.equity-chart polygon.drawdown", "max-drawdown")
    assert drawdown == [f"{expected(total)['max-drawdown']:.2f}"]
    labels = page.eval_on_selector_all("svg.equity-chart text.x-label", "els => els.map(e => e.textContent)")
    assert labels[0] == axis[0].strftime("%m-%d") and len(labels) >= 3  # dated axis

    # Daily P&L: a bar per session (live strategies only), zero where nothing traded.
    bars = dict(zip(data(page, "svg.daily-chart rect.day-bar", "x"), data(page, "svg.daily-chart rect.day-bar", "pnl")))
    by_day = {d.isoformat(): Decimal("0") for d in axis}
    for day, pnl in total:
        by_day[day.isoformat()] += Decimal(pnl)
    assert bars == {d: f"{v:.2f}" for d, v in by_day.items()}

    # Market panels: every instrument of an enabled strategy; CL live at the hub's last bar, GC stale.
    roots = sorted(Instrument.objects.filter(strategy_legs__strategy__enabled=True).values_list("root", flat=True).distinct())
    assert data(page, ".market-panel", "root") == roots
    cl = page.locator('.market-panel[data-root="CL"]')
    opened = session_open(SESSION)
    assert cl.get_attribute("data-state") == "ok" and cl.get_attribute("data-last-price") == "70.37"
    assert cl.get_attribute("data-last-time") == "2026-10-14T15:00:00+00:00"
    assert int(cl.get_attribute("data-bars-session")) == StoredBar.objects.filter(
        root="CL", timeframe="1h", ts__gte=opened, ts__lte=MARKET).count() > 0
    last_hour = StoredBar.objects.filter(root="CL").latest("ts").ts + timedelta(hours=1)
    inside = lambda at: market <= at < last_hour  # noqa: E731
    marks = sum(inside(t.entry_time) + inside(t.exit_time) for t in Trade.objects.filter(symbol="CL"))
    opened_inside = [p for p in Position.objects.open().filter(instrument__root="CL") if inside(p.entry_time)]
    marks += len(opened_inside)
    assert marks > 0 and int(cl.get_attribute("data-markers")) == marks
    # One marker per hour bar and kind for the trades (however many share it), one per open position.
    hour = lambda at: at.replace(minute=0, second=0, microsecond=0)  # noqa: E731
    buckets = {(hour(at), kind) for t in Trade.objects.filter(symbol="CL")
               for at, kind in ((t.entry_time, "entry"), (t.exit_time, "exit")) if inside(at)}
    assert cl.locator("svg polygon.marker").count() == len(buckets) + len(opened_inside)
    assert cl.locator("svg polygon.marker.entry").count() > 0
    assert page.locator('.market-panel[data-root="GC"]').get_attribute("data-state") == "stale"
    assert "STALE" in page.locator('.market-panel[data-root="GC"] h3').inner_text()
    assert page.locator('.market-panel[data-root="6A"] svg').count() == 0  # no stored bar: no chart, said so
    assert "No stored bars" in page.locator('.market-panel[data-root="6A"]').inner_text()

    # Processes: supervisord is not running here (said), the hub's heartbeat, ibs_a's sender by its registry
    # key, ibs_a's worker absent from Redis's senders never claimed, Celery beat by its schedules.
    assert "supervisord is not running here" in page.locator("#supervisor-note").inner_text()
    rows = dict(zip(data(page, "tr.process-row", "process"), data(page, "tr.process-row", "ok")))
    assert rows["hub"] == "1" and rows["sendorders (ibs_a)"] == "1" and rows["celery beat (schedules)"] == "0"
    assert "4242" in page.locator('tr.process-row[data-process="sendorders (ibs_a)"]').inner_text()

    # The session's hours where they matter, in Chicago time: Tuesday 17:00 to Wednesday 16:00.
    assert page.inner_text("#session-hours") == "(Tue 10-13 17:00 to Wed 10-14 16:00 Chicago)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    screenshot(page, "dashboard")
