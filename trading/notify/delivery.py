"""Deliver the notification outbox to Discord: in order per webhook, 429-aware, floods coalesced.

Rules (run by the Celery task `trading.deliver_notifications`, never by trading code):
- Messages for one webhook go out oldest first; only the oldest waiting message of a webhook is
  ever tried, so a 429 or an outage delays the rest but never reorders them.
- A 429 sets the webhook's next attempt to `retry_after` from now; Discord's bucket headers
  (X-RateLimit-Remaining: 0) pause the webhook the same way. Short pauses are waited out inside
  the run, longer ones end the run for that webhook.
- Retryable failures (429, 5xx, timeouts) back off exponentially (capped at 5 minutes) for up to
  `GIVE_UP_AFTER` (a Discord outage of an hour loses nothing); a permanent 4xx or a webhook
  that is not configured marks the row failed with the reason, for the admin to see.
- More than `COALESCE_OVER` messages due for one webhook become one summary message.
- A row is claimed (`sending`, with the run's holder token) before its POST, and every POST is logged
  as a delivery attempt with its outcome (the delivery core, trading.delivery). A run that died between
  POST and bookkeeping leaves it `sending`; its claim is taken back at once when the run's process is
  gone, else after `CLAIM_LEASE`, and the alert is sent again: for alerts a rare duplicate is better than
  a lost emergency (orders follow the opposite rule, trading.execution.outbox).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from trading.config import ConfigError, resolve
from trading.delivery.claims import claim_is_dead, holder_token
from trading.delivery.locks import ProcessLock
from trading.delivery.outcomes import Outcome
from trading.delivery.retry import backoff_seconds
from trading.delivery.webhooks import fingerprint
from trading.models import DeliveryAttempt, Notification
from trading.notify import discord
from trading.redis_client import get_redis, key

log = logging.getLogger(__name__)

COALESCE_OVER = 10
COALESCE_MAX = 200
GIVE_UP_AFTER = timedelta(hours=24)
CLAIM_LEASE = timedelta(minutes=2)
WAIT_INLINE = 3.0  # seconds: pauses up to this are waited out within a run
BACKOFF_CAP = 300.0


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    coalesced: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def counts(self) -> dict:
        return {k: len(v) for k, v in vars(self).items()}


def webhook_reference(row: Notification) -> str:
    """The `${VAR}` a row goes to: its strategy's Discord webhook, or the system one for process alerts."""
    if row.strategy_id is not None:
        return row.strategy.discord_webhook
    return settings.DISCORD_SYSTEM_WEBHOOK


def _alert(row: Notification) -> discord.Alert:
    return discord.Alert(kind=row.kind, title=row.title, strategy=row.strategy.name if row.strategy_id else None,
                         body=row.body, fields=row.fields or {}, when=row.created_at)


def recover_claims(now: datetime) -> int:
    """Rows left `sending` by a run that died: back to pending, to be sent again (see the module's rule)."""
    stuck = Notification.objects.filter(state=Notification.State.SENDING)
    dead = [row.pk for row in stuck.only("pk", "claimed_by", "claimed_at")
            if claim_is_dead(row.claimed_by, row.claimed_at, now, CLAIM_LEASE, live_holder_keeps=False)]
    return Notification.objects.filter(pk__in=dead, state=Notification.State.SENDING).update(
        state=Notification.State.PENDING)


def _release_own_claims() -> None:
    try:
        released = Notification.objects.filter(state=Notification.State.SENDING, claimed_by=holder_token()).update(
            state=Notification.State.PENDING)
        if released:
            log.warning("delivery run failed: %d claimed alert(s) pending again", released)
    except Exception as exc:  # noqa: BLE001 — the database away: the lease takes them back
        log.error("claimed alerts not released (%s); the lease takes them back", exc.__class__.__name__)


def _due(now: datetime) -> dict[str, list[Notification]]:
    """Pending rows by webhook reference, oldest first."""
    groups: dict[str, list[Notification]] = {}
    rows = Notification.objects.filter(state=Notification.State.PENDING).select_related("strategy")
    for row in rows.order_by("created_at", "id"):
        groups.setdefault(webhook_reference(row) or "", []).append(row)
    return groups


def _fail(rows: list[Notification], reason: str) -> None:
    Notification.objects.filter(pk__in=[r.pk for r in rows]).update(state=Notification.State.FAILED,
                                                                     last_error=reason[:2000])


def _retry_later(rows: list[Notification], result: discord.PostResult, now: datetime) -> bool:
    """Record a retryable failure on the head row(s); False when they have waited too long (→ failed)."""
    head = rows[0]
    attempts = head.attempts + 1
    error = f"HTTP {result.status_code}: {result.body[:300]}" if result.status_code else result.error
    if now - head.created_at > GIVE_UP_AFTER:
        _fail(rows, f"gave up after {attempts} attempts over {GIVE_UP_AFTER}; last: {error}")
        return False
    delay = min(BACKOFF_CAP, backoff_seconds(attempts, result.retry_after))
    if result.status_code == 429 and result.retry_after is not None:
        delay = result.retry_after  # Discord says exactly when; no back-off on top
    Notification.objects.filter(pk__in=[r.pk for r in rows]).update(
        state=Notification.State.PENDING, attempts=attempts, last_error=error[:2000],
        next_attempt_at=now + timedelta(seconds=delay))
    return True


def _claim(rows: list[Notification], now: datetime) -> bool:
    with transaction.atomic():
        claimed = Notification.objects.filter(pk__in=[r.pk for r in rows], state=Notification.State.PENDING).update(
            state=Notification.State.SENDING, next_attempt_at=now, claimed_at=now, claimed_by=holder_token())
    return claimed == len(rows)


def _log_attempt(head: Notification, result: discord.PostResult, at: datetime, started: float, batch: int) -> None:
    """The attempt log: one row per POST, on the batch's first alert (a summary names how many it held).
    Numbered after the log's own last attempt, not the row's count: a run killed between its log row and
    the count's update leaves the count one behind, and the resend must not collide with that row (runs
    are serialised by the delivery lock). `head.attempts` is brought level for the bookkeeping after."""
    note = f"[summary of {batch} alerts] " if batch > 1 else ""
    logged = DeliveryAttempt.objects.filter(notification=head).aggregate(n=Max("number"))["n"] or 0
    head.attempts = max(head.attempts, logged)
    DeliveryAttempt.objects.create(notification=head, number=head.attempts + 1, attempted_at=at,
                                   outcome=result.outcome, status_code=result.status_code,
                                   response=(note + (result.body or result.error))[:2000],
                                   duration_ms=int((time.monotonic() - started) * 1000))


def _deliver_group(reference: str, rows: list[Notification], report: DeliveryReport, *, post, clock, sleep,
                   deadline: float) -> None:
    try:
        url = resolve(reference, "discord_webhook")
    except ConfigError as exc:
        reason = f"no Discord webhook: {exc}"
        _fail(rows, reason)
        report.failed += [r.pk for r in rows]
        log.warning("notifications not deliverable count=%d reason=%s", len(rows), reason)
        return
    hook = fingerprint(url)
    while rows and time.monotonic() < deadline:
        now = clock()
        head = rows[0]
        if head.next_attempt_at and head.next_attempt_at > now:
            wait = (head.next_attempt_at - now).total_seconds()
            if wait > WAIT_INLINE or time.monotonic() + wait > deadline:
                report.deferred += [r.pk for r in rows]
                return
            sleep(wait)
            continue
        if len(rows) > COALESCE_OVER:
            batch = rows[:COALESCE_MAX]
            message = discord.coalesce([_alert(r) for r in batch], window=_span(batch), when=now)
        else:
            batch = rows[:1]
            message = discord.notification_message(_alert(head))
        if not _claim(batch, now):  # another run took them; it delivers them
            return
        started = time.monotonic()
        result = post(url, message)
        _log_attempt(head, result, now, started, len(batch))
        now = clock()
        if result.ok:
            state = Notification.State.COALESCED if len(batch) > 1 else Notification.State.SENT
            Notification.objects.filter(pk__in=[r.pk for r in batch]).update(
                state=state, sent_at=now, attempts=head.attempts + 1, last_error="")
            (report.coalesced if len(batch) > 1 else report.sent).extend(r.pk for r in batch)
            log.info("discord delivered hook=%s notifications=%d", hook, len(batch))
            rows = rows[len(batch):]
            pause = discord.wait_hint(result)
            if pause:
                for r in rows:
                    r.next_attempt_at = max(r.next_attempt_at or now, now + timedelta(seconds=pause))
        elif result.outcome == Outcome.PERMANENT:
            _fail(batch, f"Discord refused the message: HTTP {result.status_code}: {result.body[:500]}")
            report.failed += [r.pk for r in batch]
            log.error("discord refused hook=%s status=%s notifications=%d", hook, result.status_code, len(batch))
            rows = rows[len(batch):]
        else:
            if not _retry_later(batch, result, now):
                report.failed += [r.pk for r in batch]
                rows = rows[len(batch):]
                continue
            for r in batch:
                r.refresh_from_db(fields=["next_attempt_at", "attempts", "state"])
            log.warning("discord retry later hook=%s status=%s retry_after=%s", hook, result.status_code,
                        result.retry_after)
    if rows:
        report.deferred += [r.pk for r in rows]


def _span(rows: list[Notification]) -> str:
    seconds = (rows[-1].created_at - rows[0].created_at).total_seconds()
    return discord.format_duration(max(seconds, 60))


def deliver_notifications(*, post=discord.post, clock=timezone.now, sleep=time.sleep,
                          budget: float = 20.0) -> DeliveryReport:
    """One delivery run over every webhook; returns what happened to which rows.

    Runs are serialised by a Redis lock: two overlapping runs could otherwise each send a
    different message of one webhook and swap their order. A run that finds the lock held returns; one
    whose holder was killed (the Celery worker, kill -9) is taken over at once, so alerts are not held
    for the lock's time to live.
    """
    report = DeliveryReport()
    lock = ProcessLock(get_redis(), key("lock", "notify-delivery"), ttl=int(budget) + 60)
    if not lock.acquire():
        log.debug("notification delivery already running (%s)", lock.holder)
        return report
    try:
        deadline = time.monotonic() + budget
        recover_claims(clock())
        for reference, rows in _due(clock()).items():
            _deliver_group(reference, rows, report, post=post, clock=clock, sleep=sleep, deadline=deadline)
    except Exception:
        _release_own_claims()  # an alert resent is better than alerts held for a lease by a live process
        raise
    finally:
        if not lock.release():  # expired while we ran (a run longer than its budget), or Redis is away
            log.warning("notification delivery lock expired before release")
    return report
