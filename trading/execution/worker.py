"""The strategy worker: hourly bars in, decisions by strategies/ (the backtest's code), orders out.

Books are rebuilt from the database (open positions, pending fills) and the worker resumes after
the last hour it processed; history only feeds the ML features — it never reaches the order
path. An hour is decided once every instrument's bar for it is published (the hub's watermark),
the step is written in one transaction, then its orders go to the order sender (a child process
that a kill of the worker cannot cut off mid-POST, see execution.sender). A second copy of the
same worker is refused by a Redis lock.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from redis.exceptions import RedisError

from strategies.bars import Bar, frame_from_bars
from strategies.calendar import PRODUCT_HOURS, session_date
from strategies.features import LOOKBACK, feature_names, feature_row
from strategies.ibs import EntrySignal, ExitSignal
from strategies.ibs import Position as BookPosition
from strategies.ml import ModelError, load
from strategies.params import ParameterError
from strategies.portfolio import Portfolio
from trading.execution.sender import InlineSender
from trading.execution import gaps
from trading.execution.ledger import Leg, Ledger
from trading.health.heartbeat import beat
from trading.health.process import holder_dead, process_token
from trading.marketdata import streams
from trading.marketdata.barstore import load_frame
from trading.models import Position, RiskControl, Signal, Strategy, WorkerCursor
from trading.delivery.alerts import enqueue
from trading.redis_client import get_redis, key
from trading.risk import killswitch
from trading.risk.daily import entries_stopped
from trading.risk.decision import KillState, RiskDecision, block_entry, order_decision

log = logging.getLogger(__name__)
UTC = timezone.utc
HOUR = timedelta(hours=1)
LOCK_TTL = 30
MAX_HOUR_ATTEMPTS = 3
INFRASTRUCTURE = (DatabaseError, RedisError, OSError)


class WorkerLockError(RuntimeError):
    pass


def expected_shape(pos: Position | None) -> tuple[bool, bool, bool, bool]:
    """What an instrument's book must hold for managed position row `pos`: (entry awaiting its fill,
    position, its exit held or already on its way at the market, an exit awaiting the next open).
    An EXITED position (filled in the model, the broker's answer still to come) is out of the book."""
    if pos is None:
        return False, False, False, False
    if not pos.filled:
        return True, False, False, False
    ex = pos.exit_signal
    if pos.state == Position.State.OPEN:
        return False, True, False, False
    if pos.state == Position.State.CLOSING and ex is not None and ex.fill == Signal.Fill.NEXT_OPEN:
        return False, True, False, True  # decided at a close: the book fills it at the next open
    return False, True, True, False  # held through a halt, or sent at the market (flatten, released)


@dataclass
class Config:
    strategy: Strategy
    legs: dict[str, Leg]
    params: dict
    fingerprint: tuple


def load_config(name: str) -> Config:
    """Read the strategy and the instruments it manages: every enabled one, and every one — disabled, or
    the whole strategy disabled — that still holds a position (exits only: disabling never abandons a
    position). ParameterError names a bad parameter."""
    strategy = Strategy.objects.get(name=name)
    holding = set(Position.objects.managed().filter(strategy=strategy).values_list("instrument_id", flat=True))
    legs, params = {}, {}
    for row in strategy.legs.select_related("instrument").order_by("instrument__root"):
        active = row.enabled and strategy.enabled
        if not active and row.instrument_id not in holding:
            continue
        root = row.instrument.root
        params[root] = row.params()
        legs[root] = Leg(row=row, root=root, ticker=row.broker_ticker, size=row.size,
                         commission=Decimal(row.commission_per_side), point_value=Decimal(row.instrument.point_value),
                         contract=row.instrument.active_contract, exits_only=not active)
    # What the worker acts on, compared by value (not by timestamps, which a bulk update skips).
    fingerprint = (strategy.max_positions, strategy.time_in_force, strategy.daily_stop_loss, strategy.broker_webhook,
                   tuple((r, params[r], l.size, l.commission, l.ticker, l.row.ml_enabled, l.row.ml_failure_policy,
                          l.contract, l.exits_only) for r, l in legs.items()))
    return Config(strategy, legs, params, fingerprint)


class Worker:
    def __init__(self, name: str, *, block_ms: int = 1000, stopping=lambda: False, sender=None):
        self.name = name
        self.sender = sender or InlineSender(name)
        self.block_ms = block_ms
        self.stopping = stopping
        self.redis = get_redis()
        self.lock_key = key("lock", "worker", name)
        self.lock_token = process_token()
        self.buffer: dict[int, dict[str, Bar]] = {}
        self.hour_failures: dict[int, int] = {}  # kept across rebuilds: a hour is never retried forever
        self.skipped_hours: list[dict] = []
        self.frames: dict[str, pd.DataFrame] = {}
        self.last_ids: dict[str, str] = {}
        self.stream_roots: dict[str, str] = {}
        self.models: dict[str, object] = {}
        self.model_errors: dict[str, str] = {}
        self.last_bar_time: datetime | None = None
        self._last_beat = 0.0
        self._last_config_check = 0.0

    # --- lock -------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        if not self.redis.set(self.lock_key, self.lock_token, nx=True, ex=LOCK_TTL):
            holder = self.redis.get(self.lock_key) or ""
            if holder_dead(holder):
                # The holder died on this host (kill -9): its lock is void; take it atomically.
                script = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                          "return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) else return nil end")
                if self.redis.eval(script, 1, self.lock_key, holder, self.lock_token, LOCK_TTL):
                    log.warning("took over the lock of dead worker %s strategy=%s", holder, self.name)
                    return
            raise WorkerLockError(f"another worker for strategy {self.name} is running ({holder}); refusing to start "
                                  f"a second copy that would trade twice")

    def refresh_lock(self) -> None:
        script = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) "
                  "else return 0 end")
        if not self.redis.eval(script, 1, self.lock_key, self.lock_token, LOCK_TTL):
            raise WorkerLockError(f"lost the lock of strategy {self.name}; stopping so that two workers never trade")

    def release_lock(self) -> None:
        script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
        try:
            self.redis.eval(script, 1, self.lock_key, self.lock_token)
        except Exception:  # noqa: BLE001
            pass

    # --- state ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.config = load_config(self.name)
        if not self.config.legs:
            raise ParameterError("legs", f"strategy {self.name} has no enabled instrument and no open position")
        s = self.config.strategy
        self.portfolio = Portfolio(self.config.params, timeframe=s.timeframe, max_positions=s.max_positions,
                                   hours=PRODUCT_HOURS)
        self.ledger = Ledger(s, self.config.legs)
        self.restore_books()
        self.load_models()
        cursor = WorkerCursor.objects.filter(strategy=s).first()
        if cursor is None:
            # First start: whatever is already published is history, never traded.
            watermark = streams.watermark_ms(self.redis)
            cursor = WorkerCursor.objects.create(strategy=s, last_bar_ms=watermark - 3_600_000 if watermark else 0)
        self.cursor_ms = cursor.last_bar_ms
        self.load_history()
        log.info("worker ready strategy=%s roots=%s cursor=%s open=%d", self.name, ",".join(self.config.legs),
                 self.cursor_ms, self.portfolio.busy())

    def restore_books(self) -> None:
        self.reconcile_books()

    def reconcile_books(self) -> None:
        """Books follow the database: each instrument's book is made to hold what its position row says
        (an entry the broker never got leaves nothing; an exit held, failed or flattened elsewhere is
        taken over; a position the broker still holds is never forgotten)."""
        rows = {p.instrument.root: p for p in Position.objects.managed().filter(strategy=self.config.strategy)
                .select_related("instrument", "entry_signal", "exit_signal")}
        for root, pos in rows.items():
            if root not in self.portfolio.books:
                log.error("open position in %s which is not an enabled instrument; it is left to the operator", root)
        for root, book in self.portfolio.books.items():
            pos = rows.get(root)
            want = expected_shape(pos)
            have = (book.pending_entry is not None, book.position is not None,
                    bool(book.position and book.position.exit_held), book.pending_exit is not None)
            if want == have:
                continue
            if have != (False, False, False, False):
                log.warning("book follows the database strategy=%s root=%s book=%s database=%s", self.name, root,
                            have, want)
            book.pending_entry = book.pending_entry_ml = book.pending_exit = None
            book.position = None
            if pos is not None and want != (False, False, False, False):
                self._restore(book, pos, want)

    def _restore(self, book, pos: Position, want: tuple) -> None:
        sig = pos.entry_signal
        if not pos.filled:
            book.pending_entry = EntrySignal(sig.bar_time, float(sig.signal_price), pos.ibs_entry or 0.0)
            book.pending_entry_ml = pos.ml_score
            return
        entry = float(pos.entry_price)
        stop, target = pos.stop_price, pos.target_price
        if stop is None or target is None:  # a row edited by hand: the strategy's own levels, said loudly
            p = self.config.params[pos.instrument.root]
            stop = entry * (1 - p.stop_loss_pct / 100) if stop is None else stop
            target = entry * (1 + p.take_profit_pct / 100) if target is None else target
            log.error("open position %s had no stop/target; using the strategy's: stop=%s target=%s",
                      pos.instrument.root, stop, target)
        book.position = BookPosition(pos.entry_time, entry, float(stop), float(target), pos.ibs_entry or 0.0,
                                     pos.ml_score, pos.bars_held, pos.signal_time, exit_held=want[2])
        if want[3]:
            ex = pos.exit_signal
            book.pending_exit = ExitSignal(ex.bar_time, float(ex.signal_price), ex.reason,
                                           ex.ibs if ex.ibs is not None else math.nan)

    def load_models(self) -> None:
        roots = list(self.config.legs)
        self.models, self.model_errors = {}, {}
        for root, leg in self.config.legs.items():
            if not leg.row.ml_enabled:
                continue
            try:
                self.models[root] = load(root, settings.MODELS_DIR, feature_names(roots, root))
            except ModelError as exc:
                self.model_failed(root, str(exc))

    def load_history(self) -> None:
        """Bars up to the cursor — bar store, then the streams — as feature history only.

        Nothing here reaches the portfolio or the ledger: history can never send an order.
        """
        until = datetime.fromtimestamp(self.cursor_ms / 1000, UTC) if self.cursor_ms else None
        for root in self.config.legs:
            stream = streams.stream_key(root, "1h")
            stored = load_frame(root, "1h", until=until, limit=LOOKBACK) if until else load_frame(root, "1h", limit=0)
            entries = self.redis.xrevrange(stream, max=f"{self.cursor_ms}-0", min="-", count=LOOKBACK) if until else []
            recent = frame_from_bars([Bar.from_message(f["bar"]) for _, f in reversed(entries)])
            frame = pd.concat([stored, recent], ignore_index=True) if len(stored) else recent
            self.frames[root] = frame.drop_duplicates("ts", keep="last").sort_values("ts").tail(LOOKBACK).reset_index(
                drop=True)
            self.last_ids[stream] = f"{self.cursor_ms}-0" if self.cursor_ms else "0-0"
            self.stream_roots[stream] = root

    # --- decisions --------------------------------------------------------------------------
    def score(self, root: str, bar: Bar) -> float | None:
        leg = self.config.legs[root]
        if not leg.row.ml_enabled:
            return None
        model = self.models.get(root)
        if model is None:
            # No model: 'trade without the filter' scores nothing; 'skip entries' is the veto's (no score).
            return math.nan if root in self.model_errors and leg.row.ml_failure_policy == "skip_entries" else None
        try:
            row = feature_row(self.frames, root, int(bar.ts.timestamp()) * 1_000_000_000)
            return float(model.probability(row.to_frame().T)[0])
        except Exception as exc:  # noqa: BLE001 — a model that fails to score is a model that failed to load
            self.model_failed(root, f"scoring failed at {bar.ts:%Y-%m-%d %H:%M} UTC: {exc.__class__.__name__}: {exc}")
            return self.score(root, bar)

    def model_failed(self, root: str, error: str) -> None:
        """The instrument goes on by its ML failure policy, alerted once; nothing else stops."""
        self.models.pop(root, None)
        self.model_errors[root] = error
        leg = self.config.legs[root]
        policy = leg.row.get_ml_failure_policy_display()
        log.error("model failed strategy=%s root=%s policy=%s error=%s", self.name, root, policy, error)
        enqueue("emergency", f"{self.name}: ML model for {root} unavailable", strategy=self.config.strategy,
                body=f"{error}\nPolicy: {policy}.", dedupe_key=f"model:{self.name}:{root}:{hash(error[:80])}")

    def entry_veto(self, root: str, kill: KillState, day) -> RiskDecision | None:
        """Why an entry candidate of `root` must not go out now (None: it may); the controls in order."""
        decision = order_decision("buy", kill)
        if not decision.allowed:
            return decision
        leg = self.config.legs[root]
        if leg.exits_only:
            return block_entry(RiskControl.DISABLED, f"{root} is disabled (or its strategy is): its open position "
                                                     "is still managed, no new entries")
        decision = entries_stopped(self.config.strategy, day)
        if not decision.allowed:
            return decision
        if leg.row.ml_enabled and root in self.model_errors and leg.row.ml_failure_policy == "skip_entries":
            return block_entry(RiskControl.MODEL_POLICY, f"ml model unavailable: {self.model_errors[root][:200]}")
        return None

    def append_frame(self, bar: Bar) -> None:
        frame = pd.concat([self.frames[bar.symbol], frame_from_bars([bar])], ignore_index=True)
        self.frames[bar.symbol] = frame.tail(LOOKBACK * 2)

    def process_hour(self, ts_ms: int, bars: dict[str, Bar]) -> None:
        ts = datetime.fromtimestamp(ts_ms / 1000, UTC)
        log.info("hour decided strategy=%s hour=%s roots=%s", self.name, ts.strftime("%Y-%m-%dT%H:%MZ"),
                 ",".join(sorted(bars)))
        for bar in bars.values():
            self.append_frame(bar)
        kill = killswitch.state()  # once per step: every decision of the hour under one answer
        day = session_date(ts + HOUR)
        self.reconcile_books()  # a flatten, a held or failed exit written by others since the last hour
        outcome = self.portfolio.step(ts, bars, score=self.score, entry_block=lambda r: self.entry_veto(r, kill, day))
        pending = self.ledger.apply(ts, bars, outcome, self.config.params, self.portfolio.books, kill)
        self.cursor_ms = ts_ms
        self.last_bar_time = ts
        self.sender.send_now(self.config.strategy, [sig.pk for sig in pending])
        self.reconcile_books()
        for root, t in outcome.closed:
            log.info("exit filled (modelled) strategy=%s root=%s entry=%s exit=%s reason=%s", self.name, root,
                     t.entry_price, t.exit_price, t.reason)

    # --- loop -------------------------------------------------------------------------------
    def poll(self) -> int:
        """One round: read bars, decide every hour the watermark has closed, retry due orders."""
        # The watermark is read BEFORE the bars: every bar of an hour below it was written before this
        # read, so that hour is complete here. (Read after, a bar written between the two would be missed.)
        watermark = streams.watermark_ms(self.redis)
        ready = any(ts_ms + 3_600_000 <= watermark for ts_ms in self.buffer)
        # Wait for new bars unless an hour is ready; with bars waiting for the watermark, only briefly
        # (the hub writes it right after an hour's bars, and that wakes no stream reader).
        block = None if ready else self.block_ms if not self.buffer else min(self.block_ms, 100)
        while True:
            got = streams.read_bars(self.last_ids, count=1000, client=self.redis, block_ms=block)
            block = None
            if not got:
                break
            for stream in {stream for stream, *_ in got}:
                self.fill_skipped(stream)
            for stream, entry, bar, error in got:
                self.last_ids[stream] = entry
                if bar is None:
                    enqueue("emergency", f"{self.name}: garbled bar skipped", strategy=self.config.strategy,
                            body=f"{stream} {entry}: {error}", dedupe_key=f"garbled:{stream}:{entry}")
                    continue
                if bar.symbol in self.config.legs and int(bar.ts.timestamp() * 1000) > self.cursor_ms:
                    self.buffer.setdefault(int(bar.ts.timestamp() * 1000), {})[bar.symbol] = bar
            if len(got) < 1000:
                break
        done = 0
        for ts_ms in sorted(self.buffer):
            if ts_ms + 3_600_000 > watermark:
                break
            try:
                self.process_hour(ts_ms, self.buffer[ts_ms])
            except INFRASTRUCTURE:
                raise  # the database or Redis: rebuilt and retried for as long as it takes, nothing skipped
            except Exception as exc:  # noqa: BLE001
                if not self.hour_failed(ts_ms, exc):
                    raise  # rebuilt from the database and tried again
            del self.buffer[ts_ms]
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

    def fill_skipped(self, stream: str) -> None:
        """Before reading on in `stream`: the hours removed under this worker (trimmed, flushed) come
        from the bar store; those it lacks too are named in an emergency (see execution.gaps)."""
        first = gaps.first_entry_past(self.redis, stream, self.last_ids[stream])
        if first is None:
            return
        root = self.stream_roots[stream]
        since = gaps.entry_ms(self.last_ids[stream])
        bars, missing = gaps.hours_between(root, since, first)
        for bar in bars:
            ts_ms = int(bar.ts.timestamp() * 1000)
            if ts_ms > self.cursor_ms:
                self.buffer.setdefault(ts_ms, {})[root] = bar
        (log.error if bars or missing else log.debug)(
            "stream skipped hours strategy=%s root=%s after=%s before=%s from_store=%d missing=%d", self.name, root,
            since, first, len(bars), len(missing))
        if missing:
            hours = ", ".join(f"{h:%Y-%m-%d %H:%M}" for h in missing[:48]) + (" …" if len(missing) > 48 else "")
            enqueue("emergency", f"{self.name}: {root} hours missing from the streams and the bar store",
                    strategy=self.config.strategy,
                    body=(f"{root} hourly bars were removed from Redis before the worker read them, and the bar store "
                          f"lacks {len(missing)} trading hour(s) too (UTC): {hours}. The worker went on without "
                          f"them; open positions keep their broker-side stop and target. Run `manage.py warmup` "
                          f"for these hours and check the hub."),
                    fields={"root": root, "missing hours": str(len(missing))},
                    dedupe_key=f"hours-missing:{self.name}:{root}:{since}:{first}")

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
            from strategies.ibs import InstrumentBook

            self.portfolio.books[root] = InstrumentBook(fresh.params[root], self.portfolio.seconds)
            self.frames[root] = frame_from_bars([])
            self.last_ids[streams.stream_key(root, "1h")] = f"{self.cursor_ms}-0"
            self.stream_roots[streams.stream_key(root, "1h")] = root
        # A leg dropped while its book still holds something (an entry not yet a position row) stays until flat.
        for root, leg in self.config.legs.items():
            if root not in fresh.legs and not self.portfolio.books[root].flat:
                fresh.legs[root] = Leg(**{**vars(leg), "exits_only": True})
                fresh.params[root] = self.config.params[root]
        self.config = fresh
        self.ledger = Ledger(fresh.strategy, fresh.legs)
        self.load_models()
        log.info("config reloaded strategy=%s roots=%s added=%s", self.name, ",".join(fresh.legs), added)

    def run(self) -> None:
        self.acquire_lock()
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
                    self.refresh_lock()
                    if rebuild:  # nothing runs on state the database did not give: rebuild first
                        self.buffer.clear()
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
            self.release_lock()
