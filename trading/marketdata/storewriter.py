"""The hub's bar-store writes, off its hot path: hourly and daily bars go to the database from a thread of their own.

The hub only queues a bar once Redis has taken it (`BarStoreWriter.put`, the bar writer's `on_fresh`); the thread
writes what is waiting in one statement, existing rows kept (idempotent). A root's bars are stored under the
root, a contract held after its roll (strategies.bars.HeldBar) under the contract, as its streams are named, so
warmups and backtests of a position held past its roll read its own bars (`load_frame("CLZ6")`). The database
away: the bars are kept and written once it is back, never a reason to slow or stop the bars of trading.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from django.db import IntegrityError, close_old_connections, connection, transaction

from trading.models import StoredBar

log = logging.getLogger(__name__)
KEEP = 100_000  # bars held while the database is away; past it the oldest go (warmup refills the bar store)


COLUMNS = ("root", "timeframe", "ts", "contract", "open", "high", "low", "close", "volume", "trades", "source")


def write_bars(bars) -> None:
    """Store hourly and daily bars (a held contract's under its own name); bars already stored stay as they are.
    One INSERT … ON CONFLICT DO NOTHING (the one-bar-per-time constraint) run over every row, in one transaction:
    the ORM's bulk_create compiled each field of each row in Python, holding the interpreter the hub's thread
    needs, for most of the writer's time."""
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(bar.stream, bar.timeframe, adapt(bar.ts), bar.contract, float(bar.open), float(bar.high),
             float(bar.low), float(bar.close), int(bar.volume), int(bar.trades), "hub")
            for bar in bars if bar.timeframe in ("1h", "1d")]
    if not rows:
        return
    quote = connection.ops.quote_name
    meta = StoredBar._meta
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(meta.get_field(c).column) for c in COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


class BarStoreWriter:
    """Hourly and daily bars queued by the hub, written by a thread of its own. Woken once per burst, the thread
    gathers bars for `gather` seconds and writes them in one statement (a replay's or a busy feed's hours come
    back to back; a transaction and a thread switch per bar cost the hub's thread more than the bars' writes);
    `drain` and `close` cut the gathering short."""

    def __init__(self, *, retry_every: float = 1.0, write=write_bars, gather: float = 0.2):
        self.retry_every = retry_every
        self.write = write
        self.gather = gather
        self.waiting: deque = deque()
        self.written = 0
        self.failures = 0
        self.queued = 0  # bars put so far
        self.handled = 0  # of them: written, or dropped past KEEP
        self._wake = threading.Event()  # bars are waiting
        self._hurry = threading.Event()  # drain or close: write now, no gathering
        self._progress = threading.Condition()  # notified when `handled` moves or the thread ends
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bar-store", daemon=True)
        self._thread.start()

    def put(self, bar) -> None:
        """A bar Redis has taken: queued for the bar store when it is an hourly or daily one (cheap: no I/O, and
        the thread is woken only when it is not already)."""
        if bar.timeframe != "1m":
            self.waiting.append(bar)
            self.queued += 1
            if not self._wake.is_set():
                self._wake.set()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every bar queued so far is written (True) or `timeout` passes (False)."""
        target = self.queued
        self._hurry.set()
        self._wake.set()
        try:
            with self._progress:
                return self._progress.wait_for(lambda: self.handled >= target or not self._thread.is_alive(),
                                               timeout) and self.handled >= target
        finally:
            self._hurry.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is waiting (within `timeout`) and end the thread; what is left is logged."""
        self.drain(timeout)
        self._stop = True
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        if self.waiting:
            log.error("bar store: %d hourly/daily bar(s) not stored at stop (warmup can fill them)", len(self.waiting))

    def _run(self) -> None:
        try:
            while not self._stop:
                self._wake.wait()
                self._hurry.wait(self.gather)
                self._wake.clear()  # cleared before the writes: a bar put during them wakes the next round
                while self.waiting and not self._stop:
                    written = self._write_waiting()
                    with self._progress:
                        self._progress.notify_all()
                    if not written:
                        time.sleep(self.retry_every)
        finally:
            connection.close()
            with self._progress:
                self._progress.notify_all()

    def _write_waiting(self) -> bool:
        batch = [self.waiting.popleft() for _ in range(min(len(self.waiting), 2000))]
        try:
            close_old_connections()
            try:
                self.write(batch)
                refused = 0
            except IntegrityError:  # a bar the store refuses (not an outage): the others must not wait behind it
                refused = self._write_each(batch)
        except Exception as exc:  # noqa: BLE001 — the database away: kept, written when it is back
            self.waiting.extendleft(reversed(batch))
            while len(self.waiting) > KEEP:
                self.waiting.popleft()
                self.handled += 1
            self.failures += 1
            if self.failures <= 5 or self.failures % 100 == 0:
                log.error("bar store unavailable, %d bar(s) kept for it (%s)", len(self.waiting),
                          exc.__class__.__name__)
            return False
        if self.failures:
            log.warning("bar store back: written after %d failed attempt(s)", self.failures)
            self.failures = 0
        self.written += len(batch) - refused
        self.handled += len(batch)
        return True

    def _write_each(self, batch: list) -> int:
        """A batch refused as data: its bars one by one, each refused one logged and left out (warmup's downloads
        fill the store's hours); a failure of any other kind goes up (the database away: the batch is kept).
        Returns how many were refused."""
        refused = 0
        for bar in batch:
            try:
                self.write([bar])
            except IntegrityError as exc:
                refused += 1
                log.error("bar refused by the bar store, left out root=%s timeframe=%s ts=%s: %s", bar.stream,
                          bar.timeframe, bar.ts.isoformat(), exc)
        return refused
