"""The stand-ins' pages for a browser: newest first, one line a request, a detail view each, never a webhook path,
every byte they were sent escaped; JSON clients of `GET /` and `GET /_received` get exactly what they got before."""
import html
import json
import re

import pytest
import requests

from trading.sim.discord import DiscordStandIn
from trading.sim.httpstandin import PAGE_ROWS, webhook_fingerprint
from trading.sim.traderspost import TradersPostStandIn

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
HOOK = "/trading/webhook/tok-5f2c9e1d7b"  # a webhook path is its secret
DISCORD_HOOK = "/api/webhooks/1234/tok-9a8b7c6d5e"
ORDER = {"ticker": "MESZ6", "action": "buy", "quantity": 2, "orderType": "market", "signalPrice": 6001.25,
         "timeInForce": "day", "extras": {"strategy": "ibs_a", "signal_id": "ibs_a:MES:20261203"}}


def page(url: str, path: str = "/") -> requests.Response:
    return requests.get(f"{url}{path}", headers=BROWSER, timeout=5)


def row_numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-n="(\d+)">', text)]


def shown(text: str, element_id: str) -> str:
    """The text of the <pre id=...> on a page, as a browser shows it."""
    return html.unescape(re.search(rf'<pre id="{element_id}">(.*?)</pre>', text, re.S)[1])


def test_orders_page_lists_newest_first_one_line_each_without_the_webhook_path():
    with TradersPostStandIn() as tp:
        for quantity in (1, 2, 3):
            requests.post(f"{tp.url}{HOOK}", json={**ORDER, "quantity": quantity}, timeout=5)
        requests.post(f"{tp.url}{HOOK}", json={**ORDER, "action": "exit", "ticker": "CLZ6"}, timeout=5)
        r = page(tp.url)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert row_numbers(r.text) == [4, 3, 2, 1]
        assert "showing 4 of 4, newest first" in r.text
        assert "buy 3 MESZ6 market @ 6001.25 day · ibs_a" in r.text
        assert "400 No open position to exit" in r.text  # why an order was refused, on its line
        assert "tok-5f2c9e1d7b" not in r.text and HOOK not in r.text
        assert webhook_fingerprint(HOOK) in r.text
        assert r.text.count('href="/received/3"') == 2  # its number and its summary both lead to it


def test_discord_page_summarises_by_embed_title_or_content():
    with DiscordStandIn() as dc:
        requests.post(f"{dc.url}{DISCORD_HOOK}", json={"content": "plain\nmessage"}, timeout=5)
        requests.post(f"{dc.url}{DISCORD_HOOK}", json={"content": "hello", "embeds": [
            {"title": "Order sent: ibs_a buy MES", "description": "d"}, {"title": "second"}]}, timeout=5)
        r = page(dc.url)
        assert row_numbers(r.text) == [2, 1]
        assert "Order sent: ibs_a buy MES (+1 more embeds)" in r.text and "plain message" in r.text
        assert "tok-9a8b7c6d5e" not in r.text and "discord-standin: messages received" in r.text


def test_detail_view_shows_the_whole_body_its_safe_headers_the_answer_and_its_neighbours():
    with TradersPostStandIn() as tp:
        for quantity in (1, 2, 3):
            requests.post(f"{tp.url}{HOOK}", json={**ORDER, "quantity": quantity}, timeout=5,
                          headers={"X-Trace": f"t{quantity}", "Authorization": "Bearer sekrit-xyz"})
        r = page(tp.url, "/received/2")
        assert r.status_code == 200 and "order #2 of 3" in r.text
        assert json.loads(shown(r.text, "body")) == {**ORDER, "quantity": 2}
        assert shown(r.text, "body") == json.dumps({**ORDER, "quantity": 2}, indent=2)  # pretty-printed
        assert json.loads(shown(r.text, "answer")) == {"success": True, "id": 2, "logId": "sim-2"}
        assert "<th>X-Trace</th><td>t2</td>" in r.text
        assert "sekrit-xyz" not in r.text and "Authorization" not in r.text and "tok-5f2c9e1d7b" not in r.text
        assert 'href="/received/1"' in r.text and 'href="/received/3"' in r.text
        last = page(tp.url, "/received/3").text
        assert 'href="/received/2"' in last and 'href="/received/4"' not in last


def test_detail_view_shows_a_refusal_and_its_headers():
    with DiscordStandIn(rate_limit=(1, 60)) as dc:
        requests.post(f"{dc.url}{DISCORD_HOOK}", json={"content": "one"}, timeout=5)
        requests.post(f"{dc.url}{DISCORD_HOOK}", json={"content": "two"}, timeout=5)
        r = page(dc.url, "/received/2")
        assert json.loads(shown(r.text, "answer"))["message"] == "You are being rate limited."
        assert "<th>Retry-After</th><td>60</td>" in r.text
        assert shown(page(dc.url, "/received/1").text, "answer") == "(no body)"  # a 204


def test_untrusted_bodies_arrive_escaped_on_both_pages():
    hostile = '<script>alert("pwned")</script>'
    with TradersPostStandIn() as tp, DiscordStandIn() as dc:
        requests.post(f"{tp.url}{HOOK}", json={**ORDER, "ticker": hostile, "extras": {"strategy": hostile}},
                      timeout=5, headers={"X-Trace": hostile})
        requests.post(f"{tp.url}{HOOK}", data=f'not json {hostile}'.encode(), timeout=5)
        requests.post(f"{dc.url}{DISCORD_HOOK}", json={"embeds": [{"title": hostile}]}, timeout=5)
        pages = [page(tp.url).text, page(tp.url, "/received/1").text, page(tp.url, "/received/2").text,
                 page(dc.url).text, page(dc.url, "/received/1").text]
        for text in pages:
            assert "<script" not in text and '"pwned"' not in text
            assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in text
        assert json.loads(shown(pages[1], "body"))["ticker"] == hostile
        assert shown(pages[2], "body") == f"not json {hostile}"


@pytest.mark.parametrize("path", ["/received/0", "/received/4", "/received/99999", "/received/x", "/received/"])
def test_a_request_number_that_does_not_exist_is_404(path):
    with TradersPostStandIn() as tp:
        for _ in range(3):
            requests.post(f"{tp.url}{HOOK}", json=ORDER, timeout=5)
        r = page(tp.url, path)
        assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/html")
        assert requests.get(f"{tp.url}{path}", timeout=5).json() == {"message": "not found"}


def test_json_clients_still_get_json_byte_for_byte():
    with TradersPostStandIn() as tp, DiscordStandIn() as dc:
        for standin, path, body in ((tp, HOOK, ORDER), (dc, DISCORD_HOOK, {"content": "hi"})):
            requests.post(f"{standin.url}{path}", json=body, timeout=5)
            requests.post(f"{standin.url}{path}", json={"bad": True}, timeout=5)
            expected = json.dumps(standin.snapshot()).encode()
            for accept in (None, "application/json", "*/*"):
                headers = {"Accept": accept} if accept else {}
                for endpoint in ("/", "/_received"):
                    r = requests.get(f"{standin.url}{endpoint}", headers=headers, timeout=5)
                    assert r.headers["Content-Type"] == "application/json" and r.content == expected
            assert requests.get(f"{standin.url}/_received", headers=BROWSER, timeout=5).content == expected
            assert [e["path"] for e in standin.snapshot()] == [path, path]  # the JSON keeps what it always had


def test_the_page_shows_the_newest_few_hundred_and_leads_to_older_ones():
    total = PAGE_ROWS + 5
    with DiscordStandIn() as dc, requests.Session() as s:
        for i in range(1, total + 1):
            s.post(f"{dc.url}{DISCORD_HOOK}", json={"content": f"message {i}"}, timeout=5)
        r = page(dc.url)
        assert row_numbers(r.text) == list(range(total, 5, -1))
        assert f"showing {PAGE_ROWS} of {total}, newest first" in r.text and 'href="/?before=6"' in r.text
        older = page(dc.url, "/?before=6").text
        assert row_numbers(older) == [5, 4, 3, 2, 1] and "showing 5 of 205" in older
        assert row_numbers(page(dc.url, f"/received/{3}").text) == []
        assert 'href="/?before=4"' in page(dc.url, "/received/3").text  # back to the list where #3 is


def test_an_empty_stand_in_says_so_and_a_replayed_request_says_its_answer_was_not_kept(tmp_path):
    record = tmp_path / "tp.jsonl"
    with TradersPostStandIn(record=record) as tp:
        assert "nothing received yet" in page(tp.url).text
        requests.post(f"{tp.url}{HOOK}", json=ORDER, timeout=5)
    with TradersPostStandIn(record=record) as again:
        text = page(again.url, "/received/1").text
        assert json.loads(shown(text, "body")) == ORDER and "not kept across a restart" in text
        assert "tok-5f2c9e1d7b" not in text
