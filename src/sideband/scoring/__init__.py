"""Stage 4: anomaly scores of signal-region events, k-folded so no event is scored by a model
that trained on it.

Classifiers (one interface: ``fit(X, y, sample_weight=..., X_val=..., y_val=...)``,
``predict_proba``): `HGBEnsemble` (scikit-learn boosted trees, the default) and `MLPEnsemble`
(torch, the mean of its best epochs by validation loss; torch loads only when it is used), and
for constituent point clouds `PointCloudClassifier` (permutation-invariant, attention within each
jet; `score_kfold_point_clouds`).
`score_kfold` scores data and template out of fold; `efficiency_threshold` turns a selection
efficiency into a score cut. Protocols: `idealized_ad`, `supervised` (and their ``_kfold`` forms), `cwola`.
`FoldClassifiers` keeps an analysis's k-fold classifiers with their input names and units;
`export_onnx` / `OnnxScorer` (the ``onnx`` extra) run them outside Python; `CompiledTrees`
scores millions of events with a large HGB ensemble as torch tensor operations (CPU or GPU).
"""

from __future__ import annotations

import importlib
from typing import Any

from sideband.scoring.classifiers import HGBEnsemble
from sideband.scoring.fold_models import FoldClassifiers
from sideband.scoring.kfold import KFoldResult, efficiency_threshold, score_kfold
from sideband.scoring.protocols import (
    ProtocolResult,
    cwola,
    idealized_ad,
    idealized_ad_kfold,
    supervised,
    supervised_kfold,
)

__all__ = [
    "CompiledTrees",
    "FoldClassifiers",
    "HGBEnsemble",
    "KFoldResult",
    "MLPEnsemble",
    "OnnxScorer",
    "PointCloudClassifier",
    "ProtocolResult",
    "cwola",
    "efficiency_threshold",
    "export_onnx",
    "idealized_ad",
    "idealized_ad_kfold",
    "score_kfold",
    "score_kfold_point_clouds",
    "supervised",
    "supervised_kfold",
]


def __getattr__(name: str) -> Any:
    if name == "MLPEnsemble":
        return importlib.import_module("sideband.scoring.mlp").MLPEnsemble
    if name == "CompiledTrees":
        return importlib.import_module("sideband.scoring.compiled").CompiledTrees
    if name in ("OnnxScorer", "export_onnx"):
        return getattr(importlib.import_module("sideband.scoring.onnx_scorer"), name)
    if name in ("PointCloudClassifier", "score_kfold_point_clouds"):
        return getattr(importlib.import_module("sideband.scoring.point_cloud"), name)
    msg = f"module 'sideband.scoring' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return __all__
