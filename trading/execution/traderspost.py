"""TradersPost webhooks: the order payload, and one POST classified as delivered/retryable/permanent.

`action` is `buy` to enter a long and `exit` to close it — never `sell`, which on TradersPost
closes the long and then opens a short. No `price` field (it would make a limit order). The URL
is a secret: it never appears in a log, an exception or a result; a short fingerprint stands in.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import requests

log = logging.getLogger(__name__)
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
ACTIONS = ("buy", "exit")


def fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def order_payload(*, ticker: str, action: str, quantity: int, signal_price: float, time_in_force: str = "day",
                  stop_loss_price: float | None = None, take_profit_price: float | None = None,
                  extras: dict | None = None) -> dict:
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not allowed: use 'buy' to enter a long and 'exit' to close it")
    if time_in_force not in TIME_IN_FORCE:
        raise ValueError(f"timeInForce {time_in_force!r} is not one of {', '.join(TIME_IN_FORCE)}")
    if quantity < 1:
        raise ValueError(f"quantity {quantity} must be at least 1")
    payload = {"ticker": ticker, "action": action, "quantity": quantity, "orderType": "market",
               "signalPrice": signal_price, "timeInForce": time_in_force}
    if action == "buy" and stop_loss_price is not None:
        payload["stopLoss"] = {"type": "stop", "stopPrice": stop_loss_price}
    if action == "buy" and take_profit_price is not None:
        payload["takeProfit"] = {"limitPrice": take_profit_price}
    if extras:
        payload["extras"] = extras
    return payload


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # delivered | retryable | permanent
    status_code: int | None = None
    body: str = ""
    retry_after: float | None = None
    error: str = ""


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def deliver(url: str, payload: dict, timeout: float = 10.0, session: requests.Session | None = None) -> DeliveryResult:
    """POST once. 2xx delivered; 429/5xx/timeout/connection retryable; other 4xx permanent."""
    started = time.monotonic()
    try:
        response = (session or requests).post(url, json=payload, timeout=timeout)
    except requests.Timeout:
        return DeliveryResult("retryable", error=f"timeout after {timeout:.0f}s")
    except requests.RequestException as exc:
        # The exception text may contain the URL: keep only its class.
        return DeliveryResult("retryable", error=f"connection error ({exc.__class__.__name__})")
    body = response.text[:2000]
    elapsed = (time.monotonic() - started) * 1000
    log.info("webhook post hook=%s status=%d ms=%.0f", fingerprint(url), response.status_code, elapsed)
    if 200 <= response.status_code < 300:
        return DeliveryResult("delivered", response.status_code, body)
    if response.status_code == 429 or response.status_code >= 500:
        return DeliveryResult("retryable", response.status_code, body, _retry_after(response))
    return DeliveryResult("permanent", response.status_code, body)
