"""Stage 5, the bump hunt: sideband fit of m_JJ (GeV) and the pyhf model of the signal region.

`bump_hunt` is the whole step; `mass_binning`, `fit_dijet` and `build_model` are its pieces. It
takes m_JJ values after whatever selection and knows nothing about how a score was made. pyhf is
imported only when a model is built. The pseudo-experiments of this stage (a background-only
truth, toys, the look-elsewhere effect over a scan) are in `sideband.bumphunt.toys`.
"""

from __future__ import annotations

from sideband.bumphunt.dijet import DijetFit, fit_dijet, mass_binning
from sideband.bumphunt.hunt import BumpHuntResult, bump_hunt, save_workspace, workspace_statistics
from sideband.bumphunt.model import build_model, build_spec
from sideband.bumphunt.toys import (
    BackgroundSpectrum,
    GlobalSignificance,
    ToyScan,
    background_spectrum,
    global_pvalue,
    max_local_significance_toys,
    pseudo_mjj,
)

__all__ = [
    "BackgroundSpectrum",
    "BumpHuntResult",
    "DijetFit",
    "GlobalSignificance",
    "ToyScan",
    "background_spectrum",
    "build_model",
    "build_spec",
    "bump_hunt",
    "fit_dijet",
    "global_pvalue",
    "mass_binning",
    "max_local_significance_toys",
    "pseudo_mjj",
    "save_workspace",
    "workspace_statistics",
]


def __dir__() -> list[str]:
    return __all__
