"""Integration: every stage in one run, on small generated data, through the CLI and the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
from click.testing import CliRunner

from sideband.cli import main
from sideband.config import AnalysisConfig, load_config
from sideband.errors import ConfigError
from sideband.events import read_features, write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import checkpoint_dir_for, run_analysis, stage_seeds
from sideband.report import write_run

SMALL = {
    "background": {"n_transforms": 2, "hidden_features": (32, 32), "epochs": 4, "patience": 2},
    "scoring": {"n_members": 2, "max_iter": 60, "n_folds": 3},
    "bumphunt": {"efficiency": 0.2, "compute_limit": True},
}


#: A SIGMA small enough for a test: 2 epochs of a 16-wide, 1-block network, loose ODE tolerances.
TINY_SIGMA = {"epochs": 2, "hidden_features": 16, "n_blocks": 1, "selection": "cfm",
              "atol": 1e-4, "rtol": 1e-4}  # fmt: skip


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


def _sigma_yaml(tmp_path: Path, background: str) -> Path:
    config = tmp_path / "sigma.yaml"
    config.write_text(
        "data: {path: toy.parquet}\n"
        "region: {signal_region_gev: [3300, 3700], sideband_gev: [2500, 5500]}\n"
        f"background:\n{background}"
    )
    return config


def test_config_accepts_method_sigma_with_its_block(tmp_path: Path) -> None:
    path = _sigma_yaml(
        tmp_path,
        "  method: sigma\n  cross_fit_folds: 1\n"
        "  sigma: {interpolation: linear, anchor_margin_gev: 150, hidden_features: 32,\n"
        "          n_blocks: 2, epochs: 3, selection: cfm, atol: 1.0e-4}\n",
    )
    bg = load_config(path).background
    assert bg.method == "sigma"
    assert bg.sigma is not None
    assert (bg.sigma.interpolation, bg.sigma.anchor_margin_gev) == ("linear", 150.0)
    assert (bg.sigma.hidden_features, bg.sigma.n_blocks, bg.sigma.epochs) == (32, 2, 3)
    assert bg.sigma.rtol == 1e-5  # unset keys keep SigmaTemplate's defaults
    assert bg.mass_sampler is None
    assert bg.mass_sampler_kind == "histogram"  # SIGMA's default
    # Without a sigma block, method sigma uses the defaults; cathode keeps its KDE.
    plain = load_config(_sigma_yaml(tmp_path, "  method: sigma\n")).background
    assert plain.sigma_params.hidden_features == 128
    assert (
        load_config(_sigma_yaml(tmp_path, "  method: cathode\n")).background.mass_sampler_kind
        == "kde"
    )
    chosen = load_config(_sigma_yaml(tmp_path, "  method: sigma\n  mass_sampler: kde\n"))
    assert chosen.background.mass_sampler_kind == "kde"
    # Dotted overrides reach into a sigma block that the file did not give.
    over = load_config(_sigma_yaml(tmp_path, "  method: sigma\n")).with_overrides(
        **{"background.sigma.epochs": 5}
    )
    assert over.background.sigma_params.epochs == 5


@pytest.mark.parametrize(
    ("background", "message"),
    [
        ("  method: sigma\n  sigma: {epoch: 3}\n", "background.sigma.epoch: unknown key"),
        ("  method: sigma\n  sigmaa: {epochs: 3}\n", "background.sigmaa: unknown key"),
        ("  method: sigma\n  sigma: {hidden_features: [16, 16]}\n", "hidden_features"),
        ("  method: sigma\n  sigma: {interpolation: cubic}\n", "interpolation"),
        ("  method: sigma\n  mass_sampler: spline\n", "mass_sampler"),
        ("  method: cathode\n  sigma: {epochs: 3}\n", "set method: sigma, or remove"),
        ("  method: lacathode\n  mass_sampler: kde\n", "no effect with method lacathode"),
        ("  method: sigmaa\n", "background.method"),
    ],
)
def test_config_rejects_bad_sigma_settings(tmp_path: Path, background: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_sigma_yaml(tmp_path, background))


def test_sigma_pipeline_trains_on_sr_and_sidebands_and_runs_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sideband.background import SigmaTemplate

    toy = toy_dijet_features(20_000, 150, seed=11)
    path = write_features(tmp_path / "toy.parquet", toy)
    config = _config(path, tmp_path / "run").with_overrides(
        **{"background.method": "sigma", "background.sigma": TINY_SIGMA}
    )
    seen: list[np.ndarray] = []
    fit = SigmaTemplate.fit

    def spy(self: SigmaTemplate, X: np.ndarray, m: np.ndarray, *args: object) -> SigmaTemplate:
        seen.append(np.asarray(m))
        return fit(self, X, m, *args)

    monkeypatch.setattr(SigmaTemplate, "fit", spy)
    result = run_analysis(config)

    # One SIGMA per chain, interpolating across the configured SR.
    assert len(result.template_models) == 2
    for model in result.template_models:
        assert isinstance(model, SigmaTemplate)
        assert model.signal_region == (3300.0, 3700.0)
        assert model.get_params()["hidden_features"] == 16
    assert result.template_history["method"] == "sigma"
    # Each chain learns ALL the SR data plus its half of the sidebands.
    mjj = result.data.mjj
    n_sr, n_sb = int(result.sr_mask.sum()), int(result.sb_mask.sum())
    assert len(seen) == 2
    for m in seen:
        in_sr = (m >= 3300) & (m < 3700)
        assert in_sr.sum() == n_sr
        assert abs((~in_sr).sum() - n_sb / 2) <= 1
    np.testing.assert_array_equal(np.sort(seen[0][:n_sr]), np.sort(mjj[result.sr_mask]))

    # The rest of the chain as for CATHODE: template in the SR, every event scored, a bump hunt.
    assert result.template.shape == (round(4 * n_sr), 4)
    assert np.isfinite(result.template).all()
    assert np.isfinite(result.score_sr).all()
    assert np.isfinite(result.score_sb).all()
    assert (result.score_sr >= result.threshold).mean() == pytest.approx(0.2, abs=0.01)
    assert np.isfinite(result.metrics["z_after_cut"])
    assert result.metrics["score_vs_truth"]["auc"] > 0.6

    out = write_run(result, tmp_path / "run", plots=False)
    loaded = SigmaTemplate.load(out / "template_model_0.pt", device="cpu")
    assert loaded.signal_region == (3300.0, 3700.0)
    history = json.loads((out / "template_history.json").read_text())
    assert history["method"] == "sigma"


@pytest.mark.parametrize("name", ["default", "lacathode", "sigma"])
def test_bundled_analysis_configs_validate(name: str) -> None:
    config = load_config(Path(__file__).resolve().parents[1] / "analysis" / f"{name}.yaml")
    assert config.background.method == ("cathode" if name == "default" else name)


def test_mass_sampler_follows_the_method_or_the_config() -> None:
    from sideband.background import HistogramMassSampler, KDEMassSampler
    from sideband.config import BackgroundConfig
    from sideband.pipeline import _mass_sampler

    assert isinstance(_mass_sampler(BackgroundConfig(), 1), KDEMassSampler)
    assert isinstance(_mass_sampler(BackgroundConfig(method="sigma"), 1), HistogramMassSampler)
    histogram = BackgroundConfig(method="cathode", mass_sampler="histogram")
    assert isinstance(_mass_sampler(histogram, 1), HistogramMassSampler)


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
    folds = sorted((ckpt / "scoring_0").glob("fold_*.pkl"))  # one file per classifier fold
    assert len(folds) == config.scoring.n_folds
    fold_stamps = [p.stat().st_mtime_ns for p in folds]
    second = run_analysis(config, checkpoint_dir=ckpt)  # training already finished: resumes
    assert saved.stat().st_mtime_ns == stamp
    assert [p.stat().st_mtime_ns for p in folds] == fold_stamps  # folds read back, not refit
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


def test_bumphunt_block_reaches_bump_hunt(tmp_path: Path) -> None:
    import inspect

    from sideband.bumphunt import bump_hunt
    from sideband.pipeline import hunt_options_from_config

    config = _config(tmp_path / "x.parquet", tmp_path / "run").with_overrides(
        **{
            "bumphunt.n_params": "auto",
            "bumphunt.bin_resolution": 0.05,
            "bumphunt.calculator": "toys",
            "bumphunt.n_toys": 200,
        }
    )
    options = hunt_options_from_config(config)
    assert set(options) <= set(inspect.signature(bump_hunt).parameters)
    assert (options["n_params"], options["bin_resolution"]) == ("auto", 0.05)
    assert (options["calculator"], options["n_toys"]) == ("toys", 200)
    assert options["seed"] == stage_seeds(config.seed)["bump_hunt"]
    with pytest.raises(ConfigError, match="n_params"):
        config.with_overrides(**{"bumphunt.n_params": 6})
