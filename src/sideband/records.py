"""Records passed between stages: plain numpy columns with names and units (GeV)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sideband.errors import InputError

__all__ = [
    "CONSTITUENT_FEATURES",
    "EVENT_IDENTIFIERS",
    "FEATURE_COLUMNS",
    "FEATURE_UNITS",
    "JET_KINEMATICS",
    "FeatureTable",
    "PointCloudTable",
]

#: Columns of a feature table, all in GeV where dimensionful. ``mj1`` is the lighter of the two
#: leading jets, ``delta_mj = mj2 - mj1 >= 0``, ``tau21_j*`` are tau2 / (tau1 + 1e-5) with beta = 1,
#: ``delta_r`` is Delta R between the two leading jets.
FEATURE_COLUMNS: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")

#: Unit of each feature column ("" = dimensionless).
FEATURE_UNITS: dict[str, str] = {
    "mjj": "GeV", "mj1": "GeV", "delta_mj": "GeV", "tau21_j1": "", "tau21_j2": "", "delta_r": "",
}  # fmt: skip

#: Event identifiers of collider data (NanoAOD names) that a `FeatureTable` carries in ``ids``
#: where its input has them, so that per-event results can be joined back to the input.
EVENT_IDENTIFIERS: tuple[str, ...] = ("run", "luminosityBlock", "event")


@dataclass(frozen=True)
class FeatureTable:
    """Per-event dijet features, one row per event with two jets.

    Attributes
    ----------
    columns
        Mapping name -> float64 array of shape (N,). Always holds ``mjj`` [GeV]; usually the
        other names of `FEATURE_COLUMNS`. Masses in GeV.
    event_id
        int64 array (N,): the event's row index in its input file (or a user identifier).
    label
        Optional int8 array (N,): 1 = signal, 0 = background, where the input is labelled.
    ids
        Further per-event identifiers, name -> int64 array (N,): the input's ``run``,
        ``luminosityBlock`` and ``event`` (`EVENT_IDENTIFIERS`) where it has them; {} otherwise.
    """

    columns: Mapping[str, np.ndarray]
    event_id: np.ndarray
    label: np.ndarray | None = None
    ids: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        cols = {k: np.asarray(v, dtype=np.float64) for k, v in self.columns.items()}
        if "mjj" not in cols:
            msg = f"a FeatureTable needs an 'mjj' column (GeV); got columns {sorted(cols)}"
            raise InputError(msg)
        n = len(cols["mjj"])
        for name, arr in cols.items():
            if arr.shape != (n,):
                msg = f"column {name!r} has shape {arr.shape}, expected ({n},) like 'mjj'"
                raise InputError(msg)
        event_id = np.asarray(self.event_id, dtype=np.int64)
        if event_id.shape != (n,):
            msg = f"event_id has shape {event_id.shape}, expected ({n},)"
            raise InputError(msg)
        label = None
        if self.label is not None:
            label = np.asarray(self.label)
            if label.shape != (n,):
                msg = f"label has shape {label.shape}, expected ({n},)"
                raise InputError(msg)
            if label.size and not np.isin(label, (0, 1)).all():
                bad = np.unique(label[~np.isin(label, (0, 1))])[:5]
                msg = f"labels must be 0 (background) or 1 (signal); found {bad.tolist()}"
                raise InputError(msg)
            label = label.astype(np.int8)
        ids = {k: np.asarray(v) for k, v in (self.ids or {}).items()}
        for name, arr in ids.items():
            if arr.shape != (n,) or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
                msg = f"identifier {name!r} must be integers of shape ({n},); got {arr.dtype} {arr.shape}"
                raise InputError(msg)
            if name in cols or name in ("event_id", "label"):
                msg = f"identifier {name!r} clashes with a column of the same name; rename one"
                raise InputError(msg)
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "ids", {k: v.astype(np.int64) for k, v in ids.items()})

    def __len__(self) -> int:
        return len(self.columns["mjj"])

    @property
    def mjj(self) -> np.ndarray:
        """Dijet invariant mass, shape (N,), GeV."""
        return self.columns["mjj"]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def x(self, names: Sequence[str]) -> np.ndarray:
        """Stack the named feature columns into an array of shape (N, len(names))."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            msg = (
                f"feature(s) {missing} not in the table{_from(self.source)}; available: "
                f"{sorted(self.columns)}. Choose features from those (config `features`)."
            )
            raise InputError(msg)
        return (
            np.column_stack([self.columns[n] for n in names]) if names else np.empty((len(self), 0))
        )

    def select(self, mask: np.ndarray) -> FeatureTable:
        """Rows where the boolean `mask` (N,) is true, or rows at integer indices."""
        return FeatureTable(
            {k: v[mask] for k, v in self.columns.items()},
            self.event_id[mask],
            None if self.label is None else self.label[mask],
            {k: v[mask] for k, v in self.ids.items()},
            source=self.source,
        )

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of columns including ``event_id``, the `ids` and ``label`` (when present)."""
        out = {"event_id": self.event_id, **self.ids, **self.columns}
        if self.label is not None:
            out["label"] = self.label
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[float]], *, source: str = "") -> FeatureTable:
        """Inverse of `to_dict`; a missing ``event_id`` becomes the row index. Integer columns
        named in `EVENT_IDENTIFIERS` become `ids`."""
        cols = {k: np.asarray(v) for k, v in data.items()}
        event_id = cols.pop("event_id", None)
        label = cols.pop("label", None)
        ids = {
            k: cols.pop(k)
            for k in EVENT_IDENTIFIERS
            if k in cols and np.issubdtype(cols[k].dtype, np.integer)
        }
        if event_id is None:
            event_id = np.arange(len(cols.get("mjj", ())), dtype=np.int64)
        return cls(cols, event_id, label, ids, source=source)

    @staticmethod
    def concatenate(tables: Sequence[FeatureTable]) -> FeatureTable:
        """Stack tables with the same columns, keeping their order."""
        if not tables:
            msg = "cannot concatenate an empty list of feature tables"
            raise InputError(msg)
        names = tables[0].names
        labelled = all(t.label is not None for t in tables)
        id_names = [k for k in tables[0].ids if all(k in t.ids for t in tables)]
        return FeatureTable(
            {n: np.concatenate([t.columns[n] for t in tables]) for n in names},
            np.concatenate([t.event_id for t in tables]),
            np.concatenate([t.label for t in tables]) if labelled else None,  # type: ignore[misc]
            {k: np.concatenate([t.ids[k] for t in tables]) for k in id_names},
            source=tables[0].source,
        )

    def check_finite(self, names: Sequence[str]) -> None:
        """Raise `InputError` naming the column and rows where features are NaN or inf."""
        for name in names:
            bad = ~np.isfinite(self.columns[name])
            if bad.any():
                rows = np.flatnonzero(bad)[:5].tolist()
                msg = (
                    f"column {name!r}{_from(self.source)} has {int(bad.sum())} NaN/inf value(s) "
                    f"(first rows {rows}); drop or fix those events before training"
                )
                raise InputError(msg)


#: Per-constituent coordinates of a `PointCloudTable`, relative to the jet axis:
#: pT_rel = pT / pT_jet, Delta eta = eta - eta_jet, Delta phi = phi - phi_jet wrapped into [-pi, pi).
CONSTITUENT_FEATURES: tuple[str, ...] = ("pt_rel", "deta", "dphi")
#: Per-jet quantities of a `PointCloudTable`: pT [GeV], pseudorapidity, azimuth, mass [GeV] and the
#: number of constituents (before truncation to the table's maximum).
JET_KINEMATICS: tuple[str, ...] = ("pt", "eta", "phi", "m", "n_constituents")


@dataclass(frozen=True, eq=False)
class PointCloudTable:
    """Constituent point clouds of the two pT-leading jets, one row per event with two jets.

    Attributes
    ----------
    constituents
        float32 (N, 2, M, 3): `CONSTITUENT_FEATURES` of each jet's constituents (jet axis 1 in
        pT order), pT-ordered (hardest first), zero where `mask` is false. M is the maximum
        number of constituents kept per jet (279 in the full-phase-space study, 2310.06897).
    mask
        bool (N, 2, M): true for real constituents, false for padding.
    jets
        float64 (N, 2, 5): `JET_KINEMATICS` of the two leading jets (GeV).
    mjj
        float64 (N,): dijet invariant mass [GeV].
    event_id
        int64 (N,): the event's row index in its file (or its ``event_id`` branch).
    label
        Optional int8 (N,): 1 signal, 0 background.

    Compared by identity (the arrays have no single truth value).
    """

    constituents: np.ndarray
    mask: np.ndarray
    jets: np.ndarray
    mjj: np.ndarray
    event_id: np.ndarray
    label: np.ndarray | None = None
    source: str = field(default="")

    def __post_init__(self) -> None:
        cons = np.asarray(self.constituents, dtype=np.float32)
        mask = np.asarray(self.mask, dtype=bool)
        jets = np.asarray(self.jets, dtype=np.float64)
        mjj = np.asarray(self.mjj, dtype=np.float64)
        n = len(mjj)
        k = len(CONSTITUENT_FEATURES)
        if cons.ndim != 4 or cons.shape[0] != n or cons.shape[1] != 2 or cons.shape[3] != k:
            msg = f"constituents must have shape (N={n}, 2, M, {k}); got {cons.shape}"
            raise InputError(msg)
        if mask.shape != cons.shape[:3]:
            msg = f"mask must have shape {cons.shape[:3]} like constituents; got {mask.shape}"
            raise InputError(msg)
        if jets.shape != (n, 2, len(JET_KINEMATICS)):
            msg = f"jets must have shape ({n}, 2, {len(JET_KINEMATICS)}); got {jets.shape}"
            raise InputError(msg)
        event_id = np.asarray(self.event_id, dtype=np.int64)
        if mjj.shape != (n,) or event_id.shape != (n,):
            msg = f"mjj and event_id must have shape ({n},); got {mjj.shape}, {event_id.shape}"
            raise InputError(msg)
        label = None
        if self.label is not None:
            label = np.asarray(self.label)
            if label.shape != (n,) or (label.size and not np.isin(label, (0, 1)).all()):
                msg = f"label must be ({n},) of 0 (background) / 1 (signal); got {label.shape}"
                raise InputError(msg)
            label = label.astype(np.int8)
        for name, value in (
            ("constituents", cons),
            ("mask", mask),
            ("jets", jets),
            ("mjj", mjj),
            ("event_id", event_id),
            ("label", label),
        ):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.mjj)

    @property
    def max_constituents(self) -> int:
        """M, the constituent slots per jet."""
        return int(self.constituents.shape[2])

    def select(self, rows: np.ndarray) -> PointCloudTable:
        """Rows where the boolean `rows` (N,) is true, or rows at integer indices."""
        return PointCloudTable(
            self.constituents[rows],
            self.mask[rows],
            self.jets[rows],
            self.mjj[rows],
            self.event_id[rows],
            None if self.label is None else self.label[rows],
            source=self.source,
        )

    @staticmethod
    def concatenate(tables: Sequence[PointCloudTable]) -> PointCloudTable:
        """Stack tables with the same M, keeping their order (labels kept if all have them)."""
        if not tables:
            msg = "cannot concatenate an empty list of point-cloud tables"
            raise InputError(msg)
        sizes = {t.max_constituents for t in tables}
        if len(sizes) > 1:
            msg = f"point-cloud tables have different max_constituents {sorted(sizes)}"
            raise InputError(msg)
        labelled = all(t.label is not None for t in tables)
        return PointCloudTable(
            np.concatenate([t.constituents for t in tables]),
            np.concatenate([t.mask for t in tables]),
            np.concatenate([t.jets for t in tables]),
            np.concatenate([t.mjj for t in tables]),
            np.concatenate([t.event_id for t in tables]),
            np.concatenate([t.label for t in tables]) if labelled else None,  # type: ignore[misc]
            source=tables[0].source,
        )


def _from(source: str) -> str:
    return f" of {source}" if source else ""
