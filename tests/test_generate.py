"""Tests of `sideband.generate`: Pythia 8 LHCO-like events, the trigger, seeds and the bundled data."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from sideband.errors import InputError
from sideband.generate import (
    concatenate_generated,
    generate_events,
    pythia_settings,
    write_generated,
)

HAS_PYTHIA = importlib.util.find_spec("pythia8mc") is not None
needs_pythia = pytest.mark.skipif(
    not HAS_PYTHIA, reason="pythia8mc not installed (pip install 'sideband[generator]')"
)
DATA = Path(__file__).parents[1] / "data"

# Small samples: QCD with lower pT-hat and trigger thresholds (cheaper events), signal as in LHCO.
QCD_KW = {"pthat_min_gev": 500.0, "trigger_pt_gev": 600.0, "workers": 1, "progress": False}
SIG_KW = {"workers": 1, "progress": False}


def _mjj(jets: dict[str, np.ndarray]) -> np.ndarray:
    e = jets["ej1"] + jets["ej2"]
    p2 = sum((jets[f"p{c}j1"] + jets[f"p{c}j2"]) ** 2 for c in "xyz")
    return np.sqrt(e**2 - p2)


@pytest.fixture(scope="module")
def qcd():
    return generate_events("qcd", 20, seed=11, **QCD_KW)


@pytest.fixture(scope="module")
def signal():
    return generate_events("signal", 10, seed=12, **SIG_KW)


@needs_pythia
@pytest.mark.parametrize("name", ["qcd", "signal"])
def test_shapes_labels_and_settings(name, request):
    ev = request.getfixturevalue(name)
    n = 20 if name == "qcd" else 10
    assert len(ev) == n
    assert len(ev.particles) == n
    assert set(ev.particles.fields) == {"pt", "eta", "phi"}
    assert ev.label.dtype == np.int8
    assert (ev.label == (1 if name == "signal" else 0)).all()
    for key in ("pxj1", "pyj1", "pzj1", "ej1", "mj1", "tau1j1", "tau2j1", "tau3j1", "mj2"):
        assert ev.jets[key].shape == (n,)
        assert np.isfinite(ev.jets[key]).all()
    assert ev.n_tried >= n
    assert 0 < ev.efficiency <= 1
    assert ev.settings["seed"] == (11 if name == "qcd" else 12)
    assert ev.settings["pythia"]["Tune:pp"] == "14"
    assert ev.settings["pythia"]["Beams:eCM"] == "13000."
    assert len(ev.settings["worker_seeds"]) == 1


@needs_pythia
@pytest.mark.parametrize("name", ["qcd", "signal"])
def test_particles_in_acceptance_and_pt_ordered(name, request):
    ev = request.getfixturevalue(name)
    p = ev.particles
    assert ak.all(abs(p.eta) < 2.5)
    assert ak.all(p.pt > 0)
    assert ak.all(abs(p.phi) <= np.pi)
    assert ak.all(p.pt[:, :-1] >= p.pt[:, 1:])
    assert ak.min(ak.num(p)) > 50  # hadronised events have hundreds of particles
    # visible final state: summed pT of the event balances roughly (no neutrinos needed)
    assert ak.all(ak.sum(p.pt, axis=1) > 1000.0)


@needs_pythia
@pytest.mark.parametrize(("name", "pt_cut"), [("qcd", 600.0), ("signal", 1200.0)])
def test_every_event_passes_the_trigger(name, pt_cut, request):
    from sideband.features.substructure import cluster_dijets

    ev = request.getfixturevalue(name)
    j = ev.jets
    passes = ((j["ptj1"] > pt_cut) & (np.abs(j["etaj1"]) < 2.5)) | (
        (j["ptj2"] > pt_cut) & (np.abs(j["etaj2"]) < 2.5)
    )
    assert passes.all()
    assert (j["ptj1"] >= j["ptj2"]).all()
    assert np.allclose(j["ptj1"], np.hypot(j["pxj1"], j["pyj1"]))
    # the stored jets are those of the stored particles
    again = cluster_dijets(ev.particles)
    for key in ("pxj1", "pzj2", "mj1", "mj2", "tau2j1"):
        np.testing.assert_allclose(again[key], j[key], rtol=1e-12)
    assert ev.settings["trigger"]["pt_gev"] == pt_cut


@needs_pythia
def test_signal_kinematics(signal):
    mjj = _mjj(signal.jets)
    heavy = np.maximum(signal.jets["mj1"], signal.jets["mj2"])
    light = np.minimum(signal.jets["mj1"], signal.jets["mj2"])
    assert 3000.0 < np.median(mjj) < 3800.0  # W' at 3500 GeV
    assert 420.0 < np.median(heavy) < 600.0  # X at 500 GeV
    assert 60.0 < np.median(light) < 180.0  # Y at 100 GeV


@needs_pythia
def test_qcd_kinematics(qcd):
    heavy = np.maximum(qcd.jets["mj1"], qcd.jets["mj2"])
    assert np.median(heavy) < 300.0  # QCD jets are light, unlike the 500 GeV X
    assert np.median(_mjj(qcd.jets)) > 1000.0  # two jets of pT > ~600 GeV


@needs_pythia
def test_same_seed_same_events_different_seed_different(signal):
    head = generate_events("signal", 4, seed=12, **SIG_KW)
    # the same seed repeats the first events exactly (events are generated in order)
    assert ak.to_list(head.particles) == ak.to_list(signal.particles[:4])
    np.testing.assert_array_equal(head.jets["mj1"], signal.jets["mj1"][:4])
    other = generate_events("signal", 4, seed=13, **SIG_KW)
    assert not np.array_equal(other.jets["mj1"], head.jets["mj1"])
    assert other.settings["worker_seeds"] != head.settings["worker_seeds"]


@needs_pythia
@pytest.mark.slow  # two spawned processes import awkward, fastjet and Pythia: 15-25 s
def test_two_workers_split_deterministically():
    from sideband.generate.pythia import _worker

    ev = generate_events("signal", 3, seed=5, workers=2, progress=False)
    assert len(ev) == 3
    assert ev.settings["worker_events"] == [2, 1]
    # worker 0's events are those of one Pythia run with its seed, made here in-process
    first = _worker(
        ev.settings["pythia"], ev.settings["worker_seeds"][0], 2, {"pt_gev": 1200.0, "abs_eta": 2.5}
    )
    np.testing.assert_array_equal(first["pt"], ak.to_numpy(ak.flatten(ev.particles.pt[:2])))
    np.testing.assert_array_equal(first["jets"]["mj2"], ev.jets["mj2"][:2])


@needs_pythia
def test_settings_are_accepted_and_applied_by_pythia():
    import pythia8mc

    settings = pythia_settings("signal", mass_wprime_gev=3000.0, mass_x_gev=400.0, mass_y_gev=80.0)
    pythia = pythia8mc.Pythia("", False)
    for name, value in settings.items():
        assert pythia.readString(f"{name} = {value}"), name
    pd = pythia.particleData
    assert pd.m0(34) == pytest.approx(3000.0)
    assert pd.m0(24) == pytest.approx(400.0)
    assert pd.m0(23) == pytest.approx(80.0)
    assert pythia.flag("NewGaugeBoson:ffbar2Wprime")
    assert pythia.parm("Wprime:coup2WZ") == pytest.approx(1.0)
    assert not pythia.flag("HardQCD:all")
    qcd = pythia_settings("qcd", pthat_min_gev=750.0)
    assert qcd["HardQCD:all"] == "on"
    assert float(qcd["PhaseSpace:pTHatMin"]) == 750.0
    assert "34:m0" not in qcd


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("zprime", 10), {"seed": 1}, "process must be"),
        (("qcd", 0), {"seed": 1}, "n_events"),
        (("qcd", 10), {"seed": -1}, "seed"),
        (("qcd", 10), {"seed": 1, "workers": 0}, "workers"),
        (("qcd", 10), {"seed": 1, "pthat_min_gev": -5.0}, "pthat_min_gev"),
        (("signal", 10), {"seed": 1, "mass_x_gev": 3000.0, "mass_y_gev": 600.0}, "m_X"),
    ],
)
def test_bad_arguments_raise_input_error(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        generate_events(*args, progress=False, **kwargs)


def test_missing_pythia_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes `import pythia8mc` fail
    with pytest.raises(InputError, match=r"sideband\[generator\]"):
        generate_events("qcd", 5, seed=1, workers=1, progress=False)


@needs_pythia
def test_concatenate_generated(qcd, signal):
    both = concatenate_generated([qcd, signal])
    assert len(both) == len(qcd) + len(signal)
    assert both.n_tried == qcd.n_tried + signal.n_tried
    np.testing.assert_array_equal(both.label, np.r_[qcd.label, signal.label])
    np.testing.assert_array_equal(both.jets["mj1"], np.r_[qcd.jets["mj1"], signal.jets["mj1"]])
    assert ak.to_list(both.particles[len(qcd)]) == ak.to_list(signal.particles[0])
    with pytest.raises(InputError, match="empty"):
        concatenate_generated([])


@needs_pythia
def test_write_generated_round_trip(signal, tmp_path):
    pytest.importorskip("tables", reason="the LHCO writers need PyTables")
    import pandas as pd

    paths = write_generated(tmp_path, signal, stem="sig")
    assert paths == {"raw": tmp_path / "sig_raw.h5", "features": tmp_path / "sig.features.h5"}
    feats = pd.read_hdf(paths["features"], key="df")
    assert len(feats) == len(signal)
    np.testing.assert_array_equal(feats["mj1"].to_numpy(), signal.jets["mj1"])
    np.testing.assert_array_equal(feats["label"].to_numpy(), 1.0)
    raw = pd.read_hdf(paths["raw"], key="df").to_numpy()
    assert raw.shape == (len(signal), 2101)
    n0 = len(signal.particles[0])
    np.testing.assert_array_equal(raw[0, 0 : 3 * min(n0, 700) : 3], signal.particles[0].pt[:700])
    np.testing.assert_array_equal(raw[:, -1], 1.0)
    with pytest.raises(InputError, match="stem"):
        write_generated(tmp_path, signal, stem="a/b")


# --------------------------------------------------------------------------------------------
# the bundled dataset


@pytest.fixture(scope="module")
def manifest():
    path = DATA / "MANIFEST.json"
    if not path.exists():
        pytest.skip(f"{path} not made yet (run data/make_default_dataset.py)")
    return json.loads(path.read_text())


def test_bundled_files_match_manifest(manifest):
    for name, info in manifest["files"].items():
        data = (DATA / name).read_bytes()
        assert len(data) == info["bytes"], name
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
    total = sum(info["bytes"] for info in manifest["files"].values())
    assert total < 20e6


def test_bundled_mixture_counts_and_injection(manifest):
    import pandas as pd

    counts = manifest["counts"]
    mix = pd.read_hdf(DATA / "lhco_like_default.features.h5", key="df")
    assert len(mix) == counts["mixture_rows"] == counts["qcd_generated"] + counts["signal_injected"]
    assert int(mix["label"].sum()) == counts["signal_injected"]
    jets = {c: mix[c].to_numpy() for c in mix.columns}
    p = {c: jets[f"{c}j1"] + jets[f"{c}j2"] for c in ("px", "py", "pz")}
    e1 = np.sqrt(jets["pxj1"] ** 2 + jets["pyj1"] ** 2 + jets["pzj1"] ** 2 + jets["mj1"] ** 2)
    e2 = np.sqrt(jets["pxj2"] ** 2 + jets["pyj2"] ** 2 + jets["pzj2"] ** 2 + jets["mj2"] ** 2)
    mjj = np.sqrt((e1 + e2) ** 2 - p["px"] ** 2 - p["py"] ** 2 - p["pz"] ** 2)
    lo, hi = counts["signal_region_gev"]
    sr = (mjj > lo) & (mjj < hi)
    n_s = int((sr & (jets["label"] == 1)).sum())
    n_b = int((sr & (jets["label"] == 0)).sum())
    assert n_b == counts["sr_qcd"]
    assert n_s == counts["sr_signal_injected"]
    assert n_s / n_b == pytest.approx(manifest["options"]["s_over_b"], abs=2 / n_b)
    # shuffled: signal rows are spread over the file, not in a block at the end
    rows = np.flatnonzero(jets["label"] == 1)
    assert rows.min() < len(mix) * 0.05
    assert rows.max() > len(mix) * 0.95
    sig = pd.read_hdf(DATA / "lhco_like_signal.features.h5", key="df")
    assert len(sig) == counts["signal_extra_file"]
    assert (sig["label"] == 1).all()
    assert counts["signal_injected"] + len(sig) == counts["signal_generated"]


def test_bundled_raw_small_matches_mixture_rows(manifest):
    import pandas as pd

    from sideband.features.substructure import cluster_dijets

    raw = pd.read_hdf(DATA / "lhco_like_default_raw_small.h5", key="df").to_numpy()
    mix = pd.read_hdf(DATA / "lhco_like_default.features.h5", key="df")
    n = manifest["counts"]["raw_small_rows"]
    assert raw.shape == (n, 2101)
    head = raw[:20]
    parts = head[:, :2100].reshape(20, 700, 3)
    keep = parts[:, :, 0] > 0
    counts = keep.sum(axis=1)
    flat = parts[keep]
    particles = ak.zip(
        {k: ak.unflatten(flat[:, i], counts) for i, k in enumerate(("pt", "eta", "phi"))}
    )
    jets = cluster_dijets(particles)
    np.testing.assert_array_equal(head[:, -1], mix["label"].to_numpy()[:20])
    # the raw rows are the first mixture rows (events with > 700 particles lose soft ones)
    full = counts < 700
    np.testing.assert_allclose(jets["mj1"][full], mix["mj1"].to_numpy()[:20][full], rtol=1e-9)
    np.testing.assert_allclose(jets["pxj2"], mix["pxj2"].to_numpy()[:20], rtol=1e-3, atol=1.0)
