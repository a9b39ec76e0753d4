"""The per-instrument ML filter: labels, time-ordered training, skops artifacts, safe loading.

A model predicts whether an IBS entry signal at a bar will be profitable under the fill model.
Artifacts are `{ROOT}.skops` (checked node by node against the trainer's own types before skops
builds it, see strategies.modelfile: never unpickled, never a function) and `{ROOT}.json`
(features in order, threshold, window, metrics, versions, the sha256 of the model file). A model
whose feature list differs from the code's refuses to load with an error naming the difference.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier

from strategies.bars import step_bars
from strategies.features import build_features, feature_names
from strategies.modelfile import MAX_FILE_BYTES, ModelFileError, read_forest
from strategies.ibs import InstrumentBook, bar_length, entry_candidate
from strategies.params import IBSParams

FORMAT = "pineops-ibs-filter/1"
SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelError(ValueError):
    """A model file that cannot be used; the message says which file and why."""


class ModelMismatchError(ModelError):
    """The model was trained on another feature list than the code builds."""


@dataclass
class LoadedModel:
    root: str
    model: RandomForestClassifier
    meta: dict

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    def probability(self, rows: pd.DataFrame) -> np.ndarray:
        """P(profitable) per row; NaN where a feature is missing (too little history)."""
        x = rows[self.meta["features"]].to_numpy(dtype=float)
        out = np.full(len(x), np.nan)
        ok = ~np.isnan(x).any(axis=1)
        if ok.any():
            out[ok] = self.model.predict_proba(x[ok])[:, 1]
        return out


# --- labels ----------------------------------------------------------------------------------
def signal_outcomes(bars: pd.DataFrame, params: IBSParams, timeframe: str = "1h") -> pd.DataFrame:
    """Every IBS entry signal of one instrument and the P&L % of the trade it would make alone."""
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
            out.append((int(bars["ts"].iloc[i]), (trade.exit_price - trade.entry_price) / trade.entry_price * 100))
    return pd.DataFrame(out, columns=["ts", "pnl_percent"]).set_index("ts")


# --- training --------------------------------------------------------------------------------
def train_instrument(frames: dict[str, pd.DataFrame], root: str, params: IBSParams, *, seed: int = 42,
                     validation_fraction: float = 0.3, note: str = "") -> tuple[RandomForestClassifier, dict]:
    features = build_features(frames, root)
    outcomes = signal_outcomes(frames[root], params)
    data = features.join(outcomes, how="inner").dropna()
    if len(data) < 50:
        raise ModelError(f"{root}: only {len(data)} labelled signals with full features; need at least 50")
    data = data.sort_index()  # time order: validation is strictly after training, never shuffled
    split = int(len(data) * (1 - validation_fraction))
    names = feature_names(list(frames), root)
    x, y = data[names].to_numpy(dtype=float), (data["pnl_percent"] > 0).to_numpy(dtype=int)
    if len(np.unique(y[:split])) < 2:  # a one-class forest has no P(profitable) to give
        raise ModelError(f"{root}: every training signal has the same outcome; need winners and losers")
    model = RandomForestClassifier(n_estimators=60, max_depth=5, min_samples_leaf=10, random_state=seed, n_jobs=1)
    model.fit(x[:split], y[:split])
    proba = model.predict_proba(x[split:])[:, 1]
    pnl_val = data["pnl_percent"].to_numpy()[split:]
    threshold, metrics = pick_threshold(proba, pnl_val, y[split:])
    ts = data.index.to_numpy()
    meta = {
        "format": FORMAT, "root": root, "features": names, "threshold": threshold,
        "training_window": {"start": _iso(ts[0]), "end": _iso(ts[split - 1]), "signals": int(split)},
        "validation_window": {"start": _iso(ts[split]), "end": _iso(ts[-1]), "signals": int(len(data) - split)},
        "validation": metrics, "seed": seed, "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
        "versions": {"sklearn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "note": note,
    }
    return model, meta


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


def save(model, meta: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, meta_path = out_dir / f"{meta['root']}.skops", out_dir / f"{meta['root']}.json"
    sio.dump(model, model_path, compression=zipfile.ZIP_DEFLATED)
    blob = model_path.read_bytes()
    try:
        read_forest(blob, len(meta["features"]))  # never write a file the loader would refuse
    except ModelFileError as exc:
        model_path.unlink()
        raise ModelError(f"{model_path}: the trained model would be refused at load: {exc}") from None
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return model_path, meta_path


def train_strategy(frames: dict[str, pd.DataFrame], params_by_root: dict[str, IBSParams], out_dir: Path, *,
                   seed: int = 42, note: str = "") -> dict[str, dict]:
    """Train and save one model per root of a strategy; returns each root's metadata."""
    metas = {}
    for root in sorted(frames):
        model, meta = train_instrument(frames, root, params_by_root[root], seed=seed, note=note)
        save(model, meta, out_dir)
        metas[root] = meta
    return metas


# --- loading ---------------------------------------------------------------------------------
def load(root: str, models_dir: Path, expected_features: list[str]) -> LoadedModel:
    """Load and verify `{root}.skops` + `{root}.json`; ModelError names the file and what is wrong.

    Nothing in the model file is executed: its sha256 must be the metadata's, and every node of it
    a type the trainer writes (strategies.modelfile) before skops constructs anything.
    """
    model_path, meta_path = models_dir / f"{root}.skops", models_dir / f"{root}.json"
    if not model_path.is_file() or not meta_path.is_file():
        raise ModelError(f"{root}: model files missing ({model_path.name}, {meta_path.name} in {models_dir})")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: format {meta.get('format') if isinstance(meta, dict) else None!r} "
                         f"is not {FORMAT!r}")
    digest = meta.get("sha256")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise ModelError(f"{meta_path}: no valid sha256 of {model_path.name} (required); retrain with "
                         f"`manage.py train_models`")
    if model_path.stat().st_size > MAX_FILE_BYTES:
        raise ModelError(f"{model_path}: {model_path.stat().st_size} bytes, more than a model file may have")
    blob = model_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ModelError(f"{model_path}: file does not match the checksum in {meta_path.name} (corrupt or replaced)")
    features = meta.get("features") or []
    if features != expected_features:
        missing = [f for f in expected_features if f not in features]
        extra = [f for f in features if f not in expected_features]
        detail = "; ".join(p for p in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
                                       "same names in another order" if not missing and not extra else "") if p)
        raise ModelMismatchError(f"{meta_path}: model features differ from the code's ({detail}); retrain with "
                                 f"`manage.py train_models`")
    trained = str((meta.get("versions") or {}).get("sklearn", ""))
    if trained.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(f"{model_path}: trained with scikit-learn {trained or '?'}, running {sklearn.__version__}; "
                         f"retrain")
    try:
        model = read_forest(blob, len(features))
    except ModelFileError as exc:
        raise ModelError(f"{model_path}: refused: {exc}") from None
    return LoadedModel(root, model, meta)


def scores(frames: dict[str, pd.DataFrame], root: str, models_dir: Path) -> np.ndarray:
    """Model probabilities for every bar of `root` (the backtest's form)."""
    loaded = load(root, models_dir, feature_names(list(frames), root))
    return loaded.probability(build_features(frames, root))


def scores_for_backtest(root: str, bars: pd.DataFrame, models_dir: Path, timeframe: str) -> np.ndarray:
    """Single-instrument CLI form: works only for a model without cross-instrument features."""
    if timeframe != "1h":
        raise ModelError("the ML filter is trained on hourly bars; use --no-ml with --timeframe 1d")
    meta_path = models_dir / f"{root}.json"
    try:
        others = sorted({f.split("_")[1] for f in json.loads(meta_path.read_text()).get("features", [])
                         if f.startswith("x_")})
    except (OSError, ValueError):
        others = []
    if others:
        raise ModelError(f"{root}: its model also reads the bars of {', '.join(others)}; run the whole strategy "
                         f"(--symbols with one CSV each) or pass --no-ml")
    return scores({root: bars}, root, models_dir)


def _iso(ns) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv=None) -> int:
    """`python -m strategies.ml --roots 6A,CL --synthetic HOURS --out models`: train on generated bars."""
    import argparse

    from strategies.synthetic import strategy_bars

    parser = argparse.ArgumentParser(prog="python -m strategies.ml", description="Train IBS filter models.")
    parser.add_argument("--roots", required=True, help="comma-separated roots of one strategy")
    parser.add_argument("--synthetic", type=int, required=True, metavar="HOURS",
                        help="train on this many generated hourly bars per root (demo models)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    roots = [r.strip().upper() for r in args.roots.split(",") if r.strip()]
    frames = strategy_bars(roots, args.synthetic, seed=args.seed)
    metas = train_strategy(frames, {r: IBSParams() for r in roots}, args.out, seed=args.seed,
                           note=f"DEMO MODEL trained on {args.synthetic} generated hourly bars per root "
                                f"(strategies.synthetic, seed {args.seed}); not for live trading")
    for root, meta in metas.items():
        print(f"{root}: threshold {meta['threshold']} validation {meta['validation']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
