"""Parquet files written by sideband: feature tables and particle events.

- Features: flat columns ``event_id`` (int64), ``mjj``, ``mj1``, ``delta_mj``, ``tau21_j1``,
  ``tau21_j2``, ``delta_r`` (float64, GeV) and optional ``label`` (int8); schema metadata
  ``sideband.content = features``, ``sideband.units = GeV``.
- Particles: the `sideband.events.iter_particles` layout, ``event_id`` (int64), ``label``
  (int8), ``particles``: list<struct<pt, eta, phi>> (GeV), in row groups of at most
  10,000 events so that streaming reads stay small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.events.formats import (
    FEATURE_FILE_COLUMNS,
    PathLike,
    atomic_output,
    check_label_column,
    check_particle_chunk,
    check_readable,
    particle_chunk,
)
from sideband.records import FeatureTable

__all__ = [
    "count_parquet",
    "iter_particles_parquet",
    "parquet_kind",
    "read_features_parquet",
    "write_features_parquet",
    "write_particles_parquet",
]

logger = logging.getLogger(__name__)

_ROW_GROUP_EVENTS = 10_000
_BATCH_ROWS = 262_144


def _parquet_file(p: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as err:
        msg = (
            f"{p}: cannot be read as Parquet ({err}); the file is truncated or corrupt. "
            "Re-create it."
        )
        raise InputError(msg) from err


def parquet_kind(path: PathLike) -> str:
    """``"parquet_features"`` or ``"parquet_particles"`` from the file's schema."""
    p = check_readable(path)
    schema = _parquet_file(p).schema_arrow
    names = schema.names
    if "mjj" in names:
        return "parquet_features"
    if "particles" in names or len(_jagged_float_columns(schema)) >= 3:
        return "parquet_particles"
    msg = (
        f"{p}: Parquet columns {names} match neither a features file (columns "
        f"{list(FEATURE_FILE_COLUMNS)}, at least 'mjj') nor a particle file (event_id, label, "
        "particles; or flat jagged columns such as part_pt, part_eta, part_phi). Write files "
        "with sideband.events.write_features / write_particles."
    )
    raise InputError(msg)


def _jagged_float_columns(schema: Any) -> list[str]:
    """Names of the list<float> columns of an Arrow schema (flat jagged particle branches)."""
    import pyarrow as pa

    return [
        f.name
        for f in schema
        if (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))
        and pa.types.is_floating(f.type.value_type)
    ]


def count_parquet(path: PathLike) -> int:
    """Number of rows of a Parquet file (from its footer)."""
    return int(_parquet_file(check_readable(path)).metadata.num_rows)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def read_features_parquet(path: PathLike) -> FeatureTable:
    """Read a features Parquet file (see `write_features_parquet`) into a FeatureTable.

    Needs a float ``mjj`` column [GeV]; every other flat numeric column becomes a feature,
    except ``event_id`` (row index if absent), ``label`` and integer ``run``,
    ``luminosityBlock``, ``event`` (the table's `ids`). Read in record batches.
    """
    import pyarrow as pa

    p = check_readable(path)
    pf = _parquet_file(p)
    schema = pf.schema_arrow
    _check_metadata(p, schema.metadata or {})
    bad = [
        f"{f.name} ({f.type})"
        for f in schema
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]
    if bad or "mjj" not in schema.names:
        msg = (
            f"{p}: malformed features file: expected flat numeric columns "
            f"{list(FEATURE_FILE_COLUMNS)} (at least 'mjj'); "
            + (f"non-numeric columns {bad}" if bad else f"got {schema.names}")
        )
        raise InputError(msg)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in schema.names}
    try:
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS):
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                if column.null_count:
                    msg = f"{p}: column {name!r} has {column.null_count} missing (null) value(s)"
                    raise InputError(msg)
                chunks[name].append(column.to_numpy(zero_copy_only=False))
    except (pa.ArrowException, OSError) as err:
        msg = f"{p}: cannot read the data ({err}); the file is truncated or corrupt. Re-create it."
        raise InputError(msg) from err
    # a file without rows yields no batch: empty columns keep the schema's dtypes (integer
    # identifiers stay identifiers)
    data = {
        k: (np.concatenate(v) if v else np.zeros(0, dtype=schema.field(k).type.to_pandas_dtype()))
        for k, v in chunks.items()
    }
    if "label" in data:
        check_label_column(data["label"], p)
    return FeatureTable.from_dict(data, source=str(p))


def _check_metadata(p: Path, metadata: Mapping[bytes, bytes]) -> None:
    """`InputError` if the schema metadata of `write_features_parquet` says another content or
    unit than features in GeV (a file of another format or sideband version)."""
    content = metadata.get(b"sideband.content", b"features").decode(errors="replace")
    units = metadata.get(b"sideband.units", b"GeV").decode(errors="replace")
    if content != "features" or units != "GeV":
        msg = (
            f"{p}: its schema metadata says content {content!r} in units {units!r}, but this "
            "sideband reads features in 'GeV' (a file of another format or sideband version?). "
            "Re-create it with this version (sideband features, or "
            "sideband.events.write_features)."
        )
        raise InputError(msg)


def write_features_parquet(path: PathLike, table: FeatureTable) -> Path:
    """Write a FeatureTable to Parquet atomically (temporary file + `os.replace`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    arrays: dict[str, Any] = {"event_id": pa.array(table.event_id, type=pa.int64())}
    for name, values in table.ids.items():
        arrays[name] = pa.array(values, type=pa.int64())
    for name, values in table.columns.items():
        arrays[name] = pa.array(values, type=pa.float64())
    if table.label is not None:
        arrays["label"] = pa.array(table.label, type=pa.int8())
    tbl = pa.table(arrays).replace_schema_metadata(
        {"sideband.content": "features", "sideband.units": "GeV"}
    )
    with atomic_output(p) as tmp:
        pq.write_table(tbl, tmp)
    logger.info("wrote %d events (features) to %s", len(table), p)
    return p


# --------------------------------------------------------------------------------------------
# particles
# --------------------------------------------------------------------------------------------


def _empty_chunk() -> ak.Array:
    empty = ak.unflatten(np.zeros(0), np.zeros(0, dtype=np.int64))
    return particle_chunk(np.zeros(0, dtype=np.int64), None, empty, empty, empty)


def write_particles_parquet(path: PathLike, chunks: Iterable[ak.Array]) -> Path:
    """Stream chunks of the `iter_particles` layout into one Parquet file (atomically)."""
    import pyarrow.parquet as pq

    p = Path(path)
    n = 0
    with atomic_output(p) as tmp:
        writer = None
        try:
            for chunk in chunks:
                clean = check_particle_chunk(chunk, where=f"{p}: ")
                tbl = ak.to_arrow_table(clean, extensionarray=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, tbl.schema)
                writer.write_table(tbl, row_group_size=_ROW_GROUP_EVENTS)
                n += len(clean)
            if writer is None:  # no chunks: an empty file with the right schema
                tbl = ak.to_arrow_table(_empty_chunk(), extensionarray=False)
                writer = pq.ParquetWriter(tmp, tbl.schema)
                writer.write_table(tbl)
        finally:
            if writer is not None:
                writer.close()
    logger.info("wrote %d events (particles) to %s", n, p)
    return p


def iter_particles_parquet(
    path: PathLike,
    *,
    chunk_size: int = 10_000,
    start: int = 0,
    stop: int | None = None,
    branches: Mapping[str, str] | None = None,
) -> Iterator[ak.Array]:
    """Stream a particle Parquet file in chunks of `chunk_size` events.

    Two layouts are read: the nested one of `write_particles` (``event_id``, ``label``,
    ``particles: list<{pt, eta, phi}>``) and flat jagged columns, one list per quantity, named
    by `branches` (default `sideband.events.formats.DEFAULT_PARTICLE_BRANCHES`: ``part_pt``,
    ``part_eta``, ``part_phi`` [GeV] and ``label``; an ``event_id`` column is used where present,
    else the row index; a missing label column gives -1). Only the row groups overlapping
    ``[start, stop)`` are read, batch by batch.
    """
    from sideband.events.formats import DEFAULT_PARTICLE_BRANCHES

    p = check_readable(path)
    pf = _parquet_file(p)
    names = pf.schema_arrow.names
    n_rows = int(pf.metadata.num_rows)
    stop = n_rows if stop is None else min(stop, n_rows)
    start = min(start, stop)
    if {"event_id", "label", "particles"} <= set(names) and branches is None:
        return _rechunk(_iter_rows(pf, p, start, stop, chunk_size, None), chunk_size)
    flat = {**DEFAULT_PARTICLE_BRANCHES, **(branches or {})}
    missing = [flat[k] for k in ("pt", "eta", "phi") if flat[k] not in names]
    if missing:
        msg = (
            f"{p}: Parquet columns {missing} not found (columns: {names}). Pass "
            "branches={'pt': ..., 'eta': ..., 'phi': ...} with the file's jagged particle "
            "columns, or write the file with sideband.events.write_particles."
        )
        raise InputError(msg)
    return _rechunk(_iter_rows(pf, p, start, stop, chunk_size, flat), chunk_size)


def _flat_to_chunk(arr: ak.Array, flat: Mapping[str, str], first_row: int) -> ak.Array:
    """The `iter_particles` layout from a batch of flat jagged columns."""
    n = len(arr)
    fields = set(arr.fields)
    event_id = (
        ak.to_numpy(arr["event_id"]).astype(np.int64)
        if "event_id" in fields
        else np.arange(first_row, first_row + n, dtype=np.int64)
    )
    label = ak.to_numpy(arr[flat["label"]]) if flat["label"] in fields else None
    return particle_chunk(event_id, label, arr[flat["pt"]], arr[flat["eta"]], arr[flat["phi"]])


def _iter_rows(
    pf: Any, p: Path, start: int, stop: int, chunk_size: int, flat: Mapping[str, str] | None
) -> Iterator[ak.Array]:
    import pyarrow as pa

    columns = None
    if flat is not None:
        present = set(pf.schema_arrow.names)
        wanted = [flat["pt"], flat["eta"], flat["phi"], flat["label"], "event_id"]
        columns = list(dict.fromkeys(c for c in wanted if c in present))

    offset = 0
    for rg in range(pf.metadata.num_row_groups):
        rg_rows = pf.metadata.row_group(rg).num_rows
        lo, hi = offset, offset + rg_rows
        offset = hi
        if hi <= start or rg_rows == 0:
            continue
        if lo >= stop:
            break
        pos = lo
        try:
            for batch in pf.iter_batches(batch_size=chunk_size, row_groups=[rg], columns=columns):
                a, b = pos, pos + batch.num_rows
                pos = b
                if b <= start or a >= stop:
                    continue
                lo = max(start - a, 0)
                arr = ak.from_arrow(batch)[lo : min(stop, b) - a]
                if flat is not None:
                    arr = _flat_to_chunk(arr, flat, a + lo)
                yield check_particle_chunk(arr, where=f"{p}: ")
        except (pa.ArrowException, OSError) as err:
            msg = f"{p}: cannot read row group {rg} ({err}); the file is truncated or corrupt"
            raise InputError(msg) from err


def _rechunk(arrays: Iterator[ak.Array], size: int) -> Iterator[ak.Array]:
    buffer: list[ak.Array] = []
    held = 0
    for arr in arrays:
        buffer.append(arr)
        held += len(arr)
        while held >= size:
            cat = ak.concatenate(buffer) if len(buffer) > 1 else buffer[0]
            yield cat[:size]
            rest = cat[size:]
            buffer = [rest] if len(rest) else []
            held = len(rest)
    if held:
        yield ak.concatenate(buffer) if len(buffer) > 1 else buffer[0]
