"""Writing a run folder: configuration, provenance, metrics, workspaces, per-event scores, plots.

Every file is written to a temporary name and renamed into place, so a killed run never leaves a
half-written file; ``status.json`` records which parts finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from sideband.pipeline import AnalysisResult

__all__ = [
    "atomic_write",
    "environment",
    "file_sha256",
    "input_checksums",
    "jsonable",
    "package_versions",
    "write_json",
    "write_run",
]

log = logging.getLogger(__name__)

#: Distributions whose versions every run records.
RECORDED_PACKAGES = (
    "sideband", "numpy", "scipy", "awkward", "uproot", "vector", "fastjet", "coffea", "torch",
    "zuko", "scikit-learn", "pyhf", "iminuit", "hist", "mplhep", "tables", "h5py", "pandas",
    "pyarrow", "pythia8mc",
)  # fmt: skip


def new_file_mode() -> int:
    """Permissions of a newly created file under the current umask (mkstemp's files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to `path` (same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Write `obj` as strict JSON (NaN and inf become null), atomically."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def jsonable(obj: Any) -> Any:
    """`obj` as JSON would give it back: tuples become lists, numpy values plain, NaN/inf None."""
    return json.loads(json.dumps(_finite(obj), allow_nan=False, default=_json_default))


def _finite(obj: Any) -> Any:
    """Replace non-finite floats (undefined metrics such as SIC at 1e-4 with too few events) by
    None, which JSON writes as null; strict JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, float | np.floating) and not np.isfinite(obj):
        return None
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    msg = f"cannot write {type(obj).__name__} to JSON"
    raise TypeError(msg)


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in `names` (None if absent), and Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(conditions: str = "") -> dict[str, Any]:
    """Where and when numbers were measured: OpenMP threads, a free-text description of the
    conditions (e.g. "machine shared with other jobs"), CPU count and platform, package
    versions and the local time. Benchmarks store it beside their timings."""
    return {
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "conditions": conditions,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": package_versions(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def file_sha256(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks of `chunk_bytes`."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_run(result: AnalysisResult, out_dir: Path, *, plots: bool = True) -> Path:
    """Write the run folder of an analysis; returns the folder.

    Contents: ``config.yaml`` (resolved), ``provenance.json`` (versions, seeds, input checksums,
    command), ``metrics.json``, ``workspace_before_cut.json`` / ``workspace_after_cut.json`` (pyhf),
    ``fit_after_cut.json`` (bins and sideband-fit details), ``template_model_<k>.pt`` (the fitted flow of
    each cross-fitting chain, `CathodeTemplate.load`, or `SigmaTemplate.load` for method sigma),
    ``classifiers.pkl`` (the k-fold classifiers, `sideband.scoring.fold_models.FoldClassifiers`),
    ``scores.parquet`` and ``scores.root`` (TTree ``sideband``): per-event results with the
    input's identifiers (`sideband.event_results`),
    ``plots/*.png``, ``status.json``.

    ``status.json`` is written first, before any other file, and again after each part:
    ``finished`` lists the parts written so far and ``completed`` (a time) appears only once
    every part is in place. A folder whose ``status.json`` has no ``completed`` holds a run
    that was killed while writing (its files may mix two runs); writing into it again logs a
    warning and replaces every part, and deletes the temporary files the kill left behind.
    """
    from sideband.bumphunt import save_workspace

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _warn_unfinished(out_dir / "status.json")
    _remove_stale_temp_files(out_dir)
    status: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished": []}

    def finished(*parts: str) -> None:
        status["finished"] += parts
        write_json(out_dir / "status.json", status)

    # first of all: an earlier run's "completed" must not vouch for this run's files
    finished()
    config = result.config
    atomic_write(
        out_dir / "config.yaml",
        lambda p: p.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)),
    )
    write_json(
        out_dir / "provenance.json",
        {
            "command": sys.argv,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "platform": platform.platform(),
            "versions": package_versions(),
            "seed": config.seed,
            "stage_seeds": result.seeds,
            "inputs": input_checksums(Path(config.data.path)),
        },
    )
    finished("config", "provenance")
    write_json(out_dir / "metrics.json", result.metrics)
    save_workspace(out_dir / "workspace_before_cut.json", result.before_cut.workspace)
    save_workspace(out_dir / "workspace_after_cut.json", result.after_cut.workspace)
    write_json(out_dir / "fit_after_cut.json", result.after_cut.fit_info)
    write_json(out_dir / "fit_before_cut.json", result.before_cut.fit_info)
    write_json(out_dir / "template_history.json", result.template_history)
    finished("metrics", "workspaces")
    for k, model in enumerate(result.template_models):
        model.save(out_dir / f"template_model_{k}.pt")
    finished("template_models")
    if result.classifiers is not None:
        result.classifiers.save(out_dir / "classifiers.pkl")
        finished("classifiers")
    from sideband.event_results import event_results, write_event_results

    columns = event_results(result)
    write_event_results(columns, out_dir / "scores.parquet")
    write_event_results(columns, out_dir / "scores.root")
    finished("scores")
    if plots:
        _write_plots(result, out_dir / "plots")
        finished("plots")
    status["completed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(out_dir / "status.json", status)
    return out_dir


def _remove_stale_temp_files(out_dir: Path) -> None:
    """Delete the hidden ``.<name>.*.tmp`` files that a killed atomic write left in a run
    folder (never read: each is renamed into place only once complete). Checkpoints are left
    to their own code."""
    for tmp in out_dir.rglob(".*.tmp"):
        if "checkpoints" in tmp.relative_to(out_dir).parts or not tmp.is_file():
            continue
        log.info("removing %s, left by an interrupted write", tmp)
        tmp.unlink(missing_ok=True)


def _warn_unfinished(path: Path) -> None:
    """Log a warning when `path` (a run folder's ``status.json``) records an unfinished run."""
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("completed"):
        log.info("%s: replacing the completed run in this folder", path.parent)
        return
    done = old.get("finished") if isinstance(old, dict) else None
    log.warning(
        "%s holds a run that did not finish writing (finished parts: %s); writing every part again",
        path.parent,
        done,
    )


def input_checksums(path: Path) -> dict[str, str]:
    """sha256 of the input file, or of each Parquet file of an input folder (point clouds);
    {} when `path` is neither. Keys are the paths as strings."""
    if path.is_file():
        return {str(path): file_sha256(path)}
    if path.is_dir():
        files = sorted(f for f in path.glob("*.parquet") if not f.name.startswith("."))
        return {str(f): file_sha256(f) for f in files}
    return {}


def _write_plots(result: AnalysisResult, folder: Path) -> None:
    from sideband.evaluation import plots

    folder.mkdir(parents=True, exist_ok=True)
    info = result.after_cut.fit_info
    mjj_sr = result.data.mjj[result.sr_mask]
    mjj_sb = result.data.mjj[result.sb_mask]
    before = np.concatenate([mjj_sr, mjj_sb])
    after = np.concatenate(
        [mjj_sr[result.score_sr >= result.threshold], mjj_sb[result.score_sb >= result.threshold]]
    )
    edges = np.asarray(info["edges"])
    centres = 0.5 * (edges[1:] + edges[:-1])
    sr = result.signal_region
    plots.plot_mjj(
        before,
        after,
        bins=edges,
        sr=(sr.low_gev, sr.high_gev),
        fit=(centres, np.asarray(info["background"])),
        path=folder / "mjj_before_after_cut.png",
    )
    label = result.data.label
    if label is not None:
        y = label[result.sr_mask]
        plots.plot_scores(result.score_sr, y, path=folder / "scores.png")
        if 0 < y.sum() < len(y):
            plots.plot_roc(y, result.score_sr, path=folder / "roc.png")
            plots.plot_sic(y, result.score_sr, path=folder / "sic.png")
    else:
        plots.plot_scores(result.score_sr, None, path=folder / "scores.png")
