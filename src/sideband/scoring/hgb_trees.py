"""The trees of fitted scikit-learn ``HistGradientBoostingClassifier`` members, as numpy arrays.

One reader of scikit-learn's tree internals (``_predictors``, ``TreePredictor.nodes``,
``_baseline_prediction``) for everything that re-implements HGB scoring: `CompiledTrees`
(torch) and the ONNX export. It checks that a member is a fitted binary classifier with numeric
splits and that the node fields it reads exist, so a scikit-learn change gives a clear error
instead of wrong scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError, NotFittedError

__all__ = ["HGBMember", "HGBTree", "hgb_members", "is_hgb_classifier", "read_member"]


@dataclass(frozen=True)
class HGBTree:
    """One tree as numpy arrays over its nodes (scikit-learn's node order, root = 0)."""

    feature: np.ndarray  # int64 (n,)
    threshold: np.ndarray  # float64 (n,)
    missing_left: np.ndarray  # bool (n,)
    left: np.ndarray  # int64 (n,)
    right: np.ndarray  # int64 (n,)
    value: np.ndarray  # float64 (n,)
    is_leaf: np.ndarray  # bool (n,)
    depth: int


@dataclass(frozen=True)
class HGBMember:
    """One binary HGB classifier: its trees, baseline (raw log-odds) and which side is label 1."""

    trees: list[HGBTree]
    baseline: float
    positive_is_second: bool  # classes_[1] == 1: P(1) = sigmoid(raw); else 1 - sigmoid(raw)


#: fields of scikit-learn's ``TreePredictor.nodes`` (PREDICTOR_RECORD_DTYPE) read here
_NODE_FIELDS = (
    "value",
    "feature_idx",
    "num_threshold",
    "missing_go_to_left",
    "left",
    "right",
    "is_leaf",
    "depth",
    "is_categorical",
)


def is_hgb_classifier(obj: Any) -> bool:
    """Whether `obj` is a scikit-learn ``HistGradientBoostingClassifier``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return isinstance(obj, HistGradientBoostingClassifier)


def hgb_members(obj: Any, where: str = "the model") -> list[Any] | None:
    """The ``HistGradientBoostingClassifier`` members of an HGBEnsemble or of one HGB classifier.

    Returns the fitted members (one for a single classifier), or None when `obj` is neither, so
    a caller can try other model types. An unfitted model raises `NotFittedError`.
    """
    from sideband.scoring.classifiers import HGBEnsemble

    if isinstance(obj, HGBEnsemble):
        obj._check_fitted()
        return list(obj.members_)
    if is_hgb_classifier(obj):
        if not hasattr(obj, "_predictors"):
            msg = f"{where} (HistGradientBoostingClassifier) is not fitted; call fit(X, y) first"
            raise NotFittedError(msg)
        return [obj]
    return None


def read_member(model: Any, where: str = "the model") -> HGBMember:
    """Trees of one fitted ``HistGradientBoostingClassifier`` (checked: binary, numeric)."""
    if not is_hgb_classifier(model):
        msg = (
            f"{where} is a {type(model).__name__}, not a scikit-learn "
            "HistGradientBoostingClassifier; only HGBEnsemble members are compiled or exported"
        )
        raise InputError(msg)
    if not hasattr(model, "_predictors"):
        msg = f"{where} is not fitted; fit it before compiling"
        raise NotFittedError(msg)
    classes = np.asarray(model.classes_)
    if classes.size != 2 or int(model.n_trees_per_iteration_) != 1:
        msg = (
            f"{where} is a classifier with {classes.size} classes {classes.tolist()}; "
            "binary (0/1) classifiers only"
        )
        raise InputError(msg)
    if 1 not in classes.tolist():
        msg = f"{where} has classes {classes.tolist()}; label 1 (data/signal) must be one of them"
        raise InputError(msg)
    cat = getattr(model, "is_categorical_", None)
    if (cat is not None and np.any(cat)) or getattr(model, "_preprocessor", None) is not None:
        msg = (
            f"{where} has categorical features; only numeric splits are "
            "compiled (sideband never uses categorical features): refit with categorical_features=None"
        )
        raise InputError(msg)
    trees = []
    for it, predictors in enumerate(model._predictors):
        for p in predictors:
            nodes = p.nodes
            missing = set(_NODE_FIELDS) - set(nodes.dtype.names or ())
            if missing:
                import sklearn

                msg = (
                    f"{where}: scikit-learn {sklearn.__version__} stores tree nodes without "
                    f"the fields {sorted(missing)}; sideband reads scikit-learn 1.4-1.9's "
                    "TreePredictor.nodes: score with predict_proba instead, or pin scikit-learn"
                )
                raise InputError(msg)
            internal = nodes["is_leaf"] == 0
            if np.any(nodes["is_categorical"][internal]):
                msg = (
                    f"{where}, iteration {it}: a categorical split; CompiledTrees handles "
                    "numeric splits only"
                )
                raise InputError(msg)
            trees.append(
                HGBTree(
                    feature=nodes["feature_idx"].astype(np.int64),
                    threshold=nodes["num_threshold"].astype(np.float64),
                    missing_left=nodes["missing_go_to_left"].astype(bool),
                    left=nodes["left"].astype(np.int64),
                    right=nodes["right"].astype(np.int64),
                    value=nodes["value"].astype(np.float64),
                    is_leaf=nodes["is_leaf"].astype(bool),
                    depth=int(nodes["depth"].max()),
                )
            )
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    return HGBMember(
        trees=trees,
        baseline=float(baseline[0]),
        positive_is_second=int(classes[1]) == 1,
    )
