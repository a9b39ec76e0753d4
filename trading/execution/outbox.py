"""The order outbox: delivers pending signals to the broker exactly once, or says why not.

A signal is claimed with a conditional update (pending → sending) before its POST, and an
attempt row marked 'started' is committed before the request leaves, so after a crash we know
whether a POST may have gone out. Such an ambiguous order is never resent (TradersPost has no
idempotency key; a duplicate POST is a duplicate order): it is failed and alerted instead — and
so is a POST that timed out or lost its connection after the request left (`ambiguous`).

Retries: 5xx, 429 and connections that never opened are retried with capped backoff for as long
as the order is valid (time in force `day`: until the session's close), with one alert once
MAX_ATTEMPTS have failed; an order without an expiry gives up after MAX_ATTEMPTS.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from trading.config import ConfigError, resolve
from trading.health.process import holder_dead, process_token
from trading.models import DeliveryAttempt, Signal
from trading.notify.outbox import enqueue
from trading.risk.killswitch import allows, current_mode

log = logging.getLogger(__name__)
State = Signal.State

MAX_ATTEMPTS = 6
CLAIM_LEASE = timedelta(seconds=120)  # longer than any POST timeout: a claim older than this is dead
BACKOFF_BASE = 2.0
BACKOFF_CAP = 60.0


def backoff_seconds(attempt: int, retry_after: float | None = None, *, rng=random.random) -> float:
    """Delay before attempt `attempt + 1`: exponential with 20 % jitter, capped; never below retry_after."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    delay *= 1 + 0.2 * rng()
    return max(delay, retry_after or 0.0)


@dataclass
class OutboxReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


def _finish(sig: Signal, state: str, reason: str, **extra) -> None:
    Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=state, state_reason=reason[:300], **extra)
    if state in (State.FAILED, State.EXPIRED, State.BLOCKED):
        if sig.action == Signal.Action.BUY:
            cancel_unsent_entry(sig, reason)
        else:
            alert_undelivered_exit(sig, reason)


def alert_undelivered_exit(sig: Signal, reason: str) -> None:
    """The books close a position at its modelled exit; if the exit order never reached the broker,
    the broker still holds the contracts: the operator must know, at once and by name."""
    root = sig.instrument.root
    enqueue("emergency", f"Exit not delivered: {sig.strategy.name} {root} — the broker may still hold it",
            strategy=sig.strategy,
            body=(f"The exit of {sig.quantity} {root} ({sig.key}) did not reach the broker: {reason[:600]}. "
                  f"PineOps books the position as closed at its modelled exit; flatten it at the broker."),
            fields={"signal": sig.key, "quantity": sig.quantity, "symbol": sig.contract or root},
            dedupe_key=f"exit-undelivered:{sig.key}")
    log.error("exit not delivered signal=%s reason=%r", sig.key, reason)


def _fail_ambiguous(sig: Signal, what: str, **extra) -> None:
    """A POST that may have reached the broker: failed and alerted, never resent, its position kept
    (the broker may hold it, so the books go on managing it)."""
    reason = (f"{what}: it may have reached the broker, so it is not resent "
              "(a second POST would be a second order); check the broker")
    Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=State.FAILED, state_reason=reason[:300], **extra)
    _alert_failure(sig, f"Order state unknown: {sig.key}", reason)


def cancel_unsent_entry(sig: Signal, reason: str) -> None:
    """An entry that never reached the broker opens nothing: its modelled position is cancelled."""
    from trading.models import Position

    cancelled = Position.objects.filter(entry_signal=sig, state__in=["open", "closing"]).update(state="cancelled")
    if cancelled:
        log.warning("position cancelled signal=%s reason=%r", sig.key, reason)


def _alert_failure(sig: Signal, title: str, detail: str) -> None:
    enqueue("emergency", title, strategy=sig.strategy, body=detail[:1500],
            fields={"signal": sig.key, "action": sig.action, "quantity": sig.quantity},
            dedupe_key=f"order-failed:{sig.key}")


def _default_deliver():
    from trading.execution.traderspost import deliver

    return deliver


def send_one(pk: int, *, now: datetime | None = None, deliver=None, limiter=None, timeout: float = 10.0,
             report: OutboxReport | None = None) -> str | None:
    """Try to deliver signal `pk` once; returns its new state, or None when another sender has it."""
    report = report or OutboxReport()
    now = now or timezone.now()
    # One instrument's orders reach the broker in decision order: an exit never overtakes its
    # entry (say one held back by the rate limiter or a retry), or the broker would refuse it.
    head = Signal.objects.filter(pk=pk).values("strategy_id", "instrument_id").first()
    if head is None or Signal.objects.filter(**head, state__in=[State.PENDING, State.SENDING], pk__lt=pk).exists():
        return None
    if not Signal.objects.filter(pk=pk, state=State.PENDING).update(state=State.SENDING, claimed_at=now,
                                                                    claimed_by=process_token()):
        return None
    sig = Signal.objects.select_related("strategy", "instrument").get(pk=pk)

    if sig.expires_at and now >= sig.expires_at:
        _finish(sig, State.EXPIRED, "time in force 'day': the session closed before it could be delivered")
        _alert_failure(sig, f"Order expired undelivered: {sig.key}",
                       f"The broker could not be reached before the session closed; it was not sent late. "
                       f"Last error: {sig.last_error or '—'}")
        report.expired.append(sig.key)
        return State.EXPIRED

    ok, why = allows(current_mode(), sig.action)
    if not ok:
        _finish(sig, State.BLOCKED, why)
        log.warning("order blocked signal=%s reason=%r", sig.key, why)
        report.blocked.append(sig.key)
        return State.BLOCKED

    try:
        url = resolve(sig.strategy.broker_webhook, "broker_webhook")
    except ConfigError as exc:
        _finish(sig, State.FAILED, str(exc), last_error=str(exc))
        _alert_failure(sig, f"Order not sent: {sig.key}", str(exc))
        log.error("order failed signal=%s error=%r", sig.key, str(exc))
        report.failed.append(sig.key)
        return State.FAILED

    if limiter is not None:
        wait = limiter.acquire(url)
        if wait > 0:
            _finish(sig, State.PENDING, "rate limit", next_attempt_at=now + timedelta(seconds=wait))
            report.throttled.append(sig.key)
            return State.PENDING

    deliver = deliver or _default_deliver()
    number = sig.attempts + 1
    with transaction.atomic():
        attempt = DeliveryAttempt.objects.create(signal=sig, number=number, attempted_at=now, outcome="started")
        Signal.objects.filter(pk=sig.pk).update(attempts=number)
    started = time.monotonic()
    result = deliver(url, sig.payload, timeout)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    body = (getattr(result, "body", "") or "")[:2000]
    status = getattr(result, "status_code", None)
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(outcome=result.outcome, status_code=status,
                                                             response=body, duration_ms=elapsed_ms)
        if result.outcome == "delivered":
            _finish(sig, State.SENT, "", sent_at=timezone.now(), last_status=status, last_error="")
            report.sent.append(sig.key)
            new_state = State.SENT
        elif result.outcome == "retryable" and (sig.expires_at is not None or number < MAX_ATTEMPTS):
            delay = backoff_seconds(number, getattr(result, "retry_after", None))
            if limiter is not None and getattr(result, "retry_after", None):
                limiter.hold(url, result.retry_after)  # the broker's wait is for the webhook, every order
            error = body or getattr(result, "error", "")
            _finish(sig, State.PENDING, f"attempt {number} failed; retrying", last_status=status,
                    last_error=error, next_attempt_at=now + timedelta(seconds=delay))
            if number == MAX_ATTEMPTS:
                enqueue("emergency", f"Order still not delivered: {sig.key}", strategy=sig.strategy,
                        body=f"{number} attempts failed (last: HTTP {status or '—'} {error[:300]}); retrying until "
                             f"it is delivered or expires at {sig.expires_at:%Y-%m-%d %H:%M} UTC.",
                        fields={"signal": sig.key, "action": sig.action, "quantity": sig.quantity},
                        dedupe_key=f"order-retrying:{sig.key}")
            report.retrying.append(sig.key)
            new_state = State.PENDING
        elif result.outcome == "ambiguous":
            _fail_ambiguous(sig, f"no answer after the request left ({getattr(result, 'error', '')})",
                            last_error=getattr(result, "error", ""))
            report.failed.append(sig.key)
            new_state = State.FAILED
        else:
            what = "rejected by the broker" if result.outcome == "permanent" else f"gave up after {number} attempts"
            detail = f"{what}: HTTP {status or '—'} {body or getattr(result, 'error', '')}".strip()
            _finish(sig, State.FAILED, detail, last_status=status, last_error=body or getattr(result, "error", ""))
            _alert_failure(sig, f"Order failed: {sig.key}", detail)
            report.failed.append(sig.key)
            new_state = State.FAILED
    log.info("order delivery signal=%s attempt=%d outcome=%s status=%s ms=%d", sig.key, number, result.outcome,
             status, elapsed_ms)
    return new_state


def send_pending_orders(*, strategy=None, now: datetime | None = None, deliver=None, limiter=None,
                        timeout: float = 10.0, limit: int = 100, stop=lambda: False) -> OutboxReport:
    """Deliver every due pending signal (oldest first); safe to run from several processes at once.
    `stop()` is asked before each signal: a sender told to go finishes the POST in hand, no more."""
    now = now or timezone.now()
    report = OutboxReport()
    due = Signal.objects.filter(state=State.PENDING).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    if strategy is not None:
        due = due.filter(strategy=strategy)
    for pk in due.order_by("created_at", "id").values_list("pk", flat=True)[:limit]:
        if stop():
            break
        send_one(pk, now=now, deliver=deliver, limiter=limiter, timeout=timeout, report=report)
    return report


def recover_interrupted(*, strategy=None, now: datetime | None = None, lease: timedelta = CLAIM_LEASE) -> dict:
    """Settle signals left in 'sending' by a sender that died: at once when its process is known
    gone, else once the claim is older than `lease`. A live sender's claim is never touched.

    Never posted (no started attempt) → pending again. Possibly posted → failed and alerted, never resent.
    """
    now = now or timezone.now()
    stuck = Signal.objects.filter(state=State.SENDING)
    if strategy is not None:
        stuck = stuck.filter(strategy=strategy)
    outcome = {"requeued": [], "ambiguous": []}
    for sig in stuck.select_related("strategy"):
        expired = sig.claimed_at is None or sig.claimed_at < now - lease
        if not expired and not holder_dead(sig.claimed_by):
            continue
        in_flight = sig.delivery_attempts.filter(outcome="started").exists()
        if not in_flight:
            Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=State.PENDING)
            outcome["requeued"].append(sig.key)
            continue
        _fail_ambiguous(sig, "interrupted while posting")
        sig.delivery_attempts.filter(outcome="started").update(outcome="interrupted")
        outcome["ambiguous"].append(sig.key)
    if outcome["requeued"] or outcome["ambiguous"]:
        log.warning("outbox recovery requeued=%s ambiguous=%s", outcome["requeued"], outcome["ambiguous"])
    return outcome


STUCK_AFTER = timedelta(minutes=5)


def alert_stuck_pending(*, now: datetime | None = None, older_than: timedelta = STUCK_AFTER) -> list[str]:
    """Alert (once per signal) on signals still pending long after they were decided."""
    now = now or timezone.now()
    stuck = Signal.objects.filter(state=State.PENDING, created_at__lt=now - older_than).select_related("strategy")
    keys = []
    for sig in stuck:
        minutes = int((now - sig.created_at).total_seconds() // 60)
        if enqueue("emergency", f"Order stuck in pending: {sig.key}", strategy=sig.strategy,
                   body=f"Decided {minutes} min ago, {sig.attempts} attempts; last error: {sig.last_error or '—'}",
                   dedupe_key=f"order-stuck:{sig.key}"):
            keys.append(sig.key)
    return keys
