"""The per-instrument ML filter: skops artifacts, safe loading, scores (training: strategies.training).

A model predicts whether an IBS entry signal at a bar will be profitable under the fill model.
Artifacts are `{ROOT}.skops` (checked node by node against the trainer's own types before skops
builds it, see strategies.modelfile: never unpickled, never a function) and `{ROOT}.json`
(features in order, threshold, windows, data source, walk-forward figures and the out-of-sample
with/without comparison, versions, the sha256 of the model file). A model
whose feature list differs from the code's refuses to load with an error naming the difference.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from strategies.features import build_features, feature_names
from strategies.modelfile import MAX_FILE_BYTES, ModelFileError, read_forest
from strategies.params import IBSParams

if TYPE_CHECKING:  # sklearn and skops are imported where a model is saved or loaded, not by every importer
    from sklearn.ensemble import RandomForestClassifier

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
    positions: dict = field(default_factory=dict, repr=False, compare=False)  # a row's names → its model features' positions

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

    def probability_of(self, names: list[str], values: np.ndarray) -> float:
        """`probability` of one row given as feature names and their values (the live scorer's, no DataFrame)."""
        key = tuple(names)
        at = self.positions.get(key)
        if at is None:
            missing = [f for f in self.meta["features"] if f not in names]
            if missing:
                raise KeyError(f"{missing} not in the feature row")
            at = self.positions[key] = np.array([names.index(f) for f in self.meta["features"]], dtype=np.intp)
        x = np.asarray(values, dtype=float)[at]
        if np.isnan(x).any():
            return math.nan
        return float(self.model.predict_proba(x[None, :])[0, 1])


def save(model, meta: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write `{root}.skops` and `{root}.json`. A model file that already holds the same forest (same
    trees, same parameters) is kept byte for byte, so retraining on the same data changes no score."""
    import skops.io as sio

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, meta_path = out_dir / f"{meta['root']}.skops", out_dir / f"{meta['root']}.json"
    fresh = out_dir / f".{meta['root']}.skops.new"
    try:
        sio.dump(model, fresh, compression=zipfile.ZIP_DEFLATED)
        blob = fresh.read_bytes()
        try:
            read_forest(blob, len(meta["features"]))  # never write a file the loader would refuse
        except ModelFileError as exc:
            raise ModelError(f"{model_path}: the trained model would be refused at load: {exc}") from None
        if model_path.is_file() and _same_forest(model_path.read_bytes(), model, len(meta["features"])):
            blob = model_path.read_bytes()
        else:
            fresh.replace(model_path)
    finally:
        fresh.unlink(missing_ok=True)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return model_path, meta_path


def _same_forest(blob: bytes, model: RandomForestClassifier, n_features: int) -> bool:
    try:
        old = read_forest(blob, n_features)
    except ModelFileError:
        return False
    if old.get_params() != model.get_params() or len(old.estimators_) != len(model.estimators_):
        return False
    for a, b in zip(old.estimators_, model.estimators_):
        sa, sb = a.tree_.__getstate__(), b.tree_.__getstate__()
        if not (np.array_equal(sa["nodes"], sb["nodes"]) and np.array_equal(sa["values"], sb["values"])):
            return False
    return True


# --- loading ---------------------------------------------------------------------------------
def load(root: str, models_dir: Path, expected_features: list[str], *, reader=read_forest) -> LoadedModel:
    """Load and verify `{root}.skops` + `{root}.json`; ModelError names the file and what is wrong.

    Nothing in the model file is executed: its sha256 must be the metadata's, and every node of it
    a type the trainer writes (strategies.modelfile) before skops constructs anything. `reader`:
    strategies.forest.read_array_forest serves the same forest from its arrays, without sklearn.
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
    running = metadata.version("scikit-learn")  # sklearn itself is imported by the reader that needs it
    trained = str((meta.get("versions") or {}).get("sklearn", ""))
    if trained.split(".")[:2] != running.split(".")[:2]:
        raise ModelError(f"{model_path}: trained with scikit-learn {trained or '?'}, running {running}; retrain")
    try:
        model = reader(blob, len(features))
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


TRAINING = ("signal_outcomes", "labelled_signals", "train_instrument", "train_strategy", "pick_threshold",
            "walk_forward", "summary_line")


def __getattr__(name):
    """The trainer lives in strategies.training (it needs the backtest, which needs this module)."""
    if name in TRAINING:
        from strategies import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> int:
    """`python -m strategies.ml --roots 6A,CL --synthetic HOURS --out models`: train on generated bars."""
    import argparse

    from strategies.synthetic import strategy_bars
    from strategies.training import summary_line, train_strategy

    parser = argparse.ArgumentParser(prog="python -m strategies.ml", description="Train IBS filter models.")
    parser.add_argument("--roots", required=True, help="comma-separated roots of one strategy")
    parser.add_argument("--synthetic", type=int, required=True, metavar="HOURS",
                        help="train on this many generated hourly bars per root (demo models)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, default=4, help="walk-forward evaluation folds")
    parser.add_argument("--embargo", type=int, default=24, help="bars between a training label's end and a fold")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    roots = [r.strip().upper() for r in args.roots.split(",") if r.strip()]
    frames = strategy_bars(roots, args.synthetic, seed=args.seed)
    source = {"kind": "generated", "generator": "strategies.synthetic", "seed": args.seed,
              "detail": f"{args.synthetic} generated hourly bars per root"}
    metas = train_strategy(frames, {r: IBSParams() for r in roots}, args.out, seed=args.seed, source=source,
                           trained_at=datetime.now(timezone.utc), folds=args.folds, embargo=args.embargo,
                           note=f"DEMO MODEL trained on {args.synthetic} generated hourly bars per root "
                                f"(strategies.synthetic, seed {args.seed}); not for live trading")
    for root, meta in metas.items():
        print(summary_line(root, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
