"""Tests of sideband.evaluation: ROC, AUC, SIC (cutoff rule, interpolation) and plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sideband.errors import InputError
from sideband.evaluation import (
    SicCurve,
    auc,
    max_sic,
    plot_mjj,
    plot_roc,
    plot_scores,
    plot_sic,
    roc_curve,
    sic_at,
    sic_curve,
    summary,
)
from sideband.regions import SignalRegion

# Hand-computed example. Sorted by score: labels 1 0 1 1 0 0 1 0 (4 signal, 4 background).
# ROC points (fpr, tpr): (0,0) (0,.25) (.25,.25) (.25,.5) (.25,.75) (.5,.75) (.75,.75) (.75,1) (1,1)
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
HAND_Y = np.array([1, 0, 1, 1, 0, 0, 1, 0])


def mann_whitney_sigma(n1: int, n2: int) -> float:
    return float(np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))


@pytest.fixture(scope="module")
def random_classifier():
    rng = np.random.default_rng(0)
    n = 20_000
    y = np.r_[np.ones(n, np.int64), np.zeros(n, np.int64)]
    return y, rng.uniform(size=2 * n)


@pytest.fixture(scope="module")
def perfect_classifier():
    rng = np.random.default_rng(1)
    n_s, n_b = 300, 5000
    y = np.r_[np.ones(n_s, np.int64), np.zeros(n_b, np.int64)]
    scores = np.r_[rng.uniform(2, 3, n_s), rng.uniform(0, 1, n_b)]
    return y, scores


def test_roc_curve_hand_example():
    roc = roc_curve(HAND_Y, HAND_SCORES)
    np.testing.assert_allclose(roc.fpr, [0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1])
    np.testing.assert_allclose(roc.tpr, [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1, 1])
    assert roc.thresholds[0] == np.inf
    assert (np.diff(roc.thresholds) < 0).all()
    assert (roc.n_signal, roc.n_background) == (4, 4)
    # AUC by counting pairs: signal above background in 11 of 16 pairs
    assert auc(HAND_Y, HAND_SCORES) == pytest.approx(11 / 16)


def test_roc_curve_weights_equal_duplicated_rows():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    w = rng.integers(1, 4, 200)
    weighted = roc_curve(y, s, sample_weight=w)
    dup = roc_curve(np.repeat(y, w), np.repeat(s, w))
    np.testing.assert_allclose(weighted.fpr, dup.fpr)
    np.testing.assert_allclose(weighted.tpr, dup.tpr)


def test_sic_at_hand_interpolation():
    # distinct fpr > 0 with the best tpr: (.25, .75) (.5, .75) (.75, 1) (1, 1)
    assert sic_at(HAND_Y, HAND_SCORES, 0.25) == pytest.approx(0.75 / 0.5)
    assert sic_at(HAND_Y, HAND_SCORES, 0.5) == pytest.approx(0.75 / math.sqrt(0.5))
    # between (.5, .75) and (.75, 1), linear in log eps_B
    frac = math.log(0.6 / 0.5) / math.log(0.75 / 0.5)
    expected = (0.75 + 0.25 * frac) / math.sqrt(0.6)
    assert sic_at(HAND_Y, HAND_SCORES, 0.6) == pytest.approx(expected, rel=1e-12)
    assert sic_at(HAND_Y, HAND_SCORES, 1.0) == pytest.approx(1.0)
    with pytest.raises(InputError, match="smallest non-zero"):
        sic_at(HAND_Y, HAND_SCORES, 0.1)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        sic_at(HAND_Y, HAND_SCORES, 0.0)


def test_sic_curve_hand_example_drops_zero_fpr_and_marks_cutoff():
    sic = sic_curve(HAND_Y, HAND_SCORES, min_background=2)
    assert isinstance(sic, SicCurve)
    assert (sic.fpr > 0).all()
    np.testing.assert_allclose(sic.fpr, [0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1])
    np.testing.assert_array_equal(sic.n_background_selected, [1, 1, 1, 2, 3, 3, 4])
    np.testing.assert_array_equal(sic.passes, sic.n_background_selected >= 2)
    np.testing.assert_allclose(sic.sic, sic.tpr / np.sqrt(sic.fpr))
    # max over passing points: (.5, .75) -> 1.0607, (.75, 1) -> 1.1547, (1, 1) -> 1
    assert sic.max_sic == pytest.approx(1 / math.sqrt(0.75))
    assert max_sic(HAND_Y, HAND_SCORES, min_background=1) == pytest.approx(1.5)
    assert "2 background" in sic.rule
    assert sic.min_background == 2


def test_perfect_classifier(perfect_classifier):
    y, s = perfect_classifier
    assert auc(y, s) == 1.0
    sic = sic_curve(y, s)
    assert np.isfinite(sic.sic).all()
    assert (sic.fpr > 0).all()
    # all signal kept, the cut keeps exactly 25 background events at best: sqrt(N_B / 25)
    assert sic.max_sic == pytest.approx(math.sqrt(5000 / 25))
    # at eps_B = 1e-2 (50 background events) every signal event passes
    assert sic_at(y, s, 1e-2) == pytest.approx(1 / math.sqrt(1e-2))


def test_random_classifier(random_classifier):
    y, s = random_classifier
    n = 20_000
    assert abs(auc(y, s) - 0.5) < 3 * mann_whitney_sigma(n, n)
    # random: eps_S = eps_B, so SIC = sqrt(eps_B)
    for eps, tol in ((0.25, 0.02), (1e-2, 0.02)):
        assert sic_at(y, s, eps) == pytest.approx(math.sqrt(eps), abs=tol)
    sic = sic_curve(y, s)
    assert np.isfinite(sic.sic).all()
    # SIC of a random score stays near sqrt(eps_B) once there is enough background
    stat = sic.passes & (sic.n_background_selected > 400)
    np.testing.assert_allclose(sic.sic[stat], np.sqrt(sic.fpr[stat]), atol=0.03)
    assert sic.max_sic < 1.1


def test_max_sic_cutoff_leaving_no_points_is_input_error():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(50, np.int64), np.zeros(10, np.int64)]
    s = rng.normal(size=60)
    with pytest.raises(InputError, match="25 background"):
        max_sic(y, s)
    with pytest.raises(InputError, match="10 background"):
        _ = sic_curve(y, s).max_sic
    out = summary(y, s)
    assert math.isnan(out["max_sic"])
    assert math.isnan(out["sic_at_1e-03"])


def test_summary_keys_and_values(random_classifier):
    y, s = random_classifier
    out = summary(y, s)
    assert set(out) == {
        "auc",
        "sic_at_1e-04",
        "sic_at_1e-03",
        "sic_at_1e-02",
        "max_sic",
        "max_sic_eps_b",
        "n_signal",
        "n_background",
        "min_background",
        "cutoff_rule",
    }
    assert out["auc"] == pytest.approx(auc(y, s))
    assert out["sic_at_1e-02"] == pytest.approx(sic_at(y, s, 1e-2))
    assert out["max_sic"] == pytest.approx(max_sic(y, s))
    assert out["max_sic_eps_b"] * 20_000 >= 25
    assert (out["n_signal"], out["n_background"], out["min_background"]) == (20_000, 20_000, 25)
    assert "25" in out["cutoff_rule"]


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], "0 .*and 1"),
        ([0, 1, -1, 1], [0.1, 0.2, 0.3, 0.4], "0 .*and 1"),
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "0 background"),
        ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], "0 signal"),
        ([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], "NaN"),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3], "one label per scored event"),
    ],
)
@pytest.mark.parametrize("func", [roc_curve, sic_curve, auc, max_sic, sic_at, summary])
def test_bad_input_is_input_error(func, y, s, match):
    with pytest.raises(InputError, match=match):
        func(np.array(y), np.array(s))


# --------------------------------------------------------------------------- plots


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_files(tmp_path, perfect_classifier):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(4)
    y = np.r_[np.ones(500, np.int64), np.zeros(3000, np.int64)]
    s = rng.normal(size=3500) + 1.5 * y
    fig = plot_roc(y, s, tmp_path / "roc.png")
    assert isinstance(fig, Figure)
    assert _is_png(tmp_path / "roc.png")
    assert isinstance(plot_sic(y, s, tmp_path / "sub" / "sic.pdf"), Figure)
    assert (tmp_path / "sub" / "sic.pdf").read_bytes()[:4] == b"%PDF"
    plot_sic(*perfect_classifier, tmp_path / "sic_perfect.png")
    plot_scores(s, y, path=tmp_path / "scores.png")
    plot_scores(s, path=tmp_path / "scores_unlabelled.png")
    mjj = 2500.0 + rng.exponential(600.0, size=20_000)
    edges = np.linspace(2500.0, 6000.0, 36)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = plot_mjj(
        mjj,
        mjj[:2000],
        bins=edges,
        sr=SignalRegion(3300.0, 3700.0),
        fit=(centres, 2000 * np.diff(edges) / 600.0 * np.exp(-(centres - 2500.0) / 600.0)),
        path=tmp_path / "mjj.png",
    )
    assert any("m_{JJ}" in ax.get_xlabel() for ax in fig.axes)
    assert fig.axes[0].get_yscale() == "log"
    plot_mjj(mjj, mjj[:10], bins=20, sr=(3300.0, 3700.0), path=tmp_path / "mjj_int.png")
    for name in ("roc.png", "scores.png", "scores_unlabelled.png", "mjj.png", "mjj_int.png"):
        assert _is_png(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
    # atomic writes leave no temporary files behind
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_plot_returns_figure_without_path_and_validates(tmp_path):
    y = np.array([0, 1, 0, 1] * 10)
    s = np.linspace(0, 1, 40)
    fig = plot_roc(y, s)
    assert len(fig.axes) == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="suffix"):
        plot_roc(y, s, tmp_path / "noext")
    with pytest.raises(InputError, match="increasing"):
        plot_mjj([3000.0, 3500.0], [3500.0], bins=[3000.0, 2000.0])
    with pytest.raises(InputError, match="bin centres"):
        plot_mjj([3000.0, 3500.0], [3500.0], bins=4, fit=([1.0, 2.0], [1.0]))
    with pytest.raises(InputError, match="0/1"):
        plot_scores(s, np.full(40, 2))
