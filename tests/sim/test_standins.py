"""The TradersPost and Discord stand-ins: validation like the real services, scripting, recording, CLI."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from trading.sim.discord import DiscordStandIn
from trading.sim.traderspost import TradersPostStandIn

ROOT = Path(__file__).resolve().parents[2]
ORDER = {"ticker": "MESZ4", "action": "buy", "quantity": 1, "orderType": "market", "timeInForce": "day"}


@pytest.mark.parametrize("body, message", [
    ({"action": "buy"}, "ticker is required"),
    ({"ticker": "MESZ4"}, "action is required"),
    ({**ORDER, "action": "short"}, "invalid action"),
    ({**ORDER, "quantity": 0}, "quantity must be a positive number"),
    ({**ORDER, "quantity": "1"}, "quantity must be a positive number"),
    ({**ORDER, "timeInForce": "gtd"}, "invalid timeInForce"),
])
def test_traderspost_standin_refuses_invalid_orders_with_400(body, message):
    with TradersPostStandIn() as tp:
        r = requests.post(f"{tp.url}/hook/a", json=body, timeout=5)
        assert r.status_code == 400 and message in r.json()["message"] and r.json()["success"] is False
        assert tp.orders() == [] and tp.orders(status=400) == [body]


def test_traderspost_standin_models_positions_per_webhook_and_ticker():
    with TradersPostStandIn() as tp:
        post = lambda path, **o: requests.post(f"{tp.url}{path}", json={**ORDER, **o}, timeout=5).status_code  # noqa
        assert post("/a", action="exit") == 400  # nothing open: refused like TradersPost
        assert post("/a") == 200
        assert post("/b", action="exit") == 400  # another webhook has no position
        assert post("/a", action="exit") == 200 and post("/a", action="exit") == 400
    with TradersPostStandIn(model_positions=False) as tp:
        assert requests.post(f"{tp.url}/a", json={**ORDER, "action": "exit"}, timeout=5).status_code == 200


def test_scripted_failure_does_not_open_a_position_and_invalid_orders_keep_the_script():
    with TradersPostStandIn() as tp:
        tp.script(500)
        assert requests.post(f"{tp.url}/a", json={"ticker": "X"}, timeout=5).status_code == 400  # no script used
        assert requests.post(f"{tp.url}/a", json=ORDER, timeout=5).status_code == 500
        assert requests.post(f"{tp.url}/a", json={**ORDER, "action": "exit"}, timeout=5).status_code == 400
        assert tp.pending_script() == []


def test_control_endpoint_scripts_answers_and_resets_and_records_everything(tmp_path):
    record = tmp_path / "tp.jsonl"
    with TradersPostStandIn(record=record) as tp:
        state = requests.post(f"{tp.url}/_control", json={"script": [503, {"status": 429, "headers":
                              {"Retry-After": "9"}, "body": {"message": "slow down"}}]}, timeout=5).json()
        assert [a["status"] for a in state["script"]] == [503, 429]
        first = requests.post(f"{tp.url}/hook/secret-path", json=ORDER, timeout=5,
                              headers={"Authorization": "Bearer abc", "X-Api-Key": "k", "X-Trace": "t1"})
        second = requests.post(f"{tp.url}/hook/secret-path", json=ORDER, timeout=5)
        third = requests.post(f"{tp.url}/hook/secret-path", json=ORDER, timeout=5)
        assert [first.status_code, second.status_code, third.status_code] == [503, 429, 200]
        assert second.headers["Retry-After"] == "9" and second.json() == {"message": "slow down"}
        received = requests.get(f"{tp.url}/_received", timeout=5).json()
        assert [e["status"] for e in received] == [503, 429, 200] and received[0]["path"] == "/hook/secret-path"
        assert received[0]["headers"]["X-Trace"] == "t1"
        assert "Authorization" not in received[0]["headers"] and "X-Api-Key" not in received[0]["headers"]
        assert requests.get(f"{tp.url}/", timeout=5).json() == received
        page = requests.get(f"{tp.url}/", headers={"Accept": "text/html"}, timeout=5)
        assert page.headers["Content-Type"].startswith("text/html") and "<table" in page.text and "MESZ4" in page.text
        assert [json.loads(line)["status"] for line in record.read_text().splitlines()] == [503, 429, 200]
        requests.post(f"{tp.url}/_control", json={"reset": True}, timeout=5)
        assert tp.snapshot() == [] and tp.positions == {}
        assert requests.post(f"{tp.url}/_control", json={"script": ["x"]}, timeout=5).status_code == 400


def test_discord_standin_refuses_over_limit_messages_and_answers_204_or_wait():
    with DiscordStandIn() as dc:
        over = [{"content": "c" * 2001}, {"embeds": [{"title": "t" * 257}]}, {"embeds": [{}] * 11},
                {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
                {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
                {"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, {"content": ""}]
        for message in over:
            r = requests.post(f"{dc.url}/api/webhooks/1/tok", json=message, timeout=5)
            assert r.status_code == 400, message
        ok = requests.post(f"{dc.url}/api/webhooks/1/tok", json={"content": "hi"}, timeout=5)
        assert ok.status_code == 204 and ok.content == b""
        waited = requests.post(f"{dc.url}/api/webhooks/1/tok?wait=true", json={"content": "hi"}, timeout=5)
        assert waited.status_code == 200 and waited.json()["content"] == "hi"
        assert dc.messages() == [{"content": "hi"}, {"content": "hi"}]


def test_discord_standin_rate_limit_set_over_control_endpoint():
    with DiscordStandIn() as dc:
        requests.post(f"{dc.url}/_control", json={"rate_limit": [2, 60]}, timeout=5)
        codes = [requests.post(f"{dc.url}/api/webhooks/1/a", json={"content": "x"}, timeout=5) for _ in range(3)]
        assert [r.status_code for r in codes] == [204, 204, 429]
        assert codes[0].headers["X-RateLimit-Remaining"] == "1" and codes[1].headers["X-RateLimit-Remaining"] == "0"
        body = codes[2].json()
        assert body["global"] is False and 59 < body["retry_after"] <= 60 and codes[2].headers["Retry-After"] == "60"
        # another webhook has its own bucket
        assert requests.post(f"{dc.url}/api/webhooks/2/b", json={"content": "x"}, timeout=5).status_code == 204


@pytest.mark.parametrize("module, body", [("trading.sim.traderspost", ORDER), ("trading.sim.discord", {"content": "x"})])
def test_standin_runs_as_a_process_and_stops_on_sigterm(module, body, tmp_path):
    record = tmp_path / "r.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", "--record", str(record)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = proc.stdout.readline().split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert requests.post(f"{url}/some/secret/path", json=body, timeout=5).status_code in (200, 204)
        assert json.loads(record.read_text())["body"] == body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_traderspost_standin_keeps_its_positions_across_a_restart(tmp_path):
    """A demo restart must not turn the exit of a position held across it into 'No open position to exit'."""
    record = tmp_path / "received.jsonl"
    order = {"ticker": "CL", "action": "buy", "quantity": 1}
    with TradersPostStandIn(record=record) as first:
        assert requests.post(f"{first.url}/trading/webhook/t", json=order, timeout=5).status_code == 200
    with TradersPostStandIn(record=record) as again:
        exit_ = requests.post(f"{again.url}/trading/webhook/t", json={**order, "action": "exit"}, timeout=5)
        assert exit_.status_code == 200, exit_.text
        assert [e["body"]["action"] for e in again.snapshot()] == ["buy", "exit"]
        twice = requests.post(f"{again.url}/trading/webhook/t", json={**order, "action": "exit"}, timeout=5)
        assert twice.status_code == 400 and twice.json()["message"] == "No open position to exit"
