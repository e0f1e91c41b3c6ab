"""Classifiers that separate signal-region data (label 1) from a background template (label 0).

`HGBEnsemble` averages several scikit-learn ``HistGradientBoostingClassifier`` members. Unlike
sk_cathode's ``HGBClassifier`` (STYLE.md, "anchor bugs"), each member stops early on a validation
split it never trains on (or on an explicit ``X_val``), and ``sample_weight`` is honoured together
with the class balancing. The class balancing (`event_weights`), the stratified split
(`stratified_split`) and the input checks are shared with `sideband.scoring.mlp.MLPEnsemble`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from sideband.errors import InputError, NotFittedError

__all__ = [
    "HGBEnsemble",
    "ProbabilityScores",
    "check_class_weight",
    "check_features",
    "check_labels",
    "check_validation",
    "event_weights",
    "member_seeds",
    "stratified_split",
]

logger = logging.getLogger(__name__)


def member_seeds(random_state: int | np.random.Generator | None, n: int) -> list[int]:
    """``n`` independent 32-bit seeds from ``SeedSequence(random_state).spawn(n)``.

    A ``Generator`` contributes one draw as the entropy; ``None`` takes fresh OS entropy
    (not reproducible).
    """
    if isinstance(random_state, np.random.Generator):
        entropy: int | None = int(random_state.integers(2**63))
    elif random_state is None or isinstance(random_state, (int, np.integer)):
        entropy = None if random_state is None else int(random_state)
    else:
        msg = (
            f"random_state must be an int, a numpy Generator or None; got {random_state!r} "
            f"of type {type(random_state).__name__}"
        )
        raise InputError(msg)
    if entropy is not None and entropy < 0:
        msg = f"random_state must be non-negative; got {entropy}"
        raise InputError(msg)
    children = np.random.SeedSequence(entropy).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def check_features(X: Any, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return `X` as a finite float64 array of shape (N, d), or raise `InputError`.

    ``n_features``, when given, is the column count the array must have (e.g. the one seen in
    ``fit``).
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        msg = (
            f"{name} must be a 2-D array (n_events, n_features); got shape {arr.shape}. "
            "Use FeatureTable.x(names) or reshape(-1, 1) for a single feature."
        )
        raise InputError(msg)
    if n_features is not None and arr.shape[1] != n_features:
        msg = (
            f"{name} has {arr.shape[1]} feature(s) but the classifier was fitted on "
            f"{n_features}; pass the same feature columns, in the same order, as in fit"
        )
        raise InputError(msg)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        msg = (
            f"{name} has {int(bad.sum())} NaN/inf value(s) in {rows.size} row(s) (first rows "
            f"{rows[:5].tolist()}); drop or fix those events before training or scoring"
        )
        raise InputError(msg)
    return arr


def check_labels(y: Any, n: int, *, name: str = "y", x_name: str = "X") -> np.ndarray:
    """Labels `y` as an int array (n,) of 0 and 1, or an InputError naming the problem."""
    labels = np.asarray(y)
    if labels.shape != (n,):
        msg = f"{name} has shape {labels.shape}; expected ({n},), one 0/1 label per row of {x_name}"
        raise InputError(msg)
    ok = np.isin(labels, (0, 1))
    if not ok.all():
        bad = np.unique(labels[~ok])[:5].tolist()
        msg = (
            f"{name} must hold 0 (template/background) and 1 (data/signal) only; found {bad}. "
            "Relabel the classes as 0/1."
        )
        raise InputError(msg)
    labels = labels.astype(np.int64)
    counts = np.bincount(labels, minlength=2)
    if (counts == 0).any():
        msg = (
            f"{name} holds {counts[0]} label-0 and {counts[1]} label-1 rows; a classifier needs "
            "both classes. Check that neither the data nor the template is empty."
        )
        raise InputError(msg)
    return labels


def check_class_weight(class_weight: Any) -> None:
    """InputError unless `class_weight` is None, "balanced" or a dict {0: w0, 1: w1}."""
    cw = class_weight
    if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
        msg = f"class_weight must be 'balanced', None or a dict {{0: w0, 1: w1}}; got {cw!r}"
        raise InputError(msg)


def event_weights(
    y: np.ndarray,
    sample_weight: Any,
    class_weight: str | dict[int, float] | None,
    *,
    name: str = "sample_weight",
) -> np.ndarray:
    """Per-event training weights (N,): ``sample_weight`` times the class factor, mean 1.

    Parameters
    ----------
    y
        int64 labels (N,), 0/1 (as returned by the label check).
    sample_weight
        None (all 1) or non-negative finite weights, shape (N,).
    class_weight
        ``"balanced"``: both classes get the same total weight; a dict ``{0: w0, 1: w1}``:
        those factors; None: no class factor.
    name
        What to call ``sample_weight`` in error messages.

    Notes
    -----
    The result is normalised to mean 1, so HGB's ``min_samples_leaf`` / l2 regularisation and a
    mean-reduced torch loss keep their sense.
    """
    n = len(y)
    if sample_weight is None:
        w = np.ones(n)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,):
            msg = f"{name} has shape {w.shape}; expected ({n},), one weight per row"
            raise InputError(msg)
        if not np.isfinite(w).all() or (w < 0).any():
            msg = f"{name} must be finite and non-negative; fix or drop those rows"
            raise InputError(msg)
    totals = np.array([w[y == 0].sum(), w[y == 1].sum()])
    if (totals <= 0).any():
        what = {"sample_weight": "sample weight", "sample_weight_val": "validation weight"}
        msg = (
            f"the total {what.get(name, name)} per class is {totals.tolist()} (label 0, "
            "label 1); both classes need positive weight"
        )
        raise InputError(msg)
    if class_weight == "balanced":
        factor = totals.sum() / (2.0 * totals)
    elif isinstance(class_weight, dict):
        factor = np.array([float(class_weight[0]), float(class_weight[1])])
    else:
        factor = np.ones(2)
    out = w * factor[y]
    return out * (n / out.sum())


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held out), each sorted, holding out ``round(fraction * n_c)`` rows of
    each class ``c``.

    Raises `InputError` when a class would leave no row on either side.
    """
    train, held = [], []
    for c in (0, 1):
        rows = np.flatnonzero(y == c)
        n_held = round(fraction * rows.size)
        if n_held < 1 or n_held >= rows.size:
            msg = (
                f"label {c} has {rows.size} row(s): holding out a fraction {fraction} of them "
                "leaves none to train on or none to validate on; pass more events, change "
                "validation_fraction, or pass X_val/y_val explicitly"
            )
            raise InputError(msg)
        perm = rng.permutation(rows)
        held.append(perm[:n_held])
        train.append(perm[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def check_validation(
    X_val: Any,
    y_val: Any,
    sample_weight_val: Any,
    n_features: int,
    class_weight: str | dict[int, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Checked (X_val, y_val, balanced weights) for `fit`, or None when no X_val is given."""
    if X_val is None and y_val is None:
        if sample_weight_val is not None:
            msg = "sample_weight_val was given without X_val and y_val; pass all three or none"
            raise InputError(msg)
        return None
    if X_val is None or y_val is None:
        msg = (
            "pass both X_val and y_val (explicit validation set), or neither (then "
            "validation_fraction of X is held out)"
        )
        raise InputError(msg)
    Xv = check_features(X_val, name="X_val")
    if Xv.shape[1] != n_features:
        msg = (
            f"X_val has {Xv.shape[1]} feature column(s) but X has {n_features}; pass the same "
            "feature columns, in the same order, for training and validation"
        )
        raise InputError(msg)
    yv = check_labels(y_val, len(Xv), name="y_val", x_name="X_val")
    wv = event_weights(yv, sample_weight_val, class_weight, name="sample_weight_val")
    return Xv, yv, wv


def _check_sklearn_accepts_x_val(estimator_cls: type) -> None:
    import inspect

    import sklearn

    if "X_val" not in inspect.signature(estimator_cls.fit).parameters:
        msg = (
            f"an explicit X_val needs scikit-learn >= 1.6 (HistGradientBoostingClassifier.fit "
            f"with X_val); this is scikit-learn {sklearn.__version__}: upgrade it or leave "
            "X_val out"
        )
        raise InputError(msg)


class ProbabilityScores:
    """`decision_function`, `predict` and `score` of a binary classifier from its
    ``predict_proba`` (column 1 = P(label 1)); mixed in before ``ClassifierMixin``."""

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score, shape (N,): the model's P(label 1) (the ensemble mean)."""
        return self.predict_proba(X)[:, 1]  # type: ignore[attr-defined,no-any-return]

    def predict(self, X: Any) -> np.ndarray:
        """Hard labels, shape (N,): 1 where P(label 1) exceeds 0.5."""
        return (self.decision_function(X) > 0.5).astype(np.int64)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Per-event anomaly score (N,) (= `decision_function`); with ``y``, the accuracy."""
        if y is None:
            return self.decision_function(X)
        return super().score(X, y, sample_weight=sample_weight)  # type: ignore[misc]


class HGBEnsemble(ProbabilityScores, ClassifierMixin, BaseEstimator):
    """Ensemble of scikit-learn ``HistGradientBoostingClassifier`` members.

    Parameters
    ----------
    n_members
        Number of boosted-tree members; their probabilities are averaged.
    max_iter, learning_rate, max_leaf_nodes
        Passed to each member.
    early_stopping
        If true, each member holds out ``validation_fraction`` of the rows (stratified, its own
        random split), never trains on them, and stops when their loss stops improving
        (``n_iter_no_change=10``). With an explicit ``X_val`` in `fit`, every member stops on
        that set instead and trains on its own random (stratified) ``1 - validation_fraction``
        of the rows, so the members still differ (HGB itself is deterministic given its data).
    validation_fraction
        Fraction of the rows in each member's validation split (with ``X_val``: the fraction
        of the training rows each member leaves out).
    class_weight
        ``"balanced"`` (default): reweight so both classes carry the same total weight (the
        template is usually oversampled with respect to the data); ``None``: no reweighting; or
        a dict ``{0: w0, 1: w1}``.
    random_state
        int, ``numpy.random.Generator`` or None. Member ``k`` is seeded with the ``k``-th child of
        ``SeedSequence(random_state)``, so results are deterministic given an int.
    n_threads
        OpenMP threads for fitting and predicting (None: the library default, all cores). On a
        busy or shared machine 1 can be many times faster than oversubscribed threads.

    Attributes
    ----------
    members_
        The fitted ``HistGradientBoostingClassifier`` objects.
    n_features_in_
        Number of features seen in ``fit``.
    classes_
        ``array([0, 1])``.

    Notes
    -----
    ``score(X)`` returns the per-event anomaly score (like ``decision_function``), not the
    accuracy that scikit-learn's ``ClassifierMixin.score(X, y)`` returns; the accuracy is still
    given when ``y`` is passed.
    """

    def __init__(
        self,
        *,
        n_members: int = 5,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        class_weight: str | dict[int, float] | None = "balanced",
        random_state: int | np.random.Generator | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.n_members = n_members
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.n_threads = n_threads

    def _check_params(self) -> None:
        if not isinstance(self.n_members, (int, np.integer)) or self.n_members < 1:
            msg = f"n_members must be a positive integer; got {self.n_members!r}"
            raise InputError(msg)
        if self.early_stopping and not 0.0 < float(self.validation_fraction) < 1.0:
            msg = (
                f"validation_fraction must lie in (0, 1) when early_stopping is on; got "
                f"{self.validation_fraction!r}"
            )
            raise InputError(msg)
        if self.n_threads is not None and (
            not isinstance(self.n_threads, (int, np.integer)) or self.n_threads < 1
        ):
            msg = f"n_threads must be None or a positive integer; got {self.n_threads!r}"
            raise InputError(msg)
        check_class_weight(self.class_weight)

    def _weights(self, y: np.ndarray, sample_weight: Any) -> np.ndarray:
        return event_weights(y, sample_weight, self.class_weight)

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight_val: Any = None,
    ) -> HGBEnsemble:
        """Fit every member on (X, y).

        Parameters
        ----------
        X
            Features, shape (N, d); finite.
        y
            Labels, shape (N,): 1 = SR data (or signal), 0 = template (or background).
        sample_weight
            Optional non-negative weights, shape (N,); multiplied by the class balancing.
        X_val, y_val, sample_weight_val
            Optional explicit validation set, shapes (M, d), (M,), (M,), for early stopping
            (needs ``early_stopping=True`` and scikit-learn >= 1.6). Its weights get the same
            class balancing as the training rows. Every member stops on it and trains on its own
            random ``1 - validation_fraction`` of (X, y) (see the class docstring).
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        self._check_params()
        Xa = check_features(X)
        ya = check_labels(y, len(Xa))
        w = self._weights(ya, sample_weight)
        val = check_validation(X_val, y_val, sample_weight_val, Xa.shape[1], self.class_weight)
        if val is not None:
            if not self.early_stopping:
                msg = (
                    "X_val/y_val are used only for early stopping, but early_stopping=False; "
                    "set early_stopping=True or leave X_val/y_val out"
                )
                raise InputError(msg)
            _check_sklearn_accepts_x_val(HistGradientBoostingClassifier)
        members = []
        with self._threads():
            for k, seed in enumerate(member_seeds(self.random_state, int(self.n_members))):
                member = HistGradientBoostingClassifier(
                    max_iter=self.max_iter,
                    learning_rate=self.learning_rate,
                    max_leaf_nodes=self.max_leaf_nodes,
                    early_stopping=bool(self.early_stopping),
                    validation_fraction=self.validation_fraction if self.early_stopping else None,
                    n_iter_no_change=10,
                    random_state=seed,
                )
                if val is None:
                    member.fit(Xa, ya, sample_weight=w)
                else:
                    # HGB is deterministic given its rows when it does not split them itself, so
                    # each member trains on its own seeded subset to keep the members distinct.
                    rows, _ = stratified_split(
                        ya, float(self.validation_fraction), np.random.default_rng(seed)
                    )
                    X_v, y_v, w_v = val
                    member.fit(
                        Xa[rows],
                        ya[rows],
                        sample_weight=w[rows],
                        X_val=X_v,
                        y_val=y_v,
                        sample_weight_val=w_v,
                    )
                logger.debug("HGB member %d: %d iterations", k, member.n_iter_)
                members.append(member)
        self.members_ = members
        self.n_features_in_ = Xa.shape[1]
        self.classes_ = np.array([0, 1])
        return self

    def _threads(self) -> contextlib.AbstractContextManager[Any]:
        if self.n_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=int(self.n_threads), user_api="openmp")

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            msg = "this HGBEnsemble is not fitted yet; call fit(X, y) before scoring"
            raise NotFittedError(msg)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean member probabilities, shape (N, 2): columns P(label 0), P(label 1)."""
        self._check_fitted()
        Xa = check_features(X, n_features=self.n_features_in_)
        p1 = np.zeros(len(Xa))
        with self._threads():
            for member in self.members_:
                col = int(np.flatnonzero(member.classes_ == 1)[0])
                p1 += member.predict_proba(Xa)[:, col]
        p1 /= len(self.members_)
        return np.column_stack([1.0 - p1, p1])
