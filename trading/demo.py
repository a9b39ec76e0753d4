"""The demo configuration: the 12 instruments of the design and strategies ibs_a and ibs_b.

`load_demo()` is idempotent: it creates what is missing and leaves existing rows (and any
operator edits to them) alone, so running it twice changes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from django.db import transaction

from strategies.instruments import CONTRACT_SPECS, DEFAULT_COMMISSION, DEMO_COMMISSION
from trading.config import ConfigError, reference_name
from trading.models import Instrument, Strategy, StrategyInstrument

DEMO_STRATEGIES = {
    "ibs_a": dict(roots=["6A", "6C", "6M", "CL", "GC", "HG"], max_positions=2, enabled=True,
                  broker_webhook="${TRADERSPOST_IBS_A_WEBHOOK}", description="IBS mean reversion, FX + energy + metals"),
    "ibs_b": dict(roots=["6B", "6N", "6S", "SI", "YM"], max_positions=3, enabled=False,
                  broker_webhook="${TRADERSPOST_IBS_B_WEBHOOK}", description="IBS mean reversion, FX + silver + Dow"),
}
DISCORD_REFERENCE = "${DISCORD_WEBHOOK_URL}"


@dataclass
class DemoResult:
    created: list[str]
    unset_variables: list[str]


def _full_clean_except_env(obj):
    """Validate a row like the admin would, except that secrets may be unset at load time."""
    obj.clean_fields()
    obj.validate_unique()
    obj.validate_constraints()
    if isinstance(obj, Strategy):
        obj.params()  # ParameterError names a bad parameter
    else:
        obj.clean()


@transaction.atomic
def load_demo() -> DemoResult:
    created = []
    instruments = {}
    for root, spec in CONTRACT_SPECS.items():
        obj, made = Instrument.objects.get_or_create(
            root=root,
            defaults=dict(name=spec.name, exchange=spec.exchange, point_value=spec.point_value,
                          tick_size=spec.tick_size, tick_value=spec.tick_value, currency=spec.currency))
        if made:
            obj.full_clean()
            created.append(f"instrument {root}")
        instruments[root] = obj

    unset = set()
    for name, cfg in DEMO_STRATEGIES.items():
        strategy = Strategy.objects.filter(name=name).first()
        if strategy is None:
            strategy = Strategy(name=name, enabled=cfg["enabled"], description=cfg["description"],
                                broker_webhook=cfg["broker_webhook"], discord_webhook=DISCORD_REFERENCE,
                                max_positions=cfg["max_positions"])
            _full_clean_except_env(strategy)
            strategy.save()
            created.append(f"strategy {name}")
        for root in cfg["roots"]:
            leg, made = StrategyInstrument.objects.get_or_create(
                strategy=strategy, instrument=instruments[root],
                defaults=dict(size=1, commission_per_side=DEMO_COMMISSION.get(root, DEFAULT_COMMISSION),
                              ml_enabled=True))
            if made:
                _full_clean_except_env(leg)
                created.append(f"leg {name}/{root}")
        for field in ("broker_webhook", "discord_webhook"):
            value = getattr(strategy, field)
            if value:
                try:
                    var = reference_name(value, field)
                except ConfigError:
                    continue
                if not os.environ.get(var):
                    unset.add(var)
    return DemoResult(created=created, unset_variables=sorted(unset))

