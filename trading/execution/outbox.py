"""The order outbox: delivers pending signals to the broker exactly once, or says why not.

One send path (`send`) for every order, the outbox's own rows and those the worker hands over; only the
claim differs (`Claim`). The claim (pending → sending) is stamped when it is made, and an attempt row
marked 'started' is committed with the claim's stamp for the POST before the request leaves — only while
the claim is still this sender's — so after a crash we know whether a POST may have gone out, and a claim
taken back from a frozen sender never leads to a second POST. Such an ambiguous order is never resent
(TradersPost has no idempotency key; a duplicate POST is a duplicate order): it is failed and alerted
instead, and so is a POST that timed out or lost its connection after the request left (`ambiguous`).

Retries: 5xx, 429 and connections that never opened are retried with capped backoff while the order is
valid (time in force `day`: until the session's close), with one alert once MAX_ATTEMPTS have failed; an
order without an expiry gives up after MAX_ATTEMPTS.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from trading.config import ConfigError, resolve
from trading.delivery.alerts import enqueue
from trading.delivery.claims import holder_token
from trading.delivery.outcomes import Outcome
from trading.delivery.retry import backoff_seconds
from trading.execution import exits, traderspost
from trading.execution import paper as paper_broker
from trading.models import DeliveryAttempt, Signal
from trading.risk import killswitch
from trading.risk.decision import Kind, order_decision

log = logging.getLogger(__name__)
State = Signal.State

MAX_ATTEMPTS = 6
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
    False when the signal is no longer this sender's to settle (then nothing else is done with it). The state
    and what follows from it commit together (a kill in between must not leave the books a position the
    broker never got)."""
    with transaction.atomic(savepoint=False):
        if not Signal.objects.filter(pk=sig.pk, state=State.SENDING).update(state=state, state_reason=reason[:300],
                                                                            **extra):
            log.error("signal %s was settled by someone else meanwhile; the answer %s is only logged", sig.key,
                      state)
            return False
        if state in (State.FAILED, State.EXPIRED, State.BLOCKED):
            (exits.cancel_unsent_entry if sig.action == Signal.Action.BUY else exits.exit_not_delivered)(sig, reason)
    return True


def fail_ambiguous(sig: Signal, what: str, **extra) -> None:
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


def retry_at(now: datetime, delay: float, expires_at: datetime | None) -> datetime:
    """When to try again: `delay` s from now, never past the order's expiry (nor a datetime's range: a broker may
    ask for any number of seconds)."""
    latest = expires_at or now + MAX_DELAY
    return min(now + timedelta(seconds=min(max(delay, 0.0), MAX_DELAY.total_seconds())), latest)


_SIGNALS, _ATTEMPTS = Signal._meta.db_table, DeliveryAttempt._meta.db_table
# Decision order per instrument: an exit never overtakes its entry (held back by the rate limit or a retry).
_FIRST_UNSENT = (f"NOT EXISTS (SELECT 1 FROM {_SIGNALS} e WHERE e.strategy_id = {_SIGNALS}.strategy_id AND "
                 f"e.instrument_id = {_SIGNALS}.instrument_id AND e.id < {_SIGNALS}.id AND e.state IN (%s, %s, %s))")


class Claim:
    """This sender's hold on one order (pending → sending), in plain SQL: no query to compile before the POST.

    The outbox takes it first (`take`), then reads the row; a handed order is taken at its POST
    (execution.handoff.HandedClaim). Either way its POST is stamped together with its attempt logged as
    started (on PostgreSQL in one statement), only while the claim is still this sender's."""

    def __init__(self, pk: int, token: str = ""):
        self.pk, self.token, self.claimed_at, self.posted = pk, token or holder_token(), None, False

    def condition(self, at: datetime) -> tuple[str, list]:
        """WHERE the claim may be taken or stamped at `at`, and its parameters."""
        if self.claimed_at is not None:  # this very claim: the recovery may have taken it back meanwhile
            return ("id = %s AND state = %s AND claimed_by = %s AND claimed_at = %s",
                    [self.pk, State.SENDING, self.token, connection.ops.adapt_datetimefield_value(self.claimed_at)])
        return (f"id = %s AND state = %s AND {_FIRST_UNSENT}",
                [self.pk, State.PENDING, State.PENDING, State.SENDING, State.HELD])

    def _update(self, at: datetime, **columns) -> tuple[str, list]:
        where, params = self.condition(at)
        sets = {"state": State.SENDING, "claimed_at": connection.ops.adapt_datetimefield_value(at),
                "claimed_by": self.token, **columns}
        return f"UPDATE {_SIGNALS} SET {', '.join(f'{c} = %s' for c in sets)} WHERE {where}", [*sets.values(), *params]

    def take(self, at: datetime) -> bool:
        """Claim the order now (once claimed, a no-op); False when it is not this sender's to take."""
        if self.claimed_at is None:
            with connection.cursor() as cursor:
                cursor.execute(*self._update(at))
                self.claimed_at = at if cursor.rowcount == 1 else None
        return self.claimed_at is not None

    def for_post(self, number: int, at: datetime, market_price, market_time) -> int | None:
        """The claim stamped at `at` for attempt `number`, that attempt logged as started, committed together
        before the POST: the attempt's id, or None when the order is not (or no longer) this sender's."""
        adapt = connection.ops.adapt_datetimefield_value
        update, values = self._update(at, attempts=number, market_price=market_price, market_time=adapt(market_time))
        insert = f"INSERT INTO {_ATTEMPTS} (signal_id, number, attempted_at, outcome, response, duration_ms)"
        started = [number, adapt(at), Outcome.STARTED]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"WITH claimed AS ({update} RETURNING id) {insert} "
                               "SELECT id, %s, %s, %s, '', 0 FROM claimed RETURNING id", values + started)
                attempt = next(iter(cursor.fetchone() or ()), None)
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(update, values)
                if cursor.rowcount != 1:
                    return None
                cursor.execute(f"{insert} VALUES (%s, %s, %s, %s, '', 0)", [self.pk, *started])
                attempt = cursor.lastrowid
        if attempt is not None:
            self.claimed_at, self.posted = at, True
        return attempt

    def release_unposted(self) -> None:
        """An error before the POST (Redis or the database away): pending again, not left claimed by a live sender
        holding back its instrument. A claim stamped for its POST is never released here; when even this fails,
        the sender settles its claims later (recovery.recover_interrupted(mine=True))."""
        if self.claimed_at is None or self.posted:
            return
        try:
            if Signal.objects.filter(pk=self.pk, state=State.SENDING, claimed_by=self.token,
                                     claimed_at=self.claimed_at).update(state=State.PENDING):
                log.warning("order not posted (an error before the POST); pending again signal_pk=%d", self.pk)
        except Exception as exc:  # noqa: BLE001 — the caller raises the first error
            log.error("claim of signal_pk=%d not released (%s); settled by the sender's recovery", self.pk,
                      exc.__class__.__name__)


def _row(pk: int) -> Signal:
    return Signal.objects.select_related("strategy", "instrument").get(pk=pk)


def send_one(pk: int, *, now: datetime | None = None, deliver=None, limiter=None, sessions=None, timeout: float = 10.0,
             report: OutboxReport | None = None) -> str | None:
    """Try to deliver signal `pk` once; returns its new state, or None when another sender has it (or an
    earlier order of its instrument goes first). `now` fixes the clock (a simulation); by default every
    stamp is read when it is made, so a claim is never born older than the moment it was taken."""
    clock, claim = (lambda: now) if now is not None else timezone.now, Claim(pk)
    if not claim.take(clock()):
        return None
    try:
        sig = _row(pk)
    except Exception:
        claim.release_unposted()
        raise
    return send(sig, sig.strategy, claim, clock=clock, deliver=deliver, limiter=limiter, sessions=sessions,
                timeout=timeout, report=report)


def send(sig: Signal, strategy, claim: Claim, *, clock=timezone.now, deliver=None, limiter=None, sessions=None,
         timeout: float = 10.0, report: OutboxReport | None = None) -> str | None:
    """The one send path of an order under `claim`: its new state, or None when it is not this sender's. Before
    the POST only id, key, action, payload, attempts, instrument (root), contract and expiry of `sig` are read:
    the row, or a handoff.HandedOrder; all is settled on the row. `strategy`: paper or which webhook;
    `sessions`: keep-alive HTTP sessions by webhook (execution.handoff.Sessions)."""
    report = report or OutboxReport()
    try:
        at = clock()
        decision, url, refusal = order_decision(sig.action, killswitch.state()), "", None
        if sig.expires_at and at >= sig.expires_at:
            refusal = State.EXPIRED
        elif not decision.allowed:
            refusal = decision
        elif not strategy.paper:  # the built-in paper broker: no URL, no request, whatever `deliver` is
            try:
                url = resolve(strategy.broker_webhook, "broker_webhook")
            except ConfigError as exc:
                refusal = exc
        if refusal is not None:
            return _not_sent(claim, refusal, at, report)
        if limiter is not None and not strategy.paper:
            wait = limiter.acquire(url)
            if wait > 0:
                if not (claim.take(at) and _finish(sig, State.PENDING, "rate limit",
                                                   next_attempt_at=retry_at(at, wait, None))):
                    return None
                log.info("order held by the rate limit signal=%s wait_s=%.2f", sig.key, wait)
                report.throttled.append(sig.key)
                return State.PENDING
        number, (market_price, market_time) = sig.attempts + 1, exits.market_at_send(sig)
        # Stamped only while this sender holds the claim: one a recovery took back (frozen past its lease) never posts.
        attempt = claim.for_post(number, clock(), market_price, market_time)
    except Exception:
        claim.release_unposted()
        raise
    if attempt is None:
        if claim.claimed_at is not None:
            log.warning("claim lost before the POST signal=%s; another sender or the recovery has it", sig.key)
        return None
    if strategy.paper:
        deliver = lambda _url, _payload, _timeout: paper_broker.deliver(_row(sig.pk), clock())  # noqa: E731
    elif deliver is None:
        post, session = traderspost.deliver, sessions.get(url) if sessions is not None else None
        deliver = lambda u, p, t: post(u, p, t, session=session)  # noqa: E731
    started = time.monotonic()
    result = deliver(url, sig.payload, timeout)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    sig = _row(sig.pk)  # as the claim left it: its attempts, the market at the send
    new_state = _settle(sig, attempt, result, number, elapsed_ms, clock(), limiter, url, report)
    log.info("order delivery signal=%s attempt=%d outcome=%s status=%s ms=%d", sig.key, number, result.outcome,
             getattr(result, "status_code", None), elapsed_ms)
    return new_state


def _not_sent(claim: Claim, refusal, at: datetime, report: OutboxReport) -> str | None:
    """Settle an order that is not posted: expired, held or blocked by the killswitch (a RiskDecision), or its
    webhook unresolvable (a ConfigError); a handed order is claimed for it first."""
    if not claim.take(at):
        return None
    sig = _row(claim.pk)
    if refusal == State.EXPIRED:
        _finish(sig, State.EXPIRED, "time in force 'day': the session closed before it could be delivered")
        _alert_failure(sig, f"Order expired undelivered: {sig.key}",
                       f"The broker could not be reached before the session closed; it was not sent late. "
                       f"Last error: {sig.last_error or '—'}")
    elif isinstance(refusal, ConfigError):
        _finish(sig, State.FAILED, str(refusal), last_error=str(refusal))
        _alert_failure(sig, f"Order not sent: {sig.key}", str(refusal))
        log.error("order failed signal=%s error=%r", sig.key, str(refusal))
        refusal = State.FAILED
    elif refusal.kind is Kind.HOLD_EXIT:
        exits.hold_exit(sig, refusal.reason, refusal.control)
        refusal = State.HELD
    else:
        _finish(sig, State.BLOCKED, refusal.reason, risk_control=refusal.control)
        log.warning("order blocked signal=%s control=%s reason=%r", sig.key, refusal.control, refusal.reason)
        refusal = State.BLOCKED
    getattr(report, refusal).append(sig.key)
    return refusal


def _settle(sig: Signal, attempt: int, result, number: int, elapsed_ms: int, now: datetime, limiter, url: str,
            report: OutboxReport) -> str:
    """Record the broker's answer. A definite answer (2xx, 4xx, 429, 5xx, no connection) is always
    recorded as what it was — whatever its headers say — and never left 'sending'."""
    body = (getattr(result, "body", "") or "")[:2000]
    status = getattr(result, "status_code", None)
    error = body or getattr(result, "error", "")
    note = getattr(result, "note", "")
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt).update(outcome=result.outcome, status_code=status,
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
            fail_ambiguous(sig, f"no answer after the request left ({getattr(result, 'error', '')})",
                            last_error=getattr(result, "error", ""))
            report.failed.append(sig.key)
            return State.FAILED
        what = "rejected by the broker" if result.outcome == Outcome.PERMANENT else f"gave up after {number} attempts"
        detail = f"{what}: HTTP {status or '—'} {error}".strip()
        _finish(sig, State.FAILED, detail, last_status=status, last_error=error)
        _alert_failure(sig, f"Order failed: {sig.key}", detail)
        report.failed.append(sig.key)
        return State.FAILED


def send_pending_orders(*, strategy=None, now: datetime | None = None, deliver=None, limiter=None, sessions=None,
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
        send_one(pk, now=now, deliver=deliver, limiter=limiter, sessions=sessions, timeout=timeout, report=report)
    return report
