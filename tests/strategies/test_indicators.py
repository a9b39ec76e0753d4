import numpy as np
import pandas as pd
import pytest

from strategies.indicators import atr, ibs, log_returns, previous_session_pivot, zscore


def test_ibs_is_nan_without_range():
    out = ibs(np.array([2.0, 1.0]), np.array([1.0, 1.0]), np.array([1.25, 1.0]))
    assert out[0] == 0.25 and np.isnan(out[1])


def test_returns_zscore_atr_by_hand():
    close = np.array([100.0, 101.0, 99.0, 102.0])
    assert log_returns(close, 2)[3] == pytest.approx(np.log(102 / 101))
    z = zscore(close, 4)[3]
    assert z == pytest.approx((102 - close.mean()) / close.std())
    high, low = close + 1, close - 1
    # true ranges: 2, max(2, |102-100|, |100-100|)=2, max(2, 0, 3)=3, max(2, 4, 2)=4 → mean of the last 3 = 3
    assert atr(high, low, close, 3)[3] == pytest.approx(3.0)


def test_previous_session_pivot_uses_the_prior_cme_day_only():
    ts = pd.DatetimeIndex(["2026-11-03T14:00", "2026-11-03T15:00", "2026-11-04T14:00", "2026-11-04T15:00"],
                          tz="UTC").as_unit("ns").asi8
    high, low, close = np.array([10.0, 12, 20, 21]), np.array([8.0, 9, 18, 19]), np.array([9.0, 11, 19, 20])
    pivot = previous_session_pivot(ts, high, low, close)
    assert np.isnan(pivot[:2]).all()
    assert pivot[2] == pivot[3] == pytest.approx((12 + 8 + 11) / 3)
