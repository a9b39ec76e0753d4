"""What a worker trades: its strategy and the instruments it manages, read from the database.

Every enabled instrument of an enabled strategy, and every instrument — disabled, or its whole strategy
disabled — that still holds a position (exits only: disabling never abandons a position). Compared by
value, so a running worker sees a change whatever wrote it (the admin, a bulk update).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from trading.execution.ledger import Leg
from trading.models import Position, Strategy


@dataclass
class Config:
    strategy: Strategy
    legs: dict[str, Leg]
    params: dict
    fingerprint: tuple

    @property
    def instruments(self) -> dict:
        """The legs' instrument rows by id (read with the legs): the position rows of the step take theirs."""
        return {leg.row.instrument_id: leg.row.instrument for leg in self.legs.values()}


def load_config(name: str) -> Config:
    """Read the strategy and the instruments it manages; ParameterError names a bad parameter."""
    strategy = Strategy.objects.get(name=name)
    holding = set(Position.objects.managed().filter(strategy=strategy).values_list("instrument_id", flat=True))
    legs, params = {}, {}
    for row in strategy.legs.select_related("instrument").order_by("instrument__root"):
        active = row.enabled and strategy.enabled
        if not active and row.instrument_id not in holding:
            continue
        root = row.instrument.root
        params[root] = row.params()
        legs[root] = Leg(row=row, root=root, ticker=row.ticker, size=row.size,
                         commission=Decimal(row.commission_per_side), point_value=Decimal(row.instrument.point_value),
                         roll_policy=row.roll_policy, exits_only=not active)
    # What the worker acts on, compared by value (not by timestamps, which a bulk update skips).
    fingerprint = (strategy.max_positions, strategy.time_in_force, strategy.daily_stop_loss, strategy.broker_webhook,
                   tuple((r, params[r], l.size, l.commission, l.ticker, l.row.ml_enabled, l.row.ml_failure_policy,
                          l.roll_policy, l.exits_only) for r, l in legs.items()))
    return Config(strategy, legs, params, fingerprint)
