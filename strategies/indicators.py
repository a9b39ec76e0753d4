"""Indicators over numpy arrays: IBS, returns, z-scores, ATR and the previous session's pivot.

Each value at index t uses data up to t only. The feature builder and optional entry filters
take them from here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from strategies.calendar import session_dates


def ibs(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    span = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (close - low) / span, np.nan)


def log_returns(close: np.ndarray, n: int) -> np.ndarray:
    logc = np.log(np.asarray(close, dtype=float))
    out = np.full(len(logc), np.nan)
    out[n:] = logc[n:] - logc[:-n]
    return out


def zscore(close: np.ndarray, n: int) -> np.ndarray:
    s = pd.Series(np.asarray(close, dtype=float))
    mean, std = s.rolling(n, min_periods=n).mean(), s.rolling(n, min_periods=n).std(ddof=0)
    return ((s - mean) / std).replace([np.inf, -np.inf], np.nan).to_numpy()


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    h, l, c = (pd.Series(np.asarray(a, dtype=float)) for a in (high, low, close))
    prev = c.shift(1)
    true_range = pd.concat([h - l, (h - prev).abs(), (l - prev).abs()], axis=1).max(axis=1)
    return true_range.rolling(n, min_periods=n).mean().to_numpy()


def previous_session_pivot(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Classic pivot (H + L + C) / 3 of the previous CME session, for every intraday bar."""
    frame = pd.DataFrame({"day": session_dates(ts_ns), "h": high, "l": low, "c": close})
    daily = frame.groupby("day").agg(h=("h", "max"), l=("l", "min"), c=("c", "last"))
    pivot = ((daily["h"] + daily["l"] + daily["c"]) / 3).shift(1)
    return frame["day"].map(pivot).to_numpy(dtype=float)
