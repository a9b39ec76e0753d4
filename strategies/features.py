"""The ML feature builder: one function for training, backtest and live.

`build_features(frames, root)` turns the hourly bars of all of a strategy's instruments into one
feature row per bar of `root`. Every value at bar t uses bars up to and including t only (a
test appends future bars and checks nothing at t changes); `feature_row` is the live form.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from strategies.calendar import session_dates
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
