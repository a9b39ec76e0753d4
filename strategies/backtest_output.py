"""The backtest's report and output files: the figures of a result, the trade list as CSV, the report as JSON,
the equity and drawdown plot, written all or nothing.

Nothing here decides a trade; strategies.backtest re-exports these for its CLI and callers.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from strategies.calendar import CHICAGO, SESSION_START, _trade_dates, session_dates

TRADE_COLUMNS = ["symbol", "side", "entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl",
                 "pnl_percent", "exit_reason", "ibs_entry", "ibs_exit", "ml_score", "bars_held"]


# --- report ----------------------------------------------------------------------------------
def _session_days(exits: np.ndarray) -> np.ndarray:
    """The CME trade date of each exit (ns); past the calendar's last one (2045) by the 17:00 Chicago rule
    alone, holidays unknown, rather than refusing a report on synthetic data that runs that far."""
    local = pd.DatetimeIndex(exits.view("datetime64[ns]"), tz="UTC").tz_convert(CHICAGO)
    rule = local.tz_localize(None).normalize().values.astype("datetime64[D]") + (
        np.asarray(local.hour) >= SESSION_START.hour).astype("timedelta64[D]")
    past = rule > _trade_dates()[-1]
    if not past.any():
        return session_dates(exits)
    rule[~past] = session_dates(exits[~past])
    return rule


def report(result) -> dict:
    """The figures of a BacktestResult (the CLI's, the admin's and the model page's)."""
    pnl, exits, reasons = result.columns()
    wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    equity = np.cumsum(pnl)
    drawdown = float((np.maximum.accumulate(np.r_[0.0, equity]) - np.r_[0.0, equity]).max()) if len(pnl) else 0.0
    sharpe = None
    if len(pnl):
        daily = pd.Series(pnl).groupby(_session_days(exits)).sum()
        if len(daily) > 1 and daily.std(ddof=1) > 0:
            sharpe = float(daily.mean() / daily.std(ddof=1) * math.sqrt(252))
    return {
        "trades": len(pnl),
        "win_rate": float((pnl > 0).mean()) if len(pnl) else None,
        "total_pnl": round(float(pnl.sum()), 2),
        "average_pnl": round(float(pnl.mean()), 2) if len(pnl) else None,
        "profit_factor": (round(float(wins / losses), 4) if losses > 0 else None),
        "max_drawdown": round(drawdown, 2),
        "sharpe_daily": sharpe,
        "exposure": round(result.bars_in_position / result.bars, 4) if result.bars else 0.0,
        "skipped_signals": len(result.skipped),
        "exit_reasons": pd.Series(reasons).value_counts().to_dict() if reasons else {},
    }


def plot(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = pd.to_datetime([t["exit_time"] for t in result.trades], utc=True)
    equity = np.cumsum([t["pnl"] for t in result.trades])
    drawdown = equity - np.maximum.accumulate(equity) if len(equity) else equity
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=[3, 1])
    top.plot(times, equity, color="#2b7bb9")
    top.set_ylabel("equity $")
    top.set_title("Equity curve")
    bottom.fill_between(times, drawdown, 0, color="#c0392b", alpha=0.5)
    bottom.set_ylabel("drawdown $")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# --- output (all or nothing) -----------------------------------------------------------------
def _write_atomically(outputs: dict[Path, callable]) -> None:
    """Write every output to a temp file first; rename them only when all succeeded."""
    temps = {}
    try:
        for target, writer in outputs.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            temps[target] = Path(tmp)
            writer(Path(tmp))
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def write_trades_csv(trades: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRADE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(trades)


def write_report_json(summary: dict, trades, skipped: list[dict], path: Path) -> None:
    """The report as JSON: the summary's fields, then "trade_list" (one trade a line, written as they come),
    then "skipped"."""
    head = json.dumps(summary, indent=1, default=str)
    with path.open("w") as f:
        f.write(head[:-2] + ',\n "trade_list": [')
        for i, trade in enumerate(trades):
            f.write(("," if i else "") + "\n  " + json.dumps(trade, default=str))
        f.write('\n ],\n "skipped": ' + json.dumps(skipped, default=str) + "\n}\n")
