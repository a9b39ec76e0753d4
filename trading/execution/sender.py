"""Where a worker's orders leave from.

TradersPost has no idempotency key, so a POST cut in half by a kill is an order in an unknown
state. The worker therefore never POSTs itself: `DetachedSender` runs `manage.py sendorders`
as a child in its own session, fed by a pipe (the orders themselves, execution.handoff). A kill
-9 of the worker (or of its process group, as supervisord does) leaves the sender alive: it finishes the POST in hand, records the answer,
sees the pipe closed and exits without starting another. The next worker starts its own
sender; claims (`Signal.claimed_by`) keep two senders off one order, and a claim is settled only
once its sender is known dead. What remains ambiguous is a kill of the sender itself during
its POST: such an order is failed and alerted, never resent (see execution.recovery).

`InlineSender` sends from the calling process: for in-process tests and tools.
"""
from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from trading.execution import handoff, outbox, recovery
from trading.execution.ratelimit import RedisRateLimiter
from trading.health.process import process_token
from trading.models import Signal, Strategy
from trading.redis_client import get_redis, key

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
REGISTRY_TTL = 15
STOP_WAIT = 30.0


def limiter() -> RedisRateLimiter:
    """The per-webhook limiter shared by every sender of this appliance (settings.TRADERSPOST_RATE_LIMITS:
    60/min and 500/h unless configured otherwise)."""
    return RedisRateLimiter(get_redis(), prefix=key("ratelimit"), limits=settings.TRADERSPOST_RATE_LIMITS)


def registry_key(strategy_name: str) -> str:
    return key("sender", strategy_name)


class InlineSender:
    """Sends in the calling process."""

    def __init__(self, strategy_name: str):
        self.name = strategy_name
        self.limiter = limiter()
        self.sessions = handoff.Sessions()

    def start(self, strategy) -> None:
        recovery.recover_interrupted(strategy=strategy)

    def send_now(self, strategy, signals) -> None:
        """Send the orders the worker has just committed (Signal rows), in their order."""
        for sig in signals:
            handoff.send_handed(handoff.order_message(sig), strategy, limiter=self.limiter, sessions=self.sessions)

    def pump(self, strategy) -> None:
        outbox.send_pending_orders(strategy=strategy, limiter=self.limiter, sessions=self.sessions)

    def stop(self, strategy) -> None:
        self.pump(strategy)


class DetachedSender:
    """A `sendorders` child in its own session, woken through its stdin."""

    def __init__(self, strategy_name: str, *, python: str = sys.executable):
        self.name = strategy_name
        self.python = python
        self.proc: subprocess.Popen | None = None

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [self.python, str(Path(settings.BASE_DIR) / "manage.py"), "sendorders", "--strategy", self.name],
            stdin=subprocess.PIPE, cwd=settings.BASE_DIR, start_new_session=True)
        os.set_blocking(self.proc.stdin.fileno(), False)  # see wake()
        log.info("order sender started strategy=%s pid=%d", self.name, self.proc.pid)

    def start(self, strategy) -> None:
        recovery.recover_interrupted(strategy=strategy)
        self._spawn()

    def _alive(self, strategy) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            return True
        if self.proc is not None:
            log.error("order sender died strategy=%s pid=%d code=%s; settling its claims and restarting it",
                      self.name, self.proc.pid, self.proc.returncode)
            recovery.recover_interrupted(strategy=strategy)
            self._spawn()
        return False

    def send_now(self, strategy, signals) -> None:
        """Hand the orders the worker has just committed to the sender, one JSON line each (execution.handoff)."""
        if signals:
            self.wake(strategy, [json.dumps(handoff.order_message(sig), default=str).encode() for sig in signals])

    def wake(self, strategy, lines=()) -> None:
        """Write `lines` (or an empty one: look for due orders) to the sender's pipe without ever waiting on it:
        the pipe of a sender frozen mid-POST fills, and an order left out of it is still a pending row, which
        the sender's next pass (or the next sender) finds."""
        if not self._alive(strategy):
            return  # a fresh sender looks for due orders as it starts
        fd = self.proc.stdin.fileno()
        try:
            for line in list(lines) or [b""]:
                os.write(fd, line + b"\n" if len(line) < select.PIPE_BUF else b"\n")  # atomic, never half a line
        except BlockingIOError:
            log.warning("order sender pipe full strategy=%s; its next pass finds the orders", self.name)
        except (BrokenPipeError, ValueError, OSError):
            self._alive(strategy)

    def pump(self, strategy) -> None:
        self._alive(strategy)  # a live sender polls for due retries on its own

    def stop(self, strategy=None, timeout: float = STOP_WAIT) -> None:
        """Close the pipe and wait for the sender to finish the POST in hand."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("order sender strategy=%s did not stop within %.0fs; leaving it to finish", self.name, timeout)


def send_orphaned_orders() -> dict:
    """Due orders of strategies without a live sender (the Celery safety net), by strategy."""
    redis = get_redis()
    out = {}
    waiting = Signal.objects.filter(state=Signal.State.PENDING).values_list("strategy_id", flat=True).distinct()
    for strategy in Strategy.objects.filter(pk__in=list(waiting)):
        if redis.exists(registry_key(strategy.name)):
            continue
        report = outbox.send_pending_orders(strategy=strategy, limiter=limiter())
        out[strategy.name] = report.counts()
    return out


def settle_own_claims(strategy) -> None:
    """After a failed pass no POST of this sender is in flight: a claim it still holds is settled (never
    posted: pending again; possibly posted: failed and alerted), or it would hold its instrument's queue."""
    try:
        recovery.recover_interrupted(strategy=strategy, mine=True)
    except Exception as exc:  # noqa: BLE001 — still away: tried again after the next failed pass
        log.error("own claims not settled strategy=%s (%s)", strategy.name, exc.__class__.__name__)


def run_sender(strategy, *, stdin=None, poll: float = POLL_SECONDS) -> int:
    """The `sendorders` loop: send the orders handed over on stdin at once (execution.handoff), and the due
    pending ones when woken by an empty line and at least every `poll` s; return when stdin closes."""
    fd = (stdin or sys.stdin.buffer).fileno()
    redis = get_redis()
    token = process_token()
    closed, woken, partial = False, False, b""
    handed: list[dict] = []

    def read_wakeups(timeout: float) -> None:
        nonlocal closed, woken, partial
        while not closed:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return
            data = os.read(fd, 65536)
            if not data:
                closed = True
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                if not line.strip():
                    woken = True  # look for due orders
                    continue
                try:
                    handed.append(json.loads(line))
                except ValueError:
                    log.error("unreadable order handed over strategy=%s; looking for due orders", strategy.name)
                    woken = True
            timeout = 0

    def stop() -> bool:
        read_wakeups(0)
        return closed

    limit, sessions = limiter(), handoff.Sessions()
    sent, last_pass = 0, 0.0
    log.info("order sender running strategy=%s", strategy.name)
    while not closed:
        orders, handed[:] = list(handed), []
        due = woken or not orders or time.monotonic() - last_pass >= poll
        woken = False
        try:
            for order in orders:
                if stop():
                    break
                if handoff.send_handed(order, strategy, limiter=limit, sessions=sessions) == Signal.State.SENT:
                    sent += 1
            if due:
                last_pass = time.monotonic()
                try:
                    redis.set(registry_key(strategy.name), token, ex=REGISTRY_TTL)
                except Exception as exc:  # noqa: BLE001 — the registry only spares Celery's safety net the work
                    log.warning("sender registry not updated strategy=%s: %s", strategy.name,
                                exc.__class__.__name__)
                strategy.refresh_from_db(fields=["mode", "broker_webhook"])  # what handed orders go by
                report = outbox.send_pending_orders(strategy=strategy, limiter=limit, sessions=sessions, stop=stop)
                sent += len(report.sent)
        except Exception as exc:  # noqa: BLE001 — database away: the orders wait in it; try again
            log.error("order sending failed strategy=%s (%s); retrying", strategy.name, exc.__class__.__name__)
            time.sleep(1)
            close_old_connections()
            settle_own_claims(strategy)
            woken = True  # what was handed over is a pending row still: the next pass finds it
        read_wakeups(0 if handed else poll)
    sessions.close()
    try:
        if redis.get(registry_key(strategy.name)) == token:
            redis.delete(registry_key(strategy.name))
    except Exception:  # noqa: BLE001
        pass
    log.info("order sender stopped strategy=%s sent=%d", strategy.name, sent)
    return sent
