"""A model file cannot run code: hostile skops files are refused at load, naming the file and why.

Each hostile file is first shown to be live (the loader this replaced, or plain unpickling, writes
the marker), then refused by `strategies.ml.load` with the marker never written.
"""
import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio

from strategies.features import OWN
from strategies.ml import ModelError, load
from tests.strategies import hostile_models as hostile

FEATURES = list(OWN)  # a one-instrument strategy's features (10)
N = len(FEATURES)


def refused(tmp_path, blob, match):
    path = hostile.write_model(tmp_path / "models", "CL", blob, FEATURES)
    with pytest.raises(ModelError) as exc:
        load("CL", tmp_path / "models", FEATURES)
    message = str(exc.value)
    assert message.startswith(f"{path}: refused: "), message
    assert match in message, message
    return message


def test_the_exec_chain_is_live_under_the_old_loader_and_refused_now(tmp_path):
    live = tmp_path / "live-marker"
    model = hostile.naive_load(hostile.exec_chain(live, N))
    with pytest.raises(ValueError):
        model.predict_proba(np.zeros((1, N)))  # the forest after exec gets None, but the code ran first
    assert live.read_text() == "pwned"

    marker = tmp_path / "marker"
    message = refused(tmp_path, hostile.exec_chain(marker, N), "builtins.exec (TypeNode)")
    assert "sklearn.pipeline.Pipeline (ObjectNode)" in message and "numpy.full_like (FunctionNode)" in message and "never in a trained forest" in message
    assert not marker.exists()


def test_a_builtins_eval_node_is_refused_before_anything_is_built(tmp_path):
    live = tmp_path / "live-marker"
    hostile.naive_load(hostile.eval_key(live, N))  # runs while skops builds the dict: no prediction needed
    assert live.exists()

    marker = tmp_path / "marker"
    refused(tmp_path, hostile.eval_key(marker, N), "builtins.eval (TypeNode)")
    assert not marker.exists()


def test_a_numpy_frompyfunc_node_is_refused(tmp_path):
    assert "numpy.frompyfunc" in sio.get_untrusted_types(data=hostile.frompyfunc_node(N))
    refused(tmp_path, hostile.frompyfunc_node(N), "numpy.frompyfunc (")


def test_a_pickled_object_array_is_refused_without_unpickling(tmp_path):
    live = tmp_path / "live-marker"
    blob = hostile.pickled_array(live, N)
    schema = json.loads(zipfile.ZipFile(io.BytesIO(blob)).read("schema.json"))
    member = zipfile.ZipFile(io.BytesIO(blob)).read(schema["content"]["content"]["classes_"]["file"])
    np.load(io.BytesIO(member), allow_pickle=True)  # what unpickling that array would do
    assert live.exists()

    marker = tmp_path / "marker"
    refused(tmp_path, hostile.pickled_array(marker, N), "would unpickle objects")
    assert not marker.exists()


def test_a_raw_pickle_inside_the_archive_is_refused(tmp_path):
    live = tmp_path / "live-marker"
    pickle.loads(zipfile.ZipFile(io.BytesIO(hostile.pickle_member(live, N))).read("payload.pkl"))
    assert live.exists()

    marker = tmp_path / "marker"
    refused(tmp_path, hostile.pickle_member(marker, N), "payload.pkl")
    assert not marker.exists()


def test_an_object_array_of_nodes_is_refused(tmp_path):
    refused(tmp_path, hostile.object_array(tmp_path / "marker", N), "object array")


def test_a_whole_pickle_renamed_to_skops_is_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    refused(tmp_path, pickle.dumps(hostile._Payload(marker)), "not a skops file")
    assert not marker.exists()


def test_an_attribute_standing_in_for_a_method_is_refused(tmp_path):
    def edit(schema):
        schema["content"]["content"]["predict_proba"] = {"__class__": "str", "__module__": "builtins",
                                                         "__loader__": "JsonNode", "content": "0", "is_json": True}
        schema["content"]["key_types"]["content"].append(
            {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    refused(tmp_path, hostile._edit_schema(sio.dumps(hostile.forest(N)), edit), "predict_proba, which is a method")


def test_another_estimator_is_refused(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, N))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    refused(tmp_path, sio.dumps(model), "sklearn.linear_model._logistic.LogisticRegression")


def test_a_forest_on_another_feature_count_is_refused(tmp_path):
    refused(tmp_path, sio.dumps(hostile.forest(N - 1)), f"{N - 1} features")


def test_a_forest_that_does_not_predict_zero_one_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, N))
    three = hostile.RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, rng.integers(0, 3, 100))
    refused(tmp_path, sio.dumps(three), "classes")


def test_a_tree_pointing_back_at_itself_is_refused(tmp_path):
    blob = sio.dumps(hostile.forest(N))
    src = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(src.read("schema.json"))
    tree = schema["content"]["content"]["estimators_"]["content"][0]["content"]["content"]["tree_"]
    target = tree["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(src.read(target)), allow_pickle=False)
    nodes["left_child"][0] = 0  # the root is its own left child: predict would loop or read out of bounds
    buf = io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, buf.getvalue() if info.filename == target else src.read(info))
    refused(tmp_path, out.getvalue(), "tree 0 is malformed")


def test_a_tree_allocating_by_huge_arguments_is_refused_before_it_is_built(tmp_path):
    def edit(schema):
        tree = schema["content"]["content"]["estimators_"]["content"][0]["content"]["content"]["tree_"]
        outputs = tree["__reduce__"]["args"]["content"][2]
        outputs["content"], outputs["__id__"] = str(1 << 40), 1  # n_outputs, a node of its own
    refused(tmp_path, hostile._edit_schema(sio.dumps(hostile.forest(N)), edit), "1099511627776 outputs")


def test_an_array_claiming_more_than_its_bytes_is_refused(tmp_path):
    blob = sio.dumps(hostile.forest(N))
    src = zipfile.ZipFile(io.BytesIO(blob))
    name = json.loads(src.read("schema.json"))["content"]["content"]["classes_"]["file"]
    data = src.read(name).replace(b"(2,)", b"(9,)")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data if info.filename == name else src.read(info))
    refused(tmp_path, out.getvalue(), "not what its")


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    from strategies import modelfile

    monkeypatch.setattr(modelfile, "MAX_UNPACKED_BYTES", 1000)
    refused(tmp_path, sio.dumps(hostile.forest(N)), "unpacks to")


@pytest.mark.parametrize("digest", [None, "", "abc", "Z" * 64])
def test_sha256_is_required(tmp_path, digest):
    path = hostile.write_model(tmp_path, "CL", sio.dumps(hostile.forest(N)), FEATURES)
    meta = json.loads((tmp_path / "CL.json").read_text())
    if digest is None:
        meta.pop("sha256")
    else:
        meta["sha256"] = digest
    (tmp_path / "CL.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=rf"{tmp_path / 'CL.json'}: no valid sha256 of CL\.skops"):
        load("CL", tmp_path, FEATURES)
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "CL.json").write_text(json.dumps(meta))
    assert load("CL", tmp_path, FEATURES).model.n_features_in_ == N


def test_a_plain_forest_of_the_trainers_kind_loads_and_predicts(tmp_path):
    hostile.write_model(tmp_path, "CL", sio.dumps(hostile.forest(N)), FEATURES)
    import pandas as pd

    loaded = load("CL", tmp_path, FEATURES)
    p = loaded.probability(pd.DataFrame(np.zeros((3, N)), columns=FEATURES))
    assert p.shape == (3,) and ((0 <= p) & (p <= 1)).all()


def test_a_node_id_reused_for_other_content_is_refused(tmp_path):
    """skops builds the first node of an id wherever the id appears again: a benign copy checked here
    must not stand for a hostile first one (here a Tree whose arguments would allocate 2**40 outputs)."""
    def edit(schema):
        attrs = schema["content"]
        tree = attrs["content"]["estimators_"]["content"][0]["content"]["content"]["tree_"]
        args = tree["__reduce__"]["args"]
        decoy = json.loads(json.dumps(args))
        decoy["content"][2]["content"] = str(1 << 40)
        attrs["content"] = {"aaa_decoy": decoy, **attrs["content"]}  # built first
        attrs["key_types"]["content"].insert(0, {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    refused(tmp_path, hostile._edit_schema(sio.dumps(hostile.forest(N)), edit), "two different nodes under one id")
