"""Per-event results of an analysis, written back beside the input: Parquet, and a ROOT friend tree.

One row per analysed event, in the input's row order, with the identifiers needed to join it back
to the input: ``event_id`` (the row index in the input file for LHCO and sideband files, or the
input's own identifier) and, where the input has them, ``run``, ``luminosityBlock`` and ``event``
(`sideband.records.EVENT_IDENTIFIERS`). Columns (`EVENT_RESULT_COLUMNS`, identical in both formats):

===============  =======  ==================================================================
``event_id``     int64    row index in the input (or the input's identifier)
``run`` ...      int64    the input's run, luminosityBlock, event (only where it has them)
``mjj``          float64  dijet invariant mass [GeV]
``region``       int8     `REGION_CODES`: 2 SR, 1 sideband, 0 outside both, -1 not analysed
``chain``        int32    cross-fitting chain whose template and classifier scored the event
``fold``         int32    k-fold classifier (within its chain) that scored the event
``score``        float64  anomaly score (NaN where not scored: outside SR and sidebands)
``passes_cut``   bool     score >= the analysis's threshold
``label``        int8     truth label, only where the input is labelled
===============  =======  ==================================================================

``chain`` and ``fold`` are -1 where no classifier scored the event. SR events are scored by the
one fold classifier that never trained on them; sideband events by one seeded random fold
classifier of their chain (`sideband.scoring.kfold.score_by_fold`).

A ROOT friend tree joins by entry number, so the tree must have one entry per input entry in
the same order: `write_event_results` with ``n_entries`` pads the rows to every entry of the
input (``event_id`` must then be the entry index: LHCO files, or features made by
``sideband features`` from a single file), marking events that were never analysed (e.g. fewer
than two jets) with ``region = -1``. Without it, join by identifier
(``friend->BuildIndex("run", "event")`` in ROOT, or a merge on the columns in pandas).

Files are written atomically, and a rerun with the same seed writes byte-identical files: the
ROOT file's UUID is derived from its name and its time stamps are fixed (``SOURCE_DATE_EPOCH``
when set, else 1995-01-01, ROOT's epoch), since a rerun must not differ by when it ran.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sideband.errors import InputError
from sideband.report import atomic_write

if TYPE_CHECKING:
    from sideband.pipeline import AnalysisResult

__all__ = [
    "EVENT_RESULTS_TREE",
    "EVENT_RESULT_COLUMNS",
    "REGION_CODES",
    "event_results",
    "read_event_results",
    "write_event_results",
]

#: Region codes of the ``region`` column.
REGION_CODES: dict[str, int] = {"not_analysed": -1, "outside": 0, "sideband": 1, "SR": 2}

#: Columns and dtypes, in file order (identifiers and ``label`` only where the input has them).
EVENT_RESULT_COLUMNS: dict[str, str] = {
    "event_id": "int64",
    "run": "int64",
    "luminosityBlock": "int64",
    "event": "int64",
    "mjj": "float64",
    "region": "int8",
    "chain": "int32",
    "fold": "int32",
    "score": "float64",
    "passes_cut": "bool",
    "label": "int8",
}

#: Name of the TTree that `write_event_results` writes to ``.root`` files.
EVENT_RESULTS_TREE = "sideband"

_ROOT_EPOCH = datetime.datetime(1995, 1, 1)
_ROOT_TIME_LOCK = threading.Lock()


def event_results(result: AnalysisResult) -> dict[str, np.ndarray]:
    """The per-event columns of an analysis (see the module docstring), in the input's row order.

    Returns a dict name -> array (N,) over the events of ``result.data``.
    """
    data = result.data
    n = len(data)
    sr, sb = np.asarray(result.sr_mask), np.asarray(result.sb_mask)
    score = np.full(n, np.nan)
    score[sr], score[sb] = result.score_sr, result.score_sb
    region = np.full(n, REGION_CODES["outside"], dtype=np.int8)
    region[sb], region[sr] = REGION_CODES["sideband"], REGION_CODES["SR"]
    chain = np.full(n, -1, dtype=np.int32)
    fold = np.full(n, -1, dtype=np.int32)
    for mask, c, f in (
        (sr, result.chain_sr, result.fold_sr),
        (sb, result.chain_sb, result.fold_sb),
    ):
        if c is not None:
            chain[mask] = c
        if f is not None:
            fold[mask] = f
    columns: dict[str, np.ndarray] = {"event_id": np.asarray(data.event_id, dtype=np.int64)}
    for name, values in getattr(data, "ids", {}).items():
        columns[name] = np.asarray(values, dtype=np.int64)
    columns |= {
        "mjj": np.asarray(data.mjj, dtype=np.float64),
        "region": region,
        "chain": chain,
        "fold": fold,
        "score": score,
        "passes_cut": np.where(np.isnan(score), False, score >= result.threshold),
    }
    if data.label is not None:
        columns["label"] = np.asarray(data.label, dtype=np.int8)
    return columns


def _check_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    unknown = sorted(set(columns) - set(EVENT_RESULT_COLUMNS))
    missing = sorted({"event_id", "mjj", "region", "score"} - set(columns))
    if unknown or missing:
        msg = (
            f"per-event results need the columns {list(EVENT_RESULT_COLUMNS)}; "
            + (f"unknown {unknown}" if unknown else f"missing {missing}")
            + ". Build them with sideband.event_results.event_results(result)."
        )
        raise InputError(msg)
    out = {
        name: np.asarray(columns[name]).astype(dtype, copy=False)
        for name, dtype in EVENT_RESULT_COLUMNS.items()
        if name in columns
    }
    n = len(out["event_id"])
    bad = {k: v.shape for k, v in out.items() if v.shape != (n,)}
    if bad:
        msg = f"per-event result columns must all have shape ({n},); got {bad}"
        raise InputError(msg)
    return out


def pad_to_entries(columns: Mapping[str, np.ndarray], n_entries: int) -> dict[str, np.ndarray]:
    """Rows for every entry ``0 .. n_entries - 1`` of the input (a friend tree by entry number).

    ``event_id`` must hold distinct entry indices in ``[0, n_entries)``. Entries without a row get
    ``region = -1``, ``chain = fold = -1``, ``score = mjj = NaN``, ``passes_cut = False``,
    ``label = -1`` and identifiers -1.
    """
    cols = _check_columns(columns)
    event_id = cols["event_id"]
    if n_entries < 0 or (len(event_id) and (event_id.min() < 0 or event_id.max() >= n_entries)):
        msg = (
            f"event_id values lie in [{event_id.min() if len(event_id) else 0}, "
            f"{event_id.max() if len(event_id) else 0}], outside the input's {n_entries} entries: "
            "they are not entry indices of this input. Check n_entries (the input's number of "
            "events) or write without n_entries and join by identifier instead"
        )
        raise InputError(msg)
    if len(np.unique(event_id)) != len(event_id):
        msg = (
            "event_id has repeated values, so the rows cannot be aligned to input entries; "
            "write without n_entries and join by (run, luminosityBlock, event) instead"
        )
        raise InputError(msg)
    fill = {"mjj": np.nan, "score": np.nan, "passes_cut": False, "region": -1}
    out: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        full = np.full(n_entries, fill.get(name, -1), dtype=values.dtype)
        full[event_id] = values
        out[name] = full
    out["event_id"] = np.arange(n_entries, dtype=np.int64)
    return out


def write_event_results(
    columns: Mapping[str, Any] | AnalysisResult,
    path: str | os.PathLike[str],
    *,
    n_entries: int | None = None,
    tree: str = EVENT_RESULTS_TREE,
) -> Path:
    """Write per-event results to ``.parquet`` or ``.root`` (TTree `tree`), atomically.

    Parameters
    ----------
    columns
        The columns of `event_results`, or an `AnalysisResult` to take them from.
    path
        Output file; its suffix picks the format.
    n_entries
        Pad the rows to every entry of the input (see `pad_to_entries`), for a ROOT friend tree
        aligned by entry number. None: one row per analysed event.
    tree
        TTree name in ROOT files.

    Returns
    -------
    The path. The Parquet schema metadata records the region codes and units.
    """
    if not isinstance(columns, Mapping):
        columns = event_results(columns)
    cols = _check_columns(columns)
    if n_entries is not None:
        cols = pad_to_entries(cols, int(n_entries))
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return atomic_write(p, lambda tmp: _write_parquet(cols, tmp))
    if suffix == ".root":
        return _write_root(cols, p, tree)
    msg = f"{p}: cannot write per-event results with suffix {p.suffix!r}; use .parquet or .root"
    raise InputError(msg)


def _write_parquet(cols: Mapping[str, np.ndarray], path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(dict(cols)).replace_schema_metadata(
        {
            "sideband.content": "event_results",
            "sideband.region_codes": json.dumps(REGION_CODES),
            "sideband.units": json.dumps({"mjj": "GeV"}),
        }
    )
    pq.write_table(table, path)


@contextlib.contextmanager
def _fixed_root_time() -> Iterator[None]:
    """Make uproot stamp a fixed time (``SOURCE_DATE_EPOCH`` or 1995-01-01) into what it writes.

    uproot takes ``datetime.datetime.now()`` in several writing modules and offers no option, so
    their module-level ``datetime`` is swapped for the duration (under a lock).
    """
    import uproot.writing._cascade as cascade
    import uproot.writing._cascadetree as cascadetree
    from uproot.writing import writable

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc).replace(tzinfo=None)
        if epoch and epoch.isdigit()
        else _ROOT_EPOCH
    )

    class _Fixed(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:
            return when

    class _Module:
        def __getattr__(self, name: str) -> Any:
            return _Fixed if name == "datetime" else getattr(datetime, name)

    modules = [m for m in (cascade, cascadetree, writable) if hasattr(m, "datetime")]
    with _ROOT_TIME_LOCK:
        saved = [m.datetime for m in modules]
        try:
            for m in modules:
                m.datetime = _Module()  # type: ignore[assignment]
            yield
        finally:
            for m, old in zip(modules, saved, strict=True):
                m.datetime = old


def _write_root(cols: Mapping[str, np.ndarray], path: Path, tree: str) -> Path:
    """TTree `tree` in a new ROOT file `path`, atomically.

    ROOT stores the file's name inside the file, so it is written under its final name in a
    temporary folder beside `path` and then moved into place.
    """
    import uproot

    from sideband.report import new_file_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    file_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"sideband:event_results:{path.name}")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as folder:
        tmp = Path(folder) / path.name
        with _fixed_root_time(), uproot.recreate(tmp, uuid_function=lambda: file_uuid) as fh:
            t = fh.mktree(
                tree, {k: v.dtype for k, v in cols.items()}, title="sideband per-event results"
            )
            t.extend(dict(cols))
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    return path


def read_event_results(
    path: str | os.PathLike[str], *, tree: str = EVENT_RESULTS_TREE
) -> dict[str, np.ndarray]:
    """Read per-event results written by `write_event_results` (Parquet or ROOT) as numpy columns."""
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: no such file; write it with sideband.event_results.write_event_results"
        raise InputError(msg)
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
            out = {name: table[name].to_numpy() for name in table.column_names}
        else:
            import uproot

            with uproot.open(p) as fh:
                if tree not in fh:
                    msg = f"{p}: no TTree {tree!r}; it has {sorted(fh.keys(cycle=False))}"
                    raise InputError(msg)
                out = fh[tree].arrays(library="np")
    except InputError:
        raise
    except Exception as err:
        msg = f"{p}: cannot read per-event results ({err}); the file is truncated or corrupt"
        raise InputError(msg) from err
    return _check_columns(out)
