import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategies.features import build_features, feature_names, feature_row
from strategies.ml import ModelError, ModelMismatchError, load, scores, train_strategy
from strategies.params import IBSParams
from strategies.synthetic import strategy_bars

ROOTS = ["6A", "CL", "GC"]
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def frames():
    return strategy_bars(ROOTS, 2500, seed=11)


def test_features_at_t_do_not_change_when_later_bars_are_appended(frames):
    full = build_features(frames, "CL")
    cut_ts = int(frames["CL"]["ts"].iloc[1500])
    truncated = {r: f[f["ts"] <= cut_ts] for r, f in frames.items()}
    early = build_features(truncated, "CL")
    pd.testing.assert_frame_equal(early, full.loc[early.index])


def test_live_row_equals_the_history_row(frames):
    full = build_features(frames, "CL")
    for i in (300, 1234, 2499):
        ts = int(frames["CL"]["ts"].iloc[i])
        pd.testing.assert_series_equal(feature_row(frames, "CL", ts), full.loc[ts], check_names=False)


def test_feature_list_is_stable_and_names_the_other_instruments():
    names = feature_names(ROOTS, "CL")
    assert names[:2] == ["ibs_1h", "ibs_session"] and "x_6A_ret_24" in names and "x_GC_z_24" in names
    assert not any(n.startswith("x_CL_") for n in names)


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    metas = train_strategy(frames, {r: IBSParams() for r in ROOTS}, out, seed=5)
    return out, metas


def test_training_twice_with_the_same_seed_gives_the_same_metrics(frames, trained, tmp_path):
    _, first = trained
    second = train_strategy(frames, {r: IBSParams() for r in ROOTS}, tmp_path, seed=5)
    for root in ROOTS:
        assert first[root]["validation"] == second[root]["validation"]
        assert first[root]["threshold"] == second[root]["threshold"]


def test_validation_is_strictly_after_training(trained):
    _, metas = trained
    meta = metas["CL"]
    assert meta["training_window"]["end"] < meta["validation_window"]["start"]
    assert meta["versions"]["sklearn"] and meta["features"] == feature_names(ROOTS, "CL")


def test_model_with_another_feature_set_refuses_to_load(trained):
    out, _ = trained
    with pytest.raises(ModelMismatchError, match=r"missing \['x_HG_ret_4'"):
        load("CL", out, feature_names(ROOTS + ["HG"], "CL"))


def test_corrupt_model_file_is_a_clear_error(trained, tmp_path):
    out, _ = trained
    for name in ("CL.skops", "CL.json"):
        shutil.copy(out / name, tmp_path / name)
    blob = (tmp_path / "CL.skops").read_bytes()
    (tmp_path / "CL.skops").write_bytes(blob[: len(blob) // 2])  # a copy cut short: always unreadable
    with pytest.raises(ModelError, match="does not match the checksum"):
        load("CL", tmp_path, feature_names(ROOTS, "CL"))
    meta = json.loads((tmp_path / "CL.json").read_text())
    meta["sha256"] = hashlib.sha256(blob[: len(blob) // 2]).hexdigest()  # checksum of the cut copy: still refused
    (tmp_path / "CL.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"CL\.skops: refused: not a skops file"):
        load("CL", tmp_path, feature_names(ROOTS, "CL"))
    (tmp_path / "CL.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load("CL", tmp_path, feature_names(ROOTS, "CL"))


def test_a_pickle_renamed_to_skops_is_refused(trained, tmp_path):
    import pickle

    out, _ = trained
    shutil.copy(out / "CL.json", tmp_path / "CL.json")
    (tmp_path / "CL.skops").write_bytes(pickle.dumps({"evil": True}))
    meta = json.loads((tmp_path / "CL.json").read_text())
    meta["sha256"] = hashlib.sha256((tmp_path / "CL.skops").read_bytes()).hexdigest()
    (tmp_path / "CL.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a skops file"):
        load("CL", tmp_path, feature_names(ROOTS, "CL"))


def test_shipped_demo_models_load_and_say_they_are_demo_models():
    ibs_a = ["6A", "6C", "6M", "CL", "GC", "HG"]
    ibs_b = ["6B", "6N", "6S", "SI", "YM"]
    for roots in (ibs_a, ibs_b):
        for root in roots:
            model = load(root, REPO_MODELS, feature_names(roots, root))
            assert "DEMO MODEL" in model.meta["note"] and 0 < model.threshold < 1


def test_scores_are_probabilities_with_nan_for_short_history(trained, frames):
    out, _ = trained
    values = scores(frames, "CL", out)
    assert np.isnan(values[:100]).all()
    finite = values[~np.isnan(values)]
    assert len(finite) > 1000 and ((finite >= 0) & (finite <= 1)).all()
