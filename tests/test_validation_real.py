"""Validation against real LHCO R&D data (issue 7, item 4), using the helpers of
benchmarks/lhco_validation.py (the full measurement writes benchmarks/results/lhco_validation.json).

- sideband's jets on the real tiny file agree with an independent computation: one classic
  fastjet ClusterSequence per event and `vector` sums of each jet's constituent particles;
- the LHCO-like vs real SR comparison helpers give AUC ~ 0.5 for a sample against itself, and the
  differences they find are the physically stable ones;
- on real (Delphes) particles, OnePass_KT_Axes reproduce the official LHCO tau21 while
  exclusive-kT axes give larger tau21.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from sideband.events import read_features
from sideband.features import cluster_dijets, dijet_features
from sideband.records import FeatureTable

val = load_benchmark("lhco_validation")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


@pytest.fixture(scope="module")
def tiny(shared_data):
    """Particles and labels of the 1,000 real events of the tiny R&D file."""
    return val.read_raw(_need(shared_data / val.TINY))


@pytest.fixture(scope="module")
def sr_samples(shared_data):
    """SR (3.3-3.7 TeV) features of the LHCO-like file and of the real CATHODE SR files,
    each split into background and signal, GeV."""
    like = val.table_sr(read_features(_need(shared_data / val.LHCO_LIKE_FEATURES)))
    real_table = FeatureTable.concatenate(
        [read_features(_need(shared_data / val.CATHODE_DIR / n)) for n in val.REAL_SR_FILES]
    )
    return like, val.table_sr(real_table)


# --------------------------------------------------------------------------------------------
# a. sideband's jets vs fastjet per event + vector constituent sums
# --------------------------------------------------------------------------------------------


def test_tiny_jets_match_independent_fastjet_vector(tiny):
    particles, labels = tiny
    n = 200
    res = val.compare_tiny(particles[:n], labels[:n])
    assert res["n_events"] == n
    assert res["n_jets_identical"]  # same inclusive jets above 20 GeV in every event
    assert res["n_with_two_jets"]["sideband"] == res["n_with_two_jets"]["independent"] == n
    # same clustering, different code paths and four-vector arithmetic: only round-off differs
    # (measured on all 1,000 events: <= 4e-12 for the jet masses, ~1e-15 for mjj and pT)
    for q in val.TINY_QUANTITIES:
        assert res["max_relative_deviation"][q] < 1e-6, q
    counts = res["sr_counts"]
    assert counts["sideband"] == counts["independent"]
    assert 0 < counts["sideband"]["events"] < n


def test_independent_jets_detect_a_wrong_radius(tiny):
    # the comparison can fail: sideband's jets with R = 0.8 differ from the R = 1.0 reference
    particles, _ = tiny
    sub = particles[:20]
    ref = val.independent_dijets(sub)
    other = cluster_dijets(sub, r=0.8)
    assert val.max_relative_deviation(other["mj1"], ref["mj1"]) > 1e-3
    same = cluster_dijets(sub)
    np.testing.assert_allclose(same["mj2"], ref["mj2"], rtol=1e-9)
    np.testing.assert_allclose(dijet_features(same)["mjj"], ref["mjj"], rtol=1e-9)


# --------------------------------------------------------------------------------------------
# b. LHCO-like vs real in the SR: the helpers, and what is physically stable
# --------------------------------------------------------------------------------------------


def test_two_sample_helpers_give_half_for_a_sample_vs_itself(sr_samples):
    _, real = sr_samples
    background = real["background"]  # ~121k real QCD events in the SR
    rng = np.random.default_rng(1)
    half = rng.permutation(len(background["mjj"])) < len(background["mjj"]) // 2
    a = {k: v[half] for k, v in background.items()}
    b = {k: v[~half] for k, v in background.items()}
    for name in val.COMPARED:
        # two halves of ~60k: the AUC's null spread is 0.0017, max(AUC, 1-AUC) - 0.5 < 0.01
        # is a ~6 sigma bound; KS 95% point is 1.36 sqrt(2/60k) = 0.008
        assert 0.5 <= val.symmetric_auc(a[name], b[name]) < 0.51, name
        assert val.ks_statistic(a[name], b[name]) < 0.015, name
    # classifier test on 2,000 vs 2,000 events: Mann-Whitney null spread 0.009. Out-of-fold
    # scores of identical samples sit slightly *below* 0.5 (measured 0.481-0.491 over 3 seeds,
    # as do the permutation nulls): 0.04 covers that bias plus ~2 sigma
    small_a = {k: v[:2000] for k, v in a.items()}
    small_b = {k: v[:2000] for k, v in b.items()}
    res = val.multivariate_auc(small_a, small_b, n_folds=5, n_null=2, seed=3)
    assert res["n_each"] == 2000
    assert abs(res["auc"] - 0.5) < 0.04
    assert abs(res["auc"] - res["null_mean"]) < 0.03
    # and an identical copy is indistinguishable feature by feature
    assert val.symmetric_auc(a["mj1"], a["mj1"]) == pytest.approx(0.5)


def test_lhco_like_vs_real_background_in_sr(sr_samples):
    like, real = sr_samples
    bkg_like, bkg_real = like["background"], real["background"]
    # data README: 41,202 LHCO-like QCD events in the SR; the CATHODE SR holds 121,352 QCD
    assert abs(len(bkg_like["mjj"]) - 41_202) <= 5
    assert len(bkg_real["mjj"]) == 121_352
    mean = {k: (bkg_like[k].mean(), bkg_real[k].mean()) for k in val.COMPARED}
    # tau21 of the heavier jet agrees (measured 0.475 vs 0.480); means of ~40k/120k events with
    # std ~0.2 are known to 0.001, so 0.05 leaves room for generator changes, not for a bug
    assert abs(mean["tau21_j2"][0] - mean["tau21_j2"][1]) < 0.05
    # tau21 of the lighter jet does not (0.662 vs 0.579): exclusive-kT axes (the LHCO-like file)
    # vs the official OnePass axes, plus no detector simulation; see the benchmark, part c
    assert mean["tau21_j1"][0] - mean["tau21_j1"][1] > 0.05
    # the heavier jet's mass agrees within 5% (311 vs 308 GeV); m_JJ within the SR has the
    # same falling shape in both (AUC 0.500): both are well above their triggers' turn-on
    assert abs(mean["mj2"][0] / mean["mj2"][1] - 1) < 0.05
    assert val.symmetric_auc(bkg_like["mjj"], bkg_real["mjj"]) < 0.52
    # together the differences are visible to a classifier (0.758 on 41k each, 0.728 on the 3k
    # each used here; null spread ~0.007), mostly through tau21_j1 and mj1
    res = val.multivariate_auc(
        {k: v[:3000] for k, v in bkg_like.items()},
        {k: v[:3000] for k, v in bkg_real.items()},
        n_null=2,
    )
    assert res["auc"] > 0.65


# --------------------------------------------------------------------------------------------
# c. axes: real particles reclustered with OnePass_KT_Axes reproduce the official tau21
# --------------------------------------------------------------------------------------------


def test_one_pass_axes_reproduce_official_tau21_on_real_particles(tiny, sr_samples):
    particles, labels = tiny
    _, real = sr_samples
    sr = val.in_sr(dijet_features(cluster_dijets(particles))["mjj"])
    assert int(sr.sum()) == 211  # data README: 211 SR events, 69 signal
    kt = val.recluster_sr(particles[sr], labels[sr], "KT_Axes")["background"]
    one_pass = val.recluster_sr(particles[sr], labels[sr], "OnePass_KT_Axes")["background"]
    official = float(real["background"]["tau21_j1"].mean())  # 0.579
    assert len(one_pass["tau21_j1"]) == 142
    # 142 events with std ~0.18: the mean is known to 0.015; measured 0.578 (OnePass) and
    # 0.610 (exclusive kT) against the official 0.579
    assert abs(float(one_pass["tau21_j1"].mean()) - official) < 0.045
    # the minimisation pass never raises tau_N: tau21 drops (and stays <= 1, as officially)
    assert float(kt["tau21_j1"].mean()) > float(one_pass["tau21_j1"].mean())
    assert float(one_pass["tau21_j1"].max()) <= 1.0
    assert float(kt["tau21_j1"].max()) > 1.0
