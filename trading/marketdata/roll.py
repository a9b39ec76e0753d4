"""Which contract is a root's front month, and when it rolls, from the contracts' definitions.

The front is always an outright (by its definition). Where none is known it is chosen: the
outright with the most volume in the last session of data, or, without data, the nearest
expiration outside the roll window. Volume rule: at a session boundary, an outright that traded
more than the front in the session just closed becomes the front. Calendar rule: from the session
N CME business days before the front's expiration (read from its definition, never worked out
from its month code) the next outright is the front. Under either rule a front that has expired
is replaced at the next boundary, so no session goes without a tradable front.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from strategies.calendar import session_date, session_open, trade_date_offset
from trading.marketdata.definitions import NS, ContractDef


def roll_session(expiration: datetime, days: int) -> date:
    """The calendar rule's first session of the next contract: `days` CME business days before the
    trade date on which `expiration` falls."""
    return trade_date_offset(session_date(expiration), -days)


@dataclass(frozen=True)
class Roll:
    root: str
    from_contract: str  # '' for the first front of a root
    to_contract: str
    session_date: date
    reason: str


class FrontMonth:
    """Front-contract state of one root: its outrights' definitions, the session's volume per
    contract, and the rule."""

    def __init__(self, root: str, rule: str = "volume", days_before_expiry: int = 5, active: str = "",
                 contracts=(), last_volume: dict[str, int] | None = None):
        self.root, self.rule, self.days = root, rule, days_before_expiry
        self.active = active
        self.volume: Counter = Counter()  # contract → volume in the current session
        self.contracts: dict[str, ContractDef] = {}
        for contract in contracts:
            self.define(contract)
        # contract → its volume in the last session of data known before this run (a first choice)
        self.last_volume = {c: v for c, v in (last_volume or {}).items() if v > 0}

    def define(self, contract: ContractDef) -> None:
        if contract.outright and contract.root == self.root:
            self.contracts[contract.raw_symbol] = contract

    def observe(self, contract: str, size: int, when: date | None = None) -> None:
        """Outright volume of the current session (the caller drops spreads)."""
        self.volume[contract] += size

    def live(self, session: date) -> list[ContractDef]:
        """Outrights still trading when `session` opens, nearest expiration first."""
        opens = int(session_open(session).timestamp()) * NS
        alive = [c for c in self.contracts.values() if c.expiration_ns == 0 or c.expiration_ns > opens]
        return sorted(alive, key=lambda c: (c.expiration_ns or 2**63, c.raw_symbol))

    def roll_session_of(self, contract: str) -> date | None:
        known = self.contracts.get(contract)
        return roll_session(known.expiration, self.days) if known and known.expiration_ns else None

    def choose(self, session: date) -> Roll | None:
        """A first front for `session` where none is known (None: nothing to choose from yet)."""
        if self.active:
            return None
        live = self.live(session)
        names = {c.raw_symbol for c in live}
        traded = {c: v for c, v in self.last_volume.items() if not names or c in names}
        if traded:
            target = max(traded, key=lambda c: (traded[c], c))
            reason = f"first front: {target} traded most in the last session of data ({traded[target]})"
        elif live:
            outside = [c for c in live if c.expiration_ns == 0 or roll_session(c.expiration, self.days) > session]
            pick = (outside or live)[0]
            target = pick.raw_symbol
            reason = f"first front: nearest expiration outside the roll window ({target} expires " \
                     f"{pick.expiration:%Y-%m-%d})" if pick.expiration_ns else f"first front: {target}"
        else:
            return None
        self.active = target
        return Roll(self.root, "", target, session, reason)

    def session_opened(self, session: date) -> Roll | None:
        """A run's first session: a front that expired while the hub was away is replaced at once (not
        a session later), as a first front would be chosen."""
        front = self.contracts.get(self.active)
        if front is None or not front.expiration_ns or \
                front.expiration_ns > int(session_open(session).timestamp()) * NS:
            return None
        old, self.active = self.active, ""
        first = self.choose(session)
        if first is None:
            self.active = old
            return None
        return Roll(self.root, old, first.to_contract, session,
                    f"{old} expired {front.expiration:%Y-%m-%d %H:%M} UTC; {first.reason.removeprefix('first front: ')}")

    def session_closed(self, next_session: date) -> Roll | None:
        """Decide at the boundary into `next_session`; returns the roll if the front changes."""
        volume, self.volume = self.volume, Counter()
        if not self.active:  # nothing was known when the session traded: its busiest outright
            if volume:
                top = max(volume.items(), key=lambda kv: (kv[1], kv[0]))
                self.active = top[0]
                return Roll(self.root, "", top[0], next_session,
                            f"first front: {top[0]} traded most in the session before ({top[1]})")
            return self.choose(next_session)
        target, reason = self.active, ""
        front = self.contracts.get(self.active)
        if self.rule == "calendar" and front is not None and front.expiration_ns:
            due = roll_session(front.expiration, self.days)
            if next_session >= due:
                later = [c for c in self.live(next_session) if c.expiration_ns > front.expiration_ns]
                outside = [c for c in later if roll_session(c.expiration, self.days) > next_session]
                if later:
                    target = (outside or later)[0].raw_symbol
                    reason = (f"calendar rule: {self.active} expires {front.expiration:%Y-%m-%d}, "
                              f"{self.days} CME business days before is {due}")
        else:  # the volume rule (and the calendar rule for a front without a definition)
            busiest, top = max(volume.items(), key=lambda kv: (kv[1], kv[0]), default=(self.active, 0))
            if busiest != self.active and top > volume.get(self.active, 0):
                target = busiest
                reason = f"volume rule: {busiest} traded {top} vs {volume.get(self.active, 0)} for {self.active}"
        if target == self.active and front is not None and front.expiration_ns and \
                front.expiration_ns <= int(session_open(next_session).timestamp()) * NS:
            live = self.live(next_session)
            if live:
                traded = [c for c in live if volume.get(c.raw_symbol)]
                target = max(traded, key=lambda c: (volume[c.raw_symbol], c.raw_symbol)).raw_symbol if traded \
                    else live[0].raw_symbol
                reason = f"{self.active} expired {front.expiration:%Y-%m-%d %H:%M} UTC"
        if target == self.active:
            return None
        roll = Roll(self.root, self.active, target, next_session, reason)
        self.active = target
        return roll


def fronts_by_session(front: FrontMonth, volume_by_session: dict[date, dict[str, int]]) -> dict[date, str]:
    """The hub's decisions replayed over history: session → the front its bars come from, given each
    session's outright volume per contract (sessions without trades are absent, as for the hub)."""
    out: dict[date, str] = {}
    sessions = sorted(volume_by_session)
    for i, session in enumerate(sessions):
        if not front.active:
            front.choose(session)
        out[session] = front.active
        for contract, size in volume_by_session[session].items():
            front.observe(contract, size)
        if i + 1 < len(sessions):
            front.session_closed(sessions[i + 1])
    return out
