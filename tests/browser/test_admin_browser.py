"""The operator's admin in real headless Chromium: log in, edit, see errors, pull the killswitch."""
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.browser.conftest import log_in, screenshot
from trading.models import Instrument, KillSwitch, KillSwitchEvent, Strategy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "chromium-test-pw-4821"


@pytest.fixture
def admin_page(page, live_server, django_user_model, webhook_env):
    call_command("load_demo")
    return log_in(page, live_server, django_user_model, next_path="/admin/", ready="#site-name", password=PASSWORD)


def field_errors(page, field: str) -> str:
    return page.inner_text(f".field-{field} .errorlist") if page.locator(f".field-{field} .errorlist").count() else ""


def test_edit_instrument_bad_value_then_good_value(admin_page, live_server):
    page = admin_page
    cl = Instrument.objects.get(root="CL")
    page.goto(f"{live_server.url}/admin/trading/instrument/{cl.pk}/change/")
    page.fill("#id_tick_value", "12.34")
    page.fill("#id_point_value", "-1")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    screenshot(page, "instrument-validation-errors")
    assert "greater than 0" in field_errors(page, "point_value")
    assert Instrument.objects.get(pk=cl.pk).point_value == Decimal("1000")

    page.fill("#id_point_value", "1000")
    page.fill("#id_tick_value", "10.00")
    page.fill("#id_active_contract", "CLF7")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert Instrument.objects.get(pk=cl.pk).active_contract == "CLF7"


def test_strategy_bad_values_each_named(admin_page, live_server):
    page = admin_page
    strategy = Strategy.objects.get(name="ibs_a")
    page.goto(f"{live_server.url}/admin/trading/strategy/{strategy.pk}/change/")
    page.fill("#id_ibs_entry_low", "1.5")
    page.fill("#id_entry_windows", "00:00-15:00,nonsense")
    page.fill("#id_broker_webhook", "${TRADERSPOST_IBS_A_WEBHOOK")
    page.fill("#id_discord_webhook", "${PINEOPS_NOT_CONFIGURED}")
    page.fill("#id_ml_threshold", "-0.2")
    page.fill("#id_legs-0-size", "0")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    screenshot(page, "strategy-validation-errors")
    assert field_errors(page, "ibs_entry_low") == "1.5 is outside [0, 1]"
    assert "cannot parse 'nonsense'" in field_errors(page, "entry_windows")
    assert field_errors(page, "broker_webhook").count("not a valid reference") == 1
    assert "PINEOPS_NOT_CONFIGURED is not set" in field_errors(page, "discord_webhook")
    assert field_errors(page, "ml_threshold") == "-0.2 is outside [0, 1]"
    legs = page.inner_text("#legs-group")
    assert legs.count("at least 1 contract") == 1
    assert "ibs_entry_low" not in legs  # the strategy's error is not blamed on every leg
    content = page.content()
    assert "TRADERSPOST_IBS_A_WEBHOOK" in content
    assert Strategy.objects.get(pk=strategy.pk).ibs_entry_low == 0.0


def test_pull_killswitch_with_reason(admin_page, live_server):
    page = admin_page
    page.goto(f"{live_server.url}/admin/trading/killswitch/")
    page.select_option("#id_mode", "entries")
    page.click("input[name=_save]")  # no reason: refused
    page.wait_for_selector(".errornote")
    assert KillSwitch.objects.get().mode == "off"
    page.fill("#id_reason", "CPI release, standing aside")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .warning")
    screenshot(page, "killswitch-pulled")
    assert "recorded for operator" in page.inner_text(".messagelist")
    event = KillSwitchEvent.objects.get()
    assert (event.actor, event.mode, event.reason) == ("operator", "entries", "CPI release, standing aside")
    page.goto(f"{live_server.url}/admin/trading/killswitchevent/")
    assert "CPI release, standing aside" in page.inner_text("#result_list")
    page.goto(f"{live_server.url}/admin/")
    screenshot(page, "admin-index")
