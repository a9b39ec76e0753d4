"""Deterministic synthetic hourly bars (for demo models, tests and benchmarks; never for trading).

Mean-reverting log prices with an intraday volatility pattern, no bars in the 16:00–17:00
Chicago halt or over the weekend. Same seed, same bars.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from strategies.instruments import CONTRACT_SPECS

LEVELS = {"6A": 0.66, "6B": 1.27, "6C": 0.73, "6M": 0.055, "6N": 0.60, "6S": 1.13, "CL": 75.0, "GC": 2000.0,
          "HG": 4.2, "SI": 24.0, "YM": 39000.0, "ES": 5000.0}


def trading_hours(start: str, hours: int) -> np.ndarray:
    """Hourly bar starts (int64 ns UTC) from `start`, skipping the daily halt hour and weekends."""
    grid = pd.date_range(start=pd.Timestamp(start, tz="UTC"), periods=int(hours * 1.5) + 48, freq="h")
    local = grid.tz_convert("America/Chicago")
    closed = (local.hour == 16) | (local.day_of_week == 5) | ((local.day_of_week == 4) & (local.hour >= 16)) | (
        (local.day_of_week == 6) & (local.hour < 17))
    return grid[~closed][:hours].as_unit("ns").asi8


def hourly_bars(root: str, hours: int, *, seed: int = 7, start: str = "2024-01-02", common: np.ndarray | None = None) -> pd.DataFrame:
    rng = np.random.default_rng([seed, sum(map(ord, root))])
    ts = trading_hours(start, hours)
    n = len(ts)
    hour = pd.DatetimeIndex(ts.view("datetime64[ns]"), tz="UTC").hour.to_numpy()
    vol = 0.0025 * (1.0 + 0.8 * np.exp(-((hour - 14.5) ** 2) / 8.0))
    shocks = rng.standard_normal(n) * vol
    if common is not None:
        shocks = 0.7 * shocks + 0.3 * common[:n] * vol
    level = np.log(LEVELS.get(root, 100.0))
    logp = np.empty(n)
    x = 0.0
    for i in range(n):  # mean reversion gives IBS something to find
        x = 0.97 * x + shocks[i]
        logp[i] = level + x + 0.00002 * i
    close = np.exp(logp)
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.standard_normal(n) * vol * 0.1)
    wick = np.abs(rng.standard_normal((2, n))) * vol * close
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    tick = float(CONTRACT_SPECS[root].tick_size) if root in CONTRACT_SPECS else 0.01
    rnd = lambda a: np.round(a / tick) * tick  # noqa: E731
    open_, high, low, close = rnd(open_), rnd(high), rnd(low), rnd(close)
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.integers(100, 5000, n)})


def strategy_bars(roots: list[str], hours: int, *, seed: int = 7, start: str = "2024-01-02") -> dict[str, pd.DataFrame]:
    common = np.random.default_rng(seed).standard_normal(int(hours * 1.5) + 48)
    return {root: hourly_bars(root, hours, seed=seed, start=start, common=common) for root in roots}


__all__ = ["hourly_bars", "strategy_bars", "trading_hours"]
