"""Signal region and sidebands in m_JJ (GeV)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sideband.errors import InputError

__all__ = ["SignalRegion", "check_mass_units"]


@dataclass(frozen=True)
class SignalRegion:
    """A signal region ``low_gev < mjj < high_gev`` and its sidebands.

    The sidebands are the complement of the SR, optionally bounded to
    ``[sideband_low_gev, sideband_high_gev]`` (None = unbounded).
    """

    low_gev: float
    high_gev: float
    sideband_low_gev: float | None = None
    sideband_high_gev: float | None = None

    def __post_init__(self) -> None:
        if not self.low_gev < self.high_gev:
            msg = (
                f"signal region low edge {self.low_gev} must be below high edge {self.high_gev} GeV"
            )
            raise InputError(msg)
        if self.sideband_low_gev is not None and self.sideband_low_gev > self.low_gev:
            msg = (
                f"sideband_low_gev {self.sideband_low_gev:g} must be at or below the SR low edge "
                f"{self.low_gev:g} GeV; lower it (the sidebands enclose the SR)"
            )
            raise InputError(msg)
        if self.sideband_high_gev is not None and self.sideband_high_gev < self.high_gev:
            msg = (
                f"sideband_high_gev {self.sideband_high_gev:g} must be at or above the SR high "
                f"edge {self.high_gev:g} GeV; raise it (the sidebands enclose the SR)"
            )
            raise InputError(msg)

    @property
    def center_gev(self) -> float:
        return 0.5 * (self.low_gev + self.high_gev)

    @property
    def width_gev(self) -> float:
        return self.high_gev - self.low_gev

    def contains(self, mjj: np.ndarray) -> np.ndarray:
        """Boolean mask (N,): events inside the SR."""
        mjj = np.asarray(mjj)
        return (mjj > self.low_gev) & (mjj < self.high_gev)

    def in_sidebands(self, mjj: np.ndarray) -> np.ndarray:
        """Boolean mask (N,): events in the (optionally bounded) sidebands."""
        mjj = np.asarray(mjj)
        lo = -np.inf if self.sideband_low_gev is None else self.sideband_low_gev
        hi = np.inf if self.sideband_high_gev is None else self.sideband_high_gev
        return ((mjj <= self.low_gev) & (mjj >= lo)) | ((mjj >= self.high_gev) & (mjj <= hi))

    def validate_against(self, mjj: np.ndarray, *, min_events: int = 1) -> None:
        """Raise `InputError` if the SR holds too few events or lies outside the data."""
        mjj = np.asarray(mjj)
        check_mass_units(mjj)
        lo, hi = float(np.min(mjj)), float(np.max(mjj))
        n_sr = int(self.contains(mjj).sum())
        where = f"m_JJ of the data spans {lo:.0f}-{hi:.0f} GeV"
        if self.high_gev <= lo or self.low_gev >= hi:
            msg = (
                f"signal region ({self.low_gev:g}, {self.high_gev:g}) GeV lies outside the data: "
                f"{where}. Masses are in GeV; move the window inside the data."
            )
            raise InputError(msg)
        if n_sr < min_events:
            msg = (
                f"signal region ({self.low_gev:g}, {self.high_gev:g}) GeV holds {n_sr} events "
                f"(need at least {min_events}); {where}. Widen the window or use more data."
            )
            raise InputError(msg)
        if int(self.in_sidebands(mjj).sum()) < min_events:
            msg = (
                f"the sidebands of ({self.low_gev:g}, {self.high_gev:g}) GeV hold fewer than "
                f"{min_events} events; {where}. Move the window away from the data's edge."
            )
            raise InputError(msg)


#: Median dijet mass [GeV] above which masses look like MeV: 50 TeV, beyond any collider's
#: reach (the LHC's sqrt(s) is 13.6 TeV).
_MEV_MEDIAN_GEV = 5e4


def check_mass_units(mjj: np.ndarray, *, name: str = "mjj") -> None:
    """Raise `InputError` if dijet masses look like TeV (median below 50) or MeV (median above
    50 TeV) rather than GeV."""
    mjj = np.asarray(mjj, dtype=float)
    finite = mjj[np.isfinite(mjj)]
    if finite.size and float(np.median(finite)) < 50.0:
        msg = (
            f"{name} has median {float(np.median(finite)):.3g}: this looks like TeV, but sideband "
            "works in GeV. Multiply by 1000 (the CATHODE .npy reader does this for you)."
        )
        raise InputError(msg)
    if finite.size and float(np.median(finite)) > _MEV_MEDIAN_GEV:
        msg = (
            f"{name} has median {float(np.median(finite)):.3g}: this looks like MeV, but sideband "
            "works in GeV. Divide the masses (mjj, mj1, delta_mj) by 1000."
        )
        raise InputError(msg)
