"""An independent model of what the hub must publish, computed with pandas from the DBN files.

It shares no code with the hub: the official DBNStore decodes, pandas resamples, the session
date comes straight from the CME calendar, and the roll rule is re-stated here.
"""
from __future__ import annotations



import databento as db
import numpy as np
import pandas as pd
import pandas_market_calendars as pmc

TRADE_DATES = pmc.get_calendar("CME_TradeDate").valid_days("2020-01-01", "2030-12-31").tz_localize(None)


def cme_day(ts: pd.Series) -> pd.Series:
    """17:00 Chicago starts the next day; a day without a trade date folds into the next one."""
    shifted = (ts.dt.tz_convert("America/Chicago") + pd.Timedelta(hours=7)).dt.tz_localize(None).dt.normalize()
    idx = np.searchsorted(TRADE_DATES.values, shifted.values.astype("datetime64[ns]"))
    return pd.Series(TRADE_DATES.values[idx], index=ts.index)


def expected_bars(path, first_front: str) -> dict[str, pd.DataFrame]:
    trades = db.DBNStore.from_file(path).to_df(price_type="float").reset_index()
    trades = trades[~trades["symbol"].str.contains("-")].copy()
    trades["day"] = cme_day(trades["ts_event"])
    fronts, front = {}, first_front
    for day, group in trades.groupby("day", sort=True):
        fronts[day] = front
        volume = group.groupby("symbol")["size"].sum()
        busiest = volume.sort_values(kind="stable").index[-1] if len(volume) else front
        top = volume.max() if len(volume) else 0
        # ties: the later contract name, as sorted last
        tied = sorted(volume[volume == top].index)
        busiest = tied[-1] if tied else front
        if busiest != front and top > volume.get(front, 0):
            front = busiest
    trades = trades[trades["symbol"] == trades["day"].map(fronts)]
    minute = trades["ts_event"].dt.floor("min")

    def ohlcv(keys):
        g = trades.groupby(keys)
        out = pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
                            "close": g["price"].last(), "volume": g["size"].sum(), "trades": g["size"].count(),
                            "contract": g["symbol"].last()})
        return out

    m = ohlcv(minute)
    h = ohlcv(trades["ts_event"].dt.floor("h"))
    d = ohlcv(trades["day"].dt.tz_localize("UTC"))
    return {"1m": m, "1h": h, "1d": d, "fronts": fronts}


def expected_rolls(fronts: dict) -> list[tuple]:
    days = sorted(fronts)
    return [(fronts[a], fronts[b], b.date()) for a, b in zip(days, days[1:]) if fronts[a] != fronts[b]]


__all__ = ["cme_day", "expected_bars", "expected_rolls"]
