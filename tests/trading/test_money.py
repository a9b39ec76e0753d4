"""One money rule: a trade's P&L in the backtest equals the same trade's P&L in the books to the cent,
also for stop and target exits at prices off the tick (entry × 0.99 …), where float rounding and Decimal
rounding used to part by a cent on about one trade in twelve."""
import random
from datetime import datetime, timezone
from decimal import Decimal

from strategies.backtest import Leg, trade_row
from strategies.ibs import ClosedTrade
from strategies.instruments import CONTRACT_SPECS, DEMO_COMMISSION
from strategies.params import IBSParams
from strategies.pnl import price
from trading.models import trade_pnl

T = datetime(2026, 11, 3, 15, tzinfo=timezone.utc)
TIMES = dict(entry_ts=T, exit_ts=T, reason="stop_loss", ibs_entry=0.1, ibs_exit=None, ml_score=None, bars_held=1)
BASE = {"6A": 0.66, "6B": 1.27, "6C": 0.74, "6M": 0.058, "6N": 0.61, "6S": 1.13, "CL": 75.0, "GC": 2350.0,
        "HG": 4.3, "SI": 29.0, "YM": 39000.0, "ES": 5300.0}


def test_twenty_thousand_random_trades_agree_to_the_cent():
    rng = random.Random(20_000)
    roots = sorted(CONTRACT_SPECS)
    for _ in range(20_000):
        root = rng.choice(roots)
        spec = CONTRACT_SPECS[root]
        tick = float(spec.tick_size)
        entry = round(BASE[root] * rng.uniform(0.8, 1.2) / tick) * tick
        exit_ = rng.choice([entry * 0.99, entry * 1.01, entry * (1 + rng.uniform(-0.02, 0.02)),
                            round(entry * rng.uniform(0.98, 1.02) / tick) * tick])
        size = rng.randint(1, 5)
        commission = float(DEMO_COMMISSION.get(root, Decimal("1.25")))
        leg = Leg(root, None, IBSParams(), float(spec.point_value), commission, size=size)
        backtest = trade_row(leg, ClosedTrade(entry_price=entry, exit_price=exit_, **TIMES))["pnl"]
        # the books: prices stored at 9 decimals, the instrument's and leg's decimals
        books = trade_pnl(price(entry), price(exit_), spec.point_value, size, Decimal(repr(commission)))
        assert Decimal(repr(backtest)) == books, (root, entry, exit_, size, backtest, books)


def test_a_stop_exit_off_the_tick_that_used_to_part_by_a_cent():
    """ES long at 5853.25 stopped at entry × 0.99 = 5794.7175: (−58.5325 × 50 − 2.50) is −2929.125 exactly;
    float noise made round() give −2929.13 where the books' half-to-even cent is −2929.12."""
    entry, exit_ = 5853.25, 5853.25 * 0.99
    assert round((exit_ - entry) * 50.0 - 2 * 1.25, 2) == -2929.13  # the old backtest rule
    books = trade_pnl(price(entry), price(exit_), Decimal("50"), 1, Decimal("1.25"))
    leg = Leg("ES", None, IBSParams(), 50.0, 1.25)
    backtest = trade_row(leg, ClosedTrade(entry_price=entry, exit_price=exit_, **TIMES))["pnl"]
    assert books == Decimal("-2929.12") and backtest == -2929.12
