"""Evaluation of anomaly scores on labelled events: ROC, AUC, SIC (with an explicit cutoff rule
for the maximum) and the standard figures (ROC, SIC, score distributions, m_JJ before/after a cut).

matplotlib, mplhep and hist load only when a plot function is called.
"""

from __future__ import annotations

from sideband.evaluation.metrics import (
    DEFAULT_MIN_BACKGROUND,
    RocCurve,
    SicCurve,
    auc,
    max_sic,
    roc_curve,
    sic_at,
    sic_curve,
    summary,
)
from sideband.evaluation.plots import plot_mjj, plot_roc, plot_scores, plot_sic

__all__ = [
    "DEFAULT_MIN_BACKGROUND",
    "RocCurve",
    "SicCurve",
    "auc",
    "max_sic",
    "plot_mjj",
    "plot_roc",
    "plot_scores",
    "plot_sic",
    "roc_curve",
    "sic_at",
    "sic_curve",
    "summary",
]


def __dir__() -> list[str]:
    return __all__
