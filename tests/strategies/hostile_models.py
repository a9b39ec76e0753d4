"""Hostile model files, built with skops itself: each would write `marker` if a loader ran it.

`write_model(dir, root, blob, features)` puts a file beside metadata an attacker would write
(right format, right features, the file's own sha256), so only the file's content is judged.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import sklearn
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from strategies.ml import FORMAT


def forest(n_features: int, *, seed: int = 0) -> RandomForestClassifier:
    """A real forest of the trainer's kind on random data (small, fast)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, n_features))
    y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return RandomForestClassifier(n_estimators=4, max_depth=3, min_samples_leaf=10, random_state=seed,
                                  n_jobs=1).fit(x, y)


def write_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def exec_chain(marker: Path, n_features: int) -> bytes:
    """The reported attack: numpy.full_like → numpy.ravel → builtins.min → builtins.exec before a real
    forest. Runs the code at the first predict_proba."""
    pipe = Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": write_code(marker), "dtype": object})),
        ("flat", FunctionTransformer(np.ravel)),
        ("pick", FunctionTransformer(min)),
        ("run", FunctionTransformer(exec)),
        ("rf", forest(n_features)),
    ])
    return sio.dumps(pipe)


def frompyfunc_node(n_features: int) -> bytes:
    """A pipeline whose first step calls numpy.frompyfunc (a function node that makes callables)."""
    return sio.dumps(Pipeline([("f", FunctionTransformer(np.frompyfunc, kw_args={"nin": 1, "nout": 1})),
                               ("rf", forest(n_features))]))


def _edit_schema(blob: bytes, edit) -> bytes:
    """The same archive with schema.json changed by `edit(schema)` (and extra members kept)."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, json.dumps(schema) if info.filename == "schema.json" else src.read(info))
    return out.getvalue()


def eval_key(marker: Path, n_features: int) -> bytes:
    """A real forest whose attribute dict has a key typed `builtins.eval`: skops calls a key's type on
    the key while it builds the dict, so this runs at load time, before any prediction."""
    def edit(schema):
        attrs = schema["content"]
        attrs["content"][f"__import__('builtins').exec({write_code(marker)!r})"] = {
            "__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": "0", "is_json": True}
        attrs["key_types"]["content"].append({"__class__": "eval", "__module__": "builtins", "__loader__": "TypeNode"})
    return _edit_schema(sio.dumps(forest(n_features)), edit)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (write_code(self.marker),)


def pickled_array(marker: Path, n_features: int) -> bytes:
    """A real forest whose classes_ array file is a pickled object array (np.load with allow_pickle
    would run it)."""
    blob = sio.dumps(forest(n_features))
    schema = json.loads(zipfile.ZipFile(io.BytesIO(blob)).read("schema.json"))
    target = schema["content"]["content"]["classes_"]["file"]
    buf = io.BytesIO()
    np.save(buf, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    src, out = zipfile.ZipFile(io.BytesIO(blob)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, buf.getvalue() if info.filename == target else src.read(info))
    return out.getvalue()


def pickle_member(marker: Path, n_features: int) -> bytes:
    """A real forest plus a raw pickle riding in the archive."""
    blob = sio.dumps(forest(n_features))
    out = io.BytesIO(blob)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("payload.pkl", pickle.dumps(_Payload(marker)))
    return out.getvalue()


def object_array(marker: Path, n_features: int) -> bytes:
    """An object array (skops' "json" arrays: each item a node) holding the exec function."""
    def edit(schema):
        schema["content"]["content"]["payload"] = {
            "__class__": "ndarray", "__module__": "numpy", "__loader__": "NdArrayNode", "type": "json",
            "content": [{"__class__": "exec", "__module__": "builtins", "__loader__": "FunctionNode"}],
            "shape": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                      "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                                   "content": "1", "is_json": True}]}}
        schema["content"]["key_types"]["content"].append(
            {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    return _edit_schema(sio.dumps(forest(n_features)), edit)


def write_model(models_dir: Path, root: str, blob: bytes, features: list[str], **meta) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / f"{root}.skops").write_bytes(blob)
    full = {"format": FORMAT, "root": root, "features": features, "threshold": 0.5, "note": "test",
            "versions": {"sklearn": sklearn.__version__}, "sha256": hashlib.sha256(blob).hexdigest(), **meta}
    (models_dir / f"{root}.json").write_text(json.dumps(full))
    return models_dir / f"{root}.skops"


def naive_load(blob: bytes):
    """The loader this replaced: every type named builtins./numpy./sklearn. trusted."""
    untrusted = sio.get_untrusted_types(data=blob)
    return sio.loads(blob, trusted=[t for t in untrusted if t.startswith(("sklearn.", "numpy.", "builtins."))])
