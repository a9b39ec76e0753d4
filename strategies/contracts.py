"""CME contract listings and last-trade rules of the roots PineOps trades, written as data.

What they are for: generating a market whose contracts are listed and expire as the real ones do,
and checking what Databento's definitions say. Live code never computes an expiration from a
month code: the hub and warmup read each contract's expiration from its definition record.
Business days are CME trade dates (strategies.calendar, from pandas-market-calendars).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from strategies.calendar import CHICAGO, is_trade_date, previous_trade_date, trade_date_offset, trade_dates_of_month
from strategies.instruments import MONTH_CODES


@dataclass(frozen=True)
class ListingRule:
    """Which months a root lists and when trading in a contract terminates.

    `last_trade` names the rule, `business_days` is its count of CME business days and `close`
    the Chicago time trading ends on the last day:
    - third_friday: the 3rd Friday of the contract month (the business day before, if a holiday);
    - before_third_wednesday: `business_days` business days before the 3rd Wednesday of the month;
    - before_25th_of_prior_month: `business_days` business days before the 25th calendar day of the
      month before the contract month; if the 25th is not a business day, that many business days
      before the last business day preceding the 25th;
    - third_last_business_day: the 3rd-last business day of the contract month.
    """

    months: str
    last_trade: str
    business_days: int
    close: time


_FX = ListingRule("HMUZ", "before_third_wednesday", 2, time(9, 16))
LISTING_RULES: dict[str, ListingRule] = {
    "ES": ListingRule("HMUZ", "third_friday", 0, time(8, 30)),
    "YM": ListingRule("HMUZ", "third_friday", 0, time(8, 30)),
    "6A": _FX, "6B": _FX, "6M": _FX, "6N": _FX, "6S": _FX,
    "6C": ListingRule("HMUZ", "before_third_wednesday", 1, time(9, 16)),
    "CL": ListingRule("FGHJKMNQUVXZ", "before_25th_of_prior_month", 3, time(13, 30)),
    "GC": ListingRule("GJMQVZ", "third_last_business_day", 3, time(12, 30)),
    "SI": ListingRule("HKNUZ", "third_last_business_day", 3, time(12, 25)),
    "HG": ListingRule("HKNUZ", "third_last_business_day", 3, time(12, 0)),
}


def rule_for(root: str) -> ListingRule:
    try:
        return LISTING_RULES[root]
    except KeyError:
        raise KeyError(f"no listing rule for {root!r}; known roots: {', '.join(sorted(LISTING_RULES))}") from None


def _weekday_of_month(year: int, month: int, weekday: int, nth: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def last_trade_date(root: str, year: int, month: int) -> date:
    """The last trade date of `root`'s contract for (year, month)."""
    rule = rule_for(root)
    if rule.last_trade == "third_friday":
        day = _weekday_of_month(year, month, 4, 3)
        return day if is_trade_date(day) else previous_trade_date(day)
    if rule.last_trade == "before_third_wednesday":
        return trade_date_offset(_weekday_of_month(year, month, 2, 3), -rule.business_days)
    if rule.last_trade == "before_25th_of_prior_month":
        prior = date(year - 1, 12, 25) if month == 1 else date(year, month - 1, 25)
        anchor = prior if is_trade_date(prior) else previous_trade_date(prior)
        return trade_date_offset(anchor, -rule.business_days)
    if rule.last_trade == "third_last_business_day":
        return trade_dates_of_month(year, month)[-rule.business_days]
    raise ValueError(f"{root}: unknown last-trade rule {rule.last_trade!r}")


def expiration(root: str, year: int, month: int) -> datetime:
    """When trading in the contract terminates (UTC): its last trade date at the rule's Chicago close."""
    day = last_trade_date(root, year, month)
    return datetime.combine(day, rule_for(root).close, tzinfo=CHICAGO).astimezone(timezone.utc)


def contract_symbol(root: str, year: int, month: int) -> str:
    """Globex's raw symbol: root, month code, last digit of the year ('CLZ6')."""
    return f"{root}{MONTH_CODES[month - 1]}{year % 10}"


def contract_months(root: str, after: date, count: int) -> list[tuple[int, int]]:
    """The first `count` listed (year, month) of `root` whose last trade date is on or after `after`."""
    cycle = [MONTH_CODES.index(code) + 1 for code in rule_for(root).months]
    out: list[tuple[int, int]] = []
    year = after.year - 1
    while len(out) < count:
        for month in cycle:
            if (year, month) >= (after.year - 1, 1) and last_trade_date(root, year, month) >= after:
                out.append((year, month))
                if len(out) == count:
                    break
        year += 1
    return out
