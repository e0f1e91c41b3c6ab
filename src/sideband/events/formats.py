"""Detect the format of an event file and dispatch to the right reader or writer.

Supported formats (detected from the file's first bytes, checked against its suffix):

- ``lhco_raw``: LHCO R&D particle file (``.h5``), pandas fixed frame ``df`` of shape
  (N, 3 * P [+ 1]) = P x (pT [GeV], eta, phi), zero padded, optional label last.
- ``lhco_features``: LHCO R&D high-level features (``.h5``), 14 jet columns (+ label), GeV.
- ``cathode_npy``: CATHODE ``.npy`` arrays (N, 5 or 6), masses in **TeV** (converted to GeV).
- ``parquet_features`` / ``parquet_particles``: Parquet written by `write_features` /
  `write_particles`.
- ``root``: ROOT file with a TTree of features (`write_features`) or of jagged particle branches
  (sideband's ``part_*``, or the named presets of `PARTICLE_BRANCH_PRESETS` such as NanoAOD /
  PFNano ``PFCands_*``), or a NanoAOD-style jet table read with ``read_features(path,
  jets="nanoaod")``.

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
from types import MappingProxyType

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.records import FeatureTable
from sideband.regions import check_mass_units

__all__ = [
    "DEFAULT_PARTICLE_BRANCHES",
    "FEATURE_FILE_COLUMNS",
    "JET_PRESETS",
    "PARTICLE_BRANCH_PRESETS",
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

#: Named sets of ROOT branch names for `iter_particles` (``branches="nanoaod"``): our field ->
#: branch. ``pt``, ``eta`` and ``phi`` (jagged, one list per event) must exist; ``mass``
#: [GeV], ``label`` and ``event_id`` are read where the file has them (``mass`` becomes a
#: fourth particle field, which `sideband.features.substructure.cluster_dijets` uses; else the
#: particles are massless; no ``label`` gives -1; no ``event_id`` gives the entry number).
#:
#: - ``default``: sideband's own particle trees (`write_particles`) and flat ntuples with
#:   ``part_*`` branches.
#: - ``nanoaod`` / ``pfnano``: CMS PFNano on NanoAOD (Run 2 UL, e.g. CMS Open Data): the
#:   ``PFCands`` table (``nPFCands``, ``PFCands_pt`` ...) in TTree ``Events``; the event
#:   number from ``event``. Plain NanoAOD stores no PF candidates: only its ``FatJet`` table
#:   can be used there (``read_features(path, jets="nanoaod")``).
#: - ``jmenano``: the JME PFNano for NanoAODv12 and later, whose table is ``PFCand``
#:   (``nPFCand``, ``PFCand_pt`` ...).
PARTICLE_BRANCH_PRESETS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "default": MappingProxyType(
            {**DEFAULT_PARTICLE_BRANCHES, "mass": "part_mass", "event_id": "event_id"}
        ),
        **{
            name: MappingProxyType(
                {
                    "pt": f"{table}_pt",
                    "eta": f"{table}_eta",
                    "phi": f"{table}_phi",
                    "mass": f"{table}_mass",
                    "label": "label",
                    "event_id": "event",
                }
            )
            for name, table in (
                ("nanoaod", "PFCands"),
                ("pfnano", "PFCands"),
                ("jmenano", "PFCand"),
            )
        },
    }
)

#: Jet collections `read_features(path, jets=...)` reads without reclustering: preset ->
#: branch prefix of a NanoAOD-style jet table (``nFatJet``, ``FatJet_pt``, ...).
JET_PRESETS: Mapping[str, str] = MappingProxyType({"nanoaod": "FatJet"})

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


def read_features(
    path: PathLike, *, tree: str | None = None, jets: str | None = None
) -> FeatureTable:
    """Read per-event dijet features from any supported file, masses in GeV.

    Formats (detected from the content):

    - LHCO high-level features HDF5 (pandas fixed frame ``df``; 14 jet columns + optional
      label; j1 = pT-leading jet): ``mjj`` from the two jets' 4-vectors, ``mj1`` = lighter jet
      mass, ``delta_mj`` = heavier - lighter, ``tau21_j1`` / ``tau21_j2`` = tau2 / (tau1 + 1e-5)
      of the lighter / heavier jet (CATHODE convention), ``delta_r`` between the jets.
    - CATHODE ``.npy`` (N, 5 or 6) ``[mjj, mj1, mj2 - mj1, tau21_j1, tau21_j2, (label)]`` in
      **TeV**: masses are multiplied by 1000 here; no ``delta_r`` column.
    - Parquet / ROOT TTree written by `write_features`.
    - With ``jets="nanoaod"``: a NanoAOD-style ROOT file (TTree ``Events``), features of its two
      pT-leading ``FatJet`` jets without reclustering (see
      `sideband.events.root.read_fatjet_features`; events with fewer than two FatJets are
      dropped and their number logged).

    ``event_id`` is the row index in the file (or the stored ``event_id`` column; ``event``
    for NanoAOD).

    Parameters
    ----------
    path
        The file.
    tree
        TTree name for ROOT files (default: ``features``, or the file's only TTree; ``Events``
        with `jets`).
    jets
        ``None`` (default): read a features file. A name of `JET_PRESETS` (``"nanoaod"``):
        compute the features from the jet table of a NanoAOD-style ROOT file.

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
    if jets is not None:
        if jets not in JET_PRESETS:
            msg = (
                f"jets={jets!r} is not a known jet collection; use one of {sorted(JET_PRESETS)} "
                "(or sideband.events.root.read_fatjet_features(path, prefix=...) for another "
                "NanoAOD-style jet table), or jets=None for a features file"
            )
            raise InputError(msg)
        if fmt != "root":
            msg = (
                f"{p}: jets={jets!r} reads the jet table of a NanoAOD-style ROOT file, but this "
                f"is a {fmt} file; drop jets= to read it"
            )
            raise InputError(msg)
    if fmt == "root" and jets is not None:
        from sideband.events.root import read_fatjet_features

        table = read_fatjet_features(p, prefix=JET_PRESETS[jets], tree=tree or "Events")
    elif fmt == "lhco_features":
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
    _check_finite_columns(table, p)
    try:
        check_mass_units(table.mjj)
    except InputError as err:
        msg = f"{p}: {err}"
        raise InputError(msg) from err
    logger.info("read %d events (%s) from %s", len(table), fmt, p)
    return table


def _check_finite_columns(table: FeatureTable, p: Path) -> None:
    """`InputError` naming the file, column and rows of the first column holding NaN or inf."""
    for name, values in table.columns.items():
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            msg = (
                f"{p}: column {name!r} has {int(bad.sum())} NaN/inf value(s) (first rows "
                f"{rows}); drop or fix those events and rewrite the file "
                "(sideband.events.write_features)"
            )
            raise InputError(msg)


def check_label_column(label: np.ndarray, p: Path) -> None:
    """`InputError` naming the file unless the label column (N,) holds only 0 and 1."""
    ok = np.isin(label, (0, 1))
    if not ok.all():
        values = np.unique(label[~ok])[:5].tolist()
        rows = np.flatnonzero(~ok)[:5].tolist()
        msg = (
            f"{p}: column 'label' holds {int((~ok).sum())} value(s) other than 0 (background) "
            f"and 1 (signal): {values} (first rows {rows}). Relabel them as 0/1, or drop the "
            "label column for unlabelled data."
        )
        raise InputError(msg)


def one_line(err: BaseException, limit: int = 200) -> str:
    """A library's exception text on one line (whitespace collapsed), at most `limit` chars."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    branches: str | Mapping[str, str] | None = None,
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

    ROOT files whose branches give particle masses (``mass`` of `PARTICLE_BRANCH_PRESETS`,
    e.g. ``PFCands_mass`` with ``branches="nanoaod"``) get a fourth particle field ``mass``
    [GeV]; `sideband.features.substructure.cluster_dijets` uses it (massless otherwise).

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
        ROOT branch names: a preset name of `PARTICLE_BRANCH_PRESETS` (``"default"``,
        ``"nanoaod"``, ``"pfnano"``, ``"jmenano"``) or a mapping of ``pt``, ``eta``, ``phi``,
        ``mass``, ``label``, ``event_id`` to branch names, merged over the ``"default"`` preset,
        or over the preset named by its ``"preset"`` key (``{"preset": "nanoaod", "label":
        "is_signal"}``). Branches named in a mapping must exist; the preset's optional ones
        (mass, label, event_id) are used where present. For Parquet files with flat
        jagged columns the ``pt``, ``eta``, ``phi`` and ``label`` names apply.
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
    if fmt == "lhco_raw":
        if branches is not None:
            logger.info("%s: `branches` does not apply to LHCO raw HDF5 files; ignored", p)
        from sideband.events.lhco import iter_lhco_raw

        return iter_lhco_raw(p, chunk_size=int(chunk_size), start=start, stop=stop)
    if fmt == "parquet_particles":
        from sideband.events.parquet import iter_particles_parquet

        flat: dict[str, str] | None = None
        if branches is not None:
            from sideband.events.root import resolve_particle_branches

            names, explicit = resolve_particle_branches(branches)
            ignored = sorted(explicit & {"mass", "event_id"})
            if ignored:
                logger.info(
                    "%s: branches %s do not apply to Parquet (event_id column, massless); ignored",
                    p,
                    ignored,
                )
            flat = {k: names[k] for k in ("pt", "eta", "phi", "label")}
        return iter_particles_parquet(
            p, chunk_size=int(chunk_size), start=start, stop=stop, branches=flat
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
