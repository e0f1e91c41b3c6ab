"""Classifier two-sample test: can a classifier tell sample A from sample B?

A k-folded classifier is trained to separate A (label 1) from B (label 0); every event is scored
out of fold (`sideband.scoring.score_kfold`) and the AUC of those scores measures the
separation. Its spread when A and B come from the same distribution is measured directly: the
same procedure on the pooled events with the labels permuted (same class sizes). Used e.g. to
check a background template against SR data, or the sideband model against held-out sidebands.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.evaluation.metrics import auc as _auc

__all__ = ["TwoSampleResult", "classifier_two_sample_test", "mann_whitney_null_std"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of `classifier_two_sample_test`.

    Attributes
    ----------
    auc
        AUC of the out-of-fold scores, A = 1 against B = 0 (0.5: indistinguishable).
    null_auc
        float64 (n_null,): the same AUC with the pooled labels permuted.
    null_mean, null_std
        Mean and standard deviation (ddof = 1) of `null_auc`.
    p_value
        ``(1 + #{null_auc >= auc}) / (1 + n_null)``: never below ``1 / (1 + n_null)``.
    z
        ``(auc - null_mean) / null_std``.
    analytic_null_std
        Standard deviation of the AUC of a random score with these class sizes (Mann-Whitney):
        ``sqrt((N_a + N_b + 1) / (12 N_a N_b))``; a cheap cross-check of `null_std`.
    n_a, n_b
        Number of events of each sample.
    n_folds
        Folds of the k-fold scoring.
    """

    auc: float
    null_auc: np.ndarray
    null_mean: float
    null_std: float
    p_value: float
    z: float
    analytic_null_std: float
    n_a: int
    n_b: int
    n_folds: int


def mann_whitney_null_std(n_a: int, n_b: int) -> float:
    """Standard deviation of the AUC of a random (label-independent) continuous score with
    `n_a` positives and `n_b` negatives: ``sqrt((n_a + n_b + 1) / (12 n_a n_b))``."""
    if n_a < 1 or n_b < 1:
        msg = f"both classes need events; got n_a = {n_a}, n_b = {n_b}"
        raise InputError(msg)
    return math.sqrt((n_a + n_b + 1) / (12.0 * n_a * n_b))


def _kfold_auc(
    data: np.ndarray,
    template: np.ndarray,
    *,
    classifier: Any,
    n_folds: int,
    seed: int,
) -> float:
    from sideband.scoring import score_kfold

    res = score_kfold(data, template, classifier=classifier, n_folds=n_folds, seed=seed)
    y = np.r_[np.ones(len(data), np.int64), np.zeros(len(template), np.int64)]
    return _auc(y, np.r_[res.scores, res.template_scores])


def classifier_two_sample_test(
    sample_a: Any,
    sample_b: Any,
    *,
    classifier: Any = None,
    n_folds: int = 5,
    n_null: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> TwoSampleResult:
    """Classifier two-sample test of `sample_a` against `sample_b`, with a permutation null.

    Parameters
    ----------
    sample_a, sample_b
        Features, shapes (N_a, d) and (N_b, d), finite, same columns in the same order.
    classifier
        Unfitted scikit-learn style classifier cloned per fold (see `score_kfold`); default
        ``HGBEnsemble(n_members=1)`` (balanced classes, early stopping).
    n_folds
        Folds of the out-of-fold scoring, at least 2; each sample needs ``2 * n_folds`` events.
    n_null
        Label permutations for the null distribution, at least 2. The p-value cannot go below
        ``1 / (1 + n_null)``, so a 3-sigma claim (p ~ 1e-3) needs ``n_null >= 1000``; `z`
        extrapolates with the Gaussian approximation.
    seed
        Seeds the folds, the classifiers and the permutations (``SeedSequence(seed).spawn``).
    progress
        Show a progress bar over the permutations.

    Returns
    -------
    TwoSampleResult
        Observed AUC, null AUCs, p-value, z and the analytic null spread. Cost:
        ``(1 + n_null) * n_folds`` classifier fits.
    """
    from tqdm import tqdm

    from sideband.scoring import HGBEnsemble
    from sideband.scoring.classifiers import check_features, member_seeds

    a = check_features(sample_a, name="sample_a")
    b = check_features(sample_b, name="sample_b")
    if a.shape[1] != b.shape[1]:
        msg = (
            f"sample_a has {a.shape[1]} column(s) but sample_b has {b.shape[1]}; pass the same "
            "feature columns, in the same order, for both samples"
        )
        raise InputError(msg)
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        msg = f"n_folds must be an integer >= 2; got {n_folds!r}"
        raise InputError(msg)
    if not isinstance(n_null, (int, np.integer)) or n_null < 2:
        msg = (
            f"n_null must be an integer >= 2 (the null spread needs at least two permutations); "
            f"got {n_null!r}"
        )
        raise InputError(msg)
    for name, arr in (("sample_a", a), ("sample_b", b)):
        if len(arr) < 2 * n_folds:
            msg = (
                f"{name} has {len(arr)} events, too few for {n_folds} folds (need at least "
                f"{2 * n_folds}); use fewer folds or more events"
            )
            raise InputError(msg)
    if classifier is None:
        classifier = HGBEnsemble(n_members=1)

    seeds = member_seeds(seed, n_null + 2)
    observed = _kfold_auc(a, b, classifier=classifier, n_folds=n_folds, seed=seeds[0])
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seeds[1])
    null = np.empty(n_null)
    for k in tqdm(range(n_null), desc="permutations", disable=not progress):
        perm = rng.permutation(len(pooled))
        fake_a, fake_b = pooled[perm[: len(a)]], pooled[perm[len(a) :]]
        null[k] = _kfold_auc(
            fake_a, fake_b, classifier=classifier, n_folds=n_folds, seed=seeds[2 + k]
        )
    null_mean = float(null.mean())
    null_std = float(null.std(ddof=1))
    p_value = (1.0 + float((null >= observed).sum())) / (1.0 + n_null)
    if null_std > 0:
        z = (observed - null_mean) / null_std
    else:
        z = math.copysign(math.inf, observed - null_mean) if observed != null_mean else 0.0
    analytic = mann_whitney_null_std(len(a), len(b))
    logger.info(
        "two-sample test: AUC %.4f, null %.4f +- %.4f (analytic %.4f), p = %.3g, z = %.2f",
        observed,
        null_mean,
        null_std,
        analytic,
        p_value,
        z,
    )
    return TwoSampleResult(
        auc=float(observed),
        null_auc=null,
        null_mean=null_mean,
        null_std=null_std,
        p_value=p_value,
        z=float(z),
        analytic_null_std=analytic,
        n_a=len(a),
        n_b=len(b),
        n_folds=int(n_folds),
    )
