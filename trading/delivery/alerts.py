"""Queue an alert (a row of the notification outbox, delivered to Discord by trading.notify.delivery): a
database row, never a network call here.

Trading code calls `enqueue` and moves on, so a slow or failing Discord can never slow trading.
A `dedupe_key` makes an alert idempotent (e.g. one daily-stop alert per strategy and day).
"""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from trading.models import Notification

log = logging.getLogger(__name__)


def enqueue(kind: str, title: str, *, strategy=None, body: str = "", fields: dict | None = None,
            dedupe_key: str | None = None) -> Notification | None:
    """Add a pending notification; returns None when `dedupe_key` was queued before. A paper strategy's
    alerts say so first in their title, in Discord and in the admin alike."""
    if strategy is not None and getattr(strategy, "paper", False):
        title = f"[paper] {title}"
    row = Notification(strategy=strategy, kind=kind, title=title[:256], body=body, fields=fields or {},
                       dedupe_key=dedupe_key)
    if dedupe_key is None:  # nothing it could clash with: no savepoint around it
        row.save()
        log.info("notification queued kind=%s strategy=%s title=%r", kind, strategy and strategy.name, title)
        return row
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        if dedupe_key and Notification.objects.filter(dedupe_key=dedupe_key).exists():
            return None
        raise
    log.info("notification queued kind=%s strategy=%s title=%r", kind, strategy and strategy.name, title)
    return row
