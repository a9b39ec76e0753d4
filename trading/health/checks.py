"""What /healthz reports: database, Redis, the hub, its feed and every enabled worker, each fresh or why not.

Only names, states and ages: never a URL, a key or any configuration value.
"""
from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from trading.health.heartbeat import is_fresh
from trading.health.monitor import expected_processes
from trading.models import Heartbeat
from trading.redis_client import get_redis


def run_checks(now: datetime | None = None) -> tuple[bool, dict]:
    now = now or timezone.now()
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
        db_ok = True
    except Exception as exc:  # noqa: BLE001
        checks["database"] = {"ok": False, "error": exc.__class__.__name__}
        db_ok = False
    try:
        get_redis().ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = {"ok": False, "error": exc.__class__.__name__}
    if db_ok:
        beats = {hb.process: hb for hb in Heartbeat.objects.all()}
        for process in expected_processes():
            hb = beats.get(process)
            if hb is None:
                checks[process] = {"ok": False, "error": "no heartbeat yet"}
            else:
                age = round((now - hb.last_seen).total_seconds(), 1)
                checks[process] = {"ok": is_fresh(hb, now), "state": hb.state, "age_seconds": age}
                if not checks[process]["ok"]:
                    checks[process]["error"] = f"stale: last heartbeat {age} s ago"
                if process == "hub":  # data flowing, not only the process: the hub's own feed check
                    gaps = (hb.details or {}).get("feed") or {}
                    checks["feed"] = {"ok": not gaps} if not gaps else {
                        "ok": False, "error": "no trades while the market is open: " + "; ".join(
                            f"{root}: {why}" for root, why in sorted(gaps.items()))}
    healthy = all(c["ok"] for c in checks.values())
    return healthy, checks
