"""Purged, embargoed walk-forward folds over one instrument's labelled signals (plain numpy).

A signal is decided at bar `entry[i]` and its label is known only at bar `label_end[i]` (the bar its
trade exits on). A fold tests a contiguous block of bars; it trains only on signals whose whole label
— and `embargo` bars after it — ends before the block, so no bar of the block reaches training.
Never shuffles, never looks at prices: the caller's indices in, index arrays out, for tests to check.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    number: int
    test_start: int  # first bar of the evaluation block
    test_stop: int  # one past its last bar
    train: np.ndarray  # signals known before the block (label horizon purged, embargo kept)
    fit: np.ndarray  # the part of `train` the fold's model is fitted on
    validate: np.ndarray  # the part of `train` its threshold is chosen on (after fit's labels + embargo)
    test: np.ndarray  # signals decided inside the block


def inner_split(signals: np.ndarray, entry: np.ndarray, label_end: np.ndarray, *, fraction: float = 0.3,
                embargo: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validate): the first 1 − fraction of `signals` (time order) to fit; the rest to validate,
    less those decided before fit's last label resolved plus `embargo` bars."""
    signals = np.asarray(signals, dtype=np.int64)
    split = int(len(signals) * (1 - fraction))
    fit, rest = signals[:split], signals[split:]
    if not len(fit):
        return fit, rest[:0]
    horizon = int(np.max(label_end[fit])) + embargo
    return fit, rest[entry[rest] > horizon]


def walk_forward_folds(n_bars: int, entry: np.ndarray, label_end: np.ndarray, *, folds: int = 4,
                       embargo: int = 24, first_train_fraction: float = 0.4,
                       validation_fraction: float = 0.3) -> list[Fold]:
    """Expanding-window folds: the bars after the first `first_train_fraction` are cut into `folds`
    equal blocks; fold k tests block k and trains on every signal whose label ends more than `embargo`
    bars before it. `entry` and `label_end` are bar indices per signal, in time order."""
    entry, label_end = np.asarray(entry, dtype=np.int64), np.asarray(label_end, dtype=np.int64)
    if len(entry) and (np.any(np.diff(entry) < 0) or np.any(label_end < entry)):
        raise ValueError("signals must be in time order and each label must end at or after its entry")
    first = int(n_bars * first_train_fraction)
    edges = np.linspace(first, n_bars, folds + 1).astype(np.int64)
    out = []
    for k in range(folds):
        start, stop = int(edges[k]), int(edges[k + 1])
        train = np.flatnonzero(label_end < start - embargo)
        test = np.flatnonzero((entry >= start) & (entry < stop))
        fit, validate = inner_split(train, entry, label_end, fraction=validation_fraction, embargo=embargo)
        out.append(Fold(k + 1, start, stop, train, fit, validate, test))
    return out


__all__ = ["Fold", "inner_split", "walk_forward_folds"]
