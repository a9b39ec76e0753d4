"""Hour assembly: the hourly bars of a worker's instruments from the streams, one hour at a time.

An hour is ready once the hub's watermark has passed it: every instrument's bar for it is then in the
streams. The watermark is read before the bars (read after, a bar written between the two would be
missed). Hours removed from a stream under the reader (trimmed, flushed) come from the bar store
(execution.gaps), never a silent skip. Bar times are int64 milliseconds here, as the stream ids are.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from itertools import count, islice

import pandas as pd
import redis

from strategies.bars import NS, Bar, frame_from_bars
from strategies.features import LOOKBACK
from trading.delivery.alerts import enqueue
from trading.execution import gaps
from trading.marketdata import streams
from trading.marketdata.barstore import load_frame

log = logging.getLogger(__name__)
UTC = timezone.utc
HOUR_MS = 3_600_000


def bar_ms(bar: Bar) -> int:
    return int(bar.ts.timestamp() * 1000)


def _after(ms: int) -> str:
    """The stream id to read after: the entry of the bar that started at `ms` (0: from the stream's start)."""
    return f"{ms}-0" if ms else "0-0"


class HourFeed:
    def __init__(self, client: redis.Redis, strategy):
        self.client, self.strategy = client, strategy
        self.buffer: dict[int, dict[str, Bar]] = {}  # bar start (ms) → root → bar
        self.held: dict[int, dict[str, Bar]] = {}  # bar start (ms) → contract → bar of a contract held past its roll
        self.last_ids: dict[str, str] = {}  # stream → the last entry read
        self.roots: dict[str, str] = {}  # stream → root
        self.contracts: dict[str, str] = {}  # stream → contract (a held contract's own stream)
        self.unread = False  # a stream followed since the last read: read it before deciding the next hour

    def follow(self, root: str, after_ms: int) -> None:
        """Read `root`'s hourly stream from after the bar that started at `after_ms` (0: from its start)."""
        stream = streams.stream_key(root, "1h")
        self.last_ids[stream] = _after(after_ms)
        self.roots[stream] = root

    def hold(self, contracts, after_ms: int) -> None:
        """Also read the own streams of `contracts` (those positions are open in): after its roll, the hub
        publishes a held contract's bars there. Followed from after `after_ms`; one no longer held is dropped."""
        wanted = {streams.stream_key(c, "1h"): c for c in contracts}
        for stream in set(self.contracts) - set(wanted):
            del self.contracts[stream], self.last_ids[stream]
        for stream, contract in wanted.items():
            if stream not in self.contracts:
                self.contracts[stream] = contract
                self.last_ids[stream] = _after(after_ms)
                self.unread = True

    def drop(self, ts_ms: int) -> None:
        """Hour `ts_ms` is decided: its bars (the roots' and the held contracts') leave the buffers."""
        self.buffer.pop(ts_ms, None)
        self.held.pop(ts_ms, None)

    def watermark(self) -> int:
        return streams.watermark_ms(self.client)

    def read(self, cursor_ms: int, block_ms: int | None) -> None:
        """Everything new in the followed streams into the buffer (hours after `cursor_ms` only)."""
        self.unread = False
        while True:
            got = streams.read_bars(self.last_ids, count=1000, client=self.client, block_ms=block_ms)
            block_ms = None
            if not got:
                return
            gone = gaps.first_entries_past(self.client, {stream: self.last_ids[stream] for stream in
                                                          {stream for stream, *_ in got if stream in self.roots}})
            for stream, first in gone.items():
                self.fill_skipped(stream, first, cursor_ms)
            for stream, entry, bar, error in got:
                self.last_ids[stream] = entry
                if bar is None:
                    enqueue("emergency", f"{self.strategy.name}: garbled bar skipped", strategy=self.strategy,
                            body=f"{stream} {entry}: {error}", dedupe_key=f"garbled:{stream}:{entry}")
                elif bar_ms(bar) <= cursor_ms:
                    continue
                elif stream in self.roots:
                    self.buffer.setdefault(bar_ms(bar), {})[bar.symbol] = bar
                elif stream in self.contracts and bar.contract == self.contracts[stream]:
                    self.held.setdefault(bar_ms(bar), {})[bar.contract] = bar
            if len(got) < 1000:
                return

    def block_for(self, watermark_ms: int, block_ms: int) -> int | None:
        """How long the next read may wait: not at all with an hour ready; briefly with bars waiting for the
        watermark (the hub writes it right after an hour's bars, and that wakes no stream reader)."""
        if self.ready(watermark_ms):
            return None
        return block_ms if not (self.buffer or self.held) else min(block_ms, 100)

    def ready(self, watermark_ms: int) -> list[int]:
        """Hours (ms) whose bars are all in: the watermark has passed them."""
        return [ts for ts in sorted(set(self.buffer) | set(self.held)) if ts + HOUR_MS <= watermark_ms]

    def fill_skipped(self, stream: str, first: int, cursor_ms: int) -> None:
        """Before reading on in `stream`, whose first entry (`first`, ms) lies past the last one read: the hours
        removed under this reader come from the bar store; trading hours it lacks too are named in an
        emergency (see execution.gaps)."""
        root, since = self.roots[stream], gaps.entry_ms(self.last_ids[stream])
        bars, missing = gaps.hours_between(root, since, first)
        for bar in bars:
            if bar_ms(bar) > cursor_ms:
                self.buffer.setdefault(bar_ms(bar), {})[root] = bar
        (log.error if bars or missing else log.debug)(
            "stream skipped hours strategy=%s root=%s after=%s before=%s from_store=%d missing=%d",
            self.strategy.name, root, since, first, len(bars), len(missing))
        if missing:
            hours = ", ".join(f"{h:%Y-%m-%d %H:%M}" for h in missing[:48]) + (" …" if len(missing) > 48 else "")
            enqueue("emergency", f"{self.strategy.name}: {root} hours missing from the streams and the bar store",
                    strategy=self.strategy,
                    body=(f"{root} hourly bars were removed from Redis before the worker read them, and the bar store "
                          f"lacks {len(missing)} trading hour(s) too (UTC): {hours}. The worker went on without "
                          f"them; open positions keep their broker-side stop and target. Run `manage.py warmup` "
                          f"for these hours and check the hub."),
                    fields={"root": root, "missing hours": str(len(missing))},
                    dedupe_key=f"hours-missing:{self.strategy.name}:{root}:{since}:{first}")


class BarFrames(Mapping):
    """The ML features' hourly bars per root (a frame of the last `keep`), appended bar by bar. A frame is made
    when it is read, with one concat for every bar since the last read, not one per bar: a worker whose filter
    is off never builds one, and the scorer reads none while it can follow the bars themselves (`mark`,
    `since`: what was appended after a mark, as long as the frame was not set anew and those bars are kept)."""

    def __init__(self, keep: int = LOOKBACK * 2):
        self.keep = keep
        self._frames: dict[str, pd.DataFrame] = {}
        self._recent: dict[str, deque[Bar]] = {}  # root → its last `keep` bars appended since its frame was set
        self._unread: dict[str, int] = {}  # root → bars appended since its frame was last made
        self._marks: dict[str, tuple[int, int]] = {}  # root → (generation of its frame, bars appended to it)
        self._generations = count(1)  # one number per frame set, never reused (a root dropped and set again too)

    def __setitem__(self, root: str, frame: pd.DataFrame) -> None:
        self._frames[root], self._recent[root], self._unread[root] = frame, deque(maxlen=self.keep), 0
        self._marks[root] = (next(self._generations), 0)

    def append(self, bar: Bar) -> None:
        recent = self._recent[bar.symbol]
        recent.append(bar)
        self._unread[bar.symbol] += 1
        generation, appended = self._marks[bar.symbol]
        self._marks[bar.symbol] = (generation, appended + 1)

    def mark(self, root: str) -> tuple[int, int]:
        """Where `root`'s bars are now: its frame's generation and the bars appended to it since it was set."""
        return self._marks[root]

    def since(self, root: str, mark: tuple[int, int]) -> list[tuple[int, float, float, float]] | None:
        """The bars appended to `root` after `mark` (an earlier `mark(root)`), oldest first, as the frame has
        them (start in ns, high, low, close); None when they are not all known: its frame set anew since, or
        more bars appended than are kept."""
        generation, appended = self._marks[root]
        recent, new = self._recent[root], appended - mark[1]
        if mark[0] != generation or not 0 <= new <= len(recent):
            return None
        return [(int(b.ts.timestamp()) * NS, float(b.high), float(b.low), float(b.close))  # as frame_from_bars
                for b in islice(recent, len(recent) - new, None)]

    def __getitem__(self, root: str) -> pd.DataFrame:
        unread, recent = self._unread[root], self._recent[root]
        if unread:
            new = frame_from_bars(list(islice(recent, max(0, len(recent) - unread), None)))
            frame = new if unread >= self.keep else pd.concat([self._frames[root], new], ignore_index=True)
            self._frames[root], self._unread[root] = frame.tail(self.keep), 0
        return self._frames[root]

    def __contains__(self, root) -> bool:  # (Mapping's would make the frame)
        return root in self._frames

    def __iter__(self):
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)


def feature_history(client: redis.Redis, root: str, cursor_ms: int) -> pd.DataFrame:
    """Bars up to the cursor — the bar store, then the stream — as ML feature history only: nothing
    here reaches the portfolio or the ledger, so history can never send an order."""
    if not cursor_ms:
        return frame_from_bars([])
    until = datetime.fromtimestamp(cursor_ms / 1000, UTC)
    stored = load_frame(root, "1h", until=until, limit=LOOKBACK)
    entries = client.xrevrange(streams.stream_key(root, "1h"), max=f"{cursor_ms}-0", min="-", count=LOOKBACK)
    recent = frame_from_bars([Bar.from_message(f["bar"]) for _, f in reversed(entries)])
    frame = pd.concat([stored, recent], ignore_index=True) if len(stored) else recent
    return frame.drop_duplicates("ts", keep="last").sort_values("ts").tail(LOOKBACK).reset_index(drop=True)
