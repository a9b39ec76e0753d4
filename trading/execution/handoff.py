"""Orders handed from the worker to its sender: the message on the pipe, its claim, and its send.

The worker writes each order it has just committed (id, payload, what the send needs) to its sender's
pipe, so the sender neither looks for pending rows nor reads the order back before its POST. It goes the
outbox's one send path (outbox.send); only its claim differs: taken at the POST, atomically with the
ordering check and the attempt logged as started, only while it is still pending with the attempts it was
handed over with. A handed order is never sent twice: once its attempt is logged it is the outbox's
recovery that decides (an interrupted POST is failed, never resent).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from trading.execution import outbox
from trading.models import Signal

IDLE_REUSE = 30.0  # s: a keep-alive connection idle longer is not reused (a server may have dropped it meanwhile)


def order_message(sig: Signal) -> dict:
    """What the sender needs of a committed order, as JSON."""
    return {"pk": sig.pk, "key": sig.key, "action": sig.action, "payload": sig.payload, "attempts": sig.attempts,
            "instrument": sig.instrument_id, "root": sig.instrument.root, "contract": sig.contract,
            "expires_at": sig.expires_at.isoformat() if sig.expires_at else None}


@dataclass(frozen=True)
class HandedInstrument:
    pk: int
    root: str


@dataclass(frozen=True)
class HandedOrder:
    """A committed order as the worker handed it over: what its send reads before the POST, no row read (a model
    instance would cost as much as the claim in a sender woken cold)."""
    pk: int
    key: str
    action: str
    payload: dict
    attempts: int
    contract: str
    expires_at: datetime | None
    instrument: HandedInstrument  # its id and root (exits.market_at_send)

    @classmethod
    def of(cls, message: dict) -> HandedOrder:
        expires = datetime.fromisoformat(message["expires_at"]) if message.get("expires_at") else None
        return cls(message["pk"], message["key"], message["action"], message["payload"], message["attempts"],
                   message["contract"], expires, HandedInstrument(message["instrument"], message["root"]))


class HandedClaim(outbox.Claim):
    """A handed order's claim, taken at its POST: only while the order is as it was handed over (its attempts,
    not tried since) and due."""

    def __init__(self, pk: int, attempts: int):
        super().__init__(pk)
        self.attempts = attempts

    def condition(self, at: datetime) -> tuple[str, list]:
        where, params = super().condition(at)
        if self.claimed_at is not None:
            return where, params
        return (f"{where} AND attempts = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)",
                [*params, self.attempts, connection.ops.adapt_datetimefield_value(at)])


class Sessions:
    """One HTTP keep-alive session per webhook URL (requests.Session), renewed after IDLE_REUSE seconds idle."""

    def __init__(self):
        self._by_url: dict[str, tuple] = {}  # url → (session, last used, monotonic)

    def get(self, url: str):
        import requests

        session, used = self._by_url.get(url, (None, 0.0))
        if session is not None and time.monotonic() - used > IDLE_REUSE:
            session.close()
            session = None
        if session is None:
            session = requests.Session()
        self._by_url[url] = (session, time.monotonic())
        return session

    def close(self) -> None:
        for session, _ in self._by_url.values():
            session.close()
        self._by_url.clear()


def send_handed(order: dict, strategy, *, limiter=None, deliver=None, sessions: Sessions | None = None,
                timeout: float = 10.0, report: outbox.OutboxReport | None = None) -> str | None:
    """Send an order handed over by the worker; returns its new state, or None when it is not this
    sender's (another has it, or an earlier order of its instrument goes first: sent by the next pass).
    `strategy`: the sender's row, read again at every pass of its loop."""
    return outbox.send(HandedOrder.of(order), strategy, HandedClaim(order["pk"], order["attempts"]), deliver=deliver,
                       limiter=limiter, sessions=sessions, timeout=timeout, report=report)
