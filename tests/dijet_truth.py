"""A known dijet spectrum for the bump-hunt tests: its density, expected counts and toys.

f(x) = p0 (1-x)^p1 / x^(p2 + p3 ln x), x = m_JJ / sqrt(s), masses in GeV; ``shape`` is
(p1, p2, p3). Imported by the test modules (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import integrate

from sideband.bumphunt import mass_binning
from sideband.regions import SignalRegion

SQRT_S = 13000.0
#: true (p1, p2, p3) of the default spectrum
TRUE_SHAPE = (10.0, 6.0, 0.3)
#: the SR of the tests, with the 2.5-6 TeV fit range as its sidebands
SR = SignalRegion(3300.0, 3700.0, 2500.0, 6000.0)


def log_density(m_gev: np.ndarray, shape: tuple[float, ...] = TRUE_SHAPE) -> np.ndarray:
    """ln f(x) without ln p0, x = m / sqrt(s) (density per unit x)."""
    x = np.asarray(m_gev) / SQRT_S
    lx = np.log(x)
    return shape[0] * np.log1p(-x) - shape[1] * lx - shape[2] * lx**2


def true_counts(
    edges: np.ndarray, total: float, shape: tuple[float, ...] = TRUE_SHAPE
) -> tuple[np.ndarray, float]:
    """Expected counts per bin summing to `total` (adaptive quadrature, independent of the
    package) and the true ln p0."""

    def integral(a: float, b: float) -> float:
        return integrate.quad(lambda m: np.exp(log_density(m, shape)) / SQRT_S, a, b)[0]

    raw = np.array([integral(a, b) for a, b in itertools.pairwise(edges)])
    scale = total / raw.sum()
    return raw * scale, float(np.log(scale))


def sample_mjj(
    rng: np.random.Generator,
    n_mean: float,
    shape: tuple[float, ...] = TRUE_SHAPE,
    lo: float = 2500.0,
    hi: float = 6000.0,
) -> np.ndarray:
    """Poisson(n_mean) masses (GeV) from the spectrum on [lo, hi], by inverse CDF."""
    grid = np.linspace(lo, hi, 20001)
    dens = np.exp(log_density(grid, shape))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]))])
    return np.interp(rng.random(rng.poisson(n_mean)), cdf / cdf[-1], grid)


def sideband_binning() -> tuple[np.ndarray, np.ndarray]:
    """100 GeV bins over 2.5-6 TeV holding the SR edges, and the sideband-bin mask."""
    edges = mass_binning(2500.0, 6000.0, SR, width_gev=100.0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return edges, ~SR.contains(centres)
