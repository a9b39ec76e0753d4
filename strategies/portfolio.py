"""One strategy across its instruments, one timestamp at a time: the step both backtest and worker run.

`Portfolio.step(ts, bars)` applies the completed bars of every instrument that has one at `ts`
(in root order), then evaluates entries for the instruments flat at the close: IBS and window,
the ML filter, then the coordinator's free slots. The caller turns the outcome into trades
(backtest) or into signal rows and orders (worker); nothing here does I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from strategies.coordinator import Candidate, choose
from strategies.ibs import BarResult, ClosedTrade, EntrySignal, InstrumentBook, bar_length, entry_candidate
from strategies.params import IBSParams


@dataclass(frozen=True)
class Entry:
    root: str
    signal: EntrySignal
    ml_score: float | None


@dataclass(frozen=True)
class Skip:
    root: str
    bar_ts: datetime
    reason: str


@dataclass
class StepOutcome:
    results: dict[str, BarResult] = field(default_factory=dict)
    closed: list[tuple[str, ClosedTrade]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


# score(root, bar) → probability, or None when the instrument trades without the filter;
# NaN means "no score" (model missing or history too short) and blocks the entry.
Scorer = Callable[[str, object], float | None]


class Portfolio:
    def __init__(self, params: dict[str, IBSParams], *, timeframe: str = "1h", max_positions: int | None = None):
        self.params = params
        self.seconds = bar_length(timeframe)
        self.max_positions = max_positions
        self.books = {root: InstrumentBook(p, self.seconds) for root, p in params.items()}

    def busy(self) -> int:
        """Instruments holding a slot: an open position, or an entry waiting for its fill."""
        return sum(1 for b in self.books.values() if not b.flat)

    def step(self, ts: datetime, bars: dict[str, object], *, score: Scorer | None = None,
             entry_block: Callable[[str], str] | None = None) -> StepOutcome:
        """Apply the bars (root → bar) that completed at `ts`; `entry_block(root)` may veto entries."""
        out = StepOutcome()
        roots = sorted(bars)
        for root in roots:
            res = self.books[root].on_bar(bars[root])
            out.results[root] = res
            out.closed.extend((root, t) for t in res.closed)
        candidates = []
        for root in roots:
            book, bar, params = self.books[root], bars[root], self.params[root]
            if not book.flat:
                continue
            signal = entry_candidate(bar, params, self.seconds)
            if signal is None:
                continue
            blocked = entry_block(root) if entry_block else ""
            if blocked:
                out.skipped.append(Skip(root, bar.ts, blocked))
                continue
            ml = score(root, bar) if score else None
            if ml is not None and (math.isnan(ml) or ml < params.ml_threshold):
                why = "no ml score" if math.isnan(ml) else f"ml score {ml:.3f} below threshold {params.ml_threshold}"
                out.skipped.append(Skip(root, bar.ts, why))
                continue
            candidates.append(Candidate(root, signal.ibs, Entry(root, signal, ml)))
        if candidates:
            accepted, skipped = choose(candidates, self.busy(), self.max_positions)
            for c in accepted:
                self.books[c.root].accept_entry(c.payload.signal, c.payload.ml_score)
                out.entries.append(c.payload)
            out.skipped.extend(Skip(s.root, ts, s.reason) for s in skipped)
        return out
