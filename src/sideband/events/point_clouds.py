"""Parquet files of jet point clouds (`sideband.records.PointCloudTable`).

One row per event: ``event_id`` (int64), ``label`` (int8, when labelled), ``mjj`` (float64, GeV),
for each jet k in (1, 2) the kinematics ``jetk_pt``, ``jetk_eta``, ``jetk_phi``, ``jetk_m``
(float64, GeV) and ``jetk_n_constituents`` (int32), and ``jetk_constituents``: the jet's real
constituents, hardest first, as ``list<struct<pt_rel, deta, dphi>>`` (float32; no padding is
stored). The schema metadata records ``sideband.content = point_clouds``, the units and
``sideband.max_constituents`` (M). `read_point_clouds` pads back to (N, 2, M, 3) with a mask; it
reads one file or a folder of them (the chunk files of `sideband.features.extract_features`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.events.formats import PathLike, atomic_output, check_readable
from sideband.records import CONSTITUENT_FEATURES, PointCloudTable

__all__ = ["read_point_clouds", "write_point_clouds"]

logger = logging.getLogger(__name__)

_KINEMATICS = ("pt", "eta", "phi", "m")


def write_point_clouds(path: PathLike, table: PointCloudTable) -> Path:
    """Write `table` to the Parquet file `path` (atomically: temp file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not isinstance(table, PointCloudTable):
        msg = f"write_point_clouds needs a PointCloudTable, got {type(table).__name__}"
        raise InputError(msg)
    columns: dict[str, pa.Array] = {"event_id": pa.array(table.event_id, type=pa.int64())}
    if table.label is not None:
        columns["label"] = pa.array(table.label, type=pa.int8())
    columns["mjj"] = pa.array(table.mjj, type=pa.float64())
    for k in (0, 1):
        for i, name in enumerate(_KINEMATICS):
            columns[f"jet{k + 1}_{name}"] = pa.array(table.jets[:, k, i], type=pa.float64())
        columns[f"jet{k + 1}_n_constituents"] = pa.array(
            table.jets[:, k, 4].astype(np.int32), type=pa.int32()
        )
        counts = table.mask[:, k].sum(axis=1)
        values = table.constituents[:, k][table.mask[:, k]]  # (sum counts, 3), hardest first
        records = ak.zip(
            {
                name: np.ascontiguousarray(values[:, j])
                for j, name in enumerate(CONSTITUENT_FEATURES)
            },
            depth_limit=1,
        )
        columns[f"jet{k + 1}_constituents"] = ak.to_arrow(
            ak.unflatten(records, counts), extensionarray=False
        )
    tbl = pa.table(columns).replace_schema_metadata(
        {
            "sideband.content": "point_clouds",
            "sideband.units": "GeV",
            "sideband.max_constituents": str(table.max_constituents),
            "sideband.constituent_features": ",".join(CONSTITUENT_FEATURES),
        }
    )
    with atomic_output(p) as tmp:
        pq.write_table(tbl, tmp, row_group_size=10_000)
    logger.debug("wrote %d point clouds to %s", len(table), p)
    return p


def _files(path: PathLike) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.parquet") if not f.name.startswith("."))
        if not files:
            msg = f"{p}: folder holds no .parquet point-cloud files; check the path"
            raise InputError(msg)
        return files
    return [check_readable(p)]


def read_point_clouds(path: PathLike, *, max_constituents: int | None = None) -> PointCloudTable:
    """Read point clouds written by `write_point_clouds` (a file, or a folder of files in name
    order) into one `PointCloudTable`.

    `max_constituents` sets M of the result (default: as written); a smaller M keeps each
    jet's hardest constituents.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in _files(path):
        try:
            pf = pq.ParquetFile(f)
            meta = pf.schema_arrow.metadata or {}
            if meta.get(b"sideband.content") != b"point_clouds":
                msg = (
                    f"{f}: is not a sideband point-cloud file (no 'sideband.content = "
                    "point_clouds' in its schema); write it with write_point_clouds"
                )
                raise InputError(msg)
            stored = int(meta[b"sideband.max_constituents"])
            arrays = ak.from_arrow(pf.read())
        except (pa.ArrowException, OSError) as err:
            msg = f"{f}: cannot be read as Parquet ({err}); the file is truncated or corrupt"
            raise InputError(msg) from err
        m = stored if max_constituents is None else int(max_constituents)
        tables.append(_to_table(arrays, m, str(f)))
    return PointCloudTable.concatenate(tables) if len(tables) > 1 else tables[0]


def _to_table(arrays: ak.Array, m: int, source: str) -> PointCloudTable:
    n = len(arrays)
    cons = np.zeros((n, 2, m, len(CONSTITUENT_FEATURES)), dtype=np.float32)
    mask = np.zeros((n, 2, m), dtype=bool)
    jets = np.zeros((n, 2, len(_KINEMATICS) + 1))
    for k in (0, 1):
        c = arrays[f"jet{k + 1}_constituents"][:, :m]
        for j, name in enumerate(CONSTITUENT_FEATURES):
            cons[:, k, :, j] = ak.to_numpy(ak.fill_none(ak.pad_none(c[name], m, clip=True), 0.0))
        mask[:, k] = np.arange(m) < ak.to_numpy(ak.num(c, axis=1))[:, None]
        for i, name in enumerate(_KINEMATICS):
            jets[:, k, i] = ak.to_numpy(arrays[f"jet{k + 1}_{name}"])
        jets[:, k, 4] = ak.to_numpy(arrays[f"jet{k + 1}_n_constituents"])
    label = ak.to_numpy(arrays["label"]) if "label" in arrays.fields else None
    return PointCloudTable(
        cons,
        mask,
        jets,
        ak.to_numpy(arrays["mjj"]),
        ak.to_numpy(arrays["event_id"]),
        label,
        source=source,
    )
