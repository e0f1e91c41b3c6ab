"""Checkpoints of a k-fold scoring run: one file per finished fold, so a killed run resumes.

`kfold_scores` writes ``fold_<i>_of_<k>.pkl`` into its ``checkpoint_dir`` after fold i: the
fitted classifier and the out-of-fold scores of that fold, with a fingerprint of the run (the
classifier's class and parameters, the number of folds, the seed, the validation scheme and the
SHA-1 of the data and template rows). A rerun with the same fingerprint takes finished folds from
disk and trains only the others; a file written with other settings raises `CheckpointError`
naming what differs, one written for other rows (a template sampled anew that differs in the
last bits, e.g. on another device) is retrained and overwritten. Files are written to a
temporary name and renamed (`sideband.report.atomic_write`), so a crash never leaves half a
file.
The models are pickled (scikit-learn's own persistence); read only checkpoints you wrote.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sideband.errors import CheckpointError

__all__ = ["fold_fingerprint", "fold_path", "load_fold", "save_fold"]

_FORMAT = "sideband.kfold_fold"
_FORMAT_VERSION = 1
#: Fingerprint entries of the rows: a checkpoint differing only in these is stale (retrained).
_ROWS = frozenset({"data_sha1", "template_sha1"})
#: Classifier parameters that change how a fit runs, not what it learns.
_RUN_ONLY = frozenset({"device", "n_jobs", "n_threads", "progress", "verbose"})


def _sha1(array: np.ndarray) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{array.shape} {array.dtype}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _stable_repr(value: Any) -> str:
    """repr of a parameter, or its type where the repr holds a memory address (which would
    differ between runs and refuse every checkpoint)."""
    text = repr(value)
    return f"<{_type_name(value)}>" if " at 0x" in text else text


def fold_fingerprint(
    classifier: Any,
    *,
    n_folds: int,
    seed: int,
    validation: str,
    data: np.ndarray,
    template: np.ndarray,
) -> dict[str, str]:
    """What a fold checkpoint must match to be reused (strings, compared exactly)."""
    params = classifier.get_params(deep=False) if hasattr(classifier, "get_params") else {}
    kept = {k: _stable_repr(v) for k, v in sorted(params.items()) if k not in _RUN_ONLY}
    return {
        "classifier": _type_name(classifier),
        "params": repr(kept),
        "n_folds": str(int(n_folds)),
        "seed": str(int(seed)),
        "validation": str(validation),
        "data_sha1": _sha1(data),
        "template_sha1": _sha1(template),
    }


def fold_path(checkpoint_dir: str | os.PathLike[str], fold: int, n_folds: int) -> Path:
    """``<checkpoint_dir>/fold_<fold>_of_<n_folds>.pkl``."""
    return Path(checkpoint_dir) / f"fold_{fold}_of_{n_folds}.pkl"


def save_fold(
    path: Path,
    fingerprint: dict[str, str],
    model: Any,
    scores: np.ndarray,
    template_scores: np.ndarray,
) -> None:
    """Write one finished fold atomically (temporary file in the same folder, then rename)."""
    from sideband.report import atomic_write

    payload = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "fingerprint": fingerprint,
        "model": model,
        "scores": np.asarray(scores, dtype=np.float64),
        "template_scores": np.asarray(template_scores, dtype=np.float64),
    }

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)

    atomic_write(path, write)


def load_fold(path: Path, fingerprint: dict[str, str]) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """(model, data scores, template scores) of a finished fold (scores of the fold's rows), or
    None if the file was written for other data or template rows with the same settings.

    A template is sampled anew by every run, and a sample drawn with another device or thread
    count can differ in the last bits: such a checkpoint is stale, not wrong, and the caller
    retrains the fold (and overwrites the file). Raises `CheckpointError` if the file is
    unreadable, not a fold checkpoint, or written with other settings (classifier, parameters,
    folds, seed, validation scheme; the message names them).
    """
    fix = f"delete {path} (that fold is then retrained) or use another checkpoint_dir"
    try:
        with path.open("rb") as f:
            payload = pickle.load(f)  # the user's own checkpoint folder (module docstring)
    except Exception as err:
        msg = f"fold checkpoint {path} cannot be read ({type(err).__name__}); it is corrupt: {fix}"
        raise CheckpointError(msg) from err
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        msg = f"{path} is not a sideband k-fold checkpoint: {fix}"
        raise CheckpointError(msg)
    if payload.get("format_version") != _FORMAT_VERSION:
        msg = (
            f"{path} has format version {payload.get('format_version')}, this sideband reads "
            f"{_FORMAT_VERSION}: {fix}"
        )
        raise CheckpointError(msg)
    old = payload.get("fingerprint")
    old = old if isinstance(old, dict) else {}
    differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if set(differ) - _ROWS:
        msg = f"fold checkpoint {path} was written by another run (differing: {differ}): {fix}"
        raise CheckpointError(msg)
    if differ:
        return None
    return payload["model"], payload["scores"], payload["template_scores"]
