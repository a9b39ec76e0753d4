"""P&L of a long futures trade, and the one money rule of the backtest, the ledger and every report.

Prices are kept as the books keep them (`price`: 9 decimals, the database's), and a trade's dollars are
worked out in Decimal from those prices and rounded once to the cent, half to even (`trade_money`). So a
backtest trade and the same trade in the database are equal to the cent, whatever float noise a stop or
target price off the tick carries.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def trade_pnl(entry, exit_, point_value, size, commission_per_side):
    """(exit − entry) × point value × size − 2 × commission × size, unrounded, in the inputs' type."""
    return (exit_ - entry) * point_value * size - 2 * commission_per_side * size


PRICE_STEP = Decimal("0.000000001")


def price(value) -> Decimal:
    """A price as the books store it: to 9 decimals."""
    if isinstance(value, Decimal):
        return value.quantize(PRICE_STEP, rounding=ROUND_HALF_EVEN)
    return Decimal(repr(round(float(value), 9)))


def money(value) -> Decimal:
    """Dollars to the cent, half to even."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _decimal(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def trade_money(entry, exit_, point_value, size: int, commission_per_side) -> Decimal:
    """A trade's P&L in $ to the cent: the rule the backtest, the ledger and the reports share."""
    return money(trade_pnl(price(entry), price(exit_), _decimal(point_value), int(size),
                           _decimal(commission_per_side)))


def pnl_percent(entry, exit_) -> float:
    """(exit − entry) / entry × 100."""
    return float((exit_ - entry) / entry * 100)
