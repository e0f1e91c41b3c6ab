"""Tests of sideband.features: anti-kT dijets, N-subjettiness, dijet features, coffea processor."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from sideband.errors import ConfigError, InputError
from sideband.features import cluster_dijets, dijet_features, extract_features
from sideband.features.processor import DijetFeatureProcessor, collect_features
from sideband.records import FEATURE_COLUMNS, FeatureTable

DATA = Path(__file__).parents[1].parent / "shared" / "data"
TINY = DATA / "lhco_rnd" / "raw_tiny" / "events_anomalydetection_tiny.h5"
LHCO_LIKE_FEATURES = DATA / "lhco_like" / "events_lhco_like.features.h5"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


# --------------------------------------------------------------------------------------------
# helpers: events built by hand, and independent (numpy) jet maths
# --------------------------------------------------------------------------------------------


def _spray(rng, n, pt, eta0, phi0, sigma):
    """n massless particles sharing `pt` [GeV], Gaussian around (eta0, phi0)."""
    return (
        np.full(n, pt / n),
        eta0 + sigma * rng.standard_normal(n),
        phi0 + sigma * rng.standard_normal(n),
    )


def _join(*sprays):
    pt, eta, phi = (np.concatenate(parts) for parts in zip(*sprays, strict=True))
    return pt, eta, (phi + np.pi) % (2 * np.pi) - np.pi


def _events(*events):
    """Awkward array of events from (pt, eta, phi) triplets of numpy arrays."""
    return ak.zip(
        {
            "pt": ak.Array([e[0] for e in events]),
            "eta": ak.Array([e[1] for e in events]),
            "phi": ak.Array([e[2] for e in events]),
        }
    )


def _four(pt, eta, phi):
    """(4, n) massless four-momenta px, py, pz, E [GeV]."""
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)])


def _mass(p):
    return np.sqrt(np.maximum(p[3] ** 2 - p[0] ** 2 - p[1] ** 2 - p[2] ** 2, 0.0))


def _tau(pt, eta, phi, axes):
    """Unnormalised N-subjettiness, beta = 1: sum_i pT_i min_k Delta R(i, axis_k) (rapidity)."""
    dist = []
    for px, py, pz, e in axes:
        y = 0.5 * np.log((e + pz) / (e - pz))
        dphi = (phi - np.arctan2(py, px) + np.pi) % (2 * np.pi) - np.pi
        dist.append(np.hypot(eta - y, dphi))
    return float(np.sum(pt * np.min(dist, axis=0)))


def _read_tiny(n: int | None = None):
    """The tiny LHCO raw file via pandas: (particles, labels) of the first n events."""
    values = pd.read_hdf(_need(TINY), "df").to_numpy()[:n]
    x = values[:, :2100].reshape(-1, 700, 3)
    keep = x[:, :, 0] > 0
    counts = keep.sum(axis=1)
    parts = ak.zip(
        {k: ak.unflatten(x[:, :, i][keep], counts) for i, k in enumerate(("pt", "eta", "phi"))}
    )
    return parts, values[:, 2100].astype(np.int8)


@pytest.fixture(scope="module")
def tiny():
    parts, labels = _read_tiny()
    jets = cluster_dijets(parts)
    return parts, labels, jets, dijet_features(jets)


def _write_flat_parquet(path: Path, parts: ak.Array, labels: np.ndarray, **names: str) -> Path:
    names = {"pt": "part_pt", "eta": "part_eta", "phi": "part_phi", **names}
    data = {names[k]: parts[k] for k in ("pt", "eta", "phi")}
    data["label"] = labels
    ak.to_parquet(ak.zip(data, depth_limit=1), path)
    return path


# --------------------------------------------------------------------------------------------
# cluster_dijets / dijet_features on hand-built events
# --------------------------------------------------------------------------------------------


def test_two_particle_jets_analytic():
    # Jet A: two 600 GeV particles at eta 0, phi +-0.1; jet B straddles phi = pi.
    a = (np.array([600.0, 600.0]), np.array([0.0, 0.0]), np.array([-0.1, 0.1]))
    b = (np.array([600.0, 400.0]), np.array([0.3, 0.4]), np.array([np.pi - 0.05, -np.pi + 0.05]))
    jets = cluster_dijets(_events(_join(a, b)))
    feats = dijet_features(jets)
    # m^2 = 2 pT1 pT2 (cosh(d eta) - cos(d phi)) for two massless particles
    m_a = np.sqrt(2 * 600 * 600 * (1 - np.cos(0.2)))
    m_b = np.sqrt(2 * 600 * 400 * (np.cosh(0.1) - np.cos(0.1)))
    total = _four(*_join(a, b)).sum(axis=1)
    assert jets["n_jets"][0] == 2
    assert jets["has_dijet"][0]
    assert jets["mj1"][0] == pytest.approx(m_a, rel=1e-9)  # jet A leads in pT (1194 GeV)
    assert jets["mj2"][0] == pytest.approx(m_b, rel=1e-9)
    assert feats["mjj"][0] == pytest.approx(_mass(total), rel=1e-9)
    assert feats["mj1"][0] == pytest.approx(min(m_a, m_b), rel=1e-9)
    assert feats["delta_mj"][0] == pytest.approx(abs(m_b - m_a), rel=1e-9)
    # tau1 of jet A: both particles 0.1 from the axis (eta 0, phi 0); tau2 of two particles = 0
    assert jets["tau1j1"][0] == pytest.approx(2 * 600 * 0.1, rel=1e-9)
    assert jets["tau2j1"][0] == pytest.approx(0.0, abs=1e-9)
    assert feats["tau21_j1"][0] == pytest.approx(0.0, abs=1e-9)
    # jet B straddles phi = pi: its axis is at |phi| ~ pi, Delta phi to jet A (phi 0) is |phi_B|
    pa, pb = _four(*a).sum(axis=1), _four(*b).sum(axis=1)
    eta_b = np.arcsinh(pb[2] / np.hypot(pb[0], pb[1]))
    dphi = abs(np.arctan2(pb[1], pb[0]))
    assert dphi == pytest.approx(np.pi, abs=0.05)
    assert feats["delta_r"][0] == pytest.approx(np.hypot(eta_b, dphi), rel=1e-9)
    assert jets["phij2"][0] == pytest.approx(np.arctan2(pb[1], pb[0]), abs=1e-12)
    assert np.hypot(pa[0], pa[1]) > np.hypot(pb[0], pb[1])  # A leads in pT


def test_nsubjettiness_hand_computation_and_prongs():
    rng = np.random.default_rng(1)
    one = _spray(rng, 20, 1000.0, 0.2, 0.0, 0.05)
    a = _spray(rng, 10, 500.0, -0.1, np.pi - 0.2, 0.03)
    b = _spray(rng, 10, 500.0, -0.1, np.pi + 0.25, 0.03)
    jets = cluster_dijets(_events(_join(one, a, b)))
    feats = dijet_features(jets)
    two = _join(a, b)
    p_one, p_a, p_b = (_four(*s).sum(axis=1) for s in (one, a, b))
    # j1 = one-prong (pT 1000 > pT of the two-prong jet)
    assert jets["tau1j1"][0] == pytest.approx(_tau(*one, [p_one]), rel=1e-8)
    assert jets["tau1j2"][0] == pytest.approx(_tau(*two, [p_a + p_b]), rel=1e-8)
    # exclusive-kT axes of the two-prong jet are the two sprays
    assert jets["tau2j2"][0] == pytest.approx(_tau(*two, [p_a, p_b]), rel=1e-8)
    assert jets["tau3j2"][0] <= jets["tau2j2"][0] <= jets["tau1j2"][0]
    # independent jet masses from the particles
    assert jets["mj1"][0] == pytest.approx(_mass(p_one), rel=1e-9)
    assert jets["mj2"][0] == pytest.approx(_mass(p_a + p_b), rel=1e-9)
    # the one-prong jet is lighter: tau21_j1 belongs to it, and two-prong jets have small tau21
    assert feats["mj1"][0] == pytest.approx(_mass(p_one), rel=1e-9)
    assert feats["tau21_j2"][0] < 0.3 < 0.6 < feats["tau21_j1"][0]


def test_fewer_than_two_jets_give_nan_and_padding_is_ignored():
    rng = np.random.default_rng(2)
    single = _spray(rng, 5, 800.0, 0.0, 1.0, 0.05)
    soft = (np.array([5.0, 3.0]), np.array([0.0, 2.0]), np.array([0.0, 1.0]))  # jets < 20 GeV
    both = _join(single, _spray(rng, 5, 700.0, 0.5, -2.0, 0.05))
    padded = tuple(np.concatenate([x, np.zeros(4)]) for x in both)  # zero-padded slots
    events = _events(single, soft, (np.zeros(0), np.zeros(0), np.zeros(0)), both, padded)
    jets = cluster_dijets(events)
    assert jets["n_jets"].tolist() == [1, 0, 0, 2, 2]
    assert jets["has_dijet"].tolist() == [False, False, False, True, True]
    for name in ("mj1", "pxj2", "tau1j1", "tau2j2"):
        assert np.isnan(jets[name][:3]).all()
        assert np.isfinite(jets[name][3:]).all()
        assert jets[name][3] == jets[name][4]
    feats = dijet_features(jets)
    assert all(np.isnan(feats[k][:3]).all() for k in FEATURE_COLUMNS)
    assert all(np.isfinite(feats[k][3:]).all() for k in FEATURE_COLUMNS)
    # an all-empty input works too
    empty = cluster_dijets(_events((np.zeros(0), np.zeros(0), np.zeros(0))))
    assert empty["n_jets"].tolist() == [0]
    assert np.isnan(empty["mj1"]).all()


def test_pt_order_and_threshold():
    rng = np.random.default_rng(3)
    # three jets, listed softest first: the two leading must come out in pT order
    event = _join(
        _spray(rng, 4, 300.0, 1.5, 2.5, 0.05),
        _spray(rng, 4, 900.0, 0.0, 0.0, 0.05),
        _spray(rng, 4, 1100.0, -0.5, -3.0, 0.05),
    )
    jets = cluster_dijets(_events(event))
    assert jets["n_jets"][0] == 3
    assert jets["ptj1"][0] == pytest.approx(1100.0, rel=0.01)
    assert jets["ptj2"][0] == pytest.approx(900.0, rel=0.01)
    high = cluster_dijets(_events(event), min_jet_pt_gev=1000.0)
    assert high["n_jets"][0] == 1
    assert not high["has_dijet"][0]


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="'phi'"):
        cluster_dijets(ak.Array([[{"pt": 1.0, "eta": 0.0}]]))
    with pytest.raises(InputError, match="NaN"):
        cluster_dijets(_events((np.array([100.0]), np.array([np.nan]), np.array([0.0]))))
    with pytest.raises(InputError, match="positive"):
        cluster_dijets(_events((np.array([100.0]), np.array([0.0]), np.array([0.0]))), r=0.0)
    with pytest.raises(InputError, match="tau1j2"):
        dijet_features({"pxj1": np.zeros(2)})
    good = {f"{q}j{k}": np.ones(3) for k in (1, 2) for q in ("px", "py", "pz", "m", "tau1", "tau2")}
    good["mj2"] = np.ones(4)
    with pytest.raises(InputError, match="shapes"):
        dijet_features(good)


# --------------------------------------------------------------------------------------------
# real data: the tiny LHCO R&D file and the LHCO-like features file
# --------------------------------------------------------------------------------------------


def test_tiny_lhco_file_physics(tiny):
    _, labels, jets, feats = tiny
    assert jets["has_dijet"].all()
    # the R&D trigger: a jet with pT > 1.2 TeV in every event
    assert (np.maximum(jets["ptj1"], jets["ptj2"]) > 1200.0).all()
    assert (jets["ptj1"] >= jets["ptj2"]).all()
    in_sr = (feats["mjj"] > 3300) & (feats["mjj"] < 3700)
    assert abs(int(in_sr.sum()) - 211) <= 3  # shared/data/README.md: 211 events, 69 signal
    assert abs(int((in_sr & (labels == 1)).sum()) - 69) <= 3
    signal = labels == 1
    assert signal.sum() == 93
    heavy = feats["mj1"][signal] + feats["delta_mj"][signal]
    assert 420.0 < np.median(heavy) < 560.0  # X(500 GeV)
    assert 70.0 < np.median(feats["mj1"][signal]) < 140.0  # Y(100 GeV)
    # background jets are much lighter than the X
    assert np.median(feats["mj1"][~signal] + feats["delta_mj"][~signal]) < 250.0


def test_tiny_features_match_independent_maths(tiny):
    _, _, jets, feats = tiny
    p1 = np.stack([jets[f"{q}j1"] for q in ("px", "py", "pz", "e")])
    p2 = np.stack([jets[f"{q}j2"] for q in ("px", "py", "pz", "e")])
    np.testing.assert_allclose(jets["mj1"], _mass(p1), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(jets["mj2"], _mass(p2), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(feats["mjj"], _mass(p1 + p2), rtol=1e-9)
    np.testing.assert_allclose(jets["ptj1"], np.hypot(p1[0], p1[1]), rtol=1e-12)
    lighter = np.minimum(_mass(p1), _mass(p2))
    np.testing.assert_allclose(feats["mj1"], lighter, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(
        feats["delta_mj"], np.abs(_mass(p1) - _mass(p2)), rtol=1e-6, atol=2e-3
    )
    eta = [np.arcsinh(p[2] / np.hypot(p[0], p[1])) for p in (p1, p2)]
    dphi = np.angle(np.exp(1j * (np.arctan2(p1[1], p1[0]) - np.arctan2(p2[1], p2[0]))))
    np.testing.assert_allclose(feats["delta_r"], np.hypot(eta[0] - eta[1], dphi), rtol=1e-9)
    assert (feats["mj1"] <= feats["mj1"] + feats["delta_mj"]).all()
    assert (feats["delta_mj"] >= 0).all()
    for name in ("tau21_j1", "tau21_j2"):
        assert (feats[name] >= 0).all()
        # exclusive-kT axes are not optimal: tau2 > tau1 for a few per cent of jets
        assert (feats[name] <= 1.5).all()
        assert (feats[name] > 1).mean() < 0.06
    # tau21 follows the lighter jet
    first = jets["mj1"] <= jets["mj2"]
    t21_1 = jets["tau2j1"] / (jets["tau1j1"] + 1e-5)
    t21_2 = jets["tau2j2"] / (jets["tau1j2"] + 1e-5)
    np.testing.assert_allclose(feats["tau21_j1"], np.where(first, t21_1, t21_2))
    np.testing.assert_allclose(feats["tau21_j2"], np.where(first, t21_2, t21_1))


def test_one_pass_axes_minimise_tau(tiny):
    parts, _, jets, _ = tiny
    sub = parts[:300]
    kt = {k: v[:300] for k, v in jets.items()}
    one_pass = cluster_dijets(sub, axes="OnePass_KT_Axes")
    # the minimisation pass starts from the kT axes: it never raises tau_N
    for name in ("tau1j1", "tau2j1", "tau1j2", "tau2j2"):
        assert (one_pass[name] <= kt[name] * (1 + 1e-9) + 1e-9).all()
    np.testing.assert_allclose(one_pass["mj1"], kt["mj1"], rtol=1e-12)
    # with (near-)optimal axes tau2 <= tau1, as in the official LHCO features (max tau21 0.99)
    one_feats = dijet_features(one_pass)
    assert (one_feats["tau21_j1"] <= 1.0).all()
    assert (one_feats["tau21_j2"] <= 1.0).all()
    with pytest.raises(InputError, match="axes"):
        cluster_dijets(sub[:2], axes="kt_axes")


def test_lhco_features_file_columns_known_counts():
    df = pd.read_hdf(_need(LHCO_LIKE_FEATURES), "df")
    feats = dijet_features({c: df[c].to_numpy() for c in df.columns})
    labels = df["label"].to_numpy()
    in_sr = (feats["mjj"] > 3300) & (feats["mjj"] < 3700)
    # shared/data/README.md: 41,202 QCD and 19,165 signal events in 3.3-3.7 TeV
    assert abs(int((in_sr & (labels == 0)).sum()) - 41_202) <= 5
    assert abs(int((in_sr & (labels == 1)).sum()) - 19_165) <= 5
    assert (feats["delta_mj"] >= 0).all()


# --------------------------------------------------------------------------------------------
# the coffea processor and extract_features
# --------------------------------------------------------------------------------------------


def test_processor_counts_and_drops_events():
    rng = np.random.default_rng(4)
    single = _spray(rng, 5, 800.0, 0.0, 1.0, 0.05)
    dijet = _join(_spray(rng, 5, 900.0, 0.0, 0.0, 0.05), _spray(rng, 5, 800.0, 0.3, 3.0, 0.05))
    parts = _events(single, (np.zeros(0), np.zeros(0), np.zeros(0)), dijet)
    events = ak.zip(
        {
            "event_id": np.array([10, 11, 12]),
            "label": np.array([0, 1, 1], dtype=np.int8),
            "pt_b": parts.pt,
            "eta_b": parts.eta,
            "phi_b": parts.phi,
        },
        depth_limit=1,
    )
    proc = DijetFeatureProcessor(pt_branch="pt_b", eta_branch="eta_b", phi_branch="phi_b")
    out = proc.postprocess(proc.process(events))
    acc = out["events"]
    assert acc["n_events"] == 3
    assert acc["n_fewer_than_two_jets"] == 2
    assert acc["event_id"][0].tolist() == [12]
    assert acc["mjj_hist"].sum() == 1
    expected = dijet_features(cluster_dijets(parts[2:]))
    assert acc["mjj"][0][0] == pytest.approx(expected["mjj"][0], rel=1e-12)
    table = collect_features(out)["events"]
    assert isinstance(table, FeatureTable)
    assert table.label.tolist() == [1]
    with pytest.raises(InputError, match="pt_branch"):
        DijetFeatureProcessor().process(events)


def test_collect_features_merges_chunks_in_id_order():
    from coffea.processor import accumulate

    proc = DijetFeatureProcessor(pt_branch="pt", eta_branch="eta", phi_branch="phi")
    rng = np.random.default_rng(5)
    evs = [
        _join(_spray(rng, 4, 900.0, 0.0, 0.0, 0.05), _spray(rng, 4, 800.0, 0.2, 3.0, 0.05))
        for _ in range(4)
    ]
    parts = _events(*evs)
    chunks = [
        ak.zip(
            {
                "event_id": np.array(ids),
                "pt": parts.pt[ids],
                "eta": parts.eta[ids],
                "phi": parts.phi[ids],
            },
            depth_limit=1,
        )
        for ids in ([2, 3], [0, 1])
    ]
    merged = accumulate([proc.process(c) for c in chunks])
    table = collect_features(merged)["events"]
    assert table.event_id.tolist() == [0, 1, 2, 3]
    assert table.label is None  # no label branch -> unlabelled
    assert merged["events"]["n_events"] == 4
    assert merged["events"]["mjj_hist"].sum() == 4
    np.testing.assert_allclose(table.mjj, dijet_features(cluster_dijets(parts))["mjj"])


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory):
    parts, labels = _read_tiny(160)
    path = tmp_path_factory.mktemp("feat") / "tiny_flat.parquet"
    return _write_flat_parquet(path, parts, labels), parts, labels


def test_extract_features_iterative_matches_direct_and_futures(small_parquet):
    path, parts, labels = small_parquet
    direct = dijet_features(cluster_dijets(parts))
    it = extract_features(path, executor="iterative", chunk_size=50, progress=False)
    assert len(it) == 160
    assert it.event_id.tolist() == list(range(160))
    assert it.label.tolist() == labels.tolist()
    for name in FEATURE_COLUMNS:
        np.testing.assert_allclose(it.columns[name], direct[name], rtol=1e-12)
    fut = extract_features(path, executor="futures", workers=2, chunk_size=40, progress=False)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(fut.columns[name], it.columns[name])
    np.testing.assert_array_equal(fut.event_id, it.event_id)
    np.testing.assert_array_equal(fut.label, it.label)


def test_extract_features_on_a_local_dask_cluster(small_parquet):
    path = small_parquet[0]
    it = extract_features(path, executor="iterative", chunk_size=40, progress=False)
    dask = extract_features(path, executor="dask", workers=2, chunk_size=40, progress=False)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(dask.columns[name], it.columns[name])
    np.testing.assert_array_equal(dask.event_id, it.event_id)
    np.testing.assert_array_equal(dask.label, it.label)


def test_extract_features_drops_and_limits(tmp_path):
    rng = np.random.default_rng(6)
    evs = []
    for i in range(6):
        jet_a = _spray(rng, 5, 900.0, 0.0, 0.0, 0.05)
        jet_b = _spray(rng, 5, 850.0, 0.4, 3.0, 0.05)
        evs.append(jet_a if i % 3 == 1 else _join(jet_a, jet_b))  # events 1 and 4: one jet
    parts = _events(*evs)
    path = _write_flat_parquet(tmp_path / "hand.parquet", parts, np.zeros(6, dtype=np.int8))
    table = extract_features(path, chunk_size=4, progress=False)
    assert table.event_id.tolist() == [0, 2, 3, 5]
    assert table.label.tolist() == [0, 0, 0, 0]
    limited = extract_features(path, chunk_size=2, max_events=4, progress=False)
    assert limited.event_id.tolist() == [0, 2, 3]
    # two files: rows follow the file order; max_events counts over both
    both = extract_features([path, path], chunk_size=4, max_events=9, progress=False)
    assert both.event_id.tolist() == [0, 2, 3, 5, 0, 2]


def test_extract_features_root_with_custom_branches(tmp_path, small_parquet):
    uproot = pytest.importorskip("uproot")
    _, parts, labels = small_parquet
    parts, labels = parts[:40], labels[:40]
    path = tmp_path / "particles.root"
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "Particles",
            {
                "truth": np.int8,
                "n": np.int32,
                "c_pt": "var * float64",
                "c_eta": "var * float64",
                "c_phi": "var * float64",
            },
            counter_name=lambda _: "n",
        )
        tree.extend(
            {
                "truth": labels,
                "n": ak.to_numpy(ak.num(parts.pt)).astype(np.int32),
                "c_pt": parts.pt,
                "c_eta": parts.eta,
                "c_phi": parts.phi,
            }
        )
    branches = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "label": "truth"}
    table = extract_features(path, branches=branches, chunk_size=15, progress=False)
    direct = dijet_features(cluster_dijets(parts))
    assert table.event_id.tolist() == list(range(40))
    assert table.label.tolist() == labels.tolist()
    np.testing.assert_allclose(table.mjj, direct["mjj"], rtol=1e-12)
    limited = extract_features(path, branches=branches, chunk_size=15, max_events=7, progress=False)
    np.testing.assert_array_equal(limited.mjj, table.mjj[:7])
    with pytest.raises(InputError, match="branch"):
        extract_features(path, progress=False)


def test_extract_features_lhco_raw_hdf5(tiny):
    _, labels, _, feats = tiny
    table = extract_features(TINY, chunk_size=400, max_events=450, progress=False)
    assert len(table) == 450
    assert table.event_id.tolist() == list(range(450))
    assert table.label.tolist() == labels[:450].tolist()
    for name in FEATURE_COLUMNS:
        np.testing.assert_allclose(table.columns[name], feats[name][:450], rtol=1e-12)
    assert str(TINY) in table.source


def test_extract_features_bad_options(small_parquet, tmp_path, monkeypatch):
    import sideband.features.run

    monkeypatch.setattr(sideband.features.run, "DASK_CONNECT_TIMEOUT_S", 1)
    path = small_parquet[0]
    with pytest.raises(ConfigError, match="only applies to executor='dask'"):
        extract_features(path, executor="futures", scheduler="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        extract_features(path, executor="dask", scheduler="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(ConfigError, match="unknown executor"):
        extract_features(path, executor="spark", progress=False)
    with pytest.raises(InputError, match="no such file"):
        extract_features(tmp_path / "missing.h5", progress=False)
    with pytest.raises(InputError, match="chunk_size"):
        extract_features(path, chunk_size=0, progress=False)
    with pytest.raises(InputError, match="unknown key"):
        extract_features(path, branches={"energy": "E"}, progress=False)
