"""sideband: resonant anomaly detection (the enhanced bump hunt) on the Scikit-HEP stack.

Stages, in workflow order: `sideband.events` (read files) -> `sideband.features` (jets and
substructure) -> `sideband.background` (template in the signal region) -> `sideband.scoring`
(k-folded anomaly score) -> `sideband.bumphunt` (pyhf fit of m_JJ) -> `sideband.evaluation`.
Everything is in GeV. Heavy libraries (torch, coffea, pyhf) load only when a stage is used.
"""

from __future__ import annotations

from sideband.errors import (
    CheckpointError,
    ConfigError,
    FitError,
    InputError,
    NotFittedError,
    SidebandError,
    TrainingError,
)
from sideband.records import FEATURE_COLUMNS, FeatureTable
from sideband.regions import SignalRegion

__version__ = "0.1.0"

__all__ = [
    "FEATURE_COLUMNS",
    "CheckpointError",
    "ConfigError",
    "FeatureTable",
    "FitError",
    "InputError",
    "NotFittedError",
    "SidebandError",
    "SignalRegion",
    "TrainingError",
    "__version__",
]


def __dir__() -> list[str]:
    return __all__
