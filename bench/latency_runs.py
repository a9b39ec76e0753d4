"""The three paths of the order-latency bench, one order at a time against the TradersPost stand-in:
a bare POST (reference), `outbox.send_one` of a committed Signal row, and the real worker loop fed
hourly bars as the hub publishes them; plus the worker instrumented to be waited on (the stand-in: bench.standin).

Instrumentation only observes (subclasses that count, wait and park); it never changes what the
stand-in answers or what the worker decides and sends.
"""
from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.standin import WAIT_S

UTC = timezone.utc
HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday; the 24 h entry window makes every hour eligible
ENTRY_BAR = (100.0, 101.0, 99.0, 99.2)  # IBS 0.1: entry while flat (and the pending exit fills at 100.0)
EXIT_BAR = (99.5, 99.9, 99.1, 99.8)  # IBS 0.875: exit; the entry filled at 99.5, stop 98.5, target 100.5
MID_BAR = (100.0, 100.4, 99.6, 100.0)  # IBS 0.5: no decision (the worker's first hours)
LOOKBACK = 240  # hours of history before the first measured one (strategies.features.LOOKBACK)


# --- the stand-in and the worker, instrumented without changing them --------------------------------
def make_sender(kind: str, name: str, log_path: Path):
    """The order sender the worker hands its orders to: production's `sendorders` child (as
    `runworker` wires it), or the in-process one."""
    from trading.execution.sender import DetachedSender, InlineSender

    if kind == "inline":
        return InlineSender(name)

    class QuietDetachedSender(DetachedSender):
        """The production sender child; its stderr (its log) goes to the bench log, not the terminal."""

        def _spawn(self) -> None:
            saved = os.dup(2)
            try:
                with open(log_path, "ab") as log:
                    os.dup2(log.fileno(), 2)
                super()._spawn()
            finally:
                os.dup2(saved, 2)
                os.close(saved)

    return QuietDetachedSender(name)


def reset_rate_limit(url: str) -> None:
    """Empty the per-webhook sliding window (60/min, 500/h) this bench's orders filled."""
    from trading.execution.sender import limiter
    from trading.redis_client import get_redis

    get_redis().delete(limiter().key(url))


def make_worker(name: str, stop: threading.Event, sender):
    from trading.execution.worker import Worker

    class WatchedWorker(Worker):
        """The real worker; counts finished poll rounds, says when setup is done, can be parked."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.ready = threading.Event()
            self.round_done = threading.Condition()
            self.rounds = 0
            self.gate, self.parked = threading.Event(), threading.Event()
            self.gate.set()

        def setup(self) -> None:
            super().setup()
            self.ready.set()

        def poll(self) -> int:
            if not self.gate.is_set():
                self.parked.set()
                self.gate.wait()
                self.parked.clear()
            try:
                return super().poll()
            finally:
                with self.round_done:
                    self.rounds += 1
                    self.round_done.notify_all()

        def park(self) -> None:
            """Hold the loop before its next poll round (returns once it is held)."""
            self.gate.clear()
            if not self.parked.wait(WAIT_S):
                raise RuntimeError("the worker loop did not reach its next poll round")

        def unpark(self) -> None:
            self.gate.set()

        def wait_rounds_after(self, seen: int, timeout: float = WAIT_S) -> bool:
            with self.round_done:
                return self.round_done.wait_for(lambda: self.rounds > seen, timeout)

    return WatchedWorker(name, block_ms=50, stopping=stop.is_set, sender=sender)


# --- payloads and the plan of orders ------------------------------------------------------------------
def action_of(i: int) -> str:
    return "buy" if i % 2 == 0 else "exit"


def payload_like_the_worker(strategy: str, ticker: str, sid: str, bar_time: datetime, action: str, bar) -> dict:
    """The body the ledger builds for this decision (same fields, same protective orders on a buy)."""
    from strategies.ibs import ibs
    from strategies.params import IBSParams
    from trading.execution.traderspost import order_payload

    _, h, l, c = bar
    p = IBSParams()
    extras = {"strategy": strategy, "signal_id": sid, "bar_time": bar_time.isoformat(), "ibs": round(ibs(h, l, c), 4),
              "ml_score": None, "reason": "entry" if action == "buy" else "ibs_exit"}
    buy = action == "buy"
    return order_payload(ticker=ticker, action=action, quantity=1, signal_price=c, time_in_force="day", extras=extras,
                         stop_loss_percent=p.stop_loss_pct if buy else None,
                         take_profit_percent=p.take_profit_pct if buy else None)


# --- the runs: one order at a time, `send(i)` returns ms from its start to the stand-in's receipt ----
def ms_since(started: float, entry: dict | None) -> float:
    return (entry["received_at"] - started) * 1000 if entry else float("nan")


class ReferenceRun:
    """A bare `requests.post` (a new connection each time, as `deliver` makes) of the worker's payload shape."""

    def __init__(self, standin, args, ctx):
        import requests

        self.standin, self.post = standin, requests.post
        self.url = f"{standin.url}/trading/webhook/bench-reference-{secrets.token_hex(8)}"
        self.ids: list[str] = []

    def send(self, i: int) -> float:
        action, bar_time = action_of(i), T0 + i * HOUR
        sid = f"bench_reference:CL:{bar_time:%Y-%m-%dT%H:%M:%SZ}:{action}"
        payload = payload_like_the_worker("bench_reference", "CL", sid, bar_time, action,
                                          ENTRY_BAR if action == "buy" else EXIT_BAR)
        self.ids.append(sid)
        started = time.time()
        self.post(self.url, json=payload, timeout=10)
        return ms_since(started, self.standin.wait_for(sid))


class OutboxRun:
    """`outbox.send_one` of a pending Signal row of ibs_b (created and committed before the clock starts)."""

    def __init__(self, standin, args, ctx):
        from trading.execution.sender import limiter
        from trading.models import Strategy

        self.url = f"{standin.url}/trading/webhook/bench-outbox-{secrets.token_hex(8)}"
        os.environ["TRADERSPOST_IBS_B_WEBHOOK"] = self.url
        self.standin, self.limiter = standin, limiter()
        self.strategy = Strategy.objects.get(name="ibs_b")
        self.leg = self.strategy.legs.select_related("instrument").order_by("instrument__root").first()
        self.ids: list[str] = []

    def send(self, i: int) -> float:
        from django.utils import timezone as dj_tz

        from trading.execution import outbox
        from trading.models import Signal, signal_key

        action, bar_time, leg = action_of(i), T0 + i * HOUR, self.leg
        bar = ENTRY_BAR if action == "buy" else EXIT_BAR
        key = signal_key("ibs_b", leg.instrument.root, bar_time, action)
        sig = Signal.objects.create(
            key=key, strategy=self.strategy, instrument=leg.instrument, bar_time=bar_time, action=action, quantity=1,
            signal_price=str(bar[3]), reason="entry" if action == "buy" else "ibs_exit",
            payload=payload_like_the_worker("ibs_b", leg.broker_ticker(f"{leg.instrument.root}Z6", bar_time), key,
                                            bar_time, action, bar),
            expires_at=dj_tz.now() + timedelta(days=1))
        self.ids.append(key)
        started = time.time()
        outbox.send_one(sig.pk, limiter=self.limiter)
        entry = self.standin.wait_for(key)
        reset_rate_limit(self.url)
        return ms_since(started, entry)


def prepare_worker_strategy() -> None:
    """ibs_a as the demo loads it (6 roots, ML on), made to decide every hour it is given: entry window 24 h,
    flat time none, and a threshold of 0 so that every entry candidate is scored and then passes the filter."""
    from trading.models import Strategy, StrategyInstrument

    Strategy.objects.filter(name="ibs_a").update(entry_windows="00:00-24:00", flat_time="none")
    StrategyInstrument.objects.filter(strategy__name="ibs_a").update(enabled=True, ml_enabled=True, ml_threshold=0.0)


def worker_roots() -> list[str]:
    from trading.models import StrategyInstrument

    return sorted(StrategyInstrument.objects.filter(strategy__name="ibs_a").values_list("instrument__root", flat=True))


def trading_hours(roots: list[str], start: datetime, count: int, step: int = 1) -> list[datetime]:
    """`count` hours from `start` (going back with step -1) in which every root trades all hour on a regular
    session (no early close), so that each bar is decided and its order may go out."""
    from strategies.calendar import early_close, is_trading

    out, ts = [], start
    while len(out) < count:
        end = ts + HOUR
        if all(is_trading(r, ts) and is_trading(r, end - timedelta(seconds=1)) and is_trading(r, end)
               and early_close(r, ts) is None and early_close(r, end) is None for r in roots):
            out.append(ts)
        ts += step * HOUR
    return sorted(out)


def history_bar(k: int) -> tuple:
    """Quiet hours before the first measured one (IBS 0.3–0.7, never a signal): the ML features' history."""
    c = 100.0 + 0.3 * math.sin(k / 7.0)
    return c - 0.05, c + 0.25, c - 0.25, c + 0.25 * (0.6 * math.sin(k / 3.0))


class WorkerRun:
    """The bench plays the hub; the real `Worker.run()` loop of ibs_a runs in a thread of this process.

    Every hour the six roots' hourly bars, their closing minutes and the watermark go to Redis in one script
    call, as the hub's BarPublisher writes them; order i is an entry (even i) or the exit of that position
    (odd i) of root ROOTS[(i // 2) % 6], the other roots' bars being quiet. Blocks alternate between the ML
    filter on (`ml=True`: every candidate scored through the production scoring path) and off: the config is
    changed while the worker is parked and the run goes on once the worker has reloaded it. Between blocks of
    the other runs the worker is parked at the top of its next poll round, so its loop never competes with them.
    """

    def __init__(self, standin, args, ctx):
        from django.db import connections

        from trading.marketdata.streams import BarPublisher

        self.url = f"{standin.url}/trading/webhook/bench-worker-{secrets.token_hex(8)}"
        os.environ["TRADERSPOST_IBS_A_WEBHOOK"] = self.url  # before the sender child inherits the environment
        prepare_worker_strategy()
        self.roots = worker_roots()
        self.hours = trading_hours(self.roots, T0, 2 * (args.warmup + args.signals) + 1)
        self.sent = 0  # orders so far, both modes
        self.publisher = BarPublisher(batch=10_000)
        for k, ts in enumerate(trading_hours(self.roots, T0 - HOUR, LOOKBACK + 10, step=-1)):
            self.publish(ts, {r: history_bar(k + 13 * j) for j, r in enumerate(self.roots)})
        self.standin, self.ids, self.errors = standin, [], []
        self.ml, self.reloaded = True, False  # reloaded: the next order is the first after a config reload
        self.stop = threading.Event()
        self.worker = make_worker("ibs_a", self.stop, make_sender(args.sender, "ibs_a", ctx["log_path"]))
        self.busy_rounds = 0

        def loop():
            try:
                self.worker.run()
            except BaseException as exc:  # noqa: BLE001 — reported after the run
                self.errors.append(exc)
            finally:
                connections.close_all()

        self.thread = threading.Thread(target=loop, name="bench-worker", daemon=True)
        self.thread.start()
        if not self.worker.ready.wait(60):
            raise RuntimeError(f"the worker did not start: {self.errors}")
        if args.sender == "detached":  # the child is up once it has registered (its first loop)
            from trading.execution.sender import registry_key
            from trading.redis_client import get_redis

            deadline = time.monotonic() + 60
            while not get_redis().exists(registry_key("ibs_a")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the order sender child did not start (see --keep and bench.log)")
                time.sleep(0.02)
        self.pause()

    def publish(self, ts: datetime, bars: dict) -> None:
        """What the hub does when an hour completes: each root's hourly bar and closing minute, then the
        watermark, in one call."""
        from strategies.bars import Bar

        for root, (o, h, l, c) in bars.items():
            contract = f"{root}H6"
            self.publisher.add(Bar(root, contract, "1h", ts, o, h, l, c, 100, 10))
            self.publisher.add(Bar(root, contract, "1m", ts + HOUR - timedelta(minutes=1), c, c, c, c, 1, 1))
        self.publisher.watermark(int((ts + HOUR).timestamp()) * 1_000_000_000)
        self.publisher.flush()

    def pause(self) -> None:
        self.worker.park()

    def resume(self, ml: bool | None = None) -> None:
        """Let the loop go on; with `ml`, once the worker runs with the ML filter on (or off) on every leg."""
        from trading.models import StrategyInstrument

        if ml is not None and ml != self.ml:
            StrategyInstrument.objects.filter(strategy__name="ibs_a").update(ml_enabled=ml)
            self.worker._last_config_check = 0.0  # the next round reloads (the worker checks every 5 s)
            self.ml, self.reloaded = ml, True
        self.worker.unpark()
        deadline = time.monotonic() + WAIT_S
        while any(leg.row.ml_enabled != self.ml for leg in self.worker.config.legs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not reload its configuration")
            time.sleep(0.005)

    def send(self, ids: list) -> float:
        """The next order of the plan (whichever mode the worker is in); its key goes to `ids`."""
        from trading.models import Signal, signal_key

        i, self.sent = self.sent, self.sent + 1
        action, ts, root = action_of(i), self.hours[i], self.roots[(i // 2) % len(self.roots)]
        key = signal_key("ibs_a", root, ts, action)
        ids.append(key)
        self.ids.append(key)
        bars = {r: MID_BAR for r in self.roots}
        bars[root] = ENTRY_BAR if action == "buy" else EXIT_BAR
        before = self.worker.rounds
        started = time.time()
        self.publish(ts, bars)
        entry = self.standin.wait_for(key)
        # The next hour comes once this one is over: the worker's round ended and the sender has
        # recorded the answer (in production the next bar is an hour away).
        seen = self.worker.rounds
        self.worker.wait_rounds_after(seen)
        deadline = time.monotonic() + WAIT_S
        while (Signal.objects.filter(key=key, state__in=["pending", "sending"]).exists()
               and time.monotonic() < deadline):
            time.sleep(0.001)
        reset_rate_limit(self.url)
        self.busy_rounds += self.worker.rounds - before
        return ms_since(started, entry)

    def mode(self, ml: bool) -> "WorkerMode":
        return WorkerMode(self, ml)

    def close(self) -> None:
        """Stop the worker loop (it sends what is still due, then releases its lock)."""
        self.stop.set()
        self.resume()
        self.thread.join(30)

    def finish(self) -> dict:
        from trading.models import Signal

        self.resume()
        idle_from, idle_s = self.worker.rounds, 0.5
        time.sleep(idle_s)  # nothing published: how often the loop goes round with nothing to do
        idle_rate = (self.worker.rounds - idle_from) / idle_s
        self.close()
        rows = Signal.objects.filter(strategy__name="ibs_a")
        states = Counter(rows.values_list("state", flat=True))
        attempts = Counter(rows.values_list("attempts", flat=True))
        return {"db_states": dict(states), "db_attempts": {str(k): v for k, v in attempts.items()},
                "poll_rounds": self.busy_rounds, "idle_poll_rounds_per_s": idle_rate,
                "errors": [f"{e.__class__.__name__}: {e}" for e in self.errors], "stopped": not self.thread.is_alive()}



class WorkerMode:
    """One worker run seen with the ML filter on or off: its own orders, the worker shared."""

    def __init__(self, run: WorkerRun, ml: bool):
        self.run, self.ml, self.ids = run, ml, []
        self.after_reload: list[int] = []  # the orders (their index in this mode's sends) first after a reload

    def resume(self) -> None:
        self.run.resume(self.ml)

    def pause(self) -> None:
        self.run.pause()

    def send(self, i: int) -> float:
        if self.run.reloaded:  # a reload built this mode's scorer again: its models are loaded at this order
            self.run.reloaded = False
            self.after_reload.append(len(self.ids))
        return self.run.send(self.ids)
