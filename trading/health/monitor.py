"""Heartbeat monitor (run by Celery beat): one alert when a process goes stale, one on recovery.

A process that stopped cleanly says so ("stopped"): a planned stop or restart is never alerted;
/healthz still reports it as not running. One killed or frozen goes stale, and that is alerted.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from trading.health.heartbeat import is_fresh
from trading.models import Heartbeat, Position, Strategy
from trading.delivery.alerts import enqueue

log = logging.getLogger(__name__)


UNMANAGED_GRACE = timedelta(minutes=5)  # a worker stopped cleanly (a restart) may take this long to come back


def expected_processes() -> list[str]:
    """The hub and one worker per strategy that needs one (enabled, or still holding positions)."""
    return ["hub", *(f"worker:{name}" for name in Strategy.objects.needing_worker().values_list("name", flat=True))]


def manager_alive(hb: Heartbeat | None, now: datetime) -> bool:
    """Whether a worker manages its strategy's positions: beating, or stopped for a restart moments ago."""
    if hb is None:
        return False
    if hb.state == "stopped":
        return now - hb.last_seen < UNMANAGED_GRACE
    return is_fresh(hb, now)


def unmanaged_positions(now: datetime) -> list[Position]:
    """Open positions no running worker manages (its strategy's worker gone, stale or long stopped)."""
    beats = {hb.process: hb for hb in Heartbeat.objects.filter(process__startswith="worker:")}
    return [p for p in Position.objects.managed().select_related("strategy", "instrument")
            if not manager_alive(beats.get(f"worker:{p.strategy.name}"), now)]


def alert_unmanaged(now: datetime) -> list[str]:
    """One emergency per position whose manager is gone."""
    out = []
    for p in unmanaged_positions(now):
        if enqueue("emergency", f"Unmanaged position: {p.strategy.name} {p.instrument.root}", strategy=p.strategy,
                   body=(f"{p.size} {p.contract or p.instrument.root} is open but no worker of {p.strategy.name} "
                         "runs to manage its exit; its broker-side stop and target still stand. Start the worker, "
                         "or flatten."),
                   dedupe_key=f"unmanaged:{p.pk}"):
            out.append(f"{p.strategy.name}:{p.instrument.root}")
    return out


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
    result["unmanaged"] = alert_unmanaged(now)
    if result["stale"] or result["recovered"] or result["unmanaged"]:
        log.warning("heartbeat monitor stale=%s recovered=%s unmanaged=%s", result["stale"], result["recovered"],
                    result["unmanaged"])
    return result
