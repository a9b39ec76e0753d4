"""The TradersPost and Discord stand-ins' pages in headless Chromium at 1280×800, after ~300 requests each: no
sideways scrolling, the newest on the first line, a page of a few screens, and a line leads to the body posted."""
import json

import pytest
import requests

from tests.browser.conftest import screenshot
from trading.sim.discord import DiscordStandIn
from trading.sim.httpstandin import PAGE_ROWS
from trading.sim.traderspost import TradersPostStandIn

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1280, 800
POSTS = 300
MAX_PAGE_HEIGHT = 6000  # PAGE_ROWS one-line rows and a header; the raw pages were 11,800 and 28,900 px


def orders():
    for i in range(1, POSTS + 1):
        ticker = ("MESZ6", "CLZ6", "GCZ6")[i % 3]
        yield {"ticker": ticker, "action": "buy" if i % 2 else "exit", "quantity": i % 4 + 1, "orderType": "market",
               "signalPrice": 6000 + i / 4, "timeInForce": "day", "stopLoss": {"type": "stop", "stopPrice": 5990},
               "extras": {"strategy": "ibs_a", "signal_id": f"ibs_a:{ticker}:{i:06d}", "bar_time": "2026-12-03T15:59Z",
                          "note": "n" * (i % 50) * 10}}  # some long unbroken text
    yield {"ticker": "MESZ6" * 40, "action": "buy", "quantity": 1, "orderType": "market", "timeInForce": "day",
           "extras": {"strategy": '<script>alert("tp")</script>', "signal_id": "x" * 600}}


def messages():
    for i in range(1, POSTS + 1):
        if i % 2:
            yield {"content": f"Heartbeat ok {i} " + "word " * (i % 60)}
        else:
            yield {"embeds": [{"title": f"Order sent: ibs_a buy {i} MES", "description": "d" * (i % 40) * 50,
                               "fields": [{"name": "signal", "value": f"ibs_a:MES:{i:06d}"}]}]}
    yield {"content": "c" * 1900, "embeds": [{"title": '<script>alert("dc")</script> "quoted"',
                                               "description": "w" * 4000}]}


def post_all(standin, path, bodies) -> list[dict]:
    posted = []
    with requests.Session() as s:
        for body in bodies:
            s.post(f"{standin.url}{path}", json=body, timeout=5)
            posted.append(body)
    return posted


@pytest.fixture
def wide(browser):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(15000)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()
    assert dialogs == [], "a posted body ran as script"


def measure(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")


@pytest.mark.parametrize("standin_class, path, bodies, name", [
    (TradersPostStandIn, "/trading/webhook/tok-3e1f9a77c0", orders, "traderspost"),
    (DiscordStandIn, "/api/webhooks/42/tok-b7d0c4e2aa", messages, "discord"),
])
def test_standin_page_fits_1280_newest_first_and_a_line_leads_to_the_body_posted(wide, standin_class, path,
                                                                                  bodies, name):
    with standin_class() as standin:
        posted = post_all(standin, path, bodies())
        total = len(posted)
        wide.goto(f"{standin.url}/")
        wide.wait_for_selector("table.list tbody tr")
        width, height = measure(wide)
        screenshot(wide, f"standin-{name}")
        assert width <= WIDTH, f"{name} page scrolls sideways: {width}px"
        assert height <= MAX_PAGE_HEIGHT, f"{name} page is {height}px tall"
        rows = wide.locator("table.list tbody tr")
        assert rows.count() == PAGE_ROWS
        assert [rows.nth(i).get_attribute("data-n") for i in (0, 1, PAGE_ROWS - 1)] == [
            str(total), str(total - 1), str(total - PAGE_ROWS + 1)]
        assert f"showing {PAGE_ROWS} of {total}, newest first" in wide.locator("#shown").inner_text()
        assert "tok-" not in wide.content()  # the webhook's path is its secret
        if name == "discord":
            assert rows.nth(0).locator("td").nth(4).inner_text().startswith('<script>alert("dc")</script>')

        rows.nth(1).locator("td").nth(4).locator("a").click()  # the one before the newest
        wide.wait_for_selector("#body")
        assert wide.url == f"{standin.url}/received/{total - 1}"
        assert json.loads(wide.locator("#body").inner_text()) == posted[-2]
        wide.click("#newer")
        wide.wait_for_url(f"{standin.url}/received/{total}")
        assert json.loads(wide.locator("#body").inner_text()) == posted[-1]
        assert wide.locator("#newer").count() == 0 and wide.locator("#older").count() == 1
        width, _ = measure(wide)
        screenshot(wide, f"standin-{name}-detail")
        assert width <= WIDTH, f"{name} detail scrolls sideways: {width}px"
        assert "tok-" not in wide.content() and wide.locator("body script").count() == 0
