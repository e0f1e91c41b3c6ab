"""Publishing: HEPData records of a scan and a run, the bundled pyhf workspaces reproduced with
pyhf alone, errors and atomic output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import sideband.pipeline
from sideband import publish
from sideband.config import AnalysisConfig
from sideband.errors import InputError
from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features
from sideband.publish import read_result_folder, write_hepdata

FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
#: Three windows 2900-3300, 3300-3700 (the toy signal at 3500 GeV), 3700-4100 GeV.
WINDOWS = {"first_low_gev": 2900, "last_high_gev": 4100, "width_gev": 400, "step_gev": 400}


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("publish_data")
    return write_features(folder / "toy.parquet", toy_dijet_features(30_000, 250, seed=5))


def _hand_score(config: Any, split: Any, models: Any) -> tuple[np.ndarray, np.ndarray, None]:
    """A fixed score in place of template + classifier (the scan's ML is tested elsewhere):
    large delta_mj and small tau21, as the toy signal has. The window at 3700-4100 GeV fails,
    as a window whose template cannot be trained would."""
    if split.signal_region.low_gev == 3700:
        raise InputError("too few sideband events to train the template (test)")

    def score(x: np.ndarray) -> np.ndarray:
        return x[:, 1] / 400.0 - x[:, 2] - x[:, 3]

    return score(split.x_sr), score(split.x_sb), None


@pytest.fixture(scope="module")
def scan_dir(toy_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `sideband scan` folder (bump hunts, workspaces, toys) with a hand-made score; the
    third window fails and is recorded so."""
    from sideband.scan import run_scan

    out = tmp_path_factory.mktemp("publish_scan") / "scan"
    config = AnalysisConfig(
        name="toy_scan",
        seed=3,
        output=out,
        progress=False,
        data={"path": toy_file, "features": FEATURES},
        region={"sideband_gev": (2500, 5500)},
        scan={**WINDOWS, "efficiencies": (0.2,), "n_global_toys": 3},
        bumphunt={"compute_limit": True},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sideband.pipeline, "fit_chain_template", lambda *a, **k: None)
        mp.setattr(sideband.pipeline, "score_chains", _hand_score)
        run_scan(config, plots=False)
    return out


@pytest.fixture(scope="module")
def run_dir(toy_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `sideband run` folder (small CATHODE template, labelled toy data)."""
    from sideband.pipeline import run_analysis
    from sideband.report import write_run

    out = tmp_path_factory.mktemp("publish_run") / "run"
    config = AnalysisConfig(
        name="toy",
        seed=7,
        output=out,
        progress=False,
        data={"path": toy_file, "features": FEATURES},
        region={"signal_region_gev": (3300, 3700), "sideband_gev": (2500, 5500)},
        background={"n_transforms": 2, "hidden_features": (16, 16), "epochs": 2, "patience": 2},
        scoring={"n_members": 1, "max_iter": 40, "n_folds": 3},
        bumphunt={"efficiency": 0.2, "compute_limit": True},
    )
    return write_run(run_analysis(config), out, plots=False)


@pytest.fixture(scope="module")
def scan_pub(scan_dir: Path) -> Path:
    return write_hepdata(scan_dir, scan_dir.parent / "published")


@pytest.fixture(scope="module")
def run_pub(run_dir: Path) -> Path:
    return write_hepdata(run_dir, run_dir.parent / "published")


def _validate(**target: str) -> tuple[bool, dict]:
    with warnings.catch_warnings():
        # hepdata-validator 0.3.6 imports names jsonschema deprecates, and leaves files open
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        from hepdata_validator.full_submission_validator import FullSubmissionValidator

        validator = FullSubmissionValidator()
        ok = validator.validate(**target)
        messages = validator.get_messages()
        del validator
        import gc

        gc.collect()
    return ok, messages


def _table(pub: Path, name: str) -> dict:
    return yaml.safe_load((pub / "hepdata" / name).read_text())


def _qualifier(var: dict, name: str) -> Any:
    return next(q["value"] for q in var["qualifiers"] if q["name"] == name)


def _values(var: dict) -> list:
    return [v["value"] for v in var["values"]]


def test_scan_becomes_a_valid_hepdata_submission(scan_dir: Path, scan_pub: Path) -> None:
    summary = json.loads((scan_dir / "scan.json").read_text())
    rows = {(r["window"], r["efficiency"]): r for r in summary["table"]}
    assert rows[2, 0.2]["status"] == "failed"
    assert rows[1, 0.2]["status"] == "ok"

    # hepdata-validator (offline) accepts the folder and the archive
    for target in (
        {"directory": str(scan_pub / "hepdata")},
        {"archive": str(scan_pub / "submission.tar.gz")},
    ):
        ok, messages = _validate(**target)
        assert ok, messages
    docs = list(yaml.safe_load_all((scan_pub / "hepdata" / "submission.yaml").read_text()))
    names = [d.get("name") for d in docs[1:]]
    assert names == [
        "Local significance vs SR centre",
        "Upper limits",
        "mJJ spectrum after the cut eff 0.2",
    ]
    resources = {r["location"]: r for r in docs[0]["additional_resources"]}
    assert resources["pyhf_workspaces.tar.gz"]["type"] == "HistFactory"

    # local significance: windows as GeV bins, one dependent variable per cut, '-' where failed
    z = _table(scan_pub, "local_significance_vs_sr_centre.yaml")
    bins = [(v["low"], v["high"]) for v in z["independent_variables"][0]["values"]]
    assert bins == [(2900, 3300), (3300, 3700), (3700, 4100)]
    assert z["independent_variables"][0]["header"]["units"] == "GeV"
    by_eff = {
        _qualifier(v, "Score cut (fraction of SR data kept)"): v for v in z["dependent_variables"]
    }
    assert sorted(by_eff) == [0.2, 1.0]
    for eff, var in by_eff.items():
        assert _qualifier(var, "SQRT(S)") == 13000
        assert _qualifier(var, "Dataset") == "toy.parquet"
        assert _values(var)[2] == "-"
        for w in (0, 1):
            assert _values(var)[w] == pytest.approx(rows[w, eff]["z"], rel=1e-4, abs=1e-4)
    assert _values(by_eff[0.2])[1] > 5  # the signal window after the cut
    assert "global p" in z_description(scan_pub)

    # limits: observed, and expected with the 1 and 2 sigma bands as asymmetric errors
    lim = _table(scan_pub, "upper_limits.yaml")
    deps = lim["dependent_variables"]
    assert len(deps) == 4  # observed + expected at each of the two cuts
    obs = next(
        v
        for v in deps
        if v["header"]["name"].startswith("Observed")
        and _qualifier(v, "Score cut (fraction of SR data kept)") == 0.2
    )
    exp = next(
        v
        for v in deps
        if v["header"]["name"].startswith("Expected")
        and _qualifier(v, "Score cut (fraction of SR data kept)") == 0.2
    )
    assert _qualifier(obs, "CL") == "95%"
    assert "qtilde" in _qualifier(obs, "Method")
    row = rows[1, 0.2]
    assert _values(obs)[1] == pytest.approx(row["upper_limit"], rel=1e-4)
    assert _values(obs)[2] == "-"
    limits = row["expected_limits"]
    assert _values(exp)[1] == pytest.approx(limits[2], rel=1e-4)
    errors = {e["label"]: e["asymerror"] for e in exp["values"][1]["errors"]}
    assert errors["1 sigma"]["minus"] == pytest.approx(limits[1] - limits[2], rel=1e-4)
    assert errors["1 sigma"]["plus"] == pytest.approx(limits[3] - limits[2], rel=1e-4)
    assert errors["2 sigma"]["minus"] == pytest.approx(limits[0] - limits[2], rel=1e-4)
    assert errors["2 sigma"]["plus"] == pytest.approx(limits[4] - limits[2], rel=1e-4)

    # spectrum after the cut: the most significant window's bins and fit
    window = json.loads((scan_dir / "windows" / "window_001.json").read_text())
    fit = next(c for c in window["cuts"] if c["efficiency"] == 0.2)["fit"]
    spec = _table(scan_pub, "mjj_spectrum_after_the_cut_eff_0.2.yaml")
    edges = [v["low"] for v in spec["independent_variables"][0]["values"]]
    assert edges == pytest.approx(fit["edges"][:-1])
    events, background = spec["dependent_variables"]
    assert _values(events) == [round(c) for c in fit["counts"]]
    assert _values(background) == pytest.approx(fit["background"], rel=1e-4)

    # the archive carries the tables and the workspaces (with their index)
    with tarfile.open(scan_pub / "submission.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"submission.yaml", "upper_limits.yaml", "pyhf_workspaces.tar.gz"} <= members
    with tarfile.open(scan_pub / "hepdata" / "pyhf_workspaces.tar.gz") as tar:
        bundled = {Path(n).name for n in tar.getnames()}
    listed = sorted(p.name for p in (scan_pub / "workspaces").iterdir())
    assert set(listed) <= bundled | {"workspaces"}
    # two windows x two cuts (the failed window has none), index, README, patch, script
    assert sorted(n for n in listed if n.startswith("sr_")) == [
        "sr_2900-3300_gev_eff_0.2.json",
        "sr_2900-3300_gev_no_cut.json",
        "sr_3300-3700_gev_eff_0.2.json",
        "sr_3300-3700_gev_no_cut.json",
    ]
    assert {"index.json", "README.md", "reproduce.py", "poi_lower_bound_zero.json"} <= set(listed)
    # nothing left behind by the atomic build
    assert not [p for p in scan_pub.parent.iterdir() if p.name.startswith(".published.")]


def z_description(pub: Path) -> str:
    docs = list(yaml.safe_load_all((pub / "hepdata" / "submission.yaml").read_text()))
    return next(d["description"] for d in docs[1:] if d["name"].startswith("Local"))


def _run_plain_pyhf(folder: Path, *args: str) -> tuple[int, dict]:
    """Run the bundled reproduce.py in a fresh interpreter and check that sideband was never
    imported on the way."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['reproduce.py', *{list(args)!r}]\n"
        "code = 0\n"
        "try:\n"
        f"    runpy.run_path({str(folder / 'reproduce.py')!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    code = stop.code or 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'sideband'], 'imported sideband'\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=folder,
    )
    assert "imported sideband" not in proc.stderr, proc.stderr
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


SIGNAL = "sr_3300-3700_gev_eff_0.2.json"  # the signal window after the cut: Z > 5
QUIET = "sr_2900-3300_gev_eff_0.2.json"


def test_bundled_workspaces_reproduce_with_pyhf_alone(scan_pub: Path) -> None:
    folder = scan_pub / "workspaces"
    index = json.loads((folder / "index.json").read_text())
    settings = index["settings"]
    assert settings["limits"]["test_stat"] == "qtilde"
    assert settings["discovery"]["test_stat"] == "q0"
    assert settings["discovery"]["calctype"] == "asymptotics"
    assert settings["pyhf_backend"] == {
        "backend": "numpy",
        "optimizer": "minuit",
        "tolerance": 0.01,
    }
    entry = next(e for e in index["workspaces"] if e["file"] == SIGNAL)
    assert (entry["sr_low_gev"], entry["sr_high_gev"], entry["efficiency"]) == (3300, 3700, 0.2)
    assert entry["recorded"]["z"] > 5

    # Z, CLs at the recorded limits, and the limits by sideband's procedure, with pyhf alone
    code, out = _run_plain_pyhf(folder, "--check", "--limits", "--only", SIGNAL, "--only", QUIET)
    assert code == 0, out
    assert [r["file"] for r in out["results"]] == [QUIET, SIGNAL]  # index order
    for result in out["results"]:
        rec = next(e for e in index["workspaces"] if e["file"] == result["file"])["recorded"]
        # same optimizer, same calls: Z agrees to rounding
        assert result["z"]["reproduced"] == pytest.approx(rec["z"], abs=1e-6)
        assert result["cls_at_recorded_limits"] == pytest.approx([0.05] * 6, rel=0.1)
        assert result["limits"]["reproduced"] == pytest.approx(
            [rec["upper_limit"], *rec["expected_limits"]], rel=1e-3
        )

    # the README's command line: pyhf cls with the POI patch gives CLs = 0.05 at the limit
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("pyhf")),
            "cls",
            SIGNAL,
            "--patch",
            "poi_lower_bound_zero.json",
            "--test-poi",
            repr(entry["recorded"]["upper_limit"]),
            "--test-stat",
            "qtilde",
            "--backend",
            "numpy",
            "--optimizer",
            "minuit",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=folder,
    )
    assert json.loads(proc.stdout)["CLs_obs"] == pytest.approx(0.05, rel=0.1)


def test_pyhf_root_finder_agrees_and_tampering_is_caught(scan_pub: Path) -> None:
    folder = scan_pub / "workspaces"
    # pyhf's own root finder (toms748_scan): within 2% of the recorded limits, where sideband's
    # grid is coarsest (a large excess)
    code, out = _run_plain_pyhf(folder, "--check", "--limits", "toms748", "--only", SIGNAL)
    assert code == 0, out
    assert max(abs(r) for r in out["results"][0]["limits"]["rel"]) < 0.02

    # a record that the workspace does not give back fails --check
    bad = json.loads((folder / "index.json").read_text())
    entry = next(e for e in bad["workspaces"] if e["file"] == QUIET)
    entry["recorded"]["p0_asymptotic"] = 1e-6
    copy = scan_pub.parent / "tampered"
    shutil.copytree(folder, copy)
    (copy / "index.json").write_text(json.dumps(bad))
    code, out = _run_plain_pyhf(copy, "--check", "--only", QUIET)
    assert code == 1
    assert out["results"][0]["failures"][0].startswith("Z 0.0000 vs recorded 4.75")


def test_folders_that_cannot_be_published_name_the_fix(
    scan_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="is not a folder"):
        read_result_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"neither a scan folder.*sideband scan.*sideband run"):
        read_result_folder(tmp_path / "empty")

    scan = shutil.copytree(
        scan_dir, tmp_path / "scan", ignore=shutil.ignore_patterns("checkpoints")
    )
    (scan / "windows" / "window_001.json").unlink()
    with pytest.raises(InputError, match=r"window_001\.json is missing.*`sideband scan CONFIG"):
        write_hepdata(scan, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.copy(scan_dir / "windows" / "window_001.json", scan / "windows")
    (scan / "workspaces" / "window_001_eff_0.2.json").unlink()
    with pytest.raises(InputError, match=r"workspaces/window_001_eff_0\.2\.json .*missing"):
        read_result_folder(scan)

    run = shutil.copytree(run_dir, tmp_path / "run")
    (run / "workspace_after_cut.json").unlink()
    with pytest.raises(InputError, match=r"workspace_after_cut\.json is missing.*sideband run"):
        read_result_folder(run)
    shutil.copy(run_dir / "workspace_after_cut.json", run)
    status = json.loads((run / "status.json").read_text())
    del status["completed"]
    (run / "status.json").write_text(json.dumps(status))
    with pytest.raises(InputError, match="did not finish"):
        read_result_folder(run)
    (run / "status.json").unlink()
    with pytest.raises(InputError, match=r"status\.json is missing.*sideband run"):
        read_result_folder(run)

    # an existing output, an efficiency the folder lacks, a bad sic_points
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="exists; choose another output folder"):
        write_hepdata(scan_dir, tmp_path / "taken")
    with pytest.raises(InputError, match=r"efficiency 0\.5 is not in"):
        write_hepdata(scan_dir, tmp_path / "out", efficiencies=[0.5])
    with pytest.raises(InputError, match="sic_points"):
        write_hepdata(scan_dir, tmp_path / "out", sic_points=3)
    assert not (tmp_path / "out").exists()


def test_run_becomes_a_submission_with_sic_and_limits(run_dir: Path, run_pub: Path) -> None:
    ok, messages = _validate(archive=str(run_pub / "submission.tar.gz"))
    assert ok, messages
    metrics = json.loads((run_dir / "metrics.json").read_text())

    z = _table(run_pub, "local_significance_vs_sr_centre.yaml")
    assert [(v["low"], v["high"]) for v in z["independent_variables"][0]["values"]] == [
        (3300, 3700)
    ]
    by_eff = {
        _qualifier(v, "Score cut (fraction of SR data kept)"): _values(v)[0]
        for v in z["dependent_variables"]
    }
    assert by_eff[1.0] == pytest.approx(metrics["z_before_cut"], rel=1e-4)
    assert by_eff[0.2] == pytest.approx(metrics["z_after_cut"], rel=1e-4)

    # limits: the run folder records the observed and expected limits before and after the cut,
    # and the tables take them as recorded
    index = json.loads((run_pub / "workspaces" / "index.json").read_text())
    after = next(e for e in index["workspaces"] if e["efficiency"] == 0.2)
    assert not after["limits_recomputed_from_workspace"]
    assert after["recorded"]["upper_limit"] == metrics["upper_limit_after_cut"]
    assert after["recorded"]["expected_limits"] == metrics["expected_limits_after_cut"]
    lim = _table(run_pub, "upper_limits.yaml")
    assert len(lim["dependent_variables"]) == 4

    # SIC and ROC from the labelled SR scores, against the package's own metrics
    sic = _table(run_pub, "sic.yaml")
    eps_s = np.array(_values(sic["independent_variables"][0]))
    columns = {v["header"]["name"].split(" $")[0]: v for v in sic["dependent_variables"]}
    assert list(columns) == [
        "SIC",
        "Background efficiency",
        "Background rejection",
        "Background events kept",
    ]
    sic_values = np.array(_values(columns["SIC"]))
    eps_b = np.array(_values(columns["Background efficiency"]))
    kept = np.array(_values(columns["Background events kept"]))
    assert np.all(np.diff(eps_s) > 0)
    assert np.all(eps_b > 0)
    assert sic_values == pytest.approx(eps_s / np.sqrt(eps_b), rel=1e-3)
    assert 30 <= eps_s.size <= 100  # the default 100-point grid, repeated ROC points merged
    truth = metrics["score_vs_truth"]
    assert _qualifier(columns["SIC"], "Signal events") == truth["n_signal"]
    assert kept == pytest.approx(eps_b * truth["n_background"], abs=0.5)
    # the curve passes near the package's max-SIC point (the table is a grid of the ROC)
    assert sic_values[kept >= 25].max() == pytest.approx(truth["max_sic"], rel=0.1)
    errors = [v["errors"][0]["symerror"] for v in columns["SIC"]["values"]]
    assert all(0 < e < s for e, s in zip(errors, sic_values, strict=True))

    spec = _table(run_pub, "mjj_spectrum_after_the_cut.yaml")
    fit = json.loads((run_dir / "fit_after_cut.json").read_text())
    assert sum(_values(spec["dependent_variables"][0])) == sum(fit["counts"])


def test_swapped_workspaces_are_caught(run_dir: Path, tmp_path: Path) -> None:
    run = shutil.copytree(run_dir, tmp_path / "run")
    before, after = run / "workspace_before_cut.json", run / "workspace_after_cut.json"
    text = before.read_text()
    before.write_text(after.read_text())
    after.write_text(text)
    with pytest.raises(InputError, match="does not belong to these results"):
        write_hepdata(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_is_never_half_written(
    scan_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_hepdata(scan_dir, tmp_path / "pub", efficiencies=[0.2])
    first = sorted(p.name for p in (out / "workspaces").iterdir())
    assert "sr_3300-3700_gev_no_cut.json" not in first

    def broken(*args: object, **kwargs: object) -> None:
        raise InputError("the HEPData archive does not validate (test)")

    monkeypatch.setattr(publish, "_validate", broken)
    with pytest.raises(InputError, match="does not validate"):
        write_hepdata(scan_dir, tmp_path / "pub", overwrite=True)
    # the old output is intact, and no temporary folder is left
    assert sorted(p.name for p in (out / "workspaces").iterdir()) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]
    with pytest.raises(InputError, match="does not validate"):
        write_hepdata(scan_dir, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]

    monkeypatch.undo()
    write_hepdata(scan_dir, tmp_path / "pub", overwrite=True)
    assert "sr_3300-3700_gev_no_cut.json" in {p.name for p in (out / "workspaces").iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pub"]


def test_dataset_names_the_lhco_files() -> None:
    base = publish.ResultFolder(
        kind="run",
        folder=Path("x"),
        config={"data": {"path": "/d/events_anomalydetection_v2.features.h5"}},
        points=(),
        global_significance=None,
        inputs={},
        versions={},
        scores=None,
    )
    assert publish._dataset_name(base).startswith("LHC Olympics 2020 R&D dataset")
    cathode = publish.ResultFolder(**{**base.__dict__, "inputs": {"/s/innerdata_test.npy": "ab"}})
    assert "innerdata_test.npy" in publish._dataset_name(cathode)
    assert "R&D" in publish._dataset_name(cathode)
    like = publish.ResultFolder(
        **{**base.__dict__, "inputs": {"/s/events_lhco_like.features.h5": "ab"}}
    )
    assert publish._dataset_name(like) == "events_lhco_like.features.h5"


def test_limits_a_run_did_not_record_are_recomputed_alike(run_dir: Path, tmp_path: Path) -> None:
    """A run folder written before the expected limits were recorded: publish recomputes them
    from the workspaces with the bump hunt's procedure and gets the numbers the run had."""
    old = shutil.copytree(run_dir, tmp_path / "old_run")
    metrics = json.loads((old / "metrics.json").read_text())
    for key in (
        "expected_limits_after_cut",
        "expected_limits_before_cut",
        "upper_limit_before_cut",
    ):
        metrics.pop(key)
    (old / "metrics.json").write_text(json.dumps(metrics))
    pub = write_hepdata(old, tmp_path / "pub")
    index = json.loads((pub / "workspaces" / "index.json").read_text())
    after = next(e for e in index["workspaces"] if e["efficiency"] == 0.2)
    assert after["limits_recomputed_from_workspace"]
    full = json.loads((run_dir / "metrics.json").read_text())
    assert after["recorded"]["expected_limits"] == pytest.approx(
        full["expected_limits_after_cut"], rel=1e-6
    )
    submission = (pub / "hepdata" / "submission.yaml").read_text()
    assert "recomputed" in submission


def test_cli_publishes_a_run_folder(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sideband.cli import main

    out = tmp_path / "pub"
    cli = CliRunner().invoke(main, ["publish", str(run_dir), "-o", str(out)])
    assert cli.exit_code == 0, cli.output
    assert (out / "submission.tar.gz").is_file()
    assert (out / "workspaces" / "index.json").is_file()
    again = CliRunner().invoke(main, ["publish", str(run_dir), "-o", str(out)])
    assert again.exit_code != 0
    assert "--overwrite" in again.output or "overwrite" in again.output
    missing = CliRunner().invoke(main, ["publish", str(tmp_path / "nope"), "-o", str(out)])
    assert missing.exit_code != 0
    assert "InputError" in missing.output
