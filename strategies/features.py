"""The ML feature builder: one function for training, backtest and live.

`build_features(frames, root)` turns the hourly bars of all of a strategy's instruments into one
feature row per bar of `root`. Every value at bar t uses bars up to and including t only (a
test appends future bars and checks nothing at t changes); `feature_row` is the live form, and
`LiveFeatures` the same row from numpy arrays kept bar by bar (the worker's, well under a millisecond
a candidate). pandas here stays the reference: the numpy form must give its values (tests compare them).
"""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd

from strategies.calendar import session_date_ns, session_dates
from strategies.indicators import atr, ibs, log_returns, zscore

OWN = ["ibs_1h", "ibs_session", "ret_1", "ret_4", "ret_24", "z_24", "z_120", "range_atr", "hour", "weekday"]
CROSS = ["ret_4", "ret_24", "z_24"]
LOOKBACK = 240  # bars a live row needs behind it (longest window 120, plus slack for the session)


def feature_names(roots: list[str], root: str) -> list[str]:
    """The ordered feature list of `root`'s model within a strategy of `roots`."""
    others = sorted(r for r in roots if r != root)
    return OWN + [f"x_{other}_{name}" for other in others for name in CROSS]


def _own(frame: pd.DataFrame) -> pd.DataFrame:
    ts = frame["ts"].to_numpy(dtype=np.int64)
    o, h, l, c = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    span = h - l
    out = pd.DataFrame(index=pd.Index(ts, name="ts"))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ibs_1h"] = ibs(h, l, c)
        days = session_dates(ts)
        s = pd.DataFrame({"day": days, "h": h, "l": l, "c": c})
        sh = s.groupby("day")["h"].cummax().to_numpy()
        sl = s.groupby("day")["l"].cummin().to_numpy()
        out["ibs_session"] = np.where(sh > sl, (c - sl) / (sh - sl), np.nan)
        for n in (1, 4, 24):
            out[f"ret_{n}"] = log_returns(c, n)
        for n in (24, 120):
            out[f"z_{n}"] = zscore(c, n)
        out["range_atr"] = pd.Series(span / atr(h, l, c, 24)).replace([np.inf, -np.inf], np.nan).to_numpy()
    when = pd.DatetimeIndex(ts.view("datetime64[ns]"), tz="UTC")
    out["hour"] = when.hour.to_numpy(dtype=float)
    out["weekday"] = when.day_of_week.to_numpy(dtype=float)
    return out


def build_features(frames: dict[str, pd.DataFrame], root: str) -> pd.DataFrame:
    """Feature rows (index: bar ts in ns) for every bar of `root`; NaN where history is too short."""
    own = _own(frames[root])
    for other in sorted(r for r in frames if r != root):
        theirs = _own(frames[other])[CROSS]
        # As of each of our bars: the other instrument's latest bar that started at or before it
        # (both complete at the same moment, so nothing later is used).
        aligned = pd.merge_asof(pd.DataFrame({"ts": own.index.to_numpy()}), theirs.reset_index(), on="ts",
                                direction="backward")
        for name in CROSS:
            own[f"x_{other}_{name}"] = aligned[name].to_numpy()
    return own[feature_names(list(frames), root)]


def feature_row(frames: dict[str, pd.DataFrame], root: str, ts_ns: int, *, build=None) -> pd.Series:
    """The live form: the feature row of `root` at bar `ts_ns`, from the last LOOKBACK bars only.
    `build` (default build_features) lets the walk-forward check any builder the same way."""
    window = {r: f[f["ts"] <= ts_ns].tail(LOOKBACK) for r, f in frames.items()}
    table = (build or build_features)(window, root)
    if ts_ns not in table.index:
        raise KeyError(f"{root} has no bar at {pd.Timestamp(ts_ns, tz='UTC')}")
    return table.loc[ts_ns]


# --- the live form from numpy arrays -----------------------------------------------------------
NS_HOUR, NS_DAY = 3_600_000_000_000, 86_400_000_000_000
EPOCH = date(1970, 1, 1).toordinal()
RET = {n: OWN.index(f"ret_{n}") for n in (1, 4, 24)}
CROSS_AT = [OWN.index(name) for name in CROSS]
ARRAYS = ("ts", "day", "run", "high", "low", "close", "true_range", "rows", "known")


class BarHistory:
    """One instrument's bars as its frame holds them, in numpy arrays appended bar by bar (start, high, low,
    close, session day, true range), and each bar's own features (OWN) computed when first read, then kept.

    A bar's row is what `_own` gives at that bar over the live window (the bar and the LOOKBACK − 1 bars
    before it, never before the frame's first bar): `start` is that first bar, moved on as the frame's is.
    """

    def __init__(self, ts, high, low, close):
        n = len(ts)
        size = max(2 * LOOKBACK, 2 * n)
        self.ts, self.day, self.run = (np.zeros(size, dtype=np.int64) for _ in range(3))
        self.high, self.low, self.close, self.true_range = (np.zeros(size) for _ in range(4))
        # known: 0 nothing of a bar's row yet, 1 its CROSS features (what the other roots' rows read), 2 all
        self.rows, self.known = np.full((size, len(OWN)), np.nan), np.zeros(size, dtype=np.int8)
        self.start, self.end = 0, n
        ts = np.asarray(ts, dtype=np.int64)
        if n > 1 and not (np.diff(ts) > 0).all():
            raise ValueError("bars are not in time order (or a bar is there twice)")
        self.ts[:n], self.high[:n], self.low[:n], self.close[:n] = ts, high, low, close
        if n:
            day = session_dates(ts).astype(np.int64)
            self.day[:n] = day
            new = np.r_[True, day[1:] != day[:-1]]  # a session's bars are consecutive: days follow time
            self.run[:n] = np.maximum.accumulate(np.where(new, np.arange(n), 0))
            h, low_, prev = self.high[:n], self.low[:n], np.r_[np.nan, self.close[:n - 1]]
            self.true_range[:n] = np.fmax(np.fmax(h - low_, np.abs(h - prev)), np.abs(low_ - prev))

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, ts: int, high: float, low: float, close: float) -> None:
        if self.end > self.start and ts <= self.ts[self.end - 1]:
            raise ValueError(f"bars are not in time order (or a bar is there twice): {ts} after {self.ts[self.end - 1]}")
        if self.end == len(self.ts):
            self._make_room()
        i = self.end
        day = session_date_ns(ts).toordinal() - EPOCH
        self.ts[i], self.high[i], self.low[i], self.close[i], self.day[i] = ts, high, low, close, day
        self.run[i] = self.run[i - 1] if i > self.start and self.day[i - 1] == day else i
        span = high - low
        if i > self.start:  # pandas' max of the three skips the missing previous close of the first bar
            prev = float(self.close[i - 1])
            span = max(span, abs(high - prev), abs(low - prev))
        self.true_range[i], self.known[i] = span, 0
        self.end = i + 1

    def drop_first(self, count: int) -> None:
        """The frame no longer holds its first `count` bars: the windows of the bars after them start later."""
        if count <= 0:
            return
        self.start = min(self.start + count, self.end)
        self.known[self.start:self.start + LOOKBACK - 1] = 0

    def _make_room(self) -> None:
        n, lo = len(self), self.start
        if 2 * n > len(self.ts):  # more than half full: twice the room
            for name in ARRAYS:
                old = getattr(self, name)
                grown = np.zeros((2 * len(old),) + old.shape[1:], dtype=old.dtype)
                grown[:len(old)] = old
                setattr(self, name, grown)
            return
        for name in ARRAYS:  # the held bars to the front
            a = getattr(self, name)
            a[:n] = a[lo:lo + n]
        self.run[:n] -= lo
        self.start, self.end = 0, n

    def holds(self, i: int, ts: np.ndarray, prices: np.ndarray) -> bool:
        """Whether a frame (its starts, and high, low, close as columns) begins with this history's bars from
        held bar `i` to the last one (and may have more after them)."""
        n = self.end - i
        if len(ts) < n or self.ts[i:self.end].tobytes() != ts[:n].tobytes():
            return False
        return all(a[i:self.end].tobytes() == prices[:n, k].tobytes()
                   for k, a in enumerate((self.high, self.low, self.close)))

    def index_at(self, ts_ns: int) -> int:
        """The held bar starting at or before `ts_ns` (start − 1: none)."""
        return self.start + int(np.searchsorted(self.ts[self.start:self.end], ts_ns, side="right")) - 1

    def row(self, i: int) -> np.ndarray:
        """OWN features of held bar `i`: `_own`'s values at that bar over its live window."""
        if self.known[i] < 2:
            self.rows[i] = self._compute(i, full=True)
            self.known[i] = 2
        return self.rows[i]

    def cross(self, i: int) -> np.ndarray:
        """The CROSS features of held bar `i` (the others' rows read only these)."""
        if not self.known[i]:
            self.rows[i, CROSS_AT] = self._compute(i, full=False)[CROSS_AT]
            self.known[i] = 1
        return self.rows[i, CROSS_AT]

    def _compute(self, i: int, full: bool) -> np.ndarray:
        out = np.full(len(OWN), np.nan)
        base = max(self.start, i - LOOKBACK + 1)  # the window's first bar
        back = i - base
        h, l, c = float(self.high[i]), float(self.low[i]), float(self.close[i])  # noqa: E741
        span = h - l
        if full and span > 0:
            out[0] = (c - l) / span
        if full:
            s = max(int(self.run[i]), base)  # the session's first bar in the window
            sh, sl = self.high[s:i + 1].max(), self.low[s:i + 1].min()
            if sh > sl:
                out[1] = (c - sl) / (sh - sl)
        logs = np.log(self.close[[i, i - min(back, 1), i - min(back, 4), i - min(back, 24)]])
        for k, (n, at) in enumerate(RET.items(), start=1):
            if back >= n:
                out[at] = logs[0] - logs[k]
        for n, at in ((24, 5), (120, 6)) if full else ((24, 5),):
            if back >= n - 1:
                w = self.close[i - n + 1:i + 1]
                if w.max() != w.min():  # a flat window: pandas' std is exactly 0 and the z-score NaN
                    mean = w.sum() / n
                    d = w - mean
                    z = (c - mean) / math.sqrt((d @ d) / n)
                    out[at] = z if math.isfinite(z) else np.nan
        if full and back >= 23:
            true_range = self.true_range[i - 23:i + 1]
            if back == 23:  # the window's first bar has no previous close in it
                true_range = true_range.copy()
                true_range[0] = self.high[base] - self.low[base]
            atr = true_range.sum() / 24
            if atr > 0 and math.isfinite(span / atr):
                out[7] = span / atr
        t = int(self.ts[i])
        out[8], out[9] = float(t // NS_HOUR % 24), float((t // NS_DAY + 3) % 7)  # 1970-01-01 was a Thursday
        return out


class LiveFeatures:
    """The feature rows of a strategy's instruments, from BarHistory arrays kept in step with the bar frames
    the caller holds: `update(frames)` follows each frame (one that is the last one with bars appended, and
    maybe its first ones dropped, only appends them); a caller that knows the bars it appended gives them
    one by one instead (`append`), with no frame at all. `row(root, ts_ns)` is `feature_row(frames, root,
    ts_ns)`, as names and a numpy array."""

    def __init__(self):
        self.histories: dict[str, BarHistory] = {}
        self.sources: dict[str, pd.DataFrame] = {}  # the frame each history was last brought up to
        self.names: dict[tuple, list[str]] = {}
        self.roots: list[str] = []

    def update(self, frames: dict[str, pd.DataFrame]) -> None:
        for root, frame in frames.items():
            if self.sources.get(root) is not frame:
                self.follow(root, frame)
        self.keep_roots(list(frames))

    def keep_roots(self, roots: list[str]) -> None:
        """The strategy's roots are `roots` (their order as the frames'): the histories of others go."""
        self.roots = list(roots)
        for root in [r for r in self.histories if r not in roots]:
            del self.histories[root]
            self.sources.pop(root, None)

    def follow(self, root: str, frame: pd.DataFrame) -> None:
        """`root`'s history brought up to `frame` (all of its bars, as `update` does)."""
        self.sources.pop(root, None)
        self._follow(root, frame)
        self.sources[root] = frame

    def append(self, root: str, ts_ns: int, high: float, low: float, close: float, keep: int) -> None:
        """One more bar at the end of `root`'s frame, a frame that holds its last `keep` bars (`frame.tail(keep)`):
        the bars before those leave the history. A bar not after the last one is refused as `update` refuses it,
        and the history goes (the next `follow` builds it again)."""
        history = self.histories[root]
        self.sources.pop(root, None)  # no longer the frame it was brought up to
        try:
            history.append(ts_ns, high, low, close)
        except ValueError as exc:
            del self.histories[root]
            raise ValueError(f"{root}: {exc}") from None
        history.drop_first(len(history) - keep)

    def _follow(self, root: str, frame: pd.DataFrame) -> None:
        ts = frame["ts"].to_numpy(dtype=np.int64)
        # One conversion of the whole frame (cheaper than three column reads), the prices taken from it.
        prices = frame.to_numpy(dtype=float)[:, [frame.columns.get_loc(k) for k in ("high", "low", "close")]]
        history = self.histories.get(root)
        try:
            if history is not None and len(ts) and len(history):
                first = history.index_at(int(ts[0]))
                if first >= history.start and history.ts[first] == ts[0] and history.holds(first, ts, prices):
                    history.drop_first(first - history.start)
                    for k in range(history.end - first, len(ts)):
                        history.append(int(ts[k]), *map(float, prices[k]))
                    return
            self.histories[root] = BarHistory(ts, prices[:, 0], prices[:, 1], prices[:, 2])
        except ValueError as exc:
            self.histories.pop(root, None)  # half followed: built again from the next frame
            raise ValueError(f"{root}: {exc}") from None

    def row(self, root: str, ts_ns: int) -> tuple[list[str], np.ndarray]:
        key = (tuple(sorted(self.roots)), root)
        names = self.names.get(key)
        if names is None:
            names = self.names[key] = feature_names(self.roots, root)
        own = self.histories[root]
        i = own.index_at(ts_ns)
        if i < own.start or own.ts[i] != ts_ns:
            raise KeyError(f"{root} has no bar at {pd.Timestamp(ts_ns, tz='UTC')}")
        parts = [own.row(i)]
        for other in sorted(r for r in self.roots if r != root):
            theirs = self.histories[other]
            k = theirs.index_at(ts_ns)  # their latest bar that started at or before ours, as build_features
            parts.append(theirs.cross(k) if k >= theirs.start else np.full(len(CROSS), np.nan))
        return names, np.concatenate(parts)
