"""Background templates in the signal region, learned from the sidebands.

`CathodeTemplate` (conditional normalizing flow on the sidebands, CATHODE / LaCATHODE) and
`SigmaTemplate` (one flow-matching model of all data, interpolated into any signal region),
both following `TemplateModel`, `PointCloudTemplate` (full events: jet kinematics given m_JJ, then
each jet's constituent point cloud; `sideband.background.point_cloud`), with their shared pieces:
invertible preprocessing with exact log-Jacobians (`LogitScaler`, `StandardScaler`,
`PreprocessingPipeline`), the signal-region mass samplers (`KDEMassSampler`, `HistogramMassSampler`) and the one training
loop for torch models (`fit_loop`). Everything is in GeV.

Names load on first use, so ``import sideband.background`` does not import torch; the numpy-only
pieces (`KDEMassSampler`, the transforms) never do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sideband.background.base import TemplateModel
    from sideband.background.cathode import CathodeTemplate
    from sideband.background.mass_sampler import HistogramMassSampler, KDEMassSampler
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.background.sigma import SigmaTemplate
    from sideband.background.training import FitResult, TrainingHistory, fit_loop
    from sideband.background.transforms import (
        LogitScaler,
        PreprocessingPipeline,
        StandardScaler,
    )

__all__ = [
    "CathodeTemplate",
    "FitResult",
    "HistogramMassSampler",
    "KDEMassSampler",
    "LogitScaler",
    "PointCloudTemplate",
    "PreprocessingPipeline",
    "SigmaTemplate",
    "StandardScaler",
    "TemplateModel",
    "TrainingHistory",
    "fit_loop",
]

_WHERE = {
    "CathodeTemplate": "sideband.background.cathode",
    "FitResult": "sideband.background.training",
    "HistogramMassSampler": "sideband.background.mass_sampler",
    "KDEMassSampler": "sideband.background.mass_sampler",
    "PointCloudTemplate": "sideband.background.point_cloud.template",
    "SigmaTemplate": "sideband.background.sigma",
    "TemplateModel": "sideband.background.base",
    "LogitScaler": "sideband.background.transforms",
    "PreprocessingPipeline": "sideband.background.transforms",
    "StandardScaler": "sideband.background.transforms",
    "TrainingHistory": "sideband.background.training",
    "fit_loop": "sideband.background.training",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module 'sideband.background' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return __all__
