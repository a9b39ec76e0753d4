"""The backtest over arrays: the per-bar rules of strategies.ibs and strategies.portfolio computed once per bar
as numpy masks (IBS, entry windows, flat time, product hours, ML filter), each possible trade simulated over
its own bars only, and the strategy jumping from one entry candidate to the next.

strategies.backtest.run takes this path when it can (`unsupported` says when not) and the parity tests hold it
to the per-bar `Portfolio.step` path, trade for trade, skip for skip. It decides nothing the step would not.
"""
from __future__ import annotations

import gc
import heapq
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from strategies.calendar import CALENDAR, CHICAGO, PRODUCT_CALENDARS, PRODUCT_HOURS, REGULAR_CLOSE, _windows
from strategies.indicators import ibs
from strategies.pnlarrays import pnl_and_percent

NS = 1_000_000_000
NEVER = np.iinfo(np.int64).max
REASONS = ("", "stop_loss", "take_profit", "ibs_exit", "max_bars", "flat_time", "early_close", "end_of_data")
STOP, TARGET, IBS_EXIT, MAX_BARS, FLAT, EARLY, END = range(1, 8)
CLOSED, CLOSES_EARLY, NO_SCORE, BELOW = range(1, 5)
TRADE_KEYS = ("symbol", "side", "entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl", "pnl_percent",
              "exit_reason", "ibs_entry", "ibs_exit", "ml_score", "bars_held", "signal_time", "exit_signal_time",
              "exit_decided")


def unsupported(legs, entry_block=None) -> str:
    """Why these legs need the per-bar path ('' when the arrays can run them)."""
    if entry_block is not None:
        return "an entry veto (entry_block) is asked per candidate"
    if len({leg.root for leg in legs}) != len(legs):
        return "a root appears twice"
    for leg in legs:
        if not len(leg.bars):
            return f"{leg.root} has no bars"
        if leg.opening:
            return f"{leg.root} starts with an opening book"
        if leg.held:
            return f"{leg.root} holds a contract after a roll"
        if leg.ml_scores is not None and len(leg.ml_scores) != len(leg.bars):
            return f"{leg.root}'s ML scores are not aligned with its bars"
        if leg.contracts is not None and (len(leg.contracts) != len(leg.bars) or len(set(leg.contracts)) > 1):
            return f"{leg.root}'s bars come from more than one contract"
    return ""


# --- product hours -------------------------------------------------------------------------------------------
def calendar_end(root: str) -> int:
    """The close of `root`'s last session in the calendar library (ns): past it its hours are unknown."""
    return int(_windows(PRODUCT_CALENDARS.get(root, CALENDAR))[1][-1])


class BacktestHours:
    """The product hours a backtest decides by: PRODUCT_HOURS inside the calendar; past its last session (2045)
    the hours are unknown and the bars are decided without them (as product_hours=False), never refused."""

    @staticmethod
    def _past(root: str, ts: datetime) -> bool:
        return int(ts.timestamp() * 1_000_000) * 1000 >= calendar_end(root)

    def early_close(self, root: str, ts: datetime):
        return None if self._past(root, ts) else PRODUCT_HOURS.early_close(root, ts)

    def open_at(self, root: str, ts: datetime) -> bool:
        return self._past(root, ts) or PRODUCT_HOURS.open_at(root, ts)


BACKTEST_HOURS = BacktestHours()


def _sessions(root: str, t: np.ndarray):
    """(index of the session each time falls in or -1, its opens, closes) for int64 ns times."""
    opens, closes = _windows(PRODUCT_CALENDARS.get(root, CALENDAR))
    i = np.searchsorted(opens, t, side="right") - 1
    inside = (i >= 0) & (t < closes[np.maximum(i, 0)]) & (t < calendar_end(root))
    return np.where(inside, i, -1), opens, closes


def _hours_masks(root: str, ts: np.ndarray, seconds: int):
    """Per bar: the market closed when the entry would be decided; the session's early close coming before
    the next decision (and that close, ns). As Portfolio._no_entry and Portfolio._closes_early."""
    decided = (ts + seconds * NS) // NS * NS
    i, _, _ = _sessions(root, decided)
    closed = (i < 0) & (decided < calendar_end(root))
    hour = ts // (3600 * NS) * (3600 * NS)
    j, _, closes = _sessions(root, hour)
    local = pd.DatetimeIndex(closes.view("datetime64[ns]"), tz="UTC").tz_convert(CHICAGO)
    early_session = (local.hour * 3600 + local.minute * 60 + local.second).to_numpy() < (
        REGULAR_CLOSE.hour * 3600 + REGULAR_CLOSE.minute * 60)
    close = np.where(j >= 0, closes[np.maximum(j, 0)], NEVER)
    early = (j >= 0) & early_session[np.maximum(j, 0)] & (ts + 2 * seconds * NS >= close) & (ts < calendar_end(root))
    return closed, early, close


# --- one instrument's arrays ---------------------------------------------------------------------------------
def _minute_of_day(ts: np.ndarray, tz: str) -> np.ndarray:
    if tz == "UTC":
        return (ts // (60 * NS)) % 1440
    local = pd.DatetimeIndex(ts.view("datetime64[ns]"), tz="UTC").tz_convert(tz)
    return (local.hour * 60 + local.minute).to_numpy()


@dataclass
class LegArrays:
    """One leg's bars and per-bar decisions as arrays, and the outcome of a trade from every entry candidate."""
    leg: object
    seconds: int | None
    ts: np.ndarray
    open: np.ndarray
    ibs: np.ndarray
    scores: np.ndarray | None
    candidates: np.ndarray  # bars whose close is an entry the strategy would take with a free slot
    refused: np.ndarray  # bars whose entry signal the product hours or the ML filter refuse
    refused_why: np.ndarray  # why, per refused signal: CLOSED, CLOSES_EARLY, NO_SCORE, BELOW
    refused_at: np.ndarray  # the early close (ns) of a CLOSES_EARLY one
    exit_bar: np.ndarray  # per candidate: the bar at which the book is flat again (n: never)
    decided: np.ndarray  # per candidate: the bar whose close decided the exit (-1: intrabar or none)
    reason: np.ndarray  # per candidate: REASONS code
    exit_price: np.ndarray


def prepare(leg, seconds: int | None, use_ml: bool, hours: bool) -> LegArrays:
    p, frame = leg.params, leg.bars
    ts = frame["ts"].to_numpy(dtype=np.int64)
    o, h, lo, c = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    n, value = len(ts), ibs(h, lo, c)
    signal = (value >= p.ibs_entry_low) & (value <= p.ibs_entry_high)
    flat = np.zeros(n, dtype=bool)
    if seconds is not None:
        minute = _minute_of_day(ts, p.window_tz)
        window = np.zeros(n, dtype=bool)
        for start, end in p.windows:
            window |= (minute >= start) & (minute < end)
        signal &= window
        if p.flat_minute is not None:
            m, end = p.flat_minute, minute + seconds // 60
            flat = ((minute <= m) & (m < end)) | ((end > 1440) & (m < end - 1440))
        del minute, window
    closed = early = np.zeros(n, dtype=bool)
    if hours and seconds is not None:
        closed, early, early_at = _hours_masks(leg.root, ts, seconds)
    scores = None if not use_ml or leg.ml_scores is None else np.asarray(leg.ml_scores, dtype=float)
    session_no = signal & (closed | early)
    ml_no = signal & ~session_no & ((np.isnan(scores) | (scores < p.ml_threshold)) if scores is not None else False)
    refused = np.flatnonzero(session_no | ml_no)
    no_score = np.isnan(scores[refused]) if scores is not None else np.zeros(len(refused), dtype=bool)
    why = np.select([closed[refused], early[refused], no_score], [CLOSED, CLOSES_EARLY, NO_SCORE], BELOW)
    refused_at = early_at[refused] if hours and seconds is not None else np.zeros(len(refused), dtype=np.int64)
    candidates = np.flatnonzero(signal & ~session_no & ~ml_no)
    del signal, session_no, ml_no
    exits = (value >= p.ibs_exit_low) & (value <= p.ibs_exit_high)
    return LegArrays(leg, seconds, ts, o, value, scores, candidates, refused, why, refused_at, *_outcomes(
        candidates + 1, o, h, lo, c, exits, flat, early, p))


def _outcomes(fill: np.ndarray, o, h, lo, c, exits, flat, early, p):
    """The trade from each fill bar, bar by bar as InstrumentBook.on_bar: stop or target inside the bar (gaps
    at the open first, both touched → the stop), then at the close IBS exit, bars held, flat time, early close."""
    n, m = len(o), len(fill)
    exit_bar, decided = np.full(m, n, dtype=np.int64), np.full(m, -1, dtype=np.int64)
    reason, exit_price = np.zeros(m, dtype=np.int8), np.full(m, np.nan)
    live = np.flatnonzero(fill < n)
    entry = o[fill[live]]
    stop, target = entry * (1 - p.stop_loss_pct / 100), entry * (1 + p.take_profit_pct / 100)
    held = 0
    while len(live):
        held += 1
        k = fill[live] + held - 1
        inside = k < n
        if not inside.all():  # data ended with these still open: end of data at the last close
            gone = live[~inside]
            reason[gone], exit_price[gone] = END, c[n - 1]  # exit_bar stays n: never flat
            live, k, stop, target = live[inside], k[inside], stop[inside], target[inside]
        ok, lk, hk = o[k], lo[k], h[k]
        gap_stop = ok <= stop
        gap_target = ~gap_stop & (ok >= target)
        touch_stop = ~gap_stop & ~gap_target & (lk <= stop)
        touch_target = ~gap_stop & ~gap_target & ~touch_stop & (hk >= target)
        code = np.select([gap_stop | touch_stop, gap_target | touch_target, exits[k],
                          np.full(len(k), held >= p.max_bars_held),
                          flat[k], early[k]], [STOP, TARGET, IBS_EXIT, MAX_BARS, FLAT, EARLY], 0).astype(np.int8)
        done = code > 0
        hit = live[done]
        reason[hit], kd = code[done], k[done]
        intrabar = code[done] <= TARGET
        exit_price[hit] = np.where(gap_stop[done] | gap_target[done], ok[done],
                                   np.where(touch_stop[done], stop[done], target[done]))
        at_close = ~intrabar
        exit_bar[hit] = np.where(intrabar, kd, kd + 1)
        decided[hit[at_close]] = kd[at_close]
        closes = hit[at_close]
        nxt = kd[at_close] + 1
        fills = nxt < n
        exit_price[closes[fills]] = o[nxt[fills]]
        ended = closes[~fills]  # decided at the last bar's close: end of data at that close, never flat
        exit_price[ended], exit_bar[ended] = c[n - 1], n
        keep = ~done
        live, stop, target = live[keep], stop[keep], target[keep]
    return exit_bar, decided, reason, exit_price


# --- the strategy: one entry candidate to the next -----------------------------------------------------------
def _chain(arrays: list[LegArrays], max_positions: int | None):
    """The candidates taken per leg (indices into its candidates), and the (time, ibs, leg) of every candidate
    the portfolio's slots refused: the coordinator's choice (lowest IBS, then root) among the flat ones."""
    nexts = []
    for a in arrays:
        n = len(a.ts)
        following = np.searchsorted(a.candidates, a.exit_bar, side="left")
        following[a.exit_bar >= n] = len(a.candidates)
        nexts.append(following.tolist())
    taken = [[] for _ in arrays]
    if max_positions is None:  # no slots to share: every leg on its own
        for r, following in enumerate(nexts):
            q, out, m = 0, taken[r], len(following)
            while q < m:
                out.append(q)
                q = following[q]
        return taken, []
    roots = [a.leg.root for a in arrays]
    times = [a.ts[a.candidates].tolist() for a in arrays]
    ibs_of = [a.ibs[a.candidates].tolist() for a in arrays]
    free_at = [0] * len(arrays)  # per leg: the time from which its book is flat (NEVER: not before the end)
    flat_from = [(a.ts[np.minimum(a.exit_bar, len(a.ts) - 1)]).tolist() for a in arrays]
    ends = [a.exit_bar.tolist() for a in arrays]
    heap = [(times[r][0], roots[r], r, 0) for r in range(len(arrays)) if times[r]]
    heapq.heapify(heap)
    refused = []
    while heap:
        now = heap[0][0]
        group = []
        while heap and heap[0][0] == now:
            group.append(heapq.heappop(heap))
        busy = sum(1 for t in free_at if t > now)
        group.sort(key=lambda g: (ibs_of[g[2]][g[3]], g[1]))
        free = max(0, max_positions - busy)
        for rank, (_, root, r, q) in enumerate(group):
            if rank < free:
                taken[r].append(q)
                free_at[r] = flat_from[r][q] if ends[r][q] < len(arrays[r].ts) else NEVER
                q = nexts[r][q]
            else:
                refused.append((now, ibs_of[r][q], r))
                q += 1
            if q < len(times[r]):
                heapq.heappush(heap, (times[r][q], root, r, q))
    return taken, refused


def _iso(ns: np.ndarray) -> list:
    """'YYYY-MM-DDTHH:MM:SSZ' of each time (ns), as the per-bar path's strftime writes it (years 1000-9999)."""
    seconds = (np.asarray(ns, dtype=np.int64) // NS).view("datetime64[s]")
    text = np.datetime_as_string(seconds).astype("<U20")
    if len(text):
        text.view(np.uint32).reshape(len(text), 20)[:, 19] = ord("Z")  # the 20th character of each
    return text.tolist()


def _skip_reason(a: LegArrays, i: int, why: int) -> str:
    """The words Portfolio.step records for a refused signal at bar i."""
    root, p = a.leg.root, a.leg.params
    if why == CLOSED:
        decided = datetime.fromtimestamp((int(a.ts[i]) + a.seconds * NS) // NS, timezone.utc)
        return f"{root}'s market is closed at {decided:%Y-%m-%d %H:%M} UTC: no entry"
    if why == CLOSES_EARLY:
        return "the session closes early at {:%Y-%m-%d %H:%M} UTC, before the position could be managed".format(
            datetime.fromtimestamp(int(a.refused_at[np.searchsorted(a.refused, i)]) // NS, timezone.utc))
    if why == NO_SCORE:
        return "no ml score"
    return f"ml score {float(a.scores[i]):.3f} below threshold {p.ml_threshold}"


def _leg_trades(a: LegArrays, q: np.ndarray, rank: int) -> dict:
    """The trades taken from candidates `q` of one leg, as arrays (times in ns, reasons as codes)."""
    n, signal = len(a.ts), a.candidates[q]
    fill, last = signal + 1, np.minimum(a.exit_bar[q], n - 1)
    decided, reason = a.decided[q], a.reason[q]
    closing = decided >= 0
    entry, exit_ = a.open[fill], a.exit_price[q]
    pnl, percent = pnl_and_percent(entry, exit_, a.leg.point_value, a.leg.size, a.leg.commission)
    exit_ns = a.ts[last]
    return {"rank": np.full(len(q), rank), "entry_ns": a.ts[fill], "entry_price": entry, "exit_ns": exit_ns,
            "exit_price": exit_, "pnl": pnl, "pnl_percent": percent,
            "reason": np.where(closing & (a.exit_bar[q] >= n), END, reason), "decided_reason": reason,
            "ibs_entry": a.ibs[signal],
            "ibs_exit": np.where(reason == END, a.ibs[n - 1], a.ibs[np.maximum(decided, 0)]),
            "no_ibs_exit": ~closing & (reason != END),  # stop or target inside a bar
            "ml_score": a.scores[signal] if a.scores is not None else np.full(len(q), np.nan),
            "no_ml": np.full(len(q), a.scores is None),
            "bars_held": np.where(closing, decided, last) - fill + 1, "signal_ns": a.ts[signal],
            "exit_signal_ns": np.where(closing, a.ts[np.maximum(decided, 0)], exit_ns),
            "size": np.full(len(q), a.leg.size)}


class TradeTable:
    """The trades of an array backtest as columns, in the result's order (exit, symbol, entry); `rows()` makes
    them the per-bar path's trade dicts, timestamps formatted once for the whole column."""

    def __init__(self, columns: dict, roots: list[str]):
        self.columns, self.roots = columns, roots

    def __len__(self) -> int:
        return len(self.columns["exit_ns"])

    def rows(self, lo: int = 0, hi: int | None = None) -> list[dict]:
        """Trades lo..hi (all by default) as the per-bar path's dicts."""
        c = {k: v[lo:hi] for k, v in self.columns.items()} if (lo, hi) != (0, None) else self.columns
        n = len(c["exit_ns"])
        if not n:
            return []
        none = lambda values, mask: [None if m else v for v, m in zip(values.tolist(), mask.tolist())]  # noqa: E731
        enabled = gc.isenabled()
        gc.disable()  # a hundred thousand dicts, all kept: no collection halfway through them
        try:
            return self._dicts(c, n, none)
        finally:
            if enabled:
                gc.enable()

    def _dicts(self, c: dict, n: int, none) -> list[dict]:
        return [dict(zip(TRADE_KEYS, row)) for row in zip(
            [self.roots[r] for r in c["rank"].tolist()], ["long"] * n, _iso(c["entry_ns"]), c["entry_price"].tolist(),
            _iso(c["exit_ns"]), c["exit_price"].tolist(), c["size"].tolist(), c["pnl"].tolist(),
            c["pnl_percent"].tolist(), [REASONS[x] for x in c["reason"].tolist()], c["ibs_entry"].tolist(),
            none(c["ibs_exit"], c["no_ibs_exit"]), none(c["ml_score"], c["no_ml"]), c["bars_held"].tolist(),
            _iso(c["signal_ns"]), _iso(c["exit_signal_ns"]), [REASONS[x] for x in c["decided_reason"].tolist()])]


def run_arrays(legs, *, seconds: int | None, max_positions: int | None, use_ml: bool, hours: bool,
               progress=None) -> dict:
    """The backtest of `legs` (see strategies.backtest.run): the trade table, skipped, pending_entries, bars
    and bars_in_position, as the per-bar path gives them."""
    arrays = []
    for i, leg in enumerate(legs):
        if progress is not None:
            progress(i, 2 * len(legs))
        arrays.append(prepare(leg, seconds, use_ml, hours))
    taken, refused_slots = _chain(arrays, max_positions)
    roots = sorted(a.leg.root for a in arrays)
    parts, skips, pending, in_position = [], [], [], 0
    for r, a in enumerate(arrays):
        leg, n, q = a.leg, len(a.ts), np.asarray(taken[r], dtype=np.int64)
        # refused signals count while the book is flat: from each exit (or the start) to the next entry taken
        edge = np.zeros(n + 1, dtype=np.int64)
        np.add.at(edge, np.r_[0, np.minimum(a.exit_bar[q], n)], 1)
        np.add.at(edge, a.candidates[q], -1)
        flat = np.flatnonzero((np.cumsum(edge)[:n] > 0)[a.refused])
        skips += [(int(a.ts[i]), 0, 0.0, roots.index(leg.root), leg.root, _skip_reason(a, i, why))
                  for i, why in zip(a.refused[flat].tolist(), a.refused_why[flat].tolist())]
        if len(q) and a.candidates[q[-1]] == n - 1:  # decided at the last bar, never filled
            pending.append({"symbol": leg.root, "signal_time": _iso(a.ts[n - 1:])[0]})
            q = q[:-1]
        parts.append(_leg_trades(a, q, roots.index(leg.root)))
        in_position += int((np.minimum(a.exit_bar[q], n - 1) - a.candidates[q]).sum())
    why = f"max positions reached ({max_positions} open or filling)"
    skips += [(t, 1, value, roots.index(arrays[r].leg.root), arrays[r].leg.root, why) for t, value, r in refused_slots]
    skips.sort()
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {"exit_ns": []}
    if parts:
        order = np.lexsort((columns["entry_ns"] // NS, columns["rank"], columns["exit_ns"] // NS))
        columns = {k: v[order] for k, v in columns.items()}
    if progress is not None:
        progress(2 * len(legs) - 1, 2 * len(legs))
    return {"table": TradeTable(columns, roots), "pending_entries": pending, "bars": sum(len(a.ts) for a in arrays),
            "bars_in_position": in_position,
            "skipped": [{"symbol": s[4], "bar_time": t, "reason": s[5]}
                        for s, t in zip(skips, _iso(np.array([s[0] for s in skips], dtype=np.int64)))]}
