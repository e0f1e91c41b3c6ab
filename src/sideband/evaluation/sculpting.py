"""Background sculpting test of LaCATHODE (arXiv:2210.14924, Sec. IV, Eq. 5 and Fig. 6).

Does a cut on the anomaly score change the shape of the background m_JJ spectrum? On
background-only events in the SR and the sidebands:

1. bin ``mjj_all`` into ``n_bins`` (paper: 300) bins of equal content (quantile edges);
2. for each selection efficiency eps_sel, take the score threshold that keeps a fraction eps_sel
   of the SR events and apply it to all events (SR and SB), as in the paper ("the denoted
   efficiency is based on the SR and the same anomaly score threshold is applied to the SB");
3. compare the selected histogram with the one before the cut, both normalised to unit area:
   ``chi2 = sum_i (N_i^sel - E_i)^2 / E_i`` with ``E_i = N^sel N_i^full / N^tot`` (equal
   population: ``E_i = N^sel / n_bins``), and ``ndof = n_bins - 1``; report chi2/ndof;
4. the same for random subsets of the same size, so a value can be read against chance.

About Eq. 5: the paper writes ``sigma_i^2 = a_i^2 eps_sel N_i^full`` with ``n_i^full =
a_i N_i^full`` and ``n_i^sel = b_i N_i^sel`` the unit-area histograms. Taken literally this is
``eps_sel^2`` times the Poisson variance of ``n_i^sel`` (``b_i = a_i / eps_sel``), which would
make chi2/ndof ~ 1/eps_sel^2 instead of the "values close to unity" of Fig. 6; the intended
sigma_i is the Poisson error of the selected histogram, ``b_i^2 eps N_i^full``, i.e. the Pearson
chi2 above. We take eps as the fraction of ALL events that pass (``N^sel / N^tot``), so chi2 only
measures the change of shape; with the paper's nominal (SR) eps_sel the value would also scale
with ``(N^sel / N^tot) / eps_sel``.

Bins empty before the cut (possible only with tied masses) carry no expectation: they are left
out of chi2 and of ndof (``ndof = populated bins - 1``). Bins empty after the cut do count.
A random subset of a fraction f of the events has ``<chi2/ndof> = 1 - f`` (sampling without
replacement); the paper compares with 100 random subsets (default here 20).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError

__all__ = ["DEFAULT_EPS_SEL", "SculptingResult", "sculpting_test"]

logger = logging.getLogger(__name__)

#: Selection efficiencies (fractions of SR events kept) of the sculpting test.
DEFAULT_EPS_SEL = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class SculptingResult:
    """chi2/ndof between the m_JJ spectrum after and before score cuts, and its random reference.

    Attributes
    ----------
    eps_sel
        float64 (n_eps,): fraction of SR events each cut keeps.
    chi2, ndof, chi2_ndof
        float64, int64, float64 (n_eps,): Pearson chi2 of the selected spectrum against the one
        before the cut (same number of events), its degrees of freedom (populated bins - 1),
        and their ratio.
    random_chi2_ndof_mean, random_chi2_ndof_std
        float64 (n_eps,): mean and standard deviation (ddof = 1) of chi2/ndof for random subsets
        of the same size as each cut's selection.
    random_chi2_ndof
        float64 (n_eps, n_random): the individual random-subset values.
    bin_edges
        float64 (n_bins + 1,): equal-population m_JJ bin edges in GeV.
    counts
        int64 (n_eps, n_bins): selected events per bin.
    counts_before
        int64 (n_bins,): all events per bin (before any cut).
    n_selected
        int64 (n_eps,): events (SR and SB) each cut keeps.
    thresholds
        float64 (n_eps,): score thresholds (cut ``score > threshold``).
    """

    eps_sel: np.ndarray
    chi2: np.ndarray
    ndof: np.ndarray
    chi2_ndof: np.ndarray
    random_chi2_ndof_mean: np.ndarray
    random_chi2_ndof_std: np.ndarray
    random_chi2_ndof: np.ndarray
    bin_edges: np.ndarray
    counts: np.ndarray
    counts_before: np.ndarray
    n_selected: np.ndarray
    thresholds: np.ndarray


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        msg = f"{name} must hold real numbers; got dtype {arr.dtype}"
        raise InputError(msg)
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be 1-D (one value per event); got shape {arr.shape}"
        raise InputError(msg)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad)
        msg = (
            f"{name} holds {rows.size} NaN/inf value(s) (first rows {rows[:5].tolist()}); "
            "score every event and drop events without a mass, from both arrays of the pair"
        )
        raise InputError(msg)
    return arr


def _pearson(observed: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, int]:
    """chi2 of `observed` (..., n_bins) against the shape of `before` (n_bins,) scaled to the
    same total; only bins populated before the cut count."""
    pop = before > 0
    obs = observed[..., pop].astype(np.float64)
    shape = before[pop] / before.sum()
    expected = obs.sum(axis=-1, keepdims=True) * shape
    chi2 = ((obs - expected) ** 2 / expected).sum(axis=-1)
    return chi2, int(pop.sum()) - 1


def sculpting_test(
    mjj_sr: Any,
    score_sr: Any,
    mjj_all: Any,
    score_all: Any,
    *,
    eps_sel: Any = DEFAULT_EPS_SEL,
    n_bins: int = 300,
    n_random: int = 20,
    seed: int = 0,
    min_expected_per_bin: float = 10.0,
) -> SculptingResult:
    """LaCATHODE sculpting test: chi2/ndof of the m_JJ spectrum after score cuts vs before.

    See the module docstring for the recipe and the reading of the paper's Eq. 5.

    Parameters
    ----------
    mjj_sr, score_sr
        m_JJ [GeV] and anomaly score of the SR events, shape (N_sr,) each; the thresholds come
        from `score_sr` (`mjj_sr` is only checked for consistency).
    mjj_all, score_all
        m_JJ [GeV] and score of all events, SR and sidebands, shape (N,) each; background only
        for the test to mean anything. Every event must be scored the same way as the SR ones
        (e.g. `KFoldResult.predict_by_fold` for the sidebands).
    eps_sel
        Fractions in (0, 1] of the SR events to keep, shape (n_eps,).
    n_bins
        Equal-population m_JJ bins (paper: 300).
    n_random
        Random subsets per efficiency for the chance reference, at least 2 (paper: 100).
    seed
        Seeds the random subsets.
    min_expected_per_bin
        Fewest events a bin should expect after the smallest cut, ``min(eps_sel) * N / n_bins``
        (paper: n_bins "chosen such that a 1% selection still retains at least ten test set
        events in every bin"); below it the Pearson chi2 is unreliable and an `InputError`
        says how many events are needed. 0 switches the check off.

    Returns
    -------
    SculptingResult
    """
    from sideband.scoring import efficiency_threshold

    m_sr = _as_1d(mjj_sr, "mjj_sr")
    s_sr = _as_1d(score_sr, "score_sr")
    m_all = _as_1d(mjj_all, "mjj_all")
    s_all = _as_1d(score_all, "score_all")
    for (na, a), (nb, b) in (
        (("mjj_sr", m_sr), ("score_sr", s_sr)),
        (("mjj_all", m_all), ("score_all", s_all)),
    ):
        if a.size != b.size:
            msg = (
                f"{na} has {a.size} entries but {nb} has {b.size}; pass one mass and one score "
                "per event, in the same order"
            )
            raise InputError(msg)
    if m_sr.size == 0:
        msg = "mjj_sr and score_sr are empty; pass the SR events (the cuts are set on them)"
        raise InputError(msg)
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        msg = f"n_bins must be an integer >= 2; got {n_bins!r}"
        raise InputError(msg)
    if not isinstance(n_random, (int, np.integer)) or n_random < 2:
        msg = f"n_random must be an integer >= 2 (its spread is reported); got {n_random!r}"
        raise InputError(msg)
    eps = np.atleast_1d(np.asarray(eps_sel, dtype=np.float64))
    if eps.ndim != 1 or eps.size == 0:
        msg = f"eps_sel must be a non-empty 1-D array of efficiencies; got shape {eps.shape}"
        raise InputError(msg)
    bad = ~((eps > 0.0) & (eps <= 1.0))
    if bad.any():
        msg = (
            f"eps_sel must lie in (0, 1]; got {eps[bad].tolist()} (fractions, e.g. 0.01 keeps "
            "the top 1% of SR events)"
        )
        raise InputError(msg)
    n_all = m_all.size
    if n_all < n_bins:
        msg = (
            f"mjj_all holds {n_all} events, fewer than the {n_bins} bins; pass at least "
            f"{n_bins} events (many more for a useful test) or fewer n_bins"
        )
        raise InputError(msg)
    eps_min = float(eps.min())
    if min_expected_per_bin > 0 and eps_min * n_all / n_bins < min_expected_per_bin:
        need = math.ceil(min_expected_per_bin * n_bins / eps_min)
        msg = (
            f"mjj_all holds {n_all} events: the {eps_min:g} selection keeps about "
            f"{eps_min * n_all / n_bins:.1f} per bin of {n_bins}, fewer than "
            f"min_expected_per_bin = {min_expected_per_bin:g}. It needs at least {need} events; "
            "pass more background events, fewer n_bins or larger eps_sel"
        )
        raise InputError(msg)
    lo, hi = float(m_all.min()), float(m_all.max())
    if m_sr.min() < lo or m_sr.max() > hi:
        msg = (
            f"mjj_sr spans {m_sr.min():.6g}-{m_sr.max():.6g} GeV, outside mjj_all "
            f"({lo:.6g}-{hi:.6g} GeV); mjj_all must hold all events, SR included"
        )
        raise InputError(msg)

    edges = np.quantile(m_all, np.linspace(0.0, 1.0, n_bins + 1))
    edges = np.maximum.accumulate(edges)  # guard against rounding in the interpolation
    before, _ = np.histogram(m_all, bins=edges)
    if (before == 0).any():
        logger.warning(
            "%d of %d m_JJ bins are empty (tied masses); they are left out of chi2 and ndof",
            int((before == 0).sum()),
            n_bins,
        )
    if int((before > 0).sum()) < 2:
        msg = (
            f"mjj_all takes fewer than two distinct values ({np.unique(m_all)[:3].tolist()} GeV); "
            "the test needs a spectrum spread over at least two bins"
        )
        raise InputError(msg)
    rng = np.random.default_rng(seed)

    thresholds = np.empty(eps.size)
    counts = np.zeros((eps.size, n_bins), dtype=np.int64)
    random_counts = np.zeros((eps.size, n_random, n_bins), dtype=np.int64)
    n_sel = np.zeros(eps.size, dtype=np.int64)
    for k, e in enumerate(eps):
        if round(e * s_sr.size) == 0:
            msg = (
                f"eps_sel = {e:g} of {s_sr.size} SR events keeps no event; it needs at least "
                f"{math.ceil(0.5 / e)} SR events, or use a larger efficiency"
            )
            raise InputError(msg)
        t = efficiency_threshold(s_sr, float(e))
        selected = s_all > t
        n_sel[k] = int(selected.sum())
        if n_sel[k] == 0:
            msg = (
                f"the cut score > {t:.6g} (eps_sel = {e:g} in the SR) selects no event of "
                "mjj_all; score_all must hold the scores of the SR events too"
            )
            raise InputError(msg)
        thresholds[k] = t
        counts[k], _ = np.histogram(m_all[selected], bins=edges)
        # a random subset of n_sel events, binned: multivariate hypergeometric in the bins
        random_counts[k] = rng.multivariate_hypergeometric(before, int(n_sel[k]), size=n_random)

    chi2, ndof = _pearson(counts, before)
    random_chi2, _ = _pearson(random_counts, before)
    random_ratio = random_chi2 / ndof
    logger.info(
        "sculpting test: chi2/ndof %s at eps_sel %s (random %s)",
        np.round(chi2 / ndof, 3).tolist(),
        eps.tolist(),
        np.round(random_ratio.mean(axis=1), 3).tolist(),
    )
    return SculptingResult(
        eps_sel=eps,
        chi2=chi2,
        ndof=np.full(eps.size, ndof, dtype=np.int64),
        chi2_ndof=chi2 / ndof,
        random_chi2_ndof_mean=random_ratio.mean(axis=1),
        random_chi2_ndof_std=random_ratio.std(axis=1, ddof=1),
        random_chi2_ndof=random_ratio,
        bin_edges=edges,
        counts=counts,
        counts_before=before.astype(np.int64),
        n_selected=n_sel,
        thresholds=thresholds,
    )
