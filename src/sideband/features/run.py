"""Files of particles -> `FeatureTable`, through coffea's ``processor.Runner``.

coffea's Runner reads ROOT and Parquet files only. ROOT TTrees and Parquet files with flat jagged
particle columns (``part_pt``, ``part_eta``, ``part_phi``) go to the Runner directly; every other
particle file that `sideband.events.iter_particles` reads (LHCO raw HDF5, nested Parquet from
`sideband.events.write_particles`) is first converted chunk by chunk into flat Parquet files in a
temporary folder, which the Runner then processes (``format="parquet"``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from sideband.errors import ConfigError, InputError
from sideband.records import FeatureTable

__all__ = ["EXECUTORS", "extract_features"]

log = logging.getLogger(__name__)

#: Seconds to wait for a remote Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT_S = 30
#: Executors `extract_features` knows.
EXECUTORS: tuple[str, ...] = ("iterative", "futures", "dask")

#: Branch names of the flat Parquet files this module writes (same as sideband's ROOT files).
_FLAT = {"pt": "part_pt", "eta": "part_eta", "phi": "part_phi", "label": "label"}
_DUMMY_TREE = "Events"  # the Runner wants a tree name even for Parquet

PathLike = str | os.PathLike[str]


@contextmanager
def _make_executor(
    executor: str, *, workers: int, progress: bool, scheduler: str | None = None
) -> Iterator[Any]:
    """The coffea executor named `executor` (retries off: local files do not fail transiently,
    and coffea's retry warnings would hide the real error).

    ``"dask"`` connects a ``dask.distributed`` client to `scheduler` (an address such as
    ``tcp://host:8786``; the cluster is the user's) or, without one, starts a local cluster of
    `workers` single-threaded worker processes for the duration of the call.
    """
    from coffea import processor

    if scheduler is not None and executor != "dask":
        msg = f"a scheduler address only applies to executor='dask', not {executor!r}"
        raise ConfigError(msg)
    if executor == "iterative":
        yield processor.IterativeExecutor(status=progress, retries=0)
    elif executor == "futures":
        yield processor.FuturesExecutor(workers=workers, status=progress, retries=0)
    elif executor == "dask":
        with _dask_client(workers=workers, scheduler=scheduler) as client:
            yield processor.DaskExecutor(client=client, status=progress, retries=0)
    else:
        msg = f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}"
        raise ConfigError(msg)


@contextmanager
def _dask_client(*, workers: int, scheduler: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` on `scheduler`, or on a local cluster of `workers` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - distributed is a dependency
        msg = "executor 'dask' needs the `distributed` package: pip install distributed"
        raise ConfigError(msg) from err
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
        except OSError as err:
            msg = (
                f"cannot reach the Dask scheduler at {scheduler!r} ({err}); check the address "
                "(tcp://host:port) and that the scheduler is running"
            )
            raise ConfigError(msg) from None
        with client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, Client(cluster) as client:
        yield client


def _magic(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(4)


def _root_tree(path: Path, tree: str | None) -> tuple[str, int, list[str]]:
    """(tree name, entries, branch names) of a ROOT file's particle tree."""
    import uproot

    with uproot.open(path) as f:
        if tree is None:
            trees = sorted({k.split(";")[0] for k in f.keys(filter_classname="TTree")})
            if len(trees) != 1:
                msg = (
                    f"{path}: holds {len(trees)} TTrees {trees}; pass tree=NAME to choose the one "
                    "with the particle branches"
                )
                raise InputError(msg)
            tree = trees[0]
        if tree not in f:
            msg = f"{path}: has no TTree {tree!r}; it holds {sorted(f.keys())}"
            raise InputError(msg)
        t = f[tree]
        return tree, int(t.num_entries), list(t.keys())


def _direct_input(
    path: Path, *, tree: str | None, branches: Mapping[str, str]
) -> tuple[str, str, int] | None:
    """(format, tree, entries) if the Runner can read `path` as it is, else None."""
    magic = _magic(path)
    needed = [branches["pt"], branches["eta"], branches["phi"]]
    if magic == b"root":
        name, entries, found = _root_tree(path, tree)
        missing = [b for b in needed if b not in found]
        if missing:
            msg = (
                f"{path}: TTree {name!r} has no particle branch(es) {missing} (branches: "
                f"{sorted(found)[:20]}). Pass branches={{'pt': ..., 'eta': ..., 'phi': ...}} "
                "with the file's names; a features file is read with sideband.events.read_features."
            )
            raise InputError(msg)
        return "root", name, entries
    if magic == b"PAR1":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path)
        if all(b in meta.schema_arrow.names for b in needed):
            return "parquet", _DUMMY_TREE, int(meta.metadata.num_rows)
    return None


def _convert(
    path: Path,
    folder: Path,
    *,
    chunk_size: int,
    stop: int | None,
) -> list[str]:
    """Write `path`'s particles (any `sideband.events.iter_particles` format the Runner cannot
    read: LHCO raw HDF5, nested Parquet) as flat Parquet files, one per chunk, in `folder`."""
    from sideband.events import iter_particles

    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    for i, chunk in enumerate(iter_particles(path, chunk_size=chunk_size, stop=stop)):
        if len(chunk) == 0:
            continue
        parts = chunk["particles"]
        data = {
            "event_id": ak.values_astype(chunk["event_id"], np.int64),
            "label": ak.values_astype(chunk["label"], np.int8),
            **{_FLAT[k]: ak.values_astype(parts[k], np.float64) for k in ("pt", "eta", "phi")},
        }
        files.append(_write_flat(folder, i, data))
    log.debug("%s: converted to %d Parquet file(s) in %s", path, len(files), folder)
    return files


def _write_flat(folder: Path, i: int, data: Mapping[str, Any]) -> str:
    out = folder / f"chunk_{i:06d}.parquet"
    ak.to_parquet(ak.zip(dict(data), depth_limit=1), out)
    return str(out)


def _truncate(
    path: Path,
    folder: Path,
    *,
    kind: str,
    tree: str,
    names: Mapping[str, str],
    stop: int,
    chunk_size: int,
) -> list[str]:
    """The first `stop` events of a directly readable ROOT/Parquet file as flat Parquet files."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {"pt": names["pt"], "eta": names["eta"], "phi": names["phi"]}
    if kind == "root":
        import uproot

        with uproot.open(path) as f:
            t = f[tree]
            for key, branch in (("label", names["label"]), ("event_id", "event_id")):
                if branch in t:
                    wanted[key] = branch
            arrays = t.arrays(list(wanted.values()), entry_stop=stop, library="ak")
    else:
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(path).schema_arrow.names
        for key, branch in (("label", names["label"]), ("event_id", "event_id")):
            if branch in schema:
                wanted[key] = branch
        arrays = ak.from_parquet(path, columns=list(wanted.values()))[:stop]
    n = len(arrays)
    event_id = (
        ak.to_numpy(arrays[wanted["event_id"]]).astype(np.int64)
        if "event_id" in wanted
        else np.arange(n, dtype=np.int64)
    )
    label = (
        ak.to_numpy(arrays[wanted["label"]]).astype(np.int8)
        if "label" in wanted
        else np.full(n, -1, dtype=np.int8)
    )
    files = []
    for i, lo in enumerate(range(0, n, chunk_size)):
        hi = min(lo + chunk_size, n)
        files.append(
            _write_flat(
                folder,
                i,
                {
                    "event_id": event_id[lo:hi],
                    "label": label[lo:hi],
                    **{_FLAT[k]: arrays[wanted[k]][lo:hi] for k in ("pt", "eta", "phi")},
                },
            )
        )
    return files


def _as_paths(path_or_paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        msg = "extract_features got no input files; pass a path or a list of paths"
        raise InputError(msg)
    for p in paths:
        if not p.is_file():
            msg = f"{p}: no such file (or not a regular file); check the path"
            raise InputError(msg)
    return paths


def extract_features(
    path_or_paths: PathLike | Sequence[PathLike],
    *,
    executor: str = "iterative",
    workers: int = 1,
    chunk_size: int = 10_000,
    max_events: int | None = None,
    progress: bool = True,
    r: float = 1.0,
    min_jet_pt_gev: float = 20.0,
    axes: str = "KT_Axes",
    tree: str | None = None,
    branches: Mapping[str, str] | None = None,
    tmp_dir: PathLike | None = None,
    scheduler: str | None = None,
) -> FeatureTable:
    """Cluster the particles of one or more files and return their dijet features.

    Runs `sideband.features.processor.DijetFeatureProcessor` through coffea's
    ``processor.Runner`` (``BaseSchema``).

    Parameters
    ----------
    path_or_paths
        One particle file or a list: LHCO R&D raw HDF5, ROOT (TTree with jagged particle
        branches) or Parquet (flat ``part_*`` columns, or as written by
        `sideband.events.write_particles`).
    executor
        ``"iterative"`` (one process), ``"futures"`` (`workers` processes) or ``"dask"``
        (Dask distributed: a local cluster of `workers` processes, or the cluster behind
        `scheduler`).
    workers
        Worker processes for ``"futures"`` and a local ``"dask"`` cluster.
    chunk_size
        Events per Runner chunk (and per converted Parquet file).
    max_events
        Process only the first `max_events` events (over all files, in the order given).
    progress
        Show coffea's progress bars.
    r, min_jet_pt_gev, axes
        Anti-kT radius, jet pT threshold [GeV] and N-subjettiness axes (see
        `sideband.features.substructure.NSUBJETTINESS_AXES`).
    tree, branches
        The TTree name of ROOT inputs (default: the file's only TTree), and the branch (column)
        names ``{"pt": ..., "eta": ..., "phi": ..., "label": ...}`` of ROOT and flat Parquet
        inputs (default ``part_pt``, ``part_eta``, ``part_phi``, ``label``); an ``event_id``
        branch is used where present, else the row index.
    tmp_dir
        Where the temporary Parquet folder is made (default: the system's temp folder). With a
        remote Dask `scheduler` it must be on a file system the workers see, as must the
        inputs.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``) for ``executor="dask"``,
        e.g. one started by dask-jobqueue's ``HTCondorCluster`` or ``SLURMCluster``
        (``cluster.scheduler_address``).

    Returns
    -------
    FeatureTable with one row per event that has two jets: the columns of
    `sideband.records.FEATURE_COLUMNS` [GeV], ``event_id`` = the event's row index in its input
    file (or its ``event_id`` branch) and labels where every event is labelled. Rows follow the
    order of the files, then of ``event_id``. Counts of dropped events are logged (INFO).
    """
    from coffea import processor
    from coffea.nanoevents import BaseSchema

    from sideband.features.processor import DijetFeatureProcessor, collect_features

    paths = _as_paths(path_or_paths)
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size <= 0:
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
        raise InputError(msg)
    if max_events is not None and (int(max_events) != max_events or max_events < 0):
        msg = f"max_events must be None or an integer >= 0, got {max_events!r}"
        raise InputError(msg)
    if int(workers) != workers or workers < 1:
        msg = f"workers must be a positive integer, got {workers!r}"
        raise InputError(msg)
    names = {**_FLAT, **(branches or {})}
    unknown = sorted(set(names) - set(_FLAT))
    if unknown:
        msg = f"branches has unknown key(s) {unknown}; use keys {sorted(_FLAT)}"
        raise InputError(msg)
    settings: dict[str, Any] = {"r": r, "min_jet_pt_gev": min_jet_pt_gev, "axes": axes}
    DijetFeatureProcessor(**settings)  # validates the settings before any work
    remaining = max_events
    tables: list[FeatureTable] = []
    with (
        _make_executor(
            executor, workers=int(workers), progress=progress, scheduler=scheduler
        ) as executor_obj,
        tempfile.TemporaryDirectory(prefix="sideband-features-", dir=tmp_dir) as tmp,
    ):
        for index, path in enumerate(paths):
            if remaining == 0:
                break
            dataset = f"{index}:{path}"
            direct = _direct_input(path, tree=tree, branches=names)
            proc_names = _FLAT
            if direct is not None and (remaining is None or direct[2] <= remaining):
                fmt, treename, n_rows = direct
                files = [str(path)]
                proc_names = names
            elif direct is not None and remaining is not None:  # only its first rows wanted
                fmt, treename = "parquet", _DUMMY_TREE
                files = _truncate(
                    path,
                    Path(tmp) / f"input_{index:04d}",
                    kind=direct[0],
                    tree=direct[1],
                    names=names,
                    stop=remaining,
                    chunk_size=int(chunk_size),
                )
                n_rows = sum(_parquet_rows(f) for f in files)
            else:
                fmt, treename = "parquet", _DUMMY_TREE
                files = _convert(
                    path,
                    Path(tmp) / f"input_{index:04d}",
                    chunk_size=int(chunk_size),
                    stop=remaining,
                )
                n_rows = sum(_parquet_rows(f) for f in files)
            if remaining is not None:
                remaining -= n_rows
            if not files:
                log.warning("%s: no events to process", path)
                continue
            proc = DijetFeatureProcessor(
                pt_branch=proc_names["pt"],
                eta_branch=proc_names["eta"],
                phi_branch=proc_names["phi"],
                label_branch=proc_names["label"],
                **settings,
            )
            runner = processor.Runner(
                executor_obj,
                chunksize=int(chunk_size),
                schema=BaseSchema,
                format=fmt,
            )
            log.info("%s: clustering %d events (%s, %s executor)", path, n_rows, fmt, executor)
            out = runner({dataset: {"files": files, "treename": treename}}, proc)
            found = collect_features(out, source=str(path))
            if dataset not in found:
                log.warning("%s: produced no output chunks", path)
                continue
            tables.append(found[dataset])
    if not tables:
        msg = f"no events were processed from {[str(p) for p in paths]} (max_events={max_events})"
        raise InputError(msg)
    if len({t.label is None for t in tables}) > 1:
        log.warning("some inputs are unlabelled: the combined table keeps no labels")
        tables = [FeatureTable(t.columns, t.event_id, None, source=t.source) for t in tables]
    table = tables[0] if len(tables) == 1 else FeatureTable.concatenate(tables)
    source = ", ".join(str(p) for p in paths)
    return FeatureTable(table.columns, table.event_id, table.label, source=source)


def _parquet_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)
