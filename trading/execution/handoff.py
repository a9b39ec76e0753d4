"""Orders handed from the worker to its sender: the message on the pipe, and the send of a handed order.

The worker writes each order it has just committed (id, payload, what the send needs) to its sender's
pipe, so the sender neither looks for pending rows nor reads the order back before its POST. The order
is claimed and its attempt logged as started in one transaction (on PostgreSQL one statement), only
while it is still pending and no earlier order of its instrument is unsent; anything out of the
ordinary (expired, refused by the killswitch, paper, rate limited, a webhook that does not resolve)
goes the outbox's own way, `outbox.send_one`, which settles it. A handed order is never sent twice:
the claim is the same conditional update as the outbox's, and once its attempt is logged it is the
outbox's recovery that decides (an interrupted POST is failed, never resent).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, Q
from django.utils import timezone

from trading.config import ConfigError, resolve
from trading.delivery.claims import holder_token
from trading.delivery.outcomes import Outcome
from strategies.pnl import price
from trading.execution import exits, outbox
from trading.models import DeliveryAttempt, Signal
from trading.risk import killswitch
from trading.risk.decision import order_decision

log = logging.getLogger(__name__)
State = Signal.State
UNSENT = (State.PENDING, State.SENDING, State.HELD)
IDLE_REUSE = 30.0  # s: a keep-alive connection idle longer is not reused (a server may have dropped it meanwhile)


def order_message(sig: Signal) -> dict:
    """What the sender needs of a committed order, as JSON."""
    return {"pk": sig.pk, "key": sig.key, "action": sig.action, "payload": sig.payload, "attempts": sig.attempts,
            "instrument": sig.instrument_id, "root": sig.instrument.root, "contract": sig.contract,
            "expires_at": sig.expires_at.isoformat() if sig.expires_at else None}


class Sessions:
    """One HTTP keep-alive session per webhook URL (requests.Session), renewed after IDLE_REUSE seconds idle."""

    def __init__(self):
        self._by_url: dict[str, tuple] = {}  # url → (session, last used, monotonic)

    def get(self, url: str):
        import requests

        session, used = self._by_url.get(url, (None, 0.0))
        if session is not None and time.monotonic() - used > IDLE_REUSE:
            session.close()
            session = None
        if session is None:
            session = requests.Session()
        self._by_url[url] = (session, time.monotonic())
        return session

    def close(self) -> None:
        for session, _ in self._by_url.values():
            session.close()
        self._by_url.clear()


def _claim(order: dict, strategy, token: str, at: datetime, market_price, market_time) -> DeliveryAttempt | None:
    """Claim the order and log its attempt as started, atomically; None when it is not this sender's to send."""
    pk, number = order["pk"], order["attempts"] + 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH claimed AS (UPDATE {Signal._meta.db_table} SET state = %s, claimed_at = %s, claimed_by = %s, "
                "attempts = %s, market_price = %s, market_time = %s WHERE id = %s AND state = %s AND attempts = %s "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= %s) AND NOT EXISTS (SELECT 1 FROM "
                f"{Signal._meta.db_table} e WHERE e.strategy_id = %s AND e.instrument_id = %s AND e.id < %s "
                "AND e.state IN (%s, %s, %s)) RETURNING id) "
                f"INSERT INTO {DeliveryAttempt._meta.db_table} (signal_id, number, attempted_at, outcome, "
                "response, duration_ms) SELECT id, %s, %s, %s, '', 0 FROM claimed RETURNING id",
                [State.SENDING, at, token, number, market_price, market_time, pk, State.PENDING, order["attempts"],
                 at, strategy.pk, order["instrument"], pk, *UNSENT, number, at, Outcome.STARTED])
            row = cursor.fetchone()
        if row is None:
            return None
        return DeliveryAttempt(pk=row[0], signal_id=pk, number=number, attempted_at=at, outcome=Outcome.STARTED)
    earlier = Signal.objects.filter(strategy_id=strategy.pk, instrument_id=order["instrument"], pk__lt=pk,
                                    state__in=UNSENT)
    with transaction.atomic():
        if not (Signal.objects.filter(pk=pk, state=State.PENDING, attempts=order["attempts"])
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=at)).filter(~Exists(earlier))
                .update(state=State.SENDING, claimed_at=at, claimed_by=token, attempts=number,
                        market_price=market_price, market_time=market_time)):
            return None
        return DeliveryAttempt.objects.create(signal_id=pk, number=number, attempted_at=at, outcome=Outcome.STARTED)


def send_handed(order: dict, strategy, *, limiter=None, deliver=None, sessions: Sessions | None = None,
                timeout: float = 10.0, report: outbox.OutboxReport | None = None) -> str | None:
    """Send an order handed over by the worker; returns its new state, or None when it is not this
    sender's (another has it, or an earlier order of its instrument goes first: sent by the next pass).
    `strategy`: the sender's row, read again at every pass of its loop."""
    report = report or outbox.OutboxReport()
    pk, at = order["pk"], timezone.now()
    expires = datetime.fromisoformat(order["expires_at"]) if order.get("expires_at") else None
    decision = order_decision(order["action"], killswitch.state())
    url = None
    if not strategy.paper and decision.allowed and not (expires and at >= expires):
        try:
            url = resolve(strategy.broker_webhook, "broker_webhook")
        except ConfigError:
            url = None
    if url is None:  # expired, refused, paper, or no webhook: the outbox settles it
        return outbox.send_one(pk, deliver=deliver, limiter=limiter, timeout=timeout, report=report)
    if limiter is not None:
        wait = limiter.acquire(url)
        if wait > 0:
            if Signal.objects.filter(pk=pk, state=State.PENDING).update(
                    state_reason="rate limit", next_attempt_at=outbox.retry_at(at, wait, None)):
                log.info("order held by the rate limit signal=%s wait_s=%.2f", order["key"], wait)
                report.throttled.append(order["key"])
            return State.PENDING
    bar = exits.contract_minute(order["contract"], order["root"])
    market_price, market_time = (None, None) if bar is None else \
        (price(bar.close), bar.ts + timedelta(minutes=1))
    attempt = _claim(order, strategy, holder_token(), timezone.now(), market_price, market_time)
    if attempt is None:
        return None
    if deliver is None:
        from trading.execution.traderspost import deliver as post

        session = (sessions or Sessions()).get(url)
        deliver = lambda u, p, t: post(u, p, t, session=session)  # noqa: E731
    started = time.monotonic()
    result = deliver(url, order["payload"], timeout)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    sig = Signal.objects.select_related("strategy", "instrument").get(pk=pk)
    new_state = outbox._settle(sig, attempt, result, attempt.number, elapsed_ms, timezone.now(), limiter, url, report)
    log.info("order delivery signal=%s attempt=%d outcome=%s status=%s ms=%d", sig.key, attempt.number,
             result.outcome, getattr(result, "status_code", None), elapsed_ms)
    return new_state
