"""Heartbeats: every process says it is alive in the database (the truth), a Redis key and a file.

The file and the key are conveniences for local tools; staleness is judged from the database
row only, so several hosts can share one appliance database.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

from trading.health.process import host_name
from trading.models import Heartbeat
from trading.redis_client import get_redis, key

log = logging.getLogger(__name__)
MIN_STALE_SECONDS = 60


def stale_after(interval: int) -> timedelta:
    """A process is stale when it missed three beats (and at least a minute passed)."""
    return timedelta(seconds=max(3 * interval, MIN_STALE_SECONDS))


def write_file(path: str | Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename), so a reader never sees half a heartbeat."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, default=str, indent=1))
    os.replace(tmp, path)


def beat(process: str, *, state: str, interval: int, last_bar_time: datetime | None = None,
         open_positions: int = 0, details: dict | None = None, file: str | Path | None = None,
         now: datetime | None = None) -> dict:
    """Record one heartbeat; the database write must succeed, the file and Redis are best effort."""
    now = now or timezone.now()
    payload = {"process": process, "pid": os.getpid(), "host": host_name(), "time": now.isoformat(),
               "last_bar_time": last_bar_time.isoformat() if last_bar_time else None,
               "open_positions": open_positions, "state": state, "interval": interval, **(details or {})}
    Heartbeat.objects.update_or_create(process=process, defaults=dict(
        host=payload["host"], pid=payload["pid"], state=state, last_seen=now, last_bar_time=last_bar_time,
        open_positions=open_positions, interval=interval, details=details or {}))
    if file:
        try:
            write_file(file, payload)
        except OSError as exc:
            log.warning("heartbeat file not written process=%s path=%s error=%s", process, file, exc)
    try:
        get_redis().set(key("heartbeat", process), json.dumps(payload, default=str), ex=int(stale_after(interval).total_seconds()))
    except Exception as exc:  # noqa: BLE001 — Redis down must not stop the database heartbeat
        log.warning("heartbeat key not written process=%s error=%s", process, exc.__class__.__name__)
    return payload


def is_fresh(hb: Heartbeat, now: datetime) -> bool:
    return hb.state not in ("stopped",) and now - hb.last_seen <= stale_after(hb.interval)
