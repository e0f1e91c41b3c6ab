"""Integration: every stage in one run, on small generated data, through the CLI and the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
from click.testing import CliRunner

from sideband.cli import main
from sideband.config import AnalysisConfig
from sideband.events import read_features, write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import checkpoint_dir_for, run_analysis, stage_seeds
from sideband.report import write_run

SMALL = {
    "background": {"n_transforms": 2, "hidden_features": (32, 32), "epochs": 4, "patience": 2},
    "scoring": {"n_members": 2, "max_iter": 60, "n_folds": 3},
    "bumphunt": {"efficiency": 0.2, "compute_limit": True},
}


def _config(path: Path, out: Path, **extra: object) -> AnalysisConfig:
    return AnalysisConfig(
        name="toy",
        seed=7,
        output=out,
        progress=False,
        data={"path": path, "features": ("mj1", "delta_mj", "tau21_j1", "tau21_j2")},
        region={"signal_region_gev": (3300, 3700), "sideband_gev": (2500, 5500)},
        **SMALL,
        **extra,
    )


def test_stage_seeds_are_distinct_and_reproducible() -> None:
    a, b = stage_seeds(1), stage_seeds(1)
    assert a == b
    assert len(set(a.values())) == len(a)
    assert stage_seeds(2) != a


def test_whole_pipeline_on_toy_data(tmp_path: Path) -> None:
    toy = toy_dijet_features(30_000, 150, seed=11)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = _config(path, tmp_path / "run")
    result = run_analysis(config)

    # Stage contracts: every SR event scored once, template sampled into the SR.
    n_sr = int(result.sr_mask.sum())
    assert result.score_sr.shape == (n_sr,)
    assert result.template.shape == (round(4 * n_sr), 4)
    assert np.isfinite(result.score_sr).all()
    assert np.isfinite(result.score_sb).all()
    kept = (result.score_sr >= result.threshold).mean()
    assert kept == pytest.approx(0.2, abs=0.01)

    # The injected toy signal is found, and the cut helps.
    m = result.metrics
    assert m["score_vs_truth"]["auc"] > 0.6
    assert m["z_after_cut"] > m["z_before_cut"]
    assert m["z_after_cut"] > 3

    out = write_run(result, tmp_path / "run")
    for name in ("config.yaml", "provenance.json", "metrics.json", "workspace_after_cut.json",
                 "scores.parquet", "status.json", "plots/mjj_before_after_cut.png", "plots/sic.png"):  # fmt: skip
        assert (out / name).is_file(), name
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["stage_seeds"] == result.seeds
    assert provenance["versions"]["torch"]
    assert next(iter(provenance["inputs"].values()))  # checksum of the input file
    workspace = pyhf.Workspace(json.loads((out / "workspace_after_cut.json").read_text()))
    model = workspace.model()
    p0 = pyhf.infer.hypotest(0.0, workspace.data(model), model, test_stat="q0")
    assert float(p0) == pytest.approx(result.after_cut.p0, rel=1e-2, abs=1e-6)


def test_lacathode_classifies_in_latent_space_and_finds_the_toy_signal(tmp_path: Path) -> None:
    toy = toy_dijet_features(30_000, 150, seed=11)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = _config(path, tmp_path / "run").with_overrides(**{"background.method": "lacathode"})
    result = run_analysis(config)

    # The template is N(0, 1) in the latent space, not flow samples in feature space.
    n_sr = int(result.sr_mask.sum())
    assert result.template.shape == (round(4 * n_sr), 4)
    assert np.abs(result.template.mean(axis=0)).max() < 0.05
    assert np.abs(result.template.std(axis=0) - 1).max() < 0.05
    assert result.template[:, 0].min() < 0 < result.template[:, 0].max()  # not masses in GeV
    assert np.isfinite(result.score_sb).all()
    m = result.metrics
    assert m["score_vs_truth"]["auc"] > 0.6
    assert m["z_after_cut"] > m["z_before_cut"]
    assert m["z_after_cut"] > 3


def test_background_only_toy_gives_no_discovery(tmp_path: Path) -> None:
    toy = toy_dijet_features(30_000, 150, seed=11)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = _config(path, tmp_path / "run", ).with_overrides(**{"data.remove_signal": True})  # fmt: skip
    result = run_analysis(config)
    assert result.data.label is not None
    assert result.data.label.sum() == 0
    assert result.metrics["z_after_cut"] < 2
    assert result.metrics["z_before_cut"] < 2


def test_rerun_resumes_from_checkpoints_and_reproduces(tmp_path: Path) -> None:
    toy = toy_dijet_features(20_000, 100, seed=3)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = _config(path, tmp_path / "run")
    ckpt = checkpoint_dir_for(config)
    assert ckpt.parent == tmp_path / "run" / "checkpoints"
    assert checkpoint_dir_for(config.with_overrides(seed=8)) != ckpt  # another analysis
    assert checkpoint_dir_for(config.with_overrides(progress=True)) == ckpt

    first = run_analysis(config, checkpoint_dir=ckpt)
    saved = ckpt / "template_0" / "fit_loop.pt"
    assert saved.is_file()
    stamp = saved.stat().st_mtime_ns
    second = run_analysis(config, checkpoint_dir=ckpt)  # training already finished: resumes
    assert saved.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.template, second.template)
    np.testing.assert_array_equal(first.score_sr, second.score_sr)
    assert first.metrics["z_after_cut"] == second.metrics["z_after_cut"]


def test_cli_run_prints_z_and_reports_bad_config(tmp_path: Path) -> None:
    toy = toy_dijet_features(20_000, 300, seed=5)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = tmp_path / "a.yaml"
    config.write_text(
        f"name: cli\nseed: 3\noutput: run\nprogress: false\n"
        f"data: {{path: {path}, features: [mj1, delta_mj, tau21_j1, tau21_j2]}}\n"
        "region: {signal_region_gev: [3300, 3700], sideband_gev: [2500, 5500]}\n"
        "background: {n_transforms: 2, hidden_features: [16], epochs: 2}\n"
        "scoring: {n_members: 1, max_iter: 30, n_folds: 2}\n"
        "bumphunt: {compute_limit: false}\n"
    )
    result = CliRunner().invoke(main, ["run", str(config), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "Z = " in result.output
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert (tmp_path / "run" / "template_model_0.pt").is_file()
    assert not (tmp_path / "run" / "checkpoints").exists()  # removed after a finished run

    config.write_text(config.read_text().replace("seed: 3", "sed: 3"))
    bad = CliRunner().invoke(main, ["run", str(config)])
    assert bad.exit_code == 1
    assert "sed: unknown key" in bad.output
    assert "Traceback" not in bad.output


def test_cli_reports_missing_input_clearly(tmp_path: Path) -> None:
    config = tmp_path / "a.yaml"
    config.write_text("data: {path: nowhere.h5}\nregion: {signal_region_gev: [3300, 3700]}\n")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 1
    assert "nowhere.h5" in result.output
    assert "Traceback" not in result.output


def test_features_then_analysis_from_particles(bundled_data: Path, tmp_path: Path) -> None:
    """Particles -> coffea processor -> features file -> read back, through the CLI."""
    raw = bundled_data / "lhco_like_default_raw_small.h5"
    if not raw.is_file():
        pytest.fail(f"bundled particle sample {raw} is missing: run data/make_default_dataset.py")
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(main, ["features", str(raw), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = read_features(out)
    assert len(table) > 100
    assert (table.columns["delta_mj"] >= 0).all()
    assert np.all(np.diff(table.event_id) > 0)
