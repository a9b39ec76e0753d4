"""The CME holiday table strategies.calendar reads is pandas_market_calendars' own, date for date."""
import numpy as np

from strategies import calendar, cme_holidays


def test_the_holiday_table_is_the_librarys():
    assert cme_holidays.HOLIDAYS == cme_holidays.from_library()
    assert cme_holidays.SPAN == calendar._SPAN


def test_the_trade_dates_are_the_librarys_valid_days():
    import pandas_market_calendars as pmc

    valid = pmc.get_calendar(calendar.CALENDAR).valid_days(*calendar._SPAN)
    assert np.array_equal(calendar._trade_dates(), valid.tz_localize(None).values.astype("datetime64[D]"))
