"""TradersPost webhooks: the order payload, and one POST classified as delivered/retryable/permanent.

`action` is `buy` to enter a long and `exit` to close it — never `sell`, which on TradersPost
closes the long and then opens a short. No `price` field (it would make a limit order). The URL
is a secret: it never appears in a log, an exception, a repr or a result; a short fingerprint
(`fingerprint(url)`) stands in. `deliver()` makes exactly one attempt: retrying is the outbox's job.
"""
from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import requests
import urllib3

from trading.delivery.outcomes import Outcome
from trading.delivery.retry import retry_after
from trading.delivery.webhooks import fingerprint

log = logging.getLogger(__name__)
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
ACTIONS = ("buy", "exit")
BODY_LIMIT = 2000  # characters of the response body kept in a result


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value) if not isinstance(value, int) else value


def _one_of(name: str, **options) -> dict:
    given = {k: v for k, v in options.items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"{name} needs exactly one of {', '.join(options)}; got {', '.join(given) or 'none'}")
    key, value = next(iter(given.items()))
    return {key: _positive(f"{name}.{key}", value)}


def take_profit(*, limit_price: float | None = None, percent: float | None = None) -> dict:
    """`takeProfit` object: an absolute limit price or a percent from the fill."""
    return _one_of("takeProfit", limitPrice=limit_price, percent=percent)


def stop_loss(*, stop_price: float | None = None, percent: float | None = None) -> dict:
    """`stopLoss` object (a stop order): an absolute stop price or a percent from the fill."""
    return {"type": "stop", **_one_of("stopLoss", stopPrice=stop_price, percent=percent)}


def order_extras(*, strategy: str, signal_id: str, bar_time: datetime | str | None = None,
                 ibs: float | None = None, ml_score: float | None = None) -> dict:
    """The `extras` object TradersPost stores with the order (ignored for execution)."""
    if isinstance(bar_time, datetime):
        if bar_time.tzinfo is None:
            raise ValueError("bar_time must be timezone-aware")
        bar_time = bar_time.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    extras = {"strategy": strategy, "signal_id": signal_id, "bar_time": bar_time, "ibs": ibs, "ml_score": ml_score}
    return {k: v for k, v in extras.items() if v is not None}


def order_payload(*, ticker: str, action: str, quantity: int, signal_price: float, time_in_force: str = "day",
                  stop_loss_price: float | None = None, take_profit_price: float | None = None,
                  stop_loss_percent: float | None = None, take_profit_percent: float | None = None,
                  extras: dict | None = None) -> dict:
    """The JSON body of one TradersPost order (field names are case-sensitive; never `price`)."""
    if action == "sell":
        raise ValueError("action 'sell' is refused: on TradersPost it closes a long and then opens a short; "
                         "use 'exit' to close a long")
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not allowed: use 'buy' to enter a long and 'exit' to close it")
    if time_in_force not in TIME_IN_FORCE:
        raise ValueError(f"timeInForce {time_in_force!r} is not one of {', '.join(TIME_IN_FORCE)}")
    if not isinstance(ticker, str) or not ticker.strip():
        raise ValueError("ticker is required")
    if isinstance(quantity, bool) or not isinstance(quantity, numbers.Integral) or quantity < 1:
        raise ValueError(f"quantity {quantity!r} must be a whole number of at least 1")
    signal_price = _positive("signalPrice", signal_price)
    payload = {"ticker": ticker, "action": action, "quantity": int(quantity), "orderType": "market",
               "signalPrice": signal_price, "timeInForce": time_in_force}
    protective = (stop_loss_price, stop_loss_percent, take_profit_price, take_profit_percent)
    if action != "buy" and any(v is not None for v in protective):
        raise ValueError("stopLoss/takeProfit belong to an entry ('buy'), not to an exit")
    if stop_loss_price is not None or stop_loss_percent is not None:
        payload["stopLoss"] = stop_loss(stop_price=stop_loss_price, percent=stop_loss_percent)
    if take_profit_price is not None or take_profit_percent is not None:
        payload["takeProfit"] = take_profit(limit_price=take_profit_price, percent=take_profit_percent)
    if extras:
        payload["extras"] = dict(extras)
    return payload


@dataclass(frozen=True)
class DeliveryResult:
    """One POST's outcome. Holds the URL's fingerprint (`hook`), never the URL."""
    outcome: str  # an Outcome: delivered | retryable | permanent | ambiguous (no answer after the request left)
    status_code: int | None = None
    body: str = ""
    retry_after: float | None = None  # seconds the broker asked us to wait (429 / 503 Retry-After), capped
    error: str = ""
    hook: str = ""
    elapsed_ms: int = 0
    note: str = ""  # what was made of an odd header (a Retry-After capped or unreadable)

    @property
    def delivered(self) -> bool:
        return self.outcome == Outcome.DELIVERED

    @property
    def retryable(self) -> bool:
        return self.outcome == Outcome.RETRYABLE


def request_never_left(exc: requests.RequestException) -> bool:
    """Whether a failed POST certainly never reached the server: no connection was made (refused,
    unresolvable, connect timeout, TLS handshake). Anything else — a read timeout, a connection
    dropped after sending — may have delivered the order."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.InvalidURL,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return True
    if isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def deliver(url: str, payload: dict, timeout: float = 10.0, session: requests.Session | None = None) -> DeliveryResult:
    """POST once. 2xx delivered; 429/5xx and no connection retryable; other 4xx permanent; a timeout or a
    dropped connection after the request left ambiguous (never retried: it may be an order already)."""
    hook = fingerprint(url)
    started = time.monotonic()

    def ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        response = (session or requests).post(url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        # The exception text contains the URL: keep only its class. A request that never left (no
        # connection) is safe to retry; one that left without an answer may be an order already.
        never_left = request_never_left(exc)
        outcome = Outcome.RETRYABLE if never_left else Outcome.AMBIGUOUS
        what = (f"timeout after {timeout:g}s" if isinstance(exc, requests.Timeout) else "connection error") + \
            f" ({exc.__class__.__name__}{', before the request left' if never_left else ', after the request left'})"
        log.warning("webhook post hook=%s outcome=%s error=%s", hook, outcome, what)
        return DeliveryResult(outcome, error=what, hook=hook, elapsed_ms=ms())
    status = response.status_code
    body = response.text[:BODY_LIMIT]
    wait, note = None, ""
    if 200 <= status < 300:
        outcome = Outcome.DELIVERED
    elif status == 429 or status >= 500:
        outcome = Outcome.RETRYABLE
        wait, note = retry_after(response.headers.get("Retry-After"))
    else:
        outcome = Outcome.PERMANENT
    elapsed = ms()
    log.info("webhook post hook=%s status=%d outcome=%s ms=%d%s", hook, status, outcome, elapsed,
             f" note={note!r}" if note else "")
    return DeliveryResult(outcome, status, body, wait, hook=hook, elapsed_ms=elapsed, note=note)
