from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest

from strategies.calendar import (session_close, session_date, session_dates, session_end, session_open,
                                 trade_date_offset, trade_dates_of_month)

U = timezone.utc


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=U)


@pytest.mark.parametrize("instant, expected", [
    # Summer (CDT, UTC-5): the boundary is 22:00 UTC.
    ("2026-10-29T21:59", date(2026, 10, 29)),
    ("2026-10-29T22:00", date(2026, 10, 30)),
    # Friday evening and the weekend belong to Monday.
    ("2026-10-30T22:00", date(2026, 11, 2)),
    ("2026-10-31T12:00", date(2026, 11, 2)),
    # Winter (CST, UTC-6) after DST ends on 2026-11-01: the boundary is 23:00 UTC.
    ("2026-11-01T23:00", date(2026, 11, 2)),
    ("2026-11-02T22:59", date(2026, 11, 2)),
    ("2026-11-02T23:00", date(2026, 11, 3)),
    # Spring forward on 2027-03-14: back to 22:00 UTC.
    ("2027-03-15T21:59", date(2027, 3, 15)),
    ("2027-03-15T22:00", date(2027, 3, 16)),
    # Thanksgiving 2026-11-26 has no trade date: Wednesday evening and Thursday fold into Friday.
    ("2026-11-25T23:30", date(2026, 11, 27)),
    ("2026-11-26T15:00", date(2026, 11, 27)),
    # Christmas: Thursday 2026-12-24 evening belongs to Monday the 28th.
    ("2026-12-24T23:30", date(2026, 12, 28)),
])
def test_session_date(instant, expected):
    assert session_date(at(instant)) == expected


def test_vectorised_form_agrees_with_the_scalar_one():
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2026-10-01", tz="UTC").value
    ns = np.sort(start + rng.integers(0, 120 * 86400, 5000) * 1_000_000_000)
    expected = [np.datetime64(session_date(pd.Timestamp(x, tz="UTC").to_pydatetime()), "D") for x in ns]
    assert (session_dates(ns) == np.array(expected)).all()


def test_session_boundaries_follow_dst():
    assert session_close(date(2026, 10, 30)) == at("2026-10-30T21:00")
    assert session_close(date(2026, 11, 2)) == at("2026-11-02T22:00")
    assert session_end(date(2026, 11, 2)) == at("2026-11-02T23:00")
    assert session_open(date(2026, 11, 2)) == at("2026-11-01T23:00")  # Sunday 17:00 CST


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="naive datetime"):
        session_date(datetime(2026, 11, 2, 12))


@pytest.mark.parametrize("day, opens", [
    (date(2026, 11, 3), "2026-11-02T23:00"),  # Tuesday: Monday 17:00 CST
    (date(2026, 11, 2), "2026-11-01T23:00"),  # Monday: Sunday
    # The Friday after Thanksgiving: trading opened on Wednesday evening (the holiday folds into Friday)
    (date(2026, 11, 27), "2026-11-25T23:00"),
    # The Tuesday after Martin Luther King day: Sunday evening, not Monday's
    (date(2027, 1, 19), "2027-01-17T23:00"),
])
def test_session_open_is_where_the_trade_dates_trading_began(day, opens):
    assert session_open(day) == at(opens)


def test_business_day_offsets_skip_weekends_and_holidays():
    assert trade_date_offset(date(2026, 11, 25), -3) == date(2026, 11, 20)
    assert trade_date_offset(date(2027, 1, 20), -5) == date(2027, 1, 12)  # over MLK day
    assert trade_date_offset(date(2026, 11, 25), 1) == date(2026, 11, 27)  # over Thanksgiving
    assert trade_date_offset(date(2026, 11, 26), 0) == date(2026, 11, 27)
    assert trade_dates_of_month(2026, 12)[-3:] == [date(2026, 12, 29), date(2026, 12, 30), date(2026, 12, 31)]
