"""What a model file may hold: the random forest the trainer saves, and nothing that can run code.

`read_forest(blob, n_features)` checks every node of a skops file against an explicit allow-list
of the exact types the trainer writes (the forest, its trees, numpy arrays of plain numbers, str
and int) before skops constructs anything, then checks the forest's shape. It never admits a
function, a method, a partial, an arbitrary type or an object array, and never unpickles.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # skops and sklearn are imported when a file is read, not by every importer
    from sklearn.ensemble import RandomForestClassifier

MAX_FILE_BYTES = 32 << 20  # a forest of the trainer's size is ~150 KB compressed
MAX_UNPACKED_BYTES = 128 << 20  # schema and arrays together, as the zip declares them
MAX_ARRAY_DIM = 1 << 22

# (skops loader, module, class) of every node the trainer's RandomForestClassifier produces.
ALLOWED_NODES = {
    ("ObjectNode", "sklearn.ensemble._forest", "RandomForestClassifier"),
    ("ObjectNode", "sklearn.tree._classes", "DecisionTreeClassifier"),
    ("TreeNode", "sklearn.tree._tree", "Tree"),
    ("NdArrayNode", "numpy", "ndarray"),
    ("NdArrayNode", "numpy", "int64"),
    ("NdArrayNode", "numpy", "float64"),
    ("DTypeNode", "numpy", "dtype"),
    ("DictNode", "builtins", "dict"),
    ("ListNode", "builtins", "list"),
    ("TupleNode", "builtins", "tuple"),
    ("JsonNode", "builtins", "str"),  # any JSON value; skops decodes it with json.loads
    ("TypeNode", "builtins", "str"),  # dict key types: skops calls them on each key
    ("TypeNode", "builtins", "int"),
    ("CachedNode", None, None),  # a second reference to a node checked here too
}
TRUSTED = sorted({f"{m}.{c}" for loader, m, c in ALLOWED_NODES if m and loader in ("ObjectNode", "TreeNode")})
# dtypes an array may have in a model file (the trainer's: node records, float values, int classes)
PLAIN_KINDS = set("biuf")


class ModelFileError(ValueError):
    """The file is not a forest the trainer could have written; the message says what was found."""


def read_forest(blob: bytes, n_features: int) -> RandomForestClassifier:
    """The forest in a skops file, after checking every node and array of it; ModelFileError otherwise."""
    check_file(blob, n_features)
    import skops.io as sio

    try:
        model = sio.loads(blob, trusted=TRUSTED)
    except RecursionError:
        raise ModelFileError("cannot be constructed (nodes refer to themselves)") from None
    except Exception as exc:  # noqa: BLE001 — any decoding failure is a corrupt file
        raise ModelFileError(f"cannot be read as a skops model ({exc.__class__.__name__}: {exc})") from None
    check_forest(model, n_features)
    return model


def check_file(blob: bytes, n_features: int) -> dict:
    """Every node and array of a skops file checked, nothing constructed; its schema (ModelFileError otherwise).
    strategies.forest serves the trees from the arrays themselves, without sklearn."""
    if len(blob) > MAX_FILE_BYTES:
        raise ModelFileError(f"{len(blob)} bytes, more than a model file may have ({MAX_FILE_BYTES})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
        members = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelFileError(f"not a skops file (zip: {exc})") from None
    with archive:
        unpacked = sum(info.file_size for info in members.values())
        if unpacked > MAX_UNPACKED_BYTES:
            raise ModelFileError(f"unpacks to {unpacked} bytes, more than a model may ({MAX_UNPACKED_BYTES})")
        if "schema.json" not in members:
            raise ModelFileError("not a skops file (no schema.json)")
        try:
            schema = json.loads(archive.read("schema.json"))
        except (ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile, OSError) as exc:
            raise ModelFileError(f"schema.json unreadable ({exc.__class__.__name__}: {exc})") from None
        files: set[str] = set()
        trees: list[dict] = []
        foreign: set[str] = set()
        by_id: dict = {}
        try:
            _walk(schema, files, trees, foreign, by_id)
            # skops builds the first node of an id for every later one: all nodes of an id must be the
            # same (up to their inner ids), or what was checked here is not what skops builds.
            if any(len({json.dumps(_without_ids(n), sort_keys=True) for n in nodes}) > 1
                   for nodes in by_id.values() if len(nodes) > 1):
                foreign.add("two different nodes under one id")
        except RecursionError:
            raise ModelFileError("schema nested too deeply") from None
        if foreign:
            shown = sorted(foreign)
            raise ModelFileError(f"holds {', '.join(shown[:8])}{' …' if len(shown) > 8 else ''}: "
                                 f"never in a trained forest")
        for tree in trees:
            _check_tree_args(tree, n_features, archive)
        extra = sorted(set(members) - files - {"schema.json"})
        if extra:
            raise ModelFileError(f"holds files no node refers to (a payload?): {extra[:5]}")
        for name in sorted(files):
            _check_array_file(archive, members, name)
    if not (isinstance(schema, dict) and (schema.get("__module__"), schema.get("__class__"))
            == ("sklearn.ensemble._forest", "RandomForestClassifier")):
        raise ModelFileError("the top object is not a RandomForestClassifier")
    return schema


def _walk(value, files: set[str], trees: list[dict], foreign: set[str], by_id: dict) -> None:
    """Every dict skops could turn into a node, wherever it sits, is checked against the allow-list."""
    if isinstance(value, list):
        for item in value:
            _walk(item, files, trees, foreign, by_id)
        return
    if not isinstance(value, dict):
        return
    if "__loader__" in value:
        if value.get("__loader__") != "CachedNode" and "__id__" in value:
            by_id.setdefault(repr(value["__id__"]), []).append(value)
        loader = value.get("__loader__")
        key = (loader, None, None) if loader == "CachedNode" else (loader, value.get("__module__"),
                                                                  value.get("__class__"))
        if key not in ALLOWED_NODES:
            foreign.add(f"{value.get('__module__')}.{value.get('__class__')} ({loader})")
        elif loader == "NdArrayNode":
            if value.get("type") != "numpy" or not isinstance(value.get("file"), str):
                # "json" arrays are object arrays: each item another node, so anything at all
                foreign.add(f"an object array (NdArrayNode of type {value.get('type')!r})")
            else:
                files.add(value["file"])
        elif loader == "TreeNode":
            trees.append(value)
    for item in value.values():
        _walk(item, files, trees, foreign, by_id)


def _without_ids(value):
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "__id__"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _check_tree_args(node: dict, n_features: int, archive: zipfile.ZipFile) -> None:
    """Tree(n_features, n_classes, n_outputs) allocates by its arguments: they are checked first."""
    try:
        args = node["__reduce__"]["args"]["content"]
        got_features, classes_node, outputs = args
        got_features = json.loads(got_features["content"])
        outputs = json.loads(outputs["content"])
        with archive.open(classes_node["file"]) as f:
            n_classes = np.load(io.BytesIO(f.read(4096)), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"a tree's arguments are unreadable ({exc.__class__.__name__}: {exc})") from None
    if (got_features, outputs) != (n_features, 1) or n_classes.tolist() != [2]:
        raise ModelFileError(f"a tree for {got_features} features, {outputs} outputs, classes {n_classes.tolist()}; "
                             f"the trainer's trees have {n_features} features, 1 output, 2 classes")


def _check_array_file(archive: zipfile.ZipFile, members: dict, name: str) -> None:
    """An array file is numpy's format with a plain dtype (never pickled objects) and the size it claims."""
    if name not in members:
        raise ModelFileError(f"refers to {name!r}, which is not in the file")
    try:
        with archive.open(name) as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(f)
            offset = f.tell()
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{name} is not a numpy array file ({exc.__class__.__name__}: {exc})") from None
    shape, _fortran, dtype = header
    if dtype.hasobject or (dtype.fields is None and dtype.kind not in PLAIN_KINDS):
        raise ModelFileError(f"{name} holds an array of dtype {dtype} (loading it would unpickle objects)")
    if dtype.fields is not None and any(sub.hasobject or sub.kind not in PLAIN_KINDS
                                        for sub, *_ in dtype.fields.values()):
        raise ModelFileError(f"{name} holds a record array of dtype {dtype}: refused")
    if any(d > MAX_ARRAY_DIM for d in shape):
        raise ModelFileError(f"{name} claims shape {shape}: refused")
    if offset + math.prod(shape) * dtype.itemsize != members[name].file_size:
        raise ModelFileError(f"{name} claims shape {shape} of {dtype}, not what its {members[name].file_size} bytes hold")


def check_forest(model, n_features: int) -> None:
    """The loaded object is the trainer's forest: classes 0/1, the feature count, sound trees."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    if type(model) is not RandomForestClassifier:
        raise ModelFileError(f"holds a {type(model).__module__}.{type(model).__name__}, not a RandomForestClassifier")
    _no_shadowed_methods(model)
    if getattr(model, "n_features_in_", None) != n_features:
        raise ModelFileError(f"the forest reads {getattr(model, 'n_features_in_', None)} features; its metadata "
                             f"lists {n_features}")
    if getattr(model, "n_outputs_", None) != 1 or not _is_classes(getattr(model, "classes_", None)):
        raise ModelFileError(f"the forest predicts classes {getattr(model, 'classes_', None)!r}; the trainer's "
                             f"predict [0, 1]")
    trees = getattr(model, "estimators_", None)
    if not isinstance(trees, list) or not trees:
        raise ModelFileError("the forest has no trees")
    for i, est in enumerate(trees):
        if type(est) is not DecisionTreeClassifier:
            raise ModelFileError(f"tree {i} is a {type(est).__name__}, not a DecisionTreeClassifier")
        _no_shadowed_methods(est)
        if getattr(est, "n_features_in_", None) != n_features or not _is_classes(getattr(est, "classes_", None)):
            raise ModelFileError(f"tree {i} reads {getattr(est, 'n_features_in_', None)} features or predicts "
                                 f"other classes than [0, 1]")
        _check_tree(i, getattr(est, "tree_", None), n_features)
    try:
        proba = model.predict_proba(np.zeros((1, n_features)))
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"the forest cannot predict ({exc.__class__.__name__}: {exc})") from None
    if proba.shape != (1, 2) or not np.isfinite(proba).all():
        raise ModelFileError(f"the forest predicts {proba!r} for a zero row; not probabilities of 2 classes")


def _is_classes(classes) -> bool:
    return isinstance(classes, np.ndarray) and classes.dtype.kind in "iuf" and classes.tolist() == [0, 1]


def _no_shadowed_methods(obj) -> None:
    """An attribute stored on an instance never stands in for a method of its class."""
    for name in vars(obj):
        if callable(getattr(type(obj), name, None)):
            raise ModelFileError(f"sets {type(obj).__name__}.{name}, which is a method")


def _check_tree(i: int, tree, n_features: int) -> None:
    """Children point forward inside the tree, leaves have none, splits use existing features."""
    from sklearn.tree._tree import Tree

    if type(tree) is not Tree:
        raise ModelFileError(f"tree {i} has no sklearn Tree")
    n = tree.node_count
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    index = np.arange(n)
    leaf = left == -1
    internal = ~leaf
    ok = (n >= 1 and tree.n_features == n_features and tree.n_outputs == 1
          and np.array_equal(leaf, right == -1)
          and ((left[internal] > index[internal]) & (left[internal] < n)).all()
          and ((right[internal] > index[internal]) & (right[internal] < n)).all()
          and ((feature[internal] >= 0) & (feature[internal] < n_features)).all()
          and np.isfinite(tree.threshold[internal]).all()
          and tree.value.shape == (n, 1, 2) and np.isfinite(tree.value).all())
    if not ok:
        raise ModelFileError(f"tree {i} is malformed (children, features or values out of range)")
