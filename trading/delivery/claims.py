"""Claims: a row is taken by its holder (host:pid:start, trading.health.process) before its POST.

Who may take a claim back is the one rule both policies share: a holder of this host that is gone
loses its claim at once; a holder on another host (or none recorded) loses it once the claim is older
than the lease. A live holder of this host — slow, or frozen — keeps it when the policy says so
(orders: a second POST could be a second order), and loses it after the lease otherwise (alerts).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from trading.health.process import holder_alive_here, holder_dead, process_token

__all__ = ["claim_is_dead", "holder_token"]


def holder_token() -> str:
    return process_token()


def claim_is_dead(holder: str, claimed_at: datetime | None, now: datetime, lease: timedelta, *,
                  live_holder_keeps: bool) -> bool:
    """Whether a claim made by `holder` at `claimed_at` may be taken back at `now`."""
    expired = claimed_at is None or claimed_at < now - lease
    if holder_alive_here(holder):
        return expired and not live_holder_keeps
    if holder_dead(holder):
        return True
    return expired
