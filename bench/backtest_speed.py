"""Backtest speed: ours vs backtrader on the same 200k+ hourly bars, trade for trade.

backtrader is the reference implementation here (bench only): its broker matches the orders
(market at the open, stop and limit inside the bar, gaps at the open) while our backtest
applies the fill model itself. The script asserts identical trade lists, then prints bars/s.
Run: .venv/bin/python bench/backtest_speed.py [--bars 200000]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backtrader as bt  # noqa: E402
import pandas as pd  # noqa: E402

from strategies.backtest import Leg, run  # noqa: E402
from strategies.ibs import in_entry_window, is_flat_bar  # noqa: E402
from strategies.params import IBSParams  # noqa: E402
from strategies.synthetic import hourly_bars  # noqa: E402


class IBSReference(bt.Strategy):
    """The IBS rules in backtrader's idiom; fills are backtrader's (cheat-on-open matching)."""

    params = dict(p=None)

    def __init__(self):
        self.p_ = self.params.p
        self.pending = None  # ("entry", ibs) | ("exit", reason, ibs)
        self.entry = None  # dict of the open position
        self.trades = []
        self.bar_orders = []

    def _now(self):
        return bt.num2date(self.data.datetime[0]).replace(tzinfo=pd.Timestamp(0, tz="UTC").tzinfo)

    def next_open(self):
        d, now = self.data, self._now()
        for order in self.bar_orders:
            self.cancel(order)
        self.bar_orders = []
        if self.pending and self.pending[0] == "exit":
            self.close()  # market: matched at this bar's open
            self.trades.append((self.entry["ts"], self.entry["price"], now, d.open[0], self.pending[1]))
            self.entry = None
        elif self.pending and self.pending[0] == "entry":
            self.buy(size=1)
            price = d.open[0]
            self.entry = {"ts": now, "price": price, "held": 0, "stop": price * (1 - self.p_.stop_loss_pct / 100),
                          "target": price * (1 + self.p_.take_profit_pct / 100)}
        self.pending = None
        if self.entry:
            e = self.entry
            e["held"] += 1
            # Which protective order this bar triggers: the stop wins when the bar reaches both.
            stop_hit = d.open[0] <= e["stop"] or (d.open[0] < e["target"] and d.low[0] <= e["stop"])
            target_hit = not stop_hit and d.high[0] >= e["target"]
            if stop_hit:
                self.bar_orders.append(self.sell(size=1, exectype=bt.Order.Stop, price=e["stop"]))
                e["exit_reason"] = "stop_loss"
            elif target_hit:
                self.bar_orders.append(self.sell(size=1, exectype=bt.Order.Limit, price=e["target"]))
                e["exit_reason"] = "take_profit"

    def notify_order(self, order):
        if order.status == order.Completed and order.issell() and self.entry and order in self.bar_orders:
            self.trades.append((self.entry["ts"], self.entry["price"], self._now(), order.executed.price,
                                self.entry["exit_reason"]))
            self.entry = None

    def next(self):
        d, p = self.data, self.p_
        span = d.high[0] - d.low[0]
        value = (d.close[0] - d.low[0]) / span if span > 0 else math.nan
        if self.entry:
            if not math.isnan(value) and p.ibs_exit_low <= value <= p.ibs_exit_high:
                self.pending = ("exit", "ibs_exit")
            elif self.entry["held"] >= p.max_bars_held:
                self.pending = ("exit", "max_bars")
            elif is_flat_bar(self._now(), 3600, p):
                self.pending = ("exit", "flat_time")
        elif not math.isnan(value) and p.ibs_entry_low <= value <= p.ibs_entry_high and in_entry_window(self._now(), p):
            self.pending = ("entry", value)

    def stop(self):
        if self.entry:
            self.trades.append((self.entry["ts"], self.entry["price"], self._now(), self.data.close[0], "end_of_data"))


def run_backtrader(frame: pd.DataFrame, params: IBSParams):
    index = pd.DatetimeIndex(frame["ts"].to_numpy().view("datetime64[ns]"))
    data = bt.feeds.PandasData(dataname=frame.drop(columns=["ts"]).set_index(index), openinterest=None)
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    cerebro.adddata(data)
    cerebro.addstrategy(IBSReference, p=params)
    cerebro.broker.setcash(1e12)
    strategy = cerebro.run()[0]
    return strategy.trades


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    args = parser.parse_args()
    frame = hourly_bars("CL", args.bars, seed=1)
    params = IBSParams()

    started = time.perf_counter()
    ours = run([Leg("CL", frame, params, 1000.0)], timeframe="1h", product_hours=False).trades  # as backtrader: no calendar
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = run_backtrader(frame, params)
    theirs_s = time.perf_counter() - started

    fmt = lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    ref = [(fmt(a), round(b, 9), fmt(c), round(d, 9), r) for a, b, c, d, r in theirs]
    mine = [(t["entry_time"], round(t["entry_price"], 9), t["exit_time"], round(t["exit_price"], 9), t["exit_reason"])
            for t in ours]
    if ref != mine:
        for i, (x, y) in enumerate(zip(ref, mine)):
            if x != y:
                print(f"first difference at trade {i}:\n  backtrader {x}\n  ours       {y}")
                break
        print(f"trade counts: backtrader {len(ref)}, ours {len(mine)}")
        return 1
    print(f"bars: {len(frame):,}  trades: {len(mine):,} (identical in both)")
    print(f"{'engine':<12}{'seconds':>10}{'bars/s':>14}")
    print(f"{'backtrader':<12}{theirs_s:>10.2f}{len(frame) / theirs_s:>14,.0f}")
    print(f"{'pineops':<12}{ours_s:>10.2f}{len(frame) / ours_s:>14,.0f}")
    print(f"speed-up: {theirs_s / ours_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
