"""The point-cloud method in the analysis pipeline: config, end to end on toys, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sideband.config import AnalysisConfig, load_config
from sideband.errors import ConfigError, InputError

SR = (3300.0, 3700.0)
M = 16


def _toy_point_clouds(n: int, seed: int, *, signal_fraction: float = 0.0):
    """Toy dijet events with M = 16 slots: m_JJ falling like a dijet spectrum (~ m^-6 above
    2.8 TeV), back-to-back jets of 2-16 constituents; "signal" events (label 1, m_JJ near
    3.5 TeV) have heavier jets and wider clouds."""
    from sideband.background.point_cloud.jets import dijet_mass
    from sideband.records import PointCloudTable

    rng = np.random.default_rng(seed)
    n_sig = round(signal_fraction * n)
    label = np.zeros(n, dtype=np.int8)
    label[:n_sig] = 1
    m_target = 2800.0 * (1 - rng.uniform(0, 0.999, n)) ** (-1 / 5)  # Pareto tail, index 5
    m_target[:n_sig] = rng.normal(3500, 80, n_sig)
    jets = np.empty((n, 2, 5))
    eta = rng.normal(0, 0.7, (n, 2))
    mj = rng.uniform(30, 250, (n, 2))
    mj[:n_sig] = rng.normal([500, 100], 20, (n_sig, 2))
    deta = eta[:, 0] - eta[:, 1]
    pt = np.sqrt(np.maximum(m_target**2 - (mj**2).sum(1), 1e4) / (2 * (np.cosh(deta) + 1)))
    jets[:, :, 0] = pt[:, None] * rng.normal(1, 0.02, (n, 2))
    jets[:, :, 1] = eta
    jets[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    jets[:, 1, 2] = (jets[:, 0, 2] + np.pi + rng.normal(0, 0.1, n) + np.pi) % (2 * np.pi) - np.pi
    jets[:, :, 3] = mj
    jets[:, :, 4] = rng.integers(2, M + 1, (n, 2))
    mask = np.arange(M)[None, None, :] < jets[:, :, 4:5]
    width = np.where(label[:, None, None] == 1, 0.35, 0.2)
    cons = np.zeros((n, 2, M, 3), dtype=np.float32)
    raw = -np.sort(-rng.exponential(1.0, (n, 2, M)) * mask, axis=-1)
    cons[..., 0] = raw / raw.sum(-1, keepdims=True)
    cons[..., 1] = rng.normal(0, 1, (n, 2, M)) * width * mask
    cons[..., 2] = rng.normal(0, 1, (n, 2, M)) * width * mask
    # the leading jet first, as in every PointCloudTable
    swap = jets[:, 1, 0] > jets[:, 0, 0]
    jets[swap], mask[swap], cons[swap] = (x[swap][:, ::-1] for x in (jets, mask, cons))
    order = rng.permutation(n)
    return PointCloudTable(
        cons[order], mask[order], jets[order], dijet_mass(jets)[order], np.arange(n),
        label[order],
    )  # fmt: skip


TINY = {
    "name": "point_cloud_toy",
    "seed": 2,
    "progress": False,
    "region": {"signal_region_gev": list(SR), "sideband_gev": [2900, 4500]},
    "background": {
        "method": "point_cloud",
        "oversampling": 2,
        "cross_fit_folds": 2,
        "device": "cpu",
        "point_cloud": {
            "jet_model": {"epochs": 3, "hidden_features": 16, "n_blocks": 1, "batch_size": 128},
            "particle_model": {"epochs": 2, "hidden": 16, "global_dim": 8, "n_layers": 2,
                               "n_steps": 4, "batch_size": 128, "n_threads": 1},
        },
    },
    "scoring": {
        "classifier": "point_cloud",
        "n_folds": 3,
        "n_threads": 1,
        "point_cloud": {"hidden": 8, "heads": 2, "n_blocks": 1, "n_epochs": 3, "n_best": 2,
                        "batch_size": 256, "device": "cpu"},
    },
    "bumphunt": {"efficiency": 0.2, "bin_width_gev": 100, "n_params": 3, "compute_limit": False},
}  # fmt: skip


def _config(path, output, **updates):
    raw = {**TINY, "data": {"path": str(path)}, "output": str(output)}
    for key, value in updates.items():
        raw[key] = value
    return AnalysisConfig.model_validate(raw)


# ------------------------------------------------------------------------------------ config
def test_point_cloud_config_validates_and_keeps_defaults(tmp_path):
    from sideband.background.point_cloud.template import JET_MODEL_DEFAULTS
    from sideband.config import PointCloudJetModelConfig, PointCloudParticleModelConfig

    cfg = _config(tmp_path / "clouds", tmp_path / "run")
    assert cfg.background.method == "point_cloud"
    assert cfg.background.point_cloud_params.particle_model.n_steps == 4
    assert cfg.scoring.point_cloud_params.hidden == 8
    # the default classifier cannot rebuild m_JJ: no log pT, no eta
    assert "log_pt" not in cfg.scoring.point_cloud_params.jet_features
    assert "eta" not in cfg.scoring.point_cloud_params.jet_features
    # config defaults = the template's own defaults
    jet = PointCloudJetModelConfig()
    for key, value in JET_MODEL_DEFAULTS.items():
        if key in PointCloudJetModelConfig.model_fields:
            assert getattr(jet, key) == value, key
    import inspect

    from sideband.background.point_cloud.particles import ParticleFlowMatching
    from sideband.background.point_cloud.template import PARTICLE_MODEL_DEFAULTS

    sig = inspect.signature(ParticleFlowMatching.__init__).parameters
    template_defaults = {**{k: p.default for k, p in sig.items()}, **PARTICLE_MODEL_DEFAULTS}
    for key, value in PointCloudParticleModelConfig().model_dump().items():
        assert template_defaults[key] == value, key
    # overrides create the sub-block, also nested, and still reject misspelt keys
    bare = AnalysisConfig.model_validate(
        {"data": {"path": "x"}, "region": {"signal_region_gev": list(SR)},
         "background": {"method": "point_cloud"}, "scoring": {"classifier": "point_cloud"}}
    )  # fmt: skip
    deep = bare.with_overrides(**{"background.point_cloud.particle_model.n_steps": 7})
    assert deep.background.point_cloud_params.particle_model.n_steps == 7
    with pytest.raises(ConfigError, match="unknown key"):
        bare.with_overrides(**{"background.point_cloud.particle_model.n_step": 7})
    assert cfg.with_overrides(**{"background.point_cloud.max_constituents": 8}).background.point_cloud.max_constituents == 8  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"background": {"method": "cathode", "point_cloud": {}}}, "point_cloud block"),
        ({"background": {"method": "sigma", "point_cloud": {"max_constituents": 4}}}, "point_cloud block"),
        ({"background": {"method": "point_cloud", "point_cloud": {"max_constituent": 4}}}, "unknown key"),
        ({"background": {"method": "point_cloud", "point_cloud": {"jet_model": {"width": 4}}}}, "unknown key"),
        ({"background": {"method": "point_cloud", "point_cloud": {"particle_model": {"hiden": 4}}}}, "unknown key"),
        ({"background": {"method": "point_cloud"}, "scoring": {"classifier": "point_cloud", "point_cloud": {"hiddden": 8}}}, "unknown key"),
        ({"background": {"method": "point_cloud"}}, "scoring.classifier: point_cloud"),
        ({"scoring": {"classifier": "point_cloud"}}, "background.method: point_cloud"),
        ({"scoring": {"classifier": "hgb", "point_cloud": {}}}, "point_cloud block"),
        ({"background": {"method": "point_cloud"}, "scoring": {"classifier": "point_cloud", "max_iter": 10}}, "hgb classifier"),
        ({"background": {"method": "point_cloud"}, "scoring": {"classifier": "point_cloud", "point_cloud": {"hidden": 10, "heads": 4}}}, "divisible"),
        ({"background": {"method": "point_cloud"}, "scoring": {"classifier": "point_cloud", "point_cloud": {"jet_features": ["mjj"]}}}, "jet_features"),
        ({"background": {"method": "point_cloud", "point_cloud": {"particle_model": {"lr_cosine": True, "lr_patience": 3}}}, "scoring": {"classifier": "point_cloud"}}, "one learning-rate schedule"),
        ({"background": {"method": "point_cloud", "point_cloud": {"particle_model": {"warmup_epochs": 3}}}, "scoring": {"classifier": "point_cloud"}}, "warmup_epochs"),
        ({"background": {"method": "point_cloud", "point_cloud": {"closure": "both"}}, "scoring": {"classifier": "point_cloud"}}, "closure"),
    ],
)  # fmt: skip
def test_point_cloud_config_errors(tmp_path, change, match):
    raw = {"data": {"path": "x"}, "region": {"signal_region_gev": list(SR)}, **change}
    path = tmp_path / "a.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_shipped_point_cloud_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "analysis"
    small = load_config(root / "point_cloud_small.yaml")
    full = load_config(root / "point_cloud_full.yaml")
    for cfg in (small, full):
        assert cfg.background.method == "point_cloud"
        assert cfg.scoring.classifier == "point_cloud"
    pm = full.background.point_cloud_params
    assert pm.max_constituents == 279
    assert pm.particle_model.hidden >= 128
    assert pm.particle_model.n_layers == 6
    assert pm.particle_model.n_steps == 250
    assert full.scoring.point_cloud_params.hidden >= 64


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def toy_clouds(tmp_path_factory):
    from sideband.events import write_point_clouds

    folder = tmp_path_factory.mktemp("clouds")
    table = _toy_point_clouds(2400, seed=7, signal_fraction=0.03)
    write_point_clouds(folder / "part0.parquet", table.select(np.arange(1200)))
    write_point_clouds(folder / "part1.parquet", table.select(np.arange(1200, 2400)))
    return folder, table


def test_point_cloud_analysis_end_to_end_and_resume(toy_clouds, tmp_path):
    from sideband.pipeline import run_analysis
    from sideband.report import write_run

    folder, table = toy_clouds
    cfg = _config(folder, tmp_path / "run")
    ck = tmp_path / "ck"
    result = run_analysis(cfg, checkpoint_dir=ck)
    sr = (table.mjj > SR[0]) & (table.mjj < SR[1])
    assert result.sr_mask.sum() == sr.sum() > 100
    assert result.sb_mask.sum() > 500
    # every SR and SB event has a finite score in [0, 1]
    for s, mask in ((result.score_sr, result.sr_mask), (result.score_sb, result.sb_mask)):
        assert s.shape == (mask.sum(),)
        assert np.isfinite(s).all()
        assert (s >= 0).all()
        assert (s <= 1).all()
    # the cut keeps the configured SR efficiency
    kept = np.mean(result.score_sr >= result.threshold)
    assert kept == pytest.approx(0.2, abs=1.5 / result.sr_mask.sum())
    assert np.isfinite(result.before_cut.z)
    assert np.isfinite(result.after_cut.z)
    m = result.metrics
    assert m["method"] == "point_cloud"
    assert m["max_constituents"] == M
    assert len(m["chains"]) == 2
    assert m["chains"][0]["n_template"] == round(2 * sr.sum())
    assert result.template.shape == (round(2 * sr.sum()), 10)
    assert len(result.template_models) == 2
    # the two chains trained on disjoint halves of the sidebands
    n_train = [h["n_train_events"] for h in result.template_history["chains"]]
    assert sum(n_train) == result.sb_mask.sum()

    out = write_run(result, tmp_path / "run", plots=False)
    for name in ("metrics.json", "provenance.json", "config.yaml", "scores.parquet",
                 "workspace_before_cut.json", "workspace_after_cut.json",
                 "template_model_0.pt", "template_model_1.pt", "template_history.json"):  # fmt: skip
        assert (out / name).is_file(), name
    from sideband.event_results import REGION_CODES, read_event_results

    scores = read_event_results(out / "scores.root")
    assert len(scores["score"]) == len(table)
    in_regions = scores["region"] != REGION_CODES["outside"]
    assert np.isfinite(scores["score"][in_regions]).all()
    sr = scores["region"] == REGION_CODES["SR"]
    assert scores["passes_cut"][sr].mean() == pytest.approx(kept)
    np.testing.assert_array_equal(scores["score"][sr], result.score_sr)
    np.testing.assert_array_equal(scores["fold"][sr], result.fold_sr)
    assert set(np.unique(scores["chain"][in_regions])) == {0, 1}
    from sideband.background.point_cloud.template import PointCloudTemplate

    back = PointCloudTemplate.load(out / "template_model_0.pt", device="cpu")
    assert back.max_constituents_ == M

    # the k-fold point-cloud classifiers are saved: each SR event's own classifier (the one
    # that never saw it) gives back its score from the reloaded file
    from sideband.errors import InputError
    from sideband.scoring.fold_models import FoldClassifiers

    classifiers = FoldClassifiers.load(out / "classifiers.pkl")
    assert classifiers.input_space == "point_clouds"
    assert (classifiers.n_chains, classifiers.n_folds) == (2, cfg.scoring.n_folds)
    sr_events = result.data.select(result.sr_mask)
    for chain in range(2):
        for fold in range(classifiers.n_folds):
            rows = (result.chain_sr == chain) & (result.fold_sr == fold)
            assert rows.any()
            again = classifiers.score(sr_events.select(rows), chain=chain, fold=fold)
            np.testing.assert_allclose(again, result.score_sr[rows], rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="read point clouds; pass a PointCloudTable"):
        classifiers.score(np.zeros(5))

    # a second run with the same checkpoints resumes: no epoch is trained again (checkpoint files
    # untouched) and the result is the same
    ckpts = sorted(ck.rglob("*.pt"))
    assert len(ckpts) == 4  # 2 chains x (jets, particles)
    ckpts += sorted(ck.glob("scoring_*/fold_*.pkl"))  # the classifiers' finished folds
    assert len(ckpts) == 4 + 2 * cfg.scoring.n_folds
    stamps = [p.stat().st_mtime_ns for p in ckpts]
    again = run_analysis(cfg, checkpoint_dir=ck)
    assert [p.stat().st_mtime_ns for p in ckpts] == stamps
    np.testing.assert_allclose(again.score_sr, result.score_sr, rtol=1e-6)
    np.testing.assert_allclose(again.score_sb, result.score_sb, rtol=1e-6)
    assert again.metrics["z_after_cut"] == pytest.approx(m["z_after_cut"], rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------- bad input
def test_point_cloud_analysis_rejects_a_features_file(tmp_path):
    from sideband.pipeline import run_analysis
    from sideband.records import FeatureTable

    with pytest.raises(InputError, match=r"sideband features .*--point-clouds"):
        run_analysis(_config(tmp_path / "missing", tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--point-clouds"):
        run_analysis(_config(tmp_path / "empty", tmp_path / "run"))
    h5 = tmp_path / "features.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(InputError, match=r"not a Parquet point-cloud file.*--point-clouds"):
        run_analysis(_config(h5, tmp_path / "run"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = tmp_path / "features.parquet"
    pq.write_table(pa.table({"mjj": [3500.0], "mj1": [100.0]}), features)
    with pytest.raises(InputError, match=r"not a point-cloud file.*--point-clouds"):
        run_analysis(_config(features, tmp_path / "run"))
    ft = FeatureTable(columns={"mjj": np.full(3, 3500.0)}, event_id=np.arange(3))
    with pytest.raises(InputError, match="PointCloudTable"):
        run_analysis(_config(features, tmp_path / "run"), data=ft)
    # sideband train/scan do not take the method yet: a clear error, not a failed read
    from sideband.pipeline import train_templates

    with pytest.raises(InputError, match=r"not a point-cloud file.*--point-clouds"):
        train_templates(_config(features, tmp_path / "run"))


def test_point_cloud_analysis_rejects_an_empty_signal_region(tmp_path):
    from sideband.events import write_point_clouds
    from sideband.pipeline import run_analysis

    table = _toy_point_clouds(600, seed=3)
    outside = table.select((table.mjj < SR[0]) | (table.mjj > SR[1]))
    write_point_clouds(tmp_path / "clouds.parquet", outside)
    with pytest.raises(InputError, match=r"holds 0 events.*Widen the window"):
        run_analysis(_config(tmp_path / "clouds.parquet", tmp_path / "run"))
    # too few sideband events per chain (150 sideband events, 75 per chain): names the fix
    in_sr = np.flatnonzero((table.mjj > SR[0]) & (table.mjj < SR[1]))
    in_sb = np.flatnonzero((table.mjj > 2900) & (table.mjj < SR[0]))
    assert len(in_sr) >= 120
    assert len(in_sb) >= 150
    write_point_clouds(tmp_path / "few.parquet", table.select(np.r_[in_sr[:120], in_sb[:150]]))
    with pytest.raises(InputError, match=r"75 sideband events.*cross_fit_folds"):
        run_analysis(_config(tmp_path / "few.parquet", tmp_path / "run"))


def test_sideband_run_cli_on_point_clouds(toy_clouds, tmp_path):
    import json

    import yaml
    from click.testing import CliRunner

    from sideband.cli import main

    folder, table = toy_clouds
    raw = {**TINY, "data": {"path": str(folder)}, "output": str(tmp_path / "run")}
    raw["background"] = {**TINY["background"], "cross_fit_folds": 1}
    (tmp_path / "pc.yaml").write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["run", str(tmp_path / "pc.yaml"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "Z = " in res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_events"] == len(table)
    assert len(metrics["chains"]) == 1
    # provenance checksums every file of the input folder
    inputs = json.loads((tmp_path / "run" / "provenance.json").read_text())["inputs"]
    assert sorted(inputs) == [str(folder / "part0.parquet"), str(folder / "part1.parquet")]
    assert not (tmp_path / "run" / "checkpoints").exists()  # removed after success
    # its classifiers are saved, and the ONNX export refuses them with a reason
    assert (tmp_path / "run" / "classifiers.pkl").is_file()
    res = CliRunner().invoke(main, ["export-onnx", str(tmp_path / "run")])
    assert res.exit_code != 0
    assert "read point clouds" in res.output


def test_checkpoint_key_follows_the_files_of_a_point_cloud_folder(tmp_path):
    import os

    from sideband.events import write_point_clouds
    from sideband.pipeline import checkpoint_dir_for

    folder = tmp_path / "clouds"
    folder.mkdir()
    table = _toy_point_clouds(300, seed=3)
    write_point_clouds(folder / "part0.parquet", table.select(np.arange(150)))
    config = _config(folder, tmp_path / "run")
    key = checkpoint_dir_for(config)
    assert checkpoint_dir_for(config) == key  # stable
    write_point_clouds(folder / "part1.parquet", table.select(np.arange(150, 300)))
    grown = checkpoint_dir_for(config)
    assert grown != key  # another file: another training
    st = (folder / "part1.parquet").stat()
    os.utime(folder / "part1.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert checkpoint_dir_for(config) != grown  # a rewritten file too
