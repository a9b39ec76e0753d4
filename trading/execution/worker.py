"""The strategy worker: hourly bars in, decisions by strategies/ (the backtest's code), orders out.

Books are rebuilt from the database (open positions, pending fills) and the worker resumes after
the last hour it processed; history only feeds the ML features — it never reaches the order
path. An hour is decided once every instrument's bar for it is published (the hub's watermark),
the step is written in one transaction, then its orders go to the order sender (a child process
that a kill of the worker cannot cut off mid-POST, see execution.sender). A second copy of the
same worker is refused by a Redis lock. The parts: execution.lock, .configuration, .hours (hour
assembly), .books (books follow the database), .scoring (the model registry), .ledger.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from redis.exceptions import RedisError

from strategies.bars import Bar, frame_from_bars
from strategies.calendar import PRODUCT_HOURS, session_date
from strategies.ibs import InstrumentBook
from strategies.params import ParameterError
from strategies.portfolio import Portfolio
from trading.delivery.alerts import enqueue
from trading.execution import books, exits, rolls
from trading.execution.configuration import Config, load_config
from trading.execution.hours import HOUR_MS, BarFrames, HourFeed, feature_history
from trading.execution.ledger import Leg, Ledger
from trading.execution.lock import WorkerLock, WorkerLockError
from trading.execution.scoring import ModelRegistry
from trading.execution.sender import InlineSender
from trading.health.heartbeat import beat
from trading.marketdata import streams
from trading.models import RiskControl, WorkerCursor
from trading.redis_client import get_redis
from trading.risk import killswitch
from trading.risk.daily import entries_stopped
from trading.risk.decision import KillState, RiskDecision, block_entry, order_decision

log = logging.getLogger(__name__)
UTC = timezone.utc
HOUR = timedelta(hours=1)
MAX_HOUR_ATTEMPTS = 3
INFRASTRUCTURE = (DatabaseError, RedisError, OSError)

__all__ = ["Config", "MAX_HOUR_ATTEMPTS", "Worker", "WorkerLockError", "load_config"]


class Worker:
    def __init__(self, name: str, *, block_ms: int = 1000, stopping=lambda: False, sender=None):
        self.name = name
        self.sender = sender or InlineSender(name)
        self.block_ms = block_ms
        self.stopping = stopping
        self.redis = get_redis()
        self.lock = WorkerLock(self.redis, name)
        self.hour_failures: dict[int, int] = {}  # kept across rebuilds: an hour is never retried forever
        self.skipped_hours: list[dict] = []
        self.frames = BarFrames()  # root → the ML features' hourly bars
        self.last_bar_time: datetime | None = None
        self._last_beat = 0.0
        self._last_config_check = 0.0

    def acquire_lock(self) -> None:
        self.lock.acquire()

    def release_lock(self) -> None:
        self.lock.release()

    # --- state ------------------------------------------------------------------------------
    def setup(self) -> None:
        """(Re)build everything from the database and Redis: configuration, books, models, cursor, history."""
        self.config = load_config(self.name)
        if not self.config.legs:
            raise ParameterError("legs", f"strategy {self.name} has no enabled instrument and no open position")
        s = self.config.strategy
        self.portfolio = Portfolio(self.config.params, timeframe=s.timeframe, max_positions=s.max_positions,
                                   hours=PRODUCT_HOURS)
        self.ledger = Ledger(s, self.config.legs, features=self.features)
        self.hours = None
        exits.book_filled_exits(s)  # fills a step modelled just before a kill, the broker's answer already in
        self.reconcile_books()
        self.scoring = ModelRegistry(s, self.config.legs)
        cursor = WorkerCursor.objects.filter(strategy=s).first()
        if cursor is None:
            # First start: whatever is already published is history, never traded.
            watermark = streams.watermark_ms(self.redis)
            cursor = WorkerCursor.objects.create(strategy=s, last_bar_ms=watermark - HOUR_MS if watermark else 0)
        self.cursor_ms = cursor.last_bar_ms
        self.hours = HourFeed(self.redis, s)
        for root in self.config.legs:
            self.frames[root] = feature_history(self.redis, root, self.cursor_ms)
            self.hours.follow(root, self.cursor_ms)
        self.hours.hold(self.contracts.values(), self.cursor_ms)
        log.info("worker ready strategy=%s roots=%s cursor=%s open=%d", self.name, ",".join(self.config.legs),
                 self.cursor_ms, self.portfolio.busy())

    def reconcile_books(self, rows: dict | None = None) -> None:
        """The books from the position rows (`rows`: read already); the contracts they are in too (execution.rolls)."""
        self.contracts = books.reconcile(self.portfolio, self.config.strategy, self.config.params, rows,
                                         self.config.instruments)
        if self.hours is not None:
            self.hours.hold(self.contracts.values(), self.cursor_ms)

    @property
    def model_errors(self) -> dict[str, str]:
        return self.scoring.errors

    # --- decisions --------------------------------------------------------------------------
    def score(self, root: str, bar: Bar) -> float | None:
        return self.scoring.score(root, bar, self.frames)

    def features(self, root: str, bar_time) -> dict | None:
        return self.scoring.features(root, bar_time)

    def entry_veto(self, root: str, kill: KillState, day, stopped: dict | None = None) -> RiskDecision | None:
        """Why an entry candidate of `root` must not go out now (None: it may); the controls in order.
        `stopped`: the daily stop's answer for `day`, read once per step (kept there on its first read)."""
        decision = order_decision("buy", kill)
        if not decision.allowed:
            return decision
        if self.config.legs[root].exits_only:
            return block_entry(RiskControl.DISABLED, f"{root} is disabled (or its strategy is): its open position "
                                                     "is still managed, no new entries")
        stopped = {} if stopped is None else stopped
        if day not in stopped:
            stopped[day] = entries_stopped(self.config.strategy, day)
        decision = stopped[day]
        if not decision.allowed:
            return decision
        if self.scoring.skips_entries(root):
            return block_entry(RiskControl.MODEL_POLICY, f"ml model unavailable: {self.scoring.errors[root][:200]}")
        return None

    def append_frame(self, bar: Bar) -> None:
        self.frames.append(bar)

    def process_hour(self, ts_ms: int, bars: dict[str, Bar], held: dict[str, Bar] | None = None) -> None:
        """Decide hour `ts_ms`: `bars` root → the front's bar, `held` contract → the bar of a contract a
        position is still open in after its roll (execution.rolls)."""
        ts = datetime.fromtimestamp(ts_ms / 1000, UTC)
        log.info("hour decided strategy=%s hour=%s roots=%s", self.name, ts.strftime("%Y-%m-%dT%H:%MZ"),
                 ",".join(sorted(bars)))
        for bar in bars.values():
            self.append_frame(bar)
        kill = killswitch.state()  # once per step: every decision of the hour under one answer
        day, stopped = session_date(ts + HOUR), {}  # the daily stop too, read at the first candidate
        with transaction.atomic():
            # The position rows locked once: the books follow them (a flatten, a held or failed exit written by
            # others since the last hour), the step is decided on them and written against them.
            positions = books.managed_rows(self.config.strategy, lock=True, instruments=self.config.instruments)
            self.reconcile_books(positions)
            roll = rolls.plan(self.config.strategy, bars, held or {}, self.contracts, self.config.legs)
            outcome = self.portfolio.step(ts, bars, score=self.score,
                                          entry_block=lambda r: self.entry_veto(r, kill, day, stopped),
                                          manage=roll.manage, force=roll.force)
            # Fenced by the lock: a step decided while this host was cut off commits only if the lock is still ours.
            pending = self.ledger.apply(ts, bars, outcome, self.config.params, self.portfolio.books, kill,
                                        managed=roll.manage, fence=self.lock.fence, positions=positions)
        self.cursor_ms = ts_ms
        self.last_bar_time = ts
        self.sender.send_now(self.config.strategy, pending)
        if any(t.exit_signal_ts is not None for _, t in outcome.closed):  # it modelled an exit order's fill
            exits.book_filled_exits(self.config.strategy)  # booked now if the broker has the exit already
        self.reconcile_books()  # what the step opened is held from now on (execution.hours: a roll's streams)
        for root, t in outcome.closed:
            log.info("exit filled (modelled) strategy=%s root=%s entry=%s exit=%s reason=%s", self.name, root,
                     t.entry_price, t.exit_price, t.reason)

    # --- loop -------------------------------------------------------------------------------
    def poll(self) -> int:
        """One round: read bars, decide every hour the watermark has closed, retry due orders."""
        watermark = self.hours.watermark()  # before the bars: see execution.hours
        self.hours.read(self.cursor_ms, self.hours.block_for(watermark, self.block_ms))
        if (self.hours.buffer or self.hours.held) and not self.hours.ready(watermark):
            # Bars woke the read: the hub sets the watermark with (or right after) them, so read it again now
            # rather than a round later, then what was written before it (a read that does not wait).
            watermark = self.hours.watermark()
            if self.hours.ready(watermark):
                self.hours.read(self.cursor_ms, None)
        done = 0
        for ts_ms in self.hours.ready(watermark):
            if self.hours.unread:  # a position opened while catching up, in a contract past its roll since
                self.hours.read(self.cursor_ms, None)
            try:
                self.process_hour(ts_ms, self.hours.buffer.get(ts_ms, {}), self.hours.held.get(ts_ms, {}))
            except INFRASTRUCTURE:
                raise  # the database or Redis: rebuilt and retried for as long as it takes, nothing skipped
            except WorkerLockError:
                raise  # another host holds the strategy now: the step was rolled back, this worker stops
            except Exception as exc:  # noqa: BLE001
                if not self.hour_failed(ts_ms, exc):
                    raise  # rebuilt from the database and tried again
            self.hours.drop(ts_ms)
            done += 1
        self.sender.pump(self.config.strategy)
        self.reconcile_books()
        return done

    def hour_failed(self, ts_ms: int, exc: Exception) -> bool:
        """Count a failure of hour `ts_ms`; after MAX_HOUR_ATTEMPTS it is recorded, alerted and passed by
        (True), the open positions left to their broker-side brackets — never retried forever."""
        self.hour_failures[ts_ms] = attempts = self.hour_failures.get(ts_ms, 0) + 1
        hour = datetime.fromtimestamp(ts_ms / 1000, UTC)
        if attempts < MAX_HOUR_ATTEMPTS:
            log.error("hour failed strategy=%s hour=%s attempt=%d error=%r", self.name, hour, attempts, exc)
            return False
        detail = f"{exc.__class__.__name__}: {exc}"
        WorkerCursor.objects.update_or_create(strategy=self.config.strategy, defaults={"last_bar_ms": ts_ms})
        self.cursor_ms = ts_ms
        self.skipped_hours.append({"hour": hour.isoformat(), "error": detail[:300]})
        log.error("hour skipped strategy=%s hour=%s after %d attempts error=%s", self.name, hour, attempts, detail)
        enqueue("emergency", f"{self.name}: hour {hour:%Y-%m-%d %H:%M} UTC could not be processed",
                strategy=self.config.strategy,
                body=(f"Tried {attempts} times: {detail[:800]}. The worker moved on to the next hour without "
                      "deciding this one; open positions keep their broker-side stop and target."),
                dedupe_key=f"hour-skipped:{self.name}:{ts_ms}")
        self.reconcile_books()  # whatever the failed step did to the books in memory, the database decides
        return True

    def heartbeat(self, state: str = "running", force: bool = False) -> None:
        s = self.config.strategy
        if not force and time.monotonic() - self._last_beat < s.heartbeat_interval:
            return
        self._last_beat = time.monotonic()
        beat(f"worker:{self.name}", state=state, interval=s.heartbeat_interval, last_bar_time=self.last_bar_time,
             open_positions=self.portfolio.busy(), file=s.heartbeat_path(),
             details={"cursor_ms": self.cursor_ms, "model_errors": self.model_errors,
                      "skipped_hours": self.skipped_hours[-10:]})

    def maybe_reload(self) -> None:
        """Every few seconds: a changed configuration reaches the running worker (a bad one is refused)."""
        if time.monotonic() - self._last_config_check < 5:
            return
        self._last_config_check = time.monotonic()
        try:
            fresh = load_config(self.name)
        except ParameterError as exc:
            log.error("config change refused strategy=%s: %s; keeping the last good config", self.name, exc)
            enqueue("emergency", f"{self.name}: invalid config ignored", strategy=self.config.strategy, body=str(exc),
                    dedupe_key=f"badconfig:{self.name}:{exc}")
            return
        if fresh.fingerprint == self.config.fingerprint:
            return
        for root, params in fresh.params.items():
            if root in self.portfolio.books:
                self.portfolio.books[root].params = params
        self.portfolio.params.update(fresh.params)
        self.portfolio.max_positions = fresh.strategy.max_positions
        added = [r for r in fresh.legs if r not in self.config.legs]
        for root in added:
            self.portfolio.books[root] = InstrumentBook(fresh.params[root], self.portfolio.seconds)
            self.frames[root] = frame_from_bars([])
            self.hours.follow(root, self.cursor_ms)
        # A leg dropped while its book still holds something (an entry not yet a position row) stays until flat.
        for root, leg in self.config.legs.items():
            if root not in fresh.legs and not self.portfolio.books[root].flat:
                fresh.legs[root] = Leg(**{**vars(leg), "exits_only": True})
                fresh.params[root] = self.config.params[root]
        self.config = fresh
        self.ledger = Ledger(fresh.strategy, fresh.legs, features=self.features)
        self.scoring = ModelRegistry(fresh.strategy, fresh.legs)
        log.info("config reloaded strategy=%s roots=%s added=%s", self.name, ",".join(fresh.legs), added)

    def run(self) -> None:
        if not self.lock.acquire(wait=settings.WORKER_WAITS_FOR_LOCK, stopping=self.stopping):
            return  # stopped while a standby: it never held the lock, never traded
        try:
            self.setup()
            self.sender.start(self.config.strategy)
            enqueue("startup", f"{self.name} worker started", strategy=self.config.strategy,
                    body=f"Instruments: {', '.join(self.config.legs)}; open: {self.portfolio.busy()}")
            self.heartbeat(force=True)
            rebuild = False
            while not self.stopping():
                close_old_connections()
                try:
                    self.lock.refresh()
                    if rebuild:  # nothing runs on state the database did not give: rebuild first
                        self.setup()
                        rebuild = False
                    self.maybe_reload()
                    self.poll()
                    self.heartbeat()
                except WorkerLockError:
                    raise
                except Exception as exc:  # noqa: BLE001 — database/Redis away: rebuild from the truth, retry
                    log.exception("worker step failed strategy=%s (%s); rebuilding state from the database",
                                  self.name, exc.__class__.__name__)
                    time.sleep(2)
                    rebuild = True
            self.sender.stop(self.config.strategy)
            self.heartbeat("stopped", force=True)
            enqueue("shutdown", f"{self.name} worker stopped", strategy=self.config.strategy)
        finally:
            self.lock.release()
