"""Rolls with a position open, live: strategies.rolls decides (as the backtest does), this says so when the
held contract has no bar for an hour — once per position."""
from __future__ import annotations

import logging

from strategies import rolls
from trading.delivery.alerts import enqueue

log = logging.getLogger(__name__)


def plan(strategy, bars: dict, held: dict, contracts: dict[str, str], legs: dict) -> rolls.RollPlan:
    """strategies.rolls.plan for `strategy`'s legs (root → execution.ledger.Leg), with the alert."""
    out = rolls.plan(bars, held, contracts, {root: leg.roll_policy for root, leg in legs.items()})
    for root, contract, front in out.missing:
        log.warning("no bar of the held contract strategy=%s root=%s contract=%s front=%s hour=%s",
                    strategy.name, root, contract, front.contract, front.ts.isoformat())
        enqueue("emergency", f"{strategy.name}: {root} position in {contract} has no bar of its own",
                strategy=strategy,
                body=(f"The front of {root} is {front.contract} and no {contract} bar came for "
                      f"{front.ts:%Y-%m-%d %H:%M} UTC: the position is not moved on the other contract's "
                      "prices. It keeps its broker-side stop and target; it is managed again with its "
                      "contract's next bar."),
                dedupe_key=f"held-no-bars:{strategy.name}:{root}:{contract}")
    return out
