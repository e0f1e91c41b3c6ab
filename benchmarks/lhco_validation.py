"""Validate sideband's event features against the real LHCO R&D data (issue 7, item 4).

Usage: python benchmarks/lhco_validation.py [--data ../shared/data]
       [--out benchmarks/results/lhco_validation.json] [--n-null 5] [--seed 0]

Three measurements, all masses in GeV, SR = 3300 < m_JJ < 3700 GeV:

a. **Tiny real file, independent jets.** The 1,000 raw R&D events
   (``lhco_rnd/raw_tiny/events_anomalydetection_tiny.h5``, read with
   `sideband.events.iter_particles`) are clustered twice: by `sideband.features.cluster_dijets` +
   `dijet_features` (fastjet's awkward multi-event interface, four-momenta from numpy), and
   independently event by event with fastjet's classic interface (one `fastjet.ClusterSequence`
   of `PseudoJet` s per event, built with fastjet's own ``reset_PtYPhiM``; anti-kT R = 1.0,
   inclusive jets pT > 20 GeV, `fastjet.sorted_by_pt`), where each leading jet's four-momentum
   is the sum, with the `vector` library, of its constituent particles as massless
   (pt, eta, phi) vectors. Reports the largest relative deviation of mj1, mj2 (pT order), m_JJ,
   ptj1, ptj2 and the SR counts (the data README: 211 events, 69 signal).
b. **LHCO-like vs real in the SR.** LHCO-like features (Pythia 8, no detector simulation,
   exclusive-kT N-subjettiness axes) against the CATHODE SR files (official LHCO features,
   Delphes), separately for background and signal: mean, std, 10/50/90% quantiles of mj1,
   delta_mj, mj2 = mj1 + delta_mj, tau21_j1, tau21_j2 (and m_JJ), the per-feature two-sample AUC
   of the raw value (max(AUC, 1 - AUC)), the Kolmogorov-Smirnov statistic, and a 5-fold
   HistGradientBoosting classifier two-sample AUC on (mj1, delta_mj, tau21_j1, tau21_j2) with
   equal sample sizes (`sideband.evaluation.classifier_two_sample_test`, permutation null).
c. **Why tau21 differs.** The LHCO-like raw file (14,000 events) reclustered with
   ``axes="KT_Axes"`` and ``"OnePass_KT_Axes"`` (the official LHCO features match the latter):
   tau21 means and AUCs against the real SR per axes choice. The same for the tiny *real* file,
   whose particles did go through Delphes: what remains there is statistics only, what remains
   for the LHCO-like events is generator + detector (no pile-up, no smearing, massless particles
   with |eta| < 2.5). Also: whether the tiny events are rows of the CATHODE files (per-event
   match of m_JJ, mj1, delta_mj), particle multiplicities and soft fractions of both raw files,
   and the LHCO-like events reclustered after dropping particles below 0.5 and 1 GeV (Delphes
   energy-flow objects are fewer and harder than generator-level particles).

Writes one JSON file with the inputs (paths, sizes), the machine, package versions and runtimes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.events import iter_particles, read_features
from sideband.features import cluster_dijets, dijet_features
from sideband.records import FeatureTable
from sideband.report import environment, write_json

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = Path("lhco_rnd/raw_tiny/events_anomalydetection_tiny.h5")
LHCO_LIKE_FEATURES = Path("lhco_like/events_lhco_like.features.h5")
LHCO_LIKE_RAW = Path("lhco_like/events_lhco_like_raw.h5")
CATHODE_DIR = Path("lhco_rnd/cathode_sr")
REAL_SR_FILES = ("innerdata_train.npy", "innerdata_test.npy")
REAL_EXTRA_SIGNAL = "innerdata_extrasig.npy"

#: The R&D signal region in m_JJ [GeV].
SR_GEV: tuple[float, float] = (3300.0, 3700.0)
#: Columns compared one by one (GeV for masses); ``mj2`` = mj1 + delta_mj is the heavier jet.
COMPARED: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "mj2", "tau21_j1", "tau21_j2")
#: Columns of the multivariate two-sample test (the CATHODE auxiliary features).
MULTIVARIATE: tuple[str, ...] = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
#: Jet quantities compared between sideband and the independent computation (GeV).
TINY_QUANTITIES: tuple[str, ...] = ("mj1", "mj2", "mjj", "ptj1", "ptj2")
#: shared/data/README.md: anti-kT R = 1.0 clustering of the tiny file gives 211 SR events, 69 signal.
README_TINY_SR = {"events": 211, "signal": 69}
AXES: tuple[str, ...] = ("KT_Axes", "OnePass_KT_Axes")
#: pT thresholds [GeV] applied to the LHCO-like particles before reclustering (part c).
SOFT_THRESHOLDS_GEV: tuple[float, ...] = (0.5, 1.0)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def need(path: Path) -> Path:
    """Return `path`, or raise `InputError` naming the missing data file and the fix."""
    if not path.exists():
        msg = (
            f"data file {path} not found; pass --data pointing at the shared data folder "
            "(../shared/data beside the repository, see its README.md)"
        )
        raise InputError(msg)
    return path


def read_raw(path: Path, *, stop: int | None = None) -> tuple[ak.Array, np.ndarray]:
    """Particles and labels of an LHCO raw file via `sideband.events.iter_particles`.

    Returns the jagged particle records ``{pt [GeV], eta, phi}`` of the first `stop` events
    (all by default) and their labels, int8 array (N,).
    """
    chunks = list(iter_particles(need(path), chunk_size=5_000, stop=stop))
    events = ak.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return events.particles, np.asarray(events.label, dtype=np.int8)


def with_mj2(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feature columns plus ``mj2`` = mj1 + delta_mj [GeV] (the heavier jet), each (N,)."""
    out = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    out["mj2"] = out["mj1"] + out["delta_mj"]
    return out


def in_sr(mjj_gev: np.ndarray) -> np.ndarray:
    """Boolean mask (N,) of 3300 < m_JJ < 3700 GeV."""
    return (mjj_gev > SR_GEV[0]) & (mjj_gev < SR_GEV[1])


def split_by_label(
    columns: Mapping[str, np.ndarray], label: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """``{"background": cols[label 0], "signal": cols[label 1]}``, restricted to `mask`."""
    keep = np.ones(len(label), bool) if mask is None else np.asarray(mask, bool)
    return {
        name: {k: v[keep & (label == lab)] for k, v in columns.items()}
        for name, lab in (("background", 0), ("signal", 1))
    }


def table_sr(table: FeatureTable) -> dict[str, dict[str, np.ndarray]]:
    """SR rows of a labelled FeatureTable, split into background and signal, with ``mj2``."""
    if table.label is None:
        msg = f"{table.source or 'feature table'} has no labels; the comparison needs them"
        raise InputError(msg)
    cols = with_mj2({k: table.columns[k] for k in ("mjj", "mj1", "delta_mj", *MULTIVARIATE[2:])})
    return split_by_label(cols, table.label, in_sr(cols["mjj"]))


# --------------------------------------------------------------------------------------------
# a. independent jets: fastjet's classic interface per event + vector sums of constituents
# --------------------------------------------------------------------------------------------


def independent_dijets(
    particles: ak.Array, *, r: float = 1.0, min_jet_pt_gev: float = 20.0
) -> dict[str, np.ndarray]:
    """Two pT-leading anti-kT jets per event, computed without sideband's clustering code.

    One `fastjet.ClusterSequence` per event on `PseudoJet` s set with fastjet's
    ``reset_PtYPhiM(pt, eta, phi, 0)`` (massless: rapidity = eta), inclusive jets above
    `min_jet_pt_gev` sorted with `fastjet.sorted_by_pt`; each jet's four-momentum is the `vector`
    sum of its constituents taken back from the input (pt, eta, phi) by their user index.

    Returns float64 arrays (N,): ``mj1``, ``mj2``, ``ptj1``, ``ptj2`` (jets in pT order), ``mjj``
    [GeV] (NaN where fewer than 2 jets) and int64 ``n_jets``.
    """
    import fastjet
    import vector

    n = len(particles)
    out = {k: np.full(n, np.nan) for k in TINY_QUANTITIES}
    n_jets = np.zeros(n, np.int64)
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, float(r))
    for i in range(n):
        pt = np.asarray(particles[i].pt, dtype=np.float64)
        eta = np.asarray(particles[i].eta, dtype=np.float64)
        phi = np.asarray(particles[i].phi, dtype=np.float64)
        keep = np.flatnonzero(pt > 0)
        inputs = []
        for k in keep:
            pj = fastjet.PseudoJet()
            pj.reset_PtYPhiM(float(pt[k]), float(eta[k]), float(phi[k]), 0.0)
            pj.set_user_index(int(k))
            inputs.append(pj)
        seq = fastjet.ClusterSequence(inputs, jetdef)
        jets = fastjet.sorted_by_pt(seq.inclusive_jets(float(min_jet_pt_gev)))
        n_jets[i] = len(jets)
        if len(jets) < 2:
            continue
        sums = []
        for jet in jets[:2]:
            idx = np.array([c.user_index() for c in jet.constituents()], dtype=np.int64)
            parts = vector.array(
                {"pt": pt[idx], "eta": eta[idx], "phi": phi[idx], "mass": np.zeros(len(idx))}
            )
            total = parts.sum()  # a 0-d record array (x, y, z, t); make it a vector object
            sums.append(
                vector.obj(
                    px=float(total.px), py=float(total.py), pz=float(total.pz), E=float(total.E)
                )
            )
        for k, jet in enumerate(sums, start=1):
            out[f"mj{k}"][i] = float(jet.mass)
            out[f"ptj{k}"][i] = float(jet.pt)
        out["mjj"][i] = float((sums[0] + sums[1]).mass)
    return {**out, "n_jets": n_jets}


def max_relative_deviation(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / |b| over rows where both are finite (NaN if there are none)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b) & (b != 0)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))) if ok.any() else float("nan")


def compare_tiny(particles: ak.Array, labels: np.ndarray) -> dict[str, Any]:
    """sideband's jets vs `independent_dijets` on the same events: deviations and SR counts."""
    jets = cluster_dijets(particles)
    feats = dijet_features(jets)
    ours = {
        "mj1": jets["mj1"],
        "mj2": jets["mj2"],
        "mjj": feats["mjj"],
        "ptj1": jets["ptj1"],
        "ptj2": jets["ptj2"],
    }
    ref = independent_dijets(particles)
    deviations = {q: max_relative_deviation(ours[q], ref[q]) for q in TINY_QUANTITIES}
    counts = {}
    for name, mjj in (("sideband", feats["mjj"]), ("independent", ref["mjj"])):
        sr = in_sr(mjj)
        counts[name] = {"events": int(sr.sum()), "signal": int((sr & (labels == 1)).sum())}
    return {
        "n_events": len(labels),
        "n_signal": int((labels == 1).sum()),
        "n_with_two_jets": {
            "sideband": int(jets["has_dijet"].sum()),
            "independent": int((ref["n_jets"] >= 2).sum()),
        },
        "n_jets_identical": bool(np.array_equal(jets["n_jets"], ref["n_jets"])),
        "max_relative_deviation": deviations,
        "sr_counts": {**counts, "data_readme": README_TINY_SR},
    }


def cathode_row_matches(
    feats: Mapping[str, np.ndarray],
    real_tev: np.ndarray,
    *,
    rtol: float = 1e-5,
    atol_gev: float = 0.05,
) -> int:
    """How many events of `feats` (GeV) have a CATHODE row (N, >= 3, TeV) whose m_JJ agrees
    within `rtol` and whose mj1 and delta_mj agree within `atol_gev` [GeV]. Chance matches are
    about 1e-5 per event; 0 means the events are not in those files (or were clustered
    differently), so the comparison with the official features can only be statistical."""
    order = np.argsort(real_tev[:, 0])
    mjj_sorted = real_tev[order, 0] * 1000.0
    hits = 0
    for mjj, mj1, dm in zip(feats["mjj"], feats["mj1"], feats["delta_mj"], strict=True):
        lo, hi = np.searchsorted(mjj_sorted, [mjj * (1 - rtol), mjj * (1 + rtol)])
        rows = real_tev[order[lo:hi]] * 1000.0
        ok = (np.abs(rows[:, 1] - mj1) <= atol_gev) & (np.abs(rows[:, 2] - dm) <= atol_gev)
        hits += bool(ok.any())
    return hits


def particle_summary(particles: ak.Array) -> dict[str, float]:
    """Mean particle multiplicity per event, fraction of particles with pT < 0.5 and < 1 GeV,
    1% quantile of the pT [GeV] and the largest |eta| of jagged particles ``{pt, eta, phi}``."""
    pt = np.asarray(ak.flatten(particles.pt), np.float64)
    eta = np.asarray(ak.flatten(particles.eta), np.float64)
    return {
        "multiplicity_mean": float(np.mean(np.asarray(ak.num(particles, axis=1)))),
        "fraction_pt_below_0.5_gev": float(np.mean(pt < 0.5)),
        "fraction_pt_below_1_gev": float(np.mean(pt < 1.0)),
        "pt_q01_gev": float(np.quantile(pt, 0.01)),
        "abs_eta_max": float(np.max(np.abs(eta))),
    }


def tau21_decomposition(
    kt: Mapping[str, np.ndarray], one_pass: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Mean differences of tau21_j1 with KT_Axes and OnePass_KT_Axes vs `real`, and the share of
    the KT_Axes difference that switching the axes removes: (KT - OnePass) / (KT - real)."""
    m_kt, m_op, m_real = (float(np.mean(x["tau21_j1"])) for x in (kt, one_pass, real))
    return {
        "kt_minus_real": m_kt - m_real,
        "one_pass_minus_real": m_op - m_real,
        "axes_share": (m_kt - m_op) / (m_kt - m_real) if m_kt != m_real else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# b. two-sample comparisons
# --------------------------------------------------------------------------------------------


def describe(x: np.ndarray) -> dict[str, float]:
    """n, mean, std and the 10/50/90% quantiles of a 1-d sample (units of `x`)."""
    x = np.asarray(x, np.float64)
    q10, q50, q90 = np.quantile(x, [0.1, 0.5, 0.9])
    return {
        "n": len(x),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)),
        "q10": float(q10),
        "q50": float(q50),
        "q90": float(q90),
    }


def symmetric_auc(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample AUC of the raw value of one feature, a (N_a,) vs b (N_b,), as
    max(AUC, 1 - AUC): 0.5 for identical distributions, 1 for disjoint ones."""
    from sideband.evaluation.metrics import auc

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    value = auc(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b])
    return float(max(value, 1.0 - value))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic sup |F_a - F_b| of two 1-d samples."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).statistic)


def compare_features(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    names: Sequence[str],
    *,
    labels: tuple[str, str] = ("lhco_like", "real"),
) -> dict[str, dict[str, Any]]:
    """Per feature: `describe` of both samples, mean difference (a - b), symmetric AUC, KS."""
    out = {}
    for name in names:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        out[name] = {
            labels[0]: describe(x),
            labels[1]: describe(y),
            "mean_difference": float(x.mean() - y.mean()),
            "auc": symmetric_auc(x, y),
            "ks": ks_statistic(x, y),
        }
    return out


def equal_sizes(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random subsample (rows kept in order) of the larger of a (N_a, d), b (N_b, d) to the size
    of the smaller."""
    n = min(len(a), len(b))

    def pick(x: np.ndarray) -> np.ndarray:
        return x[np.sort(rng.choice(len(x), n, replace=False))] if len(x) > n else x

    return pick(a), pick(b)


def multivariate_auc(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    names: Sequence[str] = MULTIVARIATE,
    *,
    n_folds: int = 5,
    n_null: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """k-fold HistGradientBoosting two-sample AUC of a vs b on `names`, equal sample sizes.

    Uses `sideband.evaluation.classifier_two_sample_test` (``HGBEnsemble(n_members=1)``, one
    thread, out-of-fold scores, `n_null` label permutations for the null spread). Returns the
    AUC, null mean/std, the analytic (Mann-Whitney) null std, sample size and features.
    """
    from sideband.evaluation.two_sample import classifier_two_sample_test
    from sideband.scoring import HGBEnsemble

    rng = np.random.default_rng(seed)
    xa = np.column_stack([a[n] for n in names])
    xb = np.column_stack([b[n] for n in names])
    xa, xb = equal_sizes(xa, xb, rng)
    res = classifier_two_sample_test(
        xa,
        xb,
        classifier=HGBEnsemble(n_members=1, n_threads=1),
        n_folds=n_folds,
        n_null=n_null,
        seed=seed,
    )
    return {
        "features": list(names),
        "n_each": res.n_a,
        "auc": res.auc,
        "null_mean": res.null_mean,
        "null_std": res.null_std,
        "analytic_null_std": res.analytic_null_std,
        "n_folds": res.n_folds,
        "n_null": len(res.null_auc),
    }


def fraction_above_1(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fraction of events with tau21 > 1 (tau2 > tau1: non-optimal axes) for both jets."""
    return {t: float(np.mean(columns[t] > 1.0)) for t in ("tau21_j1", "tau21_j2")}


def auc_summary(block: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``{feature: symmetric AUC}`` of a `compare_features` result."""
    return {name: round(v["auc"], 4) for name, v in block.items()}


# --------------------------------------------------------------------------------------------
# c. N-subjettiness axes
# --------------------------------------------------------------------------------------------


def recluster_sr(
    particles: ak.Array, labels: np.ndarray, axes: str
) -> dict[str, dict[str, np.ndarray]]:
    """Cluster with `cluster_dijets(axes=axes)`; SR events split by label, with ``mj2``."""
    feats = with_mj2(dijet_features(cluster_dijets(particles, axes=axes)))
    ok = np.isfinite(feats["mjj"])
    return split_by_label(feats, labels, ok & in_sr(np.nan_to_num(feats["mjj"])))


def axes_study(
    samples: Mapping[str, Mapping[str, dict[str, np.ndarray]]],
    real: Mapping[str, Mapping[str, np.ndarray]],
    *,
    n_null: int,
    seed: int,
    multivariate: bool = True,
) -> dict[str, Any]:
    """For each axes choice in `samples` ({axes: {"background"|"signal": cols}}): tau21 means,
    per-feature AUC and KS vs `real` and (optionally) the multivariate AUC."""
    out: dict[str, Any] = {}
    for axes, split in samples.items():
        out[axes] = {}
        for kind in ("background", "signal"):
            block = compare_features(split[kind], real[kind], COMPARED)
            entry: dict[str, Any] = {
                "n": len(split[kind]["mjj"]),
                "tau21_mean": {
                    t: round(block[t]["lhco_like"]["mean"], 4) for t in ("tau21_j1", "tau21_j2")
                },
                "tau21_max": {t: float(np.max(split[kind][t])) for t in ("tau21_j1", "tau21_j2")},
                "tau21_fraction_above_1": fraction_above_1(split[kind]),
                "features": block,
            }
            if multivariate:
                entry["multivariate"] = multivariate_auc(
                    split[kind], real[kind], n_null=n_null, seed=seed
                )
            out[axes][kind] = entry
    return out


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def _file_info(path: Path, rows: int) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lhco_validation.json"))
    parser.add_argument("--n-null", type=int, default=5, help="permutations per two-sample test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="", help="recorded with the numbers")
    args = parser.parse_args()
    data = args.data
    runtime: dict[str, float] = {}
    inputs: dict[str, Any] = {}
    t_all = time.perf_counter()

    # a. tiny real file --------------------------------------------------------------------
    t0 = time.perf_counter()
    tiny_path = need(data / TINY)
    tiny_parts, tiny_labels = read_raw(tiny_path)
    inputs["tiny_raw"] = _file_info(tiny_path, len(tiny_labels))
    tiny = compare_tiny(tiny_parts, tiny_labels)
    runtime["a_tiny_independent_s"] = round(time.perf_counter() - t0, 2)
    print("a. tiny:", tiny["max_relative_deviation"], tiny["sr_counts"])

    # b. LHCO-like vs real SR ---------------------------------------------------------------
    t0 = time.perf_counter()
    like_path = need(data / LHCO_LIKE_FEATURES)
    like_table = read_features(like_path)
    inputs["lhco_like_features"] = _file_info(like_path, len(like_table))
    like = table_sr(like_table)
    real_tables = []
    for name in REAL_SR_FILES:
        path = need(data / CATHODE_DIR / name)
        real_tables.append(read_features(path))
        inputs[name] = _file_info(path, len(real_tables[-1]))
    real_sr = FeatureTable.concatenate(real_tables)
    real = table_sr(real_sr)
    extra_path = need(data / CATHODE_DIR / REAL_EXTRA_SIGNAL)
    extra = read_features(extra_path)
    inputs[REAL_EXTRA_SIGNAL] = _file_info(extra_path, len(extra))
    extra_sig = table_sr(extra)["signal"]
    real["signal"] = {k: np.r_[real["signal"][k], extra_sig[k]] for k in real["signal"]}
    comparison: dict[str, Any] = {}
    for kind in ("background", "signal"):
        block = compare_features(like[kind], real[kind], COMPARED)
        comparison[kind] = {
            "n_lhco_like": len(like[kind]["mjj"]),
            "n_real": len(real[kind]["mjj"]),
            "tau21_fraction_above_1": {
                "lhco_like": fraction_above_1(like[kind]),
                "real": fraction_above_1(real[kind]),
            },
            "features": block,
            "multivariate": multivariate_auc(like[kind], real[kind], n_null=args.n_null),
            "multivariate_masses": multivariate_auc(
                like[kind], real[kind], ("mj1", "delta_mj"), n_null=args.n_null
            ),
            "multivariate_tau21": multivariate_auc(
                like[kind], real[kind], ("tau21_j1", "tau21_j2"), n_null=args.n_null
            ),
        }
        print(f"b. {kind}: per-feature AUC", auc_summary(block))
        print(f"b. {kind}: multivariate AUC", round(comparison[kind]["multivariate"]["auc"], 4))
    runtime["b_sr_comparison_s"] = round(time.perf_counter() - t0, 2)

    # c. axes choice: LHCO-like raw events and the real tiny events, both reclustered ---------
    t0 = time.perf_counter()
    raw_path = need(data / LHCO_LIKE_RAW)
    raw_parts, raw_labels = read_raw(raw_path)
    inputs["lhco_like_raw"] = _file_info(raw_path, len(raw_labels))
    raw_sr = {}
    for axes in AXES:
        t1 = time.perf_counter()
        raw_sr[axes] = recluster_sr(raw_parts, raw_labels, axes)
        runtime[f"c_cluster_raw_{axes}_s"] = round(time.perf_counter() - t1, 2)
    lhco_like_axes = axes_study(raw_sr, real, n_null=args.n_null, seed=args.seed)
    # the raw file's KT_Axes events vs the features file (same generator and axes): ~0.5 expected
    raw_vs_file = {
        kind: auc_summary(compare_features(raw_sr["KT_Axes"][kind], like[kind], COMPARED))
        for kind in ("background", "signal")
    }
    tiny_sr = {axes: recluster_sr(tiny_parts, tiny_labels, axes) for axes in AXES}
    real_tiny_axes = axes_study(
        tiny_sr, real, n_null=args.n_null, seed=args.seed, multivariate=False
    )
    decomposition = {
        name: tau21_decomposition(
            split["KT_Axes"]["background"],
            split["OnePass_KT_Axes"]["background"],
            real["background"],
        )
        for name, split in (("lhco_like_raw", raw_sr), ("real_tiny", tiny_sr))
    }
    # are the tiny events among the CATHODE rows? (then features could be compared per event)
    all_real = np.concatenate(
        [np.load(need(data / CATHODE_DIR / n)) for n in (*REAL_SR_FILES, REAL_EXTRA_SIGNAL)]
    )
    matches = sum(
        cathode_row_matches(tiny_sr["OnePass_KT_Axes"][k], all_real)
        for k in ("background", "signal")
    )
    # what remains: soft particles. Delphes eflow objects vs generator-level particles; drop the
    # LHCO-like particles below a pT threshold and recluster (OnePass_KT_Axes).
    soft: dict[str, Any] = {
        "particles": {
            "real_tiny": particle_summary(tiny_parts),
            "lhco_like_raw": particle_summary(raw_parts),
        }
    }
    for threshold in SOFT_THRESHOLDS_GEV:
        t1 = time.perf_counter()
        split = recluster_sr(raw_parts[raw_parts.pt > threshold], raw_labels, "OnePass_KT_Axes")
        soft[f"pt_above_{threshold:g}_gev"] = {
            kind: {
                name: {
                    "mean": round(float(np.mean(split[kind][name])), 4),
                    "real_mean": round(float(np.mean(real[kind][name])), 4),
                    "auc": round(symmetric_auc(split[kind][name], real[kind][name]), 4),
                }
                for name in ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
            }
            for kind in ("background", "signal")
        }
        runtime[f"c_cluster_raw_pt_above_{threshold:g}_s"] = round(time.perf_counter() - t1, 2)
    runtime["c_axes_study_s"] = round(time.perf_counter() - t0, 2)
    for name, dec in decomposition.items():
        print(f"c. {name}: tau21_j1 background mean difference", dec)
    for key, block in soft.items():
        if key.startswith("pt_above"):
            print(f"c. LHCO-like {key}, background:", block["background"])
    runtime["total_s"] = round(time.perf_counter() - t_all, 2)

    write_json(
        args.out,
        {
            "what": (
                "validation of sideband's features on real LHCO R&D data: (a) tiny raw file, "
                "sideband cluster_dijets + dijet_features vs an independent per-event fastjet "
                "ClusterSequence + vector sums of constituents; (b) LHCO-like (Pythia 8, no "
                "detector) vs real CATHODE SR features, 3300 < mjj < 3700 GeV; (c) tau21 with "
                "KT_Axes vs OnePass_KT_Axes on reclustered LHCO-like and real tiny events"
            ),
            "units": "GeV; AUC = max(AUC, 1 - AUC) of the raw feature, 0.5 = identical",
            "signal_region_gev": list(SR_GEV),
            "inputs": inputs,
            **environment(args.conditions),
            "runtime_s": runtime,
            "seed": args.seed,
            "tiny_independent": tiny,
            "sr_comparison": comparison,
            "axes_study": {
                "lhco_like_raw": lhco_like_axes,
                "lhco_like_raw_kt_vs_features_file_auc": raw_vs_file,
                "real_tiny": real_tiny_axes,
                "tau21_j1_background_mean_decomposition": decomposition,
                "real_tiny_events_found_in_cathode_files": matches,
                "soft_particles": soft,
            },
        },
    )
    print("wrote", args.out, "in", runtime["total_s"], "s")


if __name__ == "__main__":
    main()
