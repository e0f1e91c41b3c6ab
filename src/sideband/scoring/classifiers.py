"""Classifiers that separate signal-region data (label 1) from a background template (label 0).

`HGBEnsemble` averages several scikit-learn ``HistGradientBoostingClassifier`` members. Unlike
sk_cathode's ``HGBClassifier`` (STYLE.md, "anchor bugs"), each member stops early on a validation
split it never trains on, and ``sample_weight`` is honoured together with the class balancing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from sideband.errors import InputError, NotFittedError

__all__ = ["HGBEnsemble", "check_features", "member_seeds"]

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


def _check_labels(y: Any, n: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.shape != (n,):
        msg = f"y has shape {labels.shape}; expected ({n},), one 0/1 label per row of X"
        raise InputError(msg)
    ok = np.isin(labels, (0, 1))
    if not ok.all():
        bad = np.unique(labels[~ok])[:5].tolist()
        msg = (
            f"y must hold 0 (template/background) and 1 (data/signal) only; found {bad}. "
            "Relabel the classes as 0/1."
        )
        raise InputError(msg)
    labels = labels.astype(np.int64)
    counts = np.bincount(labels, minlength=2)
    if (counts == 0).any():
        msg = (
            f"y holds {counts[0]} label-0 and {counts[1]} label-1 rows; a classifier needs both "
            "classes. Check that neither the data nor the template is empty."
        )
        raise InputError(msg)
    return labels


class HGBEnsemble(ClassifierMixin, BaseEstimator):
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
        (``n_iter_no_change=10``).
    validation_fraction
        Fraction of the rows in each member's validation split.
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
        cw = self.class_weight
        if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
            msg = f"class_weight must be 'balanced', None or a dict {{0: w0, 1: w1}}; got {cw!r}"
            raise InputError(msg)

    def _weights(self, y: np.ndarray, sample_weight: Any) -> np.ndarray:
        n = len(y)
        if sample_weight is None:
            w = np.ones(n)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (n,):
                msg = f"sample_weight has shape {w.shape}; expected ({n},), one weight per row"
                raise InputError(msg)
            if not np.isfinite(w).all() or (w < 0).any():
                msg = "sample_weight must be finite and non-negative; fix or drop those rows"
                raise InputError(msg)
        totals = np.array([w[y == 0].sum(), w[y == 1].sum()])
        if (totals <= 0).any():
            msg = (
                f"the total sample weight per class is {totals.tolist()} (label 0, label 1); "
                "both classes need positive weight"
            )
            raise InputError(msg)
        if self.class_weight == "balanced":
            factor = totals.sum() / (2.0 * totals)
        elif isinstance(self.class_weight, dict):
            factor = np.array([float(self.class_weight[0]), float(self.class_weight[1])])
        else:
            factor = np.ones(2)
        # Normalise to mean weight 1, so HGB's min_samples_leaf / l2 regularisation keep their sense.
        out = w * factor[y]
        return out * (n / out.sum())

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> HGBEnsemble:
        """Fit every member on (X, y).

        Parameters
        ----------
        X
            Features, shape (N, d); finite.
        y
            Labels, shape (N,): 1 = SR data (or signal), 0 = template (or background).
        sample_weight
            Optional non-negative weights, shape (N,); multiplied by the class balancing.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        self._check_params()
        Xa = check_features(X)
        ya = _check_labels(y, len(Xa))
        w = self._weights(ya, sample_weight)
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
                member.fit(Xa, ya, sample_weight=w)
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

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score, shape (N,): the mean over members of P(label 1)."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X: Any) -> np.ndarray:
        """Hard labels, shape (N,): 1 where the mean P(label 1) exceeds 0.5."""
        return (self.decision_function(X) > 0.5).astype(np.int64)

    def score(  # type: ignore[override]
        self, X: Any, y: Any = None, sample_weight: Any = None
    ) -> Any:
        """Per-event anomaly score (N,) (= `decision_function`); with ``y``, the accuracy."""
        if y is None:
            return self.decision_function(X)
        return super().score(X, y, sample_weight=sample_weight)
