"""The TradersPost stand-in holds a chosen order unanswered (a POST in flight, made deterministic): the body has
arrived, its sender waits until the hold is released; other orders are answered meanwhile."""
import threading

import pytest
import requests

from trading.sim.traderspost import TradersPostStandIn

ORDER = {"ticker": "6AZ6", "action": "buy", "quantity": 1, "orderType": "market", "timeInForce": "day",
         "extras": {"strategy": "ibs_a", "signal_id": "ibs_a:6A:1"}}


def post_in_background(url: str, body: dict) -> tuple[threading.Thread, dict]:
    out = {}

    def post():
        out["status"] = requests.post(url, json=body, timeout=20).status_code
    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, out


def test_the_chosen_order_is_held_until_released_while_others_are_answered():
    with TradersPostStandIn() as tp:
        held = tp.hold({"action": "buy", "extras.strategy": "ibs_a"}, skip=1)
        assert requests.post(f"{tp.url}/a", json=ORDER, timeout=5).status_code == 200  # the one skipped
        chosen = {**ORDER, "extras": {"strategy": "ibs_a", "signal_id": "ibs_a:6A:2"}}
        thread, out = post_in_background(f"{tp.url}/a", chosen)
        assert held.arrived.wait(10) and held.order == chosen
        # Meanwhile: another strategy's order, and an exit, go through; the held one is not answered.
        assert requests.post(f"{tp.url}/b", json={**ORDER, "extras": {"strategy": "ibs_b"}}, timeout=5).status_code == 200
        assert requests.post(f"{tp.url}/a", json={**ORDER, "action": "exit"}, timeout=5).status_code == 200
        thread.join(0.5)
        assert thread.is_alive() and "status" not in out
        assert chosen not in tp.orders()
        held.release()
        thread.join(10)
        assert out == {"status": 200} and tp.orders()[-1] == chosen
        # A hold takes one order: the next match is answered at once.
        assert requests.post(f"{tp.url}/a", json=chosen, timeout=5).status_code == 200


def test_a_hold_set_over_the_control_endpoint_is_released_by_it_and_a_bad_one_is_refused():
    with TradersPostStandIn() as tp:
        state = requests.post(f"{tp.url}/_control", json={"hold": {"where": {"ticker": "6AZ6"}}}, timeout=5).json()
        assert state["holds"] == [{"where": {"ticker": "6AZ6"}, "skip": 0, "held": False, "released": False}]
        thread, out = post_in_background(f"{tp.url}/a", ORDER)
        assert tp.holds[0].arrived.wait(10)
        assert requests.post(f"{tp.url}/_control", json={"release": True}, timeout=5).json()["holds"] == []
        thread.join(10)
        assert out == {"status": 200}
        r = requests.post(f"{tp.url}/_control", json={"hold": {"ticker": "6AZ6"}}, timeout=5)
        assert r.status_code == 400 and "where" in r.json()["message"]


@pytest.mark.timeout(30)
def test_stopping_the_standin_releases_a_held_order():
    tp = TradersPostStandIn().start()
    held = tp.hold({"ticker": "6AZ6"}, timeout=60)
    thread, out = post_in_background(f"{tp.url}/a", ORDER)
    assert held.arrived.wait(10)
    tp.stop()
    thread.join(10)
    assert held.released.is_set() and not thread.is_alive()
