"""Backtest speed: PineOps against two references on the same hourly bars, trade for trade, and the CLI's cost.

References (bench only), each interleaved with PineOps in the same run and repeated: backtrader, whose broker
matches the orders (market at the open, stop and limit inside the bar, gaps at the open), and a plain Python
loop writing the fill model out bar by bar. The script asserts identical trade lists (entry and exit time and
price, reason), then prints bars/s: PineOps' run() to its trade table, and with the trade rows made (the dicts
the CLI, the admin and the reports read). Then `python -m strategies.backtest --no-ml` on the same bars as a CSV:
wall time and peak RSS of that process. The load average is printed beside the figures; nothing is asserted
on time. The bars: strategies.synthetic's CL in blocks of 50,000 (one seed each, so that prices stay in CL's
range: its drift would take one series to 3.6e10 over a million bars), on one continuous trading-hours grid.
Run: .venv/bin/python bench/backtest_speed.py [--bars 1000000] [--repeat 3] [--backtrader-bars N] [--per-bar]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.common import load_average  # noqa: E402
from strategies.backtest import Leg, run  # noqa: E402
from strategies.ibs import in_entry_window, is_flat_bar  # noqa: E402
from strategies.params import IBSParams  # noqa: E402
from strategies.synthetic import hourly_bars, trading_hours  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 50_000


def bench_bars(count: int, seed: int = 1) -> pd.DataFrame:
    """`count` CL-like hourly bars: synthetic blocks of BLOCK bars (seeds seed, seed+1, ...) on one time grid."""
    blocks = [hourly_bars("CL", min(BLOCK, count - start), seed=seed + k) for k, start in
              enumerate(range(0, count, BLOCK))]
    frame = pd.concat(blocks, ignore_index=True)
    frame["ts"] = trading_hours("2024-01-02", count)
    return frame


def run_plain(frame: pd.DataFrame, p: IBSParams) -> list[tuple]:
    """The fill model of DESIGN.md as a plain loop over Python lists (UTC windows, no calendar): the trades as
    (entry ns, entry price, exit ns, exit price, reason)."""
    ts = frame["ts"].tolist()
    o, h, lo, c = (frame[k].tolist() for k in ("open", "high", "low", "close"))
    windows, flat = p.windows, p.flat_minute
    down, up = 1 - p.stop_loss_pct / 100, 1 + p.take_profit_pct / 100
    trades, entry, pending_exit, pending_entry = [], None, None, False
    for i in range(len(ts)):
        if pending_exit:
            trades.append((entry[0], entry[1], ts[i], o[i], pending_exit))
            entry = pending_exit = None
        if pending_entry:
            entry = [ts[i], o[i], o[i] * down, o[i] * up, 0]
            pending_entry = False
        span = h[i] - lo[i]
        value = (c[i] - lo[i]) / span if span > 0 else math.nan
        minute = ts[i] // 60_000_000_000 % 1440
        if entry is not None:
            entry[4] += 1
            stop, target = entry[2], entry[3]
            hit = ((o[i], "stop_loss") if o[i] <= stop else (o[i], "take_profit") if o[i] >= target else
                   (stop, "stop_loss") if lo[i] <= stop else (target, "take_profit") if h[i] >= target else None)
            if hit:
                trades.append((entry[0], entry[1], ts[i], hit[0], hit[1]))
                entry = None
            elif p.ibs_exit_low <= value <= p.ibs_exit_high:
                pending_exit = "ibs_exit"
            elif entry[4] >= p.max_bars_held:
                pending_exit = "max_bars"
            elif flat is not None and minute <= flat < minute + 60:
                pending_exit = "flat_time"
        if entry is None and p.ibs_entry_low <= value <= p.ibs_entry_high and any(a <= minute < b for a, b in windows):
            pending_entry = True
    if entry is not None:
        trades.append((entry[0], entry[1], ts[-1], c[-1], "end_of_data"))
    return trades


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


def iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def pineops(frame: pd.DataFrame, params: IBSParams, rows: bool):
    result = run([Leg("CL", frame, params, 1000.0)], timeframe="1h", product_hours=False)  # as the references
    return result.trades if rows else result.table


def first_difference(name: str, ref: list, mine: list) -> int:
    for i, (x, y) in enumerate(zip(ref, mine)):
        if x != y:
            print(f"first difference at trade {i}:\n  {name:<10} {x}\n  pineops    {y}")
            break
    print(f"trade counts: {name} {len(ref)}, pineops {len(mine)}")
    return 1


# Runs the CLI as `python -m` does and reports its own VmHWM (peak RSS of the process after exec; getrusage's
# maxrss of a child would count the pages of this bench it was forked from).
LAUNCH = ("import atexit, runpy, sys\n"
          "atexit.register(lambda: print('VmHWM', next(l.split()[1] for l in open('/proc/self/status')"
          " if l.startswith('VmHWM')), file=sys.stderr))\n"
          "sys.argv = ['strategies.backtest'] + sys.argv[1:]\n"
          "runpy.run_module('strategies.backtest', run_name='__main__', alter_sys=True)\n")


def cli_run(frame: pd.DataFrame) -> tuple[float, float, str]:
    """`python -m strategies.backtest --no-ml` on the bars as a CSV (ISO times), with --report: wall seconds,
    peak RSS MB, its summary line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cl.csv"
        frame.assign(ts=np.datetime_as_string(frame["ts"].to_numpy().view("datetime64[ns]"), unit="s")).to_csv(
            path, index=False)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAUNCH, str(path), "--symbol", "CL", "--no-ml",
                               "--trades", str(Path(tmp) / "t.csv"), "--report", str(Path(tmp) / "r.json")],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"CLI failed: {done.stderr}")
    peak = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM"))) / 1024
    return seconds, peak, done.stdout.strip()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of PineOps beside each reference")
    parser.add_argument("--backtrader-bars", type=int, help="backtrader on the first N bars only (default: all)")
    parser.add_argument("--backtrader-repeat", type=int, default=2, help="backtrader runs (slow: ~10k bars/s)")
    parser.add_argument("--per-bar", action="store_true", help="also the per-bar Portfolio.step path (slow, ~1 GB)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI run")
    args = parser.parse_args()
    frame, params = bench_bars(args.bars), IBSParams()
    bt_frame = frame.iloc[:args.backtrader_bars].reset_index(drop=True) if args.backtrader_bars else frame
    print(f"{os.cpu_count()} CPUs, load average {load_average():.2f} at the start; {len(frame):,} hourly bars")

    def mine_of(trades):
        return [(t["entry_time"], round(t["entry_price"], 9), t["exit_time"], round(t["exit_price"], 9),
                 t["exit_reason"]) for t in trades]

    times = {"pineops table": [], "pineops rows": [], "plain loop": [], "backtrader": [], "per-bar step": []}
    ours = None
    for round_ in range(args.repeat):
        for name, reference in [("plain loop", lambda: run_plain(frame, params)),
                                ("backtrader", lambda: run_backtrader(bt_frame, params)),
                                ("per-bar step", lambda: run([Leg("CL", frame, params, 1000.0)], product_hours=False,
                                                             engine="per_bar").trades)]:
            if (name == "backtrader" and round_ >= args.backtrader_repeat) or (name == "per-bar step" and (
                    not args.per_bar or round_)):
                continue
            for rows in (False, True):  # the subject just before each reference
                started = time.perf_counter()
                out = pineops(frame, params, rows)
                times["pineops rows" if rows else "pineops table"].append(time.perf_counter() - started)
                ours = out if rows else ours
            started = time.perf_counter()
            theirs = reference()
            times[name].append(time.perf_counter() - started)
            mine = mine_of(ours)
            if name == "plain loop":
                ref = [(iso(a), round(b, 9), iso(c), round(d, 9), r) for a, b, c, d, r in theirs]
            elif name == "backtrader":
                fmt = lambda ts: ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
                ref = [(fmt(a), round(b, 9), fmt(c), round(d, 9), r) for a, b, c, d, r in theirs]
                mine = mine_of(pineops(bt_frame, params, True)) if bt_frame is not frame else mine
            else:
                ref = mine_of(theirs)
            if ref != mine:
                return first_difference(name, ref, mine)
            print(f"round {round_ + 1}: {name} on {len(bt_frame if name == 'backtrader' else frame):,} bars: "
                  f"{len(ref):,} trades, identical; load average {load_average():.2f}", flush=True)
    print(f"\n{'engine':<16}{'seconds (median)':>18}{'bars/s':>14}   spread")
    for name, values in times.items():
        if values:
            n = len(bt_frame) if name == "backtrader" else len(frame)
            print(f"{name:<16}{statistics.median(values):>18.3f}{n / statistics.median(values):>14,.0f}   "
                  f"{spread(values)}")
    sub = statistics.median(times["pineops rows"])
    for name in ("plain loop", "backtrader", "per-bar step"):
        if times[name]:
            n = len(bt_frame) if name == "backtrader" else len(frame)
            print(f"pineops (rows) vs {name}: {statistics.median(times[name]) / n * len(frame) / sub:.1f}x faster")
    if not args.no_cli:
        seconds, peak, summary = cli_run(frame)
        print(f"CLI (python -m strategies.backtest --no-ml, CSV of {len(frame):,} bars, with product hours): "
              f"{seconds:.2f} s wall, peak RSS {peak:.0f} MB; {summary}")
    print(f"load average {load_average():.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
