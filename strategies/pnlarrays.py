"""The money rule of strategies.pnl over arrays of trades, for the array backtest: the same cents as
`trade_money` trade for trade (prices to 9 decimals, dollars rounded once to the cent, half to even).

Integer nanoprices and integer cents, never a float rounding: a price whose 9th decimal is too close to a
tie for the float product to tell, or too large for 15 digits, goes through `strategies.pnl.price` itself.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np

from strategies.pnl import price

LIMIT = 2 ** 62  # what int64 arithmetic may reach; beyond it Python integers


def nanoprices(values) -> np.ndarray:
    """`strategies.pnl.price` of each value as an integer number of 1e-9 (int64, or Python ints when huge)."""
    v = np.asarray(values, dtype=float)
    big = ~(np.abs(v) < 1e6)  # 16 digits and more: repr decides the digits, so price() itself
    small = np.where(big, 0.0, v)
    scaled = small * 1e9
    out = np.rint(scaled).astype(np.int64)
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) <= 4 * np.spacing(np.abs(scaled) + 1)
    for i in np.flatnonzero(near_tie & ~big).tolist():
        out[i] = int(price(float(v[i])).scaleb(9))
    if big.any():
        exact = [int(price(x).scaleb(9)) for x in v[big].tolist()]
        out = out.astype(object)
        out[big] = exact
    return out


def _scaled(value) -> tuple[int, int]:
    """A float as the books read it (Decimal of its repr) as (integer, decimals)."""
    d = Decimal(repr(float(value)))
    exponent = d.as_tuple().exponent
    if exponent >= 0:
        return int(d), 0
    return int(d.scaleb(-exponent)), -exponent


def trade_cents(entry, exit_, point_value, size: int, commission_per_side) -> np.ndarray:
    """`strategies.pnl.trade_money` of each (entry, exit) pair, in integer cents."""
    delta = nanoprices(exit_) - nanoprices(entry)  # 1e-9 price units
    pv, a = _scaled(point_value)
    cm, b = _scaled(commission_per_side)
    digits = max(9 + a, b)  # pnl = num / 10**digits exactly
    gain = pv * int(size) * 10 ** (digits - 9 - a)
    cost = 2 * cm * int(size) * 10 ** (digits - b)
    unit = 10 ** (digits - 2)  # one cent
    biggest = int(np.abs(delta).max()) if len(delta) else 0
    if delta.dtype == object or biggest * gain + cost + unit >= LIMIT:
        delta = delta.astype(object)
    num = delta * gain - cost
    q = num // unit
    r = num - q * unit
    up = (2 * r > unit) | ((2 * r == unit) & (q % 2 == 1))
    return q + up.astype(np.int64) if q.dtype != object else np.array([x + int(u) for x, u in zip(q, up)], dtype=object)


def pnl_and_percent(entry: np.ndarray, exit_: np.ndarray, point_value, size: int, commission):
    """Per trade: P&L in $ (float of the cents, as float(trade_money)) and pnl_percent, as float arrays."""
    cents = trade_cents(entry, exit_, point_value, size, commission)
    dollars = np.array([c / 100 for c in cents.tolist()], dtype=float) if cents.dtype == object else cents / 100
    return dollars, (exit_ - entry) / entry * 100
