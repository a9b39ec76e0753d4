"""One strategy across its instruments, one timestamp at a time: the step both backtest and worker run.

`Portfolio.step(ts, bars)` applies the completed bars of every instrument that has one at `ts`
(in root order), then evaluates entries for the instruments flat at the close: IBS and window,
the caller's veto (risk controls), the ML filter, then the coordinator's free slots. Every
candidate refused on the way is a `Skip` with its IBS and ML score. The caller turns the outcome
into trades (backtest) or into signal rows and orders (worker); nothing here does I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    """An entry candidate that was refused, and by what: the caller's veto, the ML filter or the slots."""
    root: str
    bar_ts: datetime
    reason: str
    by: str = "veto"  # veto | ml_filter | max_positions
    veto: object = None  # what `entry_block` returned (the caller's own type)
    ibs: float = math.nan
    ml_score: float | None = None
    price: float = math.nan  # the bar's close: the entry's signal price had it gone out


@dataclass
class StepOutcome:
    results: dict[str, BarResult] = field(default_factory=dict)
    closed: list[tuple[str, ClosedTrade]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


# score(root, bar) → probability, or None when the instrument trades without the filter;
# NaN means "no score" (model missing or history too short) and blocks the entry.
Scorer = Callable[[str, object], float | None]
# entry_block(root) → None (allowed) or a veto: anything with a `reason` (or a non-empty string).
Veto = Callable[[str], object]
# The product hours to decide by (strategies.calendar.PRODUCT_HOURS): open_at(root, ts) and early_close(root, ts).
Hours = object


class Portfolio:
    def __init__(self, params: dict[str, IBSParams], *, timeframe: str = "1h", max_positions: int | None = None,
                 hours: Hours | None = None):
        self.params = params
        self.seconds = bar_length(timeframe)
        self.max_positions = max_positions
        # The product's real hours: no entry decided while its market is closed or in the last bar before an
        # early close (a holiday's), and what is open is exited before such a close.
        self.hours = hours if self.seconds is not None else None
        self.books = {root: InstrumentBook(p, self.seconds) for root, p in params.items()}

    def _closes_early(self, root: str, bar) -> datetime | None:
        """The early close of `bar`'s session when a decision at the next bar's close would come too late for it."""
        close = self.hours.early_close(root, bar.ts)
        if close is None or bar.ts + timedelta(seconds=2 * self.seconds) < close:
            return None
        return close

    def _no_entry(self, root: str, bar, early: datetime | None) -> str:
        """Why an entry decided at `bar`'s close could not be managed in the market, or ''."""
        if not self.hours:
            return ""
        decided = bar.ts + timedelta(seconds=self.seconds)
        if not self.hours.open_at(root, decided):
            return f"{root}'s market is closed at {decided:%Y-%m-%d %H:%M} UTC: no entry"
        if early is not None:
            return f"the session closes early at {early:%Y-%m-%d %H:%M} UTC, before the position could be managed"
        return ""

    def busy(self) -> int:
        """Instruments holding a slot: an open position, or an entry waiting for its fill."""
        return sum(1 for b in self.books.values() if not b.flat)

    def step(self, ts: datetime, bars: dict[str, object], *, score: Scorer | None = None,
             entry_block: Veto | None = None, manage: dict | None = None, force: dict | None = None) -> StepOutcome:
        """Apply the bars (root → bar) that completed at `ts`; `entry_block(root)` may veto entries.

        `manage` (root → bar, or None): the bar an instrument's open position is managed on instead of its
        root's bar — the bar of the position's own contract after a roll (None: no bar of it this time, the
        book waits). Entries are always decided on `bars`. `force` (root → reason): exit what is still open
        at this close (see InstrumentBook.on_bar); an early close of the session forces 'early_close'."""
        out = StepOutcome()
        manage, force = manage or {}, force or {}
        closing = {}
        for root in sorted(bars.keys() | manage.keys()):
            bar = manage[root] if root in manage else bars[root]
            if bar is None:
                continue
            closing[root] = self._closes_early(root, bar) if self.hours else None
            reason = force.get(root) or ("early_close" if closing[root] is not None else None)
            res = self.books[root].on_bar(bar, force=reason)
            out.results[root] = res
            out.closed.extend((root, t) for t in res.closed)
        roots = sorted(bars)
        candidates = []
        for root in roots:
            book, bar, params = self.books[root], bars[root], self.params[root]
            if not book.flat:
                continue
            signal = entry_candidate(bar, params, self.seconds)
            if signal is None:
                continue
            why = self._no_entry(root, bar, closing.get(root))
            if why:
                out.skipped.append(Skip(root, bar.ts, why, "session_close", None, signal.ibs, None, signal.price))
                continue
            # Scored before any veto, so that a refused entry is recorded with its score too.
            ml = score(root, bar) if score else None
            recorded = None if ml is None or math.isnan(ml) else ml
            veto = entry_block(root) if entry_block else None
            if veto:
                out.skipped.append(Skip(root, bar.ts, getattr(veto, "reason", None) or str(veto), "veto", veto,
                                        signal.ibs, recorded, signal.price))
                continue
            if ml is not None and (math.isnan(ml) or ml < params.ml_threshold):
                why = "no ml score" if math.isnan(ml) else f"ml score {ml:.3f} below threshold {params.ml_threshold}"
                out.skipped.append(Skip(root, bar.ts, why, "ml_filter", None, signal.ibs, recorded, signal.price))
                continue
            candidates.append(Candidate(root, signal.ibs, Entry(root, signal, ml)))
        if candidates:
            accepted, skipped = choose(candidates, self.busy(), self.max_positions)
            for c in accepted:
                self.books[c.root].accept_entry(c.payload.signal, c.payload.ml_score)
                out.entries.append(c.payload)
            for s in skipped:
                entry = next(c.payload for c in candidates if c.root == s.root)
                out.skipped.append(Skip(s.root, ts, s.reason, "max_positions", None, entry.signal.ibs, entry.ml_score,
                                        entry.signal.price))
        return out
