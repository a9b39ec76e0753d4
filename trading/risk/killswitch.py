"""The killswitch: the database row, overridden by env POLICY_KILLSWITCH, failing closed.

`current_mode()` never raises: if the state cannot be read it answers ENTRIES (block entries,
exits still allowed) — never OFF. Every change through `set_mode` is audited and alerted.
"""
from __future__ import annotations

import logging
import os

from django.db import transaction
from django.utils import timezone

from trading.models import KillSwitch, KillSwitchEvent
from trading.notify.outbox import enqueue

log = logging.getLogger(__name__)
Mode = KillSwitch.Mode

_ON = {"true", "1", "yes", "on", "entries"}
_OFF = {"", "false", "0", "no", "off"}
_EXPLICIT = {"halt": Mode.HALT, "flatten": Mode.FLATTEN}


def env_override() -> str | None:
    """The mode forced by POLICY_KILLSWITCH, or None when it does not force one."""
    raw = os.environ.get("POLICY_KILLSWITCH", "").strip().lower()
    if raw in _OFF:
        return None
    if raw in _ON:
        return Mode.ENTRIES
    if raw in _EXPLICIT:
        return _EXPLICIT[raw]
    log.error("POLICY_KILLSWITCH has unknown value %r; treating it as on (entries blocked)", raw)
    return Mode.ENTRIES


def current_mode() -> str:
    """The effective killswitch mode; the stricter of env and database, ENTRIES when unreadable."""
    forced = env_override()
    try:
        row = KillSwitch.objects.filter(pk=1).only("mode").first()
        stored = row.mode if row else Mode.OFF
    except Exception as exc:  # noqa: BLE001 — any failure to read must fail closed
        log.error("killswitch state unreadable (%s); failing closed: entries blocked", exc.__class__.__name__)
        stored = Mode.ENTRIES
    return strictest(forced, stored)


_RANK = {Mode.OFF: 0, Mode.ENTRIES: 1, Mode.FLATTEN: 2, Mode.HALT: 3}


def strictest(*modes) -> str:
    return max((m for m in modes if m), key=lambda m: _RANK[m], default=Mode.OFF)


def allows(mode: str, action: str) -> tuple[bool, str]:
    """Whether an order with `action` ('buy' or 'exit') may go out under `mode`, and why not."""
    if mode == Mode.HALT:
        return False, "killswitch: full halt blocks every order"
    if action == "buy" and mode in (Mode.ENTRIES, Mode.FLATTEN):
        return False, f"killswitch: {mode} mode blocks entries"
    return True, ""


def set_mode(mode: str, reason: str, *, actor: str, user=None) -> KillSwitchEvent:
    """Change the killswitch, record who/when/why, and queue an emergency alert."""
    if mode not in Mode.values:
        raise ValueError(f"unknown killswitch mode {mode!r}; use one of {', '.join(Mode.values)}")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required to change the killswitch")
    with transaction.atomic():
        row, _ = KillSwitch.objects.select_for_update().get_or_create(pk=1)
        previous = row.mode
        row.mode, row.reason, row.changed_by, row.changed_at = mode, reason, actor, timezone.now()
        row.save()
        event = KillSwitchEvent.objects.create(user=user, actor=actor, previous_mode=previous, mode=mode,
                                               reason=reason)
        enqueue("emergency", f"Killswitch {previous} → {mode}",
                body=f"Changed by {actor}: {reason}", fields={"mode": mode, "previous": previous, "by": actor})
    log.warning("killswitch changed previous=%s mode=%s actor=%s reason=%r", previous, mode, actor, reason)
    return event
