"""Which contract is a root's front month, and when it rolls.

Each root trades one front contract at a time. Volume rule: at a session boundary, if another
outright traded more than the front in the session just closed, it becomes the front from the
new session on. Calendar rule: roll to the next month `days` days before the front's expiry,
taken as the third Friday of its contract month. Spreads (symbols with '-') never trade here.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from strategies.instruments import MONTH_CODES

_OUTRIGHT = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})$")


def parse_contract(raw: str, near: date) -> tuple[str, int, int] | None:
    """'CLZ6' → ('CL', 2026, 12) with the year resolved near `near`; None for spreads and oddities."""
    if "-" in raw:
        return None
    m = _OUTRIGHT.match(raw)
    if not m:
        return None
    digits = m["year"]
    base = near.year - near.year % (10 ** len(digits))
    year = base + int(digits)
    if year < near.year - 1:
        year += 10 ** len(digits)
    return m["root"], year, MONTH_CODES.index(m["month"]) + 1


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def calendar_front(root: str, when: date, days_before_expiry: int = 5) -> str:
    """The nearest contract month not yet within `days_before_expiry` of its expiry (a first guess
    when the admin names no active contract; the volume rule corrects it at the next boundary)."""
    year, month = when.year, when.month
    while third_friday(year, month) - timedelta(days=days_before_expiry) < when:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{root}{MONTH_CODES[month - 1]}{year % 10}"


@dataclass(frozen=True)
class Roll:
    root: str
    from_contract: str
    to_contract: str
    session_date: date
    reason: str


class FrontMonth:
    """Front-contract state of one root; feed it outright volume per session."""

    def __init__(self, root: str, rule: str = "volume", days_before_expiry: int = 5, active: str = ""):
        self.root, self.rule, self.days = root, rule, days_before_expiry
        self.active = active
        self.volume: Counter = Counter()  # contract → volume in the current session
        self.listed: set[str] = set()

    def observe(self, contract: str, size: int, when: date) -> None:
        if parse_contract(contract, when) is None:
            return
        self.listed.add(contract)
        self.volume[contract] += size
        if not self.active:
            self.active = calendar_front(self.root, when, self.days)

    def session_closed(self, next_session: date) -> Roll | None:
        """Decide at the boundary into `next_session`; returns the roll if the front changes."""
        volume, self.volume = self.volume, Counter()
        if not self.active:
            return None
        target, reason = self.active, ""
        if self.rule == "volume":
            busiest, top = max(volume.items(), key=lambda kv: (kv[1], kv[0]), default=(self.active, 0))
            if busiest != self.active and top > volume.get(self.active, 0):
                target = busiest
                reason = f"volume rule: {busiest} traded {top} vs {volume.get(self.active, 0)} for {self.active}"
        else:
            parsed = parse_contract(self.active, next_session)
            if parsed and next_session >= third_friday(parsed[1], parsed[2]) - timedelta(days=self.days):
                later = sorted((c for c in self.listed if parse_contract(c, next_session)
                                and parse_contract(c, next_session)[1:] > parsed[1:]),
                               key=lambda c: parse_contract(c, next_session)[1:])
                if later:
                    target = later[0]
                    reason = f"calendar rule: {self.days} days before {self.active} expires"
        if target == self.active:
            return None
        roll = Roll(self.root, self.active, target, next_session, reason)
        self.active = target
        return roll
