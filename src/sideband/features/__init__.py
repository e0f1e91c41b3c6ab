"""Stage 2: jets and substructure features from particles (anti-kT, N-subjettiness, m_JJ).

`cluster_dijets` and `dijet_features` (in `sideband.features.substructure`) and `jet_point_clouds`
(constituents of the two leading jets, in `sideband.features.constituents`) are plain functions on
awkward/numpy arrays. `DijetFeatureProcessor` (a coffea processor on flat particle branches),
`NanoAODDijetProcessor` (the same on NanoAOD events: stored ``FatJet`` or reclustered ``PFCands``,
for users' own coffea ``Runner``), `collect_features` / `collect_point_clouds` (merged accumulator
-> records) and `extract_features` (files -> `sideband.records.FeatureTable` through coffea's
Runner) load coffea on first use.
"""

from __future__ import annotations

from typing import Any

from sideband.features.constituents import DEFAULT_MAX_CONSTITUENTS, jet_point_clouds
from sideband.features.substructure import (
    JET_COLUMNS,
    NSUBJETTINESS_AXES,
    TAU21_EPSILON,
    cluster_dijets,
    dijet_features,
)

__all__ = [
    "DEFAULT_MAX_CONSTITUENTS",
    "JET_COLUMNS",
    "NSUBJETTINESS_AXES",
    "TAU21_EPSILON",
    "DijetFeatureProcessor",
    "NanoAODDijetProcessor",
    "cluster_dijets",
    "collect_features",
    "collect_point_clouds",
    "dijet_features",
    "extract_features",
    "jet_point_clouds",
]

_LAZY = {
    "DijetFeatureProcessor": "sideband.features.processor",
    "NanoAODDijetProcessor": "sideband.features.processor",
    "collect_features": "sideband.features.processor",
    "collect_point_clouds": "sideband.features.processor",
    "extract_features": "sideband.features.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'sideband.features' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return __all__
