"""Walk-forward training: purged and embargoed folds, a threshold chosen before the fold, honest figures.

The fold indices are checked directly (label horizon included), a perturbation of a fold's bars must
leave that fold's model and threshold untouched, a planted look-ahead must show in-sample only, and
the with/without comparison must be what strategies.backtest gives on the evaluation folds.
"""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from strategies import backtest, ml, training
from strategies.features import build_features
from strategies.params import IBSParams
from strategies.synthetic import strategy_bars
from strategies.walkforward import inner_split, walk_forward_folds

ROOTS = ["CL", "GC"]
EMBARGO = 24


@pytest.fixture(scope="module")
def frames():
    return strategy_bars(ROOTS, 3000, seed=3)


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("wf")
    metas = training.train_strategy(frames, {r: IBSParams() for r in ROOTS}, out / "models", seed=3, embargo=EMBARGO,
                              fold_dir=out / "folds", source={"kind": "generated"})
    return out, metas


def test_no_training_signal_of_a_fold_reaches_its_evaluation_bars_label_horizon_and_embargo_included(frames):
    lab = training.labelled_signals(frames, "CL", IBSParams())
    assert (lab.label_end > lab.entry).all()  # every label needs later bars: the horizon is real
    folds = walk_forward_folds(len(frames["CL"]), lab.entry, lab.label_end, embargo=EMBARGO)
    assert len(folds) == 4
    purged_somewhere = False
    for fold in folds:
        assert len(fold.train) and len(fold.test)
        # every bar a training signal used — its features (up to entry) and its label (up to its exit) —
        # lies more than the embargo before the evaluation block
        assert (lab.entry[fold.train] <= lab.label_end[fold.train]).all()
        assert lab.label_end[fold.train].max() < fold.test_start - EMBARGO
        assert ((lab.entry[fold.test] >= fold.test_start) & (lab.entry[fold.test] < fold.test_stop)).all()
        assert not set(fold.train) & set(fold.test)
        # decided before the fold but resolved too close to it (or in it): purged, not trained on
        decided_before = np.flatnonzero(lab.entry < fold.test_start)
        purged = np.setdiff1d(decided_before, fold.train)
        purged_somewhere |= bool(len(purged))
        assert (lab.label_end[purged] >= fold.test_start - EMBARGO).all()
        # the inner split: fit and validate are both inside train, validate after fit's labels + embargo
        assert set(fold.fit) | set(fold.validate) <= set(fold.train) and not set(fold.fit) & set(fold.validate)
        assert lab.label_end[fold.fit].max() + EMBARGO < lab.entry[fold.validate].min()
        assert lab.label_end[fold.validate].max() < fold.test_start
    assert purged_somewhere  # the purge did remove signals whose labels ran into a fold
    assert [f.test_start for f in folds[1:]] == [f.test_stop for f in folds[:-1]]  # blocks tile the rest


def test_inner_split_drops_validation_signals_decided_before_the_fit_labels_resolve():
    entry = np.arange(0, 100, 5)
    label_end = entry + 12
    fit, validate = inner_split(np.arange(len(entry)), entry, label_end, fraction=0.3, embargo=4)
    assert list(fit) == list(range(14))  # the first 70 %, untouched (the shipped model's training set)
    horizon = label_end[fit].max() + 4
    assert list(validate) == [i for i in range(14, 20) if entry[i] > horizon] and len(validate) < 6


def test_folds_refuse_signals_out_of_time_order():
    with pytest.raises(ValueError, match="time order"):
        walk_forward_folds(100, np.array([5, 3]), np.array([6, 9]))


def test_the_fold_metadata_shows_the_purge(trained):
    _, metas = trained
    for meta in metas.values():
        folds = meta["walk_forward"]["folds"]
        assert len(folds) == 4 and meta["walk_forward"]["embargo_bars"] == EMBARGO
        for row in folds:
            assert row["train_window"]["last_label_bar"] + EMBARGO < row["test_window"]["first_bar"]
            assert row["train_window"]["label_end"] < row["test_window"]["start"]
        assert meta["walk_forward"]["look_ahead"] == []
        assert meta["data_source"]["kind"] == "generated" and meta["data_source"]["start"] < meta["data_source"]["end"]


def test_changing_a_folds_bars_changes_nothing_its_model_and_threshold_were_made_from(frames, trained):
    """Fold 2's threshold and in-sample figures come from bars before it: rewrite its bars (and all after)
    and they stay the same, while its evaluation figures change."""
    _, metas = trained
    fold = metas["CL"]["walk_forward"]["folds"][1]
    start = fold["test_window"]["first_bar"]
    rng = np.random.default_rng(0)
    changed = {}
    for root, frame in frames.items():
        f = frame.copy()
        factor = np.exp(np.cumsum(rng.normal(0, 0.004, len(f) - start)))
        for col in ("open", "high", "low", "close"):
            f.loc[start:, col] = f[col].to_numpy()[start:] * factor
        changed[root] = f
    model, meta = training.train_instrument(changed, "CL", IBSParams(), seed=3, embargo=EMBARGO)
    again = meta["walk_forward"]["folds"][1]
    for key in ("threshold", "in_sample", "train_signals", "fit_signals", "validate_signals", "train_window"):
        assert again[key] == fold[key], key
    assert again["test"] != fold["test"] or again["with_filter"] != fold["with_filter"]


def _leaky(frames, root):
    """A planted look-ahead: ret_1 replaced by the next three bars' return (where it is known)."""
    out = build_features(frames, root)
    close = frames[root]["close"].to_numpy(dtype=float)
    future = np.full(len(close), np.nan)
    future[:-3] = np.log(close[3:] / close[:-3])
    out["ret_1"] = np.nan_to_num(future, nan=0.0)
    return out


def test_a_planted_look_ahead_inflates_in_sample_figures_only(frames):
    one = {"CL": frames["CL"]}
    _, honest = training.train_instrument(one, "CL", IBSParams(), seed=3, embargo=EMBARGO)
    _, leaky = training.train_instrument(one, "CL", IBSParams(), seed=3, embargo=EMBARGO, build=_leaky)
    assert honest["walk_forward"]["look_ahead"] == []
    assert leaky["walk_forward"]["look_ahead"] == ["ret_1"]
    inside, outside = leaky["walk_forward"]["in_sample"], leaky["walk_forward"]["test"]
    # the leak makes the model look far better than it is where it was fitted and where its threshold was chosen
    assert inside["win_rate"] > 0.85 and inside["mean_pnl_percent"] > 0.2
    assert inside["win_rate"] > honest["walk_forward"]["in_sample"]["win_rate"] + 0.1
    assert leaky["validation"]["win_rate"] > leaky["validation"]["base_win_rate"] + 0.15
    # out of sample, scored as live scores (the future is not there), it is no better than taking every signal
    assert outside["taken"] > 0 and abs(outside["win_rate"] - outside["base_win_rate"]) < 0.1
    assert outside["win_rate"] < inside["win_rate"] - 0.2 and outside["mean_pnl_percent"] < 0.1
    assert outside["win_rate"] <= honest["walk_forward"]["test"]["win_rate"] + 0.05


def test_with_and_without_comparison_equals_two_backtest_runs_on_the_evaluation_folds(frames, trained):
    """Each fold: the fold's saved model scores the bars (ml.scores, the backtest CLI's scorer) from history
    up to the fold's end, and strategies.backtest runs the fold's bars with the filter at the fold's threshold
    (--set ml_threshold) and with --no-ml (use_ml=False)."""
    out, metas = trained
    for root in ROOTS:
        meta = metas[root]
        with_all, without_all = [], []
        for row in meta["walk_forward"]["folds"]:
            lo, n = row["test_window"]["first_bar"], row["test_window"]["bars"]
            end_ts = int(frames[root]["ts"].iloc[lo + n - 1])
            history = {r: f[f["ts"] <= end_ts].reset_index(drop=True) for r, f in frames.items()}
            scores = ml.scores(history, root, out / "folds" / f"fold{row['fold']}")[lo:lo + n]
            params = IBSParams().with_overrides({"ml_threshold": str(row["threshold"])})
            leg = backtest.Leg(root, history[root].iloc[lo:lo + n].reset_index(drop=True), params,
                               meta["point_value"], meta["commission_per_side"], ml_scores=scores)
            with_, without = backtest.run([leg], use_ml=True), backtest.run([replace(leg, ml_scores=None)],
                                                                           use_ml=False)
            for figures, result in ((row["with_filter"], with_), (row["without_filter"], without)):
                rep = backtest.report(result)
                assert figures == {k: rep[k] for k in ("trades", "win_rate", "total_pnl", "max_drawdown")}
            with_all += with_.trades
            without_all += without.trades
        for key, trades in (("with_filter", with_all), ("without_filter", without_all)):
            rep = backtest.report(backtest.BacktestResult(trades=trades))
            assert meta["comparison"][key] == {k: rep[k] for k in ("trades", "win_rate", "total_pnl", "max_drawdown")}
        assert meta["comparison"]["helps"] == (meta["comparison"]["with_filter"]["total_pnl"]
                                               > meta["comparison"]["without_filter"]["total_pnl"])
        assert meta["comparison"]["without_filter"]["trades"] > meta["comparison"]["with_filter"]["trades"] > 0


def test_the_shipped_model_is_fitted_as_before_and_retraining_keeps_its_file(frames, trained, tmp_path):
    out, metas = trained
    lab = training.labelled_signals(frames, "CL", IBSParams())
    split = int(len(lab.data) * 0.7)
    assert metas["CL"]["training_window"]["signals"] == split
    assert metas["CL"]["training_window"]["end"] == pd.Timestamp(int(lab.data.index[split - 1]), tz="UTC").strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    before = (out / "models" / "CL.skops").read_bytes()
    again = training.train_strategy(frames, {r: IBSParams() for r in ROOTS}, out / "models", seed=3, embargo=EMBARGO)
    assert (out / "models" / "CL.skops").read_bytes() == before and again["CL"]["sha256"] == metas["CL"]["sha256"]
