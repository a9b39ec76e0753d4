"""Orders a sender left behind: claims of a sender that died or froze, and orders pending too long.

A claim is taken back only from a holder known dead (on this host) or, on another host, past its lease;
one that may have been posted is failed and alerted (outbox.fail_ambiguous), never resent.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from trading.delivery.alerts import enqueue
from trading.delivery.claims import claim_is_dead, holder_token
from trading.delivery.outcomes import Outcome
from trading.execution.outbox import fail_ambiguous
from trading.models import Signal

log = logging.getLogger(__name__)
State = Signal.State
STUCK_AFTER = timedelta(minutes=5)  # pending this long after its decision: alerted


def claim_lease() -> timedelta:
    """How long a claim held on another host counts as alive (longer than any POST timeout). A holder on
    this host is judged by its process: alive (even frozen) it keeps its claim, dead it loses it at once."""
    return timedelta(seconds=settings.ORDER_CLAIM_LEASE_SECONDS)


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
        fail_ambiguous(sig, "interrupted while posting")
        sig.delivery_attempts.filter(outcome=Outcome.STARTED).update(outcome=Outcome.INTERRUPTED)
        outcome["ambiguous"].append(sig.key)
    if outcome["requeued"] or outcome["ambiguous"]:
        log.warning("outbox recovery requeued=%s ambiguous=%s", outcome["requeued"], outcome["ambiguous"])
    return outcome


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
