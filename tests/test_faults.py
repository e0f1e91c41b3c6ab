"""Faults: a command killed with SIGKILL at any stage and started again ends exactly as an
uninterrupted run; a Dask worker killed mid-run does not fail the job (issue 10, item 1).

Every kill is real: the command runs in a subprocess (``python -c "from sideband.cli import
main; main()"``, as the ``sideband`` entry point does) and gets SIGKILL at an observable point:
a training checkpoint appearing, the INFO line ``scoring chain 0`` of `sideband.pipeline` on
stderr (``-v``), a scan window file appearing, or (for the run folder, whose writing is too
short to hit by timing) a SIGKILL the process sends itself inside `sideband.report.write_run`.
The same command is then run again and its outputs are compared with those of an
uninterrupted run. docs/faults.md tabulates what survives what.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features

DATA = Path(__file__).parents[1].parent / "shared" / "data"
RAW = DATA / "lhco_like" / "events_lhco_like_raw.h5"

#: The CLI as the ``sideband`` entry point runs it, in a fresh interpreter.
CLI = [sys.executable, "-c", "from sideband.cli import main; main()"]
#: The CLI, killing itself with SIGKILL when `write_run` starts writing the per-event scores
#: (after config, provenance, metrics, workspaces, templates and classifiers are written).
CLI_KILLED_IN_WRITE_RUN = [
    sys.executable,
    "-c",
    (
        "import os, signal, sideband.event_results as er; "
        "er.write_event_results = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
        "from sideband.cli import main; main()"
    ),
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
#: Template epochs (no early stopping): a finished training resumes "after epoch EPOCHS - 1".
EPOCHS = 4
#: Keys of a scan window record that are wall-clock times, not results.
TIMING_KEYS = ("seconds", "template_seconds", "score_seconds")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (../shared/data beside the repo)")
    return path


def _config_text(data: Path, out: Path, *, scan: bool = False) -> str:
    """A tiny analysis (2 chains, 4 epochs of a 2-transform MAF, 2-fold HGB on 1 thread)."""
    region = (
        "region: {sideband_gev: [2500, 5500]}\n"
        "scan: {first_low_gev: 2900, last_high_gev: 4100, width_gev: 400, step_gev: 400, "
        "efficiencies: [0.2], n_global_toys: 5}\n"
        if scan
        else "region: {signal_region_gev: [3300, 3700], sideband_gev: [2500, 5500]}\n"
    )
    return (
        f"name: faults\nseed: 3\noutput: {out}\nprogress: false\n"
        f"data: {{path: {data}, features: [mj1, delta_mj, tau21_j1, tau21_j2]}}\n"
        f"{region}"
        f"background: {{n_transforms: 2, hidden_features: [16], epochs: {EPOCHS}, "
        "patience: 50}\n"
        "scoring: {n_members: 1, max_iter: 40, n_folds: 2, n_threads: 1}\n"
        "bumphunt: {compute_limit: false}\n"
    )


def _run(cli: list[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI to the end (``-v``: INFO lines on stderr); fails the test on an error."""
    done = subprocess.run(
        [*cli, "-v", *map(str, args)], env=ENV, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_when(
    args: list[str | Path], ready: Callable[[str], bool], log: Path, *, timeout_s: float = 180
) -> str:
    """Start the CLI with `args`, SIGKILL it as soon as ``ready(stderr so far)`` holds; returns
    its stderr. Fails when the command ends (or `timeout_s` passes) before that point."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "-v", *map(str, args)], env=ENV, stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not ready(log.read_text()):
                if proc.poll() is not None:
                    pytest.fail(
                        f"the command ended (rc {proc.returncode}) before the kill point:\n"
                        f"{log.read_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no kill point within {timeout_s} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the command finished before it could be killed"
    return log.read_text()


def _resumed_trainings(stderr: str) -> list[str]:
    """The fit_loop 'resuming' lines of a run's stderr (one per template that resumed)."""
    return [line for line in stderr.splitlines() if "fit_loop: resuming from" in line]


def _assert_same_run(run: Path, reference: Path) -> None:
    """`run` is a completed run folder with the results of `reference`, number for number."""
    status = json.loads((run / "status.json").read_text())
    assert status.get("completed"), status
    assert status["finished"] == json.loads((reference / "status.json").read_text())["finished"]
    for name in ("metrics.json", "template_history.json", "fit_before_cut.json",
                 "fit_after_cut.json", "workspace_after_cut.json"):  # fmt: skip
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text()), (
            name
        )
    scores = pq.read_table(run / "scores.parquet")
    assert np.isfinite(scores["score"].to_numpy()).sum() > 1000  # SR and sideband events scored
    # the same per-event table, byte for byte (NaN scores of events outside the analysis too)
    assert (run / "scores.parquet").read_bytes() == (reference / "scores.parquet").read_bytes()
    assert not (run / "checkpoints").exists()  # removed once the run folder is complete


@dataclass(frozen=True)
class Analysis:
    config: Path
    reference: Path
    folder: Path


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """Toy features, a tiny configuration and its uninterrupted run (the reference)."""
    folder = tmp_path_factory.mktemp("faults")
    data = write_features(folder / "toy.parquet", toy_dijet_features(12_000, 150, seed=5))
    config = folder / "faults.yaml"
    config.write_text(_config_text(data, folder / "unused"))
    reference = folder / "reference"
    _run(CLI, "run", config, "-o", reference, "--no-plots")
    return Analysis(config, reference, folder)


# --------------------------------------------------------------------------------------------
# sideband run: killed during training, during scoring, while writing the run folder
# --------------------------------------------------------------------------------------------


def test_run_killed_during_template_training_resumes_to_the_same_result(
    analysis: Analysis, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first = out / "checkpoints"

    def after_first_epoch(_: str) -> bool:
        return any(first.glob("*/template_0/fit_loop.pt"))

    killed = _kill_when(
        ["run", analysis.config, "-o", out, "--no-plots"], after_first_epoch, tmp_path / "a.log"
    )
    assert "scoring chain" not in killed  # killed in the training of chain 0
    assert not (out / "metrics.json").exists()
    assert not (out / "status.json").exists()  # the run folder is written only after scoring

    rerun = _run(CLI, "run", analysis.config, "-o", out, "--no-plots")
    resumed = _resumed_trainings(rerun.stderr)
    assert len(resumed) == 1
    assert "template_0" in resumed[0]
    assert f"after epoch {EPOCHS - 1}" not in resumed[0]  # it stopped mid-training
    _assert_same_run(out, analysis.reference)


@pytest.mark.slow
def test_run_killed_while_scoring_resumes_without_training_again(
    analysis: Analysis, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    killed = _kill_when(
        ["run", analysis.config, "-o", out, "--no-plots"],
        lambda err: "scoring chain 0 of 2" in err,
        tmp_path / "b.log",
    )
    assert "scoring chain 1" not in killed
    assert len(list((out / "checkpoints").glob("*/template_*/fit_loop.pt"))) == 2
    assert not (out / "metrics.json").exists()

    rerun = _run(CLI, "run", analysis.config, "-o", out, "--no-plots")
    resumed = _resumed_trainings(rerun.stderr)
    # both trainings were finished: each resumes after its last epoch and trains nothing
    assert len(resumed) == 2
    assert all(f"after epoch {EPOCHS - 1}" in line for line in resumed)
    _assert_same_run(out, analysis.reference)


def test_run_folder_killed_mid_write_is_marked_unfinished_and_rewritten(
    analysis: Analysis, tmp_path: Path
) -> None:
    from sideband.errors import InputError
    from sideband.publish import read_result_folder

    # the folder holds a completed run of another analysis (stands for an earlier version)
    out = tmp_path / "run"
    shutil.copytree(analysis.reference, out)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "z_after_cut": -1.0}))

    done = subprocess.run(
        [*CLI_KILLED_IN_WRITE_RUN, "-v", "run", str(analysis.config), "-o", str(out),
         "--no-plots"],
        env=ENV, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    # the folder now mixes two runs: new metrics, the earlier run's per-event scores ...
    assert json.loads((out / "metrics.json").read_text()) == json.loads(
        (analysis.reference / "metrics.json").read_text()
    )
    assert (out / "scores.parquet").stat().st_mtime_ns < (out / "metrics.json").stat().st_mtime_ns
    # ... and status.json says so: the earlier run's "completed" does not survive
    status = json.loads((out / "status.json").read_text())
    assert "completed" not in status
    assert status["finished"] == [
        "config", "provenance", "metrics", "workspaces", "template_models", "classifiers",
    ]  # fmt: skip
    with pytest.raises(InputError, match="did not finish"):
        read_result_folder(out)
    assert len(list((out / "checkpoints").glob("*/template_*/fit_loop.pt"))) == 2  # kept

    # temporary files of atomic writes the kill interrupted (never read) are cleaned up
    stray = [out / ".scores.parquet.k1ll3d.tmp", out / ".workspace_after_cut.json.k1ll3d.tmp"]
    for path in stray:
        path.write_bytes(b"half-written")
    rerun = _run(CLI, "run", analysis.config, "-o", out, "--no-plots")
    assert "did not finish writing" in rerun.stderr  # detected, then every part rewritten
    assert not any(path.exists() for path in stray)
    assert len(_resumed_trainings(rerun.stderr)) == 2  # the finished trainings were reused
    _assert_same_run(out, analysis.reference)
    assert read_result_folder(out).kind == "run"


# --------------------------------------------------------------------------------------------
# sideband scan: killed after its first window
# --------------------------------------------------------------------------------------------


def _scan_results(out: Path) -> dict[str, object]:
    """What a scan folder concluded: its table, global significance and window records
    (without wall-clock times), and the pyhf workspaces."""
    summary = json.loads((out / "scan.json").read_text())
    windows = []
    for path in sorted((out / "windows").glob("window_*.json")):
        record = json.loads(path.read_text())
        windows.append({k: v for k, v in record.items() if k not in TIMING_KEYS})
    return {
        "table": summary["table"],
        "global_significance": summary["global_significance"],
        "windows": windows,
        "workspaces": {p.name: p.read_bytes() for p in sorted((out / "workspaces").glob("*.json"))},
    }


@pytest.mark.slow
def test_scan_killed_after_its_first_window_resumes_to_the_same_scan(
    analysis: Analysis, tmp_path: Path
) -> None:
    config = tmp_path / "scan.yaml"
    config.write_text(_config_text(analysis.folder / "toy.parquet", tmp_path / "x", scan=True))
    reference, out = tmp_path / "reference", tmp_path / "scan"
    _run(CLI, "scan", config, "-o", reference, "--no-plots")
    first = out / "windows" / "window_000.json"
    _kill_when(
        ["scan", config, "-o", out, "--no-plots"], lambda _: first.is_file(), tmp_path / "c.log"
    )
    assert not (out / "scan.json").exists()
    assert not (out / "windows" / "window_002.json").exists()

    rerun = _run(CLI, "scan", config, "-o", out, "--no-plots")
    assert "window 0: reusing" in rerun.stderr
    got, want = _scan_results(out), _scan_results(reference)
    assert len(got["windows"]) == 3
    assert got == want


# --------------------------------------------------------------------------------------------
# sideband features on Dask: a worker killed mid-run
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dask_worker_killed_mid_run_does_not_fail_the_features_job(tmp_path: Path) -> None:
    import psutil

    from sideband.events import read_features
    from sideband.features import extract_features
    from sideband.records import FEATURE_COLUMNS

    raw = _need(RAW)
    out, ckpt = tmp_path / "dask.parquet", tmp_path / "ck"
    args = [*CLI, "-v", "features", str(raw), "--executor", "dask", "--workers", "2",
            "--max-events", "2000", "--chunk-size", "50", "--no-progress",
            "--checkpoint-dir", str(ckpt), "-o", str(out)]  # fmt: skip
    log = tmp_path / "dask.log"
    with log.open("w") as err:
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 180
            while len(list(ckpt.rglob("*.pkl"))) < 2:  # both workers are busy with chunks
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no chunk finished"
                time.sleep(0.005)
            workers = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if any("spawn_main" in a for a in p.cmdline())  # Dask's worker processes
            ]
            assert len(workers) == 2, [p.cmdline() for p in workers]
            workers[0].send_signal(signal.SIGKILL)
            n_done = len(list(ckpt.rglob("*.pkl")))
            assert n_done < 40, "the job was nearly over before the kill"
            stdout, _ = proc.communicate(timeout=300)
        finally:
            proc.kill()
            proc.wait()
    stderr = log.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"was killed by signal {signal.SIGKILL}" in stderr  # the nanny saw the worker die
    assert "40 chunk(s)" in stdout
    assert not ckpt.exists()  # the finished job cleaned its checkpoints

    reference = extract_features(raw, max_events=2000, chunk_size=50, progress=False)
    table = read_features(out)
    assert len(table) == len(reference) > 1900
    np.testing.assert_array_equal(table.event_id, reference.event_id)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(table.columns[name], reference.columns[name])
