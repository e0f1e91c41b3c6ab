"""The k-fold anomaly classifiers of an analysis, kept together with what their inputs mean.

An analysis trains ``scoring.n_folds`` classifiers in each of its ``background.cross_fit_folds``
chains; `FoldClassifiers` holds them as ``models[chain][fold]`` with the feature names and units
of their input columns, so they can score new events (`score`), be saved beside a run
(``classifiers.pkl``) and exported to ONNX (`sideband.scoring.onnx`).

The file is a pickle (scikit-learn's own way to keep fitted estimators) behind a small header
with the sideband and scikit-learn versions; load it only from a source you trust, and with the
same scikit-learn version (another version is refused with a message saying which to install).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.scoring.kfold import model_scores

__all__ = ["FoldClassifiers"]

_FORMAT = "sideband.fold_classifiers"
#: What the classifiers read (`FoldClassifiers.input_space`).
INPUT_SPACES = ("features", "latent", "point_clouds")
_VERSION = 1


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class FoldClassifiers:
    """Fitted classifiers ``models[chain][fold]`` and their input columns.

    Attributes
    ----------
    models
        One tuple of fold classifiers (scikit-learn style, ``predict_proba``) per chain.
    feature_names
        Names of the input columns, in order (e.g. ``("mj1", "delta_mj", ...)``).
    units
        Unit of each input column (``"GeV"`` or ``""``), same order.
    input_space
        ``"features"``: the classifiers read the features themselves (CATHODE, SIGMA);
        ``"latent"``: they read the template flow's latent space (LaCATHODE), so new events must
        first go through that chain's flow (`CathodeTemplate.transform`);
        ``"point_clouds"``: `PointCloudClassifier` s reading the constituents of both jets
        (``feature_names`` are then the per-constituent features); pass a `PointCloudTable`
        with as many constituent slots as the run's, or its `flatten_point_clouds` rows.
    """

    models: tuple[tuple[Any, ...], ...]
    feature_names: tuple[str, ...]
    units: tuple[str, ...]
    input_space: str = "features"

    def __post_init__(self) -> None:
        models = tuple(tuple(chain) for chain in self.models)
        if not models or not all(models):
            msg = "FoldClassifiers needs at least one chain with at least one fitted classifier"
            raise InputError(msg)
        if len(self.units) != len(self.feature_names):
            msg = (
                f"{len(self.units)} units for {len(self.feature_names)} features; give one unit "
                "per feature"
            )
            raise InputError(msg)
        if self.input_space not in INPUT_SPACES:
            msg = f"input_space must be one of {list(INPUT_SPACES)}; got {self.input_space!r}"
            raise InputError(msg)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "units", tuple(self.units))

    @property
    def n_chains(self) -> int:
        return len(self.models)

    @property
    def n_folds(self) -> int:
        return len(self.models[0])

    def flat(self) -> list[Any]:
        """All classifiers, chain by chain."""
        return [m for chain in self.models for m in chain]

    def columns(self, X: Any) -> np.ndarray:
        """(N, d) float64 input of the classifiers from a `FeatureTable`, a mapping name -> (N,)
        or an (N, d) array already in `feature_names` order."""
        from sideband.records import FeatureTable, PointCloudTable

        if self.input_space == "point_clouds":
            return self._point_cloud_rows(X)
        if isinstance(X, PointCloudTable):
            msg = (
                "these classifiers read high-level features, not point clouds; pass a "
                f"FeatureTable with columns {list(self.feature_names)}"
            )
            raise InputError(msg)
        if isinstance(X, FeatureTable):
            return X.x(self.feature_names)
        if isinstance(X, Mapping):
            missing = [n for n in self.feature_names if n not in X]
            if missing:
                msg = f"missing input column(s) {missing}; the classifiers read {list(self.feature_names)}"
                raise InputError(msg)
            return np.column_stack([np.asarray(X[n], dtype=np.float64) for n in self.feature_names])
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != len(self.feature_names):
            msg = (
                f"X has shape {Xa.shape}; expected (N, {len(self.feature_names)}) with columns "
                f"{list(self.feature_names)}"
            )
            raise InputError(msg)
        return Xa

    def _point_cloud_rows(self, X: Any) -> np.ndarray:
        """(N, 8 M + 10) float32 rows of point clouds for `PointCloudClassifier` s."""
        from sideband.records import PointCloudTable
        from sideband.scoring.point_cloud import flatten_point_clouds

        if isinstance(X, PointCloudTable):
            return flatten_point_clouds(X.constituents, X.mask, X.jets)
        if isinstance(X, np.ndarray) and X.ndim == 2:
            return X
        msg = (
            f"these classifiers read point clouds; pass a PointCloudTable (got "
            f"{type(X).__name__}), e.g. from sideband.events.read_point_clouds"
        )
        raise InputError(msg)

    def score(self, X: Any, *, chain: int | None = None, fold: int | None = None) -> np.ndarray:
        """Anomaly score (N,) of new events: the mean over every classifier (or over one chain's,
        or one classifier's with `chain` and `fold`). For events of the analysis itself use its
        per-event results, where each event is scored by a classifier that never saw it."""
        Xa = self.columns(X)
        if chain is None:
            if fold is not None:
                msg = "fold needs chain: pass both to score with one classifier"
                raise InputError(msg)
            models: Sequence[Any] = self.flat()
        else:
            if not 0 <= chain < self.n_chains:
                msg = f"chain {chain} does not exist; there are {self.n_chains} (0 to {self.n_chains - 1})"
                raise InputError(msg)
            models = self.models[chain]
            if fold is not None:
                if not 0 <= fold < len(models):
                    msg = f"fold {fold} does not exist; there are {len(models)}"
                    raise InputError(msg)
                models = [models[fold]]
        if len(Xa) == 0:
            return np.empty(0)
        return np.mean([model_scores(m, Xa) for m in models], axis=0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Pickle the classifiers with a version header, atomically; returns the path."""
        from sideband.report import atomic_write

        header = {
            "format": _FORMAT,
            "format_version": _VERSION,
            "sideband": _version("sideband"),
            "scikit-learn": _version("scikit-learn"),
            "torch": _version("torch"),
            "feature_names": list(self.feature_names),
            "units": list(self.units),
            "input_space": self.input_space,
        }

        def write(tmp: Path) -> None:
            # Header first, in its own pickle, so versions are checked before any model loads.
            with tmp.open("wb") as fh:
                pickle.dump(header, fh, protocol=pickle.HIGHEST_PROTOCOL)
                pickle.dump(self.models, fh, protocol=pickle.HIGHEST_PROTOCOL)

        return atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FoldClassifiers:
        """Read classifiers saved by `save` (trusted files only: this unpickles)."""
        p = Path(path)
        if not p.is_file():
            msg = f"{p}: no such file; a run folder of `sideband run` has classifiers.pkl"
            raise InputError(msg)
        try:
            with p.open("rb") as fh:
                header = pickle.load(fh)  # trusted files only (see the module docstring)
                if not isinstance(header, dict) or header.get("format") != _FORMAT:
                    msg = f"{p}: not a sideband classifiers file (written by FoldClassifiers.save)"
                    raise InputError(msg)
                saved, here = header.get("scikit-learn"), _version("scikit-learn")
                if saved != here:
                    msg = (
                        f"{p}: written with scikit-learn {saved}, but {here} is installed; fitted "
                        f"scikit-learn models are only safe to load with the same version: "
                        f"install scikit-learn=={saved}, or export them to ONNX where they were "
                        "trained (sideband export-onnx)"
                    )
                    raise InputError(msg)
                models = pickle.load(fh)
        except InputError:
            raise
        except Exception as err:
            msg = f"{p}: cannot read the classifiers ({err}); the file is truncated or corrupt"
            raise InputError(msg) from err
        return cls(
            models, tuple(header["feature_names"]), tuple(header["units"]), header["input_space"]
        )
