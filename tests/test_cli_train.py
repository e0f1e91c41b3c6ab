"""`sideband train`: the background templates alone, saved, summarised and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sideband.cli import main
from sideband.config import load_config
from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import checkpoint_dir_for, split_data

CATHODE = "{n_transforms: 2, hidden_features: [16], epochs: 2, patience: 2}"
SIGMA = (
    "{method: sigma, sigma: {epochs: 2, hidden_features: 16, n_blocks: 1, selection: cfm, "
    "atol: 1.0e-4, rtol: 1.0e-4}}"
)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    return write_features(folder / "toy.parquet", toy_dijet_features(12_000, 100, seed=4))


def _yaml(folder: Path, data: Path, background: str) -> Path:
    config = folder / "a.yaml"
    config.write_text(
        f"name: train\nseed: 5\noutput: run\nprogress: false\n"
        f"data: {{path: {data}, features: [mj1, delta_mj, tau21_j1, tau21_j2]}}\n"
        "region: {signal_region_gev: [3300, 3700], sideband_gev: [2500, 5500]}\n"
        f"background: {background}\n"
        "scoring: {n_members: 1, max_iter: 30, n_folds: 2}\n"
        "bumphunt: {compute_limit: false}\n"
    )
    return config


def test_train_saves_loadable_cathode_models_and_resumes(toy_file: Path, tmp_path: Path) -> None:
    from sideband.background import CathodeTemplate

    config = _yaml(tmp_path, toy_file, CATHODE)
    first = CliRunner().invoke(main, ["train", str(config)])
    assert first.exit_code == 0, first.output
    out = tmp_path / "run" / "templates"  # default: the config's output / templates
    summary = json.loads((out / "templates.json").read_text())
    assert summary["method"] == "cathode"
    assert summary["mass_sampler"] == "kde"
    assert summary["cross_fit_folds"] == 2
    assert set(summary["chains"]) == {"0", "1"}
    assert summary["versions"]["torch"]
    assert summary["stage_seeds"]["template_fit"] == summary["chains"]["0"]["seed"]
    for k in ("0", "1"):
        chain = summary["chains"][k]
        assert chain["params"]["n_transforms"] == 2
        assert chain["epochs_trained"] == 2
        assert len(chain["best_epochs"]) == 1
        assert chain["train_time_s"] > 0
        assert chain["resumed_from_checkpoint"] is False
    m = np.full(50, 3500.0)
    models = [CathodeTemplate.load(out / f"template_model_{k}.pt", device="cpu") for k in (0, 1)]
    samples = [model.sample(m, seed=1) for model in models]
    assert samples[0].shape == (50, 4)
    assert not np.array_equal(samples[0], samples[1])  # two chains, two trainings

    # The checkpoints sit where `sideband run` of the same config looks for them.
    ckpt = checkpoint_dir_for(load_config(config)) / "template_0" / "fit_loop.pt"
    assert ckpt.is_file()
    stamp = ckpt.stat().st_mtime_ns

    second = CliRunner().invoke(main, ["train", str(config)])  # resumes: nothing left to train
    assert second.exit_code == 0, second.output
    assert "resumed from a checkpoint" in second.output
    assert ckpt.stat().st_mtime_ns == stamp
    again = json.loads((out / "templates.json").read_text())
    assert again["chains"]["0"]["resumed_from_checkpoint"] is True
    assert again["chains"]["0"]["best_epochs"] == summary["chains"]["0"]["best_epochs"]
    reloaded = CathodeTemplate.load(out / "template_model_0.pt", device="cpu")
    np.testing.assert_array_equal(reloaded.sample(m, seed=1), samples[0])


def test_run_after_train_reuses_the_trained_templates(toy_file: Path, tmp_path: Path) -> None:
    from sideband.background import CathodeTemplate
    from sideband.pipeline import run_analysis

    config_path = _yaml(tmp_path, toy_file, CATHODE)
    result = CliRunner().invoke(main, ["train", str(config_path)])
    assert result.exit_code == 0, result.output
    config = load_config(config_path)
    ckpt = checkpoint_dir_for(config)
    stamps = [(ckpt / f"template_{k}" / "fit_loop.pt").stat().st_mtime_ns for k in (0, 1)]
    run = run_analysis(config, checkpoint_dir=ckpt)  # what `sideband run` does
    assert [(ckpt / f"template_{k}" / "fit_loop.pt").stat().st_mtime_ns for k in (0, 1)] == stamps
    trained = CathodeTemplate.load(tmp_path / "run" / "templates" / "template_model_1.pt")
    m = np.full(30, 3400.0)
    np.testing.assert_array_equal(
        run.template_models[1].sample(m, seed=3), trained.sample(m, seed=3)
    )


def test_train_sigma_one_chain_at_a_time(toy_file: Path, tmp_path: Path) -> None:
    from sideband.background import SigmaTemplate

    config = _yaml(tmp_path, toy_file, SIGMA)
    out, ckpt = tmp_path / "models", tmp_path / "ckpt"
    args = ["train", str(config), "-o", str(out), "--checkpoint-dir", str(ckpt)]
    first = CliRunner().invoke(main, [*args, "--chain", "1"])
    assert first.exit_code == 0, first.output
    assert not (out / "template_model_0.pt").exists()
    assert (ckpt / "template_1" / "fit_loop.pt").is_file()
    model = SigmaTemplate.load(out / "template_model_1.pt", device="cpu")
    assert model.signal_region == (3300.0, 3700.0)
    assert model.get_params()["n_blocks"] == 1
    x = model.sample(np.full(20, 3500.0), seed=2)
    assert x.shape == (20, 4)
    assert np.isfinite(x).all()
    summary = json.loads((out / "templates.json").read_text())
    assert summary["method"] == "sigma"
    assert summary["mass_sampler"] == "histogram"
    assert list(summary["chains"]) == ["1"]
    # SIGMA learns the SR data as well as the chain's sideband folds.
    split = split_data(load_config(config))
    n_train = int(split.sb_train(1).sum()) + len(split.m_sr)
    assert summary["chains"]["1"]["n_train_events"] == n_train

    second = CliRunner().invoke(main, [*args, "--chain", "0"])  # the other chain joins the summary
    assert second.exit_code == 0, second.output
    summary = json.loads((out / "templates.json").read_text())
    assert list(summary["chains"]) == ["0", "1"]
    assert summary["chains"]["1"]["resumed_from_checkpoint"] is False


def test_train_reports_bad_chain_and_bad_config(toy_file: Path, tmp_path: Path) -> None:
    config = _yaml(tmp_path, toy_file, CATHODE)
    result = CliRunner().invoke(main, ["train", str(config), "--chain", "2"])
    assert result.exit_code == 1
    assert "cross_fit_folds is 2" in result.output
    assert "Traceback" not in result.output

    config.write_text(config.read_text().replace("epochs: 2", "epoch: 2"))
    bad = CliRunner().invoke(main, ["train", str(config)])
    assert bad.exit_code == 1
    assert "background.epoch: unknown key" in bad.output
    assert "Traceback" not in bad.output


def test_commands_are_listed_in_workflow_order() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    names = ["generate", "features", "train", "run", "evaluate"]
    positions = [result.output.index(f"  {name} ") for name in names]
    assert positions == sorted(positions)
