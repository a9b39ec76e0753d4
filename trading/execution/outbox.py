"""The order outbox: delivers pending signals to the broker exactly once, or says why not.

A signal is claimed with a conditional update (pending → sending) stamped when it is made, and
an attempt row marked 'started' is committed before the request leaves — in the same transaction
that checks the claim is still this sender's — so after a crash we know whether a POST may have
gone out, and a claim taken back from a frozen sender never leads to a second POST. Such an ambiguous order is never resent (TradersPost has no
idempotency key; a duplicate POST is a duplicate order): it is failed and alerted instead — and
so is a POST that timed out or lost its connection after the request left (`ambiguous`).

Retries: 5xx, 429 and connections that never opened are retried with capped backoff for as long
as the order is valid (time in force `day`: until the session's close), with one alert once
MAX_ATTEMPTS have failed; an order without an expiry gives up after MAX_ATTEMPTS.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from trading.config import ConfigError, resolve
from trading.delivery.alerts import enqueue
from trading.delivery.claims import claim_is_dead, holder_token
from trading.delivery.outcomes import Outcome
from trading.delivery.retry import backoff_seconds
from trading.execution import exits
from trading.execution import paper as paper_broker
from trading.models import DeliveryAttempt, Signal
from trading.risk import killswitch
from trading.risk.decision import Kind, order_decision

log = logging.getLogger(__name__)
State = Signal.State

MAX_ATTEMPTS = 6


def claim_lease() -> timedelta:
    """How long a claim held on another host counts as alive (longer than any POST timeout). A holder on
    this host is judged by its process: alive (even frozen) it keeps its claim, dead it loses it at once."""
    return timedelta(seconds=settings.ORDER_CLAIM_LEASE_SECONDS)
MAX_DELAY = timedelta(days=1)  # the longest any wait is kept (a Retry-After of 1e12 s included)


@dataclass
class OutboxReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


def _finish(sig: Signal, state: str, reason: str, **extra) -> bool:
    """Settle a signal this sender holds (state sending); an order the broker never got tells its position.
    False when the signal is no longer this sender's to settle (then nothing else is done with it)."""
    if not Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=state, state_reason=reason[:300],
                                                                        **extra):
        log.error("signal %s was settled by someone else meanwhile; the answer %s is only logged", sig.key, state)
        return False
    if state in (State.FAILED, State.EXPIRED, State.BLOCKED):
        _not_delivered(sig, reason)
    return True


def _not_delivered(sig: Signal, reason: str) -> None:
    if sig.action == Signal.Action.BUY:
        exits.cancel_unsent_entry(sig, reason)
    else:
        exits.exit_not_delivered(sig, reason)


def _fail_ambiguous(sig: Signal, what: str, **extra) -> None:
    """A POST that may have reached the broker: failed and alerted, never resent. An entry's position is
    kept (the broker may hold it, so the books go on managing it); an exit's position stays open too."""
    reason = (f"{what}: it may have reached the broker, so it is not resent "
              "(a second POST would be a second order); check the broker")
    if not Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=State.FAILED,
                                                                        state_reason=reason[:300], **extra):
        return
    _alert_failure(sig, f"Order state unknown: {sig.key}", reason)
    if sig.action == Signal.Action.EXIT:
        exits.exit_not_delivered(sig, reason)


def _alert_failure(sig: Signal, title: str, detail: str) -> None:
    enqueue("emergency", title, strategy=sig.strategy, body=detail[:1500],
            fields={"signal": sig.key, "action": sig.action, "quantity": sig.quantity},
            dedupe_key=f"order-failed:{sig.key}")


def _default_deliver():
    from trading.execution.traderspost import deliver

    return deliver


def retry_at(now: datetime, delay: float, expires_at: datetime | None) -> datetime:
    """When to try again: `delay` seconds from now, never past the order's expiry (nor past what a
    datetime can hold: a broker may ask for any number of seconds)."""
    latest = expires_at or now + MAX_DELAY
    return min(now + timedelta(seconds=min(max(delay, 0.0), MAX_DELAY.total_seconds())), latest)


def send_one(pk: int, *, now: datetime | None = None, deliver=None, limiter=None, timeout: float = 10.0,
             report: OutboxReport | None = None) -> str | None:
    """Try to deliver signal `pk` once; returns its new state, or None when another sender has it.

    `now` fixes the clock (a simulation); by default every stamp is read when it is made, so a
    claim is never born older than the moment it was taken."""
    report = report or OutboxReport()
    clock = (lambda: now) if now is not None else timezone.now
    # One instrument's orders reach the broker in decision order: an exit never overtakes its
    # entry (say one held back by the rate limiter or a retry), or the broker would refuse it.
    head = Signal.objects.filter(pk=pk).values("strategy_id", "instrument_id").first()
    if head is None or Signal.objects.filter(**head, state__in=[State.PENDING, State.SENDING, State.HELD],
                                             pk__lt=pk).exists():
        return None
    token, claimed_at = holder_token(), clock()
    if not Signal.objects.filter(pk=pk, state=State.PENDING).update(state=State.SENDING, claimed_at=claimed_at,
                                                                    claimed_by=token):
        return None
    try:
        return _send_claimed(pk, token, claimed_at, clock, deliver, limiter, timeout, report)
    except Exception:
        _release_unposted(pk, token, claimed_at)
        raise


def _release_unposted(pk: int, token: str, claimed_at: datetime) -> None:
    """Something failed between the claim and the POST (Redis or the database away): the order was never
    posted, so it is pending again rather than left claimed by a live sender, which would hold back every
    later order of its instrument. The POST's own transaction restamps the claim, so a claim that reached
    the POST is never matched here. When even this fails, the sender settles its claims later
    (recover_interrupted(mine=True))."""
    try:
        if Signal.objects.filter(pk=pk, state=State.SENDING, claimed_by=token, claimed_at=claimed_at).update(
                state=State.PENDING):
            log.warning("order not posted (an error before the POST); pending again signal_pk=%d", pk)
    except Exception as exc:  # noqa: BLE001 — the caller raises the first error
        log.error("claim of signal_pk=%d not released (%s); settled by the sender's recovery", pk,
                  exc.__class__.__name__)


def _send_claimed(pk: int, token: str, claimed_at: datetime, clock, deliver, limiter, timeout: float,
                  report: OutboxReport) -> str | None:
    sig = Signal.objects.select_related("strategy", "instrument").get(pk=pk)
    at = clock()

    if sig.expires_at and at >= sig.expires_at:
        _finish(sig, State.EXPIRED, "time in force 'day': the session closed before it could be delivered")
        _alert_failure(sig, f"Order expired undelivered: {sig.key}",
                       f"The broker could not be reached before the session closed; it was not sent late. "
                       f"Last error: {sig.last_error or '—'}")
        report.expired.append(sig.key)
        return State.EXPIRED

    kill = killswitch.state()
    decision = order_decision(sig.action, kill)
    if decision.kind is Kind.HOLD_EXIT:
        exits.hold_exit(sig, decision.reason, decision.control)
        report.held.append(sig.key)
        return State.HELD
    if not decision.allowed:
        Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(risk_control=decision.control)
        _finish(sig, State.BLOCKED, decision.reason)
        log.warning("order blocked signal=%s control=%s reason=%r", sig.key, decision.control, decision.reason)
        report.blocked.append(sig.key)
        return State.BLOCKED

    is_paper = sig.strategy.paper
    if is_paper:  # the built-in paper broker: no URL is resolved, no request made, whatever `deliver` is
        url = ""
        deliver = lambda _url, _payload, _timeout: paper_broker.deliver(sig, clock())  # noqa: E731
    else:
        try:
            url = resolve(sig.strategy.broker_webhook, "broker_webhook")
        except ConfigError as exc:
            _finish(sig, State.FAILED, str(exc), last_error=str(exc))
            _alert_failure(sig, f"Order not sent: {sig.key}", str(exc))
            log.error("order failed signal=%s error=%r", sig.key, str(exc))
            report.failed.append(sig.key)
            return State.FAILED

    if limiter is not None and not is_paper:
        wait = limiter.acquire(url)
        if wait > 0:
            _finish(sig, State.PENDING, "rate limit", next_attempt_at=retry_at(at, wait, None))
            log.info("order held by the rate limit signal=%s wait_s=%.2f", sig.key, wait)
            report.throttled.append(sig.key)
            return State.PENDING

    deliver = deliver or _default_deliver()
    number = sig.attempts + 1
    sig.market_price, sig.market_time = market_price, market_time = exits.market_at_send(sig)
    with transaction.atomic():
        # The POST goes ahead only while this sender still holds the claim it made: a recovery that
        # judged the claim dead (a sender frozen past its lease) has taken it back, and then it never leaves.
        if not Signal.objects.filter(pk=sig.pk, state=State.SENDING, claimed_by=token, claimed_at=claimed_at).update(
                attempts=number, claimed_at=clock(), market_price=market_price, market_time=market_time):
            log.warning("claim lost before the POST signal=%s; another sender or the recovery has it", sig.key)
            return None
        attempt = DeliveryAttempt.objects.create(signal=sig, number=number, attempted_at=clock(),
                                                 outcome=Outcome.STARTED)
    started = time.monotonic()
    result = deliver(url, sig.payload, timeout)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    new_state = _settle(sig, attempt, result, number, elapsed_ms, clock(), limiter, url, report)
    log.info("order delivery signal=%s attempt=%d outcome=%s status=%s ms=%d", sig.key, number, result.outcome,
             getattr(result, "status_code", None), elapsed_ms)
    return new_state


def _settle(sig: Signal, attempt: DeliveryAttempt, result, number: int, elapsed_ms: int, now: datetime, limiter,
            url: str, report: OutboxReport) -> str:
    """Record the broker's answer. A definite answer (2xx, 4xx, 429, 5xx, no connection) is always
    recorded as what it was — whatever its headers say — and never left 'sending'."""
    body = (getattr(result, "body", "") or "")[:2000]
    status = getattr(result, "status_code", None)
    error = body or getattr(result, "error", "")
    note = getattr(result, "note", "")
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(outcome=result.outcome, status_code=status,
                                                             response=(body + (f"\n[{note}]" if note else ""))[:2000],
                                                             duration_ms=elapsed_ms)
        if result.outcome == Outcome.DELIVERED:
            if _finish(sig, State.SENT, "", sent_at=now, last_status=status, last_error=""):
                sig.state = State.SENT
                if sig.action == Signal.Action.EXIT:
                    exits.exit_delivered(sig)
                else:
                    exits.after_entry_sent(sig, killswitch.state(), now=now)
            report.sent.append(sig.key)
            return State.SENT
        if result.outcome == Outcome.RETRYABLE and (sig.expires_at is not None or number < MAX_ATTEMPTS):
            retry_after = getattr(result, "retry_after", None)
            delay = backoff_seconds(number, retry_after)
            if limiter is not None and retry_after:
                limiter.hold(url, min(retry_after, MAX_DELAY.total_seconds()))  # the broker's wait is for the webhook
            _finish(sig, State.PENDING, f"attempt {number} failed; retrying" + (f" ({note})" if note else ""),
                    last_status=status, last_error=error, next_attempt_at=retry_at(now, delay, sig.expires_at))
            if number == MAX_ATTEMPTS:
                until = f"expires at {sig.expires_at:%Y-%m-%d %H:%M} UTC" if sig.expires_at else "gives up"
                enqueue("emergency", f"Order still not delivered: {sig.key}", strategy=sig.strategy,
                        body=f"{number} attempts failed (last: HTTP {status or '—'} {error[:300]}); retrying until "
                             f"it is delivered or {until}.",
                        fields={"signal": sig.key, "action": sig.action, "quantity": sig.quantity},
                        dedupe_key=f"order-retrying:{sig.key}")
            report.retrying.append(sig.key)
            return State.PENDING
        if result.outcome == Outcome.AMBIGUOUS:
            _fail_ambiguous(sig, f"no answer after the request left ({getattr(result, 'error', '')})",
                            last_error=getattr(result, "error", ""))
            report.failed.append(sig.key)
            return State.FAILED
        what = "rejected by the broker" if result.outcome == Outcome.PERMANENT else f"gave up after {number} attempts"
        detail = f"{what}: HTTP {status or '—'} {error}".strip()
        _finish(sig, State.FAILED, detail, last_status=status, last_error=error)
        _alert_failure(sig, f"Order failed: {sig.key}", detail)
        report.failed.append(sig.key)
        return State.FAILED


def send_pending_orders(*, strategy=None, now: datetime | None = None, deliver=None, limiter=None,
                        timeout: float = 10.0, limit: int = 100, stop=lambda: False) -> OutboxReport:
    """Deliver every due pending signal (oldest first); safe to run from several processes at once.
    `stop()` is asked before each signal: a sender told to go finishes the POST in hand, no more.
    Exits held through a halt that has since been lifted are released first (and sent here)."""
    report = OutboxReport()
    exits.release_held_exits(killswitch.state())
    due_by = now or timezone.now()
    due = Signal.objects.filter(state=State.PENDING).filter(Q(next_attempt_at__isnull=True) |
                                                            Q(next_attempt_at__lte=due_by))
    if strategy is not None:
        due = due.filter(strategy=strategy)
    for pk in due.order_by("created_at", "id").values_list("pk", flat=True)[:limit]:
        if stop():
            break
        send_one(pk, now=now, deliver=deliver, limiter=limiter, timeout=timeout, report=report)
    return report


def recover_interrupted(*, strategy=None, now: datetime | None = None, lease: timedelta | None = None,
                        mine: bool = False) -> dict:
    """Settle signals left in 'sending' by a sender that died: at once when its process (on this host) is
    known gone; a claim held on another host once it is older than `lease`. A claim whose holder lives
    on this host — slow or frozen — is never taken: it blocks its own instrument's queue, nothing else.
    `mine`: only this process's own claims, which it knows are not in flight (a sender between passes).

    Never posted (no started attempt) → pending again. Possibly posted → failed and alerted, never resent.
    """
    now = now or timezone.now()
    lease = lease or claim_lease()
    stuck = Signal.objects.filter(state=State.SENDING)
    if strategy is not None:
        stuck = stuck.filter(strategy=strategy)
    if mine:
        stuck = stuck.filter(claimed_by=holder_token())
    outcome = {"requeued": [], "ambiguous": []}
    for sig in stuck.select_related("strategy", "instrument"):
        if not mine and not claim_is_dead(sig.claimed_by, sig.claimed_at, now, lease, live_holder_keeps=True):
            continue
        in_flight = sig.delivery_attempts.filter(outcome=Outcome.STARTED).exists()
        claim = Signal.objects.filter(pk=sig.pk, state=State.SENDING, claimed_by=sig.claimed_by,
                                      claimed_at=sig.claimed_at)  # the very claim judged dead, not a newer one
        if not in_flight:
            if claim.update(state=State.PENDING):
                outcome["requeued"].append(sig.key)
            continue
        if not claim.exists():
            continue
        _fail_ambiguous(sig, "interrupted while posting")
        sig.delivery_attempts.filter(outcome=Outcome.STARTED).update(outcome=Outcome.INTERRUPTED)
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
