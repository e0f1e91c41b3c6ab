"""CATHODE ``.npy`` feature arrays (masses in TeV), converted to GeV at the reader.

The CATHODE release (Hallin et al., arXiv:2109.00546) ships float arrays of shape (N, 5) or
(N, 6) with columns ``[mjj, mj1, mj2 - mj1, tau21_j1, tau21_j2, (label)]``, where j1 is the
lighter of the two leading jets and mjj, mj1 and mj2 - mj1 are in **TeV**. sideband works in
GeV: `read_cathode_npy` multiplies the three masses by 1000, and `write_cathode_npy` divides
by 1000, so files stay interchangeable with the CATHODE code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sideband.errors import InputError
from sideband.events.formats import PathLike, atomic_output, check_readable
from sideband.records import FeatureTable

__all__ = ["CATHODE_COLUMNS", "count_cathode_npy", "read_cathode_npy", "write_cathode_npy"]

logger = logging.getLogger(__name__)

#: Feature columns of a CATHODE array, in order (label may follow).
CATHODE_COLUMNS: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2")
_MASS_COLUMNS = ("mjj", "mj1", "delta_mj")
_TEV_TO_GEV = 1000.0
#: A median m_JJ above this (in the file's units) cannot be TeV.
_MAX_TEV_MEDIAN = 50.0


def _load(p: Path) -> np.ndarray:
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        msg = (
            f"{p}: cannot be read as a .npy array ({err}); the file is truncated, corrupt or "
            "holds Python objects. Re-create it with numpy.save of a float array."
        )
        raise InputError(msg) from err


def _check_shape(arr: np.ndarray, p: Path) -> None:
    if arr.ndim != 2 or arr.shape[1] not in (5, 6) or arr.dtype.kind not in "fiu":
        msg = (
            f"{p}: holds a {arr.dtype} array of shape {arr.shape}; a CATHODE file is a float "
            f"array (N, 5) or (N, 6) with columns {[*CATHODE_COLUMNS, 'label']} (masses in TeV)"
        )
        raise InputError(msg)


def count_cathode_npy(path: PathLike) -> int:
    """Number of rows of a CATHODE .npy file (from its header)."""
    p = check_readable(path)
    arr = _load(p)
    _check_shape(arr, p)
    return int(arr.shape[0])


def read_cathode_npy(path: PathLike) -> FeatureTable:
    """Read a CATHODE .npy array into a FeatureTable, **converting TeV to GeV** (x 1000).

    Columns ``mjj``, ``mj1``, ``delta_mj`` (GeV) and ``tau21_j1``, ``tau21_j2``; no
    ``delta_r`` (the format has none). ``label`` from the 6th column if present;
    ``event_id`` is the row index in the file.

    Raises `InputError` if the array is not (N, 5|6), the labels are not 0/1, or the masses
    already look like GeV (median m_JJ > 50): write GeV features with `write_features` instead.
    """
    p = check_readable(path)
    arr = _load(p)
    _check_shape(arr, p)
    data = np.array(arr, dtype=np.float64)  # copy out of the memory map
    del arr
    n = data.shape[0]
    cols = {name: data[:, i].copy() for i, name in enumerate(CATHODE_COLUMNS)}
    finite = cols["mjj"][np.isfinite(cols["mjj"])]
    if finite.size and float(np.median(finite)) > _MAX_TEV_MEDIAN:
        msg = (
            f"{p}: median mjj is {float(np.median(finite)):.4g}, which is not TeV; CATHODE .npy "
            "files hold masses in TeV. Convert the file to TeV, or store GeV features as "
            "Parquet with sideband.events.write_features."
        )
        raise InputError(msg)
    for name in _MASS_COLUMNS:
        cols[name] *= _TEV_TO_GEV
    label = None
    if data.shape[1] == 6:
        raw = data[:, 5]
        ok = (raw == 0) | (raw == 1)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            msg = (
                f"{p}: column 6 (label) is {float(raw[row])} in row {row}; labels must be 0 "
                "(background) or 1 (signal)"
            )
            raise InputError(msg)
        label = raw.astype(np.int8)
    logger.info("%s: read %d CATHODE rows; converted mjj, mj1, delta_mj from TeV to GeV", p, n)
    return FeatureTable(cols, np.arange(n, dtype=np.int64), label, source=str(p))


def write_cathode_npy(path: PathLike, table: FeatureTable) -> Path:
    """Write a FeatureTable as a CATHODE .npy array, **converting GeV to TeV** (/ 1000).

    Columns ``[mjj, mj1, delta_mj, tau21_j1, tau21_j2, (label)]``, float64, so the file can be
    fed to the CATHODE reference code. Written atomically; returns `path`.
    """
    p = Path(path)
    missing = [c for c in CATHODE_COLUMNS if c not in table.columns]
    if missing:
        msg = f"{p}: the table lacks column(s) {missing} needed for the CATHODE format"
        raise InputError(msg)
    cols = [
        table.columns[c] / _TEV_TO_GEV if c in _MASS_COLUMNS else table.columns[c]
        for c in CATHODE_COLUMNS
    ]
    if table.label is not None:
        cols.append(table.label.astype(np.float64))
    arr = np.column_stack(cols) if len(table) else np.zeros((0, len(cols)))
    with atomic_output(p, suffix=".npy") as tmp, tmp.open("wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    return p
