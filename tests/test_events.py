"""Tests of sideband.events: readers, writers, format detection and error messages."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from sideband.errors import InputError
from sideband.events import (
    count_events,
    detect_format,
    iter_particles,
    read_features,
    write_features,
    write_lhco_features,
    write_lhco_raw,
    write_particles,
)
from sideband.events.cathode import write_cathode_npy
from sideband.events.formats import particle_chunk
from sideband.events.lhco import LHCO_JET_COLUMNS, dijet_features, read_lhco_features
from sideband.records import FeatureTable

DATA = Path(__file__).parents[1].parent / "shared" / "data"
TINY_RAW = DATA / "lhco_rnd" / "raw_tiny" / "events_anomalydetection_tiny.h5"
CATHODE_TEST = DATA / "lhco_rnd" / "cathode_sr" / "innerdata_test.npy"
LIKE_FEATURES = DATA / "lhco_like" / "events_lhco_like.features.h5"
LIKE_RAW = DATA / "lhco_like" / "events_lhco_like_raw.h5"


def need(path: Path) -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder {DATA} is absent (tests on real LHCO files need it)")
    assert path.exists(), f"{path} missing although {DATA} exists"
    return path


# --------------------------------------------------------------------------------------------
# helpers building events with known content
# --------------------------------------------------------------------------------------------


def random_particles(rng: np.random.Generator, n: int, max_n: int = 40):
    counts = rng.integers(0, max_n, size=n)
    total = int(counts.sum())
    pt = ak.unflatten(rng.exponential(20.0, total) + 0.5, counts)
    eta = ak.unflatten(rng.uniform(-2.5, 2.5, total), counts)
    phi = ak.unflatten(rng.uniform(-np.pi, np.pi, total), counts)
    return pt, eta, phi


def jets_from_ptetaphim(pt1, eta1, phi1, m1, pt2, eta2, phi2, m2):
    out = {}
    for j, (pt, eta, phi, m) in (("j1", (pt1, eta1, phi1, m1)), ("j2", (pt2, eta2, phi2, m2))):
        out[f"px{j}"] = pt * np.cos(phi)
        out[f"py{j}"] = pt * np.sin(phi)
        out[f"pz{j}"] = pt * np.sinh(eta)
        out[f"m{j}"] = m
    return out


def random_jets(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    jets = jets_from_ptetaphim(
        rng.uniform(1200, 2000, n),
        rng.uniform(-2, 2, n),
        rng.uniform(-np.pi, np.pi, n),
        rng.uniform(20, 600, n),
        rng.uniform(800, 1200, n),
        rng.uniform(-2, 2, n),
        rng.uniform(-np.pi, np.pi, n),
        rng.uniform(20, 600, n),
    )
    for j in ("j1", "j2"):
        tau1 = rng.uniform(0.1, 0.5, n)
        tau2 = tau1 * rng.uniform(0.1, 1.0, n)
        jets[f"tau1{j}"], jets[f"tau2{j}"] = tau1, tau2
        jets[f"tau3{j}"] = tau2 * rng.uniform(0.1, 1.0, n)
    return jets


def feature_table(rng: np.random.Generator, n: int, *, labelled: bool) -> FeatureTable:
    cols = {
        "mjj": rng.uniform(2000, 5000, n),
        "mj1": rng.uniform(10, 500, n),
        "delta_mj": rng.uniform(0, 500, n),
        "tau21_j1": rng.uniform(0, 1, n),
        "tau21_j2": rng.uniform(0, 1, n),
        "delta_r": rng.uniform(2, 4, n),
    }
    label = rng.integers(0, 2, n) if labelled else None
    return FeatureTable(cols, rng.permutation(10 * n)[:n], label)


def assert_tables_equal(a: FeatureTable, b: FeatureTable) -> None:
    assert a.names == b.names
    for k in a.names:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])
    np.testing.assert_array_equal(a.event_id, b.event_id)
    if a.label is None:
        assert b.label is None
    else:
        assert b.label is not None
        np.testing.assert_array_equal(a.label, b.label)
        assert b.label.dtype == np.int8


# --------------------------------------------------------------------------------------------
# physics of the LHCO features conversion
# --------------------------------------------------------------------------------------------


def test_dijet_features_known_answer() -> None:
    # two back-to-back-ish jets; phi across the +-pi boundary to test the wrap of delta phi
    pt1, eta1, phi1, m1 = (
        np.array([1500.0, 1000.0]),
        np.array([0.5, -1.0]),
        np.array([3.0, 0.1]),
        np.array([300.0, 50.0]),
    )
    pt2, eta2, phi2, m2 = (
        np.array([1400.0, 900.0]),
        np.array([-0.7, 1.2]),
        np.array([-3.0, 2.0]),
        np.array([100.0, 400.0]),
    )
    jets = jets_from_ptetaphim(pt1, eta1, phi1, m1, pt2, eta2, phi2, m2)
    jets |= {"tau1j1": np.array([0.4, 0.2]), "tau2j1": np.array([0.2, 0.1]), "tau3j1": np.zeros(2)}
    jets |= {"tau1j2": np.array([0.5, 0.3]), "tau2j2": np.array([0.1, 0.27]), "tau3j2": np.zeros(2)}
    f = dijet_features(jets)
    # invariant mass from (E, p): E = sqrt(pt^2 cosh^2(eta) + m^2)
    e = np.sqrt((pt1 * np.cosh(eta1)) ** 2 + m1**2) + np.sqrt((pt2 * np.cosh(eta2)) ** 2 + m2**2)
    p2 = sum((jets[f"{c}j1"] + jets[f"{c}j2"]) ** 2 for c in ("px", "py", "pz"))
    np.testing.assert_allclose(f["mjj"], np.sqrt(e**2 - p2), rtol=1e-10)
    # massless limit cross-check: m^2 = 2 pt1 pt2 (cosh(deta) - cos(dphi)) + m1^2 + m2^2 + ...
    dphi = np.array([6.0 - 2 * np.pi, 1.9])  # 3 - (-3) wraps to 6 - 2 pi
    np.testing.assert_allclose(f["delta_r"], np.hypot(eta1 - eta2, dphi), rtol=1e-10)
    # event 0: jet 2 lighter (100 < 300); event 1: jet 1 lighter (50 < 400)
    np.testing.assert_allclose(f["mj1"], [100.0, 50.0])
    np.testing.assert_allclose(f["delta_mj"], [200.0, 350.0])
    np.testing.assert_allclose(f["tau21_j1"], [0.1 / (0.5 + 1e-5), 0.1 / (0.2 + 1e-5)])
    np.testing.assert_allclose(f["tau21_j2"], [0.2 / (0.4 + 1e-5), 0.27 / (0.3 + 1e-5)])


def test_dijet_mass_of_back_to_back_massless_jets() -> None:
    # two massless jets of pT = 1750 GeV back to back at eta = 0: mjj = 3500 GeV exactly
    jets = jets_from_ptetaphim(
        np.array([1750.0]),
        np.zeros(1),
        np.zeros(1),
        np.zeros(1),
        np.array([1750.0]),
        np.zeros(1),
        np.array([np.pi]),
        np.zeros(1),
    )
    jets |= {k: np.ones(1) for k in LHCO_JET_COLUMNS if k.startswith("tau")}
    f = dijet_features(jets)
    np.testing.assert_allclose(f["mjj"], 3500.0, rtol=1e-12)
    np.testing.assert_allclose(f["delta_r"], np.pi, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# round trips through every writer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labelled", [True, False])
def test_lhco_features_roundtrip(tmp_path: Path, labelled: bool) -> None:
    import h5py
    import pandas as pd

    rng = np.random.default_rng(1)
    jets = random_jets(rng, 257)
    label = rng.integers(0, 2, 257) if labelled else None
    path = write_lhco_features(tmp_path / "f.h5", jets, label)
    assert detect_format(path) == "lhco_features"
    assert count_events(path) == 257
    frame = pd.read_hdf(path, "df")
    assert list(frame.columns) == [*LHCO_JET_COLUMNS, *(["label"] if labelled else [])]
    np.testing.assert_array_equal(frame["mj2"].to_numpy(), jets["mj2"])
    with h5py.File(path) as fh:  # blosc like the official file
        assert "32001" in fh["df/block0_values"]._filters
    table = read_features(path)
    expected = dijet_features(jets)
    assert set(table.names) == set(expected)
    for k, v in expected.items():
        np.testing.assert_allclose(table.columns[k], v, rtol=1e-12)
    np.testing.assert_array_equal(table.event_id, np.arange(257))
    if labelled:
        np.testing.assert_array_equal(table.label, label)
    else:
        assert table.label is None
    part = read_lhco_features(path, start=100, stop=150)
    np.testing.assert_array_equal(part.event_id, np.arange(100, 150))
    np.testing.assert_allclose(part.mjj, expected["mjj"][100:150], rtol=1e-12)


@pytest.mark.parametrize("labelled", [True, False])
def test_lhco_raw_roundtrip(tmp_path: Path, labelled: bool) -> None:
    import pandas as pd

    rng = np.random.default_rng(2)
    pt, eta, phi = random_particles(rng, 120, max_n=40)
    label = rng.integers(0, 2, 120) if labelled else None
    path = write_lhco_raw(tmp_path / "raw.h5", pt, eta, phi, label, max_particles=25)
    assert detect_format(path) == "lhco_raw"
    frame = pd.read_hdf(path, "df")
    assert frame.shape == (120, 75 + labelled)
    got = ak.concatenate(list(iter_particles(path, chunk_size=50)))
    # pT-ordered, hardest 25 kept, zero padding removed
    order = ak.argsort(pt, axis=1, ascending=False, stable=True)
    for name, arr in (("pt", pt), ("eta", eta), ("phi", phi)):
        assert ak.array_equal(got.particles[name], arr[order][:, :25]), name
    assert ak.all(got.particles.pt[:, :-1] >= got.particles.pt[:, 1:])
    np.testing.assert_array_equal(ak.num(got.particles), np.minimum(ak.num(pt), 25))
    np.testing.assert_array_equal(got.event_id, np.arange(120))
    np.testing.assert_array_equal(got.label, label if labelled else np.full(120, -1))
    # pandas sees the same numbers: row 3, first slot = hardest particle
    np.testing.assert_array_equal(
        frame.iloc[3, 0:3].to_numpy(),
        [got.particles.pt[3][0], got.particles.eta[3][0], got.particles.phi[3][0]],
    )


def test_lhco_raw_accepts_lists_of_arrays(tmp_path: Path) -> None:
    pt = [np.array([5.0, 50.0, 1.0]), np.array([]), np.array([7.0])]
    eta = [np.array([0.1, 0.2, 0.3]), np.array([]), np.array([-1.0])]
    phi = [np.array([1.0, 2.0, 3.0]), np.array([]), np.array([0.5])]
    path = write_lhco_raw(tmp_path / "r.h5", pt, eta, phi, np.array([1, 0, 0]))
    (chunk,) = list(iter_particles(path))
    assert chunk.particles.pt.tolist() == [[50.0, 5.0, 1.0], [], [7.0]]
    assert chunk.particles.eta.tolist() == [[0.2, 0.1, 0.3], [], [-1.0]]
    assert chunk.label.tolist() == [1, 0, 0]
    assert count_events(path) == 3


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
@pytest.mark.parametrize("labelled", [True, False])
def test_features_roundtrip(tmp_path: Path, suffix: str, labelled: bool) -> None:
    table = feature_table(np.random.default_rng(3), 501, labelled=labelled)
    path = write_features(tmp_path / f"feat{suffix}", table)
    assert count_events(path) == 501
    back = read_features(path)
    assert_tables_equal(table, back)
    assert back.source == str(path)


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_features_roundtrip_empty_and_without_delta_r(tmp_path: Path, suffix: str) -> None:
    cathode_like = FeatureTable({"mjj": [3400.0, 3500.0], "mj1": [100.0, 90.0]}, [7, 9], [0, 1])
    assert_tables_equal(
        cathode_like, read_features(write_features(tmp_path / f"a{suffix}", cathode_like))
    )
    empty = FeatureTable({"mjj": np.zeros(0), "mj1": np.zeros(0)}, np.zeros(0, np.int64))
    back = read_features(write_features(tmp_path / f"e{suffix}", empty))
    assert len(back) == 0
    assert set(back.names) == {"mjj", "mj1"}


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_particles_roundtrip(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(4)
    pt, eta, phi = random_particles(rng, 300)
    label = rng.integers(0, 2, 300)
    chunks = [
        particle_chunk(
            np.arange(a, a + 100) + 1000,
            label[a : a + 100],
            pt[a : a + 100],
            eta[a : a + 100],
            phi[a : a + 100],
        )
        for a in (0, 100, 200)
    ]
    path = write_particles(tmp_path / f"p{suffix}", iter(chunks))
    assert count_events(path) == 300
    whole = ak.concatenate(chunks)
    one = list(iter_particles(path, chunk_size=10_000))
    assert len(one) == 1
    assert ak.array_equal(one[0], whole)
    assert one[0].type == whole.type
    pieces = list(iter_particles(path, chunk_size=37, start=5, stop=290))
    assert all(len(c) == 37 for c in pieces[:-1])
    assert ak.array_equal(ak.concatenate(pieces), whole[5:290])
    # a single chunk (not an iterable) is accepted, and an empty iterable gives an empty file
    assert ak.array_equal(
        ak.concatenate(list(iter_particles(write_particles(tmp_path / f"s{suffix}", chunks[1])))),
        chunks[1],
    )
    empty = write_particles(tmp_path / f"empty{suffix}", [])
    assert count_events(empty) == 0
    assert list(iter_particles(empty)) == []


def test_root_particles_with_foreign_branch_names(tmp_path: Path) -> None:
    import uproot

    rng = np.random.default_rng(5)
    pt, eta, phi = random_particles(rng, 50)
    pt = ak.where(ak.local_index(pt) == 0, 0.0, pt)  # zero-padded slots are removed on read
    with uproot.recreate(tmp_path / "f.root") as fh:
        fh.mktree("t", {"PF_pt": pt.type, "PF_eta": eta.type, "PF_phi": phi.type})
        fh["t"].extend({"PF_pt": pt, "PF_eta": eta, "PF_phi": phi})
    path = tmp_path / "f.root"
    with pytest.raises(InputError, match=r"no branch\(es\) \['part_pt'.*branches="):
        iter_particles(path)
    branches = {"pt": "PF_pt", "eta": "PF_eta", "phi": "PF_phi"}
    got = ak.concatenate(list(iter_particles(path, chunk_size=20, branches=branches)))
    keep = pt > 0
    assert ak.array_equal(got.particles.pt, pt[keep])
    assert ak.array_equal(got.particles.phi, phi[keep])
    np.testing.assert_array_equal(got.label, np.full(50, -1))
    np.testing.assert_array_equal(got.event_id, np.arange(50))
    with pytest.raises(InputError, match="no label branch"):
        iter_particles(path, branches={**branches, "label": "truth"})
    with pytest.raises(InputError, match="unknown key"):
        iter_particles(path, branches={"charge": "PF_q"})


def test_cathode_npy_roundtrip_converts_units(tmp_path: Path) -> None:
    table = FeatureTable(
        {
            "mjj": [3400.0, 3650.0],
            "mj1": [100.0, 480.0],
            "delta_mj": [20.0, 5.0],
            "tau21_j1": [0.5, 0.2],
            "tau21_j2": [0.7, 0.3],
        },
        [0, 1],
        [0, 1],
    )
    path = write_cathode_npy(tmp_path / "c.npy", table)
    raw = np.load(path)
    np.testing.assert_allclose(raw[:, 0], [3.4, 3.65])  # stored in TeV
    back = read_features(path)
    for k in table.names:
        np.testing.assert_allclose(back.columns[k], table.columns[k], rtol=1e-14)
    np.testing.assert_array_equal(back.label, [0, 1])
    assert "delta_r" not in back.names


def test_streaming_same_as_one_chunk_tiny() -> None:
    path = need(TINY_RAW)
    one = list(iter_particles(path, chunk_size=1000))
    assert len(one) == 1
    pieces = list(iter_particles(path, chunk_size=96))
    assert [len(c) for c in pieces] == [96] * 10 + [40]
    assert ak.array_equal(ak.concatenate(pieces), one[0])
    window = ak.concatenate(list(iter_particles(path, chunk_size=30, start=250, stop=333)))
    assert ak.array_equal(window, one[0][250:333])
    assert list(iter_particles(path, start=2000)) == []


# --------------------------------------------------------------------------------------------
# real files
# --------------------------------------------------------------------------------------------


def test_real_tiny_raw_file() -> None:
    import pandas as pd

    path = need(TINY_RAW)
    assert detect_format(path) == "lhco_raw"
    assert count_events(path) == 1000
    events = ak.concatenate(list(iter_particles(path, chunk_size=400)))
    assert len(events) == 1000
    assert int(np.sum(events.label == 1)) == 93
    assert int(np.sum(events.label == 0)) == 907
    np.testing.assert_array_equal(events.event_id, np.arange(1000))
    flat_pt = ak.flatten(events.particles.pt)
    assert ak.all(flat_pt > 0)
    assert ak.max(ak.num(events.particles)) <= 700
    assert ak.max(abs(events.particles.phi)) <= np.pi + 1e-6
    # an independent reader (pandas / PyTables) agrees on the first rows
    frame = pd.read_hdf(path, "df").iloc[:20].to_numpy()
    for i in range(20):
        slots = frame[i, :2100].reshape(700, 3)
        slots = slots[slots[:, 0] > 0]
        np.testing.assert_array_equal(events.particles.pt[i], slots[:, 0])
        np.testing.assert_array_equal(events.particles.eta[i], slots[:, 1])
        assert events.label[i] == frame[i, 2100]


def test_real_lhco_like_raw_slice() -> None:
    path = need(LIKE_RAW)
    assert count_events(path) == 14_000
    chunks = list(iter_particles(path, chunk_size=100, start=13_800, stop=None))
    events = ak.concatenate(chunks)
    assert len(events) == 200
    np.testing.assert_array_equal(events.event_id, np.arange(13_800, 14_000))
    pt = events.particles.pt
    assert ak.all(pt[:, :-1] >= pt[:, 1:])  # this file is pT-ordered
    assert set(np.unique(events.label).tolist()) <= {0, 1}


def test_real_cathode_test_file() -> None:
    path = need(CATHODE_TEST)
    assert count_events(path) == 62_124
    table = read_features(path)
    assert len(table) == 62_124
    assert int(table.label.sum()) == 377
    assert table.names == ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2")
    # every event is in the SR 3.3-3.7 TeV, here in GeV
    assert table.mjj.min() > 3300.0
    assert table.mjj.max() < 3700.0
    assert 50.0 < np.median(table.columns["mj1"]) < 500.0
    assert (table.columns["delta_mj"] >= 0).all()
    # signal: X(500) Y(100): mj1 near 100 GeV, delta_mj near 400 GeV
    sig = table.select(table.label == 1)
    assert 60.0 < np.median(sig.columns["mj1"]) < 140.0
    assert 300.0 < np.median(sig.columns["delta_mj"]) < 450.0


def test_real_lhco_like_features_slice() -> None:
    import h5py
    import hdf5plugin  # noqa: F401

    path = need(LIKE_FEATURES)
    assert detect_format(path) == "lhco_features"
    assert count_events(path) == 330_000
    table = read_lhco_features(path, stop=60_000)
    assert len(table) == 60_000
    sig = table.mjj[table.label == 1]
    assert 5000 < sig.size < 6000  # 30k of 330k rows are signal
    assert 3350.0 < np.median(sig) < 3600.0  # W' (3.5 TeV) peak
    hist, edges = np.histogram(sig, bins=np.arange(2000, 5001, 200))
    assert 3300 <= edges[np.argmax(hist)] <= 3500
    assert np.median(table.mjj[table.label == 0]) < 3300.0  # falling QCD spectrum
    # cross-check mjj of a few rows by hand from the raw columns
    with h5py.File(path) as fh:
        block = fh["df/block0_values"][:100]
    p1, p2 = block[:, 0:3], block[:, 7:10]
    e = np.sqrt((p1**2).sum(1) + block[:, 3] ** 2) + np.sqrt((p2**2).sum(1) + block[:, 10] ** 2)
    np.testing.assert_allclose(table.mjj[:100], np.sqrt(e**2 - ((p1 + p2) ** 2).sum(1)), rtol=1e-9)
    np.testing.assert_allclose(table.columns["mj1"][:100], np.minimum(block[:, 3], block[:, 10]))


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    for call in (read_features, count_events, detect_format, iter_particles):
        with pytest.raises(InputError, match=r"nope\.h5: no such file.*Check the path"):
            call(path)


def test_not_hdf5_with_h5_suffix(tmp_path: Path) -> None:
    path = tmp_path / "fake.h5"
    path.write_text("pxj1,pyj1\n1,2\n")
    with pytest.raises(
        InputError,
        match=r"fake\.h5: has suffix '\.h5' but its content is not a hdf5 file.*Re-create",
    ):
        read_features(path)
    empty = tmp_path / "empty.h5"
    empty.touch()
    with pytest.raises(InputError, match=r"empty\.h5: is empty.*recreate"):
        read_features(empty)
    unknown = tmp_path / "events.csv"
    unknown.write_text("a,b\n")
    with pytest.raises(InputError, match=r"events\.csv: not a recognised event file.*Supported"):
        count_events(unknown)


def test_wrong_columns(tmp_path: Path) -> None:
    import pandas as pd

    h5 = tmp_path / "other.h5"
    pd.DataFrame({"px": np.ones(3), "py": np.ones(3)}).to_hdf(h5, key="df", format="fixed")
    with pytest.raises(InputError, match=r"other\.h5: columns \['pxj1'.*missing.*expected an LHCO"):
        read_features(h5)
    wrong_key = tmp_path / "key.h5"
    pd.DataFrame({"px": np.ones(3)}).to_hdf(wrong_key, key="events", format="fixed")
    with pytest.raises(InputError, match=r"key\.h5: no pandas frame 'df/block0_values'"):
        count_events(wrong_key)
    npy = tmp_path / "three.npy"
    np.save(npy, np.ones((4, 3)))
    with pytest.raises(
        InputError,
        match=r"three\.npy: holds a float64 array of shape \(4, 3\).*\(N, 5\) or \(N, 6\)",
    ):
        read_features(npy)
    pq_path = tmp_path / "bad.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"mass": [1.0, 2.0]}), pq_path)
    with pytest.raises(
        InputError, match=r"bad\.parquet: Parquet columns \['mass'\] match neither.*'mjj'"
    ):
        read_features(pq_path)
    pq.write_table(pa.table({"mjj": ["a", "b"]}), pq_path)
    with pytest.raises(
        InputError, match=r"bad\.parquet: malformed.*non-numeric columns \['mjj \(string"
    ):
        read_features(pq_path)


def test_labels_must_be_binary(tmp_path: Path) -> None:
    arr = np.column_stack(
        [
            np.full(3, 3.5),
            np.full(3, 0.1),
            np.full(3, 0.3),
            np.full(3, 0.5),
            np.full(3, 0.5),
            [0, 1, 2],
        ]
    )
    np.save(tmp_path / "lab.npy", arr)
    with pytest.raises(InputError, match=r"lab\.npy: column 6 \(label\) is 2\.0 in row 2"):
        read_features(tmp_path / "lab.npy")


def test_cathode_file_in_gev_is_rejected(tmp_path: Path) -> None:
    arr = np.column_stack(
        [np.full(3, 3500.0), np.full(3, 100.0), np.full(3, 300.0), np.full(3, 0.5), np.full(3, 0.5)]
    )
    np.save(tmp_path / "gev.npy", arr)
    with pytest.raises(
        InputError, match=r"gev\.npy: median mjj is 3500, which is not TeV.*write_features"
    ):
        read_features(tmp_path / "gev.npy")


def test_tev_in_parquet_is_rejected(tmp_path: Path) -> None:
    path = write_features(
        tmp_path / "tev.parquet", FeatureTable({"mjj": [3.4, 3.5, 3.6]}, [0, 1, 2])
    )
    with pytest.raises(InputError, match=r"tev\.parquet: mjj has median 3\.5: this looks like TeV"):
        read_features(path)


@pytest.mark.parametrize("name", ["raw.h5", "feat.parquet", "feat.root", "c.npy"])
def test_truncated_files(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / name
    if name == "raw.h5":
        write_lhco_raw(path, *random_particles(rng, 200))
        read = lambda p: list(iter_particles(p))
    elif name == "c.npy":
        write_cathode_npy(path, feature_table(rng, 100, labelled=True))
        read = read_features
    else:
        write_features(path, feature_table(rng, 5000, labelled=True))
        read = read_features
    read(path)  # the intact file reads
    cut = tmp_path / f"cut_{name}"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="(?s)" + re.escape(str(cut)) + ": .*(truncated|corrupt)"):
        read(cut)


def test_wrong_kind_of_file(tmp_path: Path) -> None:
    path = need(TINY_RAW)
    with pytest.raises(
        InputError,
        match=r"events_anomalydetection_tiny\.h5: is an LHCO raw particle file.*iter_particles",
    ):
        read_features(path)
    table_path = write_features(
        tmp_path / "f.parquet", feature_table(np.random.default_rng(7), 10, labelled=False)
    )
    with pytest.raises(InputError, match=r"f\.parquet: is a features file.*read_features"):
        iter_particles(table_path)
    with pytest.raises(InputError, match="chunk_size must be a positive integer"):
        iter_particles(path, chunk_size=0)
    with pytest.raises(InputError, match=r"\.csv'; use '\.parquet' or '\.root'"):
        write_features(
            tmp_path / "f.csv", feature_table(np.random.default_rng(7), 10, labelled=False)
        )


def test_writer_input_validation(tmp_path: Path) -> None:
    pt = ak.Array([[1.0, 0.0]])
    with pytest.raises(InputError, match=r"pT must be finite and > 0 GeV"):
        write_lhco_raw(tmp_path / "r.h5", pt, pt, pt)
    with pytest.raises(InputError, match="same number of particles"):
        write_lhco_raw(
            tmp_path / "r.h5", ak.Array([[1.0]]), ak.Array([[1.0, 2.0]]), ak.Array([[1.0]])
        )
    with pytest.raises(InputError, match=r"labels must be 0 \(background\) or 1"):
        write_lhco_raw(
            tmp_path / "r.h5",
            ak.Array([[1.0]]),
            ak.Array([[1.0]]),
            ak.Array([[1.0]]),
            np.array([3]),
        )
    jets = random_jets(np.random.default_rng(8), 4)
    del jets["tau3j2"]
    with pytest.raises(InputError, match=r"jets lack column\(s\) \['tau3j2'\]"):
        write_lhco_features(tmp_path / "f.h5", jets)
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_target_untouched(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    pt, eta, phi = random_particles(rng, 20)
    target = tmp_path / "p.parquet"
    target.write_bytes(b"previous content")

    def chunks():
        yield particle_chunk(np.arange(20), None, pt, eta, phi)
        msg = "generator failed"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="generator failed"):
        write_particles(target, chunks())
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_missing_blosc_plugin_message() -> None:
    from sideband.events.lhco import _read_rows

    class NoPlugin:
        def __getitem__(self, item):
            msg = "Can't read data (can't open directory: /usr/local/hdf5/lib/plugin)"
            raise OSError(msg)

    with pytest.raises(InputError, match=r"x\.h5: cannot read rows 0-5: .*install `hdf5plugin`"):
        _read_rows(NoPlugin(), 0, 5, Path("x.h5"))


def test_suffix_content_mismatch_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_features(
        tmp_path / "f.parquet", feature_table(np.random.default_rng(10), 10, labelled=True)
    )
    renamed = tmp_path / "f.root"
    shutil.copy(path, renamed)
    with caplog.at_level(logging.WARNING, logger="sideband.events.formats"):
        table = read_features(renamed)
    assert len(table) == 10
    assert "content is parquet" in caplog.text
