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


def test_the_plain_python_trade_dates_are_the_vectorised_ones():
    from datetime import date

    days = calendar._trade_dates()
    assert [date.fromordinal(o) for o in calendar._trade_ordinals()] == days.astype(object).tolist()
    for d in (date(2000, 1, 1), date(2024, 12, 24), date(2024, 12, 25), date(2026, 11, 26), date(2045, 12, 29)):
        i = int(np.searchsorted(days, np.datetime64(d, "D")))
        assert calendar.next_trade_date(d) == days[i].astype(date)
        assert calendar.is_trade_date(d) == (days[i] == np.datetime64(d, "D"))
