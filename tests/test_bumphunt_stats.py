"""Statistics of the bump hunt: the number of dijet parameters by a Wilks test, resolution-following
bins, pseudo-experiment p-values, the fit-stage toys (global significance) and cabinetry reading
the saved workspace.

Checked on toys from known dijet spectra (f(x) = p0 (1-x)^p1 / x^(p2 + p3 ln x), x = m / 13 TeV),
with 10-20k events over 2.5-6 TeV like a cut LHCO m_JJ spectrum.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from dijet_truth import SR, sample_mjj, sideband_binning, true_counts
from sideband.bumphunt import (
    ToyScan,
    background_spectrum,
    bump_hunt,
    fit_dijet,
    global_pvalue,
    mass_binning,
    max_local_significance_toys,
    pseudo_mjj,
    save_workspace,
)
from sideband.errors import InputError
from sideband.regions import SignalRegion

#: (p1, p2, p3): a 3-parameter truth (p3 = 0), a mildly and a clearly 4-parameter one. Over
#: 2.5-6 TeV the 3-parameter function absorbs p3 = 0.3 almost entirely (Asimov deviance
#: difference 0.8 at 1e6 events); p3 = 2 gives 2.4 at 2e4 and 119 at 1e6 events.
SHAPE3 = (10.0, 6.0, 0.0)
SHAPE4 = (10.0, 6.0, 0.3)
SHAPE4_CLEAR = (10.0, 6.0, 2.0)


def expected_counts(edges: np.ndarray, total: float, shape: tuple[float, ...]) -> np.ndarray:
    """Expected counts per bin of the dijet density, summing to `total`."""
    return true_counts(edges, total, shape)[0]


@pytest.fixture(scope="module")
def binning() -> tuple[np.ndarray, np.ndarray]:
    return sideband_binning()


# -- number of parameters by a Wilks test -------------------------------------------------------


def test_auto_n_params_keeps_three_on_a_three_parameter_truth(binning):
    """Under the 3-parameter truth, 4 is accepted at rate ~alpha: 'auto' keeps 3 in >= 80%."""
    edges, sb = binning
    truth = expected_counts(edges, 2e4, SHAPE3)
    rng = np.random.default_rng(4)
    chosen, first_p = [], []
    for _ in range(40):
        fit = fit_dijet(rng.poisson(truth).astype(float), edges, mask=sb, n_params="auto")
        chosen.append(fit.n_params)
        first_p.append(fit.selection["stages"][1]["p_value"])
        assert fit.selection["method"] == "wilks"
        assert fit.selection["chosen"] == fit.n_params
        assert fit.n_params_requested == "auto"
    assert np.mean(np.asarray(chosen) == 3) >= 0.8
    # Wilks: the 3-vs-4 p-values are roughly uniform under the simpler truth
    assert 0.3 < np.median(first_p) < 0.7


def test_auto_n_params_takes_four_on_a_clear_four_parameter_shape(binning):
    edges, sb = binning
    truth = expected_counts(edges, 1e6, SHAPE4_CLEAR)
    fit = fit_dijet(np.random.default_rng(5).poisson(truth).astype(float), edges, mask=sb,
                    n_params="auto")  # fmt: skip
    assert fit.n_params >= 4
    stage4 = fit.selection["stages"][1]
    assert stage4["accepted"]
    assert stage4["p_value"] < 1e-6


def test_selection_records_the_wilks_test_of_the_fixed_fits(binning):
    """The stage deviances are those of separate fixed-n fits; p = chi2.sf(delta, 1)."""
    edges, sb = binning
    counts = np.random.default_rng(6).poisson(expected_counts(edges, 5e4, SHAPE4)).astype(float)
    auto = fit_dijet(counts, edges, mask=sb, n_params="auto", n_params_alpha=0.2)
    fixed = {p: fit_dijet(counts, edges, mask=sb, n_params=p) for p in (3, 4, 5)}
    stages = auto.selection["stages"]
    for stage in stages:
        assert stage["deviance"] == pytest.approx(fixed[stage["n_params"]].deviance, abs=1e-6)
    for prev, stage in itertools.pairwise(stages):
        delta = max(prev["deviance"] - stage["deviance"], 0.0)
        assert stage["delta_deviance"] == pytest.approx(delta, abs=1e-9)
        assert stage["p_value"] == pytest.approx(stats.chi2.sf(delta, 1), rel=1e-9)
        assert stage["accepted"] == (stage["healthy"] and stage["p_value"] < 0.2)
    # the chosen fit is the fixed fit of that size, and a fixed request records "fixed"
    np.testing.assert_allclose(auto.coef, fixed[auto.n_params].coef, rtol=1e-9, atol=1e-9)
    assert fixed[4].selection["method"] == "fixed"
    assert fixed[4].selection["alpha"] is None
    assert fixed[4].n_params_requested == 4


def test_auto_n_params_bad_inputs(binning):
    edges, sb = binning
    counts = expected_counts(edges, 2e4, SHAPE4)
    with pytest.raises(InputError, match="'auto'"):
        fit_dijet(counts, edges, mask=sb, n_params="best")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_params_alpha"):
        fit_dijet(counts, edges, mask=sb, n_params="auto", n_params_alpha=1.5)


def test_bump_hunt_records_the_selection():
    mjj = sample_mjj(np.random.default_rng(8), 2e4)
    res = bump_hunt(mjj, SR, n_params="auto", compute_limit=False)
    sel = res.fit_info["fit_selection"]
    assert sel["method"] == "wilks"
    assert sel["chosen"] == res.fit_info["fit_n_params"]
    assert res.fit_info["fit_n_params_requested"] == "auto"
    assert res.fit_info["calculator"] == "asymptotics"


# -- bins following the mass resolution ---------------------------------------------------------


def test_resolution_binning_grows_with_mass_and_holds_the_sr_edges():
    edges = mass_binning(2513.0, 5987.0, SR, resolution=0.05)
    assert 3300.0 in edges
    assert 3700.0 in edges
    assert edges[0] >= 2513.0
    assert edges[-1] <= 5987.0
    widths, centres = np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
    assert np.all(np.diff(widths) > 0) or np.all(np.diff(widths[centres > 3700]) > 0)
    outside = (centres < 3300) | (centres > 3700)
    np.testing.assert_allclose(widths[outside] / centres[outside], 0.05, rtol=1e-9)
    inside = ~outside
    assert np.all(widths[inside] / centres[inside] <= 0.05 + 1e-12)
    # the next grid point outside [low, high] is past the range: no bin left out needlessly
    q = 2.05 / 1.95
    assert edges[0] / q < 2513.0
    assert edges[-1] * q > 5987.0
    # resolution=None keeps the fixed-width grid exactly
    np.testing.assert_array_equal(
        mass_binning(2513.0, 5987.0, SR, width_gev=100.0, resolution=None),
        mass_binning(2513.0, 5987.0, SR, width_gev=100.0),
    )
    for bad in (0.0, -0.1, 1.5, np.nan):
        with pytest.raises(InputError, match="resolution"):
            mass_binning(2500.0, 6000.0, SR, resolution=bad)


def test_fit_and_bump_hunt_work_with_variable_bins():
    edges = mass_binning(2500.0, 6000.0, SR, resolution=0.04)
    sb = ~SR.contains(0.5 * (edges[1:] + edges[:-1]))
    truth = expected_counts(edges, 1e6, SHAPE4_CLEAR)
    fit = fit_dijet(truth, edges, mask=sb, n_params=4)  # Asimov: exact recovery
    np.testing.assert_allclose(fit.predict(edges), truth, rtol=1e-5)
    rng = np.random.default_rng(9)
    z_signed = []
    for _ in range(15):
        res = bump_hunt(sample_mjj(rng, 2e4), SR, bin_resolution=0.04, compute_limit=False)
        assert res.fit_info["bin_resolution"] == 0.04
        np.testing.assert_allclose(res.fit_info["edges"], edges)
        z_signed.append(res.fit_info["z_signed"])
    assert abs(np.mean(z_signed)) < 0.8  # 15 background-only toys: mean 0 +- 0.26
    assert 0.5 < np.std(z_signed, ddof=1) < 1.6


# -- pseudo-experiment p-values ----------------------------------------------------------------


def test_toy_p0_agrees_with_asymptotic_p0():
    """p0 from 120 toys within 3 binomial sigma + 0.02 (asymptotic approximation) of the
    asymptotic p0; the global RNG is seeded for the call and restored; the seed reproduces."""
    rng = np.random.default_rng(12)
    mjj = np.concatenate([sample_mjj(rng, 1e4), rng.normal(3500.0, 60.0, 35)])
    asym = bump_hunt(mjj, SR, compute_limit=False)
    assert 0.02 < asym.p0 < 0.3  # a mild excess: the comparison is not at p0 = 0.5
    np.random.seed(99)  # noqa: NPY002 - the global state the call must leave alone
    expected_next = np.random.random()  # noqa: NPY002
    np.random.seed(99)  # noqa: NPY002
    n_toys = 120
    toys = bump_hunt(mjj, SR, compute_limit=False, calculator="toys", n_toys=n_toys, seed=3)
    assert np.random.random() == expected_next  # noqa: NPY002
    tol = 3.0 * np.sqrt(asym.p0 * (1 - asym.p0) / n_toys) + 0.02
    assert abs(toys.p0 - asym.p0) < tol
    assert toys.z == pytest.approx(stats.norm.isf(toys.p0))
    info = toys.fit_info
    assert info["calculator"] == "toys"
    assert info["n_toys"] == n_toys
    assert info["p0_asymptotic"] == pytest.approx(asym.p0, rel=1e-6)
    assert toys.mu_hat == pytest.approx(asym.mu_hat, rel=1e-6)
    again = bump_hunt(mjj, SR, compute_limit=False, calculator="toys", n_toys=20, seed=3)
    twice = bump_hunt(mjj, SR, compute_limit=False, calculator="toys", n_toys=20, seed=3)
    assert again.p0 == twice.p0
    with pytest.raises(InputError, match="calculator"):
        bump_hunt(mjj, SR, compute_limit=False, calculator="bayes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_toys"):
        bump_hunt(mjj, SR, compute_limit=False, calculator="toys", n_toys=0)


# -- fit-stage pseudo-experiments --------------------------------------------------------------


@pytest.fixture(scope="module")
def truth():
    """A background-only truth fitted to 2e4 events over 2.5-6 TeV (10 GeV bins)."""
    mjj = sample_mjj(np.random.default_rng(20), 2e4)
    return background_spectrum(mjj, 2500.0, 6000.0, bin_width_gev=10.0, n_params=4)


def test_background_spectrum_fits_the_whole_range(truth):
    edges, expected, fit = truth
    assert edges[0] == 2500.0
    assert edges[-1] == 6000.0
    np.testing.assert_allclose(np.diff(edges), 10.0)
    assert expected.shape == (len(edges) - 1,)
    assert fit.fit_mask.all()  # no SR masked
    assert expected.sum() == pytest.approx(2e4, rel=0.03)
    assert fit.gof_pvalue > 1e-3
    # the fit follows the truth within its own uncertainty (4 sigma) in every fine bin
    ref = expected_counts(edges, 2e4, SHAPE4)
    err = np.sqrt(np.diag(fit.predict_covariance(edges)))
    assert np.max(np.abs(expected - ref) / err) < 4.0
    assert np.max(np.abs(expected - ref)[:100] / ref[:100]) < 0.05  # 2.5-3.5 TeV: within 5%
    with pytest.raises(InputError, match="bin_width_gev"):
        background_spectrum(np.array([3000.0, 3100.0]), 2500.0, 6000.0, bin_width_gev=-1.0)


def test_pseudo_mjj_is_poisson_around_the_expectation(truth):
    edges, expected, _ = truth
    coarse = edges[::10]  # 100 GeV, aligned with the fine edges
    exp_coarse = np.add.reduceat(expected, np.arange(0, len(expected), 10))
    rng = np.random.default_rng(21)
    hists, totals = [], []
    for _ in range(300):
        mjj = pseudo_mjj(edges, expected, rng)
        assert mjj.min() >= edges[0]
        assert mjj.max() <= edges[-1]
        hists.append(np.histogram(mjj, bins=coarse)[0])
        totals.append(mjj.size)
    hists = np.asarray(hists, dtype=float)
    # per-bin means within 4 sigma of the Poisson expectation, variance ~ mean
    pull = (hists.mean(axis=0) - exp_coarse) / np.sqrt(exp_coarse / len(hists))
    assert np.max(np.abs(pull)) < 4.0
    assert np.var(totals, ddof=1) / expected.sum() == pytest.approx(1.0, abs=0.25)
    # events are spread within their fine bin, not put at the centre
    mjj = pseudo_mjj(edges, expected, rng)
    frac = (mjj - edges[0]) / 10.0 % 1.0
    assert 0.45 < frac.mean() < 0.55
    assert frac.std() == pytest.approx(np.sqrt(1 / 12), rel=0.1)
    with pytest.raises(InputError, match="expected"):
        pseudo_mjj(edges, expected[:-1], rng)


def test_global_pvalue_on_known_arrays():
    res = global_pvalue([0.0, 1.0, 2.0, 3.0], 2.0)
    assert res.p_value == pytest.approx(3 / 5)
    assert res.significance == pytest.approx(stats.norm.isf(0.6))
    assert res.n_toys == 4
    assert global_pvalue([0.0, 1.0, 2.0, 3.0], 10.0).p_value == pytest.approx(1 / 5)
    with_nan = global_pvalue([0.5, np.nan, 2.5], 1.0)
    assert with_nan.n_toys == 2
    assert with_nan.p_value == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="no finite"):
        global_pvalue([np.nan], 1.0)


def test_max_local_significance_over_overlapping_windows(truth):
    edges, expected, _ = truth
    windows = [SignalRegion(lo, lo + 400.0, 2500.0, 6000.0) for lo in (3200.0, 3300.0, 3400.0)]
    scan = max_local_significance_toys(
        edges, expected, windows, n_toys=20, seed=5, hunt_options={"bin_width_gev": 100.0}
    )
    assert isinstance(scan, ToyScan)
    assert scan.z.shape == scan.z_signed.shape == (20, 3)
    assert not scan.failures
    assert np.all(scan.max_z[:, None] >= scan.z - 1e-12)
    np.testing.assert_allclose(scan.max_z, scan.z.max(axis=1))
    # background-only: signed local Z centred on 0 (60 correlated values: loose band)
    assert abs(np.mean(scan.z_signed)) < 0.6
    assert 0.5 < np.std(scan.z_signed) < 1.6
    assert np.all(scan.z >= 0)


def test_a_failing_window_is_recorded_not_raised(truth):
    edges, expected, _ = truth
    windows = [
        SignalRegion(3300.0, 3700.0, 2500.0, 6000.0),
        SignalRegion(5500.0, 5600.0, 2500.0, 6000.0),  # empty in the toys below
    ]
    thin = np.where(0.5 * (edges[1:] + edges[:-1]) > 5400.0, 0.0, expected)
    scan = max_local_significance_toys(edges, thin, windows, n_toys=2, seed=1)
    assert np.all(np.isnan(scan.z[:, 1]))
    assert np.all(np.isfinite(scan.z[:, 0]))
    assert len(scan.failures) == 2
    assert {f["window"] for f in scan.failures} == {1}
    assert "holds 0 events" in scan.failures[0]["error"]
    np.testing.assert_allclose(scan.max_z, scan.z[:, 0])
    # the same seed gives the same toys
    again = max_local_significance_toys(edges, thin, windows[:1], n_toys=2, seed=1)
    np.testing.assert_allclose(again.z[:, 0], scan.z[:, 0])
    with pytest.raises(InputError, match="sideband bounds"):
        max_local_significance_toys(
            edges, expected, [windows[0], SignalRegion(3300.0, 3700.0)], n_toys=1, seed=0
        )


# -- cabinetry reads the saved workspace ---------------------------------------------------------


def test_cabinetry_fits_the_saved_workspace(tmp_path):
    import cabinetry
    import pyhf

    rng = np.random.default_rng(30)
    mjj = np.concatenate([sample_mjj(rng, 2e4), rng.normal(3500.0, 80.0, 250)])
    res = bump_hunt(mjj, SR, signal_width_gev=80.0, compute_limit=False)
    assert res.mu_hat > 3 * res.mu_err  # a clear signal: a relative comparison means something
    path = save_workspace(tmp_path / "workspace.json", res.workspace)
    before = pyhf.get_backend()
    try:
        ws = cabinetry.workspace.load(path)
        model, data = cabinetry.model_utils.model_and_data(ws)
        fit = cabinetry.fit.fit(model, data)
    finally:
        pyhf.set_backend(*before)
    poi = list(fit.labels).index("mu")
    assert fit.bestfit[poi] == pytest.approx(res.mu_hat, rel=1e-2)
    assert fit.uncertainty[poi] == pytest.approx(res.mu_err, rel=5e-2)


def test_joint_likelihood_fits_signal_that_leaks_into_the_sidebands() -> None:
    """A Gaussian as wide as the SR leaks a third of its events into the sidebands: the SR-only
    model loses most of them to the sideband fit, the joint model recovers the injected yield."""
    sr = SignalRegion(3300.0, 3700.0, 2700.0, 5000.0)
    width = 0.06 * 3500.0
    in_sr = stats.norm.cdf(200.0 / width) - stats.norm.cdf(-200.0 / width)
    mu_sr = 600.0
    rng = np.random.default_rng(12)
    hat: dict[str, list[float]] = {"signal_region": [], "joint": []}
    errs: dict[str, list[float]] = {"signal_region": [], "joint": []}
    for _ in range(8):
        u = rng.random(rng.poisson(40_000))
        lo, hi = 2700.0**-4, 5000.0**-4  # p(m) ~ m^-5 on [2700, 5000] GeV
        bkg = (lo + u * (hi - lo)) ** -0.25
        mjj = np.concatenate([bkg, rng.normal(3500.0, width, rng.poisson(mu_sr / in_sr))])
        for likelihood, values in hat.items():
            res = bump_hunt(mjj, sr, likelihood=likelihood, compute_limit=False)
            assert res.fit_info["likelihood"] == likelihood
            values.append(res.mu_hat)
            errs[likelihood].append(res.mu_err)
    joint, sr_only = np.mean(hat["joint"]), np.mean(hat["signal_region"])
    # the mean of 8 toys is known to sigma_mu / sqrt(8)
    assert abs(joint - mu_sr) < 3 * np.mean(errs["joint"]) / np.sqrt(8)
    assert sr_only < mu_sr - 2 * np.mean(errs["signal_region"]) / np.sqrt(8)
    assert abs(joint - mu_sr) < abs(sr_only - mu_sr)
