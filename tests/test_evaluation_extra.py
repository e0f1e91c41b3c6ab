"""Tests of the evaluation over repeated runs: bands, classifier two-sample test, the LaCATHODE
sculpting test (chi2/ndof vs selection efficiency) and their figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

from sideband.errors import InputError
from sideband.evaluation import (
    Band,
    SculptingResult,
    auc,
    band,
    classifier_two_sample_test,
    mann_whitney_null_std,
    plot_injection,
    plot_sculpting,
    plot_sic_band,
    sculpting_test,
    sic_at,
    sic_band,
    sic_curve,
)
from sideband.scoring import HGBEnsemble

# ---------------------------------------------------------------------------------------- band


def test_band_known_percentiles_and_nan_ignored():
    values = np.arange(101.0)  # the k-th percentile of 0..100 is k (linear interpolation)
    b = band(values)
    assert (b.lo, b.median, b.hi, b.n) == (16.0, 50.0, 84.0, 101)
    shuffled = np.random.default_rng(0).permutation(np.r_[values, np.nan, np.nan])
    assert band(shuffled) == b


def test_band_2d_axis_and_all_nan_column():
    values = np.stack([np.arange(101.0), 2 * np.arange(101.0), np.full(101, np.nan)], axis=1)
    b = band(values, axis=0)
    np.testing.assert_allclose(b.median, [50.0, 100.0, np.nan])
    np.testing.assert_allclose(b.lo, [16.0, 32.0, np.nan])
    np.testing.assert_allclose(b.hi, [84.0, 168.0, np.nan])
    np.testing.assert_array_equal(b.n, [101, 101, 0])
    b1 = band(values.T, axis=1)
    np.testing.assert_allclose(b1.median, b.median)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([]), "no entries"),
        (np.empty((0, 3)), "no entries"),
        (np.full(4, np.nan), "all NaN"),
        (np.array([1.0, np.inf]), "infinite"),
        (3.0, "scalar"),
        (np.array(["a", "b"]), "real numbers"),
    ],
)
def test_band_bad_input(values, match):
    with pytest.raises(InputError, match=match):
        band(values)


# ------------------------------------------------------------------------------------ sic_band


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(3)
    n_s, n_b = 500, 2000
    y = np.r_[np.ones(n_s, np.int64), np.zeros(n_b, np.int64)]
    scores = np.r_[rng.normal(1.5, 1.0, n_s), rng.normal(0.0, 1.0, n_b)]
    return y, scores


def test_sic_band_identical_curves_equal_sic_at(labelled):
    y, scores = labelled
    grid = np.array([1e-4, 1e-3, 3e-3, 1e-2, 0.1, 1.0])  # 1e-4 < 1/2000: unreachable
    g, b = sic_band([sic_curve(y, scores), (y, scores)], grid)
    np.testing.assert_array_equal(g, grid)
    np.testing.assert_array_equal(b.n, [0, 2, 2, 2, 2, 2])
    assert np.isnan(b.median[0])
    np.testing.assert_array_equal(b.lo[1:], b.median[1:])
    np.testing.assert_array_equal(b.hi[1:], b.median[1:])
    for k in range(1, grid.size):
        assert b.median[k] == pytest.approx(sic_at(y, scores, grid[k]), rel=1e-12)
    assert b.median[-1] == pytest.approx(1.0)  # eps_S = eps_B = 1


def test_sic_band_spread_over_seeds(labelled):
    y, scores = labelled
    rng = np.random.default_rng(4)
    curves = [(y, scores + rng.normal(0.0, 0.5, scores.size)) for _ in range(5)]
    grid = np.geomspace(1e-3, 1.0, 20)
    _, b = sic_band(curves, grid)
    each = np.array([[sic_at(yy, ss, e) for e in grid] for yy, ss in curves])
    np.testing.assert_allclose(b.median, np.median(each, axis=0), rtol=1e-12)
    assert (b.lo <= b.median).all()
    assert (b.median <= b.hi).all()
    assert (b.hi - b.lo)[:-1].max() > 0  # noisy seeds spread (at eps_B = 1 all are 1)


def test_sic_band_bad_input(labelled):
    y, scores = labelled
    with pytest.raises(InputError, match="non-empty sequence"):
        sic_band([], [1e-2])
    with pytest.raises(InputError, match=r"curves\[0\]"):
        sic_band([np.ones(3)], [1e-2])
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        sic_band([(y, scores)], [0.0, 0.5])
    with pytest.raises(InputError, match="no curve reaches"):
        sic_band([(y, scores)], [1e-5, 1e-4])


# ---------------------------------------------------------------------------- two-sample test


def _gaussians(shift: float, seed: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2))
    b = rng.normal(size=(n, 2))
    a[:, 0] += shift
    return a, b


def test_two_sample_same_distribution_is_null():
    a, b = _gaussians(0.0, seed=10)
    r = classifier_two_sample_test(
        a, b, classifier=LogisticRegression(), n_folds=3, n_null=20, seed=1
    )
    assert r.null_auc.shape == (20,)
    assert abs(r.auc - r.null_mean) < 3 * r.null_std
    assert r.p_value > 0.01  # with n_null = 20 the smallest possible p is 1/21
    assert abs(r.null_mean - 0.5) < 3 * r.analytic_null_std
    assert r.analytic_null_std == pytest.approx(mann_whitney_null_std(1000, 1000))
    assert 0.5 < r.null_std / r.analytic_null_std < 2.0
    expected_p = (1 + np.sum(r.null_auc >= r.auc)) / 21
    assert r.p_value == pytest.approx(expected_p)
    assert r.z == pytest.approx((r.auc - r.null_mean) / np.std(r.null_auc, ddof=1))


def test_two_sample_shifted_gaussians_detected():
    a, b = _gaussians(0.5, seed=11)
    r = classifier_two_sample_test(
        a, b, classifier=LogisticRegression(), n_folds=3, n_null=20, seed=2
    )
    # optimal AUC for a 0.5 shift of unit Gaussians: Phi(0.5 / sqrt 2) = 0.638
    assert r.auc == pytest.approx(0.638, abs=0.03)
    assert r.z > 5
    assert r.p_value == pytest.approx(1 / 21)  # no permutation reaches the observed AUC
    assert 0.5 < r.null_std / r.analytic_null_std < 2.0


def test_two_sample_hgb_and_seed():
    # the default classifier, single-threaded (OpenMP on a busy 2-core runner can take 10x longer)
    clf = HGBEnsemble(n_members=1, n_threads=1)
    a, b = _gaussians(1.0, seed=12, n=200)
    r1 = classifier_two_sample_test(a, b, classifier=clf, n_folds=2, n_null=2, seed=5)
    r2 = classifier_two_sample_test(a, b, classifier=clf, n_folds=2, n_null=2, seed=5)
    assert r1.auc > 0.65  # a 1-sigma shift: optimal AUC 0.76
    assert r1.auc == r2.auc
    np.testing.assert_array_equal(r1.null_auc, r2.null_auc)
    assert (r1.n_a, r1.n_b, r1.n_folds) == (200, 200, 2)


def test_two_sample_bad_input():
    a, b = _gaussians(0.0, seed=13, n=50)
    clf = HGBEnsemble(n_members=1)
    with pytest.raises(InputError, match="2-D"):
        classifier_two_sample_test(a[:, 0], b, classifier=clf)
    with pytest.raises(InputError, match="same feature columns"):
        classifier_two_sample_test(a, b[:, :1], classifier=clf)
    bad = a.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        classifier_two_sample_test(bad, b, classifier=clf)
    with pytest.raises(InputError, match="too few for 5 folds"):
        classifier_two_sample_test(a[:7], b, classifier=clf)
    with pytest.raises(InputError, match="n_null"):
        classifier_two_sample_test(a, b, classifier=clf, n_null=1)
    with pytest.raises(InputError, match="n_folds"):
        classifier_two_sample_test(a, b, classifier=clf, n_folds=1)


# ---------------------------------------------------------------------------- sculpting test

EPS = (0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def spectrum():
    """Falling m_JJ spectrum [GeV], 100k background events, SR 3300-3700 GeV."""
    rng = np.random.default_rng(20)
    mjj = 2000.0 + rng.exponential(800.0, 100_000)
    sr = (mjj > 3300.0) & (mjj < 3700.0)
    return rng, mjj, sr


def test_sculpting_independent_score_is_unsculpted(spectrum):
    rng, mjj, sr = spectrum
    score = rng.normal(size=mjj.size)
    r = sculpting_test(mjj[sr], score[sr], mjj, score, eps_sel=EPS, n_random=20, seed=1)
    assert isinstance(r, SculptingResult)
    assert r.counts.shape == (3, 300)
    assert r.bin_edges.shape == (301,)
    np.testing.assert_array_equal(r.ndof, 299)
    # equal population: every bin holds N / 300 events before the cut
    assert r.counts_before.min() >= 333
    assert r.counts_before.max() <= 334
    np.testing.assert_array_equal(r.counts.sum(axis=1), r.n_selected)
    # the SR keeps the requested fraction
    np.testing.assert_array_equal(
        [(score[sr] > t).sum() for t in r.thresholds], np.round(np.array(EPS) * sr.sum())
    )
    assert np.abs(r.chi2_ndof - 1.0).max() < 0.3
    assert (np.abs(r.chi2_ndof - r.random_chi2_ndof_mean) < 4 * r.random_chi2_ndof_std).all()
    # random subsets of a fraction f: <chi2/ndof> = 1 - f (sampling without replacement)
    f = r.n_selected / mjj.size
    np.testing.assert_allclose(r.random_chi2_ndof_mean, 1.0 - f, atol=0.1)
    assert r.random_chi2_ndof.shape == (3, 20)


def test_sculpting_correlated_score_is_sculpted(spectrum):
    rng, mjj, sr = spectrum
    score = mjj / 400.0 + rng.normal(size=mjj.size)
    r = sculpting_test(mjj[sr], score[sr], mjj, score, eps_sel=EPS, seed=2)
    k = EPS.index(0.1)
    assert r.chi2_ndof[k] > r.random_chi2_ndof_mean[k] + 20 * r.random_chi2_ndof_std[k]
    assert r.chi2_ndof[k] > 10


def test_sculpting_chi2_by_hand():
    # 2 bins {1, 2} {3, 4}; the cut keeps the two events of the upper bin
    mjj = np.array([1.0, 2.0, 3.0, 4.0])
    score = np.array([0.0, 0.1, 0.9, 1.0])
    r = sculpting_test(
        mjj, score, mjj, score, eps_sel=[0.5], n_bins=2, n_random=2, min_expected_per_bin=0
    )
    np.testing.assert_array_equal(r.counts_before, [2, 2])
    np.testing.assert_array_equal(r.counts, [[0, 2]])
    # expected 1 per bin: (0 - 1)^2 / 1 + (2 - 1)^2 / 1
    assert r.chi2[0] == pytest.approx(2.0)
    assert r.ndof[0] == 1
    assert r.chi2_ndof[0] == pytest.approx(2.0)


def test_sculpting_empty_bins_leave_ndof():
    # integer masses: many tied quantile edges, so many of the 300 bins are empty
    rng = np.random.default_rng(21)
    mjj = rng.integers(3000, 3060, 60_000).astype(np.float64)
    score = rng.normal(size=mjj.size)
    sr = (mjj >= 3020) & (mjj < 3040)
    r = sculpting_test(mjj[sr], score[sr], mjj, score, eps_sel=[0.1, 0.2], seed=3)
    populated = int((r.counts_before > 0).sum())
    assert 2 < populated < 300
    np.testing.assert_array_equal(r.ndof, populated - 1)
    assert r.counts_before.sum() == mjj.size
    assert (r.counts[:, r.counts_before == 0] == 0).all()
    assert (np.abs(r.chi2_ndof - r.random_chi2_ndof_mean) < 4 * r.random_chi2_ndof_std).all()


def test_sculpting_bad_input(spectrum):
    rng, mjj, sr = spectrum
    score = rng.normal(size=mjj.size)
    args = (mjj[sr], score[sr], mjj, score)
    with pytest.raises(InputError, match="mjj_all has 100000 entries but score_all has 99999"):
        sculpting_test(mjj[sr], score[sr], mjj, score[:-1], eps_sel=EPS)
    with pytest.raises(InputError, match="mjj_sr has"):
        sculpting_test(mjj[sr][:-1], score[sr], mjj, score, eps_sel=EPS)
    nan_score = score.copy()
    nan_score[7] = np.nan
    with pytest.raises(
        InputError, match=r"score_all holds 1 NaN/inf value\(s\) \(first rows \[7\]"
    ):
        sculpting_test(mjj[sr], score[sr], mjj, nan_score, eps_sel=EPS)
    for bad_eps in ([0.0], [0.1, 1.5], [-0.1]):
        with pytest.raises(InputError, match=r"eps_sel must lie in \(0, 1\]"):
            sculpting_test(*args, eps_sel=bad_eps)
    # the paper's 1% working point with 300 bins needs 300k events for >= 10 per bin
    with pytest.raises(InputError, match="needs at least 300000 events"):
        sculpting_test(*args)
    with pytest.raises(InputError, match="fewer than the 300 bins"):
        sculpting_test(mjj[:200], score[:200], mjj[:200], score[:200], min_expected_per_bin=0)
    # a threshold set on the SR that no event of score_all passes
    with pytest.raises(InputError, match="selects no event"):
        sculpting_test(mjj[sr], score[sr], mjj, score - 100.0, eps_sel=EPS)
    with pytest.raises(InputError, match="keeps no event"):
        sculpting_test(mjj[sr][:5], score[sr][:5], mjj, score, eps_sel=EPS)
    with pytest.raises(InputError, match="outside mjj_all"):
        sculpting_test(mjj[sr] + 1e5, score[sr], mjj, score, eps_sel=EPS)
    with pytest.raises(InputError, match="n_random"):
        sculpting_test(*args, eps_sel=EPS, n_random=1)


# --------------------------------------------------------------------------------------- plots


def _written(fig, path) -> None:
    assert isinstance(fig, Figure)
    assert path.is_file()
    assert path.stat().st_size > 0


def test_plot_sculpting(tmp_path, spectrum):
    rng, mjj, sr = spectrum
    score = rng.normal(size=mjj.size)
    r = sculpting_test(mjj[sr], score[sr], mjj, score, eps_sel=EPS, n_random=5)
    path = tmp_path / "sculpting.png"
    _written(plot_sculpting(r, path), path)


def test_plot_sic_band(tmp_path, labelled):
    y, scores = labelled
    rng = np.random.default_rng(5)
    curves = [(y, scores + rng.normal(0.0, 0.5, scores.size)) for _ in range(3)]
    grid, b = sic_band(curves, np.geomspace(1e-4, 1.0, 30))  # first points unreachable: NaN
    assert isinstance(b, Band)
    path = tmp_path / "sic_band.pdf"
    _written(plot_sic_band(grid, b, path, label="toy"), path)


def test_plot_injection(tmp_path):
    n_sig = np.array([0, 300, 600, 1000, 2000])
    med = np.array([0.3, 1.0, 4.0, 8.0, 12.0])
    path = tmp_path / "injection.svg"
    fig = plot_injection(
        n_sig,
        med,
        0.8 * med,
        1.2 * med,
        reference={"idealized AD": (n_sig, med + 2, med + 1, med + 3)},
        n_background=120_000,
        path=path,
    )
    _written(fig, path)
    (ax,) = fig.axes
    (top,) = ax.child_axes  # the S/sqrt(B) axis
    assert "B^{1/2}" in top.get_xlabel()
    fig2 = plot_injection(n_sig, med, med, med)
    assert fig2.axes[0].child_axes == []
    with pytest.raises(
        InputError, match=r"median of .sideband. has 4 entries but n_signal of .sideband. has 5"
    ):
        plot_injection(n_sig, med[:-1], med, med)
    with pytest.raises(InputError, match="4-tuple"):
        plot_injection(n_sig, med, med, med, reference={"x": (n_sig, med)})


def test_mann_whitney_matches_random_scores():
    rng = np.random.default_rng(6)
    n_a, n_b = 300, 500
    y = np.r_[np.ones(n_a), np.zeros(n_b)]
    assert auc(y, np.r_[np.ones(n_a), np.zeros(n_b)]) == 1.0
    # AUC of a random score from its ranks (Mann-Whitney U / (n_a n_b)), 2000 times
    ranks = np.argsort(np.argsort(rng.uniform(size=(2000, n_a + n_b)), axis=1), axis=1) + 1
    aucs = (ranks[:, :n_a].sum(axis=1) - n_a * (n_a + 1) / 2) / (n_a * n_b)
    assert np.std(aucs) == pytest.approx(mann_whitney_null_std(n_a, n_b), rel=0.08)
    assert math.isfinite(mann_whitney_null_std(1, 1))
