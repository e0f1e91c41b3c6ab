"""ROOT files (uproot): feature TTrees and TTrees of jagged particle branches.

Writing uses ``file.mktree(name, types)`` + ``tree.extend(...)``: with uproot >= 5.7 assigning a
dict (``file[name] = {...}``) writes an RNTuple, not a TTree.

- Features: TTree ``features`` with branches ``event_id`` (int64), the feature columns
  (float64, GeV) and ``label`` (int8) when labelled.
- Particles: TTree ``Events`` with ``event_id`` (int64), ``label`` (int8) and jagged
  ``part_pt`` [GeV], ``part_eta``, ``part_phi`` sharing the counter ``npart``. Foreign files
  can name the branches differently (``branches=`` of `iter_particles_root`).
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
    DEFAULT_PARTICLE_BRANCHES,
    FEATURE_FILE_COLUMNS,
    PathLike,
    atomic_output,
    check_particle_chunk,
    check_readable,
    particle_chunk,
)
from sideband.records import FeatureTable

__all__ = [
    "FEATURES_TREE",
    "PARTICLES_TREE",
    "count_root",
    "iter_particles_root",
    "read_features_root",
    "write_features_root",
    "write_particles_root",
]

logger = logging.getLogger(__name__)

#: Default TTree names written by sideband.
FEATURES_TREE = "features"
PARTICLES_TREE = "Events"

_SLICE_ROWS = 500_000


def _open_root(p: Path) -> Any:
    import uproot

    try:
        return uproot.open(p)
    except Exception as err:  # uproot raises many types for corrupt files
        msg = (
            f"{p}: cannot be opened as a ROOT file ({type(err).__name__}: {err}); it is "
            "truncated or corrupt. Re-create it."
        )
        raise InputError(msg) from err


def _ttrees(fh: Any) -> list[str]:
    return sorted(
        {k.split(";")[0] for k, cls in fh.classnames(recursive=True).items() if cls == "TTree"}
    )


def _pick_tree(fh: Any, p: Path, tree: str | None, prefer: tuple[str, ...]) -> Any:
    try:
        names = _ttrees(fh)
    except Exception as err:
        msg = f"{p}: cannot list the file's contents ({err}); it is truncated or corrupt"
        raise InputError(msg) from err
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
        msg = f"{p}: cannot read TTree {tree!r} ({err}); the file is truncated or corrupt"
        raise InputError(msg) from err


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
        t = _pick_tree(fh, p, tree, (FEATURES_TREE,))
        keys = list(t.keys())
        jagged = [k for k in keys if _is_jagged(t[k])]
        flat = [k for k in keys if _is_flat_number(t[k])]
        if "mjj" not in flat or jagged:
            msg = (
                f"{p}: TTree {t.name!r} is not a features tree: expected flat numeric branches "
                f"{list(FEATURE_FILE_COLUMNS)} (at least 'mjj'); got {keys}"
                + (f" with jagged {jagged} (a particle tree? use iter_particles)" if jagged else "")
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
            msg = f"{p}: cannot read TTree {t.name!r} ({err}); the file is truncated or corrupt"
            raise InputError(msg) from err
    data = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
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


def iter_particles_root(
    path: PathLike,
    *,
    chunk_size: int = 10_000,
    start: int = 0,
    stop: int | None = None,
    tree: str | None = None,
    branches: Mapping[str, str] | None = None,
) -> Iterator[ak.Array]:
    """Stream a TTree of jagged particle branches in chunks (see `iter_particles`).

    `branches` maps ``pt``, ``eta``, ``phi``, ``label`` (and optionally ``event_id``) to branch
    names, merged with `DEFAULT_PARTICLE_BRANCHES`. A missing label branch gives label -1
    (an error if you named it explicitly). ``event_id`` is the stored ``event_id`` branch when
    the tree has one (files from `write_particles_root`), else the entry number.
    """
    p = check_readable(path)
    given = dict(branches or {})
    unknown = sorted(set(given) - {"pt", "eta", "phi", "label", "event_id"})
    if unknown:
        msg = f"branches= has unknown key(s) {unknown}; allowed: pt, eta, phi, label, event_id"
        raise InputError(msg)
    names = {**DEFAULT_PARTICLE_BRANCHES, "event_id": "event_id", **given}
    with _open_root(p) as fh:
        t = _pick_tree(fh, p, tree, (PARTICLES_TREE,))
        tree_name = t.name
        keys = set(t.keys())
        missing = [names[k] for k in ("pt", "eta", "phi") if names[k] not in keys]
        if missing:
            msg = (
                f"{p}: TTree {tree_name!r} has no branch(es) {missing} (branches: {sorted(keys)}). "
                "Name the particle branches with branches={'pt': ..., 'eta': ..., 'phi': ...}."
            )
            raise InputError(msg)
        not_jagged = [names[k] for k in ("pt", "eta", "phi") if not _is_jagged(t[names[k]])]
        if not_jagged:
            msg = (
                f"{p}: branch(es) {not_jagged} of {tree_name!r} are not jagged (one list of "
                "particles per event); is this a features tree? use read_features"
            )
            raise InputError(msg)
        has_label = names["label"] in keys
        if not has_label and "label" in given:
            msg = f"{p}: TTree {tree_name!r} has no label branch {names['label']!r}"
            raise InputError(msg)
        has_id = names["event_id"] in keys and _is_flat_number(t[names["event_id"]])
        n_entries = int(t.num_entries)
    stop = n_entries if stop is None else min(stop, n_entries)
    return _iter_root(p, tree_name, names, has_label, has_id, chunk_size, min(start, stop), stop)


def _iter_root(
    p: Path,
    tree_name: str,
    names: Mapping[str, str],
    has_label: bool,
    has_id: bool,
    chunk_size: int,
    start: int,
    stop: int,
) -> Iterator[ak.Array]:
    exprs = [names["pt"], names["eta"], names["phi"]]
    if has_label:
        exprs.append(names["label"])
    if has_id:
        exprs.append(names["event_id"])
    if start >= stop:
        return
    with _open_root(p) as fh:
        t = fh[tree_name]
        try:
            for arrays, report in t.iterate(
                exprs,
                step_size=chunk_size,
                entry_start=start,
                entry_stop=stop,
                library="ak",
                report=True,
            ):
                a, b = int(report.tree_entry_start), int(report.tree_entry_stop)
                event_id = (
                    ak.to_numpy(arrays[names["event_id"]])
                    if has_id
                    else np.arange(a, b, dtype=np.int64)
                )
                label = None
                if has_label:
                    label = ak.to_numpy(arrays[names["label"]])
                    ok = np.isin(label, (-1, 0, 1))
                    if not ok.all():
                        row = a + int(np.flatnonzero(~ok)[0])
                        msg = f"{p}: label in entry {row} is {int(label[row - a])}; expected 0 or 1"
                        raise InputError(msg)
                yield particle_chunk(
                    event_id,
                    label,
                    arrays[names["pt"]],
                    arrays[names["eta"]],
                    arrays[names["phi"]],
                )
        except InputError:
            raise
        except Exception as err:
            msg = f"{p}: cannot read TTree {tree_name!r} ({err}); the file is truncated or corrupt"
            raise InputError(msg) from err


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
