"""The sliding-window search: windows, resumption, failed windows, outputs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
from click.testing import CliRunner

from sideband import scan as scan_module
from sideband.cli import main
from sideband.config import AnalysisConfig, ScanConfig
from sideband.errors import ConfigError, FitError
from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import run_analysis
from sideband.scan import SCAN_JSON, run_scan, scan_regions

SMALL = {
    "background": {"n_transforms": 2, "hidden_features": (32, 32), "epochs": 4, "patience": 2},
    "scoring": {"n_members": 2, "max_iter": 60, "n_folds": 3},
    "bumphunt": {"compute_limit": True},
}
#: Three windows 2900-3300, 3300-3700 (the toy signal at 3500 GeV), 3700-4100 GeV.
WINDOWS = {"first_low_gev": 2900, "last_high_gev": 4100, "width_gev": 400, "step_gev": 400}


def _config(path: Path, out: Path, *, scan: dict | None = None, **extra: object) -> AnalysisConfig:
    blocks = {**SMALL, **extra}
    return AnalysisConfig(
        name="toy_scan",
        seed=3,
        output=out,
        progress=False,
        data={"path": path, "features": ("mj1", "delta_mj", "tau21_j1", "tau21_j2")},
        region={"sideband_gev": (2500, 5500)},
        scan={**WINDOWS, "efficiencies": (0.2,), "n_global_toys": 5, **(scan or {})},
        **blocks,
    )


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scan_data")
    return write_features(folder / "toy.parquet", toy_dijet_features(30_000, 250, seed=5))


def test_windows_follow_the_scan_block() -> None:
    scan = ScanConfig(first_low_gev=3000, last_high_gev=4000, width_gev=400, step_gev=300)
    assert scan.windows() == [(3000, 3400), (3300, 3700), (3600, 4000)]
    with pytest.raises(ValueError, match="no scan window fits"):
        ScanConfig(first_low_gev=3000, last_high_gev=3200, width_gev=400)


def test_scan_config_errors_name_the_fix(toy_file: Path, tmp_path: Path) -> None:
    base = _config(toy_file, tmp_path)
    regions = scan_regions(base)
    assert [(r.low_gev, r.high_gev) for r in regions] == [(2900, 3300), (3300, 3700), (3700, 4100)]
    assert all((r.sideband_low_gev, r.sideband_high_gev) == (2500, 5500) for r in regions)
    with pytest.raises(ConfigError, match=r"needs region\.sideband_gev"):
        base.with_overrides(**{"region.sideband_gev": None})
    with pytest.raises(ConfigError, match="strictly inside"):
        base.with_overrides(**{"scan.last_high_gev": 6000})
    with pytest.raises(ConfigError, match=r"signal_region_gev is missing"):
        base.with_overrides(scan=None)
    # a scan configuration has no single SR for `sideband run`
    with pytest.raises(ConfigError, match="sideband scan"):
        run_analysis(base)


def _table(rows: list[dict], eff: float) -> list[tuple]:
    return [
        (r["window"], r["status"], r["z"], r["mu_hat"], r["upper_limit"])
        for r in rows
        if r["efficiency"] == eff
    ]


def test_cathode_scan_finds_the_signal_window_and_resumes(
    toy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(toy_file, tmp_path / "scan")
    result = run_scan(config)
    out = result.out_dir

    # one row per window and efficiency (before the cut = 1.0), all fitted
    assert len(result.rows) == 3 * 2
    assert {r["status"] for r in result.rows} == {"ok"}
    cut = [r for r in result.rows if r["efficiency"] == 0.2]
    best = max(cut, key=lambda r: r["z"])
    assert (best["sr_low_gev"], best["sr_high_gev"]) == (3300, 3700)
    assert best["z"] > 2.5
    assert best["z"] > max(r["z"] for r in result.rows if r["efficiency"] == 1.0)
    assert best["n_signal_true_in_sr"] > 0

    # global significance: a p-value at least the local one, from the configured toys
    entry = result.global_significance["by_efficiency"]["0.2"]
    assert entry["window"] == best["window"]
    assert entry["local_p0"] <= entry["global_p"] <= 1.0
    assert result.global_significance["n_toys"] == 5

    # outputs: summary, table, one pyhf workspace per window and cut, plots
    summary = json.loads((out / SCAN_JSON).read_text())
    assert summary["windows"] == [[2900, 3300], [3300, 3700], [3700, 4100]]
    assert summary["versions"]["pyhf"]
    assert summary["seeds"]
    assert (out / "scan_table.csv").read_text().count("\n") == 1 + 6
    workspaces = sorted((out / "workspaces").glob("*.json"))
    assert len(workspaces) == 6
    ws = pyhf.Workspace(json.loads(workspaces[0].read_text()))
    assert ws.model().config.poi_name
    assert (out / "plots" / "scan_significance.pdf").is_file()
    assert not (out / "checkpoints").exists()  # removed once every window is written

    # rerun: every window is reused from its file, nothing is recomputed
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished window was recomputed")

    monkeypatch.setattr(scan_module, "_scan_window", fail)
    again = run_scan(config, plots=False)
    assert _table(again.rows, 0.2) == _table(result.rows, 0.2)
    monkeypatch.undo()

    # a window lost (killed before it was written) is redone, with the same result
    (out / "windows" / "window_001.json").unlink()
    redone = run_scan(config, plots=False)
    assert _table(redone.rows, 0.2) == _table(result.rows, 0.2)


def test_sigma_scan_trains_once_and_records_a_failed_window(
    toy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sideband.events import read_features

    table = read_features(toy_file)
    hole = (table.mjj > 3700) & (table.mjj < 4100)
    data = table.select(~hole)  # window 2 holds no events: recorded, the others go on
    tiny = {"epochs": 2, "hidden_features": 16, "n_blocks": 1, "selection": "cfm",
            "atol": 1e-4, "rtol": 1e-4}  # fmt: skip
    config = _config(
        toy_file,
        tmp_path / "sigma",
        background={"method": "sigma", "mass_sampler": "histogram", "sigma": tiny},
        scan={"n_global_toys": 0},
    )
    calls = []
    fit = scan_module.fit_sigma_for_scan
    monkeypatch.setattr(
        scan_module, "fit_sigma_for_scan", lambda *a, **k: calls.append(1) or fit(*a, **k)
    )
    # the fit after the cut in window 0 does not converge: that cut is recorded, nothing stops
    import sideband.bumphunt

    hunt, seen = sideband.bumphunt.bump_hunt, []

    def flaky_hunt(mjj: np.ndarray, sr: object, **options: object) -> object:
        seen.append(sr.low_gev)
        if sr.low_gev == 2900 and seen.count(2900) == 2:
            raise FitError("the 3-parameter dijet fit did not converge (test)")
        return hunt(mjj, sr, **options)

    monkeypatch.setattr(sideband.bumphunt, "bump_hunt", flaky_hunt)
    result = run_scan(config, data=data, plots=False)
    assert len(calls) == 1
    status = {(r["window"], r["efficiency"]): r["status"] for r in result.rows}
    assert status[(0, 1.0)] == status[(1, 1.0)] == status[(1, 0.2)] == "ok"
    assert status[(0, 0.2)] == "failed"
    assert "did not converge" in next(
        r["error"] for r in result.rows if r["window"] == 0 and r["efficiency"] == 0.2
    )
    failed = [r for r in result.rows if r["window"] == 2]
    assert [r["status"] for r in failed] == ["failed", "failed"]
    assert "0 events" in failed[0]["error"] or "fewer than" in failed[0]["error"]
    assert np.isfinite([r["z"] for r in result.rows if r["status"] == "ok"]).all()
    summary = json.loads((result.out_dir / SCAN_JSON).read_text())
    assert summary["n_failed_windows"] == 1
    # other events in the same folder: nothing is reused from the first scan
    monkeypatch.undo()
    other = run_scan(config, data=table, plots=False)
    assert [r["status"] for r in other.rows if r["window"] == 2] == ["ok", "ok"]
    assert "global_p" not in summary["global_significance"]["by_efficiency"]["0.2"]


def test_cli_scan_prints_the_table(toy_file: Path, tmp_path: Path) -> None:
    config = _config(toy_file, tmp_path / "cli", scan={"n_global_toys": 0})
    path = tmp_path / "scan.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    res = CliRunner().invoke(main, ["scan", str(path), "--no-plots", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "3300-3700" in res.output
    assert "max local Z" in res.output
    assert (tmp_path / "cli" / SCAN_JSON).is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("sideband_gev", "sidebands_gev"))
    res = CliRunner().invoke(main, ["scan", str(bad), "--no-progress"])
    assert res.exit_code != 0
    assert "sidebands_gev" in res.output


def test_trials_factor_counts_independent_windows() -> None:
    from scipy import stats

    from sideband.scan import _trials_factor

    rng = np.random.default_rng(0)
    # five independent windows, Z clipped at 0 as for q0
    max_z = np.clip(rng.standard_normal((20_000, 5)), 0, None).max(axis=1)
    out = _trials_factor(max_z, 3.0)
    assert out["trials_factor"] == pytest.approx(5.0, rel=0.05)
    expected = 1 - (1 - stats.norm.sf(3.0)) ** 5
    assert out["global_p_trials"] == pytest.approx(expected, rel=0.05)
    # fully correlated windows: one effective window
    same = np.clip(rng.standard_normal(20_000), 0, None)
    assert _trials_factor(same, 3.0)["trials_factor"] == pytest.approx(1.0, rel=0.05)
