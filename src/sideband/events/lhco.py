"""LHC Olympics 2020 R&D HDF5 files: raw particles and high-level jet features.

Both are pandas "fixed" frames under key ``df`` (data in ``df/block0_values``, one float64
block), blosc compressed (HDF5 filter 32001). They are read here with h5py in row slices, after
``import hdf5plugin`` registers the blosc filter, so memory stays flat even for the 1.1M-event
raw file (17 GB uncompressed). Written with PyTables / pandas so that `pandas.read_hdf` reads
them too.

- Raw: shape (N, 3 * P [+ 1]); columns ``3k, 3k+1, 3k+2`` = (pT [GeV], eta, phi) of particle
  ``k`` (P = 700 in the official files), zero padded, label (1 signal, 0 QCD) last if present.
- Features: columns ``pxj1 pyj1 pzj1 mj1 tau1j1 tau2j1 tau3j1 pxj2 pyj2 pzj2 mj2 tau1j2 tau2j2
  tau3j2 [label]``, GeV, j1 = pT-leading anti-kT R = 1 jet.

Reference: G. Kasieczka, B. Nachman, D. Shih et al., arXiv:2101.08320.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.events.formats import PathLike, atomic_output, check_readable, particle_chunk
from sideband.features.substructure import dijet_features
from sideband.records import FeatureTable

__all__ = [
    "LHCO_JET_COLUMNS",
    "LhcoLayout",
    "dijet_features",
    "inspect_lhco",
    "iter_lhco_raw",
    "read_lhco_features",
    "write_lhco_features",
    "write_lhco_raw",
]

logger = logging.getLogger(__name__)

#: The 14 jet columns of the LHCO high-level features file, in file order (label follows).
LHCO_JET_COLUMNS: tuple[str, ...] = (
    "pxj1",
    "pyj1",
    "pzj1",
    "mj1",
    "tau1j1",
    "tau2j1",
    "tau3j1",
    "pxj2",
    "pyj2",
    "pzj2",
    "mj2",
    "tau1j2",
    "tau2j2",
    "tau3j2",
)

_READ_ROWS = 100_000  # rows per slice when reading the features file
_WRITE_ROWS = 5_000  # events per slice when writing the raw file
_BLOSC_HELP = (
    "the file is blosc-compressed (HDF5 filter 32001) and h5py cannot find the filter: "
    "install `hdf5plugin` (pip install hdf5plugin) in this environment"
)


class LhcoLayout(NamedTuple):
    """What `inspect_lhco` found in an LHCO HDF5 file."""

    kind: str  # "lhco_raw" or "lhco_features"
    n_rows: int
    columns: tuple[str, ...] | tuple[int, ...]
    has_label: bool
    n_particles: int  # particle slots per event (raw), 0 for features


def _import_blosc() -> None:
    try:
        import hdf5plugin  # noqa: F401  (registers the blosc filter with h5py)
    except ImportError:  # pragma: no cover - hdf5plugin is a dependency
        logger.warning("hdf5plugin is not installed; blosc-compressed LHCO files will not read")


def _open_h5(path: Path) -> Any:
    import h5py

    _import_blosc()
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = (
            f"{path}: cannot be opened as HDF5 ({err}); the file is truncated or corrupt. "
            "Re-download or re-write it."
        )
        raise InputError(msg) from err


def _read_rows(ds: Any, a: int, b: int, path: Path) -> np.ndarray:
    try:
        return np.asarray(ds[a:b], dtype=np.float64)
    except OSError as err:
        text = str(err).lower()
        if "filter" in text or "plugin" in text:
            msg = f"{path}: cannot read rows {a}-{b}: {_BLOSC_HELP} ({err})"
        else:
            msg = (
                f"{path}: cannot read rows {a}-{b} ({err}); the file is truncated or corrupt. "
                "Re-download or re-write it."
            )
        raise InputError(msg) from err


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode()
    return str(value)


def _layout(fh: Any, path: Path) -> LhcoLayout:
    expected = (
        "expected an LHCO R&D file: a pandas fixed frame under key 'df' holding either raw "
        "particles (N, 3*P [+1 label]) with integer column names, or the 14 jet columns "
        f"{list(LHCO_JET_COLUMNS)} [+ label]"
    )
    if "df" not in fh or "block0_values" not in fh["df"]:
        msg = f"{path}: no pandas frame 'df/block0_values' (top-level keys {list(fh)}); {expected}"
        raise InputError(msg)
    group = fh["df"]
    if _attr_str(group.attrs.get("pandas_type", "")) != "frame":
        msg = f"{path}: 'df' is not a pandas fixed-format frame; {expected}"
        raise InputError(msg)
    nblocks = int(group.attrs.get("nblocks", 1))
    if nblocks != 1:
        msg = (
            f"{path}: the frame has {nblocks} blocks (mixed column dtypes); LHCO files hold one "
            "float64 block. Re-save the frame with all columns as float64."
        )
        raise InputError(msg)
    values = group["block0_values"]
    if values.ndim != 2 or values.dtype.kind not in "fiu":
        msg = f"{path}: df/block0_values has shape {values.shape} and dtype {values.dtype}; {expected}"
        raise InputError(msg)
    # pandas stores a frame without rows as a 1x1 placeholder with a pickled "shape" attribute
    empty = "shape" in values.attrs and "value_type" in values.attrs
    if not empty and not bool(values.attrs.get("transposed", True)):
        msg = f"{path}: df/block0_values is not stored row-major (transposed=False); {expected}"
        raise InputError(msg)
    n_rows, n_cols = (int(s) for s in values.shape)
    if empty:
        n_rows = 0
        n_cols = len(group["block0_items"]) if "block0_items" in group else 0
    items = group["block0_items"][...] if "block0_items" in group else np.arange(n_cols)
    if items.shape != (n_cols,):
        msg = f"{path}: df/block0_items has shape {items.shape}, expected ({n_cols},); {expected}"
        raise InputError(msg)
    if items.dtype.kind in "iu":
        if not np.array_equal(items, np.arange(n_cols)) or n_cols % 3 == 2 or n_cols < 3:
            msg = (
                f"{path}: integer columns {items[:3].tolist()}...{items[-2:].tolist()} (n={n_cols}) "
                f"are not 0..3*P-1 [+ label]; {expected}"
            )
            raise InputError(msg)
        has_label = n_cols % 3 == 1
        return LhcoLayout("lhco_raw", n_rows, tuple(int(i) for i in items), has_label, n_cols // 3)
    names = tuple(_attr_str(i) for i in items)
    missing = [c for c in LHCO_JET_COLUMNS if c not in names]
    if missing:
        msg = f"{path}: columns {list(missing)} are missing (file has {list(names)}); {expected}"
        raise InputError(msg)
    return LhcoLayout("lhco_features", n_rows, names, "label" in names, 0)


def inspect_lhco(path: PathLike) -> LhcoLayout:
    """Read the layout of an LHCO HDF5 file (kind, rows, columns) without reading its data."""
    p = check_readable(path)
    with _open_h5(p) as fh:
        return _layout(fh, p)


def _check_labels(label: np.ndarray, path: Path, a: int) -> np.ndarray:
    ok = (label == 0) | (label == 1)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        msg = (
            f"{path}: label in row {a + bad} is {float(label[bad])}; labels must be 0 (background) "
            "or 1 (signal). Is the last column really the label?"
        )
        raise InputError(msg)
    return label.astype(np.int8)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def read_lhco_features(path: PathLike, *, start: int = 0, stop: int | None = None) -> FeatureTable:
    """Read an LHCO high-level features file into a FeatureTable (GeV), in row slices.

    Rows ``start:stop`` are read (default: all); ``event_id`` is the row index in the file.
    See `dijet_features` for the definitions of the columns.
    """
    p = check_readable(path)
    with _open_h5(p) as fh:
        layout = _layout(fh, p)
        if layout.kind != "lhco_features":
            msg = f"{p}: is an LHCO raw particle file, not a features file; use iter_particles"
            raise InputError(msg)
        stop = layout.n_rows if stop is None else min(stop, layout.n_rows)
        start = min(start, stop)
        names = list(layout.columns)
        idx = [names.index(c) for c in LHCO_JET_COLUMNS]
        ds = fh["df/block0_values"]
        parts: list[dict[str, np.ndarray]] = []
        labels: list[np.ndarray] = []
        for a in range(start, stop, _READ_ROWS):
            b = min(a + _READ_ROWS, stop)
            block = _read_rows(ds, a, b, p)
            parts.append(dijet_features(dict(zip(LHCO_JET_COLUMNS, block[:, idx].T, strict=True))))
            if layout.has_label:
                labels.append(_check_labels(block[:, names.index("label")], p, a))
    if parts:
        cols = {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}
    else:
        cols = {
            k: np.zeros(0) for k in ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")
        }
    label = (
        (np.concatenate(labels) if labels else np.zeros(0, np.int8)) if layout.has_label else None
    )
    n_bad = int((~np.isfinite(np.column_stack(list(cols.values())))).any(axis=1).sum())
    if n_bad:
        logger.warning("%s: %d event(s) have NaN/inf features (missing jets?)", p, n_bad)
    return FeatureTable(cols, np.arange(start, stop, dtype=np.int64), label, source=str(p))


def write_lhco_features(
    path: PathLike, jets: Mapping[str, np.ndarray], label: np.ndarray | None = None
) -> Path:
    """Write jets in the LHCO high-level features format (``events_anomalydetection_v2.features.h5``).

    A pandas fixed frame under key ``df``, blosc level 5, float64 columns ``pxj1 pyj1 pzj1 mj1
    tau1j1 tau2j1 tau3j1 pxj2 pyj2 pzj2 mj2 tau1j2 tau2j2 tau3j2`` (+ ``label`` if given), in
    that order. `jets` holds those 14 arrays of shape (N,), GeV, j1 = pT-leading jet; `label`
    is (N,) of 0/1 (or pass it as ``jets["label"]``). Written atomically; returns `path`.
    """
    import pandas as pd

    p = Path(path)
    missing = [c for c in LHCO_JET_COLUMNS if c not in jets]
    if missing:
        msg = f"{p}: jets lack column(s) {missing}; need all of {list(LHCO_JET_COLUMNS)}"
        raise InputError(msg)
    if label is None and "label" in jets:
        label = np.asarray(jets["label"])
    data = {c: np.asarray(jets[c], dtype=np.float64) for c in LHCO_JET_COLUMNS}
    n = len(data["pxj1"])
    if label is not None:
        data["label"] = _validated_label(label, n, p).astype(np.float64)
    for c, v in data.items():
        if v.shape != (n,):
            msg = f"{p}: column {c!r} has shape {v.shape}, expected ({n},) like 'pxj1'"
            raise InputError(msg)
    frame = pd.DataFrame(data)
    with atomic_output(p) as tmp:
        frame.to_hdf(tmp, key="df", mode="w", format="fixed", complib="blosc", complevel=5)
    logger.info("wrote %d events (LHCO features) to %s", n, p)
    return p


def _validated_label(label: Any, n: int, p: Path) -> np.ndarray:
    lab = np.asarray(label)
    if lab.shape != (n,):
        msg = f"{p}: label has shape {lab.shape}, expected ({n},) (one per event)"
        raise InputError(msg)
    if lab.size and not np.isin(lab, (0, 1)).all():
        msg = (
            f"{p}: labels must be 0 (background) or 1 (signal); found {np.unique(lab)[:5].tolist()}"
        )
        raise InputError(msg)
    return lab


# --------------------------------------------------------------------------------------------
# raw particles
# --------------------------------------------------------------------------------------------


def iter_lhco_raw(
    path: PathLike, *, chunk_size: int = 10_000, start: int = 0, stop: int | None = None
) -> Iterator[ak.Array]:
    """Stream an LHCO raw particle file in chunks (see `sideband.events.iter_particles`).

    Reads ``df/block0_values`` rows ``start:stop`` in slices of `chunk_size` with h5py; only
    one slice is in memory at a time. Zero-padded slots (pT = 0) are removed.
    """
    p = check_readable(path)
    # validate eagerly, so that errors surface at the call and not at the first next()
    layout = inspect_lhco(p)
    if layout.kind != "lhco_raw":
        msg = f"{p}: is an LHCO features file, not a raw particle file; use read_features"
        raise InputError(msg)
    stop = layout.n_rows if stop is None else min(stop, layout.n_rows)
    return _iter_raw(p, layout, chunk_size, min(start, stop), stop)


def _iter_raw(
    p: Path, layout: LhcoLayout, chunk_size: int, start: int, stop: int
) -> Iterator[ak.Array]:
    n_part = layout.n_particles
    with _open_h5(p) as fh:
        ds = fh["df/block0_values"]
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            block = _read_rows(ds, a, b, p)
            parts = block[:, : 3 * n_part].reshape(b - a, n_part, 3)
            keep = parts[:, :, 0] > 0
            counts = keep.sum(axis=1)
            flat = parts[keep]
            label = _check_labels(block[:, 3 * n_part], p, a) if layout.has_label else None
            yield particle_chunk(
                np.arange(a, b, dtype=np.int64),
                label,
                ak.unflatten(flat[:, 0], counts),
                ak.unflatten(flat[:, 1], counts),
                ak.unflatten(flat[:, 2], counts),
            )


def _as_jagged(x: ak.Array | Sequence[np.ndarray], name: str, p: Path) -> ak.Array:
    if isinstance(x, ak.Array):
        arr = x
    else:
        seq = [np.asarray(e, dtype=np.float64).ravel() for e in x]
        counts = np.array([len(e) for e in seq], dtype=np.int64)
        flat = np.concatenate(seq) if seq else np.zeros(0)
        arr = ak.unflatten(flat, counts)
    if arr.ndim != 2:
        msg = f"{p}: {name} must be jagged (events x particles), got type {arr.type}"
        raise InputError(msg)
    return ak.values_astype(arr, np.float64)


def lhco_raw_frame(h5: Any, n_rows: int, n_cols: int) -> Any:
    """Create the pandas "fixed" frame ``df`` of an LHCO raw file in an open PyTables file.

    Writes the group attributes and axes pandas expects (integer column names 0..n_cols-1,
    row index 0..n_rows-1) and returns the empty float64 ``block0_values`` CArray (n_rows,
    n_cols), blosc level 5 with shuffle like the official file, for the caller to fill.
    """
    import tables

    filters = tables.Filters(complevel=5, complib="blosc", shuffle=True)
    group = h5.create_group("/", "df")
    for key, value in (
        ("pandas_type", "frame"),
        ("encoding", "UTF-8"),
        ("errors", "strict"),
        ("ndim", np.int64(2)),
        ("axis0_variety", "regular"),
        ("axis1_variety", "regular"),
        ("nblocks", np.int64(1)),
        ("block0_items_variety", "regular"),
    ):
        group._v_attrs[key] = value
    for name, values in (
        ("axis0", np.arange(n_cols, dtype=np.int64)),
        ("axis1", np.arange(n_rows, dtype=np.int64)),
        ("block0_items", np.arange(n_cols, dtype=np.int64)),
    ):
        node = h5.create_carray(group, name, obj=values, filters=filters)
        node._v_attrs.kind = "integer"
        node._v_attrs.name = None
        node._v_attrs.transposed = True
    out = h5.create_carray(
        group, "block0_values", atom=tables.Float64Atom(), shape=(n_rows, n_cols), filters=filters
    )
    out._v_attrs.transposed = True
    return out


def write_lhco_raw(
    path: PathLike,
    pt: ak.Array | Sequence[np.ndarray],
    eta: ak.Array | Sequence[np.ndarray],
    phi: ak.Array | Sequence[np.ndarray],
    label: np.ndarray | None = None,
    *,
    max_particles: int = 700,
) -> Path:
    """Write particle events in the LHCO R&D raw format (``events_anomalydetection.h5``).

    A pandas fixed frame under key ``df`` (readable by `pandas.read_hdf`), blosc level 5 like
    the official file: columns ``0 .. 3*max_particles - 1`` hold ``max_particles`` x (pT [GeV],
    eta, phi), pT-ordered (hardest first) and zero padded; events with more particles keep the
    `max_particles` hardest. The label (float 0/1) is the last column if given. Events are
    converted and written in slices, so memory stays bounded.

    Parameters
    ----------
    pt, eta, phi
        Jagged (N, var) awkward arrays or sequences of 1-D arrays; pT > 0 in GeV (pT = 0 marks
        padding in this format).
    label
        Optional (N,) 0/1.
    max_particles
        Particle slots per event (700 in the official files).
    """
    import tables

    p = Path(path)
    if max_particles < 1:
        msg = f"max_particles must be >= 1, got {max_particles}"
        raise InputError(msg)
    pt_a, eta_a, phi_a = (_as_jagged(x, n, p) for x, n in ((pt, "pt"), (eta, "eta"), (phi, "phi")))
    n = len(pt_a)
    counts = ak.to_numpy(ak.num(pt_a, axis=1))
    for name, arr in (("eta", eta_a), ("phi", phi_a)):
        if len(arr) != n or not np.array_equal(ak.to_numpy(ak.num(arr, axis=1)), counts):
            msg = f"{p}: {name} does not have the same number of particles per event as pt"
            raise InputError(msg)
    flat_pt = ak.to_numpy(ak.flatten(pt_a))
    if flat_pt.size and not (np.isfinite(flat_pt) & (flat_pt > 0)).all():
        msg = (
            f"{p}: all particle pT must be finite and > 0 GeV (pT = 0 marks padding in the "
            "LHCO format); drop such particles first"
        )
        raise InputError(msg)
    lab = None if label is None else _validated_label(label, n, p).astype(np.float64)
    n_cut = int((counts > max_particles).sum())
    if n_cut:
        logger.info(
            "%s: %d event(s) have more than %d particles; keeping the hardest",
            p,
            n_cut,
            max_particles,
        )
    n_cols = 3 * max_particles + (lab is not None)
    if n == 0:  # PyTables cannot make a 0-row CArray; pandas writes its own empty-frame layout
        import pandas as pd

        with atomic_output(p) as tmp:
            pd.DataFrame(np.zeros((0, n_cols))).to_hdf(tmp, key="df", mode="w", format="fixed")
        logger.info("wrote 0 events (LHCO raw, %d slots) to %s", max_particles, p)
        return p
    with atomic_output(p) as tmp, tables.open_file(str(tmp), mode="w") as h5:
        out = lhco_raw_frame(h5, n, n_cols)
        for a in range(0, n, _WRITE_ROWS):
            b = min(a + _WRITE_ROWS, n)
            order = ak.argsort(pt_a[a:b], axis=1, ascending=False, stable=True)
            dense = np.zeros((b - a, max_particles, 3))
            for k, arr in enumerate((pt_a, eta_a, phi_a)):
                top = arr[a:b][order][:, :max_particles]
                dense[:, :, k] = ak.to_numpy(
                    ak.fill_none(ak.pad_none(top, max_particles, clip=True), 0.0)
                )
            block = dense.reshape(b - a, 3 * max_particles)
            if lab is not None:
                block = np.column_stack([block, lab[a:b]])
            out[a:b] = block
    logger.info("wrote %d events (LHCO raw, %d slots) to %s", n, max_particles, p)
    return p
