"""Invertible feature preprocessing with exact log-Jacobians (numpy only, float64).

CATHODE preprocesses the auxiliary features before the flow: each feature is mapped to (0, 1)
with the min/max of the training events (plus a small margin), sent through the logit, and then
standardised. The flow's density lives in the preprocessed space Z; the density in the original
space X is ``p_X(x) = p_Z(T(x)) |det dT/dx|``, so every step here gives
``log_abs_det_jacobian(X) = log|det dZ/dX|`` evaluated at X. (sk_cathode's LogitScaler had this
with the wrong sign; the tests here compare with finite differences.)

Events outside the fitted range (test or signal-region events can be) are never dropped silently:
`LogitScaler` clips them, sets them to NaN or raises, as chosen by ``out_of_range``, and logs how
many there were per feature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import numpy as np

from sideband.errors import InputError, NotFittedError

__all__ = ["LogitScaler", "PreprocessingPipeline", "StandardScaler", "Transformer"]

logger = logging.getLogger(__name__)

OutOfRange = Literal["clip", "nan", "raise"]
_OUT_OF_RANGE = ("clip", "nan", "raise")


class Transformer(Protocol):
    """What `PreprocessingPipeline` needs of a step."""

    def fit(self, X: np.ndarray) -> Transformer: ...
    def transform(self, X: np.ndarray) -> np.ndarray: ...
    def inverse_transform(self, Z: np.ndarray) -> np.ndarray: ...
    def log_abs_det_jacobian(self, X: np.ndarray) -> np.ndarray: ...
    def transform_and_ladj(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def get_state(self) -> dict[str, object]: ...


def _as_2d(X: np.ndarray, what: str, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        msg = f"{what} must be a 2-D array (N events, d features); got shape {X.shape}"
        raise InputError(msg)
    if n_features is not None and X.shape[1] != n_features:
        msg = (
            f"{what} has {X.shape[1]} feature column(s) but the transform was fitted on "
            f"{n_features}; pass the same feature columns in the same order"
        )
        raise InputError(msg)
    return X


def _check_fit_input(X: np.ndarray, who: str) -> np.ndarray:
    X = _as_2d(X, f"{who}.fit input")
    if X.shape[0] < 2:
        msg = f"{who}.fit needs at least 2 events; got {X.shape[0]}"
        raise InputError(msg)
    bad = ~np.isfinite(X)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        msg = (
            f"{who}.fit input has {int(bad.sum())} NaN/inf value(s) in feature column(s) {cols}; "
            "drop or fix those events first"
        )
        raise InputError(msg)
    return X


class LogitScaler:
    """Map each feature to (0, 1) with the fitted min/max, then apply the logit.

    ``u = (x - low) / (high - low)`` with ``low = min - eps * range``, ``high = max + eps * range``
    (min, max, range of the fit data per feature), then ``z = log(u / (1 - u))``. The margin
    ``eps`` keeps the fit data away from u = 0 and 1 (where the logit is infinite) and leaves room
    for later events slightly outside the fitted range. ``inverse_transform`` always lands inside
    ``(low, high)``.

    Events outside ``[low, high]`` (u <= 0 or u >= 1) are handled per ``out_of_range``:
    ``"clip"`` moves them to u = ``clip_u`` or 1 - ``clip_u`` (and gives them the Jacobian at that
    point: the clipped map is flat there, the true template density is 0), ``"nan"`` returns NaN
    for that feature (and NaN Jacobian), ``"raise"`` raises `InputError`. Counts are logged at
    WARNING level.

    Parameters
    ----------
    eps
        Margin as a fraction of each feature's fitted range (default 1e-3), > 0.
    out_of_range
        "clip" (default), "nan" or "raise".
    clip_u
        Where clipped events land in u (default 1e-6, i.e. logit ≈ ±13.8).

    Notes
    -----
    Fitted attributes: ``low_``, ``high_`` (d,) in the features' units, ``n_features_in_``.
    """

    def __init__(
        self, *, eps: float = 1e-3, out_of_range: OutOfRange = "clip", clip_u: float = 1e-6
    ) -> None:
        self.eps = eps
        self.out_of_range = out_of_range
        self.clip_u = clip_u

    def _check_params(self) -> None:
        if not (np.isfinite(self.eps) and self.eps > 0):
            msg = (
                f"LogitScaler eps must be a positive margin (fraction of the range); got {self.eps}"
            )
            raise InputError(msg)
        if self.out_of_range not in _OUT_OF_RANGE:
            msg = f"out_of_range must be one of {_OUT_OF_RANGE}; got {self.out_of_range!r}"
            raise InputError(msg)
        if not 0 < self.clip_u < 0.5:
            msg = f"clip_u must be in (0, 0.5); got {self.clip_u}"
            raise InputError(msg)

    def fit(self, X: np.ndarray) -> LogitScaler:
        """Learn ``low_``, ``high_`` from X (N, d); returns self."""
        self._check_params()
        X = _check_fit_input(X, "LogitScaler")
        lo, hi = X.min(axis=0), X.max(axis=0)
        span = hi - lo
        const = np.flatnonzero(span <= 0)
        if const.size:
            msg = (
                f"feature column(s) {const.tolist()} are constant in the fit data "
                f"(value(s) {lo[const].tolist()}); a logit scaling needs a range: drop them"
            )
            raise InputError(msg)
        self.low_ = lo - self.eps * span
        self.high_ = hi + self.eps * span
        self.n_features_in_ = X.shape[1]
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "low_"):
            msg = "this LogitScaler is not fitted yet; call fit(X) first"
            raise NotFittedError(msg)

    def in_range(self, X: np.ndarray) -> np.ndarray:
        """Boolean (N,): events strictly inside the fitted range ``(low_, high_)`` in every feature."""
        self._fitted()
        X = _as_2d(X, "LogitScaler input", self.n_features_in_)
        return ((self.low_ < X) & (self.high_ > X)).all(axis=1)

    def _u(self, X: np.ndarray) -> np.ndarray:
        """Scaled u (N, d) after the out-of-range policy (clip / NaN / raise)."""
        self._fitted()
        X = _as_2d(X, "LogitScaler input", self.n_features_in_)
        with np.errstate(invalid="ignore"):
            u = (X - self.low_) / (self.high_ - self.low_)
            out = (u <= 0) | (u >= 1)
        if out.any():
            counts = out.sum(axis=0)
            where = {int(j): int(c) for j, c in enumerate(counts) if c}
            if self.out_of_range == "raise":
                msg = (
                    f"{int(out.any(axis=1).sum())} event(s) lie outside the fitted feature range "
                    f"(events per feature column: {where}); use out_of_range='clip' or 'nan', or "
                    "refit on data covering them"
                )
                raise InputError(msg)
            logger.warning(
                "LogitScaler: %d of %d event(s) outside the fitted range (per feature column %s); "
                "%s",
                int(out.any(axis=1).sum()),
                X.shape[0],
                where,
                "clipped to the edge" if self.out_of_range == "clip" else "set to NaN",
            )
            if self.out_of_range == "clip":
                u = np.clip(u, self.clip_u, 1.0 - self.clip_u)
            else:
                u = np.where(out, np.nan, u)
        return u

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Z = logit(u(X)), shape (N, d)."""
        u = self._u(X)
        return np.log(u) - np.log1p(-u)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """X = low + sigmoid(Z) (high - low), shape (N, d), inside ``(low_, high_)``."""
        self._fitted()
        Z = _as_2d(Z, "LogitScaler.inverse_transform input", self.n_features_in_)
        u = 0.5 * (1.0 + np.tanh(0.5 * Z))  # numerically stable sigmoid
        return self.low_ + u * (self.high_ - self.low_)

    def log_abs_det_jacobian(self, X: np.ndarray) -> np.ndarray:
        """log|det dZ/dX| at X, shape (N,): sum_j [-log u - log(1 - u) - log(high - low)]."""
        return self.transform_and_ladj(X)[1]

    def transform_and_ladj(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Z, log|det dZ/dX|) with one range check, shapes (N, d) and (N,)."""
        u = self._u(X)
        log_u, log_1mu = np.log(u), np.log1p(-u)
        ladj = (-log_u - log_1mu - np.log(self.high_ - self.low_)).sum(axis=1)
        return log_u - log_1mu, ladj

    def get_state(self) -> dict[str, object]:
        """Fitted arrays and parameters, for saving (see `from_state`)."""
        self._fitted()
        return {
            "kind": "logit",
            "eps": float(self.eps),
            "out_of_range": self.out_of_range,
            "clip_u": float(self.clip_u),
            "low": self.low_.copy(),
            "high": self.high_.copy(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> LogitScaler:
        obj = cls(
            eps=float(state["eps"]),  # type: ignore[arg-type]
            out_of_range=state["out_of_range"],  # type: ignore[arg-type]
            clip_u=float(state["clip_u"]),  # type: ignore[arg-type]
        )
        obj.low_ = np.asarray(state["low"], dtype=np.float64)
        obj.high_ = np.asarray(state["high"], dtype=np.float64)
        obj.n_features_in_ = obj.low_.shape[0]
        return obj


class StandardScaler:
    """Z = (X - mean) / std per feature; log|det dZ/dX| = -sum_j log std_j.

    Fitted attributes: ``mean_``, ``scale_`` (d,), ``n_features_in_``. A constant feature raises
    `InputError` (its density is not defined).
    """

    def fit(self, X: np.ndarray) -> StandardScaler:
        """Learn ``mean_``, ``scale_`` (population std) from X (N, d); returns self."""
        X = _check_fit_input(X, "StandardScaler")
        mean, scale = X.mean(axis=0), X.std(axis=0)
        const = np.flatnonzero(scale <= 0)
        if const.size:
            msg = (
                f"feature column(s) {const.tolist()} are constant in the fit data; a density "
                "model cannot standardise them: drop them"
            )
            raise InputError(msg)
        self.mean_, self.scale_ = mean, scale
        self.n_features_in_ = X.shape[1]
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "mean_"):
            msg = "this StandardScaler is not fitted yet; call fit(X) first"
            raise NotFittedError(msg)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean_) / scale_``, shape (N, d)."""
        self._fitted()
        X = _as_2d(X, "StandardScaler input", self.n_features_in_)
        return (X - self.mean_) / self.scale_

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """``Z * scale_ + mean_``, shape (N, d)."""
        self._fitted()
        Z = _as_2d(Z, "StandardScaler.inverse_transform input", self.n_features_in_)
        return Z * self.scale_ + self.mean_

    def log_abs_det_jacobian(self, X: np.ndarray) -> np.ndarray:
        """-sum_j log scale_j for every event, shape (N,)."""
        self._fitted()
        X = _as_2d(X, "StandardScaler input", self.n_features_in_)
        return np.full(X.shape[0], -np.log(self.scale_).sum())

    def transform_and_ladj(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Z, log|det dZ/dX|), shapes (N, d) and (N,)."""
        return self.transform(X), self.log_abs_det_jacobian(X)

    def get_state(self) -> dict[str, object]:
        self._fitted()
        return {"kind": "standard", "mean": self.mean_.copy(), "scale": self.scale_.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> StandardScaler:
        obj = cls()
        obj.mean_ = np.asarray(state["mean"], dtype=np.float64)
        obj.scale_ = np.asarray(state["scale"], dtype=np.float64)
        obj.n_features_in_ = obj.mean_.shape[0]
        return obj


class PreprocessingPipeline:
    """Steps applied in order; the log-Jacobian is the sum over steps (chain rule).

    ``PreprocessingPipeline()`` is CATHODE's default: ``LogitScaler(eps=logit_eps,
    out_of_range=out_of_range)`` then ``StandardScaler()``. Pass ``steps`` for another chain.
    """

    def __init__(
        self,
        steps: Sequence[Transformer] | None = None,
        *,
        logit_eps: float = 1e-3,
        out_of_range: OutOfRange = "clip",
    ) -> None:
        self.steps = steps
        self.logit_eps = logit_eps
        self.out_of_range = out_of_range

    def fit(self, X: np.ndarray) -> PreprocessingPipeline:
        """Fit each step on the output of the previous one; X (N, d). Returns self."""
        X = _check_fit_input(X, "PreprocessingPipeline")
        steps: list[Transformer] = (
            list(self.steps)
            if self.steps is not None
            else [LogitScaler(eps=self.logit_eps, out_of_range=self.out_of_range), StandardScaler()]
        )
        n_features = X.shape[1]
        for step in steps:
            X = step.fit(X).transform(X)
        self.steps_ = steps
        self.n_features_in_ = n_features
        return self

    def _fitted(self) -> list[Transformer]:
        if not hasattr(self, "steps_"):
            msg = "this PreprocessingPipeline is not fitted yet; call fit(X) first"
            raise NotFittedError(msg)
        return self.steps_

    def in_range(self, X: np.ndarray) -> np.ndarray:
        """Boolean (N,): events inside the fitted range of every range-limited step."""
        steps = self._fitted()
        X = _as_2d(X, "PreprocessingPipeline input", self.n_features_in_)
        n = X.shape[0]
        rows = np.arange(n)
        for step in steps:
            check = getattr(step, "in_range", None)
            if check is not None:
                ok = check(X)
                rows, X = rows[ok], X[ok]
            if rows.size == 0:
                break
            X = step.transform(X)
        keep = np.zeros(n, dtype=bool)
        keep[rows] = True
        return keep

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Z (N, d) after all steps."""
        for step in self._fitted():
            X = step.transform(X)
        return X

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """X (N, d): the steps' inverses in reverse order."""
        for step in reversed(self._fitted()):
            Z = step.inverse_transform(Z)
        return Z

    def log_abs_det_jacobian(self, X: np.ndarray) -> np.ndarray:
        """log|det dZ/dX| at X, shape (N,)."""
        return self.transform_and_ladj(X)[1]

    def transform_and_ladj(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Z, log|det dZ/dX|) in one pass, shapes (N, d) and (N,)."""
        steps = self._fitted()
        X = _as_2d(X, "PreprocessingPipeline input")
        total = np.zeros(X.shape[0])
        for step in steps:
            X, ladj = step.transform_and_ladj(X)
            total = total + ladj
        return X, total

    def get_state(self) -> dict[str, object]:
        """{"steps": [step states]} of plain arrays/floats/strings, for saving."""
        return {"steps": [s.get_state() for s in self._fitted()]}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> PreprocessingPipeline:
        """Rebuild a fitted pipeline from `get_state` output (arrays may be tensors or lists)."""
        kinds: dict[str, type[LogitScaler | StandardScaler]] = {
            "logit": LogitScaler,
            "standard": StandardScaler,
        }
        raw = state.get("steps")
        if not isinstance(raw, list | tuple):
            msg = "preprocessing state has no list of 'steps'"
            raise InputError(msg)
        steps: list[Transformer] = []
        for s in raw:
            kind = s.get("kind") if isinstance(s, Mapping) else None
            if kind not in kinds:
                msg = f"unknown preprocessing step kind {kind!r}; known: {sorted(kinds)}"
                raise InputError(msg)
            steps.append(kinds[kind].from_state(s))
        obj = cls(steps)
        obj.steps_ = steps
        obj.n_features_in_ = getattr(steps[0], "n_features_in_", 0) if steps else 0
        if steps and isinstance(steps[0], LogitScaler):
            obj.logit_eps = steps[0].eps
            obj.out_of_range = steps[0].out_of_range
        return obj
