"""Tests of `sideband.generate.chunked`: chunk seeds, workers, Dask, resume, settings, merge, CLI.

Samples are tiny signal samples (7 events in chunks of 3, 3, 1): each chunk is one Pythia run of
at least one batch of 50 events, about 1 s of CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from sideband.errors import ConfigError, InputError
from sideband.generate.chunked import chunk_seed, generate_sample, validate_masses

HAS_PYTHIA = importlib.util.find_spec("pythia8mc") is not None
needs_pythia = pytest.mark.skipif(
    not HAS_PYTHIA, reason="pythia8mc not installed (pip install 'sideband[generator]')"
)
pytest.importorskip("tables", reason="the LHCO writers need PyTables")

#: The reference sample: 7 signal events in chunks of 3, 3 and 1.
REF = {"process": "signal", "n_events": 7, "seed": 3, "chunk_events": 3}


def _run(folder, **kwargs):
    args = {**REF, "progress": False, "workers": 1, **kwargs}
    return generate_sample(folder, args.pop("process"), args.pop("n_events"), **args)


def _content(sample):
    """(features, raw) of the chunks of `sample`, concatenated in chunk order."""
    import pandas as pd

    feats = pd.concat([pd.read_hdf(f, key="df") for f in sample.feature_files], ignore_index=True)
    raw = np.vstack([pd.read_hdf(f, key="df").to_numpy() for f in sample.raw_files])
    return feats.to_numpy(), raw


def _manifest(sample):
    return json.loads(sample.manifest.read_text())


def _chunk_summary(sample):
    keys = ("index", "seed", "pythia_seed", "n_events", "n_tried")
    return [{k: c[k] for k in keys} for c in _manifest(sample)["chunks"]]


def _assert_same_events(sample, reference):
    feats, raw = _content(sample)
    ref_feats, ref_raw = reference["content"]
    np.testing.assert_array_equal(feats, ref_feats)
    np.testing.assert_array_equal(raw, ref_raw)
    assert _chunk_summary(sample) == reference["chunks"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not HAS_PYTHIA:
        pytest.skip("pythia8mc not installed (pip install 'sideband[generator]')")
    folder = tmp_path_factory.mktemp("reference")
    sample = _run(folder, merge=True)
    return {
        "folder": folder,
        "sample": sample,
        "content": _content(sample),
        "chunks": _chunk_summary(sample),
    }


@pytest.fixture
def copy_of_reference(reference, tmp_path):
    dest = tmp_path / "sample"
    shutil.copytree(reference["folder"], dest)
    return dest


# --------------------------------------------------------------------------------------------
# chunks and seeds


def test_chunk_seed_depends_only_on_seed_and_index():
    seeds = [chunk_seed(3, i) for i in range(5)]
    assert len(set(seeds)) == 5
    assert seeds == [chunk_seed(3, i) for i in range(5)]  # no hidden state
    assert seeds[0] != chunk_seed(4, 0)
    # the documented rule (also that of data/make_default_dataset.py)
    ss = np.random.SeedSequence(3, spawn_key=(2,))
    assert seeds[2] == int(ss.generate_state(1, dtype=np.uint32)[0])


@needs_pythia
def test_reference_layout_and_manifest(reference):
    sample = reference["sample"]
    folder = reference["folder"]
    assert sample.n_events == 7
    assert [r.name for r in sample.raw_files] == [f"signal_chunk0000{i}_raw.h5" for i in range(3)]
    assert [f.name for f in sample.feature_files] == [
        f"signal_chunk0000{i}.features.h5" for i in range(3)
    ]
    assert sample.chunks_made == 3
    assert sample.chunks_reused == 0
    assert sample.n_tried >= 7
    assert sample.cpu_seconds > 0
    man = _manifest(sample)
    assert man["complete"] is True
    assert man["settings"]["mass_wprime_gev"] == 3500.0
    assert man["settings"]["pythia"]["34:m0"] == "3500"
    assert man["versions"]["pythia8mc"]
    assert [c["n_events"] for c in man["chunks"]] == [3, 3, 1]
    assert [c["seed"] for c in man["chunks"]] == [chunk_seed(3, i) for i in range(3)]
    assert man["totals"]["n_events"] == 7
    assert man["totals"]["n_tried"] == sample.n_tried
    for chunk in man["chunks"]:
        for info in chunk["files"].values():
            assert (folder / info["name"]).stat().st_size == info["bytes"]
            assert len(info["sha256"]) == 64
    # no temporary or lock files left behind
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    feats, _ = reference["content"]
    assert (feats[:, -1] == 1.0).all()  # signal labels


@needs_pythia
def test_chunk_is_one_generate_events_run(reference):
    """Chunk i holds generate_events(seed=chunk_seed(seed, i), workers=1): the documented rule."""
    import pandas as pd

    from sideband.generate import generate_events

    ev = generate_events("signal", 3, seed=chunk_seed(3, 1), workers=1, progress=False)
    feats = pd.read_hdf(reference["sample"].feature_files[1], key="df")
    np.testing.assert_array_equal(feats["mj1"].to_numpy(), ev.jets["mj1"])
    np.testing.assert_array_equal(feats["tau2j2"].to_numpy(), ev.jets["tau2j2"])


@needs_pythia
def test_two_workers_give_the_same_sample(reference, tmp_path):
    sample = _run(tmp_path, workers=2)
    _assert_same_events(sample, reference)
    # chunks may finish in any order; the manifest lists them in chunk order
    assert [c["index"] for c in _manifest(sample)["chunks"]] == [0, 1, 2]


@needs_pythia
def test_dask_local_cluster_gives_the_same_sample(reference, tmp_path):
    pytest.importorskip("distributed")
    sample = _run(tmp_path, executor="dask", workers=2)
    _assert_same_events(sample, reference)
    assert sample.chunks_made == 3


# --------------------------------------------------------------------------------------------
# resume


@needs_pythia
def test_resume_after_a_kill_redoes_only_the_lost_chunk(reference, copy_of_reference):
    folder = copy_of_reference
    # a kill during chunk 1: its raw file was never renamed into place, a temporary file and
    # the lock of the dead run are left behind
    (folder / "signal_chunk00001_raw.h5").unlink()
    stale_tmp = folder / ".signal_chunk00001_raw.h5.0123456789ab.tmp.h5"
    stale_tmp.write_bytes(b"half written")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".signal.lock").write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname()})
    )
    kept = {i: (folder / f"signal_chunk0000{i}_raw.h5").stat().st_mtime_ns for i in (0, 2)}

    sample = _run(folder, merge=True)
    assert sample.chunks_made == 1
    assert sample.chunks_reused == 2
    assert not stale_tmp.exists()
    assert not (folder / ".signal.lock").exists()
    for i, mtime in kept.items():
        assert (folder / f"signal_chunk0000{i}_raw.h5").stat().st_mtime_ns == mtime
    _assert_same_events(sample, reference)
    # the merged files were made again from the new chunk 1 and match the chunks
    import pandas as pd

    merged = pd.read_hdf(sample.merged["raw"], key="df").to_numpy()
    np.testing.assert_array_equal(merged, reference["content"][1])


@needs_pythia
def test_interrupted_run_resumes_from_the_manifest(reference, tmp_path, monkeypatch):
    import sideband.generate.chunked as chunked

    real = chunked._make_chunk
    made = []

    def dies_at_chunk_2(task):
        if task["index"] == 2:
            raise KeyboardInterrupt  # stands for a kill after chunks 0 and 1 were recorded
        made.append(task["index"])
        return real(task)

    monkeypatch.setattr(chunked, "_make_chunk", dies_at_chunk_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    man = json.loads((tmp_path / "signal.manifest.json").read_text())
    assert [c["index"] for c in man["chunks"]] == [0, 1]
    assert man["complete"] is False
    assert not (tmp_path / ".signal.lock").exists()

    def spy(task):
        made.append(task["index"])
        return real(task)

    monkeypatch.setattr(chunked, "_make_chunk", spy)
    sample = _run(tmp_path)
    assert made == [0, 1, 2]  # chunk 2 once, chunks 0 and 1 not again
    assert (sample.chunks_made, sample.chunks_reused) == (1, 2)
    _assert_same_events(sample, reference)


@needs_pythia
def test_damaged_chunk_is_made_again(reference, copy_of_reference):
    path = copy_of_reference / "signal_chunk00002.features.h5"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    sample = _run(copy_of_reference)
    assert (sample.chunks_made, sample.chunks_reused) == (1, 2)
    _assert_same_events(sample, reference)


@needs_pythia
def test_more_or_fewer_events_keep_the_chunks_that_fit(reference, copy_of_reference):
    folder = copy_of_reference
    more = _run(folder, n_events=9)  # chunk 2 grows from 1 to 3 events: made again
    assert (more.chunks_made, more.chunks_reused) == (1, 2)
    assert more.n_events == 9
    feats, _ = _content(more)
    np.testing.assert_array_equal(feats[:7], reference["content"][0])  # same seeds, same start
    assert more.merged is None  # the old merge (of other chunks) is removed
    assert not (folder / "signal_raw.h5").exists()
    fewer = _run(folder, n_events=3)
    assert (fewer.chunks_made, fewer.chunks_reused) == (0, 1)
    assert not (folder / "signal_chunk00001_raw.h5").exists()
    assert [c["index"] for c in _manifest(fewer)["chunks"]] == [0]


# --------------------------------------------------------------------------------------------
# settings, masses, arguments


@needs_pythia
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seed": 4}, r"seed: 3 -> 4"),
        ({"chunk_events": 4}, r"chunk_events: 3 -> 4"),
        ({"mass_x_gev": 300.0}, r"mass_x_gev: 500.0 -> 300.0"),
        ({"process": "qcd", "stem": "signal"}, r"process: 'signal' -> 'qcd'"),
    ],
)
def test_other_settings_in_the_same_folder_raise(copy_of_reference, change, match):
    before = {p.name: p.stat().st_mtime_ns for p in copy_of_reference.iterdir()}
    with pytest.raises(ConfigError, match=match) as err:
        _run(copy_of_reference, **change)
    assert "fresh" in str(err.value)
    assert "never mixed" in str(err.value)
    # nothing was touched, and the lock was released
    assert {p.name: p.stat().st_mtime_ns for p in copy_of_reference.iterdir()} == before


@needs_pythia
def test_fresh_starts_again(copy_of_reference):
    sample = _run(copy_of_reference, n_events=2, seed=4, chunk_events=2, fresh=True)
    assert (sample.chunks_made, sample.chunks_reused) == (1, 0)
    names = sorted(p.name for p in copy_of_reference.iterdir())
    assert names == [
        "signal.manifest.json",
        "signal_chunk00000.features.h5",
        "signal_chunk00000_raw.h5",
    ]
    assert _manifest(sample)["settings"]["seed"] == 4


@needs_pythia
def test_a_live_lock_is_respected(copy_of_reference):
    lock = copy_of_reference / ".signal.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(ConfigError, match="another run"):
        _run(copy_of_reference)
    assert lock.exists()


@pytest.mark.parametrize(
    ("masses", "match"),
    [
        ((3.5, 0.5, 0.1), r"m_W' = 3.5 GeV looks like a mass in TeV.*3500"),
        ((3500.0, 0.3, 200.0), r"m_X = 0.3 GeV looks like a mass in TeV"),
        ((3000.0, 2000.0, 1000.0), r"m_X \+ m_Y < m_W'"),
        ((3000.0, -300.0, 200.0), "positive"),
        ((3000.0, float("nan"), 200.0), "positive"),
        ((14000.0, 300.0, 200.0), "collision energy"),
        ((3000.0, "300", 200.0), "number"),
    ],
)
def test_mass_validation(masses, match, tmp_path):
    with pytest.raises(InputError, match=match):
        validate_masses(*masses)
    w, x, y = masses
    with pytest.raises(InputError, match=match):
        generate_sample(
            tmp_path, "signal", 5, seed=1, mass_wprime_gev=w, mass_x_gev=x, mass_y_gev=y
        )
    assert not list(tmp_path.iterdir())  # rejected before anything is written


def test_sensitivity_study_masses_are_valid():
    validate_masses(3000.0, 300.0, 200.0)
    validate_masses(2000.0, 100.0, 100.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pthat_min_gev": 1.0}, InputError, "looks like a value in TeV"),
        ({"trigger_pt_gev": -5.0}, InputError, "trigger_pt_gev"),
        ({"chunk_events": 0}, InputError, "chunk_events"),
        ({"n_events": 0}, InputError, "n_events"),
        ({"seed": -1}, InputError, "seed"),
        ({"workers": 0}, InputError, "workers"),
        ({"stem": "a/b"}, InputError, "stem"),
        ({"executor": "threads"}, ConfigError, "executor"),
        ({"scheduler": "tcp://127.0.0.1:8786"}, ConfigError, "only applies to executor='dask'"),
        ({"process": "zprime"}, InputError, "process must be"),
    ],
)
def test_bad_arguments(kwargs, error, match, tmp_path):
    args = {"process": "qcd", "n_events": 5, "seed": 1, **kwargs}
    with pytest.raises(error, match=match):
        generate_sample(tmp_path, args.pop("process"), args.pop("n_events"), **args)


# --------------------------------------------------------------------------------------------
# merged files and the command line


@needs_pythia
def test_merged_files_hold_all_chunks_in_order(reference):
    import pandas as pd

    from sideband.events import iter_particles

    merged = reference["sample"].merged
    assert merged == {
        "raw": reference["folder"] / "signal_raw.h5",
        "features": reference["folder"] / "signal.features.h5",
    }
    feats, raw = reference["content"]
    np.testing.assert_array_equal(pd.read_hdf(merged["features"], key="df").to_numpy(), feats)
    np.testing.assert_array_equal(pd.read_hdf(merged["raw"], key="df").to_numpy(), raw)
    chunks = list(iter_particles(merged["raw"], chunk_size=4))
    assert [len(c) for c in chunks] == [4, 3]
    assert (np.concatenate([c["label"].to_numpy() for c in chunks]) == 1).all()
    n0 = int((raw[0, 0:2100:3] > 0).sum())
    assert len(chunks[0]["particles"][0]) == n0
    info = _manifest(reference["sample"])["merged"]["files"]
    assert info["raw"]["bytes"] == merged["raw"].stat().st_size


@needs_pythia
def test_cli_generate_resumes_and_refuses_other_settings(tmp_path):
    from click.testing import CliRunner

    from sideband.cli import main

    args = ["generate", "--process", "signal", "-n", "2", "--seed", "5", "-o", str(tmp_path)]
    args += ["--chunk-events", "1", "--workers", "1", "--no-progress", "--stem", "wp"]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "2 events in 2 chunk(s) (2 made, 0 kept" in first.output
    assert (tmp_path / "wp_raw.h5").exists()
    assert (tmp_path / "wp.features.h5").exists()
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "(0 made, 2 kept" in again.output
    other = runner.invoke(main, [*args, "--mass-x-gev", "300"])
    assert other.exit_code == 1
    assert "ConfigError" in other.output
    assert "mass_x_gev: 500.0 -> 300.0" in other.output
    tev = runner.invoke(main, [*args, "--mass-wprime-gev", "3", "--fresh"])
    assert tev.exit_code == 1
    assert "looks like a mass in TeV" in tev.output
