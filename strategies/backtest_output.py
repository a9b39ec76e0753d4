"""The backtest's output files: the trade list as CSV, the equity and drawdown plot, written all or nothing.

Nothing here decides a trade; strategies.backtest re-exports these for its CLI and callers.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

TRADE_COLUMNS = ["symbol", "side", "entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl",
                 "pnl_percent", "exit_reason", "ibs_entry", "ibs_exit", "ml_score", "bars_held"]


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
