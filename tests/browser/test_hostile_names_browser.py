"""A strategy named like markup, written by the ORM, renders as text on the dashboard and in its chart in
real headless Chromium: the text is there, no element was made of it, no script ran."""
import pytest

from tests.browser.conftest import log_in, screenshot
from tests.faults.test_stored_xss import HOSTILE, hostile_strategy
from tests.faults.test_stored_xss import demo  # noqa: F401 — a fixture, used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_chromium_shows_the_name_as_text_and_runs_no_script(demo, page, live_server, django_user_model):
    hostile_strategy(HOSTILE[0], demo)
    hostile_strategy(HOSTILE[1], demo)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, live_server, django_user_model, next_path="/admin/dashboard/", ready="#killswitch-control",
           password="chromium-xss-pw-0412")
    assert HOSTILE[0] in page.locator("#strategies").inner_text()
    assert HOSTILE[0] in page.locator("#equity svg").text_content()
    page.hover("#equity svg")
    assert page.locator("#equity svg script, #strategies script, img[src=x]").count() == 0
    screenshot(page, "dashboard-hostile-names")
    assert dialogs == []
