"""Records passed between stages: plain numpy columns with names and units (GeV)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sideband.errors import InputError

__all__ = ["FEATURE_COLUMNS", "FeatureTable"]

#: Columns of a feature table, all in GeV where dimensionful. ``mj1`` is the lighter of the two
#: leading jets, ``delta_mj = mj2 - mj1 >= 0``, ``tau21_j*`` are tau2 / (tau1 + 1e-5) with beta = 1,
#: ``delta_r`` is Delta R between the two leading jets.
FEATURE_COLUMNS: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")


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
    """

    columns: Mapping[str, np.ndarray]
    event_id: np.ndarray
    label: np.ndarray | None = None
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
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "label", label)

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
            source=self.source,
        )

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of columns including ``event_id`` and ``label`` (when present)."""
        out = {"event_id": self.event_id, **self.columns}
        if self.label is not None:
            out["label"] = self.label
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[float]], *, source: str = "") -> FeatureTable:
        """Inverse of `to_dict`; a missing ``event_id`` becomes the row index."""
        cols = {k: np.asarray(v) for k, v in data.items()}
        event_id = cols.pop("event_id", None)
        label = cols.pop("label", None)
        if event_id is None:
            event_id = np.arange(len(cols.get("mjj", ())), dtype=np.int64)
        return cls(cols, event_id, label, source=source)

    @staticmethod
    def concatenate(tables: Sequence[FeatureTable]) -> FeatureTable:
        """Stack tables with the same columns, keeping their order."""
        if not tables:
            msg = "cannot concatenate an empty list of feature tables"
            raise InputError(msg)
        names = tables[0].names
        labelled = all(t.label is not None for t in tables)
        return FeatureTable(
            {n: np.concatenate([t.columns[n] for t in tables]) for n in names},
            np.concatenate([t.event_id for t in tables]),
            np.concatenate([t.label for t in tables]) if labelled else None,  # type: ignore[misc]
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


def _from(source: str) -> str:
    return f" of {source}" if source else ""
