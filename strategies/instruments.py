"""Futures contract specifications of the roots PineOps trades.

The one table of point values and ticks: the admin's demo data, the backtest's defaults and
P&L all read it. A wrong point value here means wrong P&L everywhere, so tests pin it.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

DEFAULT_COMMISSION = Decimal("1.25")  # $ per contract per side


@dataclass(frozen=True)
class ContractSpec:
    root: str
    name: str
    exchange: str
    point_value: Decimal  # $ per 1.0 price move
    tick_size: Decimal
    tick_value: Decimal
    currency: str = "USD"


def _spec(root, name, exchange, point_value, tick_size, tick_value):
    return ContractSpec(root, name, exchange, Decimal(point_value), Decimal(tick_size), Decimal(tick_value))


CONTRACT_SPECS: dict[str, ContractSpec] = {
    s.root: s
    for s in (
        _spec("6A", "Australian dollar", "CME", "100000", "0.00005", "5.00"),
        _spec("6B", "British pound", "CME", "62500", "0.0001", "6.25"),
        _spec("6C", "Canadian dollar", "CME", "100000", "0.00005", "5.00"),
        _spec("6M", "Mexican peso", "CME", "500000", "0.00001", "5.00"),
        _spec("6N", "New Zealand dollar", "CME", "100000", "0.00005", "5.00"),
        _spec("6S", "Swiss franc", "CME", "125000", "0.00005", "6.25"),
        _spec("CL", "Crude oil", "NYMEX", "1000", "0.01", "10.00"),
        _spec("GC", "Gold", "COMEX", "100", "0.10", "10.00"),
        _spec("HG", "Copper", "COMEX", "25000", "0.0005", "12.50"),
        _spec("SI", "Silver", "COMEX", "5000", "0.005", "25.00"),
        _spec("YM", "E-mini Dow", "CBOT", "5", "1", "5.00"),
        _spec("ES", "E-mini S&P 500", "CME", "50", "0.25", "12.50"),
    )
}

# The earlier system's example config (and so the demo data) charges 4.5 on these roots.
DEMO_COMMISSION = {"6A": Decimal("4.5"), "6C": Decimal("4.5")}

# CME month codes, January first.
MONTH_CODES = "FGHJKMNQUVXZ"


def spec_for(root: str) -> ContractSpec:
    try:
        return CONTRACT_SPECS[root]
    except KeyError:
        raise KeyError(f"unknown root {root!r}; known roots: {', '.join(sorted(CONTRACT_SPECS))}") from None
