"""Calibration of the fit stage (`bump_hunt`) on pseudo-experiments from an LHCO-like dijet truth.

Truth: the 4-parameter dijet function fitted (`background_spectrum`, 10 GeV bins, no SR masked) to
the QCD m_JJ of ``../shared/data/lhco_like/events_lhco_like.features.h5`` (label 0) after a random
10% selection (so the yields look like an after-cut spectrum), over 3000-5000 GeV. The analysis:
SR 3300-3700 GeV, sidebands 3000-3300 and 3700-5000 GeV, 100 GeV bins (and one ensemble with
bins following a 5% resolution), default 4-parameter sideband fit, asymptotic q0.

Sections (each written to the JSON when done; a rerun skips the sections already there with the
same settings, ``--force`` redoes them):

* ``background_only``: `--n-bkg` toys per binning: mean and std of the signed Z (target 0 and
  1), KS test of 2 p0 of the toys with mu_hat > 0 against U(0, 1) (target p > 0.01), fractions
  with Z > 2, 3; the mean mu_err sets the injected yields below.
* ``recovery``: injected signal at mu = 0, 1, 2, 3, 5 x sigma_mu (events in the SR) of two kinds:
  ``model`` (what `bump_hunt` fits: the 6%-wide Gaussian at 3500 GeV truncated to the SR) and
  ``gaussian`` (the same Gaussian untruncated; its yield is set so mu events fall in the SR, the
  tails leak into the sidebands): mean mu_hat, its spread, mean mu_err, coverage of
  |mu_hat - mu| < 2 mu_err, mean Z.
* ``cost``: seconds per `bump_hunt` call without limits (all calls above) and with limits.
* ``toys_calculator``: p0 from pseudo-experiments against the asymptotic p0 on a few data sets.
* ``global``: `max_local_significance_toys` over 5 overlapping 400 GeV windows (3100-3500 ...
  3500-3900 GeV): the trials factor p_global / p_local at Z_local = 2 and 3.
* ``signal_fractions``: for each signal kind, the fraction of the injected signal inside the SR,
  in the sideband bins (3000-3300 and 3700-5000 GeV, and per 100 GeV bin) and outside the fit
  range (analytic for ``model`` and ``gaussian``, counted on the sample for ``lhco_like``).
* ``recovery_lhco_like``: the ``recovery`` toys (same mu values, same seeds, so the same
  background toys) with a realistic signal: ``lhco_like``, m_JJ drawn with replacement from the
  2,354 W'(3.5 TeV) events of ``data/lhco_like_signal.features.h5`` (about 63% in the SR, a
  low-side FSR tail), Poisson(mu / f_SR) events in all so that mu fall in the SR on average;
  also mu_hat / mu and the mean injected counts in the SR and the sideband bins.

The joint likelihood (``bump_hunt(..., likelihood="joint")``: every bin in the pyhf model, the
background variations widened, the Gaussian signal over all bins), after the sections above:

* ``background_only_joint``: the 100 GeV ``background_only`` toys (same seed, the same toys)
  with the joint likelihood, the same summary; each toy is also fitted with the SR-only model
  (``paired``: correlations and differences toy by toy, and a check that the SR-only signed Z
  reproduce the stored ``background_only`` ones).
* ``recovery_joint``: the ``recovery`` / ``recovery_lhco_like`` toys (same mu values, same
  seeds, the same draw order: the same toys) for ``model``, ``gaussian`` and ``lhco_like`` with
  the joint likelihood, the same summary; ``paired``: the SR-only fit of the same toys (its mean
  mu_hat reproduces the stored sections), mean joint - SR-only mu_hat with its error,
  correlations, mean mu_err ratio. Only the mu = 0 toys are shared between kinds.
* ``cost_joint``: seconds per joint call without limits (the joint calls above; the SR-only
  calls of the pairing alongside, same conditions) and with limits (the ``cost`` toys, both
  likelihoods, with the mean observed and expected limits).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bumphunt_calibration.py            # ~23 min, 1 core
    python benchmarks/bumphunt_calibration.py --quick --out /tmp/q          # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from sideband.bumphunt import (
    background_spectrum,
    bump_hunt,
    global_pvalue,
    max_local_significance_toys,
    pseudo_mjj,
)
from sideband.errors import SidebandError
from sideband.events import read_features
from sideband.regions import SignalRegion
from sideband.report import package_versions, write_json

log = logging.getLogger("bumphunt_calibration")
HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "lhco_like" / "events_lhco_like.features.h5"
RANGE_GEV = (3000.0, 5000.0)
SR = SignalRegion(3300.0, 3700.0, *RANGE_GEV)
SIGNAL_CENTER_GEV, SIGNAL_WIDTH_GEV = 3500.0, 0.06 * 3500.0
WINDOWS = [
    SignalRegion(lo, lo + 400.0, *RANGE_GEV) for lo in (3100.0, 3200.0, 3300.0, 3400.0, 3500.0)
]
SIGNAL_DATA = HERE.parent / "data" / "lhco_like_signal.features.h5"  # W'(3.5 TeV), repo data
MU_MULTIPLES = (0.0, 1.0, 2.0, 3.0, 5.0)
FRACTION_BIN_WIDTH_GEV = 100.0  # the width100 binning: SR bins 3300-3700, sideband bins outside
BINNINGS = {"width100": {"bin_width_gev": 100.0}, "resolution0.05": {"bin_resolution": 0.05}}


def load_truth(seed: int, fraction: float) -> tuple[Any, dict[str, Any]]:
    """The background truth and a summary of the fit behind it."""
    table = read_features(DATA)
    qcd = table.mjj[table.label == 0]
    keep = np.random.default_rng(seed).random(qcd.size) < fraction
    mjj = qcd[keep]
    mjj = mjj[(mjj > RANGE_GEV[0]) & (mjj < RANGE_GEV[1])]
    truth = background_spectrum(mjj, *RANGE_GEV, bin_width_gev=10.0, n_params=4)
    centres = 0.5 * (truth.edges[1:] + truth.edges[:-1])
    summary = {
        "n_events": int(mjj.size),
        "n_sr_events": int(SR.contains(mjj).sum()),
        "expected_total": float(truth.expected.sum()),
        "expected_sr": float(truth.expected[SR.contains(centres)].sum()),
        "fit_n_params": truth.fit.n_params,
        "fit_params": truth.fit.params,
        "fit_deviance": truth.fit.deviance,
        "fit_ndof": truth.fit.ndof,
        "fit_gof_pvalue": truth.fit.gof_pvalue,
    }
    return truth, summary


def timed_hunt(mjj: np.ndarray, costs: list[float], **options: Any) -> Any:
    """`bump_hunt` on the benchmark SR, its wall time appended to `costs`; None if it fails."""
    t0 = time.perf_counter()
    try:
        res = bump_hunt(mjj, SR, **options)
    except SidebandError as err:
        log.warning("bump_hunt failed: %s", err)
        return None
    finally:
        costs.append(time.perf_counter() - t0)
    return res


def background_only(truth: Any, n_toys: int, seed: int, costs: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    variants = {**BINNINGS, "width100_auto": {"bin_width_gev": 100.0, "n_params": "auto"}}
    for name, options in variants.items():
        rng = np.random.default_rng([seed, 1])
        rows = []
        for _ in range(n_toys):
            res = timed_hunt(pseudo_mjj(*truth[:2], rng), costs, compute_limit=False, **options)
            if res is not None:
                rows.append((res.fit_info["z_signed"], res.z, res.p0, res.mu_hat, res.mu_err,
                             res.fit_info["fit_n_params"]))  # fmt: skip
        out[name] = summarize_background(np.asarray(rows, dtype=float), n_toys, options)
        log.info("background-only %s: %s", name, {k: v for k, v in out[name].items()
                                                     if not isinstance(v, list)})  # fmt: skip
    return out


def summarize_background(rows: np.ndarray, n_toys: int, options: dict[str, Any]) -> dict[str, Any]:
    z_signed, z, p0, mu_hat, mu_err, n_par = rows.T
    positive = mu_hat > 0
    ks = stats.kstest(2.0 * p0[positive], "uniform")
    return {
        "options": options,
        "n_toys": n_toys,
        "n_failed": n_toys - len(rows),
        "z_signed_mean": float(z_signed.mean()),
        "z_signed_mean_err": float(z_signed.std(ddof=1) / np.sqrt(len(z_signed))),
        "z_signed_std": float(z_signed.std(ddof=1)),
        "n_mu_hat_positive": int(positive.sum()),
        "ks_2p0_uniform_statistic": float(ks.statistic),
        "ks_2p0_uniform_pvalue": float(ks.pvalue),
        "fraction_z_gt_2": float(np.mean(z > 2)),
        "fraction_z_gt_3": float(np.mean(z > 3)),
        "expected_fraction_z_gt_2": float(stats.norm.sf(2)),
        "expected_fraction_z_gt_3": float(stats.norm.sf(3)),
        "mu_hat_mean": float(mu_hat.mean()),
        "mu_hat_std": float(mu_hat.std(ddof=1)),
        "mu_err_mean": float(mu_err.mean()),
        "fit_n_params_counts": {
            int(k): int(v) for k, v in zip(*np.unique(n_par, return_counts=True), strict=True)
        },
        "z_signed": np.round(z_signed, 4).tolist(),
    }


def load_signal_sample() -> np.ndarray:
    """m_JJ (GeV) of the repository's W'(3.5 TeV) signal sample (all 2,354 events)."""
    return np.asarray(read_features(SIGNAL_DATA).mjj, dtype=np.float64)


def draw_signal(
    kind: str, mu_sr: float, rng: np.random.Generator, sample: np.ndarray | None = None
) -> np.ndarray:
    """Signal masses (GeV): `mu_sr` expected events in the SR, Poisson fluctuated.

    ``lhco_like`` draws with replacement from `sample` (the signal sample's m_JJ), Poisson(mu_sr
    / f_SR) events in all, f_SR the sample's fraction inside the SR.
    """
    if kind == "lhco_like":
        if sample is None:
            raise ValueError("kind 'lhco_like' needs the signal sample")
        n = rng.poisson(mu_sr / float(np.mean(SR.contains(sample))))
        return sample[rng.integers(0, sample.size, n)]
    dist = stats.norm(SIGNAL_CENTER_GEV, SIGNAL_WIDTH_GEV)
    in_sr = dist.cdf(SR.high_gev) - dist.cdf(SR.low_gev)
    if kind == "model":  # truncated to the SR: the shape bump_hunt fits
        n = rng.poisson(mu_sr)
        u = dist.cdf(SR.low_gev) + in_sr * rng.random(n)
        return dist.ppf(u)
    n = rng.poisson(mu_sr / in_sr)  # untruncated: mu_sr of them in the SR on average
    return rng.normal(SIGNAL_CENTER_GEV, SIGNAL_WIDTH_GEV, n)


def in_sidebands(mjj: np.ndarray) -> np.ndarray:
    """Boolean mask: masses in the sideband bins of the fit (inside the range, outside the SR)."""
    return (mjj >= RANGE_GEV[0]) & (mjj <= RANGE_GEV[1]) & ~SR.contains(mjj)


def signal_fractions(sample: np.ndarray) -> dict[str, Any]:
    """Per kind: fractions of the injected signal in the SR, the sideband bins, outside."""
    edges = np.arange(RANGE_GEV[0], RANGE_GEV[1] + 0.5, FRACTION_BIN_WIDTH_GEV)
    dist = stats.norm(SIGNAL_CENTER_GEV, SIGNAL_WIDTH_GEV)
    in_sr_gauss = dist.cdf(SR.high_gev) - dist.cdf(SR.low_gev)
    per_bin = {
        "model": np.where((edges[:-1] >= SR.low_gev) & (edges[1:] <= SR.high_gev),
                          np.diff(dist.cdf(edges)) / in_sr_gauss, 0.0),
        "gaussian": np.diff(dist.cdf(edges)),
        "lhco_like": np.histogram(sample, bins=edges)[0] / sample.size,
    }  # fmt: skip
    below = {"model": 0.0, "gaussian": float(dist.cdf(RANGE_GEV[0])),
             "lhco_like": float(np.mean(sample < RANGE_GEV[0]))}  # fmt: skip
    above = {"model": 0.0, "gaussian": float(dist.sf(RANGE_GEV[1])),
             "lhco_like": float(np.mean(sample > RANGE_GEV[1]))}  # fmt: skip
    centres = 0.5 * (edges[1:] + edges[:-1])
    sr_bins = SR.contains(centres)
    width = FRACTION_BIN_WIDTH_GEV
    adjacent = ((centres > SR.low_gev - width) & (centres < SR.low_gev)) | (
        (centres > SR.high_gev) & (centres < SR.high_gev + width)
    )
    out: dict[str, Any] = {
        "how": "model, gaussian: from the Gaussian CDF; lhco_like: counted on the signal sample",
        "bin_edges_gev": edges.tolist(),
        "n_sample_events": int(sample.size),
        "kinds": {},
    }
    for kind, fractions in per_bin.items():
        f_sr = float(fractions[sr_bins].sum())
        out["kinds"][kind] = {
            "in_sr": f_sr,
            "in_sidebands": float(fractions[~sr_bins].sum()),
            "in_low_sideband": float(fractions[centres < SR.low_gev].sum()),
            "in_high_sideband": float(fractions[centres > SR.high_gev].sum()),
            "in_adjacent_sideband_bins": float(fractions[adjacent].sum()),
            "below_range": below[kind],
            "above_range": above[kind],
            "sidebands_over_sr": float(fractions[~sr_bins].sum()) / f_sr,
            "per_bin": np.round(fractions, 5).tolist(),
        }
    return out


def draw_toy(
    truth: Any, kind: str, mu: float, rng: np.random.Generator, sample: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One recovery toy: (all masses, the signal masses), `mu` signal events in the SR.

    The draw order is the one each stored section was made with: ``model`` and ``gaussian``
    draw the background toy first, then the signal (the ``recovery`` section); ``lhco_like``
    draws the signal first (``recovery_lhco_like``). So with the same seed the same toys come
    back, and the joint-likelihood sections pair with the stored ones toy by toy.
    """
    if kind == "lhco_like":
        sig = draw_signal(kind, mu, rng, sample)
        return np.concatenate([pseudo_mjj(*truth[:2], rng), sig]), sig
    bkg = pseudo_mjj(*truth[:2], rng)
    sig = draw_signal(kind, mu, rng, sample)
    return np.concatenate([bkg, sig]), sig


def recovery(
    truth: Any,
    sigma_mu: float,
    n_toys: int,
    seed: int,
    costs: list[float],
    kinds: tuple[str, ...] = ("model", "gaussian"),
    sample: np.ndarray | None = None,
) -> dict:
    out: dict[str, Any] = {"sigma_mu": sigma_mu, "mu_multiples": MU_MULTIPLES, "kinds": {}}
    for kind in kinds:
        points = []
        for j, mult in enumerate(MU_MULTIPLES):
            mu = mult * sigma_mu
            rng = np.random.default_rng([seed, 2, j])
            rows, injected = [], []
            for _ in range(n_toys):
                mjj, sig = draw_toy(truth, kind, mu, rng, sample)
                injected.append((sig.size, SR.contains(sig).sum(), in_sidebands(sig).sum()))
                res = timed_hunt(mjj, costs, compute_limit=False)
                if res is not None:
                    rows.append((res.mu_hat, res.mu_err, res.z, res.fit_info["z_signed"]))
            points.append(summarize_recovery(np.asarray(rows), mu, n_toys, np.asarray(injected)))
            log.info("recovery %s mu=%.1f: %s", kind, mu, points[-1])
        out["kinds"][kind] = points
    return out


def recovery_lhco_like(
    truth: Any, sigma_mu: float, n_toys: int, seed: int, sample: np.ndarray
) -> dict[str, Any]:
    """The ``recovery`` toys with the ``lhco_like`` signal; the cost of its calls included."""
    costs: list[float] = []
    out = recovery(truth, sigma_mu, n_toys, seed, costs, kinds=("lhco_like",), sample=sample)
    out["signal_data"] = str(SIGNAL_DATA)
    out["fraction_in_sr"] = float(np.mean(SR.contains(sample)))
    out["cost_without_limits"] = {"n_calls": len(costs), "mean_s": float(np.mean(costs)),
                                  "median_s": float(np.median(costs)),
                                  "max_s": float(np.max(costs))}  # fmt: skip
    return out


def summarize_recovery(
    rows: np.ndarray, mu: float, n_toys: int, injected: np.ndarray | None = None
) -> dict[str, Any]:
    mu_hat, mu_err, z, z_signed = rows.T
    extra: dict[str, Any] = {}
    if injected is not None:  # (n_toys, 3): signal events in all, in the SR, in the sidebands
        n_all, n_sr, n_sb = injected.T
        extra = {
            "mu_hat_over_mu": float(mu_hat.mean() / mu) if mu > 0 else None,
            "n_signal_mean": float(n_all.mean()),
            "n_signal_sr_mean": float(n_sr.mean()),
            "n_signal_sidebands_mean": float(n_sb.mean()),
        }
    return {
        "mu_injected_sr": mu,
        "n_toys": n_toys,
        "n_failed": n_toys - len(rows),
        "mu_hat_mean": float(mu_hat.mean()),
        "mu_hat_std": float(mu_hat.std(ddof=1)),
        "mu_err_mean": float(mu_err.mean()),
        "bias_over_sigma": float((mu_hat.mean() - mu) / mu_err.mean()),
        "coverage_2sigma": float(np.mean(np.abs(mu_hat - mu) < 2 * mu_err)),
        "z_mean": float(z.mean()),
        "z_median": float(np.median(z)),
        "z_signed_mean": float(z_signed.mean()),
        **extra,
    }


def cost(truth: Any, n_calls: int, seed: int, costs_no_limit: list[float]) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 3])
    with_limit: list[float] = []
    failures = 0
    for _ in range(n_calls):
        res = timed_hunt(pseudo_mjj(*truth[:2], rng), with_limit, compute_limit=True)
        failures += res is None or res.upper_limit is None
    arr, arr_nl = np.asarray(with_limit), np.asarray(costs_no_limit)
    return {
        "without_limits": {"n_calls": arr_nl.size, "mean_s": float(arr_nl.mean()),
                           "median_s": float(np.median(arr_nl)), "max_s": float(arr_nl.max())},
        "with_limits": {"n_calls": arr.size, "mean_s": float(arr.mean()),
                        "median_s": float(np.median(arr)), "max_s": float(arr.max()),
                        "limit_failures": int(failures)},
    }  # fmt: skip


def toys_calculator(truth: Any, sigma_mu: float, n_sets: int, n_toys: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, 4])
    rows = []
    for k in range(n_sets):
        mjj = np.concatenate(
            [pseudo_mjj(*truth[:2], rng), draw_signal("model", 1.5 * sigma_mu, rng)]
        )
        t0 = time.perf_counter()
        res = bump_hunt(mjj, SR, compute_limit=False, calculator="toys", n_toys=n_toys, seed=k)
        rows.append({"p0_toys": res.p0, "p0_asymptotic": res.fit_info["p0_asymptotic"],
                     "p0_toys_binomial_err": float(np.sqrt(res.p0 * (1 - res.p0) / n_toys)),
                     "z_toys": res.z, "z_asymptotic": float(stats.norm.isf(
                         res.fit_info["p0_asymptotic"])), "seconds": time.perf_counter() - t0})  # fmt: skip
        log.info("toys calculator: %s", rows[-1])
    return {"n_toys": n_toys, "injected_mu_sr": 1.5 * sigma_mu, "sets": rows}


def global_scan(truth: Any, n_toys: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    scan = max_local_significance_toys(*truth[:2], WINDOWS, n_toys=n_toys, seed=seed,
                                       hunt_options={"bin_width_gev": 100.0})  # fmt: skip
    seconds = time.perf_counter() - t0
    trials = {}
    for z_local in (2.0, 3.0):
        glob = global_pvalue(scan.max_z, z_local)
        p_local = float(stats.norm.sf(z_local))
        n_above = int(np.sum(scan.max_z[np.isfinite(scan.max_z)] >= z_local))
        trials[str(z_local)] = {
            "p_local": p_local,
            "p_global": glob.p_value,
            "p_global_plain": n_above / glob.n_toys,
            "n_toys_above": n_above,
            "z_global": glob.significance,
            "trials_factor": glob.p_value / p_local,
            "trials_factor_plain": n_above / glob.n_toys / p_local,
        }
    return {
        "windows_gev": [[w.low_gev, w.high_gev] for w in WINDOWS],
        "n_toys": n_toys,
        "n_failures": len(scan.failures),
        "failures": scan.failures[:10],
        "seconds": seconds,
        "max_z_mean": float(np.nanmean(scan.max_z)),
        "fraction_per_window_z_gt_2": np.mean(scan.z > 2, axis=0).tolist(),
        "z_signed_mean_per_window": np.nanmean(scan.z_signed, axis=0).tolist(),
        "z_signed_corr_neighbours": [
            float(np.corrcoef(scan.z_signed[:, j], scan.z_signed[:, j + 1])[0, 1])
            for j in range(len(WINDOWS) - 1)
        ],
        "trials": trials,
        "max_z": np.round(scan.max_z, 4).tolist(),
    }


JOINT = {"bin_width_gev": 100.0, "likelihood": "joint"}


def paired_hunts(
    mjj: np.ndarray, costs_joint: list[float], costs_sr: list[float], **options: Any
) -> tuple[Any, Any]:
    """`bump_hunt` of the same data with the joint and the SR-only likelihood (100 GeV bins)."""
    joint = timed_hunt(mjj, costs_joint, **JOINT, **options)
    sr_only = timed_hunt(mjj, costs_sr, bin_width_gev=100.0, **options)
    return joint, sr_only


def summarize_pairs(pairs: np.ndarray) -> dict[str, Any]:
    """Toy-by-toy joint against SR-only: rows (mu_hat, mu_err, z_signed) joint, then SR-only."""
    mu_j, err_j, zs_j, mu_s, err_s, zs_s = pairs.T
    diff = mu_j - mu_s
    return {
        "n_pairs": len(pairs),
        "sr_only_mu_hat_mean": float(mu_s.mean()),
        "sr_only_mu_err_mean": float(err_s.mean()),
        "sr_only_z_signed_mean": float(zs_s.mean()),
        "mu_hat_diff_mean": float(diff.mean()),  # joint - SR-only
        "mu_hat_diff_mean_err": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        "mu_hat_diff_std": float(diff.std(ddof=1)),
        "mu_hat_corr": float(np.corrcoef(mu_j, mu_s)[0, 1]),
        "z_signed_corr": float(np.corrcoef(zs_j, zs_s)[0, 1]),
        "z_signed_diff_mean": float(np.mean(zs_j - zs_s)),
        "mu_err_ratio_mean": float(np.mean(err_j / err_s)),
    }


def background_only_joint(
    truth: Any,
    n_toys: int,
    seed: int,
    costs_joint: list[float],
    costs_sr: list[float],
    stored_z_signed: list[float] | None,
) -> dict[str, Any]:
    """The 100 GeV ``background_only`` toys with the joint likelihood, paired with SR-only."""
    rng = np.random.default_rng([seed, 1])  # the seed of `background_only`: the same toys
    rows, pairs, z_sr = [], [], []
    for _ in range(n_toys):
        joint, sr_only = paired_hunts(pseudo_mjj(*truth[:2], rng), costs_joint, costs_sr,
                                      compute_limit=False)  # fmt: skip
        z_sr.append(np.nan if sr_only is None else sr_only.fit_info["z_signed"])
        if joint is not None:
            rows.append((joint.fit_info["z_signed"], joint.z, joint.p0, joint.mu_hat,
                         joint.mu_err, joint.fit_info["fit_n_params"]))  # fmt: skip
        if joint is not None and sr_only is not None:
            pairs.append((joint.mu_hat, joint.mu_err, joint.fit_info["z_signed"],
                          sr_only.mu_hat, sr_only.mu_err, sr_only.fit_info["z_signed"]))  # fmt: skip
    out = summarize_background(np.asarray(rows, dtype=float), n_toys, JOINT)
    out["paired"] = summarize_pairs(np.asarray(pairs, dtype=float))
    if stored_z_signed is not None and len(stored_z_signed) == n_toys:
        # the stored values are rounded to 4 decimals
        dev = np.abs(np.round(np.asarray(z_sr), 4) - np.asarray(stored_z_signed))
        out["paired"]["sr_only_reproduces_stored_max_abs_diff"] = float(np.nanmax(dev))
    log.info("background-only joint: %s", {k: v for k, v in out.items()
                                           if not isinstance(v, list)})  # fmt: skip
    return out


def recovery_joint(
    truth: Any,
    sigma_mu: float,
    n_toys: int,
    seed: int,
    costs_joint: list[float],
    costs_sr: list[float],
    sample: np.ndarray,
) -> dict[str, Any]:
    """The ``recovery`` toys (same mu, same seeds) with the joint likelihood, paired with SR-only."""
    out: dict[str, Any] = {"sigma_mu": sigma_mu, "mu_multiples": MU_MULTIPLES,
                           "options": JOINT, "kinds": {}}  # fmt: skip
    for kind in ("model", "gaussian", "lhco_like"):
        points = []
        for j, mult in enumerate(MU_MULTIPLES):
            mu = mult * sigma_mu
            rng = np.random.default_rng([seed, 2, j])  # as in `recovery`: the same toys
            rows, injected, pairs = [], [], []
            for _ in range(n_toys):
                mjj, sig = draw_toy(truth, kind, mu, rng, sample)
                injected.append((sig.size, SR.contains(sig).sum(), in_sidebands(sig).sum()))
                joint, sr_only = paired_hunts(mjj, costs_joint, costs_sr, compute_limit=False)
                if joint is not None:
                    rows.append((joint.mu_hat, joint.mu_err, joint.z, joint.fit_info["z_signed"]))
                if joint is not None and sr_only is not None:
                    pairs.append((joint.mu_hat, joint.mu_err, joint.fit_info["z_signed"],
                                  sr_only.mu_hat, sr_only.mu_err,
                                  sr_only.fit_info["z_signed"]))  # fmt: skip
            point = summarize_recovery(np.asarray(rows), mu, n_toys, np.asarray(injected))
            point["paired"] = summarize_pairs(np.asarray(pairs, dtype=float))
            points.append(point)
            log.info("recovery joint %s mu=%.1f: %s", kind, mu, points[-1])
        out["kinds"][kind] = points
    return out


def cost_joint(
    truth: Any, n_calls: int, seed: int, costs_joint: list[float], costs_sr: list[float]
) -> dict[str, Any]:
    """Seconds per joint call; with limits on the `cost` toys, both likelihoods."""
    rng = np.random.default_rng([seed, 3])  # the seed of `cost`: the same toys
    with_joint: list[float] = []
    with_sr: list[float] = []
    limits: dict[str, list[tuple[float, float]]] = {"joint": [], "signal_region": []}
    failures = {"joint": 0, "signal_region": 0}
    for _ in range(n_calls):
        joint, sr_only = paired_hunts(pseudo_mjj(*truth[:2], rng), with_joint, with_sr,
                                      compute_limit=True)  # fmt: skip
        for name, res in (("joint", joint), ("signal_region", sr_only)):
            if res is None or res.upper_limit is None:
                failures[name] += 1
            else:
                limits[name].append((res.upper_limit, res.expected_limits[2]))

    def stats_of(costs: list[float]) -> dict[str, Any]:
        arr = np.asarray(costs or [np.nan])
        return {"n_calls": len(costs), "mean_s": float(arr.mean()),
                "median_s": float(np.median(arr)), "max_s": float(arr.max())}  # fmt: skip

    def limits_of(name: str) -> dict[str, Any]:
        arr = np.asarray(limits[name] or [(np.nan, np.nan)])
        return {"limit_failures": failures[name],
                "observed_limit_mean": float(arr[:, 0].mean()),
                "expected_limit_median_mean": float(arr[:, 1].mean())}  # fmt: skip

    return {
        "without_limits": stats_of(costs_joint),
        "without_limits_sr_only_paired": stats_of(costs_sr),
        "with_limits": {**stats_of(with_joint), **limits_of("joint")},
        "with_limits_sr_only_same_toys": {**stats_of(with_sr), **limits_of("signal_region")},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-bkg", type=int, default=200, help="background-only toys per binning")
    p.add_argument("--n-recovery", type=int, default=100, help="toys per injected mu and kind")
    p.add_argument("--n-limit-calls", type=int, default=10)
    p.add_argument("--n-global", type=int, default=200, help="toys of the 5-window scan")
    p.add_argument("--n-calc-sets", type=int, default=3)
    p.add_argument("--n-calc-toys", type=int, default=1000)
    p.add_argument("--fraction", type=float, default=0.1, help="random selection of the QCD")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="few toys: a smoke run")
    p.add_argument("--force", action="store_true", help="redo sections already in the JSON")
    p.add_argument("--conditions", default="2-core dev machine shared with other work, 1 thread")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sideband").setLevel(logging.ERROR)  # per-toy fit warnings are counted
    logging.getLogger("pyhf").setLevel(logging.WARNING)
    if args.quick:
        args.n_bkg, args.n_recovery, args.n_limit_calls = 10, 4, 2
        args.n_global, args.n_calc_sets, args.n_calc_toys = 5, 1, 30
    out = args.out / (
        "bumphunt_calibration_quick.json" if args.quick else "bumphunt_calibration.json"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("force", "out", "conditions")}
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if record.get("settings") != json.loads(json.dumps(settings)):
        record = {}
    record.update({
        "what": "calibration of bump_hunt (sideband dijet fit + SR pyhf model) on pseudo-experiments "
                "from a dijet truth fitted to 10% of the LHCO-like QCD m_JJ, 3000-5000 GeV, "
                "SR 3300-3700 GeV",
        "settings": settings,
        "analysis": {"range_gev": RANGE_GEV, "sr_gev": [SR.low_gev, SR.high_gev],
                     "binnings": BINNINGS, "signal_center_gev": SIGNAL_CENTER_GEV,
                     "signal_width_gev": SIGNAL_WIDTH_GEV, "truth_bin_width_gev": 10.0,
                     "data": str(DATA), "signal_data": str(SIGNAL_DATA)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "conditions": args.conditions},
        "versions": package_versions(),
    })  # fmt: skip
    truth, record["truth"] = load_truth(args.seed, args.fraction)
    costs: list[float] = []

    def section(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name in record and not args.force:
            log.info("section %s already done; --force to redo", name)
            return record[name]
        t0 = time.perf_counter()
        record[name] = {**run(), "section_seconds": time.perf_counter() - t0}
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(out, record)
        return record[name]

    bkg = section("background_only", lambda: background_only(truth, args.n_bkg, args.seed, costs))
    sigma_mu = float(bkg["width100"]["mu_err_mean"])
    section("recovery", lambda: recovery(truth, sigma_mu, args.n_recovery, args.seed, costs))
    section("cost", lambda: cost(truth, args.n_limit_calls, args.seed, costs or [np.nan]))
    section("toys_calculator", lambda: toys_calculator(
        truth, sigma_mu, args.n_calc_sets, args.n_calc_toys, args.seed))  # fmt: skip
    section("global", lambda: global_scan(truth, args.n_global, args.seed))
    # after the sections above, so that `cost` (n_calls) keeps its meaning on a fresh run
    sample = load_signal_sample()
    section("signal_fractions", lambda: signal_fractions(sample))
    section("recovery_lhco_like", lambda: recovery_lhco_like(
        truth, sigma_mu, args.n_recovery, args.seed, sample))  # fmt: skip
    # the joint likelihood, after everything above so that the earlier sections stay as they are
    costs_joint: list[float] = []
    costs_sr: list[float] = []
    section("background_only_joint", lambda: background_only_joint(
        truth, args.n_bkg, args.seed, costs_joint, costs_sr,
        bkg["width100"].get("z_signed")))  # fmt: skip
    section("recovery_joint", lambda: recovery_joint(
        truth, sigma_mu, args.n_recovery, args.seed, costs_joint, costs_sr, sample))  # fmt: skip
    section("cost_joint", lambda: cost_joint(
        truth, args.n_limit_calls, args.seed, costs_joint, costs_sr))  # fmt: skip
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
