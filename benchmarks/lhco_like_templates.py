"""Background templates (CATHODE, LaCATHODE, SIGMA) against the IAD on the LHCO-like sample.

Usage: python benchmarks/lhco_like_templates.py [--seed 0] [--sb 2.2]
       [--stages iad cathode lacathode sigma sigma_linear] [--quick] [--threads 1]
       [--out benchmarks/results]

Data: ``../shared/data/lhco_like/events_lhco_like.features.h5`` (Pythia 8 QCD + W' -> XY signal,
labelled), read with `sideband.events.read_features`. Features: mj1, delta_mj, tau21_j1, tau21_j2
and delta_r when the table has it (``--features`` to choose). SR 3300 < m_JJ < 3700 GeV,
sidebands the rest of the window 2800-5000 GeV.

Split (all seeded from ``--seed``):

* QCD in the window: one third held out (its SR part is the test background, its SR + SB parts
  the background-only sample of the sculpting test); in the SR a second third is the IAD's
  pure-QCD reference; the rest (SR third + two thirds of the sidebands) is the "data";
* signal: the rows are halved at random; the SR rows of one half are the test signal, the other
  half is the injection pool. Rows are drawn from the pool until the SR data holds
  ``round(sb * sqrt(B_SR))`` signal events (``--sb``, S/sqrt(B) in the SR; 0 = background only);
  the drawn rows inside the window join the data (also in the sidebands, as in real data).

Every method trains the same classifier (`HGBEnsemble`, same settings) k-folded with
`score_kfold` (SR data, label 1, against its background sample, label 0) and scores the test set
with the mean of the fold models:

* IAD: SR data vs the pure-QCD reference;
* CATHODE: `CathodeTemplate` trained on the data sidebands, sampled at SR masses from a
  `KDEMassSampler` of the SR data (``oversampling`` x the SR data);
* LaCATHODE: the same flow; SR data, test set and sculpting sample mapped with ``transform``; the
  template is N(0, 1) (same size);
* SIGMA: `SigmaTemplate` trained on all the data in the window (SR included), sampled in the SR
  at masses from a `HistogramMassSampler` of the SR data; ``sigma`` uses ``interpolation=
  "context"``, ``sigma_linear`` ``"linear"``.

Per method: test-set AUC, SIC at eps_B = 1e-3 and 1e-2, max SIC (bootstrap 16-84% bands of the
test set), both SICs as a fraction of the IAD's; the classifier two-sample test of the template
against the held-out true SR background (equal sizes; the IAD row compares its reference with
it, the null); the LaCATHODE sculpting test (chi2/ndof of the held-out background m_JJ after cuts
on the score, SR + SB) for every method; training, sampling and scoring wall times; the projected
cost of a 10-SR scan (CATHODE: one training + sampling per SR; SIGMA: one training, then
``at_region`` + sampling per SR, measured on 10 shifted SRs).

The JSON is rewritten atomically after every stage; a rerun with other ``--stages`` keeps the
stages already in the file when the split and settings agree (e.g. SIGMA added later).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from sideband.evaluate import DEFAULT_FEATURES
from sideband.evaluation import (
    band,
    classifier_two_sample_test,
    sculpting_test,
    summary,
)
from sideband.events import read_features
from sideband.regions import SignalRegion
from sideband.report import package_versions, write_json
from sideband.scoring import HGBEnsemble, score_kfold

log = logging.getLogger("lhco_like_templates")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"
STAGES = ("iad", "cathode", "lacathode", "sigma", "sigma_linear")
SR_GEV = (3300.0, 3700.0)
WINDOW_GEV = (2800.0, 5000.0)
EPS_SEL = (0.01, 0.02, 0.05, 0.1, 0.2)
METRIC_KEYS = ("auc", "sic_at_1e-03", "sic_at_1e-02", "max_sic")
#: 10 shifted SRs (width 400 GeV) for the scan timing
SCAN_LOWS_GEV = tuple(3000.0 + 100.0 * k for k in range(10))


# ---------------------------------------------------------------------------------- settings
def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Reduced CPU configurations of every model (recorded in the JSON)."""
    q = args.quick
    return {
        "classifier": {
            "class": "HGBEnsemble",
            "n_members": 1 if q else 5,
            "max_iter": 200,
            "n_threads": args.threads,
            "n_folds": 2 if q else 5,
            "scoring": "score_kfold (SR data vs background sample), test set by the mean of "
            "the fold models (KFoldResult.predict)",
        },
        "two_sample": {
            "classifier": "HGBEnsemble(n_members=1)",
            "n_folds": 2 if q else 5,
            "n_null": 2 if q else 5,
            "sizes": "template subsampled to the number of held-out SR QCD events",
        },
        "cathode": {
            "flow": "maf",
            "n_transforms": 6,
            "hidden_features": (64, 64),
            "epochs": 2 if q else args.flow_epochs,
            "batch_size": 512,
            "learning_rate": 1e-3,
            "patience": args.flow_patience,
            "val_fraction": 0.2,
            "n_ensemble": 1,
            "device": "cpu",
        },
        "sigma": {
            "hidden_features": 128,
            "n_blocks": 4,
            "epochs": 2 if q else args.sigma_epochs,
            "batch_size": 1024,
            "learning_rate": 1e-3,
            "patience": args.sigma_patience,
            "lr_patience": args.sigma_lr_patience,
            "val_fraction": 0.15,
            "n_ensemble": args.sigma_ensemble,
            "selection": args.sigma_selection,
            "n_val_nll": 2048,
            "atol": 1e-4,
            "rtol": 1e-4,
            "log_prob_tol": 1e-4,
            "device": "cpu",
        },
        "oversampling": 4,
        "kde_mass_sampler": {"bandwidth": "scott"},
        "histogram_mass_sampler": {"bins": args.mass_bins},
        "sculpting": {"eps_sel": EPS_SEL, "n_random": 20, "min_expected_per_bin": 10},
        "bootstrap": {"n": 20 if q else 200},
        "scan": {
            "sr_lows_gev": SCAN_LOWS_GEV,
            "width_gev": 400.0,
            "max_events": args.scan_events,
            "skipped": args.no_scan,
        },
    }


# ---------------------------------------------------------------------------------- data
class Split:
    """Index sets and arrays of the benchmark split (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        table = read_features(args.input)
        feats = list(args.features or DEFAULT_FEATURES)
        if args.features is None and "delta_r" in table.names:
            feats.append("delta_r")
        self.features = feats
        seeds = np.random.SeedSequence([args.seed, 1]).spawn(4)
        rng_qcd, rng_sig, rng_inj, rng_quick = (np.random.default_rng(s) for s in seeds)
        m, y = table.mjj, table.label
        if y is None:
            raise SystemExit(f"{args.input} has no labels; this benchmark needs truth labels")
        X = table.x(feats)
        sr = SignalRegion(*SR_GEV, *WINDOW_GEV)
        in_sr = sr.contains(m)
        in_sb = sr.in_sidebands(m)
        in_win = in_sr | in_sb

        qcd = np.flatnonzero((y == 0) & in_win)
        sig = np.flatnonzero(y == 1)
        if args.quick:  # a fifth of everything
            qcd = rng_quick.permutation(qcd)[: len(qcd) // 5]
            sig = rng_quick.permutation(sig)[: len(sig) // 5]
        qcd_sr = rng_qcd.permutation(qcd[in_sr[qcd]])
        qcd_sb = rng_qcd.permutation(qcd[in_sb[qcd]])
        n3 = len(qcd_sr) // 3
        test_bkg, ref, data_sr = qcd_sr[:n3], qcd_sr[n3 : 2 * n3], qcd_sr[2 * n3 :]
        n_sb_hold = len(qcd_sb) // 3
        hold_sb, data_sb = qcd_sb[:n_sb_hold], qcd_sb[n_sb_hold:]

        sig = rng_sig.permutation(sig)
        test_half, pool = sig[: len(sig) // 2], sig[len(sig) // 2 :]
        test_sig = test_half[in_sr[test_half]]
        n_target = round(args.sb * math.sqrt(len(data_sr)))
        pool = rng_inj.permutation(pool)
        cum = np.cumsum(in_sr[pool])
        if n_target > cum[-1]:
            raise SystemExit(
                f"--sb {args.sb} needs {n_target} SR signal events; the pool has {cum[-1]}"
            )
        n_drawn = 0 if n_target == 0 else int(np.searchsorted(cum, n_target) + 1)
        drawn = pool[:n_drawn]
        inj = drawn[in_win[drawn]]

        data = np.concatenate([data_sr, data_sb, inj])
        self.X, self.m, self.y = X, m, y
        self.data = data
        self.data_sr = data[in_sr[data]]
        self.data_sb = data[in_sb[data]]
        self.ref = ref
        self.test = np.concatenate([test_bkg, test_sig])
        self.test_bkg = test_bkg
        self.sculpt_sr = test_bkg
        self.sculpt_all = np.concatenate([test_bkg, hold_sb])
        n_sig_sr = int(y[self.data_sr].sum())
        self.info = {
            "file": str(Path(args.input).resolve()),
            "features": feats,
            "signal_region_gev": SR_GEV,
            "window_gev": WINDOW_GEV,
            "sidebands_gev": [[WINDOW_GEV[0], SR_GEV[0]], [SR_GEV[1], WINDOW_GEV[1]]],
            "region_rule": "SR: low < m < high; sidebands: rest of the window (edges inclusive)",
            "quick_subsample": "1/5 of the QCD and signal rows" if args.quick else None,
            "qcd_in_window": len(qcd),
            "qcd_sr": len(qcd_sr),
            "qcd_sb": len(qcd_sb),
            "data_events": len(data),
            "data_sr_events": len(self.data_sr),
            "data_sb_events": len(self.data_sb),
            "data_sr_qcd": len(data_sr),
            "data_sb_qcd": len(data_sb),
            "signal_rows_drawn": n_drawn,
            "signal_injected_in_window": len(inj),
            "signal_injected_in_sb": int(in_sb[inj].sum()),
            "n_sig_sr": n_sig_sr,
            "s_over_sqrt_b_sr": n_sig_sr / math.sqrt(len(data_sr)),
            "s_over_b_sr": n_sig_sr / len(data_sr),
            "target_s_over_sqrt_b": args.sb,
            "iad_reference_qcd_sr": len(ref),
            "test_background_qcd_sr": len(test_bkg),
            "test_signal_sr": len(test_sig),
            "sculpting_background": {"sr": len(test_bkg), "sb": len(hold_sb)},
            "rule": "1/3 of the window QCD held out (SR part = test background, SR+SB = "
            "sculpting sample); 1/3 of the SR QCD = IAD reference; signal halved: SR rows of "
            "one half = test signal, the other half = injection pool",
        }

    def xm(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.X[idx], self.m[idx]


# ---------------------------------------------------------------------------------- helpers
def classifier(cfg: dict[str, Any]) -> HGBEnsemble:
    c = cfg["classifier"]
    return HGBEnsemble(n_members=c["n_members"], max_iter=c["max_iter"], n_threads=c["n_threads"])


def bootstrap(y: np.ndarray, s: np.ndarray, n: int, seed: int) -> dict[str, Any]:
    """16-84% bands of the test-set metrics over `n` bootstrap resamples of the test set."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in METRIC_KEYS}
    for _ in range(n):
        i = rng.integers(len(y), size=len(y))
        res = summary(y[i], s[i])
        for k in METRIC_KEYS:
            rows[k].append(res[k])
    out = {}
    for k, v in rows.items():
        b = band(np.asarray(v, dtype=np.float64))
        out[k] = {"p16": b.lo, "median": b.median, "p84": b.hi}
    return {"n": n, **out}


def evaluate(
    name: str,
    split: Split,
    cfg: dict[str, Any],
    args: argparse.Namespace,
    data_x: np.ndarray,
    background_x: np.ndarray,
    test_x: np.ndarray,
    sculpt_sr_x: np.ndarray,
    sculpt_all_x: np.ndarray,
    truth_x: np.ndarray,
) -> dict[str, Any]:
    """Classifier (k-folded), test metrics, two-sample test and sculpting test of one method.

    ``background_x`` is what the classifier takes as background (template or reference);
    ``truth_x`` the held-out true SR background in the same space, for the two-sample test.
    """
    seed = int(np.random.SeedSequence([args.seed, 2, STAGES.index(name)]).generate_state(1)[0])
    t0 = time.perf_counter()
    kf = score_kfold(data_x, background_x, classifier=classifier(cfg),
                     n_folds=cfg["classifier"]["n_folds"], seed=seed)  # fmt: skip
    t_fit = time.perf_counter() - t0
    y_test = split.y[split.test].astype(np.int64)
    s_test = kf.predict(test_x)
    metrics = summary(y_test, s_test)
    t_score = time.perf_counter() - t0 - t_fit
    log.info("%s: AUC %.4f, SIC@1e-3 %.2f, SIC@1e-2 %.2f, max SIC %.2f (classifier %.0f s)", name,
             metrics["auc"], metrics["sic_at_1e-03"], metrics["sic_at_1e-02"], metrics["max_sic"],
             t_fit)  # fmt: skip
    boot = bootstrap(y_test, s_test, cfg["bootstrap"]["n"], seed)

    # two-sample test: background sample vs the held-out true SR background, equal sizes
    t1 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = min(len(truth_x), len(background_x))
    bkg = background_x[rng.choice(len(background_x), size=n, replace=False)]
    tru = truth_x[rng.choice(len(truth_x), size=n, replace=False)]
    ts = classifier_two_sample_test(
        bkg, tru, classifier=HGBEnsemble(n_members=1, n_threads=args.threads),
        n_folds=cfg["two_sample"]["n_folds"], n_null=cfg["two_sample"]["n_null"], seed=seed,
    )  # fmt: skip
    t_two = time.perf_counter() - t1
    log.info("%s: two-sample AUC %.4f (null %.4f +- %.4f, analytic %.4f), %.0f s", name, ts.auc,
             ts.null_mean, ts.null_std, ts.analytic_null_std, t_two)  # fmt: skip

    # sculpting: held-out background, SR + SB, scored like the test set (mean of fold models)
    sc_cfg = cfg["sculpting"]
    s_sr, s_all = kf.predict(sculpt_sr_x), kf.predict(sculpt_all_x)
    m_sr, m_all = split.m[split.sculpt_sr], split.m[split.sculpt_all]
    n_bins = int(min(300, min(sc_cfg["eps_sel"]) * len(m_all) // sc_cfg["min_expected_per_bin"]))
    sculpt: dict[str, Any]
    if n_bins >= 2:
        sr_res = sculpting_test(m_sr, s_sr, m_all, s_all, eps_sel=sc_cfg["eps_sel"], n_bins=n_bins,
                                n_random=sc_cfg["n_random"], seed=seed)  # fmt: skip
        sculpt = {
            "n_bins": n_bins,
            "n_events": {"sr": len(m_sr), "all": len(m_all)},
            "eps_sel": sr_res.eps_sel,
            "chi2_ndof": sr_res.chi2_ndof,
            "ndof": sr_res.ndof,
            "random_chi2_ndof_mean": sr_res.random_chi2_ndof_mean,
            "random_chi2_ndof_std": sr_res.random_chi2_ndof_std,
            "n_selected": sr_res.n_selected,
            "sb_over_sr_selected_ratio": [
                float(((s_all > t).sum() - (s_sr > t).sum()) / max((s_sr > t).sum(), 1))
                for t in sr_res.thresholds
            ],
            "sb_over_sr_events_ratio": (len(m_all) - len(m_sr)) / len(m_sr),
        }
        log.info("%s: sculpting chi2/ndof %s (random %s)", name,
                 np.round(sr_res.chi2_ndof, 2).tolist(),
                 np.round(sr_res.random_chi2_ndof_mean, 2).tolist())  # fmt: skip
    else:
        sculpt = {"skipped": f"too few held-out events ({len(m_all)}) for the 1% cut"}
    return {
        "test": metrics,
        "test_bootstrap": boot,
        "two_sample": {
            "auc": ts.auc,
            "null_mean": ts.null_mean,
            "null_std": ts.null_std,
            "analytic_null_std": ts.analytic_null_std,
            "z": ts.z,
            "p_value": ts.p_value,
            "n_each": n,
            "n_folds": ts.n_folds,
            "n_null": len(ts.null_auc),
        },
        "sculpting": sculpt,
        "classifier_events": {"data": len(data_x), "background": len(background_x)},
        "seconds": {
            "classifier_kfold": t_fit,
            "test_scoring": t_score,
            "two_sample_test": t_two,
        },
        "classifier_seed": seed,
    }


# ---------------------------------------------------------------------------------- stages
def run_iad(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict) -> dict:
    x_d, _ = split.xm(split.data_sr)
    x_r, _ = split.xm(split.ref)
    return evaluate("iad", split, cfg, args, x_d, x_r, split.X[split.test],
                    split.X[split.sculpt_sr], split.X[split.sculpt_all],
                    split.X[split.test_bkg])  # fmt: skip


def cathode_flow(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict):
    """The CATHODE flow trained on the data sidebands (trained once per process)."""
    if "flow" not in cache:
        from sideband.background import CathodeTemplate

        x_sb, m_sb = split.xm(split.data_sb)
        t0 = time.perf_counter()
        flow = CathodeTemplate(**cfg["cathode"], seed=args.seed).fit(x_sb, m_sb)
        cache["flow"] = flow
        cache["flow_seconds"] = time.perf_counter() - t0
        h = flow.history_
        log.info("CATHODE flow: %d epochs in %.0f s, best val loss %.4f", len(h.epochs),
                 cache["flow_seconds"], float(np.min(h.val_loss)))  # fmt: skip
    return cache["flow"]


def flow_record(flow: Any, seconds: float, n_train: int) -> dict[str, Any]:
    h = flow.history_
    return {
        "params": flow.get_params(),
        "train_events": n_train,
        "epochs_trained": len(h.epochs),
        "best_epochs": h.best_epochs,
        "stopped_early": bool(h.stopped_early),
        "val_loss": h.val_loss,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / max(len(h.epochs), 1),
    }


def run_cathode(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict) -> dict:
    from sideband.background import KDEMassSampler

    flow = cathode_flow(split, cfg, args, cache)
    x_d, m_d = split.xm(split.data_sr)
    n_t = cfg["oversampling"] * len(x_d)
    t0 = time.perf_counter()
    sampler = KDEMassSampler(seed=args.seed + 11).fit(m_d, low_gev=SR_GEV[0], high_gev=SR_GEV[1])
    m_t = sampler.sample(n_t)
    template = flow.sample(m_t, seed=args.seed + 12)
    t_sample = time.perf_counter() - t0
    log.info("CATHODE: %d template events in %.1f s", n_t, t_sample)
    out = evaluate("cathode", split, cfg, args, x_d, template, split.X[split.test],
                   split.X[split.sculpt_sr], split.X[split.sculpt_all],
                   split.X[split.test_bkg])  # fmt: skip
    out["model"] = flow_record(flow, cache["flow_seconds"], len(split.data_sb))
    out["template_events"] = n_t
    out["seconds"].update(train=cache["flow_seconds"], sample=t_sample)
    out["mass_sampler"] = {"class": "KDEMassSampler", "bandwidth_gev": sampler.bandwidth_}
    return out


def run_lacathode(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict) -> dict:
    flow = cathode_flow(split, cfg, args, cache)
    x_d, m_d = split.xm(split.data_sr)
    t0 = time.perf_counter()
    z_d = flow.transform(x_d, m_d)
    z_test = flow.transform(*split.xm(split.test))
    z_ssr = flow.transform(*split.xm(split.sculpt_sr))
    z_sall = flow.transform(*split.xm(split.sculpt_all))
    t_map = time.perf_counter() - t0
    n_t = cfg["oversampling"] * len(x_d)
    template = np.random.default_rng(args.seed + 13).standard_normal((n_t, z_d.shape[1]))
    log.info("LaCATHODE: mapped %d events to the latent space in %.1f s",
             len(z_d) + len(z_test) + len(z_sall), t_map)  # fmt: skip
    out = evaluate("lacathode", split, cfg, args, z_d, template, z_test, z_ssr, z_sall,
                   z_ssr)  # fmt: skip
    out["model"] = {"same flow as cathode": True, "train_seconds": cache["flow_seconds"]}
    out["latent_data_sr"] = {"mean": z_d.mean(axis=0), "std": z_d.std(axis=0)}
    out["latent_test_background"] = {"mean": z_ssr.mean(axis=0), "std": z_ssr.std(axis=0)}
    out["template_events"] = n_t
    out["seconds"].update(train=cache["flow_seconds"], transform=t_map, sample=0.0)
    out["two_sample"]["space"] = "latent: N(0,1) vs transform(held-out SR QCD)"
    return out


def sigma_model(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict,
                interpolation: str):  # fmt: skip
    key = f"sigma_{interpolation}"
    if key not in cache:
        from sideband.background import SigmaTemplate

        x, m = split.xm(split.data)
        if "sigma_context" in cache:
            # training does not depend on the interpolation: same networks, no retraining.
            model = cache["sigma_context"].at_region(SR_GEV, interpolation=interpolation)
            cache[key], cache[f"{key}_seconds"] = model, 0.0
            cache[f"{key}_shared"] = True
            return model
        t0 = time.perf_counter()
        model = SigmaTemplate(**cfg["sigma"], interpolation=interpolation, signal_region=SR_GEV,
                              seed=args.seed).fit(x, m)  # fmt: skip
        cache[key] = model
        cache[f"{key}_seconds"] = time.perf_counter() - t0
        cache[f"{key}_shared"] = False
        log.info("SIGMA (%s): trained in %.0f s", interpolation, cache[f"{key}_seconds"])
    return cache[key]


def run_sigma_any(split: Split, cfg: dict[str, Any], args: argparse.Namespace, cache: dict,
                  interpolation: str, name: str) -> dict:  # fmt: skip
    from sideband.background import HistogramMassSampler

    model = sigma_model(split, cfg, args, cache, interpolation)
    x_d, m_d = split.xm(split.data_sr)
    n_t = cfg["oversampling"] * len(x_d)
    bins = cfg["histogram_mass_sampler"]["bins"]
    kw = {} if bins is None else {"bins": bins}
    t0 = time.perf_counter()
    sampler = HistogramMassSampler(**kw, seed=args.seed + 21).fit(
        m_d, low_gev=SR_GEV[0], high_gev=SR_GEV[1]
    )
    template = model.sample(n_t, mass_sampler=sampler, seed=args.seed + 22)
    t_sample = time.perf_counter() - t0
    log.info("SIGMA (%s): %d template events in %.1f s", interpolation, n_t, t_sample)
    out = evaluate(name, split, cfg, args, x_d, template, split.X[split.test],
                   split.X[split.sculpt_sr], split.X[split.sculpt_all],
                   split.X[split.test_bkg])  # fmt: skip
    h = model.history_
    out["model"] = {
        "params": model.get_params(),
        "train_events": len(split.data),
        "trained_on": "all data in the window (SR + sidebands, signal included)",
        "epochs_trained": len(h.epochs),
        "best_epochs": getattr(model, "best_epochs_", None),
        "val_loss": h.val_loss,
        "train_seconds": cache[f"sigma_{interpolation}_seconds"],
        "networks_shared_with_context_model": cache[f"sigma_{interpolation}_shared"],
    }
    out["template_events"] = n_t
    out["mass_sampler"] = {"class": "HistogramMassSampler", "bins": getattr(sampler, "bins", bins)}
    out["seconds"].update(train=cache[f"sigma_{interpolation}_seconds"], sample=t_sample)
    if interpolation == "context" and not args.no_scan:
        out["scan"] = sigma_scan(split, cfg, args, model)
    return out


def sigma_scan(split: Split, cfg: dict[str, Any], args: argparse.Namespace, model: Any) -> dict:
    """``at_region`` + sampling (oversampling x the data in each window) for 10 shifted SRs."""
    from sideband.background import HistogramMassSampler

    rows = []
    bins = cfg["histogram_mass_sampler"]["bins"]
    kw = {} if bins is None else {"bins": bins}
    m_data = split.m[split.data]
    for k, lo in enumerate(SCAN_LOWS_GEV):
        hi = lo + 400.0
        m_w = m_data[(m_data > lo) & (m_data < hi)]
        n_full = cfg["oversampling"] * len(m_w)
        n = min(n_full, args.scan_events) if args.scan_events else n_full
        t0 = time.perf_counter()
        shifted = model.at_region((lo, hi))
        sampler = HistogramMassSampler(**kw, seed=args.seed + 100 + k).fit(
            m_w, low_gev=lo, high_gev=hi
        )
        shifted.sample(n, mass_sampler=sampler, seed=args.seed + 200 + k)
        dt = time.perf_counter() - t0
        rows.append({"sr_gev": (lo, hi), "data_events": len(m_w), "template_events": n,
                     "seconds": dt, "seconds_extrapolated_to_full": dt * n_full / n})  # fmt: skip
        log.info("SIGMA scan: SR %g-%g GeV, %d events in %.1f s", lo, hi, n, dt)
    return {
        "regions": rows,
        "total_seconds": sum(r["seconds"] for r in rows),
        "total_seconds_extrapolated_to_full": sum(r["seconds_extrapolated_to_full"] for r in rows),
        "rule": "template events per SR: min(oversampling x data in the window, --scan-events); "
        "extrapolated linearly in the number of events to oversampling x data",
    }


RUNNERS = {
    "iad": run_iad,
    "cathode": run_cathode,
    "lacathode": run_lacathode,
    "sigma": lambda s, c, a, k: run_sigma_any(s, c, a, k, "context", "sigma"),
    "sigma_linear": lambda s, c, a, k: run_sigma_any(s, c, a, k, "linear", "sigma_linear"),
}


# ---------------------------------------------------------------------------------- record
def table(stages: dict[str, dict]) -> dict[str, Any]:
    """Headline numbers per method, SIC as fractions of the IAD, and 10-SR scan costs."""
    iad = stages.get("iad", {}).get("test")
    rows = {}
    for name, st in stages.items():
        t = st["test"]
        row = {
            "two_sample_auc": st["two_sample"]["auc"],
            "two_sample_null_std": st["two_sample"]["null_std"],
            "auc": t["auc"],
            "sic_at_1e-03": t["sic_at_1e-03"],
            "sic_at_1e-02": t["sic_at_1e-02"],
            "max_sic": t["max_sic"],
            "train_seconds": st["seconds"].get("train"),
            "sample_seconds": st["seconds"].get("sample"),
            "classifier_seconds": st["seconds"]["classifier_kfold"],
        }
        if iad is not None:
            for k in ("sic_at_1e-03", "sic_at_1e-02"):
                ok = iad[k] and t[k] is not None and not math.isnan(t[k])
                row[f"{k}_over_iad"] = t[k] / iad[k] if ok else None
        sc = st["sculpting"]
        if "chi2_ndof" in sc:
            row["sculpting_chi2_ndof"] = dict(zip(map(str, sc["eps_sel"]), sc["chi2_ndof"],
                                                  strict=True))  # fmt: skip
        rows[name] = row
    scan: dict[str, Any] = {"n_regions": len(SCAN_LOWS_GEV)}
    if "cathode" in stages:
        s = stages["cathode"]["seconds"]
        scan["cathode_projected_seconds"] = len(SCAN_LOWS_GEV) * (s["train"] + s["sample"])
        scan["cathode_rule"] = "10 x (flow training + sampling) measured for the benchmark SR"
    if "sigma" in stages and "scan" in stages["sigma"]:
        s = stages["sigma"]
        scan["sigma_seconds"] = s["seconds"]["train"] + s["scan"]["total_seconds"]
        scan["sigma_seconds_full_templates"] = (
            s["seconds"]["train"] + s["scan"]["total_seconds_extrapolated_to_full"]
        )
        scan["sigma_rule"] = "1 training + measured at_region + sampling for 10 shifted SRs"
    return {"methods": rows, "scan_10_sr": scan}


def record(args: argparse.Namespace, cfg: dict, split: Split, stages: dict, walls: dict) -> dict:
    import torch

    return {
        "what": "background templates (CATHODE, LaCATHODE, SIGMA) vs the IAD on the LHCO-like "
        "sample: test-set SIC, two-sample AUC against the true SR background, sculpting, cost",
        "key": key(args, cfg),
        "split": split.info,
        "settings": cfg,
        "stages_done": list(stages),
        "summary": table(stages),
        "stages": stages,
        "wall_seconds": walls,
        "max_sic_rule": ">= 25 background events kept (20% relative error on eps_B)",
        "caveat": "SIC at 1e-3 rests on ~{:.0f} test background events".format(
            1e-3 * split.info["test_background_qcd_sr"]
        ),
        "conditions": args.conditions,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "hgb_threads": args.threads,
            "device": "cpu",
            "cuda_available": bool(torch.cuda.is_available()),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "load_average_1_5_15": os.getloadavg(),
        },
        "versions": package_versions(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def code_state() -> dict[str, Any]:
    """Git HEAD, uncommitted files under src/ and checksums of the template modules (the code
    may change between stages run in different processes)."""
    import subprocess

    import sideband.background as bg
    from sideband.report import file_sha256

    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip()  # fmt: skip
        except (OSError, subprocess.CalledProcessError):
            return ""

    folder = Path(bg.__file__).parent
    return {
        "git_head": git("rev-parse", "HEAD"),
        "src_uncommitted": git("status", "--porcelain", "src").splitlines(),
        "sha256": {
            f.name: file_sha256(f)
            for f in sorted(folder.glob("*.py"))
            if f.stem in ("cathode", "sigma", "training", "mass_sampler")
        },
    }


def key(args: argparse.Namespace, cfg: dict) -> dict[str, Any]:
    """What must agree for stages of two runs to be merged into one file."""
    return {"seed": args.seed, "sb": args.sb, "quick": args.quick,
            "features": args.features, "input": str(args.input)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sb", type=float, default=2.2, help="S/sqrt(B) in the SR data")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--quick", action="store_true", help="1/5 of the events, tiny epochs")
    parser.add_argument("--features", nargs="+", default=None,
                        help="default: mj1 delta_mj tau21_j1 tau21_j2 (+ delta_r if present)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and HGB threads (1 is fastest on a busy 2-core machine)")  # fmt: skip
    parser.add_argument("--flow-epochs", type=int, default=40)
    parser.add_argument("--flow-patience", type=int, default=5)
    parser.add_argument("--sigma-epochs", type=int, default=40)
    parser.add_argument("--sigma-patience", type=int, default=5)
    parser.add_argument("--sigma-lr-patience", type=int, default=None,
                        help="SIGMA: lr x 0.3 after this many epochs without improvement")  # fmt: skip
    parser.add_argument("--sigma-ensemble", type=int, default=1,
                        help="SIGMA: sample from the n best epochs (the paper keeps 10)")  # fmt: skip
    parser.add_argument("--sigma-selection", choices=["cfm", "nll"], default="cfm",
                        help="SIGMA's validation loss: flow matching at fixed noise, or exact NLL")  # fmt: skip
    parser.add_argument("--scan-events", type=int, default=None,
                        help="cap on the SIGMA template events per scanned SR (timing only)")  # fmt: skip
    parser.add_argument("--no-scan", action="store_true", help="skip the SIGMA 10-SR timing")
    parser.add_argument("--mass-bins", type=int, default=None,
                        help="HistogramMassSampler bins (default: its own)")  # fmt: skip
    parser.add_argument("--input", type=Path, default=SHARED / "events_lhco_like.features.h5")
    parser.add_argument("--conditions", default="2-core machine shared with another agent",
                        help="recorded with the timings")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--fresh", action="store_true", help="ignore stages in an existing file")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    logging.getLogger("sideband").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)

    cfg = settings(args)
    tag = f"_sb{args.sb:g}" + (f"_seed{args.seed}" if args.seed else "")
    tag += "_quick" if args.quick else ""
    out = args.out / f"lhco_like_templates{tag}.json"

    start = time.perf_counter()
    split = Split(args)
    log.info("split: %s", {k: v for k, v in split.info.items() if isinstance(v, int | float)})

    stages: dict[str, dict] = {}
    walls: dict[str, float] = {}
    if out.exists() and not args.fresh:
        import json

        old = json.loads(out.read_text())
        if old.get("key") == key(args, cfg) and old.get("settings") == json.loads(json.dumps(cfg)):
            stages = {k: v for k, v in old.get("stages", {}).items() if k not in args.stages}
            walls = {k: v for k, v in old.get("wall_seconds", {}).items() if k in stages}
            if stages:
                log.info("keeping stages %s from %s", list(stages), out)
        else:
            log.warning("%s holds another split or settings; it will be overwritten", out)
    walls["split"] = time.perf_counter() - start
    write_json(out, record(args, cfg, split, stages, walls))

    cache: dict[str, Any] = {}
    for name in STAGES:
        if name not in args.stages:
            continue
        t0 = time.perf_counter()
        log.info("stage %s ...", name)
        try:
            stages[name] = RUNNERS[name](split, cfg, args, cache)
        except ImportError as err:  # SIGMA not there yet
            log.error("stage %s skipped: %s", name, err)
            continue
        stages[name]["code"] = code_state()
        walls[name] = time.perf_counter() - t0
        walls["total_this_run"] = time.perf_counter() - start
        write_json(out, record(args, cfg, split, dict(sorted(stages.items(),
                   key=lambda kv: STAGES.index(kv[0]))), walls))  # fmt: skip
        log.info("stage %s done in %.0f s; wrote %s", name, walls[name], out)
    log.info("all done in %.0f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()
