"""The killswitch: the database row, overridden by env POLICY_KILLSWITCH, failing closed.

`state()` never raises: if the row cannot be read it answers ENTRIES (block entries, exits still
allowed) from the control "unreadable" — never OFF. Every change through `set_mode` is audited and
alerted, and carries its consequences in the same transaction: flatten emits one exit per open
position and cancels unsent entries; leaving a halt releases the exits it held (trading.execution.exits).
"""
from __future__ import annotations

import logging
import os

from django.db import connection, transaction
from django.utils import timezone

from trading.models import KillSwitch, KillSwitchEvent, RiskControl
from trading.delivery.alerts import enqueue
from trading.risk.decision import KillState, order_decision

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


def stored_mode() -> str:
    """The mode the killswitch row holds (OFF without the row): one plain statement, read on every order's path."""
    meta = KillSwitch._meta
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {meta.get_field('mode').column} FROM {meta.db_table} WHERE {meta.pk.column} = 1")
        row = cursor.fetchone()
    return row[0] if row else Mode.OFF


def state() -> KillState:
    """The effective killswitch: the stricter of env and database, ENTRIES when unreadable."""
    forced = env_override()
    try:
        stored, control, detail = stored_mode(), RiskControl.KILLSWITCH, ""
    except Exception as exc:  # noqa: BLE001 — any failure to read must fail closed
        log.error("killswitch state unreadable (%s); failing closed: entries blocked", exc.__class__.__name__)
        stored, control, detail = Mode.ENTRIES, RiskControl.UNREADABLE, exc.__class__.__name__
    mode = strictest(forced, stored)
    if forced and _RANK[forced] >= _RANK[stored] and forced != Mode.OFF:
        control = RiskControl.ENV_OVERRIDE
    return KillState(mode, control, detail)


def current_mode() -> str:
    """The effective killswitch mode (see `state`)."""
    return state().mode


_RANK = {Mode.OFF: 0, Mode.ENTRIES: 1, Mode.FLATTEN: 2, Mode.HALT: 3}


def strictest(*modes) -> str:
    return max((m for m in modes if m), key=lambda m: _RANK[m], default=Mode.OFF)


def allows(mode: str, action: str) -> tuple[bool, str]:
    """Whether an order with `action` ('buy' or 'exit') may go out now under `mode`, and why not."""
    decision = order_decision(action, KillState(mode))
    return decision.allowed, decision.reason


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
        # Its consequences commit with it: acting on orders is execution's part (which imports this module).
        from trading.execution.exits import apply_mode

        apply_mode(event, state())
    log.warning("killswitch changed previous=%s mode=%s actor=%s reason=%r", previous, mode, actor, reason)
    return event
