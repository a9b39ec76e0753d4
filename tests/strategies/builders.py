"""Small bar builders for strategy tests."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from strategies.backtest import Leg
from strategies.params import IBSParams

MONDAY = datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)


def hourly(rows, start=MONDAY, step=timedelta(hours=1)) -> pd.DataFrame:
    """rows: (open, high, low, close) tuples, one per consecutive hour from `start`."""
    ts = [int((start + i * step).timestamp()) * 1_000_000_000 for i in range(len(rows))]
    o, h, l, c = zip(*rows)
    return pd.DataFrame({"ts": np.array(ts, dtype=np.int64), "open": o, "high": h, "low": l, "close": c,
                         "volume": [100] * len(rows)})


def leg(root, rows, start=MONDAY, point_value=1000.0, commission=1.25, ml=None, **params):
    return Leg(root, hourly(rows, start), IBSParams(**params), point_value, commission, 1,
               None if ml is None else np.array(ml, dtype=float))


MID = (100.0, 100.4, 99.6, 100.0)  # IBS 0.5: no entry, no IBS exit
