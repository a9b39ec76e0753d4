"""The drift page in real headless Chromium: a session with an hour of "block entries", reported by
`manage.py drift`; the page lists the backtest's and the worker's decisions side by side with their
numbers as the database holds them, names the blocked entry's reason, and plots both equities."""
from datetime import timedelta

import pytest

from tests.browser.conftest import log_in, screenshot
from tests.drift.test_drift_report import SESSION, T0, desk, drift, trade  # noqa: F401 — desk is a fixture
from trading.risk.killswitch import set_mode

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_drift_page_shows_both_lists_the_reason_and_the_equities(page, live_server, django_user_model,
                                                                    desk):  # noqa: F811 — the imported fixture
    def killswitch(i):
        if i in (3, 4):
            set_mode("entries" if i == 3 else "off", "an hour aside", actor="t")

    trade(desk, SESSION, hook=killswitch)
    report, _ = drift()
    log_in(page, live_server, django_user_model, next_path=f"/admin/trading/driftreport/{report.pk}/change/",
           ready="table.drift")
    rows = page.locator("tr.drift-item")
    assert rows.count() == report.items.count()
    for item in report.items.all():
        row = page.locator(f'tr[data-item="{item.pk}"]')
        assert row.get_attribute("data-kind") == item.kind
        if item.backtest_price is not None:
            assert str(item.backtest_price.normalize()) in row.locator("td.backtest").inner_text()
        if item.live_price is not None:
            assert str(item.live_price.normalize()) in row.locator("td.live").inner_text()
    blocked = page.locator('tr[data-kind="missing_live"]:not(.drift-follows)').filter(has_text=f"{T0 + timedelta(hours=3):%Y-%m-%d %H:%M}")
    assert blocked.count() == 1 and blocked.locator("td.reason").inner_text() == "killswitch"
    assert "blocked (killswitch (admin))" in blocked.inner_text()
    svg = page.locator("svg.equity")
    labels = svg.locator("text").all_text_contents()
    assert svg.locator("polyline").count() == 2 and "live" in labels and "backtest" in labels
    body = page.inner_text("#content")
    assert f"{report.differences}" in body and str(report.live_pnl) in body
    screenshot(page, "drift-report")
    page.click("tr[data-item] >> text=signal >> nth=0")
    page.wait_for_selector("text=decided on bar")
    assert "/admin/trading/signal/" in page.url
