"""What every background template model shares: its interface and its input checks.

A template model learns p(x | m_JJ) from data and samples it into a signal region (SR). Every
model in `sideband.background` (`CathodeTemplate`, `SigmaTemplate`) follows `TemplateModel`:

- ``fit(X, m, X_val=None, m_val=None)`` with X (N, d) auxiliary features and m (N,) m_JJ in GeV;
- ``sample(n_or_m, *, mass_sampler=None, seed=None, return_mass=False)``: template events (n, d);
- ``log_prob(X, m)``: log p(x | m) (N,) in the original feature space (Jacobians included);
- ``transform(X, m)`` / ``inverse_transform(z, m)``: data <-> latent space, where background
  is a standard normal at every m (the LaCATHODE space);
- ``save(path)`` / ``load(path, device=...)``, ``get_params()``, ``clone()``;
- fitted state in attributes ending in ``_`` (``history_``, ``best_epochs_``, ``preprocessing_``,
  ``n_features_in_``, ``device_``).

The checks here give every model the same error messages for bad input.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sideband.errors import InputError
from sideband.regions import check_mass_units

__all__ = [
    "TemplateModel",
    "check_features",
    "check_masses",
    "generator",
    "sample_masses",
    "split_validation",
]


@runtime_checkable
class TemplateModel(Protocol):
    """The interface of a background template model (see the module docstring)."""

    def fit(
        self,
        X: np.ndarray,
        m: np.ndarray,
        X_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> Any: ...

    def sample(self, n_or_m: int | np.ndarray, **kwargs: Any) -> Any: ...

    def log_prob(self, X: np.ndarray, m: np.ndarray) -> np.ndarray: ...

    def transform(self, X: np.ndarray, m: np.ndarray) -> np.ndarray: ...

    def inverse_transform(self, z: np.ndarray, m: np.ndarray) -> np.ndarray: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...

    def get_params(self) -> dict[str, Any]: ...


def generator(
    seed: int | np.random.Generator | np.random.SeedSequence | None,
) -> np.random.Generator:
    """A numpy Generator from a seed, SeedSequence or Generator (returned as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def check_masses(m: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    """m (N,) float64 in GeV: 1-D, finite, one per event when ``n`` is given, not TeV."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 1:
        msg = f"{name} must be a 1-D array of m_JJ values in GeV; got shape {m.shape}"
        raise InputError(msg)
    if n is not None and m.shape[0] != n:
        msg = f"{name} has {m.shape[0]} masses but the features have {n} rows; pass one per event"
        raise InputError(msg)
    bad = ~np.isfinite(m)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        msg = f"{name} has {int(bad.sum())} NaN/inf value(s) (first rows {rows}); drop those events"
        raise InputError(msg)
    check_mass_units(m, name=name)
    return m


def check_features(X: np.ndarray, name: str, d: int | None = None) -> np.ndarray:
    """X (N, d) float64: 2-D, finite, ``d`` columns when given."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        msg = f"{name} must be a 2-D array (N events, d features); got shape {X.shape}"
        raise InputError(msg)
    if d is not None and X.shape[1] != d:
        msg = (
            f"{name} has {X.shape[1]} feature column(s) but the template was fitted on {d}; pass "
            "the same features in the same order"
        )
        raise InputError(msg)
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))[:5].tolist()
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        msg = (
            f"{name} has {int(bad.sum())} NaN/inf value(s) in feature column(s) {cols} (first rows "
            f"{rows}); drop or fix those events"
        )
        raise InputError(msg)
    return X


def sample_masses(
    n_or_m: int | np.ndarray, mass_sampler: Any, gen: np.random.Generator, sampler_hint: str
) -> np.ndarray:
    """The masses (n,) GeV a template samples at: ``n_or_m`` itself when it is an array of
    masses, else ``n_or_m`` draws of ``mass_sampler`` (required then; ``sampler_hint`` names one
    in the error)."""
    if np.ndim(n_or_m) != 0:
        return check_masses(np.asarray(n_or_m), "m")
    n = int(n_or_m)  # type: ignore[arg-type]
    if n != n_or_m or n < 0:
        msg = f"number of samples must be a non-negative integer; got {n_or_m!r}"
        raise InputError(msg)
    if mass_sampler is None:
        msg = (
            f"sample({n}) needs masses: pass the SR masses (n,) in GeV, or a fitted "
            f"mass_sampler={sampler_hint}().fit(m_sr)"
        )
        raise InputError(msg)
    return mass_sampler.sample(n, rng=gen)


def split_validation(
    X: np.ndarray,
    m: np.ndarray,
    X_val: np.ndarray | None,
    m_val: np.ndarray | None,
    *,
    val_fraction: float,
    rng: np.random.Generator,
    min_events: int,
    shortfall: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation events (X_tr, m_tr, X_va, m_va) for a template's `fit`.

    With ``X_val``/``m_val`` (both or neither) those are checked and used; otherwise a random
    ``val_fraction`` of (X, m) is held out. ``shortfall`` ends the error raised when fewer than
    ``min_events`` training events (or no validation event) remain, e.g. what to do about it.
    """
    if (X_val is None) != (m_val is None):
        msg = "pass both X_val and m_val, or neither (then val_fraction of X is held out)"
        raise InputError(msg)
    if X_val is None or m_val is None:
        if not 0 < val_fraction < 1:
            msg = f"val_fraction must be in (0, 1) without X_val; got {val_fraction}"
            raise InputError(msg)
        n_val = round(val_fraction * X.shape[0])
        perm = rng.permutation(X.shape[0])
        X_tr, m_tr, X_va, m_va = X[perm[n_val:]], m[perm[n_val:]], X[perm[:n_val]], m[perm[:n_val]]
    else:
        X_tr, m_tr = X, m
        X_va = check_features(X_val, "X_val", X.shape[1])
        m_va = check_masses(m_val, "m_val", X_va.shape[0])
    if X_tr.shape[0] < min_events or X_va.shape[0] < 1:
        msg = f"{X_tr.shape[0]} training and {X_va.shape[0]} validation events: {shortfall}"
        raise InputError(msg)
    return X_tr, m_tr, X_va, m_va
