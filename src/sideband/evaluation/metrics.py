"""Performance of an anomaly score on labelled events: ROC, AUC and the significance improvement.

The significance improvement characteristic is ``SIC = eps_S / sqrt(eps_B)``: the factor by which
a cut on the score multiplies ``S / sqrt(B)``. Two rules keep it honest:

* points with ``eps_B = 0`` are dropped (there SIC is infinite; sk_cathode adds 1e-8 instead);
* the maximum SIC only considers cuts that keep at least ``min_background`` background events
  (default 25: the relative statistical error on ``eps_B``, ``1/sqrt(n)``, is then at most 20%).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError

__all__ = [
    "DEFAULT_MIN_BACKGROUND",
    "RocCurve",
    "SicCurve",
    "auc",
    "max_sic",
    "roc_curve",
    "sic_at",
    "sic_curve",
    "summary",
]

logger = logging.getLogger(__name__)

#: Fewest background events a cut must keep to count for the maximum SIC (20% error on eps_B).
DEFAULT_MIN_BACKGROUND = 25

#: Background efficiencies at which `summary` quotes the SIC.
SUMMARY_EFFICIENCIES = (1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class RocCurve:
    """A receiver operating characteristic, thresholds in decreasing order.

    Attributes
    ----------
    fpr
        float64 (K,): background efficiency eps_B of the cut ``score >= thresholds[k]``.
    tpr
        float64 (K,): signal efficiency eps_S of the same cut.
    thresholds
        float64 (K,): decreasing score thresholds; the first is ``inf`` (nothing selected).
    n_signal, n_background
        Unweighted counts of label-1 and label-0 events.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_signal: int
    n_background: int


@dataclass(frozen=True)
class SicCurve:
    """SIC = eps_S / sqrt(eps_B) along the ROC, points with eps_B = 0 dropped.

    Attributes
    ----------
    fpr, tpr, sic, thresholds
        float64 (K,), with ``fpr > 0`` everywhere, thresholds decreasing.
    n_background_selected
        int64 (K,): background events kept by each cut (``fpr * n_background``).
    passes
        bool (K,): the cut keeps at least ``min_background`` background events; only these
        points count for `max_sic`.
    min_background
        The cutoff in force.
    rule
        The cutoff as words, for reports.
    n_signal, n_background
        Unweighted counts of label-1 and label-0 events.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    sic: np.ndarray
    thresholds: np.ndarray
    n_background_selected: np.ndarray
    passes: np.ndarray
    min_background: int
    rule: str
    n_signal: int
    n_background: int

    @property
    def max_sic(self) -> float:
        """Largest SIC among the points that pass the cutoff (`InputError` if there are none)."""
        if not self.passes.any():
            msg = (
                f"no cut keeps at least {self.min_background} background events: the sample has "
                f"{self.n_background} background event(s). Evaluate on more background events "
                "or lower min_background (the statistical error on eps_B grows as "
                "1/sqrt(min_background))."
            )
            raise InputError(msg)
        return float(self.sic[self.passes].max())


def _rule(min_background: int) -> str:
    rel = 1.0 / math.sqrt(min_background) if min_background > 0 else math.inf
    return (
        f"max SIC over cuts keeping >= {min_background} background events "
        f"(relative stat. error on eps_B <= {rel:.0%}); points with eps_B = 0 dropped"
    )


def _check(y_true: Any, scores: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        msg = f"y_true and scores must be 1-D; got shapes {y.shape} and {s.shape}"
        raise InputError(msg)
    if y.shape != s.shape:
        msg = (
            f"y_true has {y.size} entries but scores has {s.size}; pass one label per scored "
            "event, in the same order"
        )
        raise InputError(msg)
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        msg = f"scores must be real numbers; got dtype {s.dtype}"
        raise InputError(msg)
    s = s.astype(np.float64)
    if np.isnan(s).any():
        rows = np.flatnonzero(np.isnan(s))
        msg = (
            f"scores hold {rows.size} NaN value(s) (first rows {rows[:5].tolist()}); score every "
            "event (or drop the unscored ones together with their labels)"
        )
        raise InputError(msg)
    ok = np.isin(y, (0, 1))
    if not ok.all():
        bad = np.unique(y[~ok])[:5].tolist()
        msg = f"y_true must hold 0 (background) and 1 (signal) only; found {bad}. Relabel as 0/1."
        raise InputError(msg)
    y = y.astype(np.int64)
    n_sig = int(y.sum())
    if n_sig in (0, y.size):
        msg = (
            f"y_true holds {n_sig} signal and {y.size - n_sig} background events; ROC and SIC "
            "need both. Evaluate on a labelled sample containing signal and background."
        )
        raise InputError(msg)
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape or not np.isfinite(w).all() or (w < 0).any():
            msg = f"sample_weight must be finite, non-negative, of shape {y.shape}"
            raise InputError(msg)
    return y, s


def roc_curve(y_true: Any, scores: Any, sample_weight: Any = None) -> RocCurve:
    """ROC of `scores` (N,) against labels `y_true` (N,) (1 = signal, 0 = background).

    Every distinct threshold is kept (no dropping of collinear points), so the SIC can be read
    at any background efficiency. ``sample_weight`` (N,) weights the efficiencies.
    """
    from sklearn.metrics import roc_curve as _sk_roc_curve

    y, s = _check(y_true, scores, sample_weight)
    fpr, tpr, thresholds = _sk_roc_curve(y, s, sample_weight=sample_weight, drop_intermediate=False)
    n_sig = int(y.sum())
    return RocCurve(
        fpr=np.asarray(fpr, dtype=np.float64),
        tpr=np.asarray(tpr, dtype=np.float64),
        thresholds=np.asarray(thresholds, dtype=np.float64),
        n_signal=n_sig,
        n_background=int(y.size - n_sig),
    )


def sic_curve(
    y_true: Any, scores: Any, *, min_background: int = DEFAULT_MIN_BACKGROUND
) -> SicCurve:
    """SIC curve of `scores` (N,) against `y_true` (N,); see `SicCurve`.

    Points with eps_B = 0 are dropped (never infinite); points keeping fewer than
    `min_background` background events stay on the curve but are marked ``passes = False``.
    """
    if not isinstance(min_background, (int, np.integer)) or min_background < 0:
        msg = f"min_background must be a non-negative integer; got {min_background!r}"
        raise InputError(msg)
    roc = roc_curve(y_true, scores)
    keep = roc.fpr > 0
    fpr, tpr = roc.fpr[keep], roc.tpr[keep]
    n_bkg_sel = np.rint(fpr * roc.n_background).astype(np.int64)
    return SicCurve(
        fpr=fpr,
        tpr=tpr,
        sic=tpr / np.sqrt(fpr),
        thresholds=roc.thresholds[keep],
        n_background_selected=n_bkg_sel,
        passes=n_bkg_sel >= min_background,
        min_background=int(min_background),
        rule=_rule(int(min_background)),
        n_signal=roc.n_signal,
        n_background=roc.n_background,
    )


def _sic_at(roc: RocCurve, eps_b: float) -> float:
    """SIC at background efficiency `eps_b`: eps_S interpolated linearly in log eps_B between
    the best eps_S at each distinct eps_B > 0."""
    if not 0.0 < eps_b <= 1.0:
        msg = f"background_efficiency must lie in (0, 1]; got {eps_b!r}"
        raise InputError(msg)
    pos = roc.fpr > 0
    fpr, tpr = roc.fpr[pos], roc.tpr[pos]
    # fpr is non-decreasing; at equal fpr keep the largest tpr (top of each vertical step).
    last = np.r_[fpr[1:] != fpr[:-1], True]
    fpr, tpr = fpr[last], tpr[last]
    if eps_b < fpr[0]:
        msg = (
            f"background efficiency {eps_b:g} is below the smallest non-zero one, {fpr[0]:.3g}, "
            f"reachable with {roc.n_background} background events; it needs at least "
            f"{math.ceil(1.0 / eps_b)} background events (more for a stable estimate)"
        )
        raise InputError(msg)
    n_kept = eps_b * roc.n_background
    if n_kept < DEFAULT_MIN_BACKGROUND:
        logger.info(
            "SIC at eps_B = %g rests on %.1f background events (statistical error about %.0f%%)",
            eps_b,
            n_kept,
            100.0 / math.sqrt(max(n_kept, 1.0)),
        )
    eps_s = float(np.interp(math.log(eps_b), np.log(fpr), tpr))
    return eps_s / math.sqrt(eps_b)


def sic_at(y_true: Any, scores: Any, background_efficiency: float = 1e-3) -> float:
    """SIC = eps_S / sqrt(eps_B) at ``eps_B = background_efficiency``.

    eps_S is interpolated linearly in log eps_B between the ROC points (at each distinct
    eps_B > 0 the highest eps_S). `InputError` if the sample has too few background events to
    reach that efficiency (fewer than ``1 / background_efficiency``).
    """
    return _sic_at(roc_curve(y_true, scores), float(background_efficiency))


def max_sic(y_true: Any, scores: Any, *, min_background: int = DEFAULT_MIN_BACKGROUND) -> float:
    """Maximum SIC over the cuts that keep at least `min_background` background events.

    `InputError` if no cut does (fewer than `min_background` background events in the sample).
    """
    return sic_curve(y_true, scores, min_background=min_background).max_sic


def auc(y_true: Any, scores: Any, *, sample_weight: Any = None) -> float:
    """Area under the ROC curve (ties count one half): 1 = perfect, 0.5 = random."""
    from sklearn.metrics import roc_auc_score

    y, s = _check(y_true, scores, sample_weight)
    return float(roc_auc_score(y, s, sample_weight=sample_weight))


def summary(
    y_true: Any, scores: Any, *, min_background: int = DEFAULT_MIN_BACKGROUND
) -> dict[str, Any]:
    """Headline numbers of a score, for reports.

    Returns a dict with ``auc``, ``sic_at_1e-04``, ``sic_at_1e-03``, ``sic_at_1e-02``,
    ``max_sic``, ``max_sic_eps_b``, ``n_signal``, ``n_background``, ``min_background`` and
    ``cutoff_rule``. A SIC the sample cannot support (too few background events) is NaN rather
    than an error.
    """
    roc = roc_curve(y_true, scores)
    sic = sic_curve(y_true, scores, min_background=min_background)
    out: dict[str, Any] = {"auc": auc(y_true, scores)}
    for eps in SUMMARY_EFFICIENCIES:
        key = f"sic_at_{eps:.0e}"
        try:
            out[key] = _sic_at(roc, eps)
        except InputError:
            out[key] = math.nan
    if sic.passes.any():
        best = int(np.argmax(np.where(sic.passes, sic.sic, -np.inf)))
        out["max_sic"] = float(sic.sic[best])
        out["max_sic_eps_b"] = float(sic.fpr[best])
    else:
        out["max_sic"] = math.nan
        out["max_sic_eps_b"] = math.nan
    out.update(
        n_signal=roc.n_signal,
        n_background=roc.n_background,
        min_background=sic.min_background,
        cutoff_rule=sic.rule,
    )
    return out
