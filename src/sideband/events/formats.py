"""Detect the format of an event file and dispatch to the right reader or writer.

Supported formats (detected from the file's first bytes, checked against its suffix):

- ``lhco_raw``: LHCO R&D particle file (``.h5``), pandas fixed frame ``df`` of shape
  (N, 3 * P [+ 1]) = P x (pT [GeV], eta, phi), zero padded, optional label last.
- ``lhco_features``: LHCO R&D high-level features (``.h5``), 14 jet columns (+ label), GeV.
- ``cathode_npy``: CATHODE ``.npy`` arrays (N, 5 or 6), masses in **TeV** (converted to GeV).
- ``parquet_features`` / ``parquet_particles``: Parquet written by `write_features` /
  `write_particles`.
- ``root``: ROOT file with a TTree of features (`write_features`) or of jagged particle branches.

The helpers here (`check_readable`, `atomic_output`, `particle_chunk`) are shared by the
format modules; those modules are imported lazily by the dispatch functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.records import FeatureTable
from sideband.regions import check_mass_units

__all__ = [
    "DEFAULT_PARTICLE_BRANCHES",
    "FEATURE_FILE_COLUMNS",
    "atomic_output",
    "check_particle_chunk",
    "check_readable",
    "count_events",
    "detect_format",
    "iter_particles",
    "particle_chunk",
    "read_features",
    "write_features",
    "write_particles",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Columns of a features file written by `write_features` (Parquet or ROOT), in this order;
#: ``label`` is present only for labelled tables. Masses in GeV.
FEATURE_FILE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "mjj",
    "mj1",
    "delta_mj",
    "tau21_j1",
    "tau21_j2",
    "delta_r",
    "label",
)

#: Default TTree branch names of particle files: our field -> branch. Override any of them
#: with ``iter_particles(..., branches={"pt": "PFCand_pt", ...})``.
DEFAULT_PARTICLE_BRANCHES: Mapping[str, str] = {
    "pt": "part_pt",
    "eta": "part_eta",
    "phi": "part_phi",
    "label": "label",
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_PARQUET_MAGIC = b"PAR1"
_ROOT_MAGIC = b"root"

_SUFFIX_KIND = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
    ".npy": "npy",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".root": "root",
}

_SUPPORTED = (
    "LHCO R&D HDF5 (.h5: raw particles or high-level features), CATHODE .npy, "
    "Parquet (.parquet) and ROOT (.root) files written by sideband"
)


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def check_readable(path: PathLike) -> Path:
    """Return `path` as a `Path` if it is an existing, non-empty regular file, else raise."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: no such file. Check the path (relative paths start at {Path.cwd()})."
        raise InputError(msg)
    if not p.is_file():
        msg = f"{p}: is not a regular file (a directory?). Pass the path of one event file."
        raise InputError(msg)
    if p.stat().st_size == 0:
        msg = f"{p}: is empty (0 bytes), probably an interrupted download or write; recreate it."
        raise InputError(msg)
    return p


@contextlib.contextmanager
def atomic_output(path: PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path` (`os.replace`).

    On an exception the temporary file is removed and `path` is left untouched.
    """
    target = Path(path)
    if not target.parent.exists():
        msg = f"{target}: the folder {target.parent} does not exist; create it first."
        raise InputError(msg)
    # a fresh name, not created here, so the writer creates the file with the usual permissions
    tmp = target.with_name(
        f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
        + (suffix if suffix is not None else target.suffix)
    )
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def particle_chunk(
    event_id: np.ndarray,
    label: np.ndarray | None,
    pt: ak.Array,
    eta: ak.Array,
    phi: ak.Array,
) -> ak.Array:
    """Build one chunk of the `iter_particles` layout.

    Parameters
    ----------
    event_id
        int (N,): row index of each event in its file.
    label
        (N,) 1 = signal, 0 = background, -1 = unknown; None means unlabelled (all -1).
    pt, eta, phi
        Jagged (N, var) float arrays; pT in GeV. Slots with ``pt <= 0`` (zero padding) are
        removed; the order of the remaining particles is kept.

    Returns
    -------
    ak.Array of N records ``{event_id: int64, label: int8, particles: var * {pt, eta, phi}}``.
    """
    event_id = np.asarray(event_id, dtype=np.int64)
    n = len(event_id)
    lab = np.full(n, -1, dtype=np.int8) if label is None else np.asarray(label).astype(np.int8)
    pt = ak.values_astype(pt, np.float64)
    keep = pt > 0
    particles = ak.zip(
        {
            "pt": pt[keep],
            "eta": ak.values_astype(eta, np.float64)[keep],
            "phi": ak.values_astype(phi, np.float64)[keep],
        }
    )
    return ak.zip({"event_id": event_id, "label": lab, "particles": particles}, depth_limit=1)


def _head(path: Path, n: int = 8) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _content_kind(path: Path) -> str | None:
    head = _head(path)
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if head.startswith(_ROOT_MAGIC):
        return "root"
    return None


def _file_kind(path: PathLike) -> tuple[Path, str]:
    """Check the file and return (path, container kind) from its first bytes and suffix."""
    p = check_readable(path)
    by_suffix = _SUFFIX_KIND.get(p.suffix.lower())
    by_content = _content_kind(p)
    if by_content is None:
        if by_suffix == "hdf5":
            import h5py

            if h5py.is_hdf5(p):  # HDF5 with a user block: signature not at byte 0
                return p, "hdf5"
        if by_suffix is not None:
            msg = (
                f"{p}: has suffix {p.suffix!r} but its content is not a {by_suffix} file "
                f"(first bytes {_head(p)!r}); it is corrupt or mislabelled. Re-create or "
                f"re-download it. Supported: {_SUPPORTED}."
            )
        else:
            msg = f"{p}: not a recognised event file (first bytes {_head(p)!r}). Supported: {_SUPPORTED}."
        raise InputError(msg)
    if by_suffix is not None and by_suffix != by_content:
        logger.warning(
            "%s: suffix %r but content is %s; reading it as %s", p, p.suffix, by_content, by_content
        )
    return p, by_content


def detect_format(path: PathLike) -> str:
    """Name the format of an event file.

    Returns one of ``"lhco_raw"``, ``"lhco_features"``, ``"cathode_npy"``,
    ``"parquet_features"``, ``"parquet_particles"``, ``"root"``.
    Raises `InputError` naming the file for a missing, empty, corrupt or unknown file.
    """
    p, kind = _file_kind(path)
    if kind == "hdf5":
        from sideband.events.lhco import inspect_lhco

        return inspect_lhco(p).kind
    if kind == "npy":
        return "cathode_npy"
    if kind == "parquet":
        from sideband.events.parquet import parquet_kind

        return parquet_kind(p)
    return "root"


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------


def read_features(path: PathLike, *, tree: str | None = None) -> FeatureTable:
    """Read per-event dijet features from any supported file, masses in GeV.

    Formats (detected from the content):

    - LHCO high-level features HDF5 (pandas fixed frame ``df``; 14 jet columns + optional
      label; j1 = pT-leading jet): ``mjj`` from the two jets' 4-vectors, ``mj1`` = lighter jet
      mass, ``delta_mj`` = heavier - lighter, ``tau21_j1`` / ``tau21_j2`` = tau2 / (tau1 + 1e-5)
      of the lighter / heavier jet (CATHODE convention), ``delta_r`` between the jets.
    - CATHODE ``.npy`` (N, 5 or 6) ``[mjj, mj1, mj2 - mj1, tau21_j1, tau21_j2, (label)]`` in
      **TeV**: masses are multiplied by 1000 here; no ``delta_r`` column.
    - Parquet / ROOT TTree written by `write_features`.

    ``event_id`` is the row index in the file (or the stored ``event_id`` column).

    Parameters
    ----------
    path
        The file.
    tree
        TTree name for ROOT files (default: ``features``, or the file's only TTree).

    Returns
    -------
    FeatureTable with N rows; masses in GeV.

    Raises
    ------
    InputError
        Missing, empty, truncated or unrecognised file; missing or malformed columns; masses
        that look like TeV in a GeV format.
    """
    fmt = detect_format(path)
    p = Path(path)
    if fmt == "lhco_features":
        from sideband.events.lhco import read_lhco_features

        table = read_lhco_features(p)
    elif fmt == "cathode_npy":
        from sideband.events.cathode import read_cathode_npy

        table = read_cathode_npy(p)
    elif fmt == "parquet_features":
        from sideband.events.parquet import read_features_parquet

        table = read_features_parquet(p)
    elif fmt == "root":
        from sideband.events.root import read_features_root

        table = read_features_root(p, tree=tree)
    elif fmt == "lhco_raw":
        msg = (
            f"{p}: is an LHCO raw particle file, not a features file. Cluster jets first "
            "(sideband.features) or stream it with sideband.events.iter_particles."
        )
        raise InputError(msg)
    else:
        msg = (
            f"{p}: is a particle file ({fmt}), not a features file; expected columns "
            f"{list(FEATURE_FILE_COLUMNS)}. Stream it with sideband.events.iter_particles."
        )
        raise InputError(msg)
    try:
        check_mass_units(table.mjj)
    except InputError as err:
        msg = f"{p}: {err}"
        raise InputError(msg) from err
    logger.info("read %d events (%s) from %s", len(table), fmt, p)
    return table


def write_features(path: PathLike, table: FeatureTable) -> Path:
    """Write a FeatureTable as Parquet (``.parquet``) or as ROOT TTree ``features`` (``.root``).

    Columns: ``event_id`` (int64), each feature column (float64, GeV) and ``label`` (int8)
    when the table is labelled. The file is written to a temporary name and moved into place
    (`os.replace`), so a crash never leaves a half-written `path`. Returns `path`.
    """
    p = Path(path)
    if not isinstance(table, FeatureTable):
        msg = f"write_features needs a FeatureTable, got {type(table).__name__}"
        raise InputError(msg)
    kind = _SUFFIX_KIND.get(p.suffix.lower())
    if kind == "parquet":
        from sideband.events.parquet import write_features_parquet

        return write_features_parquet(p, table)
    if kind == "root":
        from sideband.events.root import write_features_root

        return write_features_root(p, table)
    msg = f"{p}: cannot write features with suffix {p.suffix!r}; use '.parquet' or '.root'."
    raise InputError(msg)


def iter_particles(
    path: PathLike,
    *,
    chunk_size: int = 10_000,
    start: int = 0,
    stop: int | None = None,
    tree: str | None = None,
    branches: Mapping[str, str] | None = None,
) -> Iterator[ak.Array]:
    """Stream particle-level events in chunks of at most `chunk_size` events.

    Each chunk is an awkward Array of N records with fields ``event_id`` (int64, row index
    in the file), ``label`` (int8; 1 signal, 0 background, -1 where the file has no label)
    and ``particles``: a jagged list of records ``{pt [GeV], eta, phi}`` (zero-padded slots
    removed, order as in the file).

    Formats: LHCO R&D raw HDF5 ((N, 2101) or (N, 2100) without label; blosc compressed, read
    in row slices with h5py + hdf5plugin), ROOT TTrees with jagged branches (names from
    `branches`, default `DEFAULT_PARTICLE_BRANCHES`; a missing label branch gives -1),
    Parquet written by `write_particles`. Only one chunk is in memory at a time.

    Parameters
    ----------
    path
        The file.
    chunk_size
        Events per chunk (> 0).
    start, stop
        Half-open range of event rows to read (``stop=None``: to the end; clipped to the file).
    tree
        TTree name for ROOT files (default: the file's only TTree).
    branches
        ROOT branch names for ``pt``, ``eta``, ``phi`` and ``label`` (merged with the defaults).
    """
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size <= 0
    ):
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
        raise InputError(msg)
    if start < 0 or (stop is not None and stop < start):
        msg = f"need 0 <= start <= stop; got start={start}, stop={stop}"
        raise InputError(msg)
    fmt = detect_format(path)
    p = Path(path)
    if branches is not None and fmt not in ("root", "parquet_particles"):
        logger.info("%s: `branches` only applies to ROOT and Parquet files; ignored for %s", p, fmt)
    if fmt == "lhco_raw":
        from sideband.events.lhco import iter_lhco_raw

        return iter_lhco_raw(p, chunk_size=int(chunk_size), start=start, stop=stop)
    if fmt == "parquet_particles":
        from sideband.events.parquet import iter_particles_parquet

        return iter_particles_parquet(
            p, chunk_size=int(chunk_size), start=start, stop=stop, branches=branches
        )
    if fmt == "root":
        from sideband.events.root import iter_particles_root

        return iter_particles_root(
            p, chunk_size=int(chunk_size), start=start, stop=stop, tree=tree, branches=branches
        )
    msg = (
        f"{p}: is a features file ({fmt}), not a particle file. Read it with "
        "sideband.events.read_features; iter_particles needs LHCO raw HDF5, ROOT with jagged "
        "particle branches, or Parquet from write_particles."
    )
    raise InputError(msg)


def count_events(path: PathLike, *, tree: str | None = None) -> int:
    """Number of events (rows) in any supported file, read from its metadata only."""
    fmt = detect_format(path)
    p = Path(path)
    if fmt in ("lhco_raw", "lhco_features"):
        from sideband.events.lhco import inspect_lhco

        return inspect_lhco(p).n_rows
    if fmt == "cathode_npy":
        from sideband.events.cathode import count_cathode_npy

        return count_cathode_npy(p)
    if fmt in ("parquet_features", "parquet_particles"):
        from sideband.events.parquet import count_parquet

        return count_parquet(p)
    from sideband.events.root import count_root

    return count_root(p, tree=tree)


def write_particles(path: PathLike, chunk: ak.Array | Iterable[ak.Array]) -> Path:
    """Write events in the `iter_particles` layout to Parquet (``.parquet``) or ROOT (``.root``).

    `chunk` is one chunk or an iterable of chunks (e.g. ``iter_particles(...)``), streamed to
    the file one at a time. ROOT files get a TTree ``Events`` with branches ``event_id``,
    ``label``, ``part_pt``, ``part_eta``, ``part_phi`` (counter ``npart``). Written atomically;
    returns `path`.
    """
    p = Path(path)
    chunks: Iterable[ak.Array] = [chunk] if isinstance(chunk, ak.Array) else chunk
    kind = _SUFFIX_KIND.get(p.suffix.lower())
    if kind == "parquet":
        from sideband.events.parquet import write_particles_parquet

        return write_particles_parquet(p, chunks)
    if kind == "root":
        from sideband.events.root import write_particles_root

        return write_particles_root(p, chunks)
    msg = f"{p}: cannot write particles with suffix {p.suffix!r}; use '.parquet' or '.root'."
    raise InputError(msg)


def check_particle_chunk(chunk: ak.Array, *, where: str = "") -> ak.Array:
    """Validate a chunk in the `iter_particles` layout and normalise its dtypes."""
    fields = set(ak.fields(chunk))
    need = {"event_id", "label", "particles"}
    if not need <= fields:
        msg = (
            f"{where}a particle chunk needs fields {sorted(need)} (the iter_particles layout); "
            f"got {sorted(fields)}. Build it with sideband.events.formats.particle_chunk."
        )
        raise InputError(msg)
    pfields = set(ak.fields(chunk["particles"]))
    if not {"pt", "eta", "phi"} <= pfields or chunk["particles"].ndim != 2:
        msg = (
            f"{where}chunk['particles'] must be a jagged list of records with pt, eta, phi; "
            f"got type {chunk['particles'].type}"
        )
        raise InputError(msg)
    return particle_chunk(
        ak.to_numpy(chunk["event_id"]),
        ak.to_numpy(chunk["label"]),
        chunk["particles", "pt"],
        chunk["particles", "eta"],
        chunk["particles", "phi"],
    )
