"""Point-cloud background models: generators of jet constituents (full phase space).

`PointCloudTemplate` (arXiv:2310.06897, the flow-matching variant) is the background template of
full events: a jet model generates both jets' kinematics given m_JJ, then
`ParticleFlowMatching` (EPiC-FM, arXiv:2307.06836) generates each jet's constituents (pT_rel,
Δη, Δφ) given the jet; `EPiCVelocityNet` is its permutation-equivariant velocity network. Names
load on first use (torch is imported then).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sideband.background.point_cloud.epic import EPiCLayer, EPiCVelocityNet
    from sideband.background.point_cloud.particles import ParticleFlowMatching
    from sideband.background.point_cloud.template import PointCloudTemplate

__all__ = ["EPiCLayer", "EPiCVelocityNet", "ParticleFlowMatching", "PointCloudTemplate"]

_WHERE = {
    "EPiCLayer": "sideband.background.point_cloud.epic",
    "EPiCVelocityNet": "sideband.background.point_cloud.epic",
    "ParticleFlowMatching": "sideband.background.point_cloud.particles",
    "PointCloudTemplate": "sideband.background.point_cloud.template",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
