"""Rolls with a position open, decided the same way live and in the backtest: a position belongs to its
contract until it is closed.

When an instrument's front has rolled past the contract its position is in, the position is managed on the
bars of its own contract, never on the new front's: stop, target, the strategy's exits and the P&L only ever
see prices of the contract the broker holds. By the instrument's roll policy the position is then exited
at the close of its contract's first bar after the roll (reason 'roll'; entries on the new front follow
the strategy's own signals), or kept to its own exit. An hour without a bar of the held contract leaves
the position as it is (its broker-side stop and target still stand).
"""
from __future__ import annotations

from dataclasses import dataclass, field

EXIT, HOLD = "exit", "hold"


@dataclass
class RollPlan:
    manage: dict = field(default_factory=dict)  # root → the bar its position is managed on (None: none this hour)
    force: dict = field(default_factory=dict)  # root → 'roll': exit what is still open at this close
    missing: list = field(default_factory=list)  # (root, contract, the front's bar): no bar of the held contract


def plan(bars: dict, held: dict, contracts: dict[str, str], policies: dict[str, str]) -> RollPlan:
    """One hour's plan. `bars`: root → the front's bar; `held`: contract → its own bar; `contracts`: root →
    the contract its position is in ('' unknown); `policies`: root → EXIT or HOLD (roots not traded: none)."""
    out = RollPlan()
    for root, contract in contracts.items():
        front, own = bars.get(root), held.get(contract)
        if not contract or root not in policies or (own is None and (front is None or front.contract == contract)):
            continue  # no position, or it is in the front: the root's own bar
        out.manage[root] = own
        if own is None:
            out.missing.append((root, contract, front))
        elif policies[root] == EXIT:
            out.force[root] = "roll"
    return out
