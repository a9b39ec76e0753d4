"""Heartbeat monitor (run by Celery beat): one alert when a process goes stale, one on recovery.

A process that stopped cleanly says so ("stopped"): a planned stop or restart is never alerted;
/healthz still reports it as not running. One killed or frozen goes stale, and that is alerted.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from trading.health.heartbeat import is_fresh
from trading.models import Heartbeat, Strategy
from trading.notify.outbox import enqueue

log = logging.getLogger(__name__)


def expected_processes() -> list[str]:
    """The hub and one worker per enabled strategy."""
    return ["hub", *(f"worker:{name}" for name in Strategy.objects.filter(enabled=True).values_list("name", flat=True))]


def check_heartbeats(now: datetime | None = None) -> dict:
    """Alert once per stale incident and once on recovery; returns {'stale': [...], 'recovered': [...]}."""
    now = now or timezone.now()
    result = {"stale": [], "recovered": []}
    for hb in Heartbeat.objects.all():
        fresh = is_fresh(hb, now) or hb.state == "stopped"
        with transaction.atomic():
            if not fresh and not hb.stale_alerted:
                if Heartbeat.objects.filter(pk=hb.pk, stale_alerted=False).update(stale_alerted=True):
                    age = int((now - hb.last_seen).total_seconds())
                    enqueue("emergency", f"Stale heartbeat: {hb.process}",
                            body=f"No heartbeat from {hb.process} for {age} s (state {hb.state}, host {hb.host}).",
                            fields={"process": hb.process, "last_seen": hb.last_seen.isoformat()})
                    result["stale"].append(hb.process)
            elif fresh and hb.stale_alerted:
                if Heartbeat.objects.filter(pk=hb.pk, stale_alerted=True).update(stale_alerted=False):
                    enqueue("info", f"Heartbeat recovered: {hb.process}", body=f"{hb.process} is beating again.")
                    result["recovered"].append(hb.process)
    if result["stale"] or result["recovered"]:
        log.warning("heartbeat monitor stale=%s recovered=%s", result["stale"], result["recovered"])
    return result
