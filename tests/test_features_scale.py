"""Tests of the events-at-scale machinery: the fast N-subjettiness, constituent point clouds,
chunked execution with checkpoints (resume after a kill) and point-cloud Parquet files."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from sideband.errors import ConfigError, InputError
from sideband.events import iter_particles, read_point_clouds, write_point_clouds
from sideband.features import cluster_dijets, dijet_features, extract_features, jet_point_clouds
from sideband.features.run import ChunkTask
from sideband.records import FEATURE_COLUMNS, PointCloudTable

DATA = Path(__file__).parents[1].parent / "shared" / "data"
TINY = DATA / "lhco_rnd" / "raw_tiny" / "events_anomalydetection_tiny.h5"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


@pytest.fixture(scope="module")
def tiny_parts():
    return next(iter(iter_particles(_need(TINY), chunk_size=200))).particles


def _jets_from_clouds(pc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(N, 2) px, py, pz, E [GeV] summed from the massless constituents of the point clouds."""
    c = pc["constituents"].astype(np.float64)
    m = pc["mask"]
    jet = pc["jets"]
    pt = c[..., 0] * jet[..., 0:1]
    eta = c[..., 1] + jet[..., 1:2]
    phi = c[..., 2] + jet[..., 2:3]
    return {
        "px": (pt * np.cos(phi) * m).sum(-1),
        "py": (pt * np.sin(phi) * m).sum(-1),
        "pz": (pt * np.sinh(eta) * m).sum(-1),
        "e": (pt * np.cosh(eta) * m).sum(-1),
    }


# --------------------------------------------------------------------------------------------
# N-subjettiness: the numpy exclusive-kT path equals fastjet-contrib's
# --------------------------------------------------------------------------------------------


def test_fast_kt_axes_nsubjettiness_equals_fastjet_contrib(tiny_parts):
    import fastjet

    from sideband.features.substructure import _leading_jets, _nsubjettiness_kt_axes

    leading = _leading_jets(tiny_parts, r=1.0, min_jet_pt_gev=20.0)
    per_jet = ak.flatten(leading.constituents, axis=1)
    ours = _nsubjettiness_kt_axes(leading.constituents)
    sub = fastjet.ClusterSequence(per_jet, fastjet.JetDefinition(fastjet.kt_algorithm, 1.0))
    ref = sub.njettiness(
        njets=[1, 2, 3],
        measure_definition="UnnormalizedMeasure",
        axes_definition="KT_Axes",
        beta=1.0,
        R0=1.0,
    )
    np.testing.assert_allclose(ours, ak.to_numpy(ref), rtol=1e-10, atol=1e-9)
    assert (ours[:, 0] > ours[:, 2]).all()


def test_fast_kt_axes_handles_jets_with_few_constituents():
    # jets of 1, 2 and 3 particles: tau_N = 0 once N reaches the multiplicity
    events = ak.zip(
        {
            "pt": ak.Array([[900.0, 850.0], [500.0, 400.0, 800.0], [300.0, 300.0, 300.0, 700.0]]),
            "eta": ak.Array([[0.0, 0.5], [0.0, 0.3, 0.5], [0.0, 0.2, -0.2, 0.5]]),
            "phi": ak.Array([[0.0, 3.0], [0.0, 0.2, 3.0], [0.0, 0.3, -0.3, 3.0]]),
        }
    )
    jets = cluster_dijets(events)
    assert jets["has_dijet"].all()
    # event 0: two one-particle jets
    assert jets["tau1j1"][0] == pytest.approx(0.0, abs=1e-9)
    assert jets["tau1j2"][0] == pytest.approx(0.0, abs=1e-9)
    # event 1: the two-particle jet (pT 900 GeV) has tau1 > 0 and tau2 = tau3 = 0
    assert jets["tau1j1"][1] > 1.0
    assert jets["tau2j1"][1] == pytest.approx(0.0, abs=1e-9)
    assert jets["tau3j1"][1] == pytest.approx(0.0, abs=1e-9)
    # event 2: three particles: tau2 > 0 = tau3
    assert jets["tau2j1"][2] > 1.0
    assert jets["tau3j1"][2] == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# point clouds
# --------------------------------------------------------------------------------------------


def test_point_clouds_rebuild_the_jets(tiny_parts):
    pc = jet_point_clouds(tiny_parts, max_constituents=400)
    jets = cluster_dijets(tiny_parts)
    assert pc["has_dijet"].all()
    n_cons = pc["jets"][..., 4]
    assert (pc["mask"].sum(-1) == n_cons).all()  # nothing truncated with 400 slots
    np.testing.assert_allclose(pc["jets"][:, 0, 0], jets["ptj1"], rtol=1e-12)
    np.testing.assert_allclose(pc["jets"][:, 1, 3], jets["mj2"], rtol=1e-9, atol=1e-6)
    rebuilt = _jets_from_clouds(pc)
    for k in (1, 2):
        for q in ("px", "py", "pz", "e"):
            # float32 storage of the relative coordinates: ~1e-7 relative
            np.testing.assert_allclose(
                rebuilt[q][:, k - 1], jets[f"{q}j{k}"], atol=2e-6 * jets[f"ej{k}"].max()
            )
    np.testing.assert_allclose(pc["mjj"], dijet_features(jets)["mjj"], rtol=1e-9)
    c = pc["constituents"]
    m = pc["mask"]
    # hardest first, padding zero, Delta phi wrapped, pT_rel in (0, 1]
    step = np.diff(c[..., 0], axis=-1)
    assert (step[m[..., 1:]] <= 0).all()
    assert (c[~m] == 0).all()
    assert (np.abs(c[..., 2]) <= np.pi).all()
    assert (c[..., 0][m] > 0).all()
    assert (c[..., 0][m] <= 1).all()
    # a jet of R = 1 holds its constituents within Delta R ~ 1 of the axis (anti-kT measures in
    # rapidity, and a massive jet's eta differs from its rapidity: a few reach a bit further)
    dr = np.hypot(c[..., 1], c[..., 2])[m]
    assert np.quantile(dr, 0.99) < 1.0
    assert dr.max() < 1.5


def test_point_clouds_truncate_to_the_hardest(tiny_parts):
    full = jet_point_clouds(tiny_parts[:20], max_constituents=400)
    few = jet_point_clouds(tiny_parts[:20], max_constituents=10)
    assert few["constituents"].shape == (20, 2, 10, 3)
    np.testing.assert_array_equal(few["constituents"], full["constituents"][:, :, :10])
    np.testing.assert_array_equal(few["jets"], full["jets"])  # multiplicity counts all
    assert (few["jets"][..., 4] > 10).any()
    with pytest.raises(InputError, match="max_constituents"):
        jet_point_clouds(tiny_parts[:2], max_constituents=0)


def test_point_clouds_of_events_without_two_jets_are_empty():
    events = ak.zip(
        {
            "pt": ak.Array([[900.0, 10.0], [], [900.0, 800.0]]),
            "eta": ak.Array([[0.0, 0.1], [], [0.0, 0.4]]),
            "phi": ak.Array([[0.0, 0.1], [], [0.0, -3.1]]),
        }
    )
    pc = jet_point_clouds(events, max_constituents=4)
    assert pc["has_dijet"].tolist() == [False, False, True]
    assert not pc["mask"][:2].any()
    assert np.isnan(pc["jets"][:2]).all()
    assert pc["mask"][2].sum() == 2
    # one-particle jets: pT_rel 1 at the axis
    assert pc["constituents"][2, 0, 0, 0] == pytest.approx(1.0)
    assert pc["constituents"][2, 1, 0, 1:] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_point_cloud_parquet_roundtrip(tmp_path, tiny_parts):
    pc = jet_point_clouds(tiny_parts[:30], max_constituents=150)
    table = PointCloudTable(
        pc["constituents"], pc["mask"], pc["jets"], pc["mjj"], np.arange(30) + 7, np.zeros(30)
    )
    path = write_point_clouds(tmp_path / "pc.parquet", table)
    back = read_point_clouds(path)
    assert back.max_constituents == 150
    np.testing.assert_array_equal(back.constituents, table.constituents)
    np.testing.assert_array_equal(back.mask, table.mask)
    np.testing.assert_array_equal(back.jets, table.jets)
    np.testing.assert_array_equal(back.event_id, table.event_id)
    assert back.label.tolist() == [0] * 30
    small = read_point_clouds(path, max_constituents=5)
    np.testing.assert_array_equal(small.constituents, table.constituents[:, :, :5])
    pd.DataFrame({"a": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(InputError, match="not a sideband point-cloud file"):
        read_point_clouds(tmp_path / "other.parquet")
    with pytest.raises(InputError, match="shape"):
        PointCloudTable(
            pc["constituents"][:, :1], pc["mask"], pc["jets"], pc["mjj"], np.arange(200)
        )


# --------------------------------------------------------------------------------------------
# chunked runs: point clouds, checkpoints, resume
# --------------------------------------------------------------------------------------------


def test_extract_features_writes_point_clouds_per_chunk(tmp_path):
    out = tmp_path / "clouds"
    table, summary = extract_features(
        _need(TINY),
        chunk_size=40,
        max_events=100,
        point_cloud_dir=out,
        max_constituents=50,
        progress=False,
        with_summary=True,
    )
    assert summary["n_chunks"] == 3
    assert summary["n_events"] == 100
    assert summary["n_kept"] == len(table) == 100
    assert summary["mjj_hist"].sum() == 100
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3
    clouds = read_point_clouds(out)
    assert clouds.max_constituents == 50
    np.testing.assert_array_equal(clouds.event_id, table.event_id)
    np.testing.assert_allclose(clouds.mjj, table.mjj, rtol=1e-12)
    np.testing.assert_array_equal(clouds.label, table.label)
    # fewer events into the same folder: the chunks of the longer run are removed
    shorter = extract_features(
        TINY, chunk_size=40, max_events=60, point_cloud_dir=out, max_constituents=50, progress=False
    )
    assert len(list(out.glob("*.parquet"))) == 2
    np.testing.assert_array_equal(read_point_clouds(out).event_id, shorter.event_id)
    # a second run into the folder with other settings is refused, not mixed
    with pytest.raises(ConfigError, match="another run"):
        extract_features(
            TINY,
            chunk_size=40,
            max_events=100,
            point_cloud_dir=out,
            max_constituents=60,
            progress=False,
        )


def test_killed_run_resumes_to_the_same_output(tmp_path, monkeypatch):
    ck = tmp_path / "ck"
    clouds = tmp_path / "clouds"
    kwargs = {
        "chunk_size": 25,
        "max_events": 120,
        "progress": False,
        "point_cloud_dir": clouds,
        "max_constituents": 30,
        "with_summary": True,
    }
    reference, _ = extract_features(_need(TINY), **{**kwargs, "point_cloud_dir": tmp_path / "ref"})

    original = ChunkTask._process
    calls = {"n": 0}

    def dying(self, item):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the run is killed during its third chunk
        return original(self, item)

    monkeypatch.setattr(ChunkTask, "_process", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_features(TINY, checkpoint_dir=ck, **kwargs)
    monkeypatch.setattr(ChunkTask, "_process", original)
    resumed, summary = extract_features(TINY, checkpoint_dir=ck, **kwargs)
    assert summary["n_chunks"] == 5
    assert summary["n_chunks_restored"] == 2
    assert summary["n_chunks_computed"] == 3
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(resumed.columns[name], reference.columns[name])
    np.testing.assert_array_equal(resumed.event_id, reference.event_id)
    a, b = read_point_clouds(clouds), read_point_clouds(tmp_path / "ref")
    np.testing.assert_array_equal(a.constituents, b.constituents)
    np.testing.assert_array_equal(a.event_id, b.event_id)
    # a damaged checkpoint is recomputed, not trusted
    victim = next(ck.rglob("*.pkl"))
    victim.write_bytes(b"garbage")
    again, summary = extract_features(TINY, checkpoint_dir=ck, **kwargs)
    assert summary["n_chunks_computed"] == 1
    np.testing.assert_array_equal(again.mjj, reference.mjj)
    # other settings never reuse these checkpoints
    _, other = extract_features(
        TINY,
        checkpoint_dir=ck,
        chunk_size=25,
        max_events=50,
        r=0.8,
        progress=False,
        with_summary=True,
    )
    assert other["n_chunks_restored"] == 0


def test_flat_parquet_with_custom_column_names(tmp_path, tiny_parts):
    parts = tiny_parts[:30]
    path = tmp_path / "flat.parquet"
    ak.to_parquet(
        ak.zip({"c_pt": parts.pt, "c_eta": parts.eta, "c_phi": parts.phi}, depth_limit=1), path
    )
    names = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi"}
    chunks = list(iter_particles(path, chunk_size=12, branches=names))
    assert [len(c) for c in chunks] == [12, 12, 6]
    assert ak.all(chunks[1].particles.pt == parts.pt[12:24])
    assert chunks[2].event_id.tolist() == list(range(24, 30))
    table = extract_features(path, branches=names, chunk_size=10, progress=False)
    direct = dijet_features(cluster_dijets(parts))
    np.testing.assert_allclose(table.mjj, direct["mjj"], rtol=1e-12)
    assert table.label is None
    with pytest.raises(InputError, match="not found"):
        list(iter_particles(path, chunk_size=12, branches={"pt": "pt"}))


def test_extract_features_refuses_a_features_file(tmp_path):
    from sideband.events import write_features
    from sideband.records import FeatureTable

    path = write_features(
        tmp_path / "f.parquet", FeatureTable({"mjj": np.array([3500.0])}, np.array([0]))
    )
    with pytest.raises(InputError, match="features file"):
        extract_features(path, progress=False)


def test_cli_features_writes_table_clouds_and_cleans_checkpoints(tmp_path):
    from click.testing import CliRunner

    from sideband.cli import main
    from sideband.events import read_features

    out = tmp_path / "feats.parquet"
    clouds = tmp_path / "clouds"
    args = ["features", str(_need(TINY)), "-o", str(out), "--max-events", "60", "--chunk-size",
            "30", "--point-clouds", str(clouds), "--max-constituents", "20", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--keep-checkpoints"])
    assert result.exit_code == 0, result.output
    assert "60 events in 2 chunk(s) (0 restored" in result.output
    assert (tmp_path / "feats.parquet.checkpoints").is_dir()
    table = read_features(out)
    assert len(table) == 60
    assert read_point_clouds(clouds).max_constituents == 20
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "(2 restored from checkpoints)" in again.output
    assert not (tmp_path / "feats.parquet.checkpoints").exists()
    np.testing.assert_array_equal(read_features(out).mjj, table.mjj)


@pytest.mark.parametrize("damage", ["truncated", "not_hdf5", "empty", "no_rows"])
def test_extract_features_bad_files_give_clear_errors(tmp_path, damage):
    from sideband.events import write_lhco_raw

    path = tmp_path / "events.h5"
    if damage == "truncated":
        data = _need(TINY).read_bytes()
        path.write_bytes(data[: len(data) // 2])
        match = "truncated or corrupt"
    elif damage == "not_hdf5":
        path.write_text("pt,eta,phi\n1,2,3\n")
        match = "not a hdf5 file"
    elif damage == "empty":
        path.write_bytes(b"")
        match = "is empty"
    else:
        empty = ak.Array([[1.0]])[:0]
        write_lhco_raw(path, empty, empty, empty, max_particles=3)
        match = "no events were processed"
    with pytest.raises(InputError, match=match):
        extract_features(path, chunk_size=100, progress=False)


def test_several_lhco_raw_files_get_unique_event_ids(tmp_path, tiny_parts):
    from sideband.events import write_lhco_raw

    files = []
    for k, rows in enumerate((slice(0, 12), slice(12, 20))):
        part = tiny_parts[rows]
        files.append(
            write_lhco_raw(tmp_path / f"f{k}.h5", part.pt, part.eta, part.phi, max_particles=700)
        )
    table = extract_features(files, chunk_size=5, progress=False)
    assert table.event_id.tolist() == list(range(20))
    np.testing.assert_allclose(
        table.mjj, dijet_features(cluster_dijets(tiny_parts[:20]))["mjj"], rtol=1e-12
    )
    clouds = tmp_path / "clouds"
    again = extract_features(
        files, chunk_size=5, progress=False, point_cloud_dir=clouds, checkpoint_dir=tmp_path / "ck"
    )
    np.testing.assert_array_equal(again.event_id, table.event_id)
    np.testing.assert_array_equal(read_point_clouds(clouds).event_id, table.event_id)
    # checkpoints hold ids without the offset: restored in another file order, the ids follow it
    first = extract_features(files, chunk_size=5, progress=False, checkpoint_dir=tmp_path / "k2")
    swapped, summary = extract_features(
        files[::-1], chunk_size=5, progress=False, checkpoint_dir=tmp_path / "k2",
        with_summary=True,
    )  # fmt: skip
    assert summary["n_chunks_restored"] == summary["n_chunks"] == 5
    assert swapped.event_id.tolist() == list(range(20))
    np.testing.assert_array_equal(swapped.mjj[:8], first.mjj[12:])  # file 1 now first


def test_extract_features_on_nanoaod_pf_candidates_with_mass(tmp_path):
    from test_events_root import random_nano

    path = random_nano(tmp_path / "nano.root", 60, seed=5)
    (events,) = iter_particles(path, branches="nanoaod")
    assert "mass" in events.particles.fields
    expected = dijet_features(cluster_dijets(events.particles))
    keep = np.isfinite(expected["mjj"])
    table, summary = extract_features(
        path, branches="nanoaod", chunk_size=25, progress=False, with_summary=True
    )
    assert summary["n_kept"] == int(keep.sum()) == len(table)
    np.testing.assert_array_equal(table.event_id, ak.to_numpy(events.event_id)[keep])
    np.testing.assert_allclose(table.mjj, expected["mjj"][keep], rtol=1e-12)
    massless = dijet_features(cluster_dijets(events.particles[["pt", "eta", "phi"]]))
    assert not np.allclose(table.columns["mj1"], massless["mj1"][keep])  # the mass was used
    with pytest.raises(InputError, match="preset 'cms' is unknown"):
        extract_features(path, branches="cms", progress=False)


def test_config_reads_nanoaod_fatjets(tmp_path):
    from pydantic import ValidationError

    from sideband.config import AnalysisConfig
    from sideband.events import read_fatjet_features
    from sideband.pipeline import load_data
    from test_events_root import random_nano

    path = random_nano(tmp_path / "nano.root", 80, seed=6)
    base = {"data": {"path": path, "features": ["mj1", "delta_mj"]}}
    config = AnalysisConfig.model_validate(
        {
            **base,
            "data": {**base["data"], "jets": "nanoaod"},
            "region": {"signal_region_gev": [3300, 3700]},
        }
    )
    table = load_data(config)
    direct = read_fatjet_features(path)
    np.testing.assert_array_equal(table.mjj, direct.mjj)
    np.testing.assert_array_equal(table.event_id, direct.event_id)
    with pytest.raises(ValidationError, match="jets"):
        AnalysisConfig.model_validate({**base, "data": {**base["data"], "jets": "cms"}})


def test_cli_features_killed_with_sigkill_resumes_to_the_same_output(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from sideband.events import read_features

    raw = _need(DATA / "lhco_like" / "events_lhco_like_raw.h5")
    cmd = [sys.executable, "-c", "from sideband.cli import main; main()", "features", str(raw),
           "--max-events", "3000", "--chunk-size", "100", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed.parquet"
    ckpt = tmp_path / "killed.parquet.checkpoints"
    proc = subprocess.Popen([*cmd, "-o", str(out)], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(ckpt.rglob("*.pkl"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoints appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    done = len(list(ckpt.rglob("*.pkl")))
    assert 3 <= done < 30
    resumed = subprocess.run(
        [*cmd, "-o", str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"({done} restored from checkpoints)" in resumed.stdout
    reference = subprocess.run(
        [*cmd, "-o", str(tmp_path / "whole.parquet")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr
    a, b = read_features(out), read_features(tmp_path / "whole.parquet")
    np.testing.assert_array_equal(a.event_id, b.event_id)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])


def test_extract_features_on_an_existing_dask_scheduler_writes_clouds_and_checkpoints(tmp_path):
    from distributed import LocalCluster

    reference = extract_features(_need(TINY), chunk_size=30, max_events=90, progress=False)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        table, summary = extract_features(
            TINY,
            executor="dask",
            scheduler=cluster.scheduler_address,
            chunk_size=30,
            max_events=90,
            progress=False,
            point_cloud_dir=tmp_path / "clouds",
            checkpoint_dir=tmp_path / "ck",
            with_summary=True,
        )
    assert summary["n_chunks_computed"] == 3
    np.testing.assert_array_equal(table.mjj, reference.mjj)
    np.testing.assert_array_equal(read_point_clouds(tmp_path / "clouds").event_id, table.event_id)
    assert len(list((tmp_path / "ck").rglob("*.pkl"))) == 3
