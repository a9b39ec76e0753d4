"""A backtest from the admin in real headless Chromium at 1280×800: the form started from the Backtests entry,
the run done by Celery (eager, inside the server), the report page with the database's trade count and total
P&L, the equity plot, and no horizontal scrolling."""
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.browser.conftest import screenshot
from tests.trading.test_admin_backtest import START, desk, eager, market_files  # noqa: F401 — fixtures
from trading.models import BacktestRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_backtest_started_in_the_browser_shows_its_report(browser, live_server, django_user_model,
                                                            desk, eager):  # noqa: F811 — the imported fixtures
    django_user_model.objects.create_superuser("operator", password="chromium-test-pw-4821")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30000)
    try:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", "chromium-test-pw-4821")
        page.click("input[type=submit]")
        page.click("text=Backtests")
        page.click("a.addlink")
        page.select_option("#id_strategy", label="ibs_a")
        page.fill("#id_start_date", f"{START + timedelta(days=1)}")
        page.fill("#id_end_date", f"{START + timedelta(days=8)}")
        page.click("input[value='Run backtest']")
        page.wait_for_selector(".backtest-report table.trades")
        run = BacktestRun.objects.get()
        assert run.state == "done" and f"/backtestrun/{run.pk}/change/" in page.url
        assert page.locator("tr.trade").count() == len(run.trades) == run.metrics["trades"] > 0
        total = sum(Decimal(str(t["pnl"])) for t in run.trades)
        shown = page.locator("td.bt-total").inner_text().replace(",", "")
        assert Decimal(shown) == total == Decimal(str(run.metrics["total_pnl"]))
        assert page.locator("td.bt-trades").inner_text() == str(len(run.trades))
        assert page.locator("svg.backtest-equity polyline.curve").count() == 1
        screenshot(page, "backtest-report")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
            page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    finally:
        context.close()
