"""Flatten pulled from the dashboard in real headless Chromium: every open position of every strategy
gets its exit, the outbox delivers each once to the TradersPost stand-in, and the dashboard shows
every exit delivered."""
from datetime import timedelta

import pytest

from tests.browser.conftest import log_in, screenshot
from tests.desk import T0, demo_desk, held_position, publish_minute
from trading.execution.outbox import send_pending_orders
from trading.health.heartbeat import beat
from trading.models import Position, Strategy, Trade
from trading.risk.killswitch import current_mode

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "chromium-flatten-pw-5531"


@pytest.fixture
def desk(settings, monkeypatch, broker, runtime_dir, redis_prefix, webhook_env):
    ibs_a = demo_desk(settings, monkeypatch, broker, runtime_dir, redis_prefix, roots=("CL", "GC"))
    ibs_b = Strategy.objects.get(name="ibs_b")
    held = [held_position(ibs_a, "CL", entry=70.0), held_position(ibs_a, "GC", entry=2000.0),
            held_position(ibs_b, "SI", entry=30.0)]
    for root, close in (("CL", 70.4), ("GC", 2004.0), ("SI", 29.9)):
        publish_minute(root, close, T0 + timedelta(hours=3))
    for name in ("ibs_a", "ibs_b"):  # their workers run (a position without one shows as unmanaged)
        beat(f"worker:{name}", state="running", interval=30)
    return held


def test_flatten_from_the_dashboard_delivers_every_exit_once_and_shows_it(page, live_server, django_user_model,
                                                                        desk, broker):
    js_errors = []
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    log_in(page, live_server, django_user_model, next_path="/admin/dashboard/", ready="#killswitch-control",
           password=PASSWORD)
    rows = page.locator("#positions tr.position-row")
    assert rows.count() == 3 and set(rows.locator("td.exit-state").all_inner_texts()) == {"—"}

    page.select_option("#id_mode", "flatten")
    page.fill("#id_reason", "flat into the FOMC")
    page.check("#id_confirm")
    page.once("dialog", lambda d: d.accept())
    with page.expect_navigation():
        page.click("input[name=apply]")
    page.wait_for_selector("#flatten-exits")
    assert current_mode() == "flatten"
    assert page.locator("tr.flatten-exit").count() == 3
    assert set(page.locator("tr.flatten-exit td.flatten-state").all_inner_texts()) == {"pending"}
    assert set(rows.locator("td.exit-state").all_inner_texts()) == {"exit pending"}
    assert "exits on their way" in page.inner_text("#flatten")

    send_pending_orders()  # the order sender's pass: the real outbox to the stand-in over HTTP
    page.reload()
    page.wait_for_selector("#flatten-exits")
    assert "every exit delivered" in page.inner_text("#flatten")
    assert set(page.locator("tr.flatten-exit td.flatten-state").all_inner_texts()) == {"sent"}
    assert page.locator("#positions tr.position-row").count() == 0
    screenshot(page, "dashboard-flatten")
    assert js_errors == []

    exits = [o for o in broker.orders() if o["action"] == "exit"]
    assert sorted((o["extras"]["strategy"], o["ticker"]) for o in exits) == [
        ("ibs_a", "CLZ6"), ("ibs_a", "GCZ6"), ("ibs_b", "SIZ6")]  # each position's own contract
    assert len({o["extras"]["signal_id"] for o in exits}) == 3
    assert Trade.objects.filter(exit_reason="flatten").count() == 3 and not Position.objects.open().exists()
