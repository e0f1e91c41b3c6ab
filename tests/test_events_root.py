"""Tests of the ROOT readers for NanoAOD-style files: FatJet features, PF-candidate presets,
jet constituents through PFNano's association table, chunking and error messages."""

from __future__ import annotations

import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from sideband.errors import InputError
from sideband.events import count_events, iter_particles, read_features, write_features
from sideband.events.formats import PARTICLE_BRANCH_PRESETS
from sideband.events.root import (
    FatJetCounts,
    iter_fatjet_constituents,
    read_fatjet_features,
    resolve_particle_branches,
)
from sideband.records import FeatureTable

uproot = pytest.importorskip("uproot")

JET_Q = ("pt", "eta", "phi", "mass", "tau1", "tau2", "tau3")


# --------------------------------------------------------------------------------------------
# helpers writing NanoAOD-like files (mktree: `file[name] = {...}` would write an RNTuple)
# --------------------------------------------------------------------------------------------


def write_nano(
    path: Path,
    fatjets: list[list[tuple[float, ...]]],
    *,
    pfcands: list[list[tuple[float, float, float, float]]] | None = None,
    links: list[list[tuple[int, int]]] | None = None,
    event: np.ndarray | None = None,
    label: np.ndarray | None = None,
    cand_table: str = "PFCands",
    cand_fields: tuple[str, ...] = ("pt", "eta", "phi", "mass"),
    extra_trees: bool = True,
) -> Path:
    """NanoAOD-like TTree ``Events`` (+ ``Runs``): ``nFatJet``/``FatJet_*`` (pt, eta, phi,
    mass, tau1..3), optionally ``n<cand_table>``/``<cand_table>_*`` and the PFNano link table
    ``FatJetPFCands`` (jetIdx, pFCandsIdx), ``event`` (uint64) and ``label``."""
    n = len(fatjets)
    fj = ak.zip(
        {
            q: ak.Array([[float(j[i]) for j in ev] for ev in fatjets], with_name=None)
            for i, q in enumerate(JET_Q)
        }
    )
    fj = ak.values_astype(fj, np.float32)  # NanoAOD stores Float_t
    data: dict[str, object] = {"FatJet": fj}
    if event is None:
        event = np.arange(1000, 1000 + n, dtype=np.uint64)
    data["event"] = np.asarray(event, dtype=np.uint64)
    if label is not None:
        data["label"] = np.asarray(label, dtype=np.int32)
    if pfcands is not None:
        cols = {
            q: ak.values_astype(ak.Array([[c[i] for c in ev] for ev in pfcands]), np.float32)
            for i, q in enumerate(("pt", "eta", "phi", "mass"))
            if q in cand_fields
        }
        if "puppiWeight" in cand_fields:
            cols["puppiWeight"] = ak.values_astype(
                ak.Array([[0.5 if i % 2 else 1.0 for i in range(len(ev))] for ev in pfcands]),
                np.float32,
            )
        data[cand_table] = ak.zip(cols)
    if links is not None:
        data["FatJetPFCands"] = ak.zip(
            {
                "jetIdx": ak.values_astype(
                    ak.Array([[j for j, _ in ev] for ev in links]), np.int32
                ),
                "pFCandsIdx": ak.values_astype(
                    ak.Array([[c for _, c in ev] for ev in links]), np.int32
                ),
            }
        )
    with uproot.recreate(path) as fh:
        types = {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
        fh.mktree("Events", types).extend(data)
        if extra_trees:  # NanoAOD files hold more trees than Events
            fh.mktree("Runs", {"run": np.uint32}).extend({"run": np.array([1], np.uint32)})
    return path


def random_nano(path: Path, n: int, seed: int, *, labelled: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    fatjets, pfcands = [], []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        fatjets.append(
            [
                (
                    rng.uniform(200, 2000),
                    rng.uniform(-2.4, 2.4),
                    rng.uniform(-np.pi, np.pi),
                    rng.uniform(10, 300),
                    rng.uniform(0.1, 0.6),
                    rng.uniform(0.05, 0.4),
                    rng.uniform(0.02, 0.3),
                )
                for _ in range(k)
            ]
        )
        m = int(rng.integers(0, 30))
        pfcands.append(
            [
                (
                    rng.exponential(20.0) + 0.1,
                    rng.uniform(-2.5, 2.5),
                    rng.uniform(-np.pi, np.pi),
                    rng.choice([0.0, 0.13957]),
                )
                for _ in range(m)
            ]
        )
    label = rng.integers(0, 2, n) if labelled else None
    return write_nano(path, fatjets, pfcands=pfcands, label=label)


def four_vector(pt: float, eta: float, phi: float, m: float) -> np.ndarray:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.array([np.sqrt(m**2 + px**2 + py**2 + pz**2), px, py, pz])


def inv_mass(v: np.ndarray) -> float:
    return float(np.sqrt(v[0] ** 2 - v[1] ** 2 - v[2] ** 2 - v[3] ** 2))


# jets exactly representable in float32, so hand computations match the file's values
J_A = (1500.0, 0.5, 0.125, 80.0, 0.5, 0.125, 0.0625)
J_B = (1400.0, -0.25, 3.0, 150.0, 0.25, 0.1875, 0.125)
J_C = (300.0, 1.0, -3.0, 40.0, 0.5, 0.25, 0.125)
J_D = (1200.0, 0.0, -3.0, 200.0, 0.75, 0.25, 0.125)
J_E = (1100.0, 1.5, 0.0, 30.0, 0.5, 0.375, 0.25)


@pytest.fixture
def hand_file(tmp_path: Path) -> Path:
    # event 0: two jets; 1: one jet (dropped); 2: three jets not in pT order; 3: none (dropped)
    return write_nano(
        tmp_path / "nano.root",
        [[J_A, J_B], [J_A], [J_C, J_D, J_E], []],
        event=np.array([7, 8, 9, 10]),
        label=np.array([1, 0, 0, 1]),
    )


# --------------------------------------------------------------------------------------------
# FatJet features
# --------------------------------------------------------------------------------------------


def test_fatjet_features_match_hand_computation(
    hand_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sideband.events.root"):
        table, counts = read_fatjet_features(hand_file, return_counts=True)
    assert counts == FatJetCounts(n_events=4, n_kept=2, n_fewer_than_two=2)
    assert "dropped 2 of 4 events with fewer than two FatJet jets" in caplog.text
    assert table.event_id.tolist() == [7, 9]
    assert table.label.tolist() == [1, 0]
    # event 0: A (m 80) is lighter than B (m 150)
    mjj0 = inv_mass(four_vector(*J_A[:4]) + four_vector(*J_B[:4]))
    dphi0 = 3.0 - 0.125
    # event 2: the two pT-leading jets are D (1200) and E (1100); E (m 30) is the lighter one
    mjj2 = inv_mass(four_vector(*J_D[:4]) + four_vector(*J_E[:4]))
    dphi2 = -3.0 - 0.0
    expected = {
        "mjj": [mjj0, mjj2],
        "mj1": [80.0, 30.0],
        "delta_mj": [70.0, 170.0],
        "tau21_j1": [0.125 / (0.5 + 1e-5), 0.375 / (0.5 + 1e-5)],
        "tau21_j2": [0.1875 / (0.25 + 1e-5), 0.25 / (0.75 + 1e-5)],
        "delta_r": [np.hypot(0.75, dphi0), np.hypot(1.5, dphi2)],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(table.columns[name], values, rtol=1e-9, err_msg=name)
    assert 2800 < mjj0 < 3200  # a sensible dijet mass, GeV
    # unlabelled without a label branch; the entry number without an event branch
    with uproot.update(hand_file) as fh:
        del fh["Runs"]
    plain = write_nano(hand_file.with_name("plain.root"), [[J_A, J_B], [J_A]], extra_trees=False)
    t = read_fatjet_features(plain, event_id=None)
    assert t.label is None
    assert t.event_id.tolist() == [1000]


def test_read_features_dispatch_and_nanoaod_detection(hand_file: Path, tmp_path: Path) -> None:
    direct = read_fatjet_features(hand_file)
    via = read_features(hand_file, jets="nanoaod")
    for name in direct.names:
        np.testing.assert_array_equal(via.columns[name], direct.columns[name])
    np.testing.assert_array_equal(via.event_id, direct.event_id)
    # a NanoAOD file is not mistaken for a features file: the message says how to read it
    with pytest.raises(InputError, match=r"not a features file.*jets='nanoaod'"):
        read_features(hand_file)
    with pytest.raises(InputError, match=r"jets='nanoaod'"):
        read_features(hand_file, tree="Events")
    with pytest.raises(InputError, match=r"jets='AK8' is not a known jet collection"):
        read_features(hand_file, jets="AK8")
    table = FeatureTable({"mjj": [3400.0, 3500.0]}, [0, 1])
    pq = write_features(tmp_path / "f.parquet", table)
    with pytest.raises(InputError, match=r"parquet_features file; drop jets="):
        read_features(pq, jets="nanoaod")
    # and a sideband features tree read with jets= says it is a features tree
    feat = write_features(tmp_path / "f.root", table)
    with pytest.raises(InputError, match=r"This is a features tree"):
        read_fatjet_features(feat, tree=None)
    assert count_events(hand_file) == 4  # Events, not Runs


def test_fatjet_chunking_gives_the_same_table(tmp_path: Path) -> None:
    path = random_nano(tmp_path / "r.root", 300, seed=1)
    whole, counts = read_fatjet_features(path, chunk_size=10_000, return_counts=True)
    assert counts.n_events == 300
    assert counts.n_kept == len(whole)
    assert 0 < counts.n_fewer_than_two < 300
    for k in (23, 64):
        part = read_fatjet_features(path, chunk_size=k)
        for name in whole.names:
            np.testing.assert_array_equal(part.columns[name], whole.columns[name])
        np.testing.assert_array_equal(part.event_id, whole.event_id)
        np.testing.assert_array_equal(part.label, whole.label)
    sub = read_fatjet_features(path, chunk_size=13, start=50, stop=250)
    in_range = (whole.event_id >= 1050) & (whole.event_id < 1250)
    np.testing.assert_array_equal(sub.mjj, whole.mjj[in_range])
    assert len(read_fatjet_features(path, start=300)) == 0


def test_fatjet_tev_units_and_bad_inputs(tmp_path: Path) -> None:
    tev = [tuple(v / 1000 if i in (0, 3) else v for i, v in enumerate(j)) for j in (J_A, J_B)]
    path = write_nano(tmp_path / "tev.root", [tev] * 3)
    with pytest.raises(InputError, match=r"tev\.root: mjj has median .*looks like TeV"):
        read_fatjet_features(path)
    good = write_nano(tmp_path / "g.root", [[J_A, J_B]], label=np.array([2]))
    with pytest.raises(InputError, match=r"label branch 'label' is 2 in entry 0; expected 0 or 1"):
        read_fatjet_features(good)
    with pytest.raises(InputError, match=r"no label branch 'truth'"):
        read_fatjet_features(good, label="truth")
    with pytest.raises(
        InputError,
        match=r"no branch\(es\) \['AK15_pt'.*prefix= one of the jet tables of this tree, \['FatJet'\]",
    ):
        read_fatjet_features(good, prefix="AK15")
    with pytest.raises(InputError, match="chunk_size must be a positive integer"):
        read_fatjet_features(good, chunk_size=0)
    # jet branches that are not one collection
    with uproot.recreate(tmp_path / "mix.root") as fh:
        two, three = ak.Array([[1500.0, 1400.0]]), ak.Array([[80.0, 150.0, 10.0]])
        types = {f"FatJet_{q}": two.type for q in JET_Q}
        types["FatJet_mass"] = three.type
        fh.mktree("Events", types).extend(
            {k: (three if k == "FatJet_mass" else two) for k in types}
        )
    with pytest.raises(InputError, match=r"'FatJet_pt' and 'FatJet_mass' have 2 and 3 entries"):
        read_fatjet_features(tmp_path / "mix.root")


# --------------------------------------------------------------------------------------------
# PF candidates with presets
# --------------------------------------------------------------------------------------------


def test_particle_presets_and_mass(tmp_path: Path) -> None:
    assert {"default", "nanoaod", "pfnano", "jmenano"} <= set(PARTICLE_BRANCH_PRESETS)
    assert PARTICLE_BRANCH_PRESETS["nanoaod"]["pt"] == "PFCands_pt"
    assert PARTICLE_BRANCH_PRESETS["jmenano"]["pt"] == "PFCand_pt"
    cands = [[(10.0, 0.5, 0.25, 0.13957), (0.0, 0.0, 0.0, 0.0), (5.0, -1.0, 2.0, 0.0)], []]
    path = write_nano(tmp_path / "pf.root", [[J_A], []], pfcands=cands)
    (chunk,) = iter_particles(path, branches="nanoaod")
    assert chunk.fields == ["event_id", "label", "particles", "event"]  # + the identifiers
    assert chunk.particles.fields == ["pt", "eta", "phi", "mass"]
    assert chunk.event_id.tolist() == [1000, 1001]  # the `event` branch
    assert chunk.event.tolist() == [1000, 1001]
    assert chunk.label.tolist() == [-1, -1]  # no label branch
    # the zero-pT slot is removed from every field, mass included
    np.testing.assert_allclose(chunk.particles.pt.tolist()[0], [10.0, 5.0])
    np.testing.assert_allclose(chunk.particles.mass.tolist()[0], [0.13957, 0.0], rtol=1e-6)
    assert ak.num(chunk.particles).tolist() == [2, 0]
    # pfnano is the same table; a mapping may start from a preset and rename the label
    (same,) = iter_particles(path, branches="pfnano")
    assert ak.array_equal(same, chunk)
    with pytest.raises(InputError, match=r"no label branch 'is_signal'"):
        iter_particles(path, branches={"preset": "nanoaod", "label": "is_signal"})
    with pytest.raises(InputError, match=r"preset 'cms' is unknown.*'nanoaod'"):
        iter_particles(path, branches="cms")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['charge'\]"):
        iter_particles(path, branches={"charge": "PFCands_charge"})
    # an explicit mass branch must exist; a preset's mass is used only where present
    with pytest.raises(InputError, match=r"no mass branch 'PFCands_m'"):
        iter_particles(path, branches={"preset": "nanoaod", "mass": "PFCands_m"})
    massless = write_nano(
        tmp_path / "jme.root",
        [[J_A]],
        pfcands=[cands[0]],
        cand_table="PFCand",
        cand_fields=("pt", "eta", "phi"),
    )
    (jme,) = iter_particles(massless, branches="jmenano")
    assert jme.particles.fields == ["pt", "eta", "phi"]
    names, explicit = resolve_particle_branches({"preset": "jmenano", "label": "y"})
    assert names["pt"] == "PFCand_pt"
    assert names["label"] == "y"
    assert explicit == {"label"}


def test_nanoaod_particles_chunked_like_one_chunk(tmp_path: Path) -> None:
    path = random_nano(tmp_path / "r.root", 120, seed=2)
    (one,) = list(iter_particles(path, branches="nanoaod", chunk_size=10_000))
    assert len(one) == 120
    for k in (1, 17):
        pieces = list(iter_particles(path, branches="nanoaod", chunk_size=k))
        assert all(len(c) == k for c in pieces[:-1])
        assert ak.array_equal(ak.concatenate(pieces), one)
    part = ak.concatenate(
        list(iter_particles(path, branches="nanoaod", chunk_size=9, start=20, stop=95))
    )
    assert ak.array_equal(part, one[20:95])
    assert set(np.unique(ak.to_numpy(one.label)).tolist()) <= {0, 1}


def test_missing_particle_branches_list_the_tree_and_suggest_branches(tmp_path: Path) -> None:
    path = random_nano(tmp_path / "r.root", 5, seed=3)
    with pytest.raises(
        InputError,
        match=r"no branch\(es\) \['part_pt'.*'PFCands_pt'.*preset\(s\) \['nanoaod', 'pfnano'\]: "
        r"pass branches='nanoaod'",
    ):
        iter_particles(path)
    jets_only = write_nano(tmp_path / "j.root", [[J_A, J_B]])
    with pytest.raises(InputError, match=r"branches: \[.*'FatJet_pt'.*branches=\{'pt'"):
        iter_particles(jets_only)
    # a file with many branches: the message summarises the collections
    many = {f"Muon_v{i}": ak.Array([[1.0]]) for i in range(60)}
    with uproot.recreate(tmp_path / "many.root") as fh:
        fh.mktree("Events", {"Muon": ak.zip(many).type}).extend({"Muon": ak.zip(many)})
    with pytest.raises(InputError, match=r"61 branches, among them the collections Muon_\* \(60\)"):
        iter_particles(tmp_path / "many.root")


def test_cluster_dijets_uses_the_particle_mass(tmp_path: Path) -> None:
    from sideband.features.substructure import cluster_dijets

    # two collimated sprays; every candidate has mass 10 GeV: the jets get heavier than massless
    spray = [(300.0, 0.02 * i, 0.03 * i, 10.0) for i in range(5)]
    spray += [(300.0, 0.02 * i, np.pi - 0.03 * i, 10.0) for i in range(5)]
    path = write_nano(tmp_path / "m.root", [[]], pfcands=[spray])
    (chunk,) = iter_particles(path, branches="nanoaod")
    massive = cluster_dijets(chunk.particles)
    massless = cluster_dijets(chunk.particles[["pt", "eta", "phi"]])
    assert massive["mj1"][0] > massless["mj1"][0] + 5.0


# --------------------------------------------------------------------------------------------
# jet constituents through PFNano's FatJetPFCands table
# --------------------------------------------------------------------------------------------


def test_fatjet_constituents_follow_the_association_table(tmp_path: Path) -> None:
    cands = [
        [(float(10 + i), 0.1 * i, 0.0, 0.0) for i in range(6)],
        [(50.0, 0.0, 1.0, 0.0)],
        [],
    ]
    # event 0: jets C (300), D (1200), E (1100) -> leading D (index 1), then E (index 2)
    links = [
        [(0, 0), (1, 3), (2, 5), (1, 1), (2, 2), (0, 4)],
        [(0, 0)],
        [],
    ]
    path = write_nano(
        tmp_path / "c.root",
        [[J_C, J_D, J_E], [J_A], []],
        pfcands=cands,
        links=links,
        label=np.array([1, 0, 0]),
        cand_fields=("pt", "eta", "phi", "mass", "puppiWeight"),
    )
    (chunk,) = iter_fatjet_constituents(path)
    assert chunk.event_id.tolist() == [1000, 1001, 1002]
    assert chunk.label.tolist() == [1, 0, 0]
    assert ak.num(chunk.jets).tolist() == [2, 1, 0]
    np.testing.assert_allclose(chunk.jets.pt.tolist()[0], [1200.0, 1100.0])
    # D = jet 1 has candidates 3 and 1 (table order), E = jet 2 has 5 and 2
    assert chunk.jets.constituents.pt.tolist()[0] == [[13.0, 11.0], [15.0, 12.0]]
    assert chunk.jets.constituents.pt.tolist()[1] == [[50.0]]
    # n_jets=3 adds jet C; PUPPI weights (0.5 on odd candidates) scale pT
    (three,) = iter_fatjet_constituents(path, n_jets=3, weight="puppiWeight")
    assert three.jets.constituents.pt.tolist()[0] == [[6.5, 5.5], [7.5, 12.0], [10.0, 14.0]]
    # chunking does not change the result
    pieces = list(iter_fatjet_constituents(path, chunk_size=1))
    assert ak.array_equal(ak.concatenate(pieces), chunk)
    # an index outside the candidate table is an error naming the entry
    bad = write_nano(tmp_path / "bad.root", [[J_A]], pfcands=[cands[1]], links=[[(0, 4)]])
    with pytest.raises(InputError, match=r"pFCandsIdx = 4 in entry 0 points outside the 1"):
        list(iter_fatjet_constituents(bad))
    with pytest.raises(InputError, match=r"no branch\(es\) \['FatJetPFCands_jetIdx'"):
        iter_fatjet_constituents(write_nano(tmp_path / "nolink.root", [[J_A]], pfcands=[[]]))


def test_parquet_gets_branches(tmp_path: Path) -> None:
    import inspect

    from sideband.events.parquet import iter_particles_parquet

    if "branches" not in inspect.signature(iter_particles_parquet).parameters:
        pytest.skip("iter_particles_parquet takes no branches= yet")
    pt = ak.Array([[10.0, 5.0], [3.0]])
    cols = {"PFCands_pt": pt, "PFCands_eta": pt * 0.1, "PFCands_phi": pt * 0.01}
    ak.to_parquet(ak.zip(cols, depth_limit=1), tmp_path / "flat.parquet")
    (chunk,) = iter_particles(tmp_path / "flat.parquet", branches="nanoaod")
    assert chunk.particles.pt.tolist() == [[10.0, 5.0], [3.0]]
    assert chunk.label.tolist() == [-1, -1]
