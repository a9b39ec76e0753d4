"""TradersPost client: payload shape, one-POST classification against the stand-in, the URL stays secret."""
import logging
import secrets
import socket
from datetime import datetime, timezone

import pytest

from tests.conftest import remember_secret
from trading.execution.traderspost import (
    DeliveryResult, deliver, fingerprint, order_extras, order_payload, retry_after)
from trading.sim.traderspost import TradersPostStandIn, rate_limited


@pytest.fixture
def broker():
    with TradersPostStandIn() as standin:
        yield standin


def secret_url(standin) -> str:
    return remember_secret(f"{standin.url}/trading/webhook/{secrets.token_hex(8)}/{secrets.token_hex(12)}")


def entry(**over):
    values = dict(ticker="MESZ4", action="buy", quantity=2, signal_price=5012.25)
    values.update(over)
    return order_payload(**values)


# --- payload -------------------------------------------------------------------------------------------
def test_entry_payload_has_exact_case_sensitive_fields_and_no_price():
    extras = order_extras(strategy="IBS-A", signal_id="IBS-A:MES:2024-11-04T15:00Z:buy",
                          bar_time=datetime(2024, 11, 4, 15, tzinfo=timezone.utc), ibs=0.08, ml_score=0.71)
    payload = entry(stop_loss_percent=1.5, take_profit_price=5100.0, extras=extras)
    assert payload == {
        "ticker": "MESZ4", "action": "buy", "quantity": 2, "orderType": "market", "signalPrice": 5012.25,
        "timeInForce": "day", "stopLoss": {"type": "stop", "percent": 1.5}, "takeProfit": {"limitPrice": 5100.0},
        "extras": {"strategy": "IBS-A", "signal_id": "IBS-A:MES:2024-11-04T15:00Z:buy",
                   "bar_time": "2024-11-04T15:00:00Z", "ibs": 0.08, "ml_score": 0.71}}
    assert "price" not in payload and "limitPrice" not in payload


def test_stop_price_and_take_profit_percent_variants():
    payload = entry(stop_loss_price=4950.0, take_profit_percent=2.0)
    assert payload["stopLoss"] == {"type": "stop", "stopPrice": 4950.0}
    assert payload["takeProfit"] == {"percent": 2.0}
    with pytest.raises(ValueError, match="exactly one"):
        entry(stop_loss_price=4950.0, stop_loss_percent=1.0)


def test_exit_closes_with_exit_and_sell_is_refused():
    payload = entry(action="exit")
    assert payload["action"] == "exit" and "stopLoss" not in payload and "takeProfit" not in payload
    with pytest.raises(ValueError, match="use 'exit' to close a long"):
        entry(action="sell")
    with pytest.raises(ValueError, match="belong to an entry"):
        entry(action="exit", stop_loss_percent=1.0)


@pytest.mark.parametrize("tif", ["day", "gtc", "opg", "cls", "ioc", "fok"])
def test_every_valid_time_in_force_is_accepted(tif):
    assert entry(time_in_force=tif)["timeInForce"] == tif


@pytest.mark.parametrize("bad", [dict(time_in_force="DAY"), dict(time_in_force="gtd"), dict(quantity=0),
                                 dict(quantity=1.5), dict(quantity=True), dict(signal_price=0),
                                 dict(signal_price=float("nan")), dict(ticker=""), dict(action="cancel")])
def test_invalid_orders_are_refused_before_sending(bad):
    with pytest.raises(ValueError):
        entry(**bad)



def test_retry_after_header_parses_seconds_and_http_dates():
    assert retry_after("7") == (7.0, "")
    assert retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == (10.0, "")
    assert retry_after("soon")[0] is None and retry_after(None) == (None, "")


# --- one delivery, classified ---------------------------------------------------------------------------
def test_accepted_order_is_delivered_and_reaches_the_broker_unchanged(broker):
    url = secret_url(broker)
    result = deliver(url, entry(), timeout=5)
    assert result.outcome == "delivered" and result.status_code == 200 and '"success": true' in result.body
    assert broker.orders() == [entry()]


def test_rejected_order_is_permanent_with_the_brokers_message(broker):
    result = deliver(secret_url(broker), {"ticker": "MESZ4", "action": "short"}, timeout=5)
    assert (result.outcome, result.status_code) == ("permanent", 400)
    assert "invalid action" in result.body


def test_exit_with_nothing_open_is_a_permanent_400(broker):
    result = deliver(secret_url(broker), entry(action="exit"), timeout=5)
    assert (result.outcome, result.status_code) == ("permanent", 400) and "No open position" in result.body


def test_server_errors_are_retryable_then_delivered(broker):
    url = secret_url(broker)
    broker.script(500, {"status": 503, "body": {"message": "maintenance"}, "headers": {"Retry-After": "3"}})
    first, second, third = (deliver(url, entry(), timeout=5) for _ in range(3))
    assert (first.outcome, first.status_code, first.retry_after) == ("retryable", 500, None)
    assert (second.outcome, second.status_code, second.retry_after) == ("retryable", 503, 3.0)
    assert "maintenance" in second.body
    assert third.outcome == "delivered"
    assert [e["status"] for e in broker.snapshot()] == [500, 503, 200]


def test_rate_limited_answer_is_retryable_with_its_retry_after(broker):
    broker.script(rate_limited(retry_after=42))
    result = deliver(secret_url(broker), entry(), timeout=5)
    assert (result.outcome, result.status_code, result.retry_after) == ("retryable", 429, 42.0)


def test_slow_broker_is_ambiguous_never_retryable(broker):
    """The request left and the broker took it (it answers late): retrying would be a second order."""
    broker.script({"status": 200, "delay": 1.5})
    result = deliver(secret_url(broker), entry(), timeout=0.3)
    assert result.outcome == "ambiguous" and result.status_code is None and "after the request left" in result.error
    assert len(broker.orders()) == 1


def test_connection_dropped_after_the_request_is_ambiguous():
    """A server that reads the whole request and hangs up without an answer."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    import threading

    threading.Thread(target=serve, daemon=True).start()
    url = remember_secret(f"http://127.0.0.1:{server.getsockname()[1]}/trading/webhook/{secrets.token_hex(16)}")
    try:
        result = deliver(url, entry(), timeout=5)
    finally:
        server.close()
    assert result.outcome == "ambiguous" and "ConnectionError" in result.error


def test_connection_refused_is_retryable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = remember_secret(f"http://127.0.0.1:{port}/trading/webhook/{secrets.token_hex(16)}")
    result = deliver(url, entry(), timeout=2)
    assert result.outcome == "retryable" and result.status_code is None
    assert result.error.startswith("connection error")


def test_response_body_is_truncated(broker):
    broker.script({"status": 400, "body": "x" * 50_000})
    result = deliver(secret_url(broker), entry(), timeout=5)
    assert result.outcome == "permanent" and len(result.body) == 2000


# --- the URL is a secret ------------------------------------------------------------------------------
def test_url_never_appears_in_logs_results_or_errors(broker, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # even if a configuration turns its path logging on
    url = secret_url(broker)
    token = url.rsplit("/", 1)[1]
    broker.script(500, {"status": 200, "delay": 1.0})
    results = [deliver(url, entry(), timeout=5), deliver(url, entry(), timeout=0.2)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/trading/webhook/{token}"
    results.append(deliver(dead, entry(), timeout=1))
    assert [r.outcome for r in results] == ["retryable", "ambiguous", "retryable"]
    text = caplog.text + "".join(repr(r) + str(r) + r.error + r.body for r in results)
    assert token not in text and "/trading/webhook/" not in text
    assert f"hook={fingerprint(url)}" in caplog.text  # the fingerprint stands in for it
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # client logs were there, redacted
    assert all(r.hook in (fingerprint(url), fingerprint(dead)) for r in results)


def test_fingerprint_is_stable_short_and_distinct():
    assert fingerprint("http://a/x") == fingerprint("http://a/x") and len(fingerprint("http://a/x")) == 8
    assert fingerprint("http://a/x") != fingerprint("http://a/y")
    assert "http" not in repr(DeliveryResult("delivered", 200, hook=fingerprint("http://a/x")))
