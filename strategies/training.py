"""Training the per-instrument ML filter: labels, purged walk-forward evaluation, the shipped model.

Every figure to trust comes from folds the model and its threshold never saw (strategies.walkforward);
the with/without comparison is strategies.backtest over those folds. Never shuffles, never reads a bar
of an evaluation fold to fit or to choose a threshold, never writes a file (strategies.ml saves).
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import skops
from sklearn.ensemble import RandomForestClassifier

from strategies import backtest
from strategies.bars import step_bars
from strategies.features import build_features, feature_names, feature_row
from strategies.ibs import InstrumentBook, bar_length, entry_candidate
from strategies.instruments import CONTRACT_SPECS, DEFAULT_COMMISSION
from strategies.ml import FORMAT, ModelError, _iso, save
from strategies.params import IBSParams
from strategies.walkforward import inner_split, walk_forward_folds


# --- labels ----------------------------------------------------------------------------------
def signal_outcomes(bars: pd.DataFrame, params: IBSParams, timeframe: str = "1h") -> pd.DataFrame:
    """Every IBS entry signal of one instrument, the P&L % of the trade it would make alone, and the
    start (ns) of the bar that trade exits on: the label is known only then (its horizon)."""
    rows = step_bars(bars)
    seconds = bar_length(timeframe)
    out = []
    for i, bar in enumerate(rows[:-1]):
        signal = entry_candidate(bar, params, seconds)
        if signal is None:
            continue
        book = InstrumentBook(params, seconds)
        book.accept_entry(signal)
        trade = None
        for nxt in rows[i + 1:]:
            res = book.on_bar(nxt)
            if res.closed:
                trade = res.closed[0]
                break
        trade = trade or book.finish(rows[-1])
        if trade is not None:
            out.append((int(bars["ts"].iloc[i]), (trade.exit_price - trade.entry_price) / trade.entry_price * 100,
                        int(pd.Timestamp(trade.exit_ts).value)))
    return pd.DataFrame(out, columns=["ts", "pnl_percent", "exit_ts"]).set_index("ts")


@dataclass
class Labelled:
    """One instrument's signals with full features, in time order, and where each sits among its bars."""
    data: pd.DataFrame  # features + pnl_percent + exit_ts, index: the signal bar's ts (ns)
    names: list[str]
    entry: np.ndarray  # bar index of each signal (its features use bars up to it)
    label_end: np.ndarray  # bar index its trade exits on (its label uses bars up to it)
    features: pd.DataFrame  # every bar's feature row (the backtest's scores)

    @property
    def x(self) -> np.ndarray:
        return self.data[self.names].to_numpy(dtype=float)

    @property
    def y(self) -> np.ndarray:
        return (self.data["pnl_percent"] > 0).to_numpy(dtype=int)

    @property
    def pnl(self) -> np.ndarray:
        return self.data["pnl_percent"].to_numpy(dtype=float)


def labelled_signals(frames: dict[str, pd.DataFrame], root: str, params: IBSParams, *,
                     build=build_features) -> Labelled:
    features = build(frames, root)
    data = features.join(signal_outcomes(frames[root], params), how="inner").dropna().sort_index()
    bar_ts = frames[root]["ts"].to_numpy(dtype=np.int64)
    entry = np.searchsorted(bar_ts, data.index.to_numpy(dtype=np.int64))
    label_end = np.maximum(np.searchsorted(bar_ts, data["exit_ts"].to_numpy(dtype=np.int64)), entry)
    return Labelled(data, feature_names(list(frames), root), entry, label_end, features)


# --- training --------------------------------------------------------------------------------
def _forest(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=60, max_depth=5, min_samples_leaf=10, random_state=seed, n_jobs=1)


def train_instrument(frames: dict[str, pd.DataFrame], root: str, params: IBSParams, *, seed: int = 42,
                     validation_fraction: float = 0.3, note: str = "", folds: int = 4, embargo: int = 24,
                     source: dict | None = None, trained_at: datetime | None = None,
                     point_value: float | None = None, commission: float | None = None, build=build_features,
                     fold_dir: Path | None = None) -> tuple[RandomForestClassifier, dict]:
    """Walk-forward evaluation (strategies.walkforward), then the shipped model: fitted on the first
    1 − validation_fraction of all signals, its threshold chosen on the rest after their labels' horizon
    and `embargo` bars. The figures to trust are `walk_forward` and `comparison`, never `validation`."""
    lab = labelled_signals(frames, root, params, build=build)
    if len(lab.data) < 50:
        raise ModelError(f"{root}: only {len(lab.data)} labelled signals with full features; need at least 50")
    x, y, pnl = lab.x, lab.y, lab.pnl
    fit, validate = inner_split(np.arange(len(x)), lab.entry, lab.label_end, fraction=validation_fraction,
                                embargo=embargo)
    if len(np.unique(y[fit])) < 2:  # a one-class forest has no P(profitable) to give
        raise ModelError(f"{root}: every training signal has the same outcome; need winners and losers")
    model = _forest(seed).fit(x[fit], y[fit])
    threshold, metrics = pick_threshold(_proba(model, x[validate]), pnl[validate], y[validate])
    spec = CONTRACT_SPECS.get(root)
    point_value = point_value or (float(spec.point_value) if spec else 1.0)
    commission = float(DEFAULT_COMMISSION) if commission is None else float(commission)
    report = walk_forward(frames, root, params, lab, folds=folds, embargo=embargo, seed=seed, build=build,
                          validation_fraction=validation_fraction, point_value=point_value, commission=commission,
                          fold_dir=fold_dir)
    ts = lab.data.index.to_numpy()
    bar_ts = frames[root]["ts"].to_numpy(dtype=np.int64)
    meta = {
        **_meta_base(root, lab.names, params, seed), "threshold": threshold, "note": note,
        "trained_at": trained_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if trained_at else None,
        "data_source": {**(source or {"kind": "unknown"}), "start": _iso(bar_ts[0]), "end": _iso(bar_ts[-1]),
                        "bars": int(len(bar_ts))},
        "training_window": {"start": _iso(ts[fit[0]]), "end": _iso(ts[fit[-1]]), "signals": int(len(fit)),
                            "label_end": _iso(bar_ts[lab.label_end[fit].max()])},
        "validation_window": ({"start": _iso(ts[validate[0]]), "end": _iso(ts[validate[-1]]),
                               "signals": int(len(validate))} if len(validate) else {"signals": 0}),
        "validation": metrics,
        "final_model": (f"fitted on the first {1 - validation_fraction:.0%} of all {len(x)} labelled signals "
                        f"(training_window), threshold chosen on the later signals decided more than {embargo} "
                        f"bars after the last training label ended (validation, where the threshold was "
                        f"picked: optimistic); the out-of-sample figures are walk_forward and comparison"),
        "walk_forward": report["walk_forward"], "comparison": report["comparison"],
        "point_value": point_value, "commission_per_side": commission,
    }
    return model, meta


def _meta_base(root: str, names: list[str], params: IBSParams, seed: int) -> dict:
    return {"format": FORMAT, "root": root, "features": names, "seed": seed,
            "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
            "versions": {"sklearn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__,
                         "python": platform.python_version()}}


def _proba(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[:, 1] if len(x) else np.zeros(0)


def _figures(proba: np.ndarray, pnl: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Signals, what the filter takes at `threshold`, and both groups' win rate and mean P&L %."""
    taken = proba >= threshold
    mean = lambda a: float(a.mean()) if len(a) else None  # noqa: E731
    return {"signals": int(len(pnl)), "base_win_rate": mean(y), "base_mean_pnl_percent": mean(pnl),
            "taken": int(taken.sum()), "win_rate": mean(y[taken]), "mean_pnl_percent": mean(pnl[taken])}


def walk_forward(frames: dict[str, pd.DataFrame], root: str, params: IBSParams, lab: Labelled, *, folds: int,
                 embargo: int, seed: int, validation_fraction: float, point_value: float, commission: float,
                 build=build_features, fold_dir: Path | None = None) -> dict:
    """Per fold: a model fitted and a threshold chosen on what was known before the fold (the shipped
    model's procedure), then scored on the fold as live would score it, and the fold's bars backtested
    (strategies.backtest) with that filter and without any. The fold's feature rows are checked against
    the live form (features.feature_row); where they differ, a feature looks ahead and the live form is used."""
    bars = frames[root]
    bar_ts = bars["ts"].to_numpy(dtype=np.int64)
    x, y, pnl = lab.x, lab.y, lab.pnl
    rows, with_trades, without_trades, look_ahead = [], [], [], set()
    for fold in walk_forward_folds(len(bars), lab.entry, lab.label_end, folds=folds, embargo=embargo,
                                   validation_fraction=validation_fraction):
        lo, hi = fold.test_start, fold.test_stop
        row = {"fold": fold.number, "test_window": {"start": _iso(bar_ts[lo]), "end": _iso(bar_ts[hi - 1]),
                                                    "bars": hi - lo, "first_bar": lo},
               "train_signals": int(len(fold.train)), "fit_signals": int(len(fold.fit)),
               "validate_signals": int(len(fold.validate)), "test_signals": int(len(fold.test))}
        if len(fold.train):
            row["train_window"] = {"start": _iso(bar_ts[lab.entry[fold.train[0]]]),
                                   "label_end": _iso(bar_ts[lab.label_end[fold.train].max()]),
                                   "last_label_bar": int(lab.label_end[fold.train].max())}
        if len(fold.fit) < 30 or len(np.unique(y[fold.fit])) < 2 or len(fold.validate) < 10 or not len(fold.test):
            rows.append({**row, "skipped": "too few signals before the fold to fit and choose a threshold"})
            continue
        model = _forest(seed).fit(x[fold.fit], y[fold.fit])
        threshold, _ = pick_threshold(_proba(model, x[fold.validate]), pnl[fold.validate], y[fold.validate])
        table = lab.features.iloc[lo:hi][lab.names].copy()
        leaks = _looking_ahead(frames, root, build, table, lab.data.index.to_numpy()[fold.test])
        if leaks:
            look_ahead |= leaks
            for ts in lab.data.index.to_numpy()[fold.test]:
                table.loc[ts] = feature_row(frames, root, int(ts), build=build)[lab.names].to_numpy(dtype=float)
        scores = np.full(len(table), np.nan)
        ok = ~np.isnan(table.to_numpy(dtype=float)).any(axis=1)
        if ok.any():
            scores[ok] = model.predict_proba(table.to_numpy(dtype=float)[ok])[:, 1]
        leg = backtest.Leg(root, bars.iloc[lo:hi].reset_index(drop=True), replace(params, ml_threshold=threshold),
                           point_value, commission, ml_scores=scores)
        with_, without = backtest.run([leg]), backtest.run([leg], use_ml=False)
        with_trades += with_.trades
        without_trades += without.trades
        rows.append({**row, "threshold": threshold,
                     "in_sample": _figures(_proba(model, x[fold.fit]), pnl[fold.fit], y[fold.fit], threshold),
                     "test": _figures(scores[lab.entry[fold.test] - lo], pnl[fold.test], y[fold.test], threshold),
                     "with_filter": backtest_figures(with_.trades), "without_filter": backtest_figures(without.trades)})
        if fold_dir is not None:
            save(model, {**_meta_base(root, lab.names, params, seed), "threshold": threshold,
                         "note": f"walk-forward fold {fold.number} (evaluation only)"}, fold_dir / f"fold{fold.number}")
    tested = [r for r in rows if "test" in r]
    with_all, without_all = backtest_figures(with_trades), backtest_figures(without_trades)
    return {
        "walk_forward": {
            "folds": rows, "embargo_bars": embargo, "purge": "label horizon (entry bar to exit bar)",
            "inner_validation_fraction": validation_fraction, "look_ahead": sorted(look_ahead),
            "test": _pooled([r["test"] for r in tested]), "in_sample": _pooled([r["in_sample"] for r in tested]),
        },
        "comparison": {"with_filter": with_all, "without_filter": without_all, "folds": len(tested),
                       "helps": bool(tested) and with_all["total_pnl"] > without_all["total_pnl"],
                       "how": "strategies.backtest over each evaluation fold's bars, this instrument alone, with "
                              "the fold's model and threshold and with --no-ml; trades of all folds together"},
    }


def backtest_figures(trades: list[dict]) -> dict:
    """Trades, win rate, P&L and max drawdown of a list of backtest trades (strategies.backtest.report)."""
    figures = backtest.report(backtest.BacktestResult(trades=sorted(trades, key=lambda t: (t["exit_time"], t["symbol"]))))
    return {k: figures[k] for k in ("trades", "win_rate", "total_pnl", "max_drawdown")}


def _pooled(figures: list[dict]) -> dict:
    """The folds' signal figures taken together (weighted by their counts)."""
    signals, taken = sum(f["signals"] for f in figures), sum(f["taken"] for f in figures)

    def weighted(key, weight):
        total = sum(f[weight] for f in figures if f[key] is not None)
        return sum(f[key] * f[weight] for f in figures if f[key] is not None) / total if total else None
    return {"signals": signals, "taken": taken, "base_win_rate": weighted("base_win_rate", "signals"),
            "base_mean_pnl_percent": weighted("base_mean_pnl_percent", "signals"),
            "win_rate": weighted("win_rate", "taken"), "mean_pnl_percent": weighted("mean_pnl_percent", "taken")}


def _looking_ahead(frames, root, build, table: pd.DataFrame, signal_ts: np.ndarray, samples: int = 6) -> set[str]:
    """Features whose value at a sample of the fold's signals differs from the live form's (look-ahead)."""
    if not len(signal_ts):
        return set()
    found = set()
    for ts in signal_ts[np.unique(np.linspace(0, len(signal_ts) - 1, samples).astype(int))]:
        live = feature_row(frames, root, int(ts), build=build)[table.columns].to_numpy(dtype=float)
        seen = table.loc[ts].to_numpy(dtype=float)
        same = np.isclose(live, seen, rtol=1e-9, atol=1e-12) | (np.isnan(live) & np.isnan(seen))
        found |= {name for name, ok in zip(table.columns, same) if not ok}
    return found


def pick_threshold(proba: np.ndarray, pnl: np.ndarray, y: np.ndarray, candidates=None) -> tuple[float, dict]:
    """The threshold with the best mean P&L % of taken validation signals (at least 10 taken)."""
    candidates = candidates if candidates is not None else np.round(np.arange(0.40, 0.71, 0.02), 2)
    base = {"signals": int(len(pnl)), "base_win_rate": float(y.mean()) if len(y) else None,
            "base_mean_pnl_percent": float(pnl.mean()) if len(pnl) else None}
    best = (0.5, -math.inf, None)
    for t in candidates:
        taken = proba >= t
        if taken.sum() >= 10:
            score = float(pnl[taken].mean())
            if score > best[1]:
                best = (float(t), score, taken)
    threshold, score, taken = best
    if taken is None:
        return 0.5, {**base, "taken": 0}
    return threshold, {**base, "taken": int(taken.sum()), "win_rate": float(y[taken].mean()),
                       "mean_pnl_percent": score}


def train_strategy(frames: dict[str, pd.DataFrame], params_by_root: dict[str, IBSParams], out_dir: Path, *,
                   seed: int = 42, note: str = "", source: dict | None = None, trained_at: datetime | None = None,
                   commission_by_root: dict[str, float] | None = None, **options) -> dict[str, dict]:
    """Train, evaluate walk-forward and save one model per root of a strategy; returns each root's metadata."""
    metas = {}
    for root in sorted(frames):
        model, meta = train_instrument(frames, root, params_by_root[root], seed=seed, note=note, source=source,
                                       trained_at=trained_at, commission=(commission_by_root or {}).get(root),
                                       **options)
        _, meta_path = save(model, meta, out_dir)
        metas[root] = json.loads(meta_path.read_text())  # as saved: with the model file's sha256
    return metas


def summary_line(root: str, meta: dict) -> str:
    """One line per trained model: its threshold and what the walk-forward says about it."""
    wf, cmp = meta["walk_forward"]["test"], meta["comparison"]
    w, wo = cmp["with_filter"], cmp["without_filter"]
    verdict = "helps" if cmp["helps"] else "DOES NOT HELP"
    return (f"{root}: threshold {meta['threshold']}; walk-forward {len(meta['walk_forward']['folds'])} folds, "
            f"{wf['taken']}/{wf['signals']} signals taken, win rate {_pct(wf['win_rate'])} "
            f"(all {_pct(wf['base_win_rate'])}); out of sample with filter {w['trades']} trades P&L {w['total_pnl']} "
            f"max DD {w['max_drawdown']}, without {wo['trades']} trades P&L {wo['total_pnl']} max DD "
            f"{wo['max_drawdown']}: the filter {verdict}"
            + (f"; LOOK-AHEAD in {', '.join(meta['walk_forward']['look_ahead'])}"
               if meta["walk_forward"]["look_ahead"] else ""))


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1%}"
