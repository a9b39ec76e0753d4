"""The hub's live connection: the official Databento client feeding `Hub.process_many` through a
RecordFeed, reconnects with backfill, and where a restarted hub subscribes from.

Each session subscribes to trades and, for the same parent symbols, to instrument definitions with
`start=0`: GLBX.MDP3 replays the whole week's definitions, so every listed contract is known before
(or with) its first trade, on a first start as after a restart."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone

from strategies.calendar import session_date, session_open
from trading.marketdata.hub import NS, Hub
from trading.marketdata.rawfeed import split_trades

log = logging.getLogger(__name__)
UTC = timezone.utc


def restart_point(last_minute_ms: dict[str, int | None]) -> int | None:
    """Where a hub starting afresh subscribes (ns): where trading for the trade date of the root
    furthest behind began, so that day's hourly and daily bars are rebuilt whole from its trades (bars
    already published are refused by their streams as duplicates). A holiday's trading opens on the
    evening before the holiday, not before the day it folds into (session_open). None when nothing
    was published yet. Databento Live replays up to 24 h; a longer outage is the bar store's
    warmup's job."""
    known = [ms for ms in last_minute_ms.values() if ms is not None]
    if not known:
        return None
    behind = datetime.fromtimestamp(min(known) / 1000, UTC)
    return int(session_open(session_date(behind)).timestamp()) * NS


class RecordFeed:
    """The client's thread hands records to the hub's: the client's callback appends to a deque
    (cheap and thread-safe, the client is never slowed by the hub) and the hub takes everything
    waiting in one go. Past `limit` records waiting, the callback waits for room, so a hub that
    falls behind slows the socket reads instead of filling memory. Trades may also come as bytes blocks
    (`put_block`, trading.marketdata.rawfeed: one per socket read, up to a megabyte), at most `block_bytes` of
    them waiting."""

    def __init__(self, limit: int = 200_000, batch: int = 8192, block_bytes: int = 16 << 20):
        self.limit, self.batch, self.block_bytes = limit, batch, block_bytes
        self._records: deque = deque()
        self._wake = threading.Event()
        self._waiting = False
        self._bytes_put = 0  # bytes of the blocks put (written by the client's thread only)
        self._bytes_taken = 0  # of them, taken (by the hub's thread only): no lock for the difference

    def put(self, record) -> None:
        records = self._records
        while len(records) >= self.limit:
            time.sleep(0.001)
        records.append(record)
        if self._waiting:  # the hub sleeps: wake it once (an Event.set per record cost the client dearly)
            self._waiting = False
            self._wake.set()

    def put_block(self, block: bytes) -> None:
        """A run of trade records as the socket brought them: one item."""
        while self._bytes_put - self._bytes_taken >= self.block_bytes:
            time.sleep(0.001)
        self._bytes_put += len(block)  # counted before it can be taken
        self._records.append(block)
        if self._waiting:
            self._waiting = False
            self._wake.set()

    def take(self, timeout: float) -> list:
        """Up to `batch` waiting records, in arrival order; waits up to `timeout` s for the first."""
        records = self._records
        if not records and timeout > 0:
            self._wake.clear()
            self._waiting = True
            try:
                if not records:
                    self._wake.wait(timeout)
            finally:
                self._waiting = False
        take = records.popleft
        out = [take() for _ in range(min(len(records), self.batch))]
        if self._bytes_put != self._bytes_taken:  # blocks among them
            self._bytes_taken += sum(len(item) for item in out if type(item) is bytes)
        return out

    def empty(self) -> bool:
        return not self._records


def run_live(hub: Hub, *, key: str, dataset: str, roots: list[str], gateway: str | None, port: int | None,
             stopping, heartbeat=lambda hub: None, heartbeat_every: float = 5.0, schema: str = "trades",
             max_backoff: float = 30.0, first_start: int | None = None, renew=lambda: None) -> None:
    """Subscribe through the official client, feed the hub, reconnect with backfill until `stopping()`.
    `first_start`: the first subscription's `start=` (a restarted hub's `restart_point`); `renew`: called at
    every turn of the loop (the feed's lease, trading.marketdata.lease): what it raises stops the session."""
    import databento as db

    backoff = 0.5
    last_beat = 0.0
    feed = RecordFeed()
    while not stopping():
        renew()
        feed = RecordFeed()
        kwargs = {"key": key, "heartbeat_interval_s": 5}
        if gateway:
            kwargs.update(gateway=gateway, port=port)
        start = hub.resume_point() if hub.counters["connections"] else first_start
        try:
            client = db.Live(**kwargs)
            client.add_callback(feed.put)
            parents = [f"{r}.FUT" for r in roots]
            client.subscribe(dataset=dataset, schema=schema, stype_in="parent", symbols=parents, start=start)
            if schema == "trades":
                split_trades(client, feed.put_block)  # connected now: trades in blocks, not one object each
            client.subscribe(dataset=dataset, schema="definition", stype_in="parent", symbols=parents, start=0)
            client.start()
        except Exception as exc:  # noqa: BLE001 — auth refused, gateway down: log, back off, retry
            hub.counters["connect_failures"] += 1
            log.error("databento connect failed (%s: %s); retrying in %.1fs", exc.__class__.__name__, exc, backoff)
            if time.monotonic() - last_beat >= heartbeat_every:  # alive, and saying the feed is gone
                heartbeat(hub)
                last_beat = time.monotonic()
            time.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)
            continue
        hub.counters["connections"] += 1
        log.info("databento session started roots=%s start=%s", ",".join(roots), start)
        backoff = 0.5
        try:
            while True:
                records = feed.take(timeout=0.25)
                if records:
                    hub.process_many(records)
                renew()
                if feed.empty():
                    hub.flush()  # the feed is drained: what is built goes out now
                if time.monotonic() - last_beat >= heartbeat_every:
                    heartbeat(hub)
                    last_beat = time.monotonic()
                if stopping():
                    client.stop()
                    break
                if not client.is_connected() and feed.empty():
                    hub.counters["disconnects"] += 1
                    log.warning("databento connection lost; reconnecting from the earliest unfinished minute")
                    hub.forget_open_minutes()
                    time.sleep(backoff)
                    break
        except BaseException:  # the lease lost, a bug: the session ends with this hub's part in it
            try:
                client.stop()
            except Exception:  # noqa: BLE001 — already closed
                pass
            raise
    while not feed.empty():
        hub.process_many(feed.take(timeout=0))
    hub.flush_closed()
    hub.flush()
    heartbeat(hub)
