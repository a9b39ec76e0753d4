"""Backtest of the IBS strategy with the exact fill model, for one instrument or a whole strategy.

Over arrays (strategies.arraybacktest) when it can; else (rolls, a caller's veto, an opening book) bar by bar
through the `Portfolio.step` the live worker runs, the reference the parity tests hold the arrays to. Bad
input is refused with one error naming the row or parameter, and no output file is left behind half-written.
CLI: `python -m strategies.backtest --help`; sklearn and skops are imported only when a model is loaded.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from strategies import arraybacktest, rolls
from strategies.backtest_output import (TRADE_COLUMNS, _write_atomically, plot, report,  # noqa: F401
                                       write_report_json, write_trades_csv)
from strategies.bars import StepBar, step_bars
from strategies.ibs import ClosedTrade, bar_length
from strategies.instruments import CONTRACT_SPECS, DEFAULT_COMMISSION
from strategies.params import IBSParams, ParameterError, parse_value
from strategies.portfolio import Portfolio
from strategies.pnl import pnl_percent, trade_money

UTC = timezone.utc


class BacktestInputError(ValueError):
    """Input that cannot be backtested; the message names the file, row or parameter."""


@dataclass(frozen=True)
class Leg:
    """One instrument of a backtest: its bars and trading terms."""
    root: str
    bars: pd.DataFrame  # ts (int64 ns UTC, bar start), open, high, low, close, volume
    params: IBSParams
    point_value: float
    commission: float = float(DEFAULT_COMMISSION)
    size: int = 1
    ml_scores: np.ndarray | None = None  # probability per bar (NaN: no score), aligned with bars
    contracts: tuple | None = None  # the contract of each bar (the front's), aligned with bars; None: one contract
    held: dict | None = None  # contract → the bars of that contract after its roll (strategies.rolls)
    roll_policy: str = rolls.EXIT
    opening: dict | None = None  # the book at the first bar (InstrumentBook fields: position, pending_entry, …)


class BacktestResult:
    """Trades (sorted by exit, symbol, entry), skipped signals, entries decided on the last bar and never
    filled, bars and bars in a position; `engine`: "arrays" or "per-bar (why the arrays could not)"; `table`:
    the array path's trades as columns (strategies.arraybacktest.TradeTable), rows made only when asked for."""

    def __init__(self, trades: list[dict] | None = None, skipped=None, pending_entries=None, bars: int = 0,
                 bars_in_position: int = 0, engine: str = "", table=None):
        self._trades, self.table, self.engine = trades, table, engine
        self.skipped, self.pending_entries = skipped or [], pending_entries or []
        self.bars, self.bars_in_position = bars, bars_in_position

    @property
    def trades(self) -> list[dict]:
        """The trade rows (dicts, trade_row's keys), made from the table once, on first use."""
        if self._trades is None:
            self._trades = self.table.rows() if self.table is not None else []
        return self._trades

    @trades.setter
    def trades(self, value: list[dict]) -> None:
        self._trades = value

    def trade_rows(self, chunk: int = 20_000):
        """The trade rows one by one; from a table made a chunk at a time and not kept (a million bars'
        trades written without holding all their dicts)."""
        if self._trades is not None or self.table is None:
            yield from self.trades
            return
        for lo in range(0, len(self.table), chunk):
            yield from self.table.rows(lo, lo + chunk)

    def columns(self) -> tuple[np.ndarray, np.ndarray, list]:
        """(P&L $, exit times as int64 ns, exit reasons) of the trades, from the table when there is one."""
        if self._trades is None and self.table is not None:
            c = self.table.columns
            if not len(self.table):
                return np.zeros(0), np.zeros(0, dtype=np.int64), []
            return c["pnl"], c["exit_ns"], [arraybacktest.REASONS[x] for x in c["reason"].tolist()]
        trades = self.trades
        exits = pd.to_datetime([t["exit_time"] for t in trades], utc=True).as_unit("ns").asi8 if trades else []
        return (np.array([t["pnl"] for t in trades], dtype=float), np.asarray(exits, dtype=np.int64),
                [t["exit_reason"] for t in trades])


def _rows(frame: pd.DataFrame, contracts=None) -> list[StepBar]:
    if contracts is not None and len(contracts) != len(frame):
        raise BacktestInputError(f"{len(contracts)} contracts for {len(frame)} bars")
    return step_bars(frame, contracts)


def trade_row(leg: Leg, t: ClosedTrade) -> dict:
    """A closed trade as the backtest reports it; its P&L by the books' money rule (strategies.pnl)."""
    return {"symbol": leg.root, "side": "long", "entry_time": t.entry_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "entry_price": t.entry_price, "exit_time": t.exit_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exit_price": t.exit_price, "size": leg.size,
            "pnl": float(trade_money(t.entry_price, t.exit_price, leg.point_value, leg.size, leg.commission)),
            "pnl_percent": pnl_percent(t.entry_price, t.exit_price), "exit_reason": t.reason,
            "ibs_entry": t.ibs_entry, "ibs_exit": t.ibs_exit, "ml_score": t.ml_score, "bars_held": t.bars_held,
            # when the orders were decided (live: sent at that bar's close)
            "signal_time": _iso(t.entry_signal_ts) if t.entry_signal_ts else None,
            "exit_signal_time": _iso(t.exit_signal_ts or t.exit_ts), "exit_decided": t.decided_reason or t.reason}


def run(legs: list[Leg], *, timeframe: str = "1h", max_positions: int | None = None, use_ml: bool = True,
        product_hours: bool = True, entry_block=None, progress=None, engine: str = "auto") -> BacktestResult:
    """Run the strategy over every leg's bars in time order; trades sorted by exit then symbol.
    `product_hours`: decide by each product's real trading hours, as live (no entry while its market is
    closed or right before an early close, an exit forced before such a close; past the calendar's last
    session, 2045, without them); off only to compare with a reference that knows no calendar.
    `entry_block(root, bar_ts)`: a veto of entries, as the live risk controls (None: allowed). A leg's
    `opening` is its book before the first bar (a session's open). `progress(done, total)`: told how far it
    is, about every 2% bar by bar (it decides nothing). `engine`: "auto" (the arrays when they can), "per_bar"."""
    why = "asked for" if engine == "per_bar" else arraybacktest.unsupported(legs, entry_block)
    if not why:
        out = arraybacktest.run_arrays(legs, seconds=bar_length(timeframe), max_positions=max_positions,
                                       use_ml=use_ml, hours=product_hours, progress=progress)
        return BacktestResult(**out, engine="arrays")
    result = run_per_bar(legs, timeframe=timeframe, max_positions=max_positions, use_ml=use_ml,
                         product_hours=product_hours, entry_block=entry_block, progress=progress)
    result.engine = f"per-bar ({why})"
    return result


def run_per_bar(legs: list[Leg], *, timeframe: str = "1h", max_positions: int | None = None, use_ml: bool = True,
                product_hours: bool = True, entry_block=None, progress=None) -> BacktestResult:
    """`run` bar time by bar time through Portfolio.step, as the live worker steps: the reference path."""
    portfolio = Portfolio({leg.root: leg.params for leg in legs}, timeframe=timeframe, max_positions=max_positions,
                          hours=arraybacktest.BACKTEST_HOURS if product_hours else None)
    for leg in legs:
        for name, value in (leg.opening or {}).items():
            setattr(portfolio.books[leg.root], name, value)
    rows = {leg.root: _rows(leg.bars, leg.contracts) for leg in legs}
    by_root = {leg.root: leg for leg in legs}
    # Walk the union of bar times; at each time every instrument with a bar is stepped together.
    events: dict[int, dict[str, int]] = {}
    for leg in legs:
        for i, ts in enumerate(leg.bars["ts"].to_numpy(dtype=np.int64)):
            events.setdefault(int(ts), {})[leg.root] = i
    held_rows: dict[str, dict[int, StepBar]] = {}  # contract → bar start (ns) → its bar after its roll
    for leg in legs:
        for contract, frame in (leg.held or {}).items():
            stamps = frame["ts"].to_numpy(dtype=np.int64)
            held_rows[contract] = dict(zip(map(int, stamps), _rows(frame, [contract] * len(frame))))
            for ts in stamps:
                events.setdefault(int(ts), {})
    policies = {leg.root: leg.roll_policy for leg in legs}
    in_contract: dict[str, str] = {}  # root → the contract its position (or pending entry) is in
    def score(root, bar):
        leg = by_root[root]
        if not use_ml or leg.ml_scores is None:
            return None
        return float(leg.ml_scores[bar.i])

    result = BacktestResult(trades=[])
    in_position = 0
    every = max(1, len(events) // 50)
    for step, ts in enumerate(sorted(events)):
        if progress is not None and step % every == 0:
            progress(step, len(events))
        bars = {root: rows[root][i] for root, i in events[ts].items()}
        held = {c: held_rows[c][ts] for c in in_contract.values() if ts in held_rows.get(c, {})}
        if not bars and not held:
            continue
        when = next(iter((bars or held).values())).ts
        roll = rolls.plan(bars, held, in_contract, policies)
        veto = (lambda root, at=when: entry_block(root, at)) if entry_block else None
        outcome = portfolio.step(when, bars, score=score, entry_block=veto, manage=roll.manage, force=roll.force)
        for entry in outcome.entries:
            in_contract[entry.root] = bars[entry.root].contract
        for root in list(in_contract):
            if portfolio.books[root].flat:
                del in_contract[root]
        result.trades.extend(trade_row(by_root[root], t) for root, t in outcome.closed)
        in_position += sum(1 for root in bars if portfolio.books[root].position is not None
                           or outcome.results[root].closed)
        result.skipped.extend({"symbol": s.root, "bar_time": _iso(s.bar_ts), "reason": s.reason}
                              for s in outcome.skipped)
    for leg in legs:
        pending = portfolio.books[leg.root].pending_entry
        if pending is not None:
            result.pending_entries.append({"symbol": leg.root, "signal_time": _iso(pending.bar_ts)})
        own = held_rows.get(in_contract.get(leg.root, ""))
        last = max(own.values(), key=lambda r: r.ts) if own else (rows[leg.root] or [None])[-1]
        if last is not None:
            closed = portfolio.books[leg.root].finish(last)
            if closed:
                result.trades.append(trade_row(leg, closed))
    result.trades.sort(key=lambda t: (t["exit_time"], t["symbol"], t["entry_time"]))
    result.bars = sum(len(r) for r in rows.values())
    result.bars_in_position = in_position
    return result


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- input -----------------------------------------------------------------------------------
REQUIRED = ["ts", "open", "high", "low", "close", "volume"]


CHUNK_ROWS = 200_000  # a bars CSV is read this many rows at a time, each chunk kept as compact columns


def load_bars_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate a bars CSV; BacktestInputError names the file and the first bad row."""
    path, parts = Path(path), []
    try:
        for k, chunk in enumerate(pd.read_csv(path, chunksize=CHUNK_ROWS)):
            parts.append({c: _times(chunk[c], str(path), k * CHUNK_ROWS) if c == "ts" else
                          pd.to_numeric(chunk[c], errors="coerce").to_numpy() for c in REQUIRED if c in chunk})
            del chunk
        if not parts:
            return validate_bars(pd.read_csv(path, nrows=0), str(path))
        columns = {c: np.concatenate([part.pop(c) for part in parts]) for c in list(parts[0])}
        del parts
    except FileNotFoundError:
        raise BacktestInputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BacktestInputError(f"{path}: not a readable CSV ({exc})") from None
    return validate_bars(pd.DataFrame(columns, copy=False), str(path))


def _times(column: pd.Series, name: str, first: int = 0) -> np.ndarray:
    """A ts column as int64 ns UTC (ISO-8601 read fast, anything else as pandas can); `first`: its first row."""
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    text = column.astype(str)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise BacktestInputError(f"{name}: line {first + bad + 2}: cannot parse ts {column.iloc[bad]!r}")
    return pd.DatetimeIndex(parsed).as_unit("ns").asi8


def validate_bars(frame: pd.DataFrame, name: str = "bars") -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BacktestInputError(f"{name}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED)}")
    if frame.empty:
        raise BacktestInputError(f"{name}: no rows")

    def row_of(mask) -> int:  # CSV line number: header is line 1
        return int(np.flatnonzero(np.asarray(mask))[0]) + 2

    ts = _times(frame["ts"], name)
    out = pd.DataFrame({"ts": ts})
    for col in ("open", "high", "low", "close", "volume"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            raise BacktestInputError(f"{name}: line {row_of(values.isna())}: {col} is missing or not a number")
        if not np.isfinite(values.to_numpy(dtype=float)).all():
            raise BacktestInputError(f"{name}: line {row_of(~np.isfinite(values.to_numpy(dtype=float)))}: {col} is not finite")
        out[col] = values.to_numpy(dtype=float)
    if (out[["open", "high", "low", "close"]] <= 0).any(axis=None):
        raise BacktestInputError(f"{name}: line {row_of((out[['open', 'high', 'low', 'close']] <= 0).any(axis=1))}: "
                                 "prices must be > 0")
    if (out["high"] < out["low"]).any():
        raise BacktestInputError(f"{name}: line {row_of(out['high'] < out['low'])}: high is below low")
    outside = (out["open"] > out["high"]) | (out["open"] < out["low"]) | (out["close"] > out["high"]) | (out["close"] < out["low"])
    if outside.any():
        raise BacktestInputError(f"{name}: line {row_of(outside)}: open/close outside [low, high]")
    diffs = np.diff(ts)
    if (diffs == 0).any():
        raise BacktestInputError(f"{name}: line {row_of(np.r_[False, diffs == 0])}: duplicate timestamp")
    if (diffs < 0).any():
        raise BacktestInputError(f"{name}: line {row_of(np.r_[False, diffs < 0])}: timestamps not in ascending order")
    return out


def parse_sets(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ParameterError(pair, "expected NAME=VALUE")
        overrides[name.strip()] = parse_value(name.strip(), value.strip())
    return overrides


def _with_scores(legs: list[Leg], roots: list[str], models: Path, timeframe: str) -> list[Leg]:
    """The legs with their models' scores; sklearn and skops are imported here, only when a model is loaded."""
    from strategies import ml

    try:
        if len(legs) == 1:
            return [replace(legs[0], ml_scores=ml.scores_for_backtest(roots[0], legs[0].bars, models, timeframe))]
        frames = {leg.root: leg.bars for leg in legs}
        return [replace(leg, ml_scores=ml.scores(frames, leg.root, models)) for leg in legs]
    except ml.ModelError as exc:
        raise BacktestInputError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m strategies.backtest", description=__doc__.splitlines()[0])
    parser.add_argument("bars", nargs="+", help="bars CSV (ts, open, high, low, close, volume); several with --symbols")
    parser.add_argument("--symbol", help="root of a single-instrument run, e.g. CL")
    parser.add_argument("--symbols", help="comma-separated roots, one per CSV, for a whole-strategy run")
    parser.add_argument("--max-positions", type=int, help="portfolio limit across instruments")
    parser.add_argument("--timeframe", choices=["1h", "1d"], default="1h")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    parser.add_argument("--point-value", type=float)
    parser.add_argument("--commission", type=float, help="$ per contract per side")
    parser.add_argument("--size", type=int, default=1)
    parser.add_argument("--no-ml", action="store_true", help="ignore the ML filter")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    parser.add_argument("--trades", required=True, type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    try:
        roots = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else [(args.symbol or "").upper()]
        if not roots[0]:
            raise BacktestInputError("give --symbol ROOT (or --symbols A,B with one CSV each)")
        if len(roots) != len(args.bars):
            raise BacktestInputError(f"{len(args.bars)} CSV file(s) for {len(roots)} symbol(s)")
        if args.size < 1:
            raise ParameterError("size", f"{args.size} must be at least 1")
        params = IBSParams().with_overrides(parse_sets(args.set))
        legs = []
        for root, path in zip(roots, args.bars):
            spec = CONTRACT_SPECS.get(root)
            point_value = args.point_value or (float(spec.point_value) if spec else None)
            if point_value is None or point_value <= 0:
                raise BacktestInputError(f"unknown root {root}: give --point-value")
            commission = args.commission if args.commission is not None else float(DEFAULT_COMMISSION)
            if commission < 0:
                raise ParameterError("commission", f"{commission} cannot be negative")
            bars = load_bars_csv(path)
            legs.append(Leg(root, bars, params, point_value, commission, args.size))
        past = [leg.root for leg in legs if leg.bars["ts"].iloc[-1] >= arraybacktest.calendar_end(leg.root)]
        if past:
            print(f"note: {', '.join(past)}: bars past the CME calendar's last session (2045) are decided without "
                  "product hours, and their sessions by the 17:00 Chicago rule alone", file=sys.stderr)
        if not args.no_ml:
            legs = _with_scores(legs, roots, Path(args.models), args.timeframe)
        result = run(legs, timeframe=args.timeframe, max_positions=args.max_positions, use_ml=not args.no_ml)
        outputs = {args.trades: lambda p: write_trades_csv(result.trade_rows(), p)}
        if args.report:
            outputs[args.report] = lambda p: write_report_json(report(result), result.trade_rows(), result.skipped, p)
        if args.plot:
            outputs[args.plot] = lambda p: plot(result, p)
        _write_atomically(outputs)
    except (BacktestInputError, ParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = report(result)
    print(f"{summary['trades']} trades, total P&L {summary['total_pnl']}, win rate {summary['win_rate']}, "
          f"max drawdown {summary['max_drawdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
