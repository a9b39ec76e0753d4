"""The CME trading day (session date) of any instant, DST-correct, holidays from a calendar library.

A CME Globex day runs 17:00 → 16:00 America/Chicago; trading from 17:00 belongs to the next
trade date (Sunday evening opens Monday). Trade dates follow CME clearing's calendar
(pandas-market-calendars 'CME_TradeDate'): on a holiday with no trade date, trading folds into
the next one. Never hard-code a UTC boundary: it is 22:00 or 23:00 UTC depending on DST.
"""
from __future__ import annotations

import bisect
import functools
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import numpy as np

CHICAGO = ZoneInfo("America/Chicago")
SESSION_START = time(17, 0)  # local: trading from here on belongs to the next trade date
SESSION_CLOSE = time(16, 0)  # local: the daily halt begins
CALENDAR = "CME_TradeDate"
_SPAN = ("2000-01-01", "2045-12-31")


@functools.lru_cache(maxsize=1)
def _trade_ordinals() -> tuple[int, ...]:
    """All CME trade dates in _SPAN as sorted date ordinals: the weekdays but CME's holidays, from the table
    strategies.cme_holidays keeps of pandas_market_calendars. Plain Python: booking a trade (the order
    sender) imports neither pandas nor numpy."""
    from strategies.cme_holidays import holidays

    closed = {date.fromisoformat(d).toordinal() for d in holidays()}
    first, last = (date.fromisoformat(d).toordinal() for d in _SPAN)
    return tuple(o for o in range(first, last + 1) if (o - 1) % 7 < 5 and o not in closed)  # ordinal 1: a Monday


@functools.lru_cache(maxsize=1)
def _trade_dates() -> np.ndarray:
    """The same trade dates as sorted datetime64[D], for the vectorised functions."""
    import numpy as np

    return (np.array(_trade_ordinals(), dtype=np.int64) - date(1970, 1, 1).toordinal()).astype("datetime64[D]")


def is_trade_date(d: date) -> bool:
    days, o = _trade_ordinals(), d.toordinal()
    i = bisect.bisect_left(days, o)
    return i < len(days) and days[i] == o


def next_trade_date(d: date, *, inclusive: bool = True) -> date:
    days = _trade_ordinals()
    i = (bisect.bisect_left if inclusive else bisect.bisect_right)(days, d.toordinal())
    if i >= len(days):
        raise ValueError(f"{d} is beyond the trading calendar ({_SPAN[1]})")
    return date.fromordinal(days[i])


def previous_trade_date(d: date) -> date:
    days = _trade_ordinals()
    i = bisect.bisect_left(days, d.toordinal()) - 1
    if i < 0:
        raise ValueError(f"{d} is before the trading calendar ({_SPAN[0]})")
    return date.fromordinal(days[i])


def trade_date_offset(d: date, n: int) -> date:
    """The trade date `n` CME business days after (n > 0) or before (n < 0) `d`; `d` itself when
    n == 0 and it is a trade date (else the next one). E.g. 3 business days before the 25th: (25th, -3)."""
    days, o = _trade_ordinals(), d.toordinal()
    if n < 0:
        i = bisect.bisect_left(days, o) + n
    elif n > 0:
        i = bisect.bisect_right(days, o) - 1 + n
    else:
        i = bisect.bisect_left(days, o)
    if not 0 <= i < len(days):
        raise ValueError(f"{n} trade dates from {d} is outside the trading calendar {_SPAN}")
    return date.fromordinal(days[i])


def trade_dates_of_month(year: int, month: int) -> list[date]:
    """The CME trade dates (business days) of a calendar month, in order."""
    days = _trade_ordinals()
    first = date(year, month, 1).toordinal()
    last = date(year + month // 12, month % 12 + 1, 1).toordinal()
    return [date.fromordinal(o) for o in days[bisect.bisect_left(days, first):bisect.bisect_left(days, last)]]


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: PineOps times are timezone-aware (UTC)")


def session_date(ts: datetime) -> date:
    """The CME trade date that instant `ts` belongs to."""
    _require_aware(ts)
    local = ts.astimezone(CHICAGO)
    candidate = local.date() + timedelta(days=1) if local.time() >= SESSION_START else local.date()
    return next_trade_date(candidate)


@functools.lru_cache(maxsize=16_384)
def _session_of_hour(hour: int) -> date:
    return session_date(datetime.fromtimestamp(hour * 3600, timezone.utc))


def session_date_ns(ts_ns: int) -> date:
    """`session_date` of a UTC time in ns, memoised per hour: sessions change only on the hour
    (17:00 Chicago is a whole hour in UTC in summer and winter), so streaming code pays once an hour."""
    return _session_of_hour(ts_ns // 3_600_000_000_000)


def session_dates(ts_ns: np.ndarray) -> np.ndarray:
    """Vectorised `session_date` for int64 UTC nanoseconds; returns datetime64[D]."""
    import numpy as np
    import pandas as pd  # here, not at import: the order sender books trades without pandas or numpy

    local = pd.DatetimeIndex(np.asarray(ts_ns, dtype="int64").view("datetime64[ns]"), tz="UTC").tz_convert(CHICAGO)
    naive_days = local.tz_localize(None).normalize().values.astype("datetime64[D]")
    after_start = np.asarray(local.hour) >= SESSION_START.hour  # SESSION_START is on the hour
    candidate = naive_days + after_start.astype("timedelta64[D]")
    days = _trade_dates()
    idx = np.searchsorted(days, candidate, side="left")
    if len(idx) and idx.max() >= len(days):
        raise ValueError("timestamps beyond the trading calendar")
    return days[idx]


def _local(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=CHICAGO).astimezone(timezone.utc)


def session_close(d: date) -> datetime:
    """16:00 Chicago on trade date `d`, in UTC: when a `day` order stops being valid."""
    return _local(d, SESSION_CLOSE)


def session_end(d: date) -> datetime:
    """17:00 Chicago on `d`, in UTC: from here on trading belongs to the next trade date."""
    return _local(d, SESSION_START)


def session_open(d: date) -> datetime:
    """When trading for trade date `d` begins, in UTC: 17:00 Chicago on the first evening after the
    previous trade date that is not a Friday or Saturday. Sunday for Monday; for a trade date a
    holiday folds into, the evening before the holiday (Wednesday for the Friday after Thanksgiving,
    Sunday for the Tuesday after Martin Luther King day), never the evening before `d` itself.
    """
    day = previous_trade_date(d)
    while day.weekday() in (4, 5):  # Friday and Saturday evenings open nothing: Sunday's does
        day += timedelta(days=1)
    return _local(day, SESSION_START)


# --- trading windows per product (Globex hours, early closes included) ---------------------------
# The calendar library's CME calendars per product group: when a root's market really trades. These
# windows, not the trade dates above, say whether trades should be arriving and when a session closes
# (Thanksgiving's Globex session ends at noon Chicago for equities, 13:30 for metals and energy).
PRODUCT_CALENDARS = {"ES": "CME_Equity", "YM": "CBOT_Equity", "CL": "CMEGlobex_CL", "GC": "CMEGlobex_GC",
                     "SI": "CMEGlobex_SI", "HG": "CMEGlobex_HG",
                     **{root: "CMEGlobex_FX" for root in ("6A", "6B", "6C", "6M", "6N", "6S")}}


@functools.lru_cache(maxsize=32)
def _windows(calendar: str) -> tuple[np.ndarray, np.ndarray]:
    """(opens, closes) of every session of `calendar` in _SPAN, int64 ns UTC, sorted."""
    import pandas as pd
    import pandas_market_calendars as pmc

    schedule = pmc.get_calendar(calendar).schedule(*_SPAN)
    return (pd.DatetimeIndex(schedule["market_open"]).tz_convert("UTC").as_unit("ns").asi8,
            pd.DatetimeIndex(schedule["market_close"]).tz_convert("UTC").as_unit("ns").asi8)


def _ns(ts: datetime) -> int:
    _require_aware(ts)
    return int(ts.timestamp() * 1_000_000) * 1000


def _as_dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc)


def trading_window(root: str, ts: datetime) -> tuple[datetime, datetime] | None:
    """The (open, close) of `root`'s trading session that `ts` falls in; None while it does not trade."""
    import numpy as np

    opens, closes = _windows(PRODUCT_CALENDARS.get(root, CALENDAR))
    t = _ns(ts)
    i = int(np.searchsorted(opens, t, side="right")) - 1
    if i < 0 or t >= closes[i]:
        return None
    return _as_dt(int(opens[i])), _as_dt(int(closes[i]))


def is_trading(root: str, ts: datetime) -> bool:
    return trading_window(root, ts) is not None


def next_window(root: str, ts: datetime) -> tuple[datetime, datetime]:
    """The session `ts` falls in, or else the next one to open."""
    import numpy as np

    opens, closes = _windows(PRODUCT_CALENDARS.get(root, CALENDAR))
    t = _ns(ts)
    i = int(np.searchsorted(closes, t, side="right"))  # the first session that closes after ts
    if i >= len(opens):
        raise ValueError(f"{ts} is beyond the trading calendar ({_SPAN[1]})")
    return _as_dt(int(opens[i])), _as_dt(int(closes[i]))


REGULAR_CLOSE = time(16, 0)  # Chicago: where a Globex day session normally ends


@functools.lru_cache(maxsize=65_536)
def _early_close_of_hour(root: str, hour: int) -> datetime | None:
    window = trading_window(root, datetime.fromtimestamp(hour * 3600, timezone.utc))
    if window is None or window[1].astimezone(CHICAGO).time() >= REGULAR_CLOSE:
        return None
    return window[1]


def early_close(root: str, ts: datetime) -> datetime | None:
    """When the session `ts` trades in closes, if it closes early (a holiday's noon close, Black Friday,
    Christmas Eve): the product's own hours. None on a regular day or while the market is closed."""
    _require_aware(ts)
    return _early_close_of_hour(root, int(ts.timestamp()) // 3600)


@functools.lru_cache(maxsize=65_536)
def _trading_at_second(root: str, second: int) -> bool:
    return trading_window(root, datetime.fromtimestamp(second, timezone.utc)) is not None


class ProductHours:
    """The product trading hours a portfolio decides by (strategies.portfolio): is the market open when
    an order is decided, and does its session close early before the position could be managed."""

    @staticmethod
    def early_close(root: str, ts: datetime) -> datetime | None:
        return early_close(root, ts)

    @staticmethod
    def open_at(root: str, ts: datetime) -> bool:
        return _trading_at_second(root, int(ts.timestamp()))


PRODUCT_HOURS = ProductHours()
