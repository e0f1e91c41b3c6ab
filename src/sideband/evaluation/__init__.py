"""Evaluation of anomaly scores on labelled events: ROC, AUC, SIC (with an explicit cutoff rule
for the maximum), bands over repeated runs, a classifier two-sample test, the LaCATHODE
background-sculpting test, and the standard figures (ROC, SIC, SIC band, SIC vs injected signal,
sculpting chi2/ndof, score distributions, m_JJ before/after a cut, the bump-hunt fit, local
significance and limits of a scan against m_JJ).

matplotlib, mplhep and hist load only when a plot function is called; scikit-learn and the
scoring stage only when a test that trains or cuts is run.
"""

from __future__ import annotations

from sideband.evaluation.bands import Band, band, sic_band
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
from sideband.evaluation.plots import (
    plot_fit,
    plot_injection,
    plot_mjj,
    plot_roc,
    plot_scan_limits,
    plot_scan_significance,
    plot_scores,
    plot_sculpting,
    plot_sic,
    plot_sic_band,
)
from sideband.evaluation.sculpting import DEFAULT_EPS_SEL, SculptingResult, sculpting_test
from sideband.evaluation.two_sample import (
    TwoSampleResult,
    classifier_two_sample_test,
    mann_whitney_null_std,
)

__all__ = [
    "DEFAULT_EPS_SEL",
    "DEFAULT_MIN_BACKGROUND",
    "Band",
    "RocCurve",
    "SculptingResult",
    "SicCurve",
    "TwoSampleResult",
    "auc",
    "band",
    "classifier_two_sample_test",
    "mann_whitney_null_std",
    "max_sic",
    "plot_fit",
    "plot_injection",
    "plot_mjj",
    "plot_roc",
    "plot_scan_limits",
    "plot_scan_significance",
    "plot_scores",
    "plot_sculpting",
    "plot_sic",
    "plot_sic_band",
    "roc_curve",
    "sculpting_test",
    "sic_at",
    "sic_band",
    "sic_curve",
    "summary",
]


def __dir__() -> list[str]:
    return __all__
