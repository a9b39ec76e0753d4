"""Portfolio coordinator: at most max_positions open per strategy across its instruments.

When more instruments signal on one bar than there are free slots, the lowest IBS wins, then the
root name: a deterministic order, so backtest and live pick the same entries.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    root: str
    ibs: float
    payload: object = None


@dataclass(frozen=True)
class Skipped:
    root: str
    reason: str


def choose(candidates: list[Candidate], open_positions: int, max_positions: int | None) -> tuple[list[Candidate], list[Skipped]]:
    ordered = sorted(candidates, key=lambda c: (c.ibs, c.root))
    if max_positions is None:
        return ordered, []
    free = max(0, max_positions - open_positions)
    reason = f"max positions reached ({max_positions} open or filling)"
    return ordered[:free], [Skipped(c.root, reason) for c in ordered[free:]]
