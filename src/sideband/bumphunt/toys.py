"""Pseudo-experiments of the fit stage: a background-only truth, pseudo m_JJ, the look-elsewhere
effect over a scan of signal regions.

`background_spectrum` fits the dijet function to the whole m_JJ range (no SR masked) and returns
the expected counts in fine bins: the background-only truth. `pseudo_mjj` draws one Poisson
pseudo-experiment from it as masses (GeV), which `bump_hunt` can bin as it likes.
`max_local_significance_toys` runs `bump_hunt` in every window of a scan on each pseudo-experiment
and keeps the largest local Z per toy; `global_pvalue` turns the observed maximum into a global
p-value and significance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from sideband.bumphunt.dijet import DijetFit, fit_dijet
from sideband.bumphunt.hunt import bump_hunt
from sideband.errors import InputError, SidebandError
from sideband.regions import SignalRegion, check_mass_units

__all__ = [
    "BackgroundSpectrum",
    "GlobalSignificance",
    "ToyScan",
    "background_spectrum",
    "global_pvalue",
    "max_local_significance_toys",
    "pseudo_mjj",
]

log = logging.getLogger(__name__)


class BackgroundSpectrum(NamedTuple):
    """Output of `background_spectrum`.

    Attributes
    ----------
    edges
        Fine bin edges (n_bins + 1,), GeV.
    expected
        Expected background counts per fine bin (n_bins,), events: the fitted dijet function
        integrated over each bin.
    fit
        The `DijetFit` behind it (all bins fitted); check ``fit.gof_pvalue``.
    """

    edges: np.ndarray
    expected: np.ndarray
    fit: DijetFit


class GlobalSignificance(NamedTuple):
    """Output of `global_pvalue`: p-value, significance ``norm.isf(p)`` and toys used."""

    p_value: float
    significance: float
    n_toys: int


@dataclass(frozen=True, eq=False)
class ToyScan:
    """Output of `max_local_significance_toys`.

    Attributes
    ----------
    z, z_signed, mu_hat
        (n_toys, n_windows) local Z (``BumpHuntResult.z``, >= 0), signed Z
        (``fit_info["z_signed"]``) and best-fit signal events per toy and window; NaN where the
        window's fit failed.
    max_z
        (n_toys,) largest local Z over the windows of each toy (NaN if every window failed).
    failures
        One dict per failed window fit: ``toy``, ``window`` (indices) and ``error`` (the
        exception type and message).
    windows
        The signal regions scanned, in column order.
    seed, scale
        Seed of the toys and the factor applied to the expected counts.
    """

    z: np.ndarray
    z_signed: np.ndarray
    mu_hat: np.ndarray
    max_z: np.ndarray
    failures: list[dict[str, Any]] = field(default_factory=list)
    windows: tuple[SignalRegion, ...] = ()
    seed: int | None = None
    scale: float = 1.0

    @property
    def n_toys(self) -> int:
        return int(self.z.shape[0])


def background_spectrum(
    mjj: np.ndarray,
    low_gev: float,
    high_gev: float,
    *,
    bin_width_gev: float = 10.0,
    n_params: int = 4,
    sqrt_s_gev: float = 13000.0,
) -> BackgroundSpectrum:
    """Fit the dijet function to all of ``[low_gev, high_gev]`` (no SR masked): a background truth.

    Parameters
    ----------
    mjj
        Dijet masses (N,), GeV (e.g. background-only data or a QCD sample after a cut).
    low_gev, high_gev
        Range of the truth, GeV. It is split into ``ceil((high - low) / bin_width_gev)`` equal
        fine bins (at most `bin_width_gev` wide).
    bin_width_gev
        Fine bin width, GeV. Use a fraction of the analysis bins (default 10 GeV against
        100 GeV): `pseudo_mjj` spreads events uniformly within a fine bin, so a coarser analysis
        binning aligned with these edges sees exactly the fitted function.
    n_params
        Parameters of the dijet function (3, 4, 5; with `fit_dijet`'s fallback, or "auto").
    sqrt_s_gev
        Centre-of-mass energy, GeV.

    Returns
    -------
    BackgroundSpectrum
        ``(edges, expected, fit)``: fine edges (n_bins + 1,) GeV, expected counts (n_bins,),
        and the fit (look at ``fit.gof_pvalue`` before trusting it as a truth).

    Raises
    ------
    InputError
        Bad masses or range. FitError: the dijet fit fails.
    """
    mjj = np.asarray(mjj, dtype=np.float64)
    if mjj.ndim != 1 or mjj.size == 0 or not np.all(np.isfinite(mjj)):
        msg = f"mjj must be a non-empty finite 1-D array of masses (GeV); got shape {mjj.shape}"
        raise InputError(msg)
    check_mass_units(mjj)
    low, high, width = float(low_gev), float(high_gev), float(bin_width_gev)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        msg = f"need low_gev < high_gev (GeV); got {low_gev!r}, {high_gev!r}"
        raise InputError(msg)
    if not (np.isfinite(width) and 0 < width <= high - low):
        msg = f"bin_width_gev must be in (0, high - low] GeV; got {bin_width_gev!r}"
        raise InputError(msg)
    n_bins = int(np.ceil((high - low) / width - 1e-9))
    edges = np.linspace(low, high, n_bins + 1)
    counts = np.histogram(mjj, bins=edges)[0].astype(np.float64)
    fit = fit_dijet(counts, edges, sqrt_s_gev=sqrt_s_gev, n_params=n_params)
    log.info(
        "background truth: %d events in %g-%g GeV, %d-parameter dijet fit, GOF p = %.3g",
        counts.sum(), low, high, fit.n_params, fit.gof_pvalue,
    )  # fmt: skip
    return BackgroundSpectrum(edges=edges, expected=fit.predict(edges), fit=fit)


def _check_spectrum(edges: Any, expected: Any) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(edges, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(~np.isfinite(edges)):
        msg = f"edges must be a finite 1-D array of >= 2 bin edges (GeV); got shape {edges.shape}"
        raise InputError(msg)
    if np.any(np.diff(edges) <= 0):
        msg = "edges must be strictly increasing (GeV)"
        raise InputError(msg)
    if expected.shape != (edges.size - 1,):
        msg = f"expected has shape {expected.shape}; need ({edges.size - 1},), one per bin"
        raise InputError(msg)
    if np.any(~np.isfinite(expected)) or np.any(expected < 0):
        msg = "expected counts must be finite and non-negative (events per bin)"
        raise InputError(msg)
    return edges, expected


def pseudo_mjj(edges: Any, expected: Any, rng: np.random.Generator) -> np.ndarray:
    """One Poisson pseudo-experiment as masses: ``n_k ~ Poisson(expected_k)`` events per bin,
    each placed uniformly within its bin.

    Parameters
    ----------
    edges
        Bin edges (n_bins + 1,), GeV, increasing.
    expected
        Expected counts per bin (n_bins,), events.
    rng
        The random generator (``np.random.default_rng(seed)``).

    Returns
    -------
    np.ndarray
        m_JJ values (N,), GeV, in bin order (sorted by bin, not within a bin).
    """
    edges, expected = _check_spectrum(edges, expected)
    if not isinstance(rng, np.random.Generator):
        msg = f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(rng)}"
        raise InputError(msg)
    counts = rng.poisson(expected)
    low = np.repeat(edges[:-1], counts)
    width = np.repeat(np.diff(edges), counts)
    return low + width * rng.random(low.size)


def _check_windows(windows: Sequence[SignalRegion]) -> tuple[SignalRegion, ...]:
    windows = tuple(windows)
    if not windows:
        msg = "windows is empty: pass at least one SignalRegion to scan"
        raise InputError(msg)
    if not all(isinstance(w, SignalRegion) for w in windows):
        msg = "windows must be SignalRegion objects"
        raise InputError(msg)
    bounds = {(w.sideband_low_gev, w.sideband_high_gev) for w in windows}
    if len(bounds) > 1:
        msg = (
            f"the windows have different sideband bounds {sorted(bounds, key=str)}; a scan's "
            "windows share one fit range (SignalRegion(lo, hi, sb_lo, sb_hi) with the same "
            "sb_lo, sb_hi)"
        )
        raise InputError(msg)
    return windows


def max_local_significance_toys(
    edges: Any,
    expected: Any,
    windows: Sequence[SignalRegion],
    *,
    n_toys: int,
    seed: int | None,
    hunt_options: Mapping[str, Any] | None = None,
    scale: float = 1.0,
    progress: bool = False,
) -> ToyScan:
    """Local significance of every window on background-only pseudo-experiments.

    Toy ``k`` draws masses with `pseudo_mjj` from ``expected * scale`` using the generator
    ``np.random.default_rng(np.random.SeedSequence(seed).spawn(n_toys)[k])`` (reproducible toy
    by toy), then runs ``bump_hunt(masses, window, compute_limit=False, **hunt_options)`` in
    every window. A window whose hunt raises a sideband error (`FitError`, `InputError`) is
    recorded as NaN with its error and the scan goes on.

    Parameters
    ----------
    edges, expected
        The background truth (see `background_spectrum`): fine bin edges (n_bins + 1,) GeV and
        expected counts (n_bins,).
    windows
        Signal regions to scan (overlapping is fine), all with the same sideband bounds.
    n_toys
        Number of pseudo-experiments (>= 1).
    seed
        Seed of the toys (None: fresh entropy, not reproducible).
    hunt_options
        Keyword arguments of `bump_hunt` (``bin_width_gev``, ``bin_resolution``, ``n_params``,
        ``signal_width_gev``, ...); ``compute_limit`` is always False here.
    scale
        Factor on `expected` (e.g. a different luminosity or cut efficiency), > 0.
    progress
        Show a tqdm progress bar over the toys.

    Returns
    -------
    ToyScan
        ``z``, ``z_signed``, ``mu_hat`` (n_toys, n_windows), ``max_z`` (n_toys,), ``failures``.
    """
    edges, expected = _check_spectrum(edges, expected)
    windows = _check_windows(windows)
    if isinstance(n_toys, bool) or not isinstance(n_toys, int | np.integer) or n_toys < 1:
        msg = f"n_toys must be a positive integer; got {n_toys!r}"
        raise InputError(msg)
    if not (np.isfinite(scale) and scale > 0):
        msg = f"scale must be a positive factor on the expected counts; got {scale!r}"
        raise InputError(msg)
    options = dict(hunt_options or {})
    if options.pop("compute_limit", False):
        log.info("max_local_significance_toys: compute_limit=True ignored (no limits on toys)")
    shape = (int(n_toys), len(windows))
    z, z_signed, mu_hat = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    failures: list[dict[str, Any]] = []
    children = np.random.SeedSequence(seed).spawn(int(n_toys))
    from tqdm.auto import tqdm

    for k in tqdm(range(int(n_toys)), disable=not progress, desc="toys", unit="toy"):
        mjj = pseudo_mjj(edges, expected * scale, np.random.default_rng(children[k]))
        for j, window in enumerate(windows):
            try:
                res = bump_hunt(mjj, window, compute_limit=False, **options)
            except SidebandError as err:
                failures.append({"toy": k, "window": j, "error": f"{type(err).__name__}: {err}"})
                log.info("toy %d, window %d failed: %s", k, j, err)
                continue
            z[k, j], z_signed[k, j] = res.z, res.fit_info["z_signed"]
            mu_hat[k, j] = res.mu_hat
    with np.errstate(invalid="ignore"):
        all_failed = np.all(np.isnan(z), axis=1)
        max_z = np.where(all_failed, np.nan, np.nanmax(np.where(np.isnan(z), -np.inf, z), axis=1))
    if failures:
        log.warning(
            "%d of %d window fits failed on the toys (recorded as NaN)", len(failures), z.size
        )
    return ToyScan(
        z=z,
        z_signed=z_signed,
        mu_hat=mu_hat,
        max_z=max_z,
        failures=failures,
        windows=windows,
        seed=seed,
        scale=float(scale),
    )


def global_pvalue(max_z_toys: Any, z_obs: float) -> GlobalSignificance:
    """Global p-value of an observed maximum local significance from background-only toys.

    ``p = (1 + #{max_z >= z_obs}) / (1 + n_toys)`` (never 0: with n toys the smallest p-value
    is 1 / (n + 1)); ``significance = norm.isf(p)``. Toys whose max_z is NaN (every window
    failed) are left out and not counted in ``n_toys``.

    Parameters
    ----------
    max_z_toys
        (n_toys,) largest local Z of each background-only toy (`ToyScan.max_z`).
    z_obs
        The observed largest local Z (same windows and settings).

    Returns
    -------
    GlobalSignificance
        ``(p_value, significance, n_toys)``.
    """
    values = np.asarray(max_z_toys, dtype=np.float64)
    if values.ndim != 1:
        msg = f"max_z_toys must be a 1-D array (one max Z per toy); got shape {values.shape}"
        raise InputError(msg)
    values = values[~np.isnan(values)]
    if values.size == 0:
        msg = "max_z_toys holds no finite value: no toys to compare with; run more toys"
        raise InputError(msg)
    z_obs = float(z_obs)
    if np.isnan(z_obs):
        msg = "z_obs is NaN; pass the observed maximum local significance"
        raise InputError(msg)
    n_above = int(np.count_nonzero(values >= z_obs))
    p = (1.0 + n_above) / (1.0 + values.size)
    return GlobalSignificance(
        p_value=float(p), significance=float(stats.norm.isf(p)), n_toys=int(values.size)
    )
