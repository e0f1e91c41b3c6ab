"""ROOT files (uproot): feature TTrees, TTrees of jagged particle branches, NanoAOD jet tables.

Writing uses ``file.mktree(name, types)`` + ``tree.extend(...)``: with uproot >= 5.7 assigning a
dict (``file[name] = {...}``) writes an RNTuple, not a TTree.

- Features: TTree ``features`` with branches ``event_id`` (int64), the feature columns
  (float64, GeV) and ``label`` (int8) when labelled.
- Particles: TTree ``Events`` with ``event_id`` (int64), ``label`` (int8) and jagged
  ``part_pt`` [GeV], ``part_eta``, ``part_phi`` sharing the counter ``npart``. Foreign files
  can name the branches differently (``branches=`` of `iter_particles_root`: a preset of
  `sideband.events.formats.PARTICLE_BRANCH_PRESETS` such as ``"nanoaod"`` for PFNano's
  ``PFCands_*``, or a mapping).
- NanoAOD jets: `read_fatjet_features` turns the two pT-leading jets of a NanoAOD-style
  table (``nFatJet``, ``FatJet_pt`` ...) into dijet features without reclustering;
  `iter_fatjet_constituents` streams those jets with their PF candidates through PFNano's
  jet-candidate association table (``FatJetPFCands_jetIdx`` / ``_pFCandsIdx``).

Everything is read in chunks of entries (uproot ``iterate``), so memory does not grow with the
file's size beyond the per-event output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.events.formats import (
    FEATURE_FILE_COLUMNS,
    PARTICLE_BRANCH_PRESETS,
    PathLike,
    atomic_output,
    check_label_column,
    check_particle_chunk,
    check_readable,
    one_line,
    particle_chunk,
)
from sideband.records import EVENT_IDENTIFIERS, FEATURE_COLUMNS, FeatureTable
from sideband.regions import check_mass_units

__all__ = [
    "FATJET_QUANTITIES",
    "FEATURES_TREE",
    "PARTICLES_TREE",
    "FatJetCounts",
    "count_root",
    "iter_fatjet_constituents",
    "iter_particles_root",
    "read_fatjet_features",
    "read_features_root",
    "resolve_particle_branches",
    "write_features_root",
    "write_particles_root",
]

logger = logging.getLogger(__name__)

#: Default TTree names written by sideband.
FEATURES_TREE = "features"
PARTICLES_TREE = "Events"

_SLICE_ROWS = 500_000

#: Per-jet quantities `read_fatjet_features` reads from a NanoAOD-style jet table
#: (``{prefix}_{quantity}``): pT, mass [GeV], eta, phi and the N-subjettiness tau1, tau2.
FATJET_QUANTITIES: tuple[str, ...] = ("pt", "eta", "phi", "mass", "tau1", "tau2")

_PARTICLE_KEYS = ("pt", "eta", "phi", "mass", "label", "event_id")
_LIST_LIMIT = 40


def _open_root(p: Path) -> Any:
    import uproot

    try:
        return uproot.open(p)
    except Exception as err:  # uproot raises many types for corrupt files
        msg = (
            f"{p}: cannot be opened as a ROOT file ({type(err).__name__}: {one_line(err)}); it is "
            "truncated or corrupt. Re-create it."
        )
        raise InputError(msg) from err


def _ttrees(fh: Any) -> list[str]:
    return sorted(
        {k.split(";")[0] for k, cls in fh.classnames(recursive=True).items() if cls == "TTree"}
    )


def _list_ttrees(fh: Any, p: Path) -> list[str]:
    try:
        return _ttrees(fh)
    except Exception as err:
        msg = (
            f"{p}: cannot list the file's contents ({one_line(err)}); it is truncated or "
            "corrupt. Re-create it."
        )
        raise InputError(msg) from err


def _pick_tree(fh: Any, p: Path, tree: str | None, prefer: tuple[str, ...]) -> Any:
    names = _list_ttrees(fh, p)
    if tree is None:
        preferred = [name for name in prefer if name in names]
        if preferred:
            tree = preferred[0]
        elif len(names) == 1:
            tree = names[0]
        else:
            msg = (
                f"{p}: holds TTrees {names}; pass tree=<name> to choose one"
                if names
                else f"{p}: holds no TTree (keys {fh.keys()}); expected a TTree of events"
            )
            raise InputError(msg)
    if tree not in names:
        msg = f"{p}: has no TTree {tree!r}; its TTrees are {names}. Pass one of those as tree=."
        raise InputError(msg)
    try:
        return fh[tree]
    except Exception as err:
        msg = (
            f"{p}: cannot read TTree {tree!r} ({one_line(err)}); the file is truncated or "
            "corrupt. Re-create it."
        )
        raise InputError(msg) from err


def _iterate_tree(
    p: Path, tree_name: str, exprs: list[str], chunk_size: int, start: int, stop: int
) -> Iterator[tuple[ak.Array, int, int]]:
    """(arrays, first entry, end entry) of `tree_name`'s branches `exprs`, entries
    ``[start, stop)`` in chunks of `chunk_size`; unreadable data -> `InputError`."""
    if start >= stop:
        return
    with _open_root(p) as fh:
        t = fh[tree_name]
        chunks = t.iterate(
            exprs,
            step_size=int(chunk_size),
            entry_start=start,
            entry_stop=stop,
            library="ak",
            report=True,
        )
        while True:
            try:
                arrays, report = next(chunks)
            except StopIteration:
                return
            except InputError:
                raise
            except Exception as err:
                msg = (
                    f"{p}: cannot read TTree {tree_name!r} ({one_line(err)}); the file is "
                    "truncated or corrupt. Re-create it."
                )
                raise InputError(msg) from err
            yield arrays, int(report.tree_entry_start), int(report.tree_entry_stop)


def _is_jagged(branch: Any) -> bool:
    import uproot

    return isinstance(branch.interpretation, uproot.interpretation.jagged.AsJagged)


def _is_flat_number(branch: Any) -> bool:
    import uproot

    interp = branch.interpretation
    return (
        isinstance(interp, uproot.interpretation.numerical.AsDtype)
        and interp.to_dtype.kind in "fiub"
        and interp.to_dtype.shape == ()
    )


def _collections(keys: Iterable[str]) -> dict[str, int]:
    """NanoAOD-style collections among branch names: prefix -> number of ``prefix_*`` branches
    (a collection has a counter ``n<prefix>``)."""
    names = set(keys)
    out: dict[str, int] = {}
    for k in sorted(names):
        head, sep, _ = k.partition("_")
        if sep and f"n{head}" in names:
            out[head] = out.get(head, 0) + 1
    return out


def _branch_summary(keys: Iterable[str]) -> str:
    """The branch names of a tree, shortened for an error message when there are many."""
    names = sorted(keys)
    if len(names) <= _LIST_LIMIT:
        return f"branches: {names}"
    colls = _collections(names)
    shown = ", ".join(f"{c}_* ({n})" for c, n in colls.items())
    return (
        f"{len(names)} branches, among them the collections {shown or 'none'}; "
        f"first branches {names[: _LIST_LIMIT // 2]}"
    )


def _matching_presets(keys: Iterable[str]) -> list[str]:
    names = set(keys)
    return [
        name
        for name, preset in PARTICLE_BRANCH_PRESETS.items()
        if all(preset[k] in names for k in ("pt", "eta", "phi"))
    ]


def _nanoaod_hint(keys: Iterable[str]) -> str:
    """A sentence saying how to read a NanoAOD-style tree, or "" if it does not look like one."""
    names = set(keys)
    hints = []
    if all(f"FatJet_{q}" in names for q in FATJET_QUANTITIES):
        hints.append("read_features(path, jets='nanoaod') takes its two leading FatJets")
    presets = [n for n in _matching_presets(names) if n != "default"]
    if presets:
        hints.append(f"iter_particles(path, branches={presets[0]!r}) streams its PF candidates")
    if not hints:
        return ""
    return " It looks like NanoAOD: " + "; ".join(hints) + "."


def _events_hint(fh: Any, p: Path) -> str:
    """`_nanoaod_hint` for a file with a TTree ``Events`` but none named ``features``; ""
    otherwise."""
    names = _list_ttrees(fh, p)
    if FEATURES_TREE in names or PARTICLES_TREE not in names:
        return ""
    try:
        keys = fh[PARTICLES_TREE].keys()
    except Exception as err:
        msg = (
            f"{p}: cannot read TTree {PARTICLES_TREE!r} ({one_line(err)}); the file is "
            "truncated or corrupt. Re-create it."
        )
        raise InputError(msg) from err
    return _nanoaod_hint(keys)


def count_root(path: PathLike, *, tree: str | None = None) -> int:
    """Entries of the TTree `tree` (default: ``features``, ``Events`` or the only TTree)."""
    p = check_readable(path)
    with _open_root(p) as fh:
        return int(_pick_tree(fh, p, tree, (FEATURES_TREE, PARTICLES_TREE)).num_entries)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def read_features_root(path: PathLike, *, tree: str | None = None) -> FeatureTable:
    """Read a feature TTree (as written by `write_features_root`) into a FeatureTable.

    Needs a flat numeric ``mjj`` branch [GeV]; every other flat numeric branch becomes a
    feature, except ``event_id`` (row index if absent) and ``label``. A jagged branch is an
    error (a particle tree? use `iter_particles`). Read in slices of entries.
    """
    p = check_readable(path)
    with _open_root(p) as fh:
        if tree is None:
            hint = _events_hint(fh, p)
            if hint:  # NanoAOD: Events beside Runs, LuminosityBlocks, ...
                msg = f"{p}: is not a features file (no TTree {FEATURES_TREE!r}).{hint}"
                raise InputError(msg)
        t = _pick_tree(fh, p, tree, (FEATURES_TREE,))
        keys = list(t.keys())
        jagged = [k for k in keys if _is_jagged(t[k])]
        flat = [k for k in keys if _is_flat_number(t[k])]
        if "mjj" not in flat or jagged:
            hint = _nanoaod_hint(keys)
            msg = (
                f"{p}: TTree {t.name!r} is not a features tree: expected flat numeric branches "
                f"{list(FEATURE_FILE_COLUMNS)} (at least 'mjj'); got {_branch_summary(keys)}"
                + (
                    hint
                    or (
                        f" with jagged {jagged[:10]} (a particle tree? use iter_particles)"
                        if jagged
                        else ""
                    )
                )
            )
            raise InputError(msg)
        other = sorted(set(keys) - set(flat))
        if other:
            logger.info("%s: skipping non-numeric branches %s", p, other)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in flat}
        try:
            for arrays in t.iterate(flat, step_size=_SLICE_ROWS, library="np"):
                for k in flat:
                    parts[k].append(arrays[k])
        except Exception as err:
            msg = (
                f"{p}: cannot read TTree {t.name!r} ({one_line(err)}); the file is truncated "
                "or corrupt. Re-create it."
            )
            raise InputError(msg) from err
        # a tree without entries yields no slice: empty columns keep the branches' dtypes
        # (integer identifiers stay identifiers)
        empty = {k: t[k].interpretation.to_dtype for k in flat if not parts[k]}
    data = {k: (np.concatenate(v) if v else np.zeros(0, dtype=empty[k])) for k, v in parts.items()}
    if "label" in data:
        check_label_column(data["label"], p)
    return FeatureTable.from_dict(data, source=str(p))


def write_features_root(path: PathLike, table: FeatureTable) -> Path:
    """Write a FeatureTable as TTree ``features`` (mktree + extend), atomically."""
    import uproot

    p = Path(path)
    data = table.to_dict()
    types = {k: v.dtype for k, v in data.items()}
    with atomic_output(p) as tmp, uproot.recreate(tmp) as fh:
        t = fh.mktree(FEATURES_TREE, types)
        for a in range(0, len(table), _SLICE_ROWS):
            t.extend({k: v[a : a + _SLICE_ROWS] for k, v in data.items()})
    logger.info("wrote %d events (features) to %s", len(table), p)
    return p


# --------------------------------------------------------------------------------------------
# particles
# --------------------------------------------------------------------------------------------


def resolve_particle_branches(
    branches: str | Mapping[str, str] | None,
) -> tuple[dict[str, str], frozenset[str]]:
    """Branch names for `iter_particles_root` and the keys named explicitly.

    `branches` is ``None`` (the ``"default"`` preset), a preset name of
    `sideband.events.formats.PARTICLE_BRANCH_PRESETS`, or a mapping of ``pt``, ``eta``,
    ``phi``, ``mass``, ``label``, ``event_id`` to branch names merged over the preset named by
    its optional ``"preset"`` key (default ``"default"``).

    Returns
    -------
    (names, explicit): ``names`` maps every key of the layout to a branch name; ``explicit``
    holds the keys given in the mapping (their branches must exist; the preset's optional
    ``mass``, ``label`` and ``event_id`` are used only where present).
    """
    if branches is None:
        preset, given = "default", dict[str, str]()
    elif isinstance(branches, str):
        preset, given = branches, dict[str, str]()
    elif isinstance(branches, Mapping):
        given = dict(branches)
        preset = given.pop("preset", "default")
    else:
        msg = (
            f"branches= must be a preset name {sorted(PARTICLE_BRANCH_PRESETS)} or a mapping "
            f"of field -> branch name; got {type(branches).__name__}"
        )
        raise InputError(msg)
    if preset not in PARTICLE_BRANCH_PRESETS:
        msg = (
            f"branches preset {preset!r} is unknown; use one of {sorted(PARTICLE_BRANCH_PRESETS)} "
            "or a mapping {'pt': ..., 'eta': ..., 'phi': ...}"
        )
        raise InputError(msg)
    unknown = sorted(set(given) - set(_PARTICLE_KEYS))
    if unknown:
        msg = (
            f"branches= has unknown key(s) {unknown}; allowed: {', '.join(_PARTICLE_KEYS)} "
            "and 'preset'"
        )
        raise InputError(msg)
    bad = {k: v for k, v in given.items() if not isinstance(v, str) or not v}
    if bad:
        msg = f"branches= values must be branch names (non-empty strings); got {bad}"
        raise InputError(msg)
    return {**PARTICLE_BRANCH_PRESETS[preset], **given}, frozenset(given)


def iter_particles_root(
    path: PathLike,
    *,
    chunk_size: int = 10_000,
    start: int = 0,
    stop: int | None = None,
    tree: str | None = None,
    branches: str | Mapping[str, str] | None = None,
) -> Iterator[ak.Array]:
    """Stream a TTree of jagged particle branches in chunks (see `iter_particles`).

    `branches` is a preset name (``"default"``, ``"nanoaod"``, ``"pfnano"``, ``"jmenano"``;
    `sideband.events.formats.PARTICLE_BRANCH_PRESETS`) or a mapping of ``pt``, ``eta``,
    ``phi``, ``mass``, ``label``, ``event_id`` to branch names (see
    `resolve_particle_branches`). ``pt`` [GeV], ``eta`` and ``phi`` must be jagged branches
    with one list per event. ``mass`` [GeV], where present, becomes a fourth particle field;
    a missing label branch gives label -1; ``event_id`` is the stored event number (``event_id``,
    or ``event`` for NanoAOD) where present, else the entry number. A branch named explicitly
    in a mapping must exist.

    Yields
    ------
    ak.Array chunks of at most `chunk_size` records ``{event_id: int64, label: int8,
    particles: var * {pt, eta, phi[, mass]}}``, plus int64 ``run``, ``luminosityBlock``,
    ``event`` where the tree has them (NanoAOD); slots with pT <= 0 are removed.
    """
    p = check_readable(path)
    names, explicit = resolve_particle_branches(branches)
    with _open_root(p) as fh:
        t = _pick_tree(fh, p, tree, (PARTICLES_TREE,))
        tree_name = t.name
        keys = list(t.keys())
        present = set(keys)
        missing = [names[k] for k in ("pt", "eta", "phi") if names[k] not in present]
        if missing:
            presets = _matching_presets(present)
            suggest = (
                f"This tree matches the preset(s) {presets}: pass branches={presets[0]!r}."
                if presets
                else "Name the particle branches with branches={'pt': ..., 'eta': ..., "
                f"'phi': ...}} or pass a preset {sorted(PARTICLE_BRANCH_PRESETS)}."
            )
            msg = (
                f"{p}: TTree {tree_name!r} has no branch(es) {missing} ({_branch_summary(keys)}). "
                + suggest
            )
            raise InputError(msg)
        for k in ("mass", "label", "event_id"):
            if k in explicit and names[k] not in present:
                msg = (
                    f"{p}: TTree {tree_name!r} has no {k} branch {names[k]!r} "
                    f"({_branch_summary(keys)}); fix the name in branches= or leave {k!r} out"
                )
                raise InputError(msg)
        use_mass = names["mass"] in present
        kinematic = [names[k] for k in ("pt", "eta", "phi", "mass") if k != "mass" or use_mass]
        not_jagged = [b for b in kinematic if not _is_jagged(t[b])]
        if not_jagged:
            msg = (
                f"{p}: branch(es) {not_jagged} of {tree_name!r} are not jagged (one list of "
                "particles per event); is this a features tree? use read_features"
            )
            raise InputError(msg)
        has_label = names["label"] in present
        if has_label and not _is_flat_number(t[names["label"]]):
            msg = f"{p}: label branch {names['label']!r} is not one number per event"
            raise InputError(msg)
        has_id = names["event_id"] in present and _is_flat_number(t[names["event_id"]])
        if "event_id" in explicit and not has_id:
            msg = f"{p}: event_id branch {names['event_id']!r} is not one number per event"
            raise InputError(msg)
        id_names = [k for k in EVENT_IDENTIFIERS if k in present and _is_flat_number(t[k])]
        n_entries = int(t.num_entries)
    stop = n_entries if stop is None else min(stop, n_entries)
    return _iter_root(
        p,
        tree_name,
        names,
        has_label=has_label,
        has_id=has_id,
        id_names=id_names,
        use_mass=use_mass,
        chunk_size=chunk_size,
        start=min(start, stop),
        stop=stop,
    )


def _check_same_counts(p: Path, arrays: ak.Array, branches: list[str], first: int) -> None:
    """Raise if jagged branches that must share a counter have different lengths somewhere."""
    ref = ak.to_numpy(ak.num(arrays[branches[0]], axis=1))
    for b in branches[1:]:
        other = ak.to_numpy(ak.num(arrays[b], axis=1))
        if not np.array_equal(ref, other):
            row = int(np.flatnonzero(ref != other)[0])
            msg = (
                f"{p}: branches {branches[0]!r} and {b!r} have {ref[row]} and {other[row]} "
                f"entries in entry {first + row}; they must belong to one collection"
            )
            raise InputError(msg)


def _labels(p: Path, arrays: ak.Array, name: str, first: int, allowed: tuple[int, ...]) -> Any:
    label = ak.to_numpy(arrays[name])
    ok = np.isin(label, allowed)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        msg = (
            f"{p}: label branch {name!r} is {label[row]} in entry {first + row}; expected "
            f"{' or '.join(str(v) for v in allowed)}"
        )
        raise InputError(msg)
    return label


def _iter_root(
    p: Path,
    tree_name: str,
    names: Mapping[str, str],
    *,
    has_label: bool,
    has_id: bool,
    id_names: Sequence[str],
    use_mass: bool,
    chunk_size: int,
    start: int,
    stop: int,
) -> Iterator[ak.Array]:
    kin = [names["pt"], names["eta"], names["phi"]] + ([names["mass"]] if use_mass else [])
    exprs = list(kin)
    if has_label:
        exprs.append(names["label"])
    if has_id:
        exprs.append(names["event_id"])
    exprs += [k for k in id_names if k not in exprs]
    for arrays, a, b in _iterate_tree(p, tree_name, exprs, chunk_size, start, stop):
        _check_same_counts(p, arrays, kin, a)
        event_id = (
            ak.to_numpy(arrays[names["event_id"]]).astype(np.int64)
            if has_id
            else np.arange(a, b, dtype=np.int64)
        )
        label = _labels(p, arrays, names["label"], a, (-1, 0, 1)) if has_label else None
        pt = arrays[names["pt"]]
        chunk = particle_chunk(event_id, label, pt, arrays[names["eta"]], arrays[names["phi"]])
        if use_mass:
            keep = ak.values_astype(pt, np.float64) > 0  # the slots particle_chunk keeps
            mass = ak.values_astype(arrays[names["mass"]], np.float64)[keep]
            chunk = ak.with_field(
                chunk, ak.with_field(chunk["particles"], mass, "mass"), "particles"
            )
        for k in id_names:  # the input's run, luminosityBlock, event
            chunk = ak.with_field(chunk, ak.to_numpy(arrays[k]).astype(np.int64), k)
        yield chunk


# --------------------------------------------------------------------------------------------
# NanoAOD-style jet tables
# --------------------------------------------------------------------------------------------


class FatJetCounts(NamedTuple):
    """Event counts of `read_fatjet_features` (``return_counts=True``)."""

    #: Entries read (the range ``start:stop`` of the tree).
    n_events: int
    #: Events with at least two jets: the rows of the FeatureTable.
    n_kept: int
    #: Events dropped because they have fewer than two jets.
    n_fewer_than_two: int


def _check_chunking(chunk_size: int, start: int, stop: int | None) -> None:
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


def _open_jet_table(
    fh: Any,
    p: Path,
    *,
    prefix: str,
    tree: str | None,
    label: str | None,
    event_id: str | None,
    extra: Iterable[str] = (),
) -> tuple[Any, str | None, str | None]:
    """Pick and check the tree of a NanoAOD-style jet table; return (tree, label, event_id
    branch names or None where absent)."""
    t = _pick_tree(fh, p, tree, (PARTICLES_TREE,))
    keys = list(t.keys())
    present = set(keys)
    needed = [f"{prefix}_{q}" for q in FATJET_QUANTITIES]
    missing = [b for b in (*needed, *extra) if b not in present]
    if missing:
        if "mjj" in present:
            advice = "This is a features tree: read it with read_features(path) without jets=."
        else:
            jetlike = [
                c
                for c in _collections(present)
                if all(f"{c}_{q}" in present for q in FATJET_QUANTITIES)
            ]
            advice = (
                f"Pass prefix= one of the jet tables of this tree, {jetlike}."
                if jetlike
                else "Pass prefix= (and tree=) naming a jet table with branches "
                f"<prefix>_{{{', '.join(FATJET_QUANTITIES)}}}."
            )
        msg = (
            f"{p}: TTree {t.name!r} has no branch(es) {missing} ({_branch_summary(keys)}). "
            + advice
        )
        raise InputError(msg)
    not_jagged = [b for b in needed if not _is_jagged(t[b])]
    if not_jagged:
        msg = (
            f"{p}: branch(es) {not_jagged} of {t.name!r} are not jagged (one list of jets per "
            f"event, counter n{prefix}); not a NanoAOD-style jet table"
        )
        raise InputError(msg)

    def optional(name: str | None, default: str, what: str) -> str | None:
        branch = name or default
        if branch not in present:
            if name is not None:
                msg = f"{p}: TTree {t.name!r} has no {what} branch {name!r}"
                raise InputError(msg)
            return None
        if not _is_flat_number(t[branch]):
            msg = f"{p}: {what} branch {branch!r} is not one number per event"
            raise InputError(msg)
        return branch

    return t, optional(label, "label", "label"), optional(event_id, "event", "event_id")


@overload
def read_fatjet_features(
    path: PathLike,
    *,
    prefix: str = ...,
    tree: str | None = ...,
    label: str | None = ...,
    event_id: str | None = ...,
    chunk_size: int = ...,
    start: int = ...,
    stop: int | None = ...,
    return_counts: Literal[False] = ...,
) -> FeatureTable: ...


@overload
def read_fatjet_features(
    path: PathLike,
    *,
    prefix: str = ...,
    tree: str | None = ...,
    label: str | None = ...,
    event_id: str | None = ...,
    chunk_size: int = ...,
    start: int = ...,
    stop: int | None = ...,
    return_counts: Literal[True],
) -> tuple[FeatureTable, FatJetCounts]: ...


def read_fatjet_features(
    path: PathLike,
    *,
    prefix: str = "FatJet",
    tree: str | None = "Events",
    label: str | None = None,
    event_id: str | None = None,
    chunk_size: int = 100_000,
    start: int = 0,
    stop: int | None = None,
    return_counts: bool = False,
) -> FeatureTable | tuple[FeatureTable, FatJetCounts]:
    """Dijet features from the jets stored in a NanoAOD-style ROOT file, without reclustering.

    Streams the tree in chunks of `chunk_size` entries, takes the two pT-leading jets of the
    table `prefix` (jagged branches ``{prefix}_pt`` [GeV], ``_eta``, ``_phi``, ``_mass`` [GeV],
    ``_tau1``, ``_tau2`` sharing the counter ``n{prefix}``), forms px = pT cos(phi),
    py = pT sin(phi), pz = pT sinh(eta) and computes the features with
    `sideband.features.substructure.dijet_features`: m_JJ of the two jets' four-vectors, the
    lighter jet mass, the mass difference, tau21 = tau2 / (tau1 + 1e-5) of the lighter and the
    heavier jet, Delta R. Events with fewer than two jets are dropped; their number is logged
    (INFO) and returned with ``return_counts=True``.

    NanoAOD's ``FatJet`` table holds AK8 PUPPI jets (R = 0.8, pT > 170 GeV, ungroomed
    ``mass``, N-subjettiness with beta = 1 and one-pass kT axes): the features are close to,
    not the same as, sideband's anti-kT R = 1.0 reclustering of the PF candidates.

    Parameters
    ----------
    path
        The ROOT file.
    prefix
        Jet table (``FatJet``; e.g. ``FatJetAK15`` in PFNano with AK15 jets).
    tree
        TTree name (``Events``; ``None``: ``Events`` or the file's only TTree).
    label
        Branch with the truth label (1 signal, 0 background). Default: ``label`` where the
        tree has it, else the table is unlabelled. A branch named here must exist.
    event_id
        Branch with the event identifier. Default: ``event`` where present, else the entry
        number. A branch named here must exist.
    chunk_size
        Entries per chunk.
    start, stop
        Half-open range of entries to read (``stop=None``: to the end).
    return_counts
        Also return a `FatJetCounts` (entries read, kept, dropped).

    Returns
    -------
    FeatureTable with one row per event with >= 2 jets, columns
    `sideband.records.FEATURE_COLUMNS` [GeV] (and `FatJetCounts` with ``return_counts``).

    Raises
    ------
    InputError
        Missing file, tree or branches (the message lists the tree's branches and jet
        tables), non-jagged jet branches, jet branches of different lengths, labels not 0/1,
        masses that look like TeV.
    """
    _check_chunking(chunk_size, start, stop)
    p = check_readable(path)
    with _open_root(p) as fh:
        t, label_branch, id_branch = _open_jet_table(
            fh, p, prefix=prefix, tree=tree, label=label, event_id=event_id
        )
        tree_name = t.name
        n_entries = int(t.num_entries)
        id_names = [k for k in EVENT_IDENTIFIERS if k in t.keys(recursive=False)]
    stop = n_entries if stop is None else min(stop, n_entries)
    start = min(start, stop)
    jet_branches = [f"{prefix}_{q}" for q in FATJET_QUANTITIES]
    exprs = jet_branches + [b for b in (label_branch, id_branch) if b is not None]
    exprs += [k for k in id_names if k not in exprs]
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in (*FEATURE_COLUMNS, "event_id", "label", *id_names)
    }
    n_read = 0
    for arrays, a, b in _iterate_tree(p, tree_name, exprs, chunk_size, start, stop):
        n_read += b - a
        _check_same_counts(p, arrays, jet_branches, a)
        features, keep = _leading_pair_features(arrays, prefix)
        for name in FEATURE_COLUMNS:
            parts[name].append(features[name])
        ids = (
            ak.to_numpy(arrays[id_branch]).astype(np.int64)
            if id_branch is not None
            else np.arange(a, b, dtype=np.int64)
        )
        parts["event_id"].append(ids[keep])
        for k in id_names:
            parts[k].append(ak.to_numpy(arrays[k]).astype(np.int64)[keep])
        if label_branch is not None:
            lab = _labels(p, arrays, label_branch, a, (0, 1))
            parts["label"].append(lab.astype(np.int8)[keep])

    def joined(name: str, dtype: type) -> np.ndarray:
        return np.concatenate(parts[name]) if parts[name] else np.zeros(0, dtype)

    table = FeatureTable(
        {name: joined(name, np.float64) for name in FEATURE_COLUMNS},
        joined("event_id", np.int64),
        joined("label", np.int8) if label_branch is not None else None,
        {k: joined(k, np.int64) for k in id_names},
        source=str(p),
    )
    counts = FatJetCounts(n_read, len(table), n_read - len(table))
    if counts.n_fewer_than_two:
        logger.info(
            "%s: dropped %d of %d events with fewer than two %s jets",
            p,
            counts.n_fewer_than_two,
            n_read,
            prefix,
        )
    try:
        check_mass_units(table.mjj)
    except InputError as err:
        msg = f"{p}: {err}"
        raise InputError(msg) from err
    logger.info("read %d events (%s pairs) from %s", len(table), prefix, p)
    return (table, counts) if return_counts else table


def _leading_pair_features(
    arrays: ak.Array, prefix: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of the two pT-leading jets of each event with >= 2 jets, and that event mask."""
    from sideband.features.substructure import dijet_features  # not at import: sideband.features

    pt = arrays[f"{prefix}_pt"]
    keep = ak.to_numpy(ak.num(pt, axis=1)) >= 2
    lead = ak.argsort(pt, axis=1, ascending=False, stable=True)[:, :2][keep]
    jets: dict[str, np.ndarray] = {}
    for q in FATJET_QUANTITIES:
        v = ak.values_astype(arrays[f"{prefix}_{q}"][keep][lead], np.float64)
        for k in (1, 2):
            jets[f"{q}j{k}"] = ak.to_numpy(v[:, k - 1]) if len(v) else np.zeros(0)
    for k in (1, 2):
        jpt, eta, phi = jets[f"ptj{k}"], jets[f"etaj{k}"], jets[f"phij{k}"]
        jets[f"pxj{k}"] = jpt * np.cos(phi)
        jets[f"pyj{k}"] = jpt * np.sin(phi)
        jets[f"pzj{k}"] = jpt * np.sinh(eta)
        jets[f"mj{k}"] = jets[f"massj{k}"]
    return dijet_features(jets), keep


def iter_fatjet_constituents(
    path: PathLike,
    *,
    prefix: str = "FatJet",
    candidates: str = "PFCands",
    link: str | None = None,
    jet_index: str = "jetIdx",
    candidate_index: str | None = None,
    weight: str | None = None,
    n_jets: int = 2,
    tree: str | None = "Events",
    label: str | None = None,
    event_id: str | None = None,
    chunk_size: int = 10_000,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[ak.Array]:
    """Stream the `n_jets` pT-leading jets of each event with their constituents (PFNano).

    PFNano stores the PF candidates once (``PFCands_*``) and an association table
    ``FatJetPFCands`` with one row per (jet, candidate) pair: ``FatJetPFCands_jetIdx`` (index
    into ``FatJet``) and ``FatJetPFCands_pFCandsIdx`` (index into ``PFCands``). This follows
    those indices, so each jet's point cloud comes without reclustering.

    Parameters
    ----------
    prefix, candidates
        Jet table and candidate table (``FatJet``, ``PFCands``; JME PFNano for NanoAODv12+:
        ``candidates="PFCand"``, ``candidate_index="PFCandIdx"``).
    link
        Association table (default ``prefix + candidates``, e.g. ``FatJetPFCands``).
    jet_index, candidate_index
        Its index branches' suffixes (``jetIdx``; default ``pFCandsIdx`` for ``PFCands`` and
        ``<candidates>Idx`` otherwise).
    weight
        Optional candidate branch suffix (e.g. ``puppiWeight``) scaling each constituent's pT
        and mass, as PUPPI jets are built from weighted candidates. Default: unweighted.
    n_jets
        Jets per event, in decreasing pT (events with fewer jets have fewer).
    tree, label, event_id, chunk_size, start, stop
        As in `read_fatjet_features` (an unlabelled event has label -1).

    Yields
    ------
    ak.Array chunks of records ``{event_id: int64, label: int8, jets: var * {pt, eta, phi,
    mass, constituents: var * {pt, eta, phi, mass}}}`` (GeV), candidates of a jet in the order
    of the association table.
    """
    _check_chunking(chunk_size, start, stop)
    if isinstance(n_jets, bool) or not isinstance(n_jets, int | np.integer) or n_jets < 1:
        msg = f"n_jets must be a positive integer, got {n_jets!r}"
        raise InputError(msg)
    link = link or f"{prefix}{candidates}"
    if candidate_index is None:
        candidate_index = "pFCandsIdx" if candidates == "PFCands" else f"{candidates}Idx"
    cand_q = ["pt", "eta", "phi", "mass"] + ([weight] if weight else [])
    cand_branches = [f"{candidates}_{q}" for q in cand_q]
    link_branches = [f"{link}_{jet_index}", f"{link}_{candidate_index}"]
    p = check_readable(path)
    with _open_root(p) as fh:
        t, label_branch, id_branch = _open_jet_table(
            fh,
            p,
            prefix=prefix,
            tree=tree,
            label=label,
            event_id=event_id,
            extra=cand_branches + link_branches,
        )
        not_jagged = [b for b in cand_branches + link_branches if not _is_jagged(t[b])]
        if not_jagged:
            msg = f"{p}: branch(es) {not_jagged} of {t.name!r} are not jagged"
            raise InputError(msg)
        tree_name = t.name
        n_entries = int(t.num_entries)
    stop = n_entries if stop is None else min(stop, n_entries)
    return _iter_constituents(
        p,
        tree_name,
        jet_branches=[f"{prefix}_{q}" for q in ("pt", "eta", "phi", "mass")],
        cand_branches=cand_branches,
        link_branches=link_branches,
        label_branch=label_branch,
        id_branch=id_branch,
        n_jets=int(n_jets),
        chunk_size=int(chunk_size),
        start=min(start, stop),
        stop=stop,
    )


def _iter_constituents(
    p: Path,
    tree_name: str,
    *,
    jet_branches: list[str],
    cand_branches: list[str],
    link_branches: list[str],
    label_branch: str | None,
    id_branch: str | None,
    n_jets: int,
    chunk_size: int,
    start: int,
    stop: int,
) -> Iterator[ak.Array]:
    exprs = jet_branches + cand_branches + link_branches
    exprs += [b for b in (label_branch, id_branch) if b is not None]
    for arrays, a, b in _iterate_tree(p, tree_name, exprs, chunk_size, start, stop):
        _check_same_counts(p, arrays, jet_branches, a)
        _check_same_counts(p, arrays, cand_branches, a)
        _check_same_counts(p, arrays, link_branches, a)
        event_ids = (
            ak.to_numpy(arrays[id_branch]).astype(np.int64)
            if id_branch is not None
            else np.arange(a, b, dtype=np.int64)
        )
        labels = (
            _labels(p, arrays, label_branch, a, (-1, 0, 1)).astype(np.int8)
            if label_branch is not None
            else np.full(b - a, -1, np.int8)
        )
        jets = _jets_with_constituents(
            p, arrays, jet_branches, cand_branches, link_branches, n_jets, a
        )
        yield ak.zip({"event_id": event_ids, "label": labels, "jets": jets}, depth_limit=1)


def _jets_with_constituents(
    p: Path,
    arrays: ak.Array,
    jet_branches: list[str],
    cand_branches: list[str],
    link_branches: list[str],
    n_jets: int,
    first: int,
) -> ak.Array:
    """(N, var) jets {pt, eta, phi, mass, constituents: var * {...}} for one chunk."""
    n = len(arrays)
    jet_pt = arrays[jet_branches[0]]
    order = ak.argsort(jet_pt, axis=1, ascending=False, stable=True)
    lead = order[:, :n_jets]
    n_jet = ak.to_numpy(ak.num(jet_pt, axis=1)).astype(np.int64)
    n_lead = np.minimum(n_jet, n_jets)
    # rank of every jet in pT order (inverse permutation), flattened over the chunk
    rank = ak.to_numpy(ak.flatten(ak.argsort(order, axis=1), axis=1)).astype(np.int64)
    jet_start = np.concatenate([[0], np.cumsum(n_jet)[:-1]]).astype(np.int64)
    n_cand = ak.to_numpy(ak.num(arrays[cand_branches[0]], axis=1)).astype(np.int64)
    cand_start = np.concatenate([[0], np.cumsum(n_cand)[:-1]]).astype(np.int64)
    n_link = ak.to_numpy(ak.num(arrays[link_branches[0]], axis=1)).astype(np.int64)
    event = np.repeat(np.arange(n, dtype=np.int64), n_link)
    jet_idx = ak.to_numpy(ak.flatten(arrays[link_branches[0]], axis=1)).astype(np.int64)
    cand_idx = ak.to_numpy(ak.flatten(arrays[link_branches[1]], axis=1)).astype(np.int64)
    for what, idx, size in (("jet", jet_idx, n_jet), ("candidate", cand_idx, n_cand)):
        bad = (idx < 0) | (idx >= size[event])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            which = link_branches[0] if what == "jet" else link_branches[1]
            msg = (
                f"{p}: {which} = {idx[row]} in entry {first + int(event[row])} points outside "
                f"the {size[event[row]]} {what}(s) of that event; the association table does "
                "not belong to these tables"
            )
            raise InputError(msg)
    link_rank = rank[jet_start[event] + jet_idx]
    sel = link_rank < n_jets
    cell = event[sel] * n_jets + link_rank[sel]  # (event, jet rank) of each kept pair
    order_pairs = np.argsort(cell, kind="stable")
    global_cand = (cand_start[event] + cand_idx)[sel][order_pairs]
    per_cell = np.bincount(cell, minlength=n * n_jets).reshape(n, n_jets)
    valid = np.arange(n_jets)[None, :] < n_lead[:, None]
    names = ["pt", "eta", "phi", "mass"]
    flat = {
        q: ak.to_numpy(ak.flatten(arrays[b], axis=1)).astype(np.float64)
        for q, b in zip(names, cand_branches[:4], strict=True)
    }
    if len(cand_branches) > 4:  # weighted candidates: pT and mass scale with the weight
        w = ak.to_numpy(ak.flatten(arrays[cand_branches[4]], axis=1)).astype(np.float64)
        flat["pt"] = flat["pt"] * w
        flat["mass"] = flat["mass"] * w
    constituents = ak.unflatten(ak.zip({q: flat[q][global_cand] for q in names}), per_cell[valid])
    jets = {
        q: ak.values_astype(arrays[b][lead], np.float64)
        for q, b in zip(names, jet_branches, strict=True)
    }
    jets["constituents"] = ak.unflatten(constituents, n_lead)
    return ak.zip(jets, depth_limit=2)


def write_particles_root(path: PathLike, chunks: Iterable[ak.Array]) -> Path:
    """Stream chunks of the `iter_particles` layout into TTree ``Events`` (atomically).

    Branches ``event_id`` (int64), ``label`` (int8), ``part_pt``, ``part_eta``, ``part_phi``
    (float64, counter ``npart``), the defaults of `iter_particles`.
    """
    import uproot

    p = Path(path)
    n = 0
    with atomic_output(p) as tmp, uproot.recreate(tmp) as fh:
        tree = None
        for chunk in chunks:
            clean = check_particle_chunk(chunk, where=f"{p}: ")
            part = clean["particles"]
            if tree is None:
                tree = fh.mktree(
                    PARTICLES_TREE, {"event_id": np.int64, "label": np.int8, "part": part.type}
                )
            tree.extend(
                {
                    "event_id": ak.to_numpy(clean["event_id"]),
                    "label": ak.to_numpy(clean["label"]),
                    "part": part,
                }
            )
            n += len(clean)
        if tree is None:
            empty = ak.zip(
                {"pt": ak.Array([[0.0]]), "eta": ak.Array([[0.0]]), "phi": ak.Array([[0.0]])}
            )
            fh.mktree(PARTICLES_TREE, {"event_id": np.int64, "label": np.int8, "part": empty.type})
    logger.info("wrote %d events (particles) to %s", n, p)
    return p
