"""Shared pieces of the multi-process trading tests: the strategy set-up and what the backtest expects."""
from decimal import Decimal

import pandas as pd

from strategies.backtest import Leg, run
from strategies.bars import Bar
from strategies.instruments import CONTRACT_SPECS, DEMO_COMMISSION
from strategies.params import IBSParams


def configure_ibs_a(env, fronts: dict[str, str]) -> None:
    """ibs_a trades only `fronts`' roots, from those contracts, without ML and without a daily stop
    (the backtest has neither; both have their own tests)."""
    roots = sorted(fronts)
    env.shell("from trading.models import Instrument, StrategyInstrument, Strategy\n"
              + "\n".join(f"Instrument.objects.filter(root='{r}').update(active_contract='{c}')" for r, c in fronts.items())
              + f"\nStrategyInstrument.objects.filter(strategy__name='ibs_a').exclude(instrument__root__in={roots!r})"
                ".update(enabled=False)"
              + "\nStrategyInstrument.objects.filter(strategy__name='ibs_a').update(ml_enabled=False)"
              + "\nStrategy.objects.filter(name='ibs_a').update(daily_stop_loss=10**8)")


def hourly_frames(client, prefix: str, roots) -> dict[str, pd.DataFrame]:
    frames = {}
    for root in roots:
        bars = [Bar.from_message(f["bar"]) for _, f in client.xrange(f"{prefix}:bars:{root}:1h")]
        frames[root] = pd.DataFrame({"ts": [int(b.ts.timestamp()) * 10**9 for b in bars], "open": [b.open for b in bars],
                                     "high": [b.high for b in bars], "low": [b.low for b in bars],
                                     "close": [b.close for b in bars], "volume": [b.volume for b in bars]})
    return frames


class Expected:
    """The backtest of the same bars, as orders and trades (ibs_a's demo terms, max 2 positions)."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        legs = [Leg(r, f, IBSParams(), float(CONTRACT_SPECS[r].point_value),
                    float(DEMO_COMMISSION.get(r, Decimal("1.25")))) for r, f in frames.items()]
        self.result = run(legs, max_positions=2, use_ml=False)
        self.trades = self.result.trades
        self.closed = [t for t in self.trades if t["exit_reason"] != "end_of_data"]
        self.buys = sorted([(t["symbol"], t["signal_time"][:19]) for t in self.trades]
                           + [(p["symbol"], p["signal_time"][:19]) for p in self.result.pending_entries])
        self.exits = sorted((t["symbol"], t["exit_signal_time"][:19], t["exit_decided"]) for t in self.trades
                            if t["exit_reason"] != "end_of_data" or t["exit_decided"] != "end_of_data")
        self.open_at_end = sorted([t["symbol"] for t in self.trades if t["exit_reason"] == "end_of_data"]
                                  + [p["symbol"] for p in self.result.pending_entries])


def received(orders: list[dict]) -> tuple[list, list, int]:
    """(buys, exits, duplicate posts) of what the TradersPost stand-in got."""
    keys = [o["extras"]["signal_id"] for o in orders]
    buys = sorted((o["ticker"], o["extras"]["bar_time"][:19]) for o in orders if o["action"] == "buy")
    exits = sorted((o["ticker"], o["extras"]["bar_time"][:19], o["extras"]["reason"]) for o in orders
                   if o["action"] == "exit")
    return buys, exits, len(keys) - len(set(keys))
