"""Training protocols that define what an anomaly score is compared against.

* `idealized_ad` (IAD): SR data (label 1) against a pure background reference (label 0), the
  upper bound any background template can reach;
* `supervised`: signal (label 1) against background (label 0) with truth labels, the upper bound
  of any score;
* `idealized_ad_kfold`, `supervised_kfold`: the same, with the background sample k-folded so
  that it serves as reference and as test background (every test event scored by the one model
  that never saw it): the choice when background events are scarce;
* `cwola`: classification without labels, SR data (label 1) against the adjacent sidebands
  (label 0), the template-free baseline. It scores the SR data itself, k-folded, so every event
  gets its score from a model that never saw it.

`idealized_ad` and `supervised` are evaluated on a separate labelled test set, scored by the mean
of the trained models. With ``n_folds = k`` they train k models with rotating validation folds
(model i early-stops on fold i of both classes and trains on the rest); with ``n_folds = None``
one classifier trains on everything with its own internal validation split.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.scoring.classifiers import HGBEnsemble, check_features, member_seeds
from sideband.scoring.kfold import (
    KFoldResult,
    fold_indices,
    labelled,
    model_scores,
    score_kfold,
)

__all__ = [
    "CrossValEnsemble",
    "ProtocolResult",
    "cwola",
    "fit_ensemble",
    "idealized_ad",
    "idealized_ad_kfold",
    "supervised",
    "supervised_kfold",
]

logger = logging.getLogger(__name__)

#: Largest fraction of test rows that may also appear in the training inputs.
_MAX_OVERLAP = 0.01


def _accepts_validation(model: Any) -> bool:
    try:
        return "X_val" in inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        return False


def _seeded(classifier: Any, seed: int) -> Any:
    from sklearn.base import clone

    model = clone(classifier)
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    return model


@dataclass(frozen=True)
class CrossValEnsemble:
    """Classifiers trained on label-1 vs label-0 samples, scoring new events by their mean.

    Attributes
    ----------
    models
        Fitted classifiers. With rotating validation, model ``i`` never trained on fold ``i``.
    fold_1, fold_0
        int64 (N_1,), (N_0,): validation fold of each training row (all 0 for a single model).
    validation_scores_1, validation_scores_0
        float64 (N_1,), (N_0,): each training row scored by the model it validated (NaN when a
        single model trained on everything, which has no held-out rows of its own).
    """

    models: tuple[Any, ...]
    fold_1: np.ndarray
    fold_0: np.ndarray
    validation_scores_1: np.ndarray
    validation_scores_0: np.ndarray

    def predict(self, X: Any) -> np.ndarray:
        """Mean score over the models, shape (M,), for events none of them trained on."""
        n = getattr(self.models[0], "n_features_in_", None)
        Xa = check_features(X, name="X", n_features=None if n is None else int(n))
        return np.mean([model_scores(m, Xa) for m in self.models], axis=0)


def fit_ensemble(
    x1: Any,
    x0: Any,
    *,
    classifier: Any = None,
    n_folds: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CrossValEnsemble:
    """Train label-1 (`x1`, (N_1, d)) against label-0 (`x0`, (N_0, d)) classifiers.

    ``n_folds = k`` (>= 2): both samples are cut into k seeded folds; model ``i`` validates on
    fold ``i`` (passed as ``X_val``/``y_val`` when the classifier's ``fit`` accepts them, as
    `HGBEnsemble` and `MLPEnsemble` do) and trains on the other folds. ``n_folds = None``: one
    model on all rows, validating on its own internal split. ``classifier`` (unfitted, cloned per
    model; default ``HGBEnsemble()``) gets a seed from ``SeedSequence(seed)`` per model.
    """
    from tqdm import tqdm

    classifier = HGBEnsemble() if classifier is None else classifier
    a = check_features(x1, name="label-1 sample")
    b = check_features(x0, name="label-0 sample", n_features=a.shape[1])
    if n_folds is not None and (not isinstance(n_folds, (int, np.integer)) or n_folds < 2):
        msg = f"n_folds must be None (one model) or an integer >= 2; got {n_folds!r}"
        raise InputError(msg)
    k = 1 if n_folds is None else int(n_folds)
    for name, arr in (("label-1 sample", a), ("label-0 sample", b)):
        if len(arr) < 2 * k:
            msg = f"the {name} has {len(arr)} events; at least {2 * k} are needed to train"
            raise InputError(msg)
    seeds = member_seeds(seed, k + 2)
    fold_1 = fold_indices(len(a), k, np.random.default_rng(seeds[0]))
    fold_0 = fold_indices(len(b), k, np.random.default_rng(seeds[1]))
    val_1, val_0 = np.full(len(a), np.nan), np.full(len(b), np.nan)
    models = []
    for i in tqdm(range(k), desc="cross-validation", disable=not progress or k == 1):
        model = _seeded(classifier, seeds[2 + i])
        if k == 1:
            model.fit(*labelled(a, b))
        else:
            tr1, tr0 = fold_1 != i, fold_0 != i
            X, y = labelled(a[tr1], b[tr0])
            if _accepts_validation(model):
                Xv, yv = labelled(a[~tr1], b[~tr0])
                model.fit(X, y, X_val=Xv, y_val=yv)
            else:
                model.fit(X, y)
            val_1[~tr1] = model_scores(model, a[~tr1])
            val_0[~tr0] = model_scores(model, b[~tr0])
        models.append(model)
    return CrossValEnsemble(tuple(models), fold_1, fold_0, val_1, val_0)


@dataclass(frozen=True)
class ProtocolResult:
    """Scores and headline numbers of one protocol run.

    Attributes
    ----------
    protocol
        ``"iad"``, ``"supervised"`` or ``"cwola"``.
    scores, labels
        float64 / int64 (N_test,): test-set scores and truth labels (1 = signal).
    metrics
        `sideband.evaluation.summary` of the test scores (AUC, SIC at 1e-4/1e-3/1e-2, max SIC
        with its cutoff rule, counts).
    n_label1, n_label0
        Training events of each class.
    seconds
        Wall time of training and scoring.
    ensemble
        The trained `CrossValEnsemble` (iad, supervised), one per fold (the ``_kfold``
        protocols, whose ``n_label0`` is the reference size of one fold model) or the
        `KFoldResult` (cwola).
    """

    protocol: str
    scores: np.ndarray
    labels: np.ndarray
    metrics: dict[str, Any]
    n_label1: int
    n_label0: int
    seconds: float
    ensemble: Any = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "protocol": self.protocol,
            "n_train_label1": self.n_label1,
            "n_train_label0": self.n_label0,
            "seconds": round(self.seconds, 2),
            **self.metrics,
        }


def _summary(labels: np.ndarray, scores: np.ndarray, min_background: int | None) -> dict[str, Any]:
    """`sideband.evaluation.summary` with the default max-SIC cutoff when none is given."""
    from sideband.evaluation.metrics import DEFAULT_MIN_BACKGROUND, summary

    mb = DEFAULT_MIN_BACKGROUND if min_background is None else min_background
    return summary(labels, scores, min_background=mb)


def _check_test(test_X: Any, test_y: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    X = check_features(test_X, name="test_X", n_features=n_features)
    y = np.asarray(test_y)
    if y.shape != (len(X),):
        msg = f"test_y has shape {y.shape}; expected ({len(X)},), one 0/1 label per test row"
        raise InputError(msg)
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()
        msg = f"test labels must be 0 (background) or 1 (signal); found {bad}"
        raise InputError(msg)
    y = y.astype(np.int64)
    n_sig = int(y.sum())
    if n_sig == 0 or n_sig == len(y):
        msg = (
            f"the test set holds {n_sig} signal and {len(y) - n_sig} background events; "
            "evaluation needs both. Use a labelled test file with signal and background rows."
        )
        raise InputError(msg)
    return X, y


def _check_disjoint(test: np.ndarray, train: Sequence[np.ndarray]) -> None:
    """Refuse a test set that repeats the training events (same file passed twice)."""

    def rows(a: np.ndarray) -> set[bytes]:
        c = np.ascontiguousarray(a, dtype=np.float64)
        return {r.tobytes() for r in c}

    seen: set[bytes] = set()
    for arr in train:
        seen |= rows(arr)
    shared = sum(r in seen for r in rows(test))
    if shared > _MAX_OVERLAP * len(test):
        msg = (
            f"{shared} of {len(test)} test events also appear in the training inputs; a test set "
            "must be disjoint from the data and the reference. Split the file first."
        )
        raise InputError(msg)
    if shared:
        logger.warning("%d test events also appear in the training inputs", shared)


def _run(
    protocol: str,
    x1: Any,
    x0: Any,
    test_X: Any,
    test_y: Any,
    *,
    classifier: Any,
    n_folds: int | None,
    seed: int,
    min_background: int | None,
    progress: bool,
) -> ProtocolResult:
    start = time.perf_counter()
    a = check_features(x1, name="label-1 sample")
    b = check_features(x0, name="label-0 sample", n_features=a.shape[1])
    X, y = _check_test(test_X, test_y, a.shape[1])
    _check_disjoint(X, (a, b))
    ens = fit_ensemble(a, b, classifier=classifier, n_folds=n_folds, seed=seed, progress=progress)
    scores = ens.predict(X)
    metrics = _summary(y, scores, min_background)
    seconds = time.perf_counter() - start
    logger.info("%s: AUC %.4f, SIC@1e-3 %.2f (%.1f s)", protocol, metrics["auc"],
                metrics["sic_at_1e-03"], seconds)  # fmt: skip
    return ProtocolResult(protocol, scores, y, metrics, len(a), len(b), seconds, ens)


def idealized_ad(
    data_X: Any,
    background_X: Any,
    test_X: Any,
    test_y: Any,
    *,
    classifier: Any = None,
    n_folds: int | None = None,
    seed: int = 0,
    min_background: int | None = None,
    progress: bool = False,
) -> ProtocolResult:
    """Idealized anomaly detector: SR data vs a pure background reference, scored on a test set.

    Parameters
    ----------
    data_X
        SR data features (N_data, d): background plus whatever signal it holds (label 1).
    background_X
        Background reference in the SR (N_ref, d), e.g. simulated QCD (label 0): a perfect
        background template.
    test_X, test_y
        Labelled test set (N_test, d) and (N_test,) with 1 = signal, 0 = background, disjoint
        from both training samples.
    classifier
        Unfitted classifier (default ``HGBEnsemble()``); see `fit_ensemble` for ``n_folds``.
    min_background
        Cutoff of the maximum SIC (default `DEFAULT_MIN_BACKGROUND` background events).
    """
    return _run("iad", data_X, background_X, test_X, test_y, classifier=classifier,
                n_folds=n_folds, seed=seed, min_background=min_background, progress=progress)  # fmt: skip


def supervised(
    signal_X: Any,
    background_X: Any,
    test_X: Any,
    test_y: Any,
    *,
    classifier: Any = None,
    n_folds: int | None = None,
    seed: int = 0,
    min_background: int | None = None,
    progress: bool = False,
) -> ProtocolResult:
    """Fully supervised classifier: pure signal (label 1) vs pure background (label 0).

    Same arguments as `idealized_ad`, with ``signal_X`` (N_sig, d) in place of the data.
    """
    return _run("supervised", signal_X, background_X, test_X, test_y, classifier=classifier,
                n_folds=n_folds, seed=seed, min_background=min_background, progress=progress)  # fmt: skip


def _run_pooled(
    protocol: str,
    x1: Any,
    background_X: Any,
    signal_test_X: Any,
    *,
    classifier: Any,
    n_folds: int,
    seed: int,
    min_background: int | None,
    progress: bool,
) -> ProtocolResult:
    from tqdm import tqdm

    start = time.perf_counter()
    a = check_features(x1, name="label-1 sample")
    pool = check_features(background_X, name="background_X", n_features=a.shape[1])
    sig = check_features(signal_test_X, name="signal_test_X", n_features=a.shape[1])
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        msg = f"n_folds must be an integer >= 2 (folds of the background pool); got {n_folds!r}"
        raise InputError(msg)
    for name, arr in (("background_X", pool), ("signal_test_X", sig)):
        if len(arr) < 2 * n_folds:
            msg = f"{name} has {len(arr)} events; at least {2 * n_folds} are needed"
            raise InputError(msg)
    _check_disjoint(np.concatenate([pool, sig]), (a,))
    seeds = member_seeds(seed, n_folds + 2)
    fold_b = fold_indices(len(pool), n_folds, np.random.default_rng(seeds[0]))
    fold_s = fold_indices(len(sig), n_folds, np.random.default_rng(seeds[1]))
    score_b, score_s = np.empty(len(pool)), np.empty(len(sig))
    ensembles = []
    for k in tqdm(range(n_folds), desc=f"{protocol} folds", disable=not progress):
        ens = fit_ensemble(a, pool[fold_b != k], classifier=classifier, seed=seeds[2 + k])
        score_b[fold_b == k] = ens.predict(pool[fold_b == k])
        score_s[fold_s == k] = ens.predict(sig[fold_s == k])
        ensembles.append(ens)
    scores = np.concatenate([score_b, score_s])
    labels = np.concatenate([np.zeros(len(pool), np.int64), np.ones(len(sig), np.int64)])
    metrics = _summary(labels, scores, min_background)
    n0 = int((fold_b != 0).sum())
    return ProtocolResult(protocol, scores, labels, metrics, len(a), n0,
                          time.perf_counter() - start, tuple(ensembles))  # fmt: skip


def idealized_ad_kfold(
    data_X: Any,
    background_X: Any,
    signal_test_X: Any,
    *,
    classifier: Any = None,
    n_folds: int = 5,
    seed: int = 0,
    min_background: int | None = None,
    progress: bool = False,
) -> ProtocolResult:
    """IAD whose background reference also supplies the test background, k-folded.

    The background pool `background_X` (N_B, d) is cut into `n_folds` folds; model k trains the
    data `data_X` (label 1) against the other folds (label 0) and scores fold k and fold k of the
    test signal `signal_test_X` (N_S, d). Every test event is scored by the one model that never
    saw it, each model's reference holds (k-1)/k of the pool, and the ROC rests on all N_B
    background events: with a limited background sample this uses it twice over (as reference
    and as test background) where a fixed split would have to halve it. Scores of different
    models are pooled into one ROC, so their calibration spread (small for ensembles trained on
    almost the same events) can only lower the quoted SIC.
    """
    return _run_pooled("iad", data_X, background_X, signal_test_X, classifier=classifier,
                       n_folds=n_folds, seed=seed, min_background=min_background,
                       progress=progress)  # fmt: skip


def supervised_kfold(
    signal_X: Any,
    background_X: Any,
    signal_test_X: Any,
    *,
    classifier: Any = None,
    n_folds: int = 5,
    seed: int = 0,
    min_background: int | None = None,
    progress: bool = False,
) -> ProtocolResult:
    """Supervised classifier with the background pool k-folded as in `idealized_ad_kfold`:
    `signal_X` (label 1, training signal) against (k-1)/k of `background_X`, scoring the rest and
    the test signal `signal_test_X`."""
    return _run_pooled("supervised", signal_X, background_X, signal_test_X,
                       classifier=classifier, n_folds=n_folds, seed=seed,
                       min_background=min_background, progress=progress)  # fmt: skip


def cwola(
    sr_X: Any,
    sb_X: Any,
    *,
    sr_y: Any = None,
    classifier: Any = None,
    n_folds: int = 5,
    validation: str = "rotate",
    seed: int = 0,
    min_background: int | None = None,
    progress: bool = False,
) -> ProtocolResult:
    """CWoLa hunting: SR events (label 1) against the adjacent sidebands (label 0).

    Every SR event is scored out of fold (`score_kfold`, rotating train/validation/test folds by
    default), so the scores can be cut on directly. Features that vary with m_JJ (e.g. the jet
    masses) let the classifier tell the SR from the sidebands without any signal: look at the
    background-only score distribution before trusting a cut.

    Parameters
    ----------
    sr_X, sb_X
        Features (N_SR, d) of the SR events and (N_SB, d) of the sideband events.
    sr_y
        Optional truth labels (N_SR,) of the SR events (simulation); when given, ``metrics``
        holds the `summary` of the out-of-fold SR scores against them.
    """
    start = time.perf_counter()
    classifier = HGBEnsemble() if classifier is None else classifier
    kf: KFoldResult = score_kfold(sr_X, sb_X, classifier=classifier, n_folds=n_folds, seed=seed,
                                  validation=validation, progress=progress)  # fmt: skip
    metrics: dict[str, Any] = {}
    labels = np.full(len(kf.scores), -1, dtype=np.int64)
    if sr_y is not None:
        _, labels = _check_test(sr_X, sr_y, np.shape(sr_X)[1])
        metrics = _summary(labels, kf.scores, min_background)
    seconds = time.perf_counter() - start
    return ProtocolResult(
        "cwola", kf.scores, labels, metrics, len(kf.scores), len(kf.template_scores), seconds, kf
    )
