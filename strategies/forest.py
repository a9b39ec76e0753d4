"""A model file's random forest served from its own numpy arrays: the probabilities the RandomForestClassifier
skops would build gives, bit for bit, without importing sklearn, scipy or skops (about 80 MB and 2 s of a
worker's start, issue 19).

`read_array_forest(blob, n_features)` admits only what strategies.modelfile admits (`check_file`: the
allow-list of nodes, plain arrays, sizes), then checks what `check_forest` checks on the built forest
(classes 0/1, one output, the feature count, trees whose children point forward, no attribute standing for
a method) on the arrays. Nothing in the file is constructed, called or unpickled.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from strategies.modelfile import ModelFileError, check_file

# Methods of sklearn's RandomForestClassifier and DecisionTreeClassifier: the sklearn path refuses a file
# whose attributes shadow one, and so does this one (tests/strategies/test_forest.py keeps the list true).
METHODS = frozenset("""
__class__ __delattr__ __dir__ __eq__ __format__ __ge__ __getattribute__ __getitem__ __getstate__ __gt__
__hash__ __init__ __init_subclass__ __iter__ __le__ __len__ __lt__ __ne__ __new__ __reduce__ __reduce_ex__
__repr__ __setattr__ __setstate__ __sizeof__ __sklearn_clone__ __sklearn_tags__ __str__ __subclasshook__
_compute_missing_values_in_feature_mask _compute_oob_predictions _fit _get_class_level_metadata_request_values
_get_doc_link _get_estimators_indices _get_fitted_attr_html _get_metadata_request _get_oob_predictions
_get_param_names _get_params_html _html_repr _make_estimator _prune_tree _repr_html_inner _repr_mimebundle_
_set_oob_score_and_attributes _support_missing_values _validate_X_predict _validate_estimator _validate_params
_validate_y_class_weight apply cost_complexity_pruning_path decision_path fit get_depth get_metadata_routing
get_n_leaves get_params predict predict_log_proba predict_proba score set_fit_request set_params
set_score_request""".split())


class ArrayTree:
    """One fitted tree: node arrays as sklearn's Tree holds them, leaf values as class fractions."""

    def __init__(self, nodes: np.ndarray, values: np.ndarray):
        self.left = nodes["left_child"].astype(np.intp)
        self.right = nodes["right_child"].astype(np.intp)
        self.feature = nodes["feature"].astype(np.intp)
        self.threshold = nodes["threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        proba = values[:, 0, :].astype(np.float64)
        total = proba.sum(axis=1, keepdims=True)
        total[total == 0.0] = 1.0
        self.proba = proba / total  # DecisionTreeClassifier.predict_proba's normalisation, per leaf
        self.leaf = self.left == -1

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The leaf of each row (sklearn's traversal: a NaN goes where the split's missing values went)."""
        node = np.zeros(len(x), dtype=np.intp)
        rows = np.arange(len(x))
        for _ in range(len(self.left)):  # children point forward: at most node_count steps
            inner = ~self.leaf[node]
            if not inner.any():
                break
            at, r = node[inner], rows[inner]
            value = x[r, self.feature[at]]
            left = np.where(np.isnan(value), self.missing_left[at], value <= self.threshold[at])
            node[inner] = np.where(left, self.left[at], self.right[at])
        return node


class ArrayForest:
    """What `LoadedModel` needs of a forest: `predict_proba` and `n_features_in_`.

    One row without NaN (a live candidate) walks every tree at once: the trees' nodes in one array, every
    split decided for the row in one comparison, a leaf its own next node, one step per level of the deepest
    tree; the same leaves as the per-tree walk, their fractions summed in the same tree order."""

    def __init__(self, trees: list[ArrayTree], n_features: int):
        self.trees, self.n_features_in_ = trees, n_features
        offsets = np.cumsum([0] + [len(t.left) for t in trees])
        self.roots = offsets[:-1].astype(np.intp)
        own = [np.arange(len(t.left)) + o for t, o in zip(trees, offsets)]
        # left/right child as indices into the joined nodes; a leaf is its own child both ways
        self.left = np.concatenate([np.where(t.leaf, i, t.left + o) for t, o, i in zip(trees, offsets, own)])
        self.right = np.concatenate([np.where(t.leaf, i, t.right + o) for t, o, i in zip(trees, offsets, own)])
        self.feature = np.concatenate([np.where(t.leaf, 0, t.feature) for t in trees]).astype(np.intp)
        self.threshold = np.concatenate([np.where(t.leaf, np.inf, t.threshold) for t in trees])
        self.proba = np.concatenate([t.proba for t in trees])
        self.depth = max(_depth(t) for t in trees)

    def predict_proba(self, x) -> np.ndarray:
        # sklearn validates rows as float32 and sums the trees' fractions in order, then divides once.
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[-1]} features, but the forest is expecting {self.n_features_in_}")
        if len(x) == 1 and not np.isnan(x).any():
            return self._one(x[0])
        out = np.zeros((len(x), 2))
        for tree in self.trees:
            out += tree.proba[tree.apply(x)]
        out /= len(self.trees)
        return out

    def _one(self, row: np.ndarray) -> np.ndarray:
        following = np.where(row[self.feature] > self.threshold, self.right, self.left)  # a leaf's threshold: inf
        node = self.roots
        for _ in range(self.depth):
            node = following[node]
        return (np.cumsum(self.proba[node], axis=0)[-1] / len(self.trees))[None, :]  # cumsum: in tree order


def _depth(tree: ArrayTree) -> int:
    """Levels below the root of the deepest leaf (children point forward, so each level is one pass)."""
    level, frontier = 0, np.array([0])
    while True:
        inner = frontier[~tree.leaf[frontier]]
        if not len(inner):
            return level
        frontier, level = np.unique(np.concatenate([tree.left[inner], tree.right[inner]])), level + 1


def read_array_forest(blob: bytes, n_features: int) -> ArrayForest:
    """The forest of a skops file as arrays, after every check of the sklearn path; ModelFileError otherwise."""
    schema = check_file(blob, n_features)
    nodes: dict = {}
    _index(schema, nodes)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        def node(value):
            return nodes.get(repr(value.get("__id__"))) if value.get("__loader__") == "CachedNode" else value

        def json_value(value):
            value = node(value)
            if not isinstance(value, dict) or value.get("__loader__") != "JsonNode":
                raise ModelFileError("an attribute of the forest is not a plain value")
            return json.loads(value["content"])

        def array(value) -> np.ndarray:
            value = node(value)
            if not isinstance(value, dict) or value.get("__loader__") != "NdArrayNode":
                raise ModelFileError("an array attribute of the forest is not an array")
            return np.load(io.BytesIO(archive.read(value["file"])), allow_pickle=False)

        forest = _attributes(schema, "the forest")
        if json_value(forest.get("n_features_in_", {})) != n_features:
            raise ModelFileError(f"the forest reads {json_value(forest['n_features_in_'])} features; its metadata "
                                 f"lists {n_features}")
        if json_value(forest.get("n_outputs_", {})) != 1 or not _is_classes(array(forest.get("classes_", {}))):
            raise ModelFileError(f"the forest predicts classes {array(forest['classes_']).tolist()!r}; the "
                                 f"trainer's predict [0, 1]")
        listed = node(forest.get("estimators_", {}))
        if not isinstance(listed, dict) or listed.get("__loader__") != "ListNode" or not listed.get("content"):
            raise ModelFileError("the forest has no trees")
        trees = []
        for i, est in enumerate(listed["content"]):
            est = node(est)
            if not isinstance(est, dict) or est.get("__class__") != "DecisionTreeClassifier":
                raise ModelFileError(f"tree {i} is not a DecisionTreeClassifier")
            attrs = _attributes(est, f"tree {i}")
            if json_value(attrs.get("n_features_in_", {})) != n_features or not _is_classes(array(attrs["classes_"])):
                raise ModelFileError(f"tree {i} reads other features or predicts other classes than [0, 1]")
            trees.append(_tree(i, node(attrs.get("tree_", {})), array, json_value, n_features))
    return ArrayForest(trees, n_features)


def _index(value, nodes: dict) -> None:
    """Every node with an id, by id (the first of an id: modelfile has checked the others are the same)."""
    if isinstance(value, list):
        for item in value:
            _index(item, nodes)
    elif isinstance(value, dict):
        if "__id__" in value and value.get("__loader__") not in (None, "CachedNode"):
            nodes.setdefault(repr(value["__id__"]), value)
        for item in value.values():
            _index(item, nodes)


def _attributes(obj: dict, what: str) -> dict:
    """The attribute dict of an ObjectNode; an attribute named after a method is refused."""
    state = obj.get("content")
    attrs = state.get("content") if isinstance(state, dict) and state.get("__loader__") == "DictNode" else None
    if not isinstance(attrs, dict):
        raise ModelFileError(f"{what} has no attributes")
    for name in attrs:
        if name in METHODS:
            raise ModelFileError(f"sets {obj.get('__class__')}.{name}, which is a method")
    return attrs


def _is_classes(classes: np.ndarray) -> bool:
    return classes.dtype.kind in "iuf" and classes.tolist() == [0, 1]


def _tree(i: int, tree, array, json_value, n_features: int) -> ArrayTree:
    """Children point forward inside the tree, leaves have none, splits use existing features."""
    state = tree.get("content") if isinstance(tree, dict) and tree.get("__loader__") == "TreeNode" else None
    state = state.get("content") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not {"nodes", "values", "node_count"} <= set(state):
        raise ModelFileError(f"tree {i} has no sklearn Tree")
    nodes, values, n = array(state["nodes"]), array(state["values"]), json_value(state["node_count"])
    fields = set(nodes.dtype.names or ())
    if not {"left_child", "right_child", "feature", "threshold", "missing_go_to_left"} <= fields:
        raise ModelFileError(f"tree {i} is malformed (its nodes lack {sorted(fields)})")
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    index = np.arange(len(nodes))
    leaf = left == -1
    internal = ~leaf
    ok = (isinstance(n, int) and n >= 1 and nodes.shape == (n,)
          and np.array_equal(leaf, right == -1)
          and ((left[internal] > index[internal]) & (left[internal] < n)).all()
          and ((right[internal] > index[internal]) & (right[internal] < n)).all()
          and ((feature[internal] >= 0) & (feature[internal] < n_features)).all()
          and np.isfinite(nodes["threshold"][internal]).all()
          and values.shape == (n, 1, 2) and np.isfinite(values).all())
    if not ok:
        raise ModelFileError(f"tree {i} is malformed (children, features or values out of range)")
    return ArrayTree(nodes, values)
