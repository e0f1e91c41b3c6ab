"""Tests of sideband.bumphunt: binning, the dijet sideband fit, the pyhf model and the bump hunt.

Statistics are checked on toys drawn from a known dijet spectrum (about 1,500 background events
in the SR 3300-3700 GeV for 10-20k events over 2.5-6 TeV, like a cut LHCO m_JJ spectrum).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy import integrate, stats

from dijet_truth import (
    SQRT_S,
    SR,
    TRUE_SHAPE,
    sample_mjj,
    sideband_binning,
    true_counts,
)
from sideband.bumphunt import (
    DijetFit,
    build_model,
    bump_hunt,
    fit_dijet,
    mass_binning,
    save_workspace,
    workspace_statistics,
)
from sideband.bumphunt.dijet import _basis, _Objective
from sideband.errors import FitError, InputError
from sideband.regions import SignalRegion


@pytest.fixture(scope="module")
def binning() -> tuple[np.ndarray, np.ndarray]:
    return sideband_binning()


# -- binning -----------------------------------------------------------------------------------


def test_mass_binning_holds_sr_edges_and_stays_in_range():
    edges = mass_binning(2513.0, 5987.0, SR, width_gev=100.0)
    assert np.any(np.isclose(edges, 3300.0, atol=1e-9))
    assert np.any(np.isclose(edges, 3700.0, atol=1e-9))
    assert edges[0] >= 2513.0
    assert edges[-1] <= 5987.0
    assert edges[0] == pytest.approx(2600.0)
    assert edges[-1] == pytest.approx(5900.0)
    np.testing.assert_allclose(np.diff(edges), 100.0)
    # an SR not a multiple of the width: equal bins inside, exact edges
    odd = mass_binning(2500.0, 6000.0, SignalRegion(3300.0, 3650.0), width_gev=100.0)
    inner = odd[(odd >= 3300.0 - 1e-9) & (odd <= 3650.0 + 1e-9)]
    np.testing.assert_allclose(inner, np.linspace(3300.0, 3650.0, 5))
    with pytest.raises(InputError, match="not inside the histogram range"):
        mass_binning(2500.0, 6000.0, SignalRegion(5800.0, 6200.0))


# -- the dijet fit -----------------------------------------------------------------------------


def test_fit_recovers_known_parameters_from_asimov(binning):
    edges, sb = binning
    counts, log_p0 = true_counts(edges, 1e6)
    fit = fit_dijet(counts, edges, mask=sb, n_params=4)
    assert isinstance(fit, DijetFit)
    assert fit.n_params == 4
    assert fit.converged
    np.testing.assert_allclose(fit.coef, [log_p0, *TRUE_SHAPE], rtol=1e-5, atol=1e-5)
    assert fit.params[0] == pytest.approx(np.exp(log_p0), rel=1e-4)
    assert fit.deviance < 1e-6
    assert fit.gof_pvalue > 0.999
    assert fit.ndof == sb.sum() - 4
    # the SR, not fitted, is predicted from the sidebands: truth within a tiny fraction of its error
    pred = fit.predict(edges)
    sr = ~sb
    err_sr = np.sqrt(fit.predict_covariance(edges)[np.ix_(sr, sr)].sum())
    assert abs(pred[sr].sum() - counts[sr].sum()) < 1e-3 * err_sr
    np.testing.assert_allclose(pred, counts, rtol=1e-6)


def test_prediction_integrates_the_density_over_each_bin(binning):
    edges, sb = binning
    counts, _ = true_counts(edges, 2e4)
    fit = fit_dijet(counts, edges, mask=sb, n_params=3)
    wide = fit.predict(np.array([2500.0, 3100.0, 4000.0]))
    fine = fit.predict(np.linspace(2500.0, 4000.0, 151))
    assert wide[0] == pytest.approx(fine[:60].sum(), rel=1e-7)  # 5 nodes on 600 GeV
    assert wide[1] == pytest.approx(fine[60:].sum(), rel=1e-7)

    def dens(m):
        return np.exp(_basis(np.array(m / SQRT_S), 3) @ fit.coef) / SQRT_S

    assert wide[0] == pytest.approx(integrate.quad(dens, 2500.0, 3100.0)[0], rel=1e-7)


def test_deviance_gradient_and_hessian_match_finite_differences(binning):
    edges, sb = binning
    rng = np.random.default_rng(1)
    counts = rng.poisson(true_counts(edges, 5e3)[0]).astype(float)[sb]
    x_edges = edges / SQRT_S
    lo, hi = x_edges[:-1][sb, None], x_edges[1:][sb, None]
    nodes, weights = np.polynomial.legendre.leggauss(5)
    xk = lo + 0.5 * (hi - lo) * (nodes + 1.0)
    wk = 0.5 * (hi - lo) * weights
    ub = _basis(xk, 4) / np.array([1.0, 0.5, 1.5, 2.0])  # any fixed linear coordinates
    obj = _Objective(counts, ub, wk)
    beta = np.array([20.0, 18.0, 4.0, 0.1]) + rng.normal(0, 0.01, 4)
    value, grad, hess = obj.all(beta)
    assert np.isfinite(value)
    h = 1e-6
    num_grad = np.array(
        [(obj.value(beta + h * e) - obj.value(beta - h * e)) / (2 * h) for e in np.eye(4)]
    )
    np.testing.assert_allclose(grad, num_grad, rtol=1e-4, atol=1e-3)
    num_hess = np.array(
        [(obj.all(beta + h * e)[1] - obj.all(beta - h * e)[1]) / (2 * h) for e in np.eye(4)]
    )
    np.testing.assert_allclose(hess, num_hess, rtol=1e-4, atol=1e-2 * np.abs(hess).max() * 1e-3)


def test_covariance_matches_toy_spread(binning):
    edges, sb = binning
    truth, _ = true_counts(edges, 2e4)
    sr = ~sb
    asimov = fit_dijet(truth, edges, mask=sb, n_params=4)
    err_sr = np.sqrt(asimov.predict_covariance(edges)[np.ix_(sr, sr)].sum())
    err_p1 = np.sqrt(asimov.cov[1, 1])
    rng = np.random.default_rng(2024)
    preds, p1, pulls = [], [], []
    for _ in range(30):
        fit = fit_dijet(rng.poisson(truth).astype(float), edges, mask=sb, n_params=4)
        pred = fit.predict(edges)[sr].sum()
        own_err = np.sqrt(fit.predict_covariance(edges)[np.ix_(sr, sr)].sum())
        preds.append(pred)
        p1.append(fit.params[1])
        pulls.append((pred - truth[sr].sum()) / own_err)
    assert 0.6 < np.std(preds, ddof=1) / err_sr < 1.5
    assert 0.6 < np.std(p1, ddof=1) / err_p1 < 1.5
    assert abs(np.mean(pulls)) < 0.6
    assert np.max(np.abs(pulls)) < 4.0


def test_variations_reproduce_the_prediction_covariance(binning):
    edges, sb = binning
    rng = np.random.default_rng(5)
    fit = fit_dijet(rng.poisson(true_counts(edges, 2e4)[0]).astype(float), edges, mask=sb)
    nominal = fit.predict(edges)
    var = fit.predict_variations(edges)
    assert var.shape == (fit.n_params, 2, len(nominal))
    up = var[:, 1] - nominal
    np.testing.assert_allclose(var[:, 0], nominal - up, rtol=1e-12)
    cov = fit.predict_covariance(edges)
    np.testing.assert_allclose(up.T @ up, cov, rtol=1e-7, atol=1e-9 * np.abs(cov).max())
    # the exact (non-linear) shifts agree with the linear ones to first order
    exact = fit.predict_variations(edges, linear=False)
    np.testing.assert_allclose(exact[:, 1] - nominal, up, atol=0.05 * np.abs(up).max())


def test_low_statistics_falls_back_to_fewer_parameters(binning, caplog):
    edges, sb = binning
    rng = np.random.default_rng(3)
    counts = rng.poisson(true_counts(edges, 100.0)[0]).astype(float)
    with caplog.at_level(logging.WARNING, logger="sideband.bumphunt.dijet"):
        fit = fit_dijet(counts, edges, mask=sb, n_params=4)
    assert fit.n_params == 3
    assert fit.n_params_requested == 4
    assert "support 3 parameters" in caplog.text
    assert np.all(np.isfinite(fit.cov))


def test_fit_errors(binning):
    edges, sb = binning
    counts, _ = true_counts(edges, 2e4)
    few = np.where(sb, 0.0, counts)
    few[0] = 5.0  # 5 events in the sidebands
    with pytest.raises(FitError, match="sideband bins hold 5 events"):
        fit_dijet(few, edges, mask=sb)
    with pytest.raises(InputError, match="finite and non-negative"):
        fit_dijet(np.where(np.arange(len(counts)) == 3, np.nan, counts), edges, mask=sb)
    with pytest.raises(InputError, match="mask has shape"):
        fit_dijet(counts, edges, mask=sb[:-1])
    with pytest.raises(InputError, match="n_params"):
        fit_dijet(counts, edges, mask=sb, n_params=6)
    with pytest.raises(InputError, match="sqrt"):
        fit_dijet(counts, edges, mask=sb, sqrt_s_gev=5000.0)


# -- the pyhf model ----------------------------------------------------------------------------


def test_build_model_validates_and_floors():
    pytest.importorskip("pyhf")
    bkg = np.array([100.0, 80.0, 0.0])
    var = np.array([[[95.0, 76.0, -1.0], [105.0, 84.0, 1.0]]])
    sig = np.array([0.2, 0.5, 0.3])
    obs = np.array([102.0, 90.0, 1.0])
    model, data, spec = build_model(bkg, var, sig, obs)
    assert "metadata" not in spec
    assert model.config.poi_name == "mu"
    assert spec["channels"][0]["samples"][1]["data"][2] > 0  # floored, not zero
    lo, hi = model.config.suggested_bounds()[model.config.poi_index]
    assert lo < 0 < 100 < hi
    np.testing.assert_allclose(data[:3], obs)
    with pytest.raises(InputError, match="NaN"):
        build_model(np.array([1.0, np.nan, 2.0]), var, sig, obs)
    with pytest.raises(InputError, match="negative"):
        build_model(np.array([1.0, -1.0, 2.0]), var, sig, obs)
    with pytest.raises(InputError, match="shape"):
        build_model(bkg, var, sig[:2], obs)
    with pytest.raises(InputError, match="signal_shape"):
        build_model(bkg, var, np.zeros(3), obs)


# -- the bump hunt -----------------------------------------------------------------------------


def test_background_only_toys_are_calibrated():
    """Signed Z = sign(mu_hat) sqrt(q0) over 50 toys: mean ~0, std ~1; |Z| < 2 in most."""
    rng = np.random.default_rng(11)
    z_signed, z = [], []
    for _ in range(50):
        res = bump_hunt(sample_mjj(rng, 1e4), SR, compute_limit=False)
        z_signed.append(res.fit_info["z_signed"])
        z.append(res.z)
        # pyhf's q0 p-value and our own profile fits agree
        assert res.z == pytest.approx(max(res.fit_info["z_signed"], 0.0), abs=2e-2)
    z_signed = np.asarray(z_signed)
    assert abs(z_signed.mean()) < 0.4
    assert 0.7 < z_signed.std(ddof=1) < 1.4
    assert np.mean(np.abs(z_signed) < 2) >= 0.85
    assert min(z) >= 0.0


def test_injected_signal_is_found_and_limits_are_ordered(tmp_path):
    import pyhf

    rng = np.random.default_rng(7)
    background = sample_mjj(rng, 2e4)  # about 1,530 events in the SR
    signal = rng.normal(3500.0, 105.0, 210)  # S / sqrt(B) ~ 5 in the SR
    n_sig_sr = int(SR.contains(signal).sum())
    before = pyhf.get_backend()
    pyhf.set_backend("numpy", "scipy")
    prev_tensorlib, prev_optimizer = pyhf.get_backend()
    try:
        res = bump_hunt(np.concatenate([background, signal]), SR, signal_width_gev=105.0)
        # the previous backend and optimizer are restored
        assert pyhf.get_backend()[1] is prev_optimizer
        assert pyhf.get_backend()[0] is prev_tensorlib
    finally:
        pyhf.set_backend(*before)
    assert res.z > 3.0
    assert res.p0 == pytest.approx(stats.norm.sf(res.z), rel=1e-6)
    assert abs(res.mu_hat - n_sig_sr) < 2.0 * res.mu_err
    assert res.mu_err > 0
    exp = np.asarray(res.expected_limits)
    assert exp.shape == (5,)
    assert np.all(np.diff(exp) > 0)
    assert res.upper_limit > res.mu_hat  # an excess: the limit sits above mu_hat
    assert res.upper_limit > exp[2]
    info = res.fit_info
    assert len(info["edges"]) == len(info["counts"]) + 1 == len(info["background"]) + 1
    assert info["sr_bins"].sum() == 4
    assert info["fit_gof_pvalue"] > 1e-3
    assert info["n_sr_observed"] == pytest.approx(
        np.sum(SR.contains(np.concatenate([background, signal])))
    )

    # the saved workspace loads in pyhf and gives the same p0 via hypotest directly
    path = save_workspace(tmp_path / "ws" / "workspace.json", res.workspace)
    spec = json.loads(path.read_text())
    assert "metadata" not in spec
    ws = pyhf.Workspace(spec)
    model = ws.model()
    p0 = float(pyhf.infer.hypotest(0.0, ws.data(model), model, test_stat="q0"))
    assert stats.norm.isf(p0) == pytest.approx(res.z, abs=0.02)
    assert not list(tmp_path.glob("ws/*.tmp"))

    # workspace_statistics recomputes the bump hunt's numbers from the file alone
    stat = workspace_statistics(path)
    assert stat["z"] == pytest.approx(res.z, rel=1e-6)
    assert stat["mu_hat"] == pytest.approx(res.mu_hat, rel=1e-4)
    assert stat["upper_limit"] == pytest.approx(res.upper_limit, rel=1e-3)
    np.testing.assert_allclose(stat["expected_limits"], res.expected_limits, rtol=1e-3)
    assert workspace_statistics(spec, compute_limit=False)["upper_limit"] is None
    with pytest.raises(InputError, match="not a valid pyhf workspace"):
        workspace_statistics({"channels": []})
    with pytest.raises(InputError, match="cannot read the pyhf workspace"):
        workspace_statistics(tmp_path / "missing.json")


@pytest.mark.slow
def test_limits_match_pyhf_toms748():
    """Our grid + PCHIP limits against pyhf's toms748_scan on the same model (CLs, qtilde)."""
    import pyhf

    rng = np.random.default_rng(21)
    res = bump_hunt(sample_mjj(rng, 1e4), SR)
    model = pyhf.Workspace(res.workspace).model()
    data = pyhf.Workspace(res.workspace).data(model)
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (0.0, bounds[model.config.poi_index][1])
    before = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=0.01))
    try:
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
            data, model, 0.5 * res.mu_err, 6 * res.mu_err, rtol=1e-3, par_bounds=bounds,
            test_stat="qtilde",
        )  # fmt: skip
    finally:
        pyhf.set_backend(*before)
    tol = 0.01 * res.mu_err
    assert res.upper_limit == pytest.approx(float(obs), abs=tol)
    np.testing.assert_allclose(res.expected_limits, [float(e) for e in exp], atol=tol)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("nan", InputError, "NaN"),
        ("tev", InputError, "TeV"),
        ("sr_outside", InputError, "outside"),
        ("empty_sr", InputError, "holds 0 events"),
        ("empty_sideband", InputError, "sidebands .* hold 0 events"),
        ("few_sideband", FitError, "sideband bins hold"),
        ("edges_without_sr", InputError, "not a bin edge"),
        ("empty", InputError, "empty"),
    ],
)
def test_bump_hunt_bad_inputs(case, error, match):
    rng = np.random.default_rng(0)
    mjj = sample_mjj(rng, 3000)
    kwargs = {}
    sr = SR
    if case == "nan":
        mjj[[3, 7]] = np.nan
    elif case == "tev":
        mjj = mjj / 1000.0
    elif case == "sr_outside":
        sr = SignalRegion(7000.0, 7400.0)
    elif case == "empty_sr":
        mjj = mjj[~SR.contains(mjj)]
    elif case == "empty_sideband":
        mjj = rng.uniform(3310.0, 3690.0, 500)
        kwargs["edges"] = mass_binning(2500.0, 6000.0, SR)
    elif case == "few_sideband":
        mjj = np.concatenate([rng.uniform(3310.0, 3690.0, 500), [2600.0, 4000.0, 5000.0]])
    elif case == "edges_without_sr":
        kwargs["edges"] = np.arange(2550.0, 6000.0, 100.0)
    elif case == "empty":
        mjj = np.array([])
    with pytest.raises(error, match=match):
        bump_hunt(mjj, sr, compute_limit=False, **kwargs)
