"""Exception classes: one per kind of failure, each naming the problem and the fix."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FitError",
    "InputError",
    "NotFittedError",
    "SidebandError",
    "TrainingError",
]


class SidebandError(Exception):
    """Base class of every error raised on purpose by sideband."""


class InputError(SidebandError, ValueError):
    """Bad input data: missing file, wrong columns, NaN, wrong units, empty region."""


class ConfigError(SidebandError, ValueError):
    """An analysis configuration that does not validate."""


class TrainingError(SidebandError, RuntimeError):
    """A model whose training failed (non-finite loss, too few events)."""


class CheckpointError(SidebandError, OSError):
    """A checkpoint or saved model that is missing, corrupt or does not match."""


class NotFittedError(SidebandError, AttributeError):
    """An estimator used before `fit`."""


class FitError(SidebandError, RuntimeError):
    """A statistical fit (sideband fit, pyhf) that did not converge or is unusable."""
