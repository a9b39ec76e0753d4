"""strategies.forest: a model file's forest served from its arrays gives sklearn's probabilities bit for bit,
and refuses every hostile file the sklearn path refuses, without building or running anything of it."""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from strategies.features import OWN
from strategies.forest import METHODS, ArrayForest, read_array_forest
from strategies.ml import ModelError, load
from strategies.modelfile import ModelFileError, read_forest
from tests.strategies import hostile_models as hostile

MODELS = Path(__file__).resolve().parents[2] / "models"
FEATURES = list(OWN)
N = len(FEATURES)


def rows_around_the_splits(forest: RandomForestClassifier, n: int, rng) -> np.ndarray:
    """Rows on, just above and just below the trees' own thresholds (where a float32 cast would show),
    plus wide random rows and some NaN."""
    thresholds = np.concatenate([t.tree_.threshold[t.tree_.children_left != -1] for t in forest.estimators_])
    near = rng.choice(thresholds, size=(3000, n)) + rng.choice([0.0, 1e-7, -1e-7, 1e-3], size=(3000, n))
    x = np.vstack([near, rng.normal(size=(500, n)) * 3])
    x[::41, rng.integers(0, n)] = np.nan
    return x


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.skops")), ids=lambda p: p.stem)
def test_the_shipped_models_score_bit_for_bit_as_sklearn(path):
    n = len(json.loads(path.with_suffix(".json").read_text())["features"])
    blob = path.read_bytes()
    forest, arrays = read_forest(blob, n), read_array_forest(blob, n)
    x = rows_around_the_splits(forest, n, np.random.default_rng(len(path.stem)))
    assert np.array_equal(arrays.predict_proba(x), forest.predict_proba(x))
    assert arrays.n_features_in_ == n


def test_loading_with_the_array_reader_gives_the_same_probabilities(tmp_path):
    import pandas as pd

    hostile.write_model(tmp_path, "CL", sio.dumps(hostile.forest(N)), FEATURES)
    rows = pd.DataFrame(np.random.default_rng(3).normal(size=(200, N)), columns=FEATURES)
    rows.iloc[::7, 2] = np.nan  # no score where a feature is missing, on both paths
    by_sklearn, by_arrays = load("CL", tmp_path, FEATURES), load("CL", tmp_path, FEATURES, reader=read_array_forest)
    assert isinstance(by_arrays.model, ArrayForest)
    assert np.array_equal(by_arrays.probability(rows), by_sklearn.probability(rows), equal_nan=True)


def test_the_method_list_is_sklearns():
    methods = {n for cls in (RandomForestClassifier, DecisionTreeClassifier) for n in dir(cls)
               if callable(getattr(cls, n, None))}
    assert METHODS == methods


def shadowed_method(n):
    def edit(schema):
        schema["content"]["content"]["predict_proba"] = {"__class__": "str", "__module__": "builtins",
                                                         "__loader__": "JsonNode", "content": "0", "is_json": True}
        schema["content"]["key_types"]["content"].append(
            {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    return hostile._edit_schema(sio.dumps(hostile.forest(n)), edit)


def self_pointing_tree(n):
    blob = sio.dumps(hostile.forest(n))
    src = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(src.read("schema.json"))
    tree = schema["content"]["content"]["estimators_"]["content"][0]["content"]["content"]["tree_"]
    target = tree["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(src.read(target)), allow_pickle=False)
    nodes["left_child"][0] = 0
    buf, out = io.BytesIO(), io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, buf.getvalue() if info.filename == target else src.read(info))
    return out.getvalue()


def three_classes(n):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, n))
    return sio.dumps(RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, rng.integers(0, 3, 100)))


HOSTILE = {
    "exec chain": (lambda m: hostile.exec_chain(m, N), "builtins.exec (TypeNode)"),
    "eval key": (lambda m: hostile.eval_key(m, N), "builtins.eval (TypeNode)"),
    "frompyfunc": (lambda m: hostile.frompyfunc_node(N), "numpy.frompyfunc ("),
    "pickled array": (lambda m: hostile.pickled_array(m, N), "(loading it would unpickle objects)"),
    "pickle member": (lambda m: hostile.pickle_member(m, N), "files no node refers to"),
    "object array": (lambda m: hostile.object_array(m, N), "object array"),
    "shadowed method": (lambda m: shadowed_method(N), "predict_proba, which is a method"),
    "other feature count": (lambda m: sio.dumps(hostile.forest(N - 1)), f"{N - 1} features"),
    "three classes": (lambda m: three_classes(N), "classes"),
    "tree pointing at itself": (lambda m: self_pointing_tree(N), "tree 0 is malformed"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_file_the_sklearn_path_refuses_is_refused_from_its_arrays_too(tmp_path, name):
    make, match = HOSTILE[name]
    marker = tmp_path / "marker"
    blob = make(marker)
    with pytest.raises(ModelFileError, match=re.escape(match)):
        read_forest(blob, N)
    with pytest.raises(ModelFileError, match=re.escape(match)):
        read_array_forest(blob, N)
    hostile.write_model(tmp_path / "models", "CL", blob, FEATURES)
    with pytest.raises(ModelError, match="refused: "):
        load("CL", tmp_path / "models", FEATURES, reader=read_array_forest)
    assert not marker.exists()
