"""`sideband train` for ``background.method: point_cloud``: the templates alone, resumable, and
reused by `sideband run`; `sideband scan` still refuses the method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sideband.cli import main
from sideband.config import load_config
from sideband.errors import ConfigError, InputError
from test_pipeline_point_cloud import TINY, M, _toy_point_clouds


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sideband.events import write_point_clouds

    folder = tmp_path_factory.mktemp("clouds")
    table = _toy_point_clouds(2400, seed=7, signal_fraction=0.03)
    write_point_clouds(folder / "part0.parquet", table.select(np.arange(1200)))
    write_point_clouds(folder / "part1.parquet", table.select(np.arange(1200, 2400)))
    return folder


def _yaml(folder: Path, data: Path, **updates: object) -> Path:
    raw = {**TINY, "data": {"path": str(data)}, "output": str(folder / "run"), **updates}
    path = folder / "pc.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _stamps(paths: list[Path]) -> list[int]:
    return [p.stat().st_mtime_ns for p in paths]


def test_train_point_cloud_chain_by_chain_resume_and_run(clouds: Path, tmp_path: Path) -> None:
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.pipeline import _chain_seed, checkpoint_dir_for, run_analysis, stage_seeds
    from sideband.pipeline_point_cloud import split_point_clouds

    config_path = _yaml(tmp_path, clouds)
    config = load_config(config_path)
    out = tmp_path / "run" / "templates"
    ckpt = checkpoint_dir_for(config)  # where `sideband run` of this config looks

    # --chain 1 trains chain 1 only
    first = CliRunner().invoke(main, ["train", str(config_path), "--chain", "1"])
    assert first.exit_code == 0, first.output
    assert "chain 1: point_cloud template trained" in first.output
    assert (out / "template_model_1.pt").is_file()
    assert not (out / "template_model_0.pt").exists()
    assert not (ckpt / "template_0").exists()
    files = {k: [ckpt / f"template_{k}" / sub / "fit_loop.pt" for sub in ("jets", "particles")]
             for k in (0, 1)}  # fmt: skip
    assert all(p.is_file() for p in files[1])
    summary = json.loads((out / "templates.json").read_text())
    assert summary["method"] == "point_cloud"
    assert summary["mass_sampler"] == "kde"
    assert summary["features"] is None
    assert summary["max_constituents"] == M
    assert summary["cross_fit_folds"] == 2
    assert sorted(summary["inputs"]) == [str(clouds / "part0.parquet"), str(clouds / "part1.parquet")]  # fmt: skip
    assert summary["versions"]["torch"]
    assert list(summary["chains"]) == ["1"]
    chain = summary["chains"]["1"]
    split = split_point_clouds(config)
    assert chain["n_train_events"] == int(split.sb_train(1).sum()) < len(split.sb)
    assert chain["seed"] == _chain_seed(stage_seeds(config.seed)["template_fit"], 1)
    assert chain["seed"] != summary["stage_seeds"]["template_fit"]
    assert chain["params"]["particle_model"]["n_steps"] == 4
    assert chain["max_constituents"] == M
    # both models: epochs trained, best epochs (within them), best loss, early stop
    assert chain["epochs_trained"] == {"jet_model": 3, "particle_model": 2}
    for name, n_epochs in chain["epochs_trained"].items():
        best = chain["best_epochs"][name]
        assert len(best) >= 1
        assert all(0 <= e < n_epochs for e in best), (name, best)
        assert np.isfinite(chain["best_val_loss"][name])
        assert chain["stopped_early"][name] is False
    assert chain["resumed_from_checkpoint"] is False
    assert chain["train_time_s"] > 0

    # all chains: chain 0 trains, chain 1 resumes from its finished checkpoints untouched
    stamps_1 = _stamps(files[1])
    second = CliRunner().invoke(main, ["train", str(config_path)])
    assert second.exit_code == 0, second.output
    assert second.output.count("resumed from a checkpoint") == 1
    assert _stamps(files[1]) == stamps_1
    summary = json.loads((out / "templates.json").read_text())
    assert list(summary["chains"]) == ["0", "1"]
    assert summary["chains"]["0"]["resumed_from_checkpoint"] is False
    assert summary["chains"]["1"]["resumed_from_checkpoint"] is True
    assert summary["chains"]["1"]["best_epochs"] == chain["best_epochs"]
    n_train = [summary["chains"][k]["n_train_events"] for k in ("0", "1")]
    assert sum(n_train) == len(split.sb)  # the chains trained on disjoint sideband halves
    trained_s = summary["chains"]["0"]["train_time_s"]

    # again: nothing left to train, both resume and are fast
    stamps = _stamps(files[0] + files[1])
    third = CliRunner().invoke(main, ["train", str(config_path)])
    assert third.exit_code == 0, third.output
    assert third.output.count("resumed from a checkpoint") == 2
    assert _stamps(files[0] + files[1]) == stamps
    again = json.loads((out / "templates.json").read_text())
    assert all(again["chains"][k]["resumed_from_checkpoint"] for k in ("0", "1"))
    assert again["chains"]["0"]["best_epochs"] == summary["chains"]["0"]["best_epochs"]
    assert again["chains"]["0"]["train_time_s"] < trained_s

    # the saved models load and sample
    m = np.full(40, 3500.0)
    models = [PointCloudTemplate.load(out / f"template_model_{k}.pt", device="cpu") for k in (0, 1)]
    samples = [model.sample(m, seed=1) for model in models]
    for s in samples:
        assert len(s) == 40
        assert s.max_constituents == M
        assert s.jets.shape == (40, 2, 5)
        assert np.isfinite(s.constituents).all()
        assert np.isfinite(s.jets).all()
        np.testing.assert_array_equal(s.mjj, m)
    assert not np.array_equal(samples[0].jets, samples[1].jets)  # two chains, two trainings

    # `sideband run` (run_analysis with checkpoint_dir_for) resumes: no epoch trained again, the
    # same models as the saved ones, and the same scores as a run that trains for itself
    run = run_analysis(config, checkpoint_dir=ckpt)
    assert _stamps(files[0] + files[1]) == stamps
    for k in (0, 1):
        np.testing.assert_allclose(
            run.template_models[k].sample(m, seed=3).jets, models[k].sample(m, seed=3).jets,
            rtol=1e-6,
        )  # fmt: skip
        hist = run.template_history["chains"][k]
        assert hist["jet_model"]["best_epochs"] == again["chains"][str(k)]["best_epochs"]["jet_model"]  # fmt: skip
    fresh = run_analysis(config, checkpoint_dir=tmp_path / "fresh")
    np.testing.assert_allclose(run.score_sr, fresh.score_sr, rtol=1e-6)
    np.testing.assert_allclose(run.score_sb, fresh.score_sb, rtol=1e-6)
    assert run.metrics["z_after_cut"] == pytest.approx(fresh.metrics["z_after_cut"], rel=1e-6)


def test_train_point_cloud_bad_input(clouds: Path, tmp_path: Path) -> None:
    from sideband.pipeline import train_templates
    from sideband.records import FeatureTable

    config_path = _yaml(tmp_path, clouds)
    bad = CliRunner().invoke(main, ["train", str(config_path), "--chain", "2"])
    assert bad.exit_code == 1
    assert "cross_fit_folds is 2" in bad.output
    assert "Traceback" not in bad.output
    features = FeatureTable(columns={"mjj": np.full(3, 3500.0)}, event_id=np.arange(3))
    with pytest.raises(InputError, match="PointCloudTable"):
        train_templates(load_config(config_path), data=features)
    # a features file instead of point clouds: the fix names `--point-clouds`
    h5 = tmp_path / "features.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    missing = CliRunner().invoke(main, ["train", str(_yaml(tmp_path, h5))])
    assert missing.exit_code == 1
    assert "--point-clouds" in missing.output
    assert "Traceback" not in missing.output


def test_scan_refuses_point_cloud_with_a_clear_error(clouds: Path, tmp_path: Path) -> None:
    from sideband.pipeline import load_data

    scan = {"first_low_gev": 3100, "last_high_gev": 3900, "width_gev": 400, "step_gev": 200}
    region = {"sideband_gev": [2900, 4500]}
    result = CliRunner().invoke(
        main, ["scan", str(_yaml(tmp_path, clouds, scan=scan, region=region)), "--no-plots"]
    )
    assert result.exit_code == 1
    assert "does not support background.method point_cloud" in result.output
    assert "Traceback" not in result.output
    # the pipeline's feature reader (what a scan reads with) names what works instead
    with pytest.raises(ConfigError, match="sideband scan") as err:
        load_data(load_config(_yaml(tmp_path, clouds)))
    assert "sideband run" in str(err.value)
    assert "sideband train` for the templates" in str(err.value)
    assert "do not support it yet" not in str(err.value)
