"""The sliding-window search: the enhanced bump hunt in every SR window across the m_JJ range.

`run_scan` runs, for each window of the configuration's ``scan`` block, the template (SIGMA: one
model per cross-fitting chain for all windows, moved to each window with ``at_region``;
CATHODE / LaCATHODE: one per window and chain, resumed from its checkpoints when present), the
k-fold anomaly score, cuts at several SR efficiencies and the pyhf bump hunt at each. Every
window is written to ``<out>/windows/window_<i>.json`` as soon as it is done, so a killed scan
resumes window by window; a window that cannot be analysed (too few events, a fit that fails)
is recorded with its error and the scan goes on. The global significance of the most
significant window comes from background-only pseudo-experiments of the fit stage
(`sideband.bumphunt.toys`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sideband.errors import ConfigError, FitError, InputError, SidebandError
from sideband.records import FeatureTable
from sideband.regions import SignalRegion

if TYPE_CHECKING:
    from sideband.background import SigmaTemplate
    from sideband.bumphunt import BumpHuntResult
    from sideband.config import AnalysisConfig

__all__ = ["SCAN_JSON", "ScanResult", "event_folds", "run_scan", "scan_regions"]

log = logging.getLogger(__name__)

#: The scan summary `run_scan` writes in its output folder.
SCAN_JSON = "scan.json"
#: Efficiency recorded for the bump hunt before any score cut.
NO_CUT = 1.0
#: Entries of a bump hunt's ``fit_info`` kept in the window files (enough to redraw the fit).
_FIT_KEYS = (
    "edges", "counts", "background", "background_err", "sr_bins", "signal_shape",
    "fit_n_params", "fit_gof_pvalue", "fit_deviance", "fit_ndof",
)  # fmt: skip


@dataclass(frozen=True)
class ScanResult:
    """What `run_scan` produced.

    ``rows`` has one dict per window and efficiency (``NO_CUT`` = 1.0 is the bump hunt before
    the cut): ``window``, ``sr_low_gev``, ``sr_high_gev``, ``center_gev``, ``efficiency``,
    ``status`` ("ok" or "failed"), ``error``, ``z``, ``z_signed``, ``p0``, ``mu_hat``,
    ``mu_err``, ``upper_limit``, ``expected_limits`` (-2..+2 sigma), ``n_sr_observed``,
    ``n_sr_background``, ``fit_n_params``, ``fit_gof_pvalue``. ``global_significance`` maps
    each efficiency (as a string) to the most significant window and its global p-value.
    """

    config: AnalysisConfig
    out_dir: Path
    windows: tuple[SignalRegion, ...]
    rows: list[dict[str, Any]]
    window_records: list[dict[str, Any]]
    global_significance: dict[str, Any]


def scan_regions(config: AnalysisConfig) -> list[SignalRegion]:
    """The scan's windows as `SignalRegion` (GeV), all sharing ``region.sideband_gev``."""
    if config.scan is None:
        msg = "the configuration has no scan block; add one (see analysis/scan.yaml) or use `run`"
        raise ConfigError(msg)
    assert config.region.sideband_gev is not None  # the config validator requires it for a scan
    slo, shi = config.region.sideband_gev
    return [SignalRegion(lo, hi, slo, shi) for lo, hi in config.scan.windows()]


def event_folds(config: AnalysisConfig, n_events: int) -> np.ndarray:
    """(n_events,) int: each event's cross-fitting fold, shared by every window of a scan.

    Chain k's template (and, for SIGMA, its one model for all windows) never trains on fold k,
    and only chain k scores fold k, in the SR and the sidebands of every window.
    """
    from sideband.pipeline import stage_seeds

    rng = np.random.default_rng(stage_seeds(config.seed)["cross_fit"])
    return rng.permutation(n_events) % config.background.cross_fit_folds


def _config_key(config: AnalysisConfig, data: FeatureTable | None = None) -> str:
    """The configuration's key (`checkpoint_dir_for`), extended by a hash of `data` when the
    events are passed in instead of read from ``config.data.path``."""
    import hashlib

    from sideband.pipeline import checkpoint_dir_for

    key = checkpoint_dir_for(config).name
    if data is None:
        return key
    digest = hashlib.sha256(key.encode())
    digest.update(np.ascontiguousarray(data.mjj).tobytes())
    digest.update(np.ascontiguousarray(data.x(config.data.features)).tobytes())
    return digest.hexdigest()[:16]


def fit_sigma_for_scan(
    config: AnalysisConfig,
    table: FeatureTable,
    folds: np.ndarray,
    *,
    checkpoint_dir: Path | None,
) -> list[SigmaTemplate]:
    """SIGMA's one model per cross-fitting chain for every window: chain k trains on all events
    inside ``region.sideband_gev`` (SR windows included) outside fold k, with no SR; each window
    then uses ``model.at_region(window)``."""
    from sideband.pipeline import _chain_seed, _make_template, stage_seeds

    assert config.region.sideband_gev is not None
    slo, shi = config.region.sideband_gev
    seeds = stage_seeds(config.seed)
    in_range = (table.mjj >= slo) & (table.mjj <= shi)
    x = table.x(config.data.features)
    models = []
    for k in range(config.background.cross_fit_folds):
        train = in_range & (folds != k)
        model = _make_template(
            config.background,
            seed=_chain_seed(seeds["template_fit"], k),
            progress=config.progress,
            checkpoint_dir=None if checkpoint_dir is None else checkpoint_dir / f"sigma_{k}",
            sr=None,
        )
        log.info("SIGMA chain %d: training on %d events for every window", k, int(train.sum()))
        models.append(model.fit(x[train], table.mjj[train]))
    return models


def run_scan(
    config: AnalysisConfig,
    *,
    data: FeatureTable | None = None,
    out_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    plots: bool = True,
) -> ScanResult:
    """Run the sliding-window search of ``config.scan`` and write it to `out_dir`.

    Parameters
    ----------
    config
        An analysis configuration with a ``scan`` block (``region.sideband_gev`` is the m_JJ
        range, GeV, shared by every window's sidebands and bump-hunt fit).
    data
        Events to use instead of ``config.data.path`` (e.g. pseudo-data).
    out_dir
        Output folder (default ``config.output``): ``windows/window_<i>.json`` per window,
        ``workspaces/window_<i>_eff_<e>.json`` (pyhf), ``scan.json`` (config, versions, seeds,
        the table, global significance), ``scan_table.csv`` and plots.
    checkpoint_dir
        Template training checkpoints (default ``<out_dir>/checkpoints/<config key>``, removed
        once every window is written; a folder passed here is kept).
    resume
        Reuse window files written by an earlier run of the same configuration and input.
    plots
        Draw local significance and limits against m_JJ, and the fits of the most significant
        window.
    """
    from tqdm import tqdm

    from sideband.pipeline import load_data

    windows = scan_regions(config)
    out = Path(config.output if out_dir is None else out_dir)
    table = load_data(config) if data is None else data
    key = _config_key(config, data)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else out / "checkpoints" / key
    folds = event_folds(config, len(table))
    _check_scan_range(config, table)

    records: list[dict[str, Any] | None] = [
        _load_window(out, i, key) if resume else None for i in range(len(windows))
    ]
    sigma_models: list[SigmaTemplate] | None = None
    todo = [i for i, r in enumerate(records) if r is None]
    if config.background.method == "sigma" and todo:
        start = time.perf_counter()
        sigma_models = fit_sigma_for_scan(config, table, folds, checkpoint_dir=ckpt)
        log.info("SIGMA trained once for %d windows in %.1f s", len(windows), _since(start))
    for i in tqdm(todo, desc="scan windows", disable=not config.progress):
        record = _scan_window(config, table, folds, windows[i], i, sigma_models, ckpt / f"w{i}")
        record["config_key"] = key
        _write_window(out, i, record)
        records[i] = record
    done = [r for r in records if r is not None]
    rows = scan_rows(done)
    global_sig = global_significance(config, table, windows, rows)
    _write_summary(config, out, windows, done, rows, global_sig, key=key, from_config=data is None)
    if plots:
        _plot_scan(out, rows, done, global_sig)
    if checkpoint_dir is None:
        # every window is on disk now: the default training checkpoints are not needed again
        shutil.rmtree(ckpt, ignore_errors=True)
        with contextlib.suppress(OSError):
            ckpt.parent.rmdir()  # only if no other configuration's checkpoints are left
    return ScanResult(
        config=config,
        out_dir=out,
        windows=tuple(windows),
        rows=rows,
        window_records=done,
        global_significance=global_sig,
    )


def _since(start: float) -> float:
    return time.perf_counter() - start


def _check_scan_range(config: AnalysisConfig, table: FeatureTable) -> None:
    assert config.region.sideband_gev is not None
    slo, shi = config.region.sideband_gev
    lo, hi = float(np.min(table.mjj)), float(np.max(table.mjj))
    if shi < lo or slo > hi:
        msg = (
            f"region.sideband_gev {[slo, shi]} GeV does not overlap the data's m_JJ range "
            f"{lo:.0f}-{hi:.0f} GeV; masses are in GeV, move the scan range inside the data"
        )
        raise InputError(msg)


def _scan_window(
    config: AnalysisConfig,
    table: FeatureTable,
    folds: np.ndarray,
    sr: SignalRegion,
    index: int,
    sigma_models: Sequence[SigmaTemplate] | None,
    checkpoint_dir: Path,
) -> dict[str, Any]:
    """Template, score, cuts and bump hunts of one window; failures become a recorded status."""
    from sideband.bumphunt import bump_hunt
    from sideband.pipeline import (
        fit_chain_template,
        hunt_options_from_config,
        score_chains,
        split_data,
    )
    from sideband.scoring import efficiency_threshold

    assert config.scan is not None
    start = time.perf_counter()
    record: dict[str, Any] = {
        "window": index,
        "sr_low_gev": sr.low_gev,
        "sr_high_gev": sr.high_gev,
        "center_gev": sr.center_gev,
        "status": "ok",
        "error": None,
        "efficiencies": [NO_CUT, *config.scan.efficiencies],
        "cuts": [],
    }
    window_config = config.with_overrides(**{"region.signal_region_gev": (sr.low_gev, sr.high_gev)})
    try:
        split = split_data(window_config, data=table, event_fold=folds)
        record["n_sr"], record["n_sb"] = len(split.m_sr), len(split.m_sb)
        if sigma_models is not None:
            models: list[Any] = [m.at_region((sr.low_gev, sr.high_gev)) for m in sigma_models]
        else:
            models = [
                fit_chain_template(window_config, split, k, checkpoint_dir=checkpoint_dir)
                for k in range(split.n_chains)
            ]
        record["template_seconds"] = _since(start)
        score_sr, score_sb, _ = score_chains(window_config, split, models)
    except (InputError, FitError, SidebandError) as err:
        log.warning("window %d (%g-%g GeV) failed: %s", index, sr.low_gev, sr.high_gev, err)
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        record["seconds"] = _since(start)
        return record
    record["score_seconds"] = _since(start) - record["template_seconds"]

    hunt_options = hunt_options_from_config(config)
    labels = None if table.label is None else table.label[split.sr_mask]
    for eff in record["efficiencies"]:
        threshold = -np.inf if eff == NO_CUT else efficiency_threshold(score_sr, eff)
        mjj = np.concatenate([split.m_sr[score_sr >= threshold], split.m_sb[score_sb >= threshold]])
        cut: dict[str, Any] = {"efficiency": eff, "threshold": float(threshold)}
        if labels is not None:
            cut["n_signal_true_in_sr"] = int(labels[score_sr >= threshold].sum())
        try:
            cut.update(status="ok", error=None, **_hunt_record(bump_hunt(mjj, sr, **hunt_options)))
        except (InputError, FitError) as err:
            cut.update(status="failed", error=f"{type(err).__name__}: {err}")
        record["cuts"].append(cut)
    record["seconds"] = _since(start)
    return record


def _hunt_record(result: BumpHuntResult) -> dict[str, Any]:
    info = result.fit_info
    return {
        "z": result.z,
        "z_signed": info["z_signed"],
        "p0": result.p0,
        "p0_asymptotic": info.get("p0_asymptotic", result.p0),
        "mu_hat": result.mu_hat,
        "mu_err": result.mu_err,
        "upper_limit": result.upper_limit,
        "expected_limits": None if result.expected_limits is None else list(result.expected_limits),
        "limit_error": info["limit_error"],
        "n_sr_observed": info["n_sr_observed"],
        "n_sr_background": info["n_sr_background"],
        "n_sr_background_err": info["n_sr_background_err"],
        "fit": {k: info[k] for k in _FIT_KEYS},
        "workspace": result.workspace,
    }


def scan_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scan table: one flat row per window and efficiency (a failed window gives one failed
    row per efficiency), sorted by efficiency then window."""
    rows = []
    for rec in records:
        base = {k: rec[k] for k in ("window", "sr_low_gev", "sr_high_gev", "center_gev")}
        cuts = rec["cuts"] or [
            {"efficiency": e, "status": "failed", "error": rec["error"]}
            for e in rec["efficiencies"]
        ]
        for cut in cuts:
            row = {**base, "efficiency": cut["efficiency"], "status": cut["status"]}
            row["error"] = cut.get("error")
            for name in (
                "z", "z_signed", "p0", "mu_hat", "mu_err", "upper_limit", "expected_limits",
                "n_sr_observed", "n_sr_background", "n_signal_true_in_sr",
            ):  # fmt: skip
                row[name] = cut.get(name)
            fit = cut.get("fit") or {}
            row["fit_n_params"] = fit.get("fit_n_params")
            row["fit_gof_pvalue"] = fit.get("fit_gof_pvalue")
            rows.append(row)
    return sorted(rows, key=lambda r: (-r["efficiency"], r["window"]))


def global_significance(
    config: AnalysisConfig,
    table: FeatureTable,
    windows: Sequence[SignalRegion],
    rows: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Global p-value of the most significant window at each efficiency, from
    ``scan.n_global_toys`` background-only pseudo-experiments of the fit stage.

    The toys' truth is the dijet function fitted to the whole m_JJ spectrum of the scan range
    before any cut, scaled by the efficiency (a cut that does not sculpt m_JJ keeps that
    fraction everywhere); each toy is fitted in every window like the data, and its largest
    local Z is compared with the observed one: ``global_p`` counts the toys (an upper bound
    ``1 / (n_toys + 1)`` when none reaches the data, ``global_p_is_upper_bound``), and
    ``global_p_trials`` extrapolates with the effective number of windows measured on the toys
    at Z = 1 (`_trials_factor`). This counts the look-elsewhere effect of the overlapping
    windows; the choice among efficiencies is not included (report the smallest global p times
    the number of efficiencies for a conservative bound).
    """
    from scipy import stats

    assert config.scan is not None
    assert config.region.sideband_gev is not None
    slo, shi = config.region.sideband_gev
    bh = config.bumphunt
    out: dict[str, Any] = {
        "n_toys": config.scan.n_global_toys,
        "method": (
            "background-only pseudo-experiments of the fit stage: Poisson toys of the dijet fit "
            "to the whole pre-cut spectrum scaled by the efficiency, fitted in every window; "
            "p = (1 + #toys with max local Z >= observed) / (1 + n_toys)"
        ),
        "by_efficiency": {},
    }
    mjj = table.mjj[(table.mjj >= slo) & (table.mjj <= shi)]
    # the toys themselves take asymptotic p-values (pseudo-experiments within toys would cost
    # n_toys times more)
    hunt_options = bh.model_dump(exclude={"efficiency", "compute_limit", "calculator", "n_toys"})
    spectrum = None
    for eff in config.scan.efficiencies:
        ok = [r for r in rows if r["efficiency"] == eff and r["status"] == "ok"]
        if not ok:
            out["by_efficiency"][str(eff)] = {"status": "no window succeeded"}
            continue
        best = max(ok, key=lambda r: r["z"])
        entry: dict[str, Any] = {
            "window": best["window"],
            "center_gev": best["center_gev"],
            "local_z": best["z"],
            "local_p0": float(stats.norm.sf(best["z"])),
        }
        if config.scan.n_global_toys > 0:
            from sideband.bumphunt import toys as fit_toys

            if spectrum is None:
                spectrum = fit_toys.background_spectrum(mjj, slo, shi, sqrt_s_gev=bh.sqrt_s_gev)
            toys = fit_toys.max_local_significance_toys(
                spectrum.edges,
                spectrum.expected,
                list(windows),
                n_toys=config.scan.n_global_toys,
                seed=config.seed,
                hunt_options=hunt_options,
                scale=eff,
                progress=config.progress,
            )
            p_global, z_global, n_used = fit_toys.global_pvalue(toys.max_z, best["z"])
            entry.update(global_p=float(p_global), global_z=float(z_global), n_toys_used=n_used)
            # no toy as significant as the data: the count only bounds p from above
            entry["global_p_is_upper_bound"] = bool(np.sum(toys.max_z >= best["z"]) == 0)
            entry.update(_trials_factor(toys.max_z, best["z"]))
            # the local Z a window needs to be globally 2 sigma (the toys' 97.7% quantile)
            finite = toys.max_z[np.isfinite(toys.max_z)]
            entry["local_z_for_global_2sigma"] = (
                float(np.quantile(finite, stats.norm.cdf(2.0))) if finite.size else None
            )
            entry["toy_failed_fits"] = int(np.isnan(toys.z).sum())
        out["by_efficiency"][str(eff)] = entry
    return out


def _trials_factor(max_z: np.ndarray, z_obs: float, z_ref: float = 1.0) -> dict[str, Any]:
    """Effective number of independent windows from the toys, and the global p it implies.

    At a reference level ``z_ref`` (where the toys count well), ``N_eff`` solves
    ``P(max Z >= z_ref) = 1 - (1 - p_local(z_ref))^N_eff``; then ``p_global ~ 1 - (1 -
    p_local(z_obs))^N_eff``. This extrapolates beyond the toys (it assumes the windows act as
    N_eff independent tests at every level), so it is reported beside the counted p-value.
    """
    from scipy import stats

    max_z = max_z[np.isfinite(max_z)]
    frac = float(np.mean(max_z >= z_ref)) if max_z.size else float("nan")
    p_ref = float(stats.norm.sf(z_ref))
    if not 0.0 < frac < 1.0:
        return {"trials_factor": None, "trials_reference_z": z_ref}
    n_eff = float(np.log1p(-frac) / np.log1p(-p_ref))
    p_local = float(stats.norm.sf(z_obs))
    p_global = float(-np.expm1(n_eff * np.log1p(-p_local)))
    return {
        "trials_factor": n_eff,
        "trials_reference_z": z_ref,
        "global_p_trials": p_global,
        "global_z_trials": float(stats.norm.isf(p_global)) if p_global > 0 else None,
    }


def _window_path(out: Path, index: int) -> Path:
    return out / "windows" / f"window_{index:03d}.json"


def _load_window(out: Path, index: int, key: str) -> dict[str, Any] | None:
    path = _window_path(out, index)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("window file %s is unreadable; redoing the window", path)
        return None
    if not isinstance(record, dict) or record.get("config_key") != key:
        return None
    log.info("window %d: reusing %s", index, path)
    return record


def _write_window(out: Path, index: int, record: dict[str, Any]) -> None:
    from sideband.bumphunt import save_workspace
    from sideband.report import write_json

    for cut in record["cuts"]:
        workspace = cut.pop("workspace", None)
        if workspace is not None:
            name = f"window_{index:03d}_eff_{cut['efficiency']:g}.json"
            save_workspace(out / "workspaces" / name, workspace)
            cut["workspace_file"] = f"workspaces/{name}"
    write_json(_window_path(out, index), record)
    # the record in memory must equal what a resumed run reads back
    record.update(json.loads(_window_path(out, index).read_text()))


def _write_summary(
    config: AnalysisConfig,
    out: Path,
    windows: Sequence[SignalRegion],
    records: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    global_sig: dict[str, Any],
    *,
    key: str,
    from_config: bool,
) -> None:
    """Write ``scan.json`` (config, seeds, versions, input checksum, table, global
    significance) and ``scan_table.csv``, atomically."""
    import csv
    import io

    from sideband.pipeline import stage_seeds
    from sideband.report import atomic_write, file_sha256, package_versions, write_json

    data_path = Path(config.data.path)
    summary = {
        "name": config.name,
        "config": config.model_dump(mode="json"),
        "config_key": key,
        "seeds": stage_seeds(config.seed),
        "versions": package_versions(),
        "inputs": {str(data_path): file_sha256(data_path)}
        if from_config and data_path.is_file()
        else {},
        "windows": [[w.low_gev, w.high_gev] for w in windows],
        "n_failed_windows": sum(r["status"] != "ok" for r in records),
        "seconds_per_window": [r.get("seconds") for r in records],
        "table": list(rows),
        "global_significance": global_sig,
    }
    write_json(out / SCAN_JSON, summary)
    columns = [k for k in rows[0] if k != "expected_limits"] if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "scan_table.csv", lambda p: p.write_text(buffer.getvalue()))


def _plot_scan(
    out: Path,
    rows: Sequence[dict[str, Any]],
    records: Sequence[dict[str, Any]],
    global_sig: dict[str, Any],
) -> None:
    import matplotlib.pyplot as plt

    from sideband.evaluation import plots

    folder = out / "plots"
    global_z = {
        float(e): v["local_z_for_global_2sigma"]
        for e, v in global_sig["by_efficiency"].items()
        if v.get("local_z_for_global_2sigma") is not None
    }
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return
    plt.close(
        plots.plot_scan_significance(rows, folder / "scan_significance.pdf", global_z=global_z)
    )
    limit_rows = [r for r in ok if r["upper_limit"] is not None]
    for eff in sorted({r["efficiency"] for r in limit_rows}):
        path = folder / f"scan_limits_eff_{eff:g}.pdf"
        plt.close(plots.plot_scan_limits(rows, path, efficiency=eff))
    # the fit of the most significant window at each efficiency
    for eff in sorted({r["efficiency"] for r in ok}):
        best = max((r for r in ok if r["efficiency"] == eff), key=lambda r: r["z"])
        cut = next(
            c for c in records[_position(records, best["window"])]["cuts"] if c["efficiency"] == eff
        )
        path = folder / f"fit_window_{best['window']:03d}_eff_{eff:g}.pdf"
        plt.close(plots.plot_fit(_as_result(cut), path))


def _position(records: Sequence[dict[str, Any]], window: int) -> int:
    return next(i for i, r in enumerate(records) if r["window"] == window)


def _as_result(cut: dict[str, Any]) -> BumpHuntResult:
    """A window file's cut entry back as a `BumpHuntResult` (no workspace; enough to plot)."""
    from sideband.bumphunt import BumpHuntResult

    limits = cut["expected_limits"]
    fit_info = {k: np.asarray(v) for k, v in cut["fit"].items()}
    fit_info["sr_bins"] = fit_info["sr_bins"].astype(bool)
    return BumpHuntResult(
        z=cut["z"],
        p0=cut["p0"],
        mu_hat=cut["mu_hat"],
        mu_err=cut["mu_err"],
        upper_limit=cut["upper_limit"],
        expected_limits=None if limits is None else tuple(limits),
        workspace={},
        fit_info=fit_info,
    )
