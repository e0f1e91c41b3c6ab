"""Publishing a result: HEPData records (hepdata_lib) and the pyhf workspaces, bundled.

`write_hepdata` reads a scan folder (`sideband scan`) or a run folder (`sideband run`) and
writes, atomically (built in a temporary folder beside the output, then renamed):

- ``hepdata/``: a hepdata_lib submission (``submission.yaml`` and one YAML file per table):
  the local significance against the SR window before and after each score cut, the 95% CL
  CLs upper limits on the number of signal events in the SR (observed, expected with the
  +-1 sigma and +-2 sigma bands as asymmetric errors), the SIC and ROC of the score when the
  run folder holds labelled scores, and the m_JJ spectrum with the background fit after the
  cut. The workspaces travel with it as a ``HistFactory`` resource;
- ``submission.tar.gz``: the same, packed for upload to HEPData (validated offline with
  hepdata-validator before anything is renamed into place);
- ``workspaces/``: every bump hunt's pyhf workspace, named by its window and cut
  (``sr_3300-3700_gev_eff_0.2.json``, ``..._no_cut.json``), with ``index.json`` (the recorded
  numbers and the exact test-statistic settings), ``README.md``, a JSON patch
  ``poi_lower_bound_zero.json`` for the limits and ``reproduce.py``, a script that needs pyhf
  alone (no sideband) to recompute the significances and limits and compare them.

All masses are in GeV; signal yields are numbers of events in the SR bins (the POI ``mu``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sideband.errors import InputError, SidebandError

__all__ = [
    "REPRODUCE_TOLERANCES",
    "HuntPoint",
    "ResultFolder",
    "read_result_folder",
    "write_hepdata",
]

log = logging.getLogger(__name__)

#: What `reproduce.py` (bundled with the workspaces) accepts as a reproduction with plain
#: pyhf: Z within ``z_abs``; CLs at the recorded observed and expected limits within
#: ``cls_rel`` (relative) of 0.05; limits recomputed with sideband's procedure (a grid of ~10
#: hypotests and a PCHIP interpolation of ln CLs, `sideband.bumphunt.hunt`) within
#: ``limit_rel_grid``, or with pyhf's ``toms748_scan`` within ``limit_rel_toms748`` (relative).
#: The two root finders differ: on a toy with Z = 11 after the cut, sideband's grid (spaced by
#: the observed excess, ~1.5 sigma_mu) put the expected limits up to 1.3% below toms748's
#: (CLs 6% off 0.05 there); without a large excess they agreed within 0.2%.
REPRODUCE_TOLERANCES = {
    "z_abs": 0.01,
    "cls_rel": 0.1,
    "limit_rel_grid": 1e-3,
    "limit_rel_toms748": 0.02,
}


def _optimizer_settings() -> dict[str, Any]:
    """The optimizer settings of the bump hunt (`sideband.bumphunt.workspace_statistics`)."""
    from sideband.bumphunt.hunt import MINUIT_TOLERANCE  # imports scipy: only when publishing

    return {"backend": "numpy", "optimizer": "minuit", "tolerance": MINUIT_TOLERANCE}


#: Efficiency recorded for the bump hunt before any score cut (`sideband.scan.NO_CUT`).
_NO_CUT = 1.0
#: JSON patch (RFC 6902) of the pyhf model spec: the limits use mu >= 0 (qtilde).
_POI_PATCH = [
    {"op": "test", "path": "/parameters/0/name", "value": "mu"},
    {"op": "replace", "path": "/parameters/0/bounds/0/0", "value": 0.0},
]
_POI_PATCH_NAME = "poi_lower_bound_zero.json"
#: Known file names of the LHC Olympics 2020 R&D data set (official and CATHODE releases).
_LHCO_RND_MARKERS = ("events_anomalydetection", "innerdata_", "outerdata_", "lhco_rnd")
_LHCO_RND = "LHC Olympics 2020 R&D dataset (arXiv:2101.08320)"


@dataclass(frozen=True)
class HuntPoint:
    """One bump hunt of a result folder: a window (SR) at one score-cut efficiency.

    Attributes
    ----------
    window
        Window index in the scan (0 for a run).
    sr_low_gev, sr_high_gev
        SR edges, GeV.
    efficiency
        Fraction of the SR data kept by the score cut; 1.0 = before any cut.
    status
        "ok" or "failed" (``error`` says why; every number is then None).
    z, z_signed, p0, p0_asymptotic
        Local discovery significance (q0; toy-based when the analysis used toys), its signed
        asymptotic form, the p-value, and the asymptotic p-value where recorded.
    mu_hat, mu_err
        Best-fit signal events in the SR and uncertainty (None where not recorded).
    upper_limit, expected_limits
        Observed 95% CL CLs (qtilde) limit on the signal events in the SR, and the expected
        limits at -2, -1, 0, +1, +2 sigma (5 values); None where not computed.
    limits_recomputed
        The limits were recomputed by `write_hepdata` from the workspace with the bump hunt's
        procedure because the folder did not record them (run folders).
    workspace
        The pyhf workspace JSON file, or None.
    fit
        ``edges`` (n+1,) GeV, ``counts`` (n,), ``background`` (n,), ``background_err`` (n,)
        events, ``sr_bins`` (n,) bool, and ``fit_n_params``, ``fit_gof_pvalue``; or None.
    n_signal_true_in_sr
        True signal events in the SR after the cut (labelled data), or None.
    """

    window: int
    sr_low_gev: float
    sr_high_gev: float
    efficiency: float
    status: str
    error: str | None = None
    z: float | None = None
    z_signed: float | None = None
    p0: float | None = None
    p0_asymptotic: float | None = None
    mu_hat: float | None = None
    mu_err: float | None = None
    upper_limit: float | None = None
    expected_limits: tuple[float, ...] | None = None
    limits_recomputed: bool = False
    workspace: Path | None = None
    fit: dict[str, Any] | None = None
    n_signal_true_in_sr: int | None = None

    @property
    def center_gev(self) -> float:
        """SR centre, GeV."""
        return 0.5 * (self.sr_low_gev + self.sr_high_gev)


@dataclass(frozen=True)
class ResultFolder:
    """What `read_result_folder` found in a scan or run folder.

    Attributes
    ----------
    kind
        "scan" (``scan.json``) or "run" (``metrics.json``).
    folder
        The folder read.
    config
        The resolved analysis configuration (JSON form of `AnalysisConfig`).
    points
        One `HuntPoint` per window and efficiency, sorted by efficiency (1.0 first) then window.
    global_significance
        The scan's ``global_significance`` block (None for a run).
    inputs
        Input file -> sha256 as recorded by the command ({} when none was recorded).
    versions
        Package versions recorded by the command.
    scores
        ``scores.parquet`` of a run (per-event scores, labels when labelled), or None.
    """

    kind: Literal["scan", "run"]
    folder: Path
    config: dict[str, Any]
    points: tuple[HuntPoint, ...]
    global_significance: dict[str, Any] | None
    inputs: dict[str, str]
    versions: dict[str, Any]
    scores: Path | None

    @property
    def efficiencies(self) -> list[float]:
        """The cut efficiencies present, 1.0 (no cut) first, then decreasing."""
        return sorted({p.efficiency for p in self.points}, reverse=True)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_result_folder(folder: str | os.PathLike[str]) -> ResultFolder:
    """Read a scan folder (``sideband scan``) or a run folder (``sideband run``).

    A scan folder holds ``scan.json``, ``windows/window_<i>.json`` for each of its windows and
    the ``workspaces/`` they name; a run folder holds ``status.json`` (``completed`` set last),
    ``metrics.json``, ``config.yaml``, ``provenance.json``, ``fit_before_cut.json``,
    ``fit_after_cut.json``, ``workspace_before_cut.json``, ``workspace_after_cut.json`` and,
    optionally, ``scores.parquet``. Nothing is computed.

    Raises
    ------
    InputError
        The folder is missing, is neither kind, misses a file (the message names it and the
        command that writes it), or holds a file that does not parse.
    """
    path = Path(folder)
    if not path.is_dir():
        msg = (
            f"{path} is not a folder; pass the output folder of `sideband scan CONFIG` or "
            "`sideband run CONFIG`"
        )
        raise InputError(msg)
    run_files = ("metrics.json", "status.json", "workspace_after_cut.json")
    kind = "scan" if (path / "scan.json").is_file() else None
    if kind is None and any((path / name).is_file() for name in run_files):
        kind = "run"
    if kind is not None:
        try:
            return _read_scan(path) if kind == "scan" else _read_run(path)
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            msg = (
                f"the {kind} folder {path} lacks an entry its files should have ({err!r}); it "
                f"was written by another version of sideband: rerun `sideband {kind} CONFIG`"
            )
            raise InputError(msg) from err
    found = sorted(p.name for p in path.iterdir())[:10]
    msg = (
        f"{path} is neither a scan folder (no scan.json: `sideband scan CONFIG` writes it) nor "
        f"a run folder (no metrics.json / status.json: `sideband run CONFIG` writes them); it "
        f"holds {found or 'nothing'}"
    )
    raise InputError(msg)


def _load_json(path: Path, command: str, hint: str = "rerun it") -> Any:
    if not path.is_file():
        msg = f"{path.name} is missing from {path.parent}; `{command}` writes it ({hint})"
        raise InputError(msg)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        msg = f"{path} does not parse as JSON ({err}); rerun `{command}` to rewrite it"
        raise InputError(msg) from err


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _limits(value: Any) -> tuple[float, ...] | None:
    if value is None or len(value) != 5 or any(v is None for v in value):
        return None
    return tuple(float(v) for v in value)


def _fit(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if not info or "edges" not in info:
        return None
    out: dict[str, Any] = {
        k: np.asarray(info[k], dtype=np.float64)
        for k in ("edges", "counts", "background", "background_err")
    }
    out["sr_bins"] = np.asarray(info["sr_bins"], dtype=bool)
    out["fit_n_params"] = info.get("fit_n_params")
    out["fit_gof_pvalue"] = info.get("fit_gof_pvalue")
    return out


def _read_scan(path: Path) -> ResultFolder:
    command = "sideband scan CONFIG"
    summary = _load_json(path / "scan.json", command)
    for key in ("config", "windows", "config_key"):
        if key not in summary:
            msg = f"{path / 'scan.json'} has no {key!r}; it is not a finished scan (rerun `{command}`)"
            raise InputError(msg)
    points: list[HuntPoint] = []
    for index, (low, high) in enumerate(summary["windows"]):
        record = _load_json(
            path / "windows" / f"window_{index:03d}.json",
            command,
            "rerun it with the same configuration: finished windows are reused",
        )
        if record.get("config_key") != summary["config_key"]:
            msg = (
                f"windows/window_{index:03d}.json in {path} belongs to another configuration "
                f"(config_key {record.get('config_key')!r}, scan.json has "
                f"{summary['config_key']!r}); rerun `{command}` so the folder is consistent"
            )
            raise InputError(msg)
        base = {"window": index, "sr_low_gev": float(low), "sr_high_gev": float(high)}
        if record["status"] != "ok" or not record.get("cuts"):
            points += [
                HuntPoint(**base, efficiency=float(e), status="failed", error=record.get("error"))
                for e in record["efficiencies"]
            ]
            continue
        for cut in record["cuts"]:
            if cut["status"] != "ok":
                points.append(
                    HuntPoint(
                        **base,
                        efficiency=float(cut["efficiency"]),
                        status="failed",
                        error=cut.get("error"),
                    )
                )
                continue
            ws = cut.get("workspace_file")
            if ws is None or not (path / ws).is_file():
                msg = (
                    f"the workspace {ws or '(none recorded)'} of window {index} at efficiency "
                    f"{cut['efficiency']:g} is missing from {path}; rerun `{command}` after "
                    f"deleting windows/window_{index:03d}.json to rewrite it"
                )
                raise InputError(msg)
            points.append(
                HuntPoint(
                    **base,
                    efficiency=float(cut["efficiency"]),
                    status="ok",
                    z=float(cut["z"]),
                    z_signed=_opt_float(cut.get("z_signed")),
                    p0=_opt_float(cut.get("p0")),
                    p0_asymptotic=_opt_float(cut.get("p0_asymptotic")),
                    mu_hat=_opt_float(cut.get("mu_hat")),
                    mu_err=_opt_float(cut.get("mu_err")),
                    upper_limit=_opt_float(cut.get("upper_limit")),
                    expected_limits=_limits(cut.get("expected_limits")),
                    workspace=path / ws,
                    fit=_fit(cut.get("fit")),
                    n_signal_true_in_sr=cut.get("n_signal_true_in_sr"),
                )
            )
    if summary["config"]["bumphunt"].get("calculator", "asymptotics") == "asymptotics":
        points = [
            replace(p, p0_asymptotic=p.p0) if p.status == "ok" and p.p0_asymptotic is None else p
            for p in points
        ]
    return ResultFolder(
        kind="scan",
        folder=path,
        config=summary["config"],
        points=tuple(sorted(points, key=lambda p: (-p.efficiency, p.window))),
        global_significance=summary.get("global_significance"),
        inputs=dict(summary.get("inputs") or {}),
        versions=dict(summary.get("versions") or {}),
        scores=None,
    )


def _read_run(path: Path) -> ResultFolder:
    import yaml

    command = "sideband run CONFIG"
    status = _load_json(path / "status.json", command)
    if "completed" not in status:
        msg = (
            f"the run in {path} did not finish (status.json lists only {status.get('finished')}); "
            f"rerun `{command}`"
        )
        raise InputError(msg)
    metrics = _load_json(path / "metrics.json", command)
    provenance = _load_json(path / "provenance.json", command)
    fits = {w: _load_json(path / f"fit_{w}_cut.json", command) for w in ("before", "after")}
    for when in ("before", "after"):
        if not (path / f"workspace_{when}_cut.json").is_file():
            msg = f"workspace_{when}_cut.json is missing from {path}; `{command}` writes it (rerun it)"
            raise InputError(msg)
    if not (path / "config.yaml").is_file():
        msg = f"config.yaml is missing from {path}; `{command}` writes it (rerun it)"
        raise InputError(msg)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as err:
        msg = f"{path / 'config.yaml'} does not parse ({err}); rerun `{command}`"
        raise InputError(msg) from err
    low, high = config["region"]["signal_region_gev"]
    base = {"window": 0, "sr_low_gev": float(low), "sr_high_gev": float(high)}
    asymptotic = config["bumphunt"].get("calculator", "asymptotics") == "asymptotics"
    points = []
    for when, eff in (("before", _NO_CUT), ("after", float(metrics["efficiency"]))):
        info = fits[when]
        truth = "n_signal_true_in_sr" + ("_after_cut" if when == "after" else "")
        p0 = metrics.get(f"p0_{when}_cut")
        if p0 is None and asymptotic:
            p0 = info.get("p0_asymptotic")
        points.append(
            HuntPoint(
                **base,
                efficiency=eff,
                status="ok",
                z=float(metrics[f"z_{when}_cut"]),
                z_signed=_opt_float(metrics.get(f"z_signed_{when}_cut")),
                p0=_opt_float(p0),
                p0_asymptotic=_opt_float(info.get("p0_asymptotic")),
                mu_hat=_opt_float(metrics.get(f"mu_hat_{when}_cut")),
                mu_err=_opt_float(metrics.get(f"mu_err_{when}_cut")),
                upper_limit=_opt_float(metrics.get(f"upper_limit_{when}_cut")),
                expected_limits=_limits(metrics.get(f"expected_limits_{when}_cut")),
                workspace=path / f"workspace_{when}_cut.json",
                fit=_fit(info),
                n_signal_true_in_sr=metrics.get(truth),
            )
        )
    scores = path / "scores.parquet"
    return ResultFolder(
        kind="run",
        folder=path,
        config=config,
        points=tuple(points),
        global_significance=None,
        inputs=dict(provenance.get("inputs") or {}),
        versions=dict(provenance.get("versions") or {}),
        scores=scores if scores.is_file() else None,
    )


# --------------------------------------------------------------------------------------------
# limits a folder did not record
# --------------------------------------------------------------------------------------------


def _complete_limits(result: ResultFolder) -> ResultFolder:
    """Fill the limits a run folder does not record (expected after the cut, all before it)
    from each workspace with the bump hunt's own procedure (`sideband.bumphunt.hunt`: numpy +
    minuit, qtilde, mu >= 0, grid + PCHIP), and check the numbers the folder did record
    against the recomputation. A scan records every limit (None only where it failed)."""
    if result.kind != "run" or not result.config["bumphunt"].get("compute_limit", True):
        return result
    todo = [
        p for p in result.points
        if p.status == "ok" and p.workspace is not None and p.expected_limits is None
    ]  # fmt: skip
    if not todo:
        return result
    from sideband.bumphunt import workspace_statistics

    done: dict[tuple[int, float], HuntPoint] = {}
    for point in todo:
        assert point.workspace is not None
        stat = workspace_statistics(point.workspace)
        if stat["upper_limit"] is None:
            log.warning(
                "limits of %s could not be recomputed (%s)", point.workspace, stat["limit_error"]
            )
            continue
        _check_recorded(point, stat)
        done[point.window, point.efficiency] = replace(
            point,
            upper_limit=stat["upper_limit"],
            expected_limits=tuple(stat["expected_limits"]),
            mu_err=point.mu_err if point.mu_err is not None else stat["mu_err"],
            limits_recomputed=True,
        )
        log.info("recomputed the limits of %s from its workspace", point.workspace.name)
    points = tuple(done.get((p.window, p.efficiency), p) for p in result.points)
    return replace(result, points=points)


def _check_workspaces(result: ResultFolder) -> None:
    """Every recorded workspace whose limits are not recomputed must give back the recorded
    asymptotic significance (one background-only fit each), so a swapped or stale workspace
    is caught before it is published."""
    from sideband.bumphunt import workspace_statistics

    for point in result.points:
        if (
            point.status != "ok"
            or point.workspace is None
            or point.p0_asymptotic is None
            or (result.kind == "run" and point.expected_limits is None)  # checked when recomputed
        ):
            continue
        stat = workspace_statistics(point.workspace, compute_limit=False)
        _check_recorded(replace(point, upper_limit=None), stat)


def _check_recorded(point: HuntPoint, stat: dict[str, Any]) -> None:
    """The workspace must give back what the folder recorded (same procedure, same numbers)."""
    checks = [("upper_limit", point.upper_limit, stat["upper_limit"], 1e-3)]
    if point.p0_asymptotic is not None and point.p0_asymptotic > 0:
        z_rec = _z_of(point.p0_asymptotic)
        checks.append(("asymptotic Z", z_rec, stat["z"], 1e-3))
    for name, recorded, now, tol in checks:
        if recorded is None:
            continue
        if not math.isclose(recorded, now, rel_tol=tol, abs_tol=tol):
            msg = (
                f"{point.workspace} gives {name} = {now:.6g} but the folder recorded "
                f"{recorded:.6g}: the workspace does not belong to these results; rerun the "
                "command that wrote the folder"
            )
            raise InputError(msg)


def _z_of(p0: float) -> float:
    from scipy import stats

    return max(float(stats.norm.isf(p0)), 0.0)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_hepdata(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    abstract: str | None = None,
    efficiencies: Sequence[float] | None = None,
    sqrt_s_gev: float | None = None,
    sic_points: int = 100,
    recompute_limits: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the HEPData records and the bundled pyhf workspaces of a scan or run folder.

    Parameters
    ----------
    folder
        Output folder of ``sideband scan`` or ``sideband run`` (`read_result_folder`).
    out_dir
        Folder to create: ``hepdata/`` (submission.yaml + tables), ``submission.tar.gz``
        (validated with hepdata-validator) and ``workspaces/`` (see the module docstring).
    dataset
        The data set, for the tables' qualifiers (default: the LHC Olympics 2020 R&D dataset
        when the input file is one of its known files, else the input file name).
    abstract
        The submission's comment (default: a generated description of the analysis).
    efficiencies
        Cut efficiencies to publish (default all; 1.0 is the bump hunt before the cut).
    sqrt_s_gev
        Centre-of-mass energy, GeV (default: the configuration's ``bumphunt.sqrt_s_gev``).
    sic_points
        Number of points of the SIC/ROC table (a grid in signal efficiency; 10 to 10,000).
    recompute_limits
        Recompute limits a folder did not record (a run folder records only the observed limit
        after the cut) from the workspaces with the bump hunt's procedure, 1-3 s each; with
        False, limits not recorded stay out of the tables.
    overwrite
        Replace an existing `out_dir` (the old one is removed only once the new one is
        complete).

    Returns
    -------
    Path
        `out_dir`.

    Raises
    ------
    InputError
        A folder that is neither a scan nor a run folder, a missing or unreadable file, an
        `out_dir` that exists (without `overwrite`), an efficiency not in the folder, a
        workspace that does not reproduce the recorded numbers, a submission that does not
        validate. Nothing is written then.
    SidebandError
        hepdata_lib or hepdata-validator is not installed.

    Notes
    -----
    hepdata_lib 0.21 writes ``submission.tar.gz`` into the working directory; the working
    directory is changed to the temporary build folder for that call (not thread-safe).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        msg = f"{out} exists; choose another output folder or pass overwrite=True (--overwrite)"
        raise InputError(msg)
    if not 10 <= int(sic_points) <= 10_000:
        msg = f"sic_points must be between 10 and 10,000; got {sic_points!r}"
        raise InputError(msg)
    if sqrt_s_gev is not None and not (math.isfinite(sqrt_s_gev) and sqrt_s_gev > 1000):
        msg = f"sqrt_s_gev must be the collision energy in GeV (e.g. 13000); got {sqrt_s_gev!r}"
        raise InputError(msg)
    hd = _hepdata_modules()
    result = read_result_folder(folder)
    if efficiencies is not None:
        result = _select(result, efficiencies)
    _check_workspaces(result)
    if recompute_limits:
        result = _complete_limits(result)
    sqrt_s = float(sqrt_s_gev or result.config["bumphunt"].get("sqrt_s_gev", 13000.0))
    dataset = dataset or _dataset_name(result)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        entries = _bundle_workspaces(result, tmp / "workspaces")
        staging = tmp / ".staging"
        staging.mkdir()
        ws_tar = staging / "pyhf_workspaces.tar.gz"
        with tarfile.open(ws_tar, "w:gz") as tar:
            tar.add(tmp / "workspaces", arcname="workspaces")
        config_file = staging / "sideband_config.json"
        config_file.write_text(json.dumps(result.config, indent=2) + "\n")

        submission = hd.Submission()
        submission.comment = abstract or _abstract(result, dataset)
        submission.add_additional_resource(
            f"pyhf workspaces of the {len(entries)} bump hunts (mu = signal events in the SR), "
            "with index.json, README.md and reproduce.py (needs pyhf only)",
            str(ws_tar.resolve()),
            copy_file=True,
            file_type="HistFactory",
        )
        submission.add_additional_resource(
            "sideband analysis configuration (resolved)", str(config_file.resolve()), copy_file=True
        )
        for table in _tables(hd, result, dataset=dataset, sqrt_s_gev=sqrt_s, n_sic=sic_points):
            submission.add_table(table)
        with contextlib.chdir(tmp), _quiet_hepdata():
            submission.create_files("hepdata", validate=False)
        _validate(hd, tmp / "hepdata", tmp / "submission.tar.gz")
        shutil.rmtree(staging)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote the HEPData submission and %d workspaces to %s", len(entries), out)
    return out


class _HepdataModules:
    """hepdata_lib's classes and hepdata-validator's, imported on first use."""

    def __init__(self) -> None:
        try:
            # hepdata_validator 0.3.6 imports names jsonschema 4.18+ deprecates
            with _quiet_hepdata():
                import hepdata_lib
                from hepdata_validator.full_submission_validator import FullSubmissionValidator
        except ImportError as err:
            msg = (
                f"publishing needs hepdata_lib and hepdata-validator ({err}); install them with "
                "`pip install 'sideband[hepdata]'`"
            )
            raise SidebandError(msg) from err
        self.Submission = hepdata_lib.Submission
        self.Table = hepdata_lib.Table
        self.Variable = hepdata_lib.Variable
        self.Uncertainty = hepdata_lib.Uncertainty
        self.FullSubmissionValidator = FullSubmissionValidator


def _hepdata_modules() -> _HepdataModules:
    return _HepdataModules()


@contextlib.contextmanager
def _quiet_hepdata() -> Iterator[None]:
    """Silence what hepdata_lib / hepdata-validator emit that is not ours: jsonschema's
    deprecation of the names they import, and the files the validator leaves open (collected
    here, so that no ResourceWarning surfaces later)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"jsonschema\..* is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", category=ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _validate(hd: _HepdataModules, folder: Path, archive: Path) -> None:
    """Validate the submission folder and its archive with hepdata-validator (offline)."""
    for kind, target in (("directory", folder), ("archive", archive)):
        with _quiet_hepdata():
            validator = hd.FullSubmissionValidator()
            ok = validator.validate(**{kind: str(target)})
            messages = validator.get_messages()
        if not ok:
            details = "; ".join(
                f"{Path(f).name}: {m.message}" for f, ms in messages.items() for m in ms
            )
            msg = (
                f"the HEPData {kind} does not validate ({details[:2000]}); this is a bug of "
                "sideband.publish or a value it cannot write: please report it"
            )
            raise InputError(msg)


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`; an old `out` is moved aside first and removed last."""
    os.chmod(tmp, 0o777 & ~_umask())
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _select(result: ResultFolder, efficiencies: Sequence[float]) -> ResultFolder:
    have = result.efficiencies
    wanted = []
    for eff in efficiencies:
        match = [h for h in have if math.isclose(h, float(eff), rel_tol=1e-9)]
        if not match:
            msg = (
                f"efficiency {eff!r} is not in {result.folder} (it has {have}; 1.0 = before "
                "the cut); choose from those"
            )
            raise InputError(msg)
        wanted.append(match[0])
    points = tuple(p for p in result.points if p.efficiency in wanted)
    return replace(result, points=points)


def _dataset_name(result: ResultFolder) -> str:
    files = list(result.inputs) or [str(result.config.get("data", {}).get("path", ""))]
    names = [Path(f).name for f in files if f]
    if any(m in f for f in files for m in _LHCO_RND_MARKERS):
        return f"{_LHCO_RND}, file {', '.join(names)}"
    if not names:
        return "not recorded"
    note = "" if result.inputs else " (no checksum recorded: events may have been passed in)"
    return ", ".join(names) + note


def _method_words(config: dict[str, Any]) -> str:
    method = config.get("background", {}).get("method", "cathode")
    return {
        "cathode": "CATHODE (conditional normalising flow on the sidebands)",
        "lacathode": "LaCATHODE (classification in the flow's latent space)",
        "sigma": "SIGMA (flow matching interpolated across the SR)",
        "point_cloud": "a point-cloud flow-matching template",
    }.get(method, method)


def _abstract(result: ResultFolder, dataset: str) -> str:
    what = "sliding-window search" if result.kind == "scan" else "search in one signal region"
    bh = result.config["bumphunt"]
    return (
        f"Resonant anomaly detection with sideband (enhanced bump hunt), {what} in the dijet "
        f"mass m_JJ on {dataset}. Background template of the SR: "
        f"{_method_words(result.config)}; anomaly score: a k-fold classifier of SR data against "
        "the template; the score is cut at fixed fractions of the SR data and m_JJ is fitted "
        f"with a {bh.get('n_params')}-parameter dijet function in the sidebands; the SR is "
        "tested with pyhf (a Gaussian signal at the SR centre; mu = number of signal events "
        "in the SR): local significance from q0, 95% CL CLs upper limits with qtilde. The "
        "pyhf workspaces are attached (HistFactory resource) with a script that reproduces "
        "the numbers with pyhf alone. Masses in GeV."
    )


def _eff_words(eff: float) -> str:
    return "before the cut (no score cut)" if eff == _NO_CUT else f"{eff:g} of the SR data kept"


def _ws_name(point: HuntPoint) -> str:
    cut = "no_cut" if point.efficiency == _NO_CUT else f"eff_{point.efficiency:g}"
    return f"sr_{point.sr_low_gev:g}-{point.sr_high_gev:g}_gev_{cut}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """The statistical settings of the bump hunt, as pyhf arguments."""
    bh = config["bumphunt"]
    toys = bh.get("calculator") == "toys"
    return {
        "pyhf_backend": _optimizer_settings(),
        "poi": "mu: the number of signal events in the SR bins (signal sample normalised to 1)",
        "signal": (
            "Gaussian at the SR centre, width "
            + (
                f"{bh['signal_width_gev']:g} GeV"
                if bh.get("signal_width_gev")
                else "6% of the SR centre"
            )
            + ", integrated over the SR bins"
        ),
        "likelihood": bh.get("likelihood", "signal_region"),
        "discovery": {
            "test_stat": "q0",
            "poi_test": 0.0,
            "calctype": "toybased" if toys else "asymptotics",
            "ntoys": bh.get("n_toys") if toys else None,
            "par_bounds": "the workspace's (mu may be negative)",
            "z": "max(norm.isf(p0), 0)",
            "call": 'pyhf.infer.hypotest(0.0, data, model, test_stat="q0")',
        },
        "best_fit": "pyhf.infer.mle.fit(data, model, return_uncertainties=True): mu_hat, mu_err",
        "limits": {
            "cl": 0.95,
            "method": "CLs",
            "test_stat": "qtilde",
            "calctype": "asymptotics",
            "par_bounds": f"mu in [0, workspace upper bound] (JSON patch {_POI_PATCH_NAME})",
            "expected": "return_expected_set=True: -2, -1, 0, +1, +2 sigma",
            "root_finding": (
                "sideband: hypotest on a grid of ~10 mu values, then a root of a monotone "
                "(PCHIP) interpolation of ln CLs - ln 0.05 (reproduce.py: grid_limits); "
                "pyhf.infer.intervals.upper_limits.toms748_scan agrees within "
                f"{REPRODUCE_TOLERANCES['limit_rel_toms748']:.0%} (the grid is coarse for the "
                "expected limits when the observed excess is large)"
            ),
        },
        "tolerances": REPRODUCE_TOLERANCES,
    }


def _bundle_workspaces(result: ResultFolder, folder: Path) -> list[dict[str, Any]]:
    """Copy every workspace under its window's name; write index.json, README.md, the POI
    patch and reproduce.py. Returns the index entries."""
    folder.mkdir(parents=True)
    entries = []
    for point in result.points:
        if point.status != "ok" or point.workspace is None:
            continue
        name = _ws_name(point)
        shutil.copyfile(point.workspace, folder / name)
        recorded = {
            "z": point.z,
            "z_signed": point.z_signed,
            "p0": point.p0,
            "p0_asymptotic": point.p0_asymptotic,
            "mu_hat": point.mu_hat,
            "mu_err": point.mu_err,
            "upper_limit": point.upper_limit,
            "expected_limits": None
            if point.expected_limits is None
            else list(point.expected_limits),
        }
        entries.append(
            {
                "file": name,
                "window": point.window,
                "sr_low_gev": point.sr_low_gev,
                "sr_high_gev": point.sr_high_gev,
                "efficiency": point.efficiency,
                "cut": _eff_words(point.efficiency),
                "source": str(point.workspace.relative_to(result.folder)),
                "sha256": _sha256(folder / name),
                "recorded": recorded,
                "limits_recomputed_from_workspace": point.limits_recomputed,
            }
        )
    index = {
        "what": (
            f"pyhf workspaces of the sideband {result.kind} in {result.folder.name}: one per SR "
            "window and score cut, with the numbers sideband recorded and the pyhf settings "
            "that reproduce them"
        ),
        "kind": result.kind,
        "versions": {k: result.versions.get(k) for k in ("sideband", "pyhf", "iminuit", "numpy")},
        "settings": _settings(result.config),
        "poi_patch": _POI_PATCH_NAME,
        "workspaces": entries,
    }
    (folder / "index.json").write_text(json.dumps(_plain(index), indent=2) + "\n")
    (folder / _POI_PATCH_NAME).write_text(json.dumps(_POI_PATCH, indent=2) + "\n")
    (folder / "reproduce.py").write_text(_REPRODUCE_PY)
    (folder / "README.md").write_text(_readme(result, entries))
    return entries


def _plain(obj: Any) -> Any:
    """JSON-safe: numpy scalars plain, non-finite floats None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _readme(result: ResultFolder, entries: list[dict[str, Any]]) -> str:
    settings = _settings(result.config)
    tolerance = settings["pyhf_backend"]["tolerance"]
    toys = settings["discovery"]["calctype"] == "toybased"
    rows = "\n".join(
        f"| `{e['file']}` | {e['sr_low_gev']:g}-{e['sr_high_gev']:g} | {e['efficiency']:g} | "
        f"{_fmt(e['recorded']['z'], '.3f')} | {_fmt(e['recorded']['upper_limit'], '.4g')} | "
        + (
            "-"
            if e["recorded"]["expected_limits"] is None
            else ", ".join(f"{v:.4g}" for v in e["recorded"]["expected_limits"])
        )
        + " |"
        for e in entries
    )
    example = next((e for e in entries if e["recorded"]["upper_limit"] is not None), None)
    cli = (
        ""
        if example is None
        else f"""
With the pyhf command line (CLs at the observed limit of one workspace; expect CLs_obs close to
0.05):

```bash
pyhf cls {example["file"]} --patch {_POI_PATCH_NAME} --test-poi {example["recorded"]["upper_limit"]:.6g} \\
    --test-stat qtilde --calctype asymptotics --backend numpy --optimizer minuit
```
"""
    )
    toys_note = (
        f"\nThe analysis took p0 from {settings['discovery']['ntoys']} pseudo-experiments "
        "(pyhf's ToyCalculator, numpy's global RNG seeded by sideband); `reproduce.py` checks "
        "the asymptotic p0 where the folder recorded it.\n"
        if toys
        else ""
    )
    return f"""# pyhf workspaces of a sideband {result.kind}

Each JSON file is a complete pyhf workspace (HistFactory JSON, pyhf 0.7) of one bump hunt: a
signal region (SR) window in m_JJ (GeV) after a cut on the anomaly score that keeps a fraction
`efficiency` of the SR data (1 = before any cut). The POI `mu` is the number of signal events
in the SR bins; the background is the sideband fit of the dijet function with one `histosys`
per eigenvector of its covariance. `index.json` lists the numbers sideband recorded and the
exact settings; `reproduce.py` recomputes them with pyhf alone (no sideband needed).

| file | SR [GeV] | efficiency | local Z | observed 95% CL limit | expected limits (-2, -1, 0, +1, +2 sigma) |
|---|---|---|---|---|---|
{rows}

## Settings sideband used (pyhf {result.versions.get("pyhf") or "0.7"})

- backend `numpy`, optimizer `minuit` with tolerance {tolerance};
- local significance: `p0 = pyhf.infer.hypotest(0.0, data, model, test_stat="q0")` with the
  workspace's parameter bounds (mu may be negative), `Z = max(norm.isf(p0), 0)`,
  {settings["discovery"]["calctype"]};
- limits: 95% CL, CLs, `test_stat="qtilde"`, asymptotic, mu in [0, upper bound of the
  workspace] (`{_POI_PATCH_NAME}` is that change as a JSON patch of the model spec);
  sideband solves CLs(mu) = 0.05 on a grid of ~10 hypotests with a monotone (PCHIP)
  interpolation of ln CLs (`grid_limits` in `reproduce.py` repeats it); pyhf's own
  `toms748_scan` gives the same limits within {REPRODUCE_TOLERANCES["limit_rel_toms748"]:.0%}
  (the grid is coarse for the expected limits when the observed excess is large).
{toys_note}
## Reproduce

```bash
pip install "pyhf[minuit]~=0.7.6"
python reproduce.py --check                   # Z and CLs at the recorded limits, every workspace
python reproduce.py --check --limits          # also the limits, sideband's procedure (slower)
python reproduce.py --check --limits toms748  # the limits from pyhf's toms748_scan (slowest)
```
{cli}
In Python:

```python
import json
import pyhf
from scipy.stats import norm

pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance={tolerance}))
ws = pyhf.Workspace(json.load(open("FILE.json")))
model = ws.model()
data = ws.data(model)
z = max(norm.isf(float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0"))), 0.0)
bounds = model.config.suggested_bounds()
bounds[model.config.poi_index] = (0.0, bounds[model.config.poi_index][1])
entry = ...  # this file's entry of index.json["workspaces"]
recorded = [entry["recorded"]["upper_limit"], *entry["recorded"]["expected_limits"]]
observed, expected = pyhf.infer.intervals.upper_limits.toms748_scan(
    data, model, 0.5 * min(recorded), 2.0 * max(recorded), level=0.05,
    test_stat="qtilde", par_bounds=bounds,
)
```

(`toms748_scan` needs a bracket in which every CLs curve crosses 0.05; it avoids mu near 0,
where pyhf 0.7 returns NaN for CLs.)
"""


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def _tables(
    hd: _HepdataModules, result: ResultFolder, *, dataset: str, sqrt_s_gev: float, n_sic: int
) -> list[Any]:
    common = _Common(hd, result, dataset, sqrt_s_gev)
    tables = [_significance_table(common)]
    if any(p.upper_limit is not None for p in result.points):
        tables.append(_limits_table(common))
    sic = _sic_table(common, n_sic)
    if sic is not None:
        tables.append(sic)
    tables += _spectrum_tables(common)
    return tables


@dataclass(frozen=True)
class _Common:
    hd: _HepdataModules
    result: ResultFolder
    dataset: str
    sqrt_s_gev: float

    def table(self, name: str, description: str, location: str) -> Any:
        table = self.hd.Table(name)
        table.description = description
        table.location = location
        table.keywords["cmenergies"] = [self.sqrt_s_gev]
        table.keywords["reactions"] = ["P P --> JET JET X"]
        table.keywords["phrases"] = ["Dijet", "Resonance", "Anomaly detection", "Bump hunt"]
        return table

    def qualify(self, var: Any) -> Any:
        var.add_qualifier("SQRT(S)", self.sqrt_s_gev, "GeV")
        var.add_qualifier("Dataset", self.dataset)
        var.add_qualifier("Background template", _method_words(self.result.config))
        return var

    def windows(self) -> list[tuple[int, float, float]]:
        return sorted({(p.window, p.sr_low_gev, p.sr_high_gev) for p in self.result.points})

    def sr_variable(self) -> Any:
        var = self.hd.Variable(
            "$m_{JJ}$ signal region", is_independent=True, is_binned=True, units="GeV"
        )
        var.values = [(lo, hi) for _, lo, hi in self.windows()]
        return var

    def dependent(self, name: str, units: str = "") -> Any:
        return self.hd.Variable(
            name, is_independent=False, is_binned=False, units=units,
            zero_uncertainties_warning=False,
        )  # fmt: skip

    def column(self, eff: float) -> list[HuntPoint | None]:
        """The points at efficiency `eff` in window order (None where a window lacks one)."""
        by_window = {p.window: p for p in self.result.points if p.efficiency == eff}
        return [by_window.get(w) for w, _, _ in self.windows()]


def _location(result: ResultFolder) -> str:
    return f"sideband {result.kind} output {result.folder.name}"


def _significance_table(c: _Common) -> Any:
    result = c.result
    calc = result.config["bumphunt"].get("calculator", "asymptotics")
    words = (
        "Local discovery significance Z of a signal at the centre of each SR window, before and "
        "after the cut on the anomaly score (each dependent variable is one cut, given as the "
        "fraction of the SR data it keeps). Z = max(norm.isf(p0), 0) from the q0 test of the "
        f"pyhf workspace ({calc}); '-' marks a window whose fit failed."
    )
    glob = (result.global_significance or {}).get("by_efficiency", {})
    notes = []
    for eff, entry in glob.items():
        if entry.get("global_p") is not None:
            notes.append(
                f"efficiency {float(eff):g}: most significant window {entry['window']} "
                f"(local Z {entry['local_z']:.2f}), global p = {entry['global_p']:.3g} "
                f"(Z = {entry['global_z']:.2f}) from {entry.get('n_toys_used')} background-only "
                "pseudo-experiments of the fit stage"
            )
    if notes:
        words += " Look-elsewhere effect: " + "; ".join(notes) + "."
    table = c.table("Local significance vs SR centre", words, _location(result))
    table.add_variable(c.sr_variable())
    for eff in result.efficiencies:
        column = c.column(eff)
        var = c.qualify(c.dependent("Local significance Z"))
        var.values = [p.z if p is not None and p.z is not None else "-" for p in column]
        var.add_qualifier("Score cut (fraction of SR data kept)", eff)
        var.add_qualifier("Test statistic", f"q0, {calc}")
        entry = glob.get(f"{eff:g}") or glob.get(str(eff)) or {}
        if entry.get("global_p") is not None:
            var.add_qualifier("Global p-value of the most significant window", entry["global_p"])
        table.add_variable(var)
    return table


def _limits_table(c: _Common) -> Any:
    result = c.result
    recomputed = any(p.limits_recomputed for p in result.points)
    words = (
        "Observed and expected 95% CL upper limits on the number of signal events in the SR "
        "(a Gaussian signal at the SR centre), CLs with the qtilde test statistic (mu >= 0), "
        "asymptotic formulae, pyhf. Expected limits: median, with the 1 sigma and 2 sigma "
        "bands as asymmetric errors. '-' marks a window without a limit."
    )
    if recomputed:
        words += (
            " Limits the analysis folder did not record were recomputed from the bundled pyhf "
            "workspaces with the same procedure."
        )
    table = c.table("Upper limits", words, _location(result))
    table.add_variable(c.sr_variable())
    for eff in result.efficiencies:
        column = c.column(eff)
        if not any(p is not None and p.upper_limit is not None for p in column):
            continue
        obs = c.qualify(c.dependent("Observed upper limit on signal events in the SR"))
        obs.values = [p.upper_limit if p and p.upper_limit is not None else "-" for p in column]
        exp = c.qualify(c.dependent("Expected upper limit on signal events in the SR"))
        exp.values = [p.expected_limits[2] if p and p.expected_limits else "-" for p in column]
        one = c.hd.Uncertainty("1 sigma", is_symmetric=False)
        two = c.hd.Uncertainty("2 sigma", is_symmetric=False)
        one.values = [_band(p, 1, 3) for p in column]
        two.values = [_band(p, 0, 4) for p in column]
        exp.add_uncertainty(one)
        exp.add_uncertainty(two)
        for var in (obs, exp):
            var.add_qualifier("Score cut (fraction of SR data kept)", eff)
            var.add_qualifier("CL", "95%")
            var.add_qualifier("Method", "CLs, qtilde, asymptotic")
            table.add_variable(var)
    return table


def _band(point: HuntPoint | None, low: int, high: int) -> tuple[float, float]:
    """(minus, plus) of the expected-limit band between indices `low` and `high`; (0, 0) where
    there is none (hepdata_lib then writes no error)."""
    if point is None or point.expected_limits is None:
        return (0.0, 0.0)
    lim = point.expected_limits
    return (lim[low] - lim[2], lim[high] - lim[2])


def _sic_table(c: _Common, n_points: int) -> Any | None:
    """SIC and ROC of a run's labelled SR scores, or None (a scan, or no labels)."""
    result = c.result
    if result.scores is None:
        return None
    import pyarrow.parquet as pq

    from sideband.evaluation.metrics import DEFAULT_MIN_BACKGROUND, roc_curve
    from sideband.event_results import REGION_CODES

    try:
        table = pq.read_table(result.scores, columns=None)
    except Exception as err:
        msg = f"{result.scores} cannot be read ({err}); rerun `sideband run CONFIG`"
        raise InputError(msg) from err
    if "label" not in table.column_names:
        log.info("scores.parquet has no labels: no SIC table")
        return None
    region = table.column("region").to_numpy(zero_copy_only=False)
    # int8 codes (sideband.event_results); strings "SR"/"SB" in run folders of before 2026-11
    sr = region == ("SR" if region.dtype.kind in "OUS" else REGION_CODES["SR"])
    y = np.asarray(table.column("label").to_numpy(), dtype=np.int64)[sr]
    score = np.asarray(table.column("score").to_numpy(), dtype=np.float64)[sr]
    n_sig = int(y.sum())
    if n_sig in (0, y.size):
        log.info("the SR holds %d signal of %d labelled events: no SIC table", n_sig, y.size)
        return None
    roc = roc_curve(y, score)
    keep = roc.fpr > 0
    fpr, tpr = roc.fpr[keep], roc.tpr[keep]
    # a grid over the signal efficiencies reachable with eps_B > 0
    targets = np.linspace(tpr[0], 1.0, n_points)
    idx = np.unique(np.minimum(np.searchsorted(tpr, targets, side="left"), tpr.size - 1))
    fpr, tpr = fpr[idx], tpr[idx]
    sic = tpr / np.sqrt(fpr)
    n_bkg = roc.n_background
    rel = np.sqrt((1 - tpr) / np.maximum(n_sig * tpr, 1e-300) + 0.25 * (1 - fpr) / (n_bkg * fpr))
    kept_bkg = np.rint(fpr * n_bkg).astype(int)
    words = (
        "Significance improvement characteristic SIC = eps_S / sqrt(eps_B) of the anomaly "
        "score on the labelled events of the signal region (every SR event scored out of "
        f"fold), against the signal efficiency eps_S, with the ROC (eps_B and 1/eps_B). "
        f"{n_sig} signal and {n_bkg} background events; points with eps_B = 0 dropped; the "
        "error is binomial (statistical). Cuts keeping fewer than "
        f"{DEFAULT_MIN_BACKGROUND} background events are unreliable (relative error on eps_B "
        f"above {1 / math.sqrt(DEFAULT_MIN_BACKGROUND):.0%})."
    )
    out = c.table("SIC", words, _location(result))
    x = c.hd.Variable(
        r"Signal efficiency $\epsilon_S$", is_independent=True, is_binned=False, units=""
    )
    x.values = tpr.tolist()
    out.add_variable(x)
    sic_var = c.qualify(c.dependent(r"SIC $\epsilon_S/\sqrt{\epsilon_B}$"))
    sic_var.values = sic.tolist()
    stat = c.hd.Uncertainty("stat. (binomial)", is_symmetric=True)
    stat.values = (sic * rel).tolist()
    sic_var.add_uncertainty(stat)
    eff_b = c.qualify(c.dependent(r"Background efficiency $\epsilon_B$"))
    eff_b.values = fpr.tolist()
    rejection = c.qualify(c.dependent(r"Background rejection $1/\epsilon_B$"))
    rejection.values = (1.0 / fpr).tolist()
    kept = c.qualify(c.dependent("Background events kept"))
    kept.values = kept_bkg.tolist()
    low, high = result.points[0].sr_low_gev, result.points[0].sr_high_gev
    for var in (sic_var, eff_b, rejection, kept):
        var.add_qualifier("Signal region", f"{low:g}-{high:g} GeV")
        var.add_qualifier("Signal events", n_sig)
        var.add_qualifier("Background events", n_bkg)
        out.add_variable(var)
    return out


def _spectrum_tables(c: _Common) -> list[Any]:
    """m_JJ with the background fit after the cut: a run's cut, or, for a scan, the most
    significant window at each cut efficiency."""
    result = c.result
    chosen: list[HuntPoint] = []
    for eff in result.efficiencies:
        if eff == _NO_CUT:
            continue
        ok = [
            p
            for p in result.points
            if p.efficiency == eff and p.fit is not None and p.z is not None
        ]
        if ok:
            chosen.append(max(ok, key=lambda p: (p.z, -p.window)))
    tables = []
    for point in chosen:
        assert point.fit is not None
        fit = point.fit
        edges = fit["edges"]
        name = "mJJ spectrum after the cut"
        if result.kind == "scan":
            name += f" eff {point.efficiency:g}"
        words = (
            f"Dijet mass m_JJ after the score cut keeping {point.efficiency:g} of the SR data, "
            f"SR {point.sr_low_gev:g}-{point.sr_high_gev:g} GeV"
            + (
                " (the most significant window of the scan at this cut)"
                if result.kind == "scan"
                else ""
            )
            + f": observed events and the {fit['fit_n_params']}-parameter dijet function fitted "
            "to the sideband bins (in the SR bins its interpolation; error: the fit's "
            "uncertainty)."
        )
        table = c.table(name, words, _location(result))
        x = c.hd.Variable("$m_{JJ}$", is_independent=True, is_binned=True, units="GeV")
        x.values = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        table.add_variable(x)
        counts = fit["counts"]
        obs = c.qualify(c.dependent("Events"))
        obs.values = np.rint(counts).astype(np.int64).tolist()
        stat = c.hd.Uncertainty("stat. (Poisson, sqrt(N))", is_symmetric=True)
        stat.values = np.sqrt(counts).tolist()
        obs.add_uncertainty(stat)
        bkg = c.qualify(c.dependent("Background fit"))
        bkg.values = fit["background"].tolist()
        err = c.hd.Uncertainty("fit", is_symmetric=True)
        err.values = fit["background_err"].tolist()
        bkg.add_uncertainty(err)
        for var in (obs, bkg):
            var.add_qualifier("Score cut (fraction of SR data kept)", point.efficiency)
            var.add_qualifier("Signal region", f"{point.sr_low_gev:g}-{point.sr_high_gev:g} GeV")
            if fit.get("fit_gof_pvalue") is not None:
                var.add_qualifier("Sideband fit p-value", round(float(fit["fit_gof_pvalue"]), 4))
            table.add_variable(var)
        tables.append(table)
    return tables


# --------------------------------------------------------------------------------------------
# reproduce.py: bundled with the workspaces, needs pyhf (and scipy) only
# --------------------------------------------------------------------------------------------

_REPRODUCE_PY = '''\
"""Recompute the numbers of index.json from the pyhf workspaces with pyhf alone.

    python reproduce.py [--check] [--limits [grid|toms748]] [--only FILE ...]
                        [--optimizer minuit|scipy]

For every workspace: the local significance Z (q0 test, asymptotic) and CLs at the recorded
observed and expected limits (qtilde, asymptotic, mu >= 0; each should be 0.05). With
--limits, the limits themselves: "grid" (default) repeats sideband's procedure (hypotests on a
grid of mu, root of a monotone interpolation of ln CLs), "toms748" uses pyhf's own root finder
(pyhf.infer.intervals.upper_limits.toms748_scan). Prints JSON; with --check, exits 1 when a
number is outside the tolerances of index.json ("settings" -> "tolerances").
Written by sideband.publish; needs pyhf 0.7 (with iminuit for the minuit optimizer) and scipy.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyhf
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.stats import norm

HERE = Path(__file__).resolve().parent
LEVEL = 0.05


def limit_bounds(model):
    """The workspace's parameter bounds with mu >= 0 (qtilde)."""
    bounds = model.config.suggested_bounds()
    poi = model.config.poi_index
    bounds[poi] = (0.0, bounds[poi][1])
    return bounds


def cls_at(mu, data, model, bounds):
    """[observed CLs, expected CLs at -2, -1, 0, +1, +2 sigma] at signal strength mu."""
    obs, exp = pyhf.infer.hypotest(
        mu, data, model, test_stat="qtilde", return_expected_set=True, par_bounds=bounds
    )
    return [float(obs), *(float(e) for e in exp)]


def grid_limits(data, model, bounds, mu_hat, mu_err, n_points=10):
    """sideband's limits: CLs on n_points values of mu in [mu_err / 2, max(mu_hat, 0) +
    5 mu_err] (extended until every curve crosses 0.05), then the root of a PCHIP
    interpolation of ln CLs - ln 0.05 between the bracketing grid points."""
    poi_hi = bounds[model.config.poi_index][1]
    grid = list(np.linspace(0.5 * mu_err, max(mu_hat, 0.0) + 5.0 * mu_err, n_points))
    values = [cls_at(mu, data, model, bounds) for mu in grid]
    for _ in range(20):
        if min(values[0]) > LEVEL:
            break
        grid.insert(0, 0.5 * grid[0])
        values.insert(0, cls_at(grid[0], data, model, bounds))
    for _ in range(20):
        if max(values[-1]) < LEVEL:
            break
        step = grid[-1] - grid[-2]
        if grid[-1] + 2 * step >= poi_hi:
            raise RuntimeError(f"CLs stays above {LEVEL} up to mu = {grid[-1]:g}")
        grid.append(grid[-1] + 2 * step)
        values.append(cls_at(grid[-1], data, model, bounds))
    mu = np.asarray(grid)
    table = np.asarray(values)
    limits = []
    for column in table.T:
        y = np.log(column) - np.log(LEVEL)
        k = int(np.flatnonzero((y[:-1] > 0) & (y[1:] <= 0))[0])
        curve = PchipInterpolator(mu, y)
        limits.append(float(brentq(curve, mu[k], mu[k + 1], xtol=1e-6 * (mu[-1] - mu[0]))))
    return limits


def toms748_limits(data, model, bounds, recorded):
    """pyhf's root finder, bracketed by half the smallest and twice the largest recorded limit
    (CLs is NaN at mu = 0 in pyhf 0.7)."""
    lo = 0.5 * min(recorded)
    hi = min(2.0 * max(recorded), bounds[model.config.poi_index][1])
    obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
        data, model, lo, hi, level=LEVEL, test_stat="qtilde", par_bounds=bounds
    )
    return [float(obs), *(float(e) for e in exp)]


def check_one(entry, settings, *, limits):
    tol = settings["tolerances"]
    rec = entry["recorded"]
    ws = pyhf.Workspace(json.loads((HERE / entry["file"]).read_text()))
    model = ws.model()
    data = ws.data(model)
    out = {"file": entry["file"], "ok": True, "failures": []}
    p0 = float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0"))
    z = max(float(norm.isf(p0)), 0.0)
    out["z"] = {"reproduced": z}
    if rec.get("p0_asymptotic") is not None:
        z_rec = max(float(norm.isf(rec["p0_asymptotic"])), 0.0)
        out["z"]["recorded"] = z_rec
        if abs(z - z_rec) > tol["z_abs"]:
            out["failures"].append(f"Z {z:.4f} vs recorded {z_rec:.4f}")
    else:
        out["z"]["recorded"] = rec.get("z")
        out["z"]["note"] = "the recorded Z is toy-based: not compared"
    bounds = limit_bounds(model)
    has_limits = rec.get("upper_limit") is not None and rec.get("expected_limits") is not None
    if has_limits:
        recorded = [rec["upper_limit"], *rec["expected_limits"]]
        at = [cls_at(mu, data, model, bounds)[k] for k, mu in enumerate(recorded)]
        out["cls_at_recorded_limits"] = at
        if any(abs(v / LEVEL - 1) > tol["cls_rel"] for v in at):
            out["failures"].append(f"CLs {at} at the recorded limits (observed, -2..+2 sigma)")
    if limits and has_limits:
        if limits == "grid":
            mu_hat, mu_err = rec.get("mu_hat"), rec.get("mu_err")
            if mu_hat is None or mu_err is None:
                best = pyhf.infer.mle.fit(data, model, return_uncertainties=True)
                mu_hat, mu_err = (float(v) for v in best[model.config.poi_index])
            now = grid_limits(data, model, bounds, mu_hat, mu_err)
        else:
            now = toms748_limits(data, model, bounds, recorded)
        rel = [a / b - 1 for a, b in zip(now, recorded)]
        out["limits"] = {"method": limits, "reproduced": now, "recorded": recorded, "rel": rel}
        if any(abs(r) > tol[f"limit_rel_{limits}"] for r in rel):
            out["failures"].append(f"limits ({limits}) differ by {rel} (relative)")
    out["ok"] = not out["failures"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 outside the tolerances")
    parser.add_argument(
        "--limits", nargs="?", const="grid", choices=("grid", "toms748"),
        help="recompute the limits (grid: sideband's procedure; toms748: pyhf's root finder)",
    )
    parser.add_argument("--only", action="append", default=[], help="workspace file(s) to check")
    parser.add_argument("--optimizer", choices=("minuit", "scipy"), default="minuit")
    args = parser.parse_args(argv)
    index = json.loads((HERE / "index.json").read_text())
    settings = index["settings"]
    if args.optimizer == "minuit":
        tolerance = settings["pyhf_backend"]["tolerance"]
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=tolerance))
    else:
        pyhf.set_backend("numpy", "scipy")
    entries = index["workspaces"]
    if args.only:
        names = {Path(n).name for n in args.only}
        entries = [e for e in entries if e["file"] in names]
        missing = names - {e["file"] for e in entries}
        if missing:
            parser.error(f"not in index.json: {sorted(missing)}")
    results = [check_one(e, settings, limits=args.limits) for e in entries]
    print(json.dumps({"optimizer": args.optimizer, "results": results}, indent=2))
    if args.check and not all(r["ok"] for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
