"""Bump-hunt figures: the fit of one window (plot_fit) and the scan over windows
(plot_scan_significance, plot_scan_limits)."""

from __future__ import annotations

import numpy as np
import pytest

from dijet_truth import SR, sample_mjj
from sideband.bumphunt import bump_hunt
from sideband.errors import InputError
from sideband.evaluation.plots import plot_fit, plot_scan_limits, plot_scan_significance

#: a falling dijet-like spectrum, (p1, p2, p3) of `dijet_truth`
SHAPE = (10.0, 6.0, 0.0)


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(1)
    mjj = np.concatenate([sample_mjj(rng, 1e4, SHAPE), rng.normal(3500.0, 80.0, 120)])
    return bump_hunt(mjj, SR, compute_limit=False)


def make_rows() -> list[dict]:
    """Two efficiencies x 4 windows; one failed row and one without limits at eff 0.1."""
    rows = []
    for eff in (0.1, 0.01):
        for k, centre in enumerate((3300.0, 3500.0, 3700.0, 3900.0)):
            failed = eff == 0.1 and k == 1
            base = 20.0 + 5.0 * k
            rows.append({
                "center_gev": centre, "sr_low_gev": centre - 200.0, "sr_high_gev": centre + 200.0,
                "efficiency": eff, "status": "failed" if failed else "ok",
                "z": None if failed else 0.5 * k, "z_signed": None if failed else 0.5 * k - 0.7,
                "upper_limit": None if failed or (eff == 0.1 and k == 2) else base + 3.0,
                "expected_limits": None if failed or (eff == 0.1 and k == 2)
                else [base - 8, base - 4, base, base + 5, base + 11],
            })  # fmt: skip
    return rows[::-1]  # not in centre order


def _fills(ax) -> list:
    return [c for c in ax.collections if type(c).__name__.endswith("PolyCollection")]


def test_plot_fit_draws_data_fit_and_pulls(result, tmp_path):
    info = result.fit_info
    n_bins = len(info["counts"])
    fig = plot_fit(result, tmp_path / "fit" / "window.png")
    assert (tmp_path / "fit" / "window.png").stat().st_size > 0
    assert not list((tmp_path / "fit").glob("*.tmp"))
    ax, ax_pull = fig.axes
    data = ax.containers[0]  # the error bars
    np.testing.assert_allclose(data.lines[0].get_ydata(), info["counts"])
    assert len(data.lines[0].get_xdata()) == n_bins
    steps = [p for p in ax.patches if type(p).__name__ == "StepPatch"]
    assert len(steps) == 3  # band, background, post-fit
    post = steps[2].get_data()
    np.testing.assert_allclose(
        post.values, info["background"][info["sr_bins"]] + result.mu_hat * info["signal_shape"]
    )
    bars = ax_pull.containers[0]
    assert len(bars) == n_bins
    sigma = np.sqrt(info["background"] + info["background_err"] ** 2)
    np.testing.assert_allclose(
        [b.get_height() for b in bars], (info["counts"] - info["background"]) / sigma
    )


def test_plot_fit_with_variable_bins_draws_per_gev(tmp_path):
    rng = np.random.default_rng(2)
    res = bump_hunt(sample_mjj(rng, 1e4, SHAPE), SR, bin_resolution=0.05, compute_limit=False)
    fig = plot_fit(res, tmp_path / "fit.pdf")
    ax = fig.axes[0]
    widths = np.diff(res.fit_info["edges"])
    np.testing.assert_allclose(
        ax.containers[0].lines[0].get_ydata(), res.fit_info["counts"] / widths
    )
    assert ax.get_ylabel() == "events / GeV"
    assert (tmp_path / "fit.pdf").exists()


def test_plot_fit_rejects_a_result_without_fit_info(result):
    with pytest.raises(InputError, match="fit_info"):
        plot_fit(result._replace(fit_info={"edges": [1.0, 2.0]}))


def test_plot_scan_significance_one_line_per_efficiency(tmp_path):
    rows = make_rows()
    fig = plot_scan_significance(rows, tmp_path / "z.png", global_z={0.01: 2.5})
    assert (tmp_path / "z.png").exists()
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    eff_01 = lines[r"$\epsilon$ = 0.1"]
    np.testing.assert_allclose(eff_01.get_xdata(), [3300.0, 3700.0, 3900.0])  # failed skipped
    np.testing.assert_allclose(eff_01.get_ydata(), [-0.7, 0.3, 0.8])  # z_signed preferred
    assert len(lines[r"$\epsilon$ = 0.01"].get_xdata()) == 4
    # two data lines, the zero line and one global reference (in the legend)
    assert len(ax.get_lines()) == 4
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("global" in t and "2.50" in t for t in legend)
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == [0.0, 2.5]


def test_plot_scan_significance_falls_back_to_z():
    rows = [dict(r, z_signed=None) for r in make_rows()]
    ax = plot_scan_significance(rows).axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == r"$\epsilon$ = 0.1")
    np.testing.assert_allclose(line.get_ydata(), [0.0, 1.0, 1.5])


def test_plot_scan_limits_observed_expected_and_bands(tmp_path):
    rows = make_rows()
    fig = plot_scan_limits(rows, tmp_path / "limits.svg")  # default: the smallest efficiency
    assert (tmp_path / "limits.svg").exists()
    ax = fig.axes[0]
    obs = next(ln for ln in ax.get_lines() if ln.get_label() == "observed")
    np.testing.assert_allclose(obs.get_xdata(), [3300.0, 3500.0, 3700.0, 3900.0])
    np.testing.assert_allclose(obs.get_ydata(), [23.0, 28.0, 33.0, 38.0])
    exp = next(ln for ln in ax.get_lines() if ln.get_label() == "expected (median)")
    np.testing.assert_allclose(exp.get_ydata(), [20.0, 25.0, 30.0, 35.0])
    assert len(_fills(ax)) == 2  # +-1 and +-2 sigma
    # efficiency 0.1: the failed row and the row without limits are skipped
    ax = plot_scan_limits(rows, efficiency=0.1).axes[0]
    obs = next(ln for ln in ax.get_lines() if ln.get_label() == "observed")
    np.testing.assert_allclose(obs.get_xdata(), [3300.0, 3900.0])


def test_scan_plots_reject_empty_or_unusable_rows():
    with pytest.raises(InputError, match="non-empty"):
        plot_scan_significance([])
    with pytest.raises(InputError, match="non-empty"):
        plot_scan_limits([])
    failed = [dict(r, status="failed") for r in make_rows()]
    with pytest.raises(InputError, match="no row"):
        plot_scan_significance(failed)
    with pytest.raises(InputError, match="no row"):
        plot_scan_limits(failed)
    with pytest.raises(InputError, match="no row"):
        plot_scan_limits(make_rows(), efficiency=0.5)
    with pytest.raises(InputError, match="lacks"):
        plot_scan_significance([{"center_gev": 3500.0, "status": "ok", "z": 1.0}])
