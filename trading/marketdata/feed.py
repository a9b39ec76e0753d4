"""Feed health: are trades arriving for each root while its market trades?

A heartbeat only says the hub runs; this says data flows. The market's clock is the hub's (the
exchange time of the newest record or gateway heartbeat); when nothing at all arrives it moves on at
the wall clock's pace from there, so a dead feed is noticed and a weekend or the daily halt is not.
A root is degraded when its market trades (the calendar library's product hours, early closes
included) and no trade of it has come for `gap` of market time since the later of its last trade
and its session's open. One alert when the first root degrades, one when the last recovers.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from strategies.calendar import trading_window

log = logging.getLogger(__name__)
NS = 1_000_000_000


class FeedHealth:
    def __init__(self, gap: timedelta, *, alert=None, wall=time.monotonic):
        self.gap = gap
        self.alert = alert or (lambda kind, title, body: None)
        self.wall = wall
        self._clock_ns = 0
        self._moved_at = wall()
        self.problems: dict[str, str] = {}
        self._incident: datetime | None = None

    def market_now(self, clock_ns: int) -> datetime:
        """The market's clock: the hub's, carried on at wall-clock pace while no record arrives."""
        if clock_ns > self._clock_ns:
            self._clock_ns, self._moved_at = clock_ns, self.wall()
        still = max(0.0, self.wall() - self._moved_at)
        return datetime.fromtimestamp(self._clock_ns / NS + still, timezone.utc)

    def check(self, clock_ns: int, last_trade_ns: dict[str, int]) -> dict[str, str]:
        """Problems by root (empty: healthy); alerts on the first problem and on full recovery."""
        if not clock_ns:
            return {}  # nothing received yet: the hub has not started its feed
        now = self.market_now(clock_ns)
        problems = {}
        for root, last_ns in sorted(last_trade_ns.items()):
            window = trading_window(root, now)
            if window is None:
                continue
            last = datetime.fromtimestamp(last_ns / NS, timezone.utc) if last_ns else None
            since = max(last, window[0]) if last else window[0]
            if now - since > self.gap:
                problems[root] = (f"no {root} trade since {since:%Y-%m-%d %H:%M} UTC while its market is open "
                                  f"(market time {now:%Y-%m-%d %H:%M} UTC)")
        if problems and not self.problems:
            self._incident = now
            self.alert("emergency", f"Feed gap: no trades for {', '.join(problems)}",
                       "\n".join(problems.values()) + f"\nNo trade for more than {self.gap} of market time.")
            log.error("feed gap roots=%s", ",".join(problems))
        elif not problems and self.problems:
            self.alert("info", f"Feed recovered: {', '.join(self.problems)}",
                       f"Trades arrive again (the gap began {self._incident:%Y-%m-%d %H:%M} UTC).")
            log.warning("feed recovered roots=%s", ",".join(self.problems))
        self.problems = problems
        return problems
