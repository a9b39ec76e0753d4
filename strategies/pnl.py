"""P&L of a long futures trade. Works on Decimal (the database) and float (the backtest) alike."""


def trade_pnl(entry, exit_, point_value, size, commission_per_side):
    """(exit − entry) × point value × size − 2 × commission × size."""
    return (exit_ - entry) * point_value * size - 2 * commission_per_side * size


def pnl_percent(entry, exit_) -> float:
    """(exit − entry) / entry × 100."""
    return float((exit_ - entry) / entry * 100)
