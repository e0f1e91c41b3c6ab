"""Files of particles -> dijet features (and point clouds), chunk by chunk on coffea executors.

Every input (LHCO raw HDF5, ROOT TTrees with jagged particle branches, Parquet) is cut into work
items of at most ``chunk_size`` events, ``(file, entry start, entry stop)``. Each work item is read
on the worker with `sideband.events.iter_particles` (only its rows), wrapped as coffea NanoEvents
(``BaseSchema``) and processed by `sideband.features.processor.DijetFeatureProcessor`; coffea's
iterative, futures or Dask distributed executor maps the items and merges the outputs
(``coffea.processor.accumulate``). Memory therefore stays at one chunk per worker plus the
features, whatever the file size.

Resuming: with a checkpoint folder, each finished chunk's output is written there (atomically),
keyed by a hash of the processing settings and of the input file (path, size, modification time),
so a killed run restarts where it stopped and a run with other settings never reuses old chunks.
Point clouds are written per chunk to Parquet files in their own folder (never accumulated in
memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from sideband.errors import ConfigError, InputError
from sideband.records import EVENT_IDENTIFIERS, FeatureTable

__all__ = ["EXECUTORS", "ChunkTask", "WorkItem", "extract_features"]

log = logging.getLogger(__name__)

#: Seconds to wait for a remote Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT_S = 30
#: Executors `extract_features` knows.
EXECUTORS: tuple[str, ...] = ("iterative", "futures", "dask")

#: Default branch names of particle inputs, and the names the processor sees.
_FLAT = {
    "pt": "part_pt",
    "eta": "part_eta",
    "phi": "part_phi",
    "mass": "part_mass",
    "label": "label",
}

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


def _as_paths(path_or_paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        msg = "extract_features got no input files; pass a path or a list of paths"
        raise InputError(msg)
    from sideband.events.formats import check_readable

    for p in paths:
        check_readable(p)  # missing, a folder, or empty: each named with its fix
    return paths


@dataclass(frozen=True)
class WorkItem:
    """One chunk of one input file: rows ``[start, stop)`` of ``path`` (input number ``index``).

    ``id_offset`` is added to the chunk's ``event_id`` values (see `extract_features`).
    """

    index: int
    path: str
    start: int
    stop: int
    file_key: str
    id_offset: int = 0

    @property
    def dataset(self) -> str:
        return f"{self.index}:{self.path}"

    @property
    def name(self) -> str:
        """File-name stem of this chunk's outputs (input number and row range, zero padded)."""
        return f"input{self.index:04d}_{self.start:012d}-{self.stop:012d}"


def _file_key(path: Path) -> str:
    """Identity of an input file for checkpoints: its resolved path, size and mtime."""
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _settings_key(settings: Mapping[str, Any]) -> str:
    from sideband import __version__

    text = json.dumps({**settings, "sideband": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ChunkTask:
    """The function an executor maps over `WorkItem`s (picklable, so it runs on any worker).

    Reads the item's rows, runs the processor, writes the chunk's point clouds (if asked) and
    its checkpoint (if asked), and returns the processor's accumulator without the point clouds,
    plus ``n_chunks_computed`` / ``n_chunks_restored`` counters.
    """

    def __init__(
        self,
        processor: Any,
        *,
        tree: str | None,
        branches: Mapping[str, str] | None,
        checkpoint_dir: str | None,
        point_cloud_dir: str | None,
    ) -> None:
        self.processor = processor
        self.tree = tree
        self.branches = dict(branches) if isinstance(branches, Mapping) else branches
        self.checkpoint_dir = checkpoint_dir
        self.point_cloud_dir = point_cloud_dir

    def _checkpoint(self, item: WorkItem) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        # keyed by the file and rows only: the same chunk is found whatever the input list
        return Path(self.checkpoint_dir) / item.file_key / f"{item.start:012d}-{item.stop:012d}.pkl"

    def _cloud_file(self, item: WorkItem) -> Path | None:
        if self.point_cloud_dir is None:
            return None
        return Path(self.point_cloud_dir) / f"{item.name}.parquet"

    def __call__(self, item: WorkItem) -> dict[str, Any]:
        checkpoint = self._checkpoint(item)
        clouds = self._cloud_file(item)
        if checkpoint is not None and checkpoint.is_file() and (clouds is None or clouds.is_file()):
            try:
                with checkpoint.open("rb") as fh:
                    acc = pickle.load(fh)
                acc["n_chunks_restored"] = 1
                return _offset_ids({item.dataset: acc}, item)
            except Exception as err:  # noqa: BLE001 - a damaged checkpoint is recomputed
                log.warning(
                    "%s: unreadable checkpoint (%s); recomputing the chunk", checkpoint, err
                )
        out = self._process(item)
        acc = out[item.dataset]
        if clouds is not None:
            from dataclasses import replace

            from sideband.events.point_clouds import write_point_clouds

            table = acc.pop("point_clouds")[0]
            write_point_clouds(clouds, replace(table, event_id=table.event_id + item.id_offset))
        if checkpoint is not None:  # stored without the offset, which depends on the input list
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_name(f".{checkpoint.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                pickle.dump(acc, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, checkpoint)
        acc["n_chunks_computed"] = 1
        return _offset_ids(out, item)

    def _process(self, item: WorkItem) -> dict[str, Any]:
        from coffea.nanoevents import BaseSchema, NanoEventsFactory

        from sideband.events import iter_particles

        n = item.stop - item.start
        chunks = list(
            iter_particles(
                item.path,
                chunk_size=n,
                start=item.start,
                stop=item.stop,
                tree=self.tree,
                branches=self.branches,
            )
        )
        if len(chunks) != 1 or len(chunks[0]) != n:
            got = sum(len(c) for c in chunks)
            msg = f"{item.path}: rows {item.start}-{item.stop} gave {got} events, expected {n}"
            raise InputError(msg)
        chunk = chunks[0]
        source = _Columns(
            {
                "event_id": chunk["event_id"],
                "label": chunk["label"],
                _FLAT["pt"]: chunk["particles", "pt"],
                _FLAT["eta"]: chunk["particles", "eta"],
                _FLAT["phi"]: chunk["particles", "phi"],
                **(
                    {_FLAT["mass"]: chunk["particles", "mass"]}
                    if "mass" in ak.fields(chunk["particles"])
                    else {}
                ),
                # the input's run, luminosityBlock, event: the processor keeps them as ids
                **{k: chunk[k] for k in EVENT_IDENTIFIERS if k in ak.fields(chunk)},
            }
        )
        source.metadata = {"uuid": item.file_key, "num_rows": n, "object_path": "Events"}
        events = NanoEventsFactory.from_preloaded(
            source,
            schemaclass=BaseSchema,
            metadata={
                "dataset": item.dataset,
                "filename": item.path,
                "entrystart": item.start,
                "entrystop": item.stop,
            },
        ).events()
        return self.processor.process(events)


def _offset_ids(out: dict[str, Any], item: WorkItem) -> dict[str, Any]:
    if item.id_offset:
        acc = out[item.dataset]
        acc["event_id"] = [np.asarray(a) + item.id_offset for a in acc["event_id"]]
    return out


class _Columns(dict):  # type: ignore[type-arg]
    """A dict of awkward columns with the ``metadata`` attribute coffea's from_preloaded needs."""

    metadata: dict[str, Any]


def _plan(
    paths: Sequence[Path],
    *,
    chunk_size: int,
    max_events: int | None,
    tree: str | None,
    branches: Mapping[str, str] | None,
) -> list[WorkItem]:
    """The work items: each file cut into chunks, at most `max_events` rows over all files."""
    from sideband.events import count_events, detect_format

    items: list[WorkItem] = []
    remaining = max_events
    rows_before = 0  # rows of the earlier LHCO raw inputs: their event_id continues the count
    for index, path in enumerate(paths):
        fmt = detect_format(path)
        if fmt not in _PARTICLE_FORMATS:
            msg = (
                f"{path}: is a features file ({fmt}), not particles; read it with "
                "sideband.events.read_features (extract_features clusters particle files: LHCO "
                "raw HDF5, ROOT with jagged particle branches, Parquet)"
            )
            raise InputError(msg)
        n_rows = count_events(path, tree=tree)
        if remaining is not None:
            n_rows = min(n_rows, remaining)
            remaining -= n_rows
        if n_rows == 0:
            log.warning("%s: no events to process", path)
            continue
        # Open the first chunk now, so a missing branch or unreadable file fails here, once.
        from sideband.events import iter_particles

        next(iter(iter_particles(path, chunk_size=1, stop=1, tree=tree, branches=branches)))
        key = _file_key(path)
        offset = rows_before if fmt == "lhco_raw" else 0
        items.extend(
            WorkItem(index, str(path), a, min(a + chunk_size, n_rows), key, offset)
            for a in range(0, n_rows, chunk_size)
        )
        if fmt == "lhco_raw":
            rows_before += n_rows
    return items


_PARTICLE_FORMATS = ("lhco_raw", "parquet_particles", "root")


def _check_run_folder(folder: Path, settings: Mapping[str, Any], kind: str) -> None:
    """Create `folder`, or check that it holds chunks of the same settings (its ``run.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "run.json"
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = None
        if old != json.loads(json.dumps(settings, default=str)):
            msg = (
                f"{folder}: this {kind} folder holds chunks of another run (other inputs or "
                f"settings, see {manifest}); pass a new folder or delete this one"
            )
            raise ConfigError(msg)
        return
    tmp = manifest.with_name(f".run.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(settings, indent=2, default=str))
    os.replace(tmp, manifest)


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
    branches: str | Mapping[str, str] | None = None,
    scheduler: str | None = None,
    checkpoint_dir: PathLike | None = None,
    point_cloud_dir: PathLike | None = None,
    max_constituents: int = 279,
    with_summary: bool = False,
) -> FeatureTable | tuple[FeatureTable, dict[str, Any]]:
    """Cluster the particles of one or more files and return their dijet features.

    Each file is cut into chunks of `chunk_size` events, processed by
    `sideband.features.processor.DijetFeatureProcessor` on a coffea executor (see the module
    docstring); memory stays at about one chunk per worker.

    Parameters
    ----------
    path_or_paths
        One particle file or a list: LHCO R&D raw HDF5, ROOT (TTree with jagged particle
        branches) or Parquet (flat jagged ``part_*`` columns, or as written by
        `sideband.events.write_particles`).
    executor
        ``"iterative"`` (one process), ``"futures"`` (`workers` processes) or ``"dask"``
        (Dask distributed: a local cluster of `workers` processes, or the cluster behind
        `scheduler`).
    workers
        Worker processes for ``"futures"`` and a local ``"dask"`` cluster.
    chunk_size
        Events per work item.
    max_events
        Process only the first `max_events` events (over all files, in the order given).
    progress
        Show coffea's progress bar (one step per chunk).
    r, min_jet_pt_gev, axes
        Anti-kT radius, jet pT threshold [GeV] and N-subjettiness axes (see
        `sideband.features.substructure.NSUBJETTINESS_AXES`).
    tree, branches
        The TTree name of ROOT inputs (default: the file's only TTree), and the branch (column)
        names of ROOT and flat Parquet inputs: a preset of
        `sideband.events.formats.PARTICLE_BRANCH_PRESETS` (``"default"``: ``part_pt``,
        ``part_eta``, ``part_phi``, ``label``; ``"nanoaod"``/``"pfnano"``: ``PFCands_*``;
        ``"jmenano"``: ``PFCand_*``) or a mapping ``{"pt": ..., "eta": ..., "phi": ...,
        "mass": ..., "label": ..., "event_id": ...}`` (optionally with ``"preset"``). A mass
        branch, where present, makes the particles massive in the clustering; an ``event_id``
        branch is used where present, else the row index.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``) for ``executor="dask"``,
        e.g. one started by dask-jobqueue's ``HTCondorCluster`` or ``SLURMCluster``
        (``cluster.scheduler_address``). The inputs and folders must be on a file system the
        workers see.
    checkpoint_dir
        Folder for per-chunk checkpoints: a run killed mid-way and started again with the same
        arguments recomputes only the chunks that were not finished. A folder holding chunks of
        other settings or inputs is refused. None: no checkpoints.
    point_cloud_dir
        If given, also write the constituent point clouds of the two leading jets
        (`sideband.features.constituents.jet_point_clouds`, `max_constituents` slots per jet)
        there, one Parquet file per chunk (`sideband.events.read_point_clouds` reads the folder).
        The files double as checkpoints of the point clouds.
    max_constituents
        Constituent slots per jet of the point clouds (279 as in arXiv:2310.06897).
    with_summary
        Also return a dict of counts: ``n_events`` (seen), ``n_fewer_than_two_jets`` (kept out),
        ``n_kept``, ``n_chunks``, ``n_chunks_computed``, ``n_chunks_restored`` and ``mjj_hist``
        (a ``hist.Hist`` of the kept events' m_JJ [GeV]).

    Returns
    -------
    FeatureTable with one row per event that has two jets: the columns of
    `sideband.records.FEATURE_COLUMNS` [GeV], ``event_id`` = the event's row index in its input
    file (or its ``event_id`` branch) and labels where every event is labelled. The rows of an
    LHCO raw file given after other LHCO raw files continue their count (the first row of the
    second file is numbered by the rows of the first), so the ids of such a list stay unique.
    Rows follow the order of the files, then of ``event_id``. With `with_summary`,
    ``(table, summary)``.
    """
    from coffea.processor import accumulate

    from sideband.features.constituents import check_max_constituents
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
    from sideband.events.root import resolve_particle_branches

    names, _ = resolve_particle_branches(branches)  # checks preset names and keys
    if executor not in EXECUTORS:
        msg = f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}"
        raise ConfigError(msg)
    clouds = None if point_cloud_dir is None else check_max_constituents(max_constituents)
    proc = DijetFeatureProcessor(
        r=r, min_jet_pt_gev=min_jet_pt_gev, axes=axes, point_clouds=clouds
    )  # validates the settings before any work
    items = _plan(
        paths,
        chunk_size=int(chunk_size),
        max_events=max_events,
        tree=tree,
        branches=branches,
    )
    if not items:
        msg = f"no events were processed from {[str(p) for p in paths]} (max_events={max_events})"
        raise InputError(msg)
    settings = {
        "r": float(r),
        "min_jet_pt_gev": float(min_jet_pt_gev),
        "axes": axes,
        "mjj_bins": list(proc.mjj_bins),
        "tree": tree,
        "branches": names,
    }
    ck_dir = None
    if checkpoint_dir is not None:
        ck_dir = Path(checkpoint_dir) / _settings_key(settings)
        _check_run_folder(ck_dir, settings, "checkpoint")
    pc_dir = None
    if point_cloud_dir is not None:
        pc_dir = Path(point_cloud_dir)
        inputs = sorted({(i.index, i.path, i.file_key) for i in items})
        _check_run_folder(
            pc_dir,
            {
                **settings,
                "max_constituents": clouds,
                "chunk_size": int(chunk_size),
                "inputs": [list(x) for x in inputs],
            },
            "point-cloud",
        )
        if ck_dir is not None:  # point clouds of a chunk and its checkpoint go together
            ck_dir = ck_dir / f"clouds-{_settings_key({'m': clouds, 'dir': str(pc_dir.resolve())})}"
    task = ChunkTask(
        proc,
        tree=tree,
        branches=branches,
        checkpoint_dir=None if ck_dir is None else str(ck_dir),
        point_cloud_dir=None if pc_dir is None else str(pc_dir),
    )
    n_events = sum(i.stop - i.start for i in items)
    log.info(
        "clustering %d events in %d chunk(s) of <= %d (%s executor)",
        n_events,
        len(items),
        chunk_size,
        executor,
    )
    with _make_executor(
        executor, workers=int(workers), progress=progress, scheduler=scheduler
    ) as executor_obj:
        result = executor_obj(items, task, {})
    out = result[0] if isinstance(result, tuple) else result
    out = accumulate([out])
    if pc_dir is not None:  # chunk files of an earlier, longer run (e.g. other max_events)
        current = {f"{item.name}.parquet" for item in items}
        for stale in pc_dir.glob("input*.parquet"):
            if stale.name not in current:
                log.info("%s: removing a point-cloud chunk of an earlier run", stale)
                stale.unlink()
    found = collect_features(out)
    tables = [found[d] for d in dict.fromkeys(i.dataset for i in items) if d in found]
    if len({t.label is None for t in tables}) > 1:
        log.warning("some inputs are unlabelled: the combined table keeps no labels")
        tables = [FeatureTable(t.columns, t.event_id, None, t.ids, source=t.source) for t in tables]
    table = tables[0] if len(tables) == 1 else FeatureTable.concatenate(tables)
    source = ", ".join(str(p) for p in paths)
    table = FeatureTable(table.columns, table.event_id, table.label, table.ids, source=source)
    summary = _summary(out, len(items))
    log.info(
        "%d events: %d kept, %d with fewer than two jets kept out; chunks: %d computed, "
        "%d restored from checkpoints",
        summary["n_events"],
        summary["n_kept"],
        summary["n_fewer_than_two_jets"],
        summary["n_chunks_computed"],
        summary["n_chunks_restored"],
    )
    return (table, summary) if with_summary else table


def _summary(out: Mapping[str, Mapping[str, Any]], n_chunks: int) -> dict[str, Any]:
    accs = list(out.values())
    hist_total = None
    for acc in accs:
        hist_total = acc["mjj_hist"] if hist_total is None else hist_total + acc["mjj_hist"]
    count = {
        key: int(sum(acc.get(key, 0) for acc in accs))
        for key in ("n_events", "n_fewer_than_two_jets", "n_chunks_computed", "n_chunks_restored")
    }
    return {
        **count,
        "n_kept": count["n_events"] - count["n_fewer_than_two_jets"],
        "n_chunks": n_chunks,
        "mjj_hist": hist_total,
    }
