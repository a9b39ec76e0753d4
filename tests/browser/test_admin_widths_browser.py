"""Every page of the admin at 1280×800 in headless Chromium, with the books of tests/trading/test_performance.py
(trades, signals, an open position): no list and no form needs horizontal scrolling; a screenshot of each
into test-artifacts/screenshots/ (admin-<app>-<model>.png). The strategy form in particular: its
instruments table fits, an instrument without overrides shows an empty box (not `{}`), and the broker
webhook is named once."""
import pytest
from django.contrib import admin
from django.urls import reverse

from tests.browser.conftest import log_in, screenshot
from tests.trading.test_performance import books  # noqa: F401 — a fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH = 1280


def too_wide(page) -> list[str]:
    return page.evaluate(f"""[...document.querySelectorAll('#content *')]
        .filter(e => e.getBoundingClientRect().right > {WIDTH} + 1)
        .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")


def test_every_list_and_the_strategy_form_fit_1280_px(page, live_server, django_user_model, books):  # noqa: F811
    page.set_viewport_size({"width": WIDTH, "height": 800})
    log_in(page, live_server, django_user_model, next_path="/admin/", ready="#site-name")
    pages = {f"admin-{m._meta.app_label}-{m._meta.model_name}": reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
             for m in admin.site._registry}
    strategy = books["ibs_a"]
    pages["admin-strategy-form"] = reverse("admin:trading_strategy_change", args=[strategy.pk])
    pages["admin-index"] = reverse("admin:index")
    assert len(pages) > 20
    wide = {}
    for name, url in sorted(pages.items()):
        response = page.goto(live_server.url + url)
        assert response.status == 200, (name, response.status)
        if page.evaluate("document.documentElement.scrollWidth") > WIDTH:
            wide[name] = too_wide(page)
        screenshot(page, name)
    assert wide == {}, f"pages that scroll sideways at {WIDTH} px: {wide}"

    page.goto(live_server.url + pages["admin-strategy-form"])
    legs = strategy.legs.count()
    boxes = page.locator("input[name^=legs-][name$=-overrides]:not([name*=__prefix__])")
    assert boxes.count() == legs and all(v == "" for v in boxes.evaluate_all("els => els.map(e => e.value)"))
    assert page.locator("#legs-group table").bounding_box()["width"] <= WIDTH
    assert page.inner_text("#content").lower().count("broker webhook") == 1
