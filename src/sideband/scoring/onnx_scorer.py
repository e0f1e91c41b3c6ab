"""ONNX export of the anomaly scorer, and scoring with onnxruntime.

`export_onnx` writes a fitted `HGBEnsemble`, `MLPEnsemble` (or a bare binary scikit-learn
``HistGradientBoostingClassifier``), or the fold models of a `KFoldResult`, as ONE ONNX graph:

- input ``features``: float64 (N, d), the columns in the order of the stored feature names;
- output ``score``: float64 (N,), the same number as ``model.predict_proba(X)[:, 1]`` (for fold
  models: their mean, as `KFoldResult.predict`);
- for fold models also ``fold_scores``: float64 (N, K), column k = ``models[k]``'s score, so the
  out-of-fold score of k-fold event j is ``fold_scores[j, fold[j]]`` (= ``KFoldResult.scores``).

The model carries its contract in ``metadata_props`` (keys `METADATA_KEYS`): the feature names
(JSON list, input order), their units (JSON list, ``"GeV"`` or ``""`` for dimensionless), the
sideband version, the model kind, the member counts and the input dtype. `OnnxScorer` reads them
and refuses inputs whose column names, order or units disagree, so a model is not silently fed
TeV for GeV or mj1 for delta_mj. C++ callers: see docs/onnx.md.

The graph is built from the fitted parameters with ``onnx.helper`` (no skl2onnx or torch.onnx):

- Boosted trees become one ``ai.onnx.ml`` ``TreeEnsemble`` node (opset 5) per model, with
  float64 thresholds and leaf values, each member's baseline as a first single-leaf tree, then
  ``Sigmoid`` and the member mean in float64. Branch decisions are therefore those of
  scikit-learn (``x <= threshold`` in float64, NaN following ``missing_go_to_left``); only the
  order of the float64 additions can differ. Measured difference on real LHCO SR events: below
  1e-12 (tests/test_onnx.py). skl2onnx 1.20 cannot convert scikit-learn 1.9's
  ``HistGradientBoostingClassifier`` (it passes numpy booleans to ``onnx.helper``) and would
  store float32 thresholds, which send events lying between the float32 and float64 threshold
  to the other branch.
- The MLP keeps torch's arithmetic: the standardisation ``(x - mean) / std`` in float64, a cast
  to float32, ``Gemm`` + ``Relu`` layers and ``Sigmoid`` in float32, a cast to float64 and the
  mean over the epoch models in float64. Only the float32 matrix products differ in rounding
  from torch's (measured difference below 1e-6).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from sideband.errors import InputError
from sideband.records import FEATURE_UNITS, FeatureTable
from sideband.scoring.hgb_trees import HGBMember, hgb_members, read_member

__all__ = [
    "DEFAULT_UNITS",
    "INPUT_NAME",
    "METADATA_KEYS",
    "OnnxScorer",
    "export_onnx",
]

logger = logging.getLogger(__name__)

#: Name of the graph input: float64 (N, d).
INPUT_NAME = "features"
#: Name of the score output: float64 (N,).
SCORE_OUTPUT = "score"
#: Name of the per-fold output of a fold export: float64 (N, K).
FOLD_OUTPUT = "fold_scores"
#: Units of the columns of `sideband.records.FEATURE_COLUMNS` ("" = dimensionless): `FEATURE_UNITS`.
DEFAULT_UNITS: Mapping[str, str] = FEATURE_UNITS
#: Keys of the model's ``metadata_props``, all with JSON values except the version strings.
METADATA_KEYS: tuple[str, ...] = (
    "sideband.format",
    "sideband.format_version",
    "sideband.version",
    "sideband.feature_names",
    "sideband.units",
    "sideband.input_name",
    "sideband.input_dtype",
    "sideband.outputs",
    "sideband.model_kind",
    "sideband.n_members",
    "sideband.n_folds",
)

_FORMAT = "sideband.onnx_scorer"
_FORMAT_VERSION = 1
_DEFAULT_OPSET = 21  # ai.onnx; TreeEnsemble is ai.onnx.ml opset 5 (onnx >= 1.16)
_MIN_OPSET = 18  # ReduceMean takes its axes as an input from opset 18 on
_ML_OPSET = 5
_ENERGY_GEV = {"MeV": 1e-3, "GeV": 1.0, "TeV": 1e3}
#: Fewest events for the magnitude check of GeV columns (a median of a few events can be low).
_MIN_UNIT_CHECK_EVENTS = 20
#: A GeV mass column whose median is below this (GeV) looks like TeV.
_TEV_MEDIAN_GEV = 20.0
#: ... and above this (GeV) looks like MeV.
_MEV_MEDIAN_GEV = 5e4


# ------------------------------------------------------------------------------------------
# graph building
# ------------------------------------------------------------------------------------------
@dataclass
class _Graph:
    """Nodes and initializers of the graph being built; names made unique by prefixes."""

    nodes: list[Any] = field(default_factory=list)
    inits: list[Any] = field(default_factory=list)

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        domain = attrs.pop("domain", "")
        self.nodes.append(
            helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs)
        )
        return output


def _hgb_member(member: Any, k: int) -> HGBMember:
    """The trees of boosted-tree member `k` (`sideband.scoring.hgb_trees.read_member`), which
    must be a 0/1 classifier with the log-loss: P(1) = sigmoid(raw score)."""
    classes = np.asarray(getattr(member, "classes_", []))
    loss = type(getattr(member, "_loss", None)).__name__
    if classes.tolist() != [0, 1] or loss != "HalfBinomialLoss":
        msg = (
            f"boosted-tree member {k} is not a binary 0/1 classifier with the log-loss (classes "
            f"{classes.tolist()}, loss {loss}); export_onnx handles binary data-vs-template "
            "classifiers only"
        )
        raise InputError(msg)
    return read_member(member, f"boosted-tree member {k}")


def _hgb_column(g: _Graph, members: list[Any], x: str, prefix: str) -> str:
    """Add one TreeEnsemble for all members; return the name of the (N, 1) float64 mean of
    their P(label 1)."""
    from onnx import helper

    roots: list[int] = []
    feat: list[np.ndarray] = []
    split: list[np.ndarray] = []
    miss: list[np.ndarray] = []
    true_id: list[np.ndarray] = []
    true_leaf: list[np.ndarray] = []
    false_id: list[np.ndarray] = []
    false_leaf: list[np.ndarray] = []
    leaf_target: list[np.ndarray] = []
    leaf_weight: list[np.ndarray] = []
    n_inner = n_leaves = 0

    def add_single_leaf(value: float, target: int) -> None:
        # a tree that always reaches one leaf: a dummy split whose two branches share the leaf
        nonlocal n_inner, n_leaves
        roots.append(n_inner)
        feat.append(np.zeros(1, np.int64))
        split.append(np.zeros(1))
        miss.append(np.zeros(1, np.int64))
        for ids, leafs in ((true_id, true_leaf), (false_id, false_leaf)):
            ids.append(np.array([n_leaves], np.int64))
            leafs.append(np.ones(1, np.int64))
        leaf_target.append(np.array([target], np.int64))
        leaf_weight.append(np.array([value], np.float64))
        n_inner += 1
        n_leaves += 1

    for k, model in enumerate(members):
        member = _hgb_member(model, k)
        # the baseline first, so the float64 sum runs in scikit-learn's order
        add_single_leaf(member.baseline, k)
        for tree in member.trees:
            is_leaf = tree.is_leaf
            if is_leaf[0]:
                add_single_leaf(float(tree.value[0]), k)
                continue
            inner, leaves = np.flatnonzero(~is_leaf), np.flatnonzero(is_leaf)
            local = np.empty(len(is_leaf), np.int64)
            local[inner] = n_inner + np.arange(inner.size)
            local[leaves] = n_leaves + np.arange(leaves.size)
            roots.append(n_inner)
            feat.append(tree.feature[inner])
            split.append(tree.threshold[inner])
            miss.append(tree.missing_left[inner].astype(np.int64))
            for child_of, ids, leafs in ((tree.left, true_id, true_leaf),
                                         (tree.right, false_id, false_leaf)):  # fmt: skip
                child = child_of[inner]
                ids.append(local[child])
                leafs.append(is_leaf[child].astype(np.int64))
            leaf_target.append(np.full(leaves.size, k, np.int64))
            leaf_weight.append(tree.value[leaves])
            n_inner += inner.size
            n_leaves += leaves.size

    def ints(parts: list[np.ndarray]) -> list[int]:
        return np.concatenate(parts).astype(np.int64).tolist()  # type: ignore[no-any-return]

    raw = g.node(
        "TreeEnsemble",
        [x],
        f"{prefix}raw",
        domain="ai.onnx.ml",
        aggregate_function=1,  # SUM
        post_transform=0,  # NONE
        n_targets=len(members),
        tree_roots=roots,
        nodes_featureids=ints(feat),
        nodes_splits=helper.make_tensor(
            "nodes_splits", 11, [n_inner], np.concatenate(split).tolist()
        ),
        nodes_modes=helper.make_tensor("nodes_modes", 2, [n_inner], [0] * n_inner),  # LEQ
        nodes_missing_value_tracks_true=ints(miss),
        nodes_truenodeids=ints(true_id),
        nodes_trueleafs=ints(true_leaf),
        nodes_falsenodeids=ints(false_id),
        nodes_falseleafs=ints(false_leaf),
        leaf_targetids=ints(leaf_target),
        leaf_weights=helper.make_tensor(
            "leaf_weights", 11, [n_leaves], np.concatenate(leaf_weight).tolist()
        ),
    )
    prob = g.node("Sigmoid", [raw], f"{prefix}proba")
    axes = g.const(f"{prefix}axes", np.array([1], np.int64))
    return g.node("ReduceMean", [prob, axes], f"{prefix}score", keepdims=1)


def _mlp_column(g: _Graph, model: Any, x: str, prefix: str) -> str:
    """Add the standardisation and every epoch model; return the name of the (N, 1) float64
    mean of their sigmoid outputs."""
    import torch

    model._check_fitted()
    mean = g.const(f"{prefix}mean", np.asarray(model.mean_, np.float64).reshape(1, -1))
    std = g.const(f"{prefix}std", np.asarray(model.std_, np.float64).reshape(1, -1))
    z64 = g.node("Div", [g.node("Sub", [x, mean], f"{prefix}centred"), std], f"{prefix}z64")
    z = g.node("Cast", [z64], f"{prefix}z", to=1)  # float32, as MLPEnsemble.predict_proba
    columns = []
    for e, net in enumerate(model.models_):
        h = z
        n_linear = 0
        for i, layer in enumerate(net):
            name = f"{prefix}e{e}_l{i}"
            if isinstance(layer, torch.nn.Linear):
                w = g.const(f"{name}_w", layer.weight.detach().cpu().numpy().astype(np.float32))
                b = g.const(f"{name}_b", layer.bias.detach().cpu().numpy().astype(np.float32))
                h = g.node("Gemm", [h, w, b], f"{name}_gemm", transB=1)
                n_linear += 1
            elif isinstance(layer, torch.nn.ReLU):
                h = g.node("Relu", [h], f"{name}_relu")
            else:
                msg = (
                    f"MLPEnsemble layer {type(layer).__name__} is not Linear or ReLU; "
                    "export_onnx converts the MLPEnsemble architecture only"
                )
                raise InputError(msg)
        if n_linear == 0:
            msg = "MLPEnsemble model without a Linear layer; refit the classifier"
            raise InputError(msg)
        p32 = g.node("Sigmoid", [h], f"{prefix}e{e}_sigmoid")
        columns.append(g.node("Cast", [p32], f"{prefix}e{e}_proba", to=11))
    stacked = g.node("Concat", columns, f"{prefix}proba", axis=1)
    axes = g.const(f"{prefix}axes", np.array([1], np.int64))
    return g.node("ReduceMean", [stacked, axes], f"{prefix}score", keepdims=1)


def _model_column(g: _Graph, model: Any, x: str, prefix: str) -> tuple[str, str, int]:
    """(output name, kind, n_members) of one fitted classifier's score column (N, 1)."""
    members = hgb_members(model, "the model")
    if members is not None:
        return _hgb_column(g, members, x, prefix), type(model).__name__, len(members)
    if type(model).__name__ == "MLPEnsemble":
        from sideband.scoring.mlp import MLPEnsemble

        if isinstance(model, MLPEnsemble):
            model._check_fitted()
            return _mlp_column(g, model, x, prefix), "MLPEnsemble", len(model.models_)
    msg = (
        f"export_onnx cannot convert {type(model).__name__}; pass a fitted HGBEnsemble, "
        "MLPEnsemble, HistGradientBoostingClassifier, a KFoldResult or a list of those"
    )
    raise InputError(msg)


def _n_features_in(model: Any) -> int:
    """Input width of a fitted, convertible model (InputError for other types, NotFittedError
    for unfitted sideband classifiers)."""
    from sideband.scoring.classifiers import HGBEnsemble

    kind = type(model).__name__
    if kind == "MLPEnsemble" or isinstance(model, HGBEnsemble):
        model._check_fitted()
    elif hgb_members(model, "the model") is None:
        msg = (
            f"export_onnx cannot convert {kind}; pass a fitted HGBEnsemble, MLPEnsemble, "
            "HistGradientBoostingClassifier, a KFoldResult or a list of those"
        )
        raise InputError(msg)
    return int(model.n_features_in_)


# ------------------------------------------------------------------------------------------
# names and units
# ------------------------------------------------------------------------------------------
def _check_names(names: Any, what: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        msg = f"{what} must be a list of column names, e.g. ['mj1', 'delta_mj']; got {names!r}"
        raise InputError(msg)
    out = list(names)
    if not all(isinstance(n, str) and n for n in out):
        msg = f"{what} must be non-empty strings; got {out!r}"
        raise InputError(msg)
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        msg = f"{what} name {dup} more than once; each column once"
        raise InputError(msg)
    return out


def _resolve_units(names: list[str], units: Any) -> list[str]:
    """Units per name: `units` as a sequence aligned with `names` or a mapping name -> unit;
    names not given take `DEFAULT_UNITS`."""
    if units is None:
        given: dict[str, str] = {}
    elif isinstance(units, Mapping):
        given = dict(units)
        extra = sorted(set(given) - set(names))
        if extra:
            msg = f"units names feature(s) {extra} that are not in feature_names {names}"
            raise InputError(msg)
    elif isinstance(units, Sequence) and not isinstance(units, str):
        if len(units) != len(names):
            msg = (
                f"units has {len(units)} entries but feature_names has {len(names)}; give one "
                "unit per feature ('GeV' or '' for dimensionless), or a mapping name -> unit"
            )
            raise InputError(msg)
        given = dict(zip(names, units, strict=True))
    else:
        msg = f"units must be None, a list aligned with feature_names or a mapping; got {units!r}"
        raise InputError(msg)
    out = []
    for name in names:
        unit = given.get(name, DEFAULT_UNITS.get(name))
        if unit is None:
            msg = (
                f"no unit known for feature {name!r}; pass units={{'{name}': 'GeV'}} (or '' for "
                "a dimensionless feature)"
            )
            raise InputError(msg)
        if not isinstance(unit, str):
            msg = f"the unit of {name!r} must be a string such as 'GeV' or ''; got {unit!r}"
            raise InputError(msg)
        out.append(unit.strip())
    return out


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def _require(module: str) -> None:
    """InputError naming the extra to install unless `module` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        msg = (
            f"{module} is not installed; ONNX export and scoring need the onnx extra: "
            "pip install 'sideband[onnx]'"
        )
        raise InputError(msg)


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    feature_names: Sequence[str],
    units: Sequence[str] | Mapping[str, str] | None = None,
    opset: int | None = None,
) -> Path:
    """Write a fitted anomaly scorer as one ONNX model (temporary file, then rename).

    Parameters
    ----------
    model
        A fitted `HGBEnsemble`, `MLPEnsemble` or binary ``HistGradientBoostingClassifier``; or a
        `KFoldResult` or a sequence of such fitted models (the fold models).
    path
        Output file (``.onnx``); its folder is created.
    feature_names
        Names of the d input columns, in the order the model was trained on (e.g. the config's
        ``features``); stored in the metadata, and `OnnxScorer` picks columns by them.
    units
        Unit per feature: a list aligned with ``feature_names`` or a mapping name -> unit, ``"GeV"``
        for masses, ``""`` for dimensionless; names left out take `DEFAULT_UNITS` (the
        `FEATURE_COLUMNS` units). A name with no known unit is an error.
    opset
        ``ai.onnx`` opset, 18 up to the installed onnx's (default 21); the trees use
        ``ai.onnx.ml`` opset 5 (``TreeEnsemble``), so the runtime needs onnxruntime >= 1.21
        (tested with 1.32).

    Returns
    -------
    Path
        The file written.

    Outputs of the graph: ``score`` float64 (N,) (the model's P(label 1); for fold models the
    mean over them) and, for fold models, ``fold_scores`` float64 (N, K). The input
    ``features`` is float64 (N, d): the trees' thresholds are float64 as in scikit-learn.
    """
    _require("onnx")
    import onnx
    from onnx import helper

    from sideband import __version__
    from sideband.report import atomic_write
    from sideband.scoring.kfold import KFoldResult

    names = _check_names(feature_names, "feature_names")
    unit_list = _resolve_units(names, units)
    max_opset = int(onnx.defs.onnx_opset_version())
    opset = _DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or not _MIN_OPSET <= opset <= max_opset:
        msg = f"opset must be an integer in [{_MIN_OPSET}, {max_opset}]; got {opset!r}"
        raise InputError(msg)

    if isinstance(model, KFoldResult):
        models, folds = list(model.models), True
    elif isinstance(model, Sequence) and not isinstance(model, str):
        models, folds = list(model), True
    else:
        models, folds = [model], False
    if not models:
        msg = "no fold models to export; pass a KFoldResult or a non-empty list of fitted models"
        raise InputError(msg)
    for k, m in enumerate(models):
        n_in = _n_features_in(m)
        if n_in != len(names):
            which = f"fold model {k}" if folds else type(m).__name__
            msg = (
                f"{which} was fitted on {n_in} feature(s) but feature_names lists {len(names)} "
                f"({names}); name exactly the training columns, in order"
            )
            raise InputError(msg)

    g = _Graph()
    cols, kinds, n_members = [], [], []
    for k, m in enumerate(models):
        col, kind, n = _model_column(g, m, INPUT_NAME, f"m{k}_")
        cols.append(col)
        kinds.append(kind)
        n_members.append(n)
    if folds:
        fold_out = g.node("Concat", cols, FOLD_OUTPUT, axis=1)
        axes = g.const("fold_axes", np.array([1], np.int64))
        g.node("ReduceMean", [fold_out, axes], SCORE_OUTPUT, keepdims=0)
    else:
        shape = g.const("score_shape", np.array([-1], np.int64))
        g.node("Reshape", [cols[0], shape], SCORE_OUTPUT)

    dbl = onnx.TensorProto.DOUBLE
    doc_in = f"float64 (N, {len(names)}): columns {names}, units {unit_list}"
    inputs = [helper.make_tensor_value_info(INPUT_NAME, dbl, ["N", len(names)], doc_in)]
    outputs = [helper.make_tensor_value_info(SCORE_OUTPUT, dbl, ["N"], "P(label 1), float64 (N,)")]
    described = {SCORE_OUTPUT: "float64 (N,): P(label 1) = predict_proba(X)[:, 1]"}
    if folds:
        outputs.append(
            helper.make_tensor_value_info(
                FOLD_OUTPUT, dbl, ["N", len(models)], "score of each fold model, float64 (N, K)"
            )
        )
        described[SCORE_OUTPUT] = "float64 (N,): mean of the fold models' P(label 1)"
        described[FOLD_OUTPUT] = "float64 (N, K): P(label 1) of fold model k in column k"
    kind = f"kfold[{','.join(dict.fromkeys(kinds))}]" if folds else kinds[0]
    graph = helper.make_graph(g.nodes, "sideband_anomaly_score", inputs, outputs, g.inits)
    onx = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", opset),
            helper.make_opsetid("ai.onnx.ml", _ML_OPSET),
        ],
        producer_name="sideband",
        producer_version=__version__,
        doc_string=f"sideband anomaly score ({kind}); inputs {names} in {unit_list}",
    )
    meta = {
        "sideband.format": _FORMAT,
        "sideband.format_version": str(_FORMAT_VERSION),
        "sideband.version": __version__,
        "sideband.feature_names": json.dumps(names),
        "sideband.units": json.dumps(unit_list),
        "sideband.input_name": INPUT_NAME,
        "sideband.input_dtype": "float64",
        "sideband.outputs": json.dumps(described),
        "sideband.model_kind": kind,
        "sideband.n_members": json.dumps(n_members if folds else n_members[0]),
        "sideband.n_folds": json.dumps(len(models) if folds else 0),
    }
    helper.set_model_props(onx, meta)
    onnx.checker.check_model(onx, full_check=True)
    data = onx.SerializeToString()
    return atomic_write(Path(path), lambda p: p.write_bytes(data))


# ------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------
def _energy_hint(got: str, want: str, *, capital: bool = False) -> str:
    """How to convert a column from unit `got` to unit `want`."""
    if got in _ENERGY_GEV and want in _ENERGY_GEV:
        factor = _ENERGY_GEV[got] / _ENERGY_GEV[want]
        hint = f"multiply the column by {factor:g} ({got} -> {want})"
    else:
        hint = f"convert the column to {want or 'a dimensionless number'}"
    return hint[0].upper() + hint[1:] if capital else hint


class OnnxScorer:
    """An exported anomaly scorer run by onnxruntime; use `OnnxScorer.load`.

    Attributes
    ----------
    path
        The model file.
    feature_names
        Input columns, in order (from the metadata).
    units
        Unit of each input column (``"GeV"``, ``""`` = dimensionless).
    metadata
        All ``metadata_props`` of the model (strings).
    n_folds
        Number of fold models (0 for a single model).
    """

    def __init__(self, session: Any, path: Path, metadata: Mapping[str, str]) -> None:
        self._session = session
        self.path = path
        self.metadata = dict(metadata)
        names = self._meta_json("sideband.feature_names")
        units = self._meta_json("sideband.units")
        if not (isinstance(names, list) and isinstance(units, list) and len(names) == len(units)):
            self._bad("feature names and units are not two lists of the same length")
        self.feature_names: tuple[str, ...] = tuple(_check_names(names, f"{path} feature_names"))
        self.units: tuple[str, ...] = tuple(str(u) for u in units)
        self.n_folds = int(self._meta_json("sideband.n_folds"))
        inp = session.get_inputs()
        if (
            self.metadata.get("sideband.input_dtype") != "float64"
            or len(inp) != 1
            or inp[0].name != INPUT_NAME
            or inp[0].type != "tensor(double)"
            or inp[0].shape[-1] != len(self.feature_names)
        ):
            self._bad(
                f"its input ({[(i.name, i.type, i.shape) for i in inp]}) does not match the "
                f"metadata ({len(self.feature_names)} float64 features)"
            )
        self._outputs = {o.name for o in session.get_outputs()}
        if SCORE_OUTPUT not in self._outputs or (self.n_folds and FOLD_OUTPUT not in self._outputs):
            self._bad(f"outputs {sorted(self._outputs)} lack {SCORE_OUTPUT!r} or {FOLD_OUTPUT!r}")

    def _bad(self, why: str) -> NoReturn:
        msg = f"{self.path} is not a sideband ONNX scorer: {why}; re-export it with export_onnx"
        raise InputError(msg)

    def _meta_json(self, key: str) -> Any:
        if key not in self.metadata:
            self._bad(f"metadata key {key!r} is missing")
        try:
            return json.loads(self.metadata[key])
        except json.JSONDecodeError:
            self._bad(f"metadata {key!r} is not JSON")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        n_threads: int | None = None,
    ) -> OnnxScorer:
        """Open a model written by `export_onnx`.

        Parameters
        ----------
        path
            The ``.onnx`` file.
        device
            ``"cpu"`` (default), ``"cuda"`` (CUDAExecutionProvider, error if onnxruntime has
            none) or ``"auto"`` (CUDA when available). The tree ensembles run on the CPU in any
            case (onnxruntime has no CUDA TreeEnsemble kernel).
        n_threads
            onnxruntime intra-op threads (None: its default, all cores).

        Raises
        ------
        InputError
            Missing, unreadable or corrupt file, or one without sideband's metadata.
        """
        _require("onnxruntime")
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            msg = f"ONNX model {p} does not exist; write it with sideband.scoring export_onnx"
            raise InputError(msg)
        available = ort.get_available_providers()
        cuda = "CUDAExecutionProvider" in available
        if device not in ("cpu", "cuda", "auto"):
            msg = f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}"
            raise InputError(msg)
        if device == "cuda" and not cuda:
            msg = (
                f"device='cuda' asked for, but onnxruntime offers {available}; install "
                "onnxruntime-gpu or use device='cpu'"
            )
            raise InputError(msg)
        providers = ["CPUExecutionProvider"]
        if device == "cuda" or (device == "auto" and cuda):
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if n_threads is not None:
            if not isinstance(n_threads, int) or n_threads < 1:
                msg = f"n_threads must be None or a positive integer; got {n_threads!r}"
                raise InputError(msg)
            options.intra_op_num_threads = n_threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(p), sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime raises its own pybind11 exception classes
            msg = (
                f"{p} is not a readable ONNX model ({type(err).__name__}: {str(err)[:200]}); "
                "re-export it with export_onnx"
            )
            raise InputError(msg) from err
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("sideband.format") != _FORMAT:
            msg = (
                f"{p} has no sideband scorer metadata (sideband.format is "
                f"{meta.get('sideband.format')!r}); export the model with "
                "sideband.scoring export_onnx, which stores feature names and units"
            )
            raise InputError(msg)
        if meta.get("sideband.format_version") != str(_FORMAT_VERSION):
            msg = (
                f"{p} has scorer format version {meta.get('sideband.format_version')!r}; this "
                f"sideband reads version {_FORMAT_VERSION}: re-export it with this version"
            )
            raise InputError(msg)
        return cls(session, p, meta)

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers in use."""
        return list(self._session.get_providers())

    # -------------------------------------------------------------------- inputs
    def _columns(self, X: Any, feature_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        """The input matrix (N, d) in the stored order and the names the caller gave."""
        stored = list(self.feature_names)
        if isinstance(X, FeatureTable | Mapping):
            if feature_names is not None:
                msg = (
                    "feature_names is for plain arrays only: a FeatureTable or mapping is read "
                    "by column name; leave feature_names out"
                )
                raise InputError(msg)
            cols = X.columns if isinstance(X, FeatureTable) else X
            missing = [n for n in stored if n not in cols]
            if missing:
                msg = (
                    f"the input lacks feature(s) {missing} that the model needs (it has "
                    f"{sorted(cols)}); the model was trained on {stored}: add those columns"
                )
                raise InputError(msg)
            arrays = [np.asarray(cols[n], dtype=np.float64) for n in stored]
            if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
                shapes = {n: np.shape(a) for n, a in zip(stored, arrays, strict=True)}
                msg = f"feature columns must be 1-D of one length; got shapes {shapes}"
                raise InputError(msg)
            return np.column_stack(arrays), stored
        if feature_names is None:
            msg = (
                f"X is a plain array, so its column order cannot be checked: pass "
                f"feature_names=[...] naming its columns in order (the model expects {stored}; "
                "feature_names=scorer.feature_names accepts that order), or pass a FeatureTable "
                "or a mapping name -> array"
            )
            raise InputError(msg)
        names = _check_names(feature_names, "feature_names")
        if names != stored:
            missing = [n for n in stored if n not in names]
            extra = [n for n in names if n not in stored]
            if missing or extra:
                what = f"missing {missing}" if missing else ""
                what += (", " if what and extra else "") + (f"unknown {extra}" if extra else "")
                msg = (
                    f"feature_names {names} do not match the model's {stored} ({what}); "
                    "give exactly the training columns"
                )
            else:
                order = [names.index(n) for n in stored]
                msg = (
                    f"columns are in the order {names} but the model expects {stored}; reorder "
                    f"with X[:, {order}] or pass a FeatureTable / mapping name -> array"
                )
            raise InputError(msg)
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(stored):
            msg = f"X must have shape (N, {len(stored)}) for columns {stored}; got {arr.shape}"
            raise InputError(msg)
        return arr, names

    def _check_units(self, X: Any, names: list[str], units: Any) -> None:
        """Compare the caller's units (explicit, or GeV implied by a FeatureTable) with the
        stored ones; columns whose unit the caller does not state are not compared."""
        given: dict[str, Any] = {}
        if isinstance(X, FeatureTable):  # GeV by definition (sideband.records)
            given = {n: DEFAULT_UNITS[n] for n in names if n in DEFAULT_UNITS}
        if units is None:
            pass
        elif isinstance(units, Mapping):
            extra = sorted(set(units) - set(names))
            if extra:
                msg = f"units names column(s) {extra} that the input does not have ({names})"
                raise InputError(msg)
            given.update(units)
        elif isinstance(units, Sequence) and not isinstance(units, str):
            if len(units) != len(names):
                msg = (
                    f"units has {len(units)} entries for {len(names)} columns {names}; give one "
                    "unit per column, or a mapping name -> unit"
                )
                raise InputError(msg)
            given.update(zip(names, units, strict=True))
        else:
            msg = f"units must be None, a list aligned with the columns or a mapping; got {units!r}"
            raise InputError(msg)
        for i, (name, want) in enumerate(zip(self.feature_names, self.units, strict=True)):
            if name not in given:
                continue
            got = given[name]
            if not isinstance(got, str):
                msg = f"the unit of {name!r} must be a string such as 'GeV' or ''; got {got!r}"
                raise InputError(msg)
            if got.strip() != want:
                source = "the units argument" if units is not None else "a FeatureTable (GeV)"
                msg = (
                    f"feature {name!r} (model column {i}) is in {got.strip()!r} according to "
                    f"{source}, but the model was trained on {want!r}: "
                    f"{_energy_hint(got.strip(), want)} and state it as {want!r}"
                )
                raise InputError(msg)

    def _check_magnitudes(self, x: np.ndarray) -> None:
        """Masses stored in GeV whose median over the batch looks like TeV or MeV."""
        from sideband.regions import check_mass_units

        if len(x) < _MIN_UNIT_CHECK_EVENTS:
            return
        for i, (name, unit) in enumerate(zip(self.feature_names, self.units, strict=True)):
            if unit != "GeV":
                continue
            col = x[:, i]
            if name == "mjj":
                check_mass_units(col, name=name)
            med = float(np.median(col))
            if med < _TEV_MEDIAN_GEV or med > _MEV_MEDIAN_GEV:
                guess = "TeV" if med < _TEV_MEDIAN_GEV else "MeV"
                msg = (
                    f"feature {name!r} has median {med:.3g} over {len(col)} events: this looks "
                    f"like {guess} (or another column in its place), but the model takes GeV. "
                    f"{_energy_hint(guess, 'GeV', capital=True)}, or check the column order; pass "
                    "check_units=False if these really are GeV"
                )
                raise InputError(msg)

    def prepare(
        self,
        X: Any,
        *,
        feature_names: Sequence[str] | None = None,
        units: Sequence[str] | Mapping[str, str] | None = None,
        check_units: bool = True,
    ) -> np.ndarray:
        """The checked float64 input matrix (N, d), columns in the stored order (see `score`)."""
        from sideband.scoring.classifiers import check_features

        arr, names = self._columns(X, feature_names)
        self._check_units(X, names, units)
        arr = check_features(arr, name="X", n_features=len(self.feature_names))
        if check_units:
            self._check_magnitudes(arr)
        return arr

    # -------------------------------------------------------------------- scoring
    def _run(self, output: str, x: np.ndarray, batch_size: int) -> np.ndarray:
        if not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be a positive integer; got {batch_size!r}"
            raise InputError(msg)
        width = () if output == SCORE_OUTPUT else (self.n_folds,)
        out = np.empty((len(x), *width), dtype=np.float64)
        for i in range(0, len(x), batch_size):
            chunk = np.ascontiguousarray(x[i : i + batch_size])
            out[i : i + batch_size] = self._session.run([output], {INPUT_NAME: chunk})[0]
        return out

    def score(
        self,
        X: Any,
        *,
        feature_names: Sequence[str] | None = None,
        units: Sequence[str] | Mapping[str, str] | None = None,
        batch_size: int = 65536,
        check_units: bool = True,
    ) -> np.ndarray:
        """Anomaly score (N,) float64: the exported model's P(label 1) (fold exports: the mean
        over the fold models).

        Parameters
        ----------
        X
            A `FeatureTable` (columns picked by name, masses in GeV), a mapping name -> array
            (N,), or a float array (N, d) whose column names ``feature_names`` must give.
        feature_names
            For a plain array only: its column names in order. They must equal the stored
            `feature_names` (an InputError says how to reorder otherwise).
        units
            Units of the input columns (a list aligned with the columns, or a mapping name ->
            unit); compared with the stored `units` (e.g. ``"TeV"`` against ``"GeV"`` raises).
            A FeatureTable is GeV by definition.
        batch_size
            Events per onnxruntime call.
        check_units
            Also reject GeV mass columns whose median looks like TeV (< 20) or MeV (> 5e4),
            checked on inputs of at least 20 events; ``mjj`` uses
            `sideband.regions.check_mass_units`.
        """
        x = self.prepare(X, feature_names=feature_names, units=units, check_units=check_units)
        return self._run(SCORE_OUTPUT, x, batch_size)

    def fold_scores(
        self,
        X: Any,
        *,
        feature_names: Sequence[str] | None = None,
        units: Sequence[str] | Mapping[str, str] | None = None,
        batch_size: int = 65536,
        check_units: bool = True,
    ) -> np.ndarray:
        """Score of every fold model, float64 (N, K) (fold exports only; arguments as `score`).

        For the k-fold events, ``fold_scores(X)[j, fold[j]]`` is the out-of-fold score
        `KFoldResult.scores` ``[j]``.
        """
        if not self.n_folds:
            msg = f"{self.path} holds a single model, not fold models; use score()"
            raise InputError(msg)
        x = self.prepare(X, feature_names=feature_names, units=units, check_units=check_units)
        return self._run(FOLD_OUTPUT, x, batch_size)

    def __repr__(self) -> str:
        return (
            f"OnnxScorer({str(self.path)!r}, kind={self.metadata.get('sideband.model_kind')!r}, "
            f"features={list(self.feature_names)}, units={list(self.units)})"
        )
