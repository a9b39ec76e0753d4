"""The dashboard's performance table in headless Chromium at 1280×800: each figure shown equals the one
computed from the database in tests/trading/test_performance.py, and the page needs no horizontal scroll."""
import pytest

from tests.browser.conftest import log_in, screenshot
from tests.trading.test_performance import TRADES, books, expected  # noqa: F401 — books is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def money(value: float) -> str:
    return f"{value:,.2f}"


def test_the_performance_figures_read_as_the_books_at_1280_px(page, live_server, django_user_model, books):  # noqa: F811
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, django_user_model, next_path="/admin/dashboard/", ready="#performance")
    for key, rows in [("ibs_a", TRADES["ibs_a"]), ("ibs_b", TRADES["ibs_b"]), ("total", TRADES["ibs_a"] + TRADES["ibs_b"])]:
        want = expected(rows)
        cells = page.locator(f'tr.figures-row[data-strategy="{key}"] td').all_inner_texts()
        assert cells[1:4] == [money(want["pnl-all"]), money(want["pnl-session"]), money(want["pnl-week"])], key
        assert cells[5:] == [str(want["trades"]), f"{want['win-rate']:.2f} %", f"{want['profit-factor']:.2f}",
                             money(want["max-drawdown"]), f"{want['sharpe']:.2f}"], key
    assert page.locator('tr.figures-row[data-strategy="ibs_a"] td').nth(4).inner_text() == "1,420.00"
    assert page.locator("#session-date").inner_text() == "2026-10-14"
    wide = page.evaluate("""[...document.querySelectorAll('#content *')].filter(e => e.getBoundingClientRect().right > 1280)
                            .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, f"the dashboard scrolls sideways at 1280 px: {wide}"
    spilled = page.evaluate("""[...document.querySelectorAll('#dashboard-body section table')]
        .filter(t => t.getBoundingClientRect().right > t.closest('section').getBoundingClientRect().right + 1)
        .map(t => t.closest('section').id)""")
    assert spilled == [], f"tables wider than their panel: {spilled}"
    screenshot(page, "dashboard-performance")
