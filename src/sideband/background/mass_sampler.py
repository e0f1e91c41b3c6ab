"""Masses for the template: a KDE (CATHODE) or a histogram (SIGMA) of the SR m_JJ (GeV).

CATHODE samples its background template conditionally on m_JJ, so it needs masses distributed
like the SR data. `KDEMassSampler` fits a Gaussian kernel density estimate to the SR masses and
samples from it **with reflection at the window edges**: a draw that leaves ``[low, high]`` is
mirrored back in (repeatedly, if the bandwidth is wide). This is the reflected KDE, which keeps
the density near a hard SR edge unbiased, unlike rejection of a plain KDE (which halves it there).

`HistogramMassSampler` is SIGMA's choice (arXiv:2410.20537): a histogram of the SR masses,
sampled by picking a bin with probability proportional to its count and a mass uniformly in it.
Both share `fit(m, low_gev=, high_gev=)`, `sample(n, rng=, seed=)` and `pdf(m)`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from sideband.errors import InputError, NotFittedError
from sideband.regions import check_mass_units

__all__ = ["HistogramMassSampler", "KDEMassSampler"]

Bandwidth = Literal["scott", "silverman"] | float


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_window(
    m: np.ndarray, low_gev: float | None, high_gev: float | None
) -> tuple[np.ndarray, float, float]:
    """Checked masses (n,) GeV and the window [low, high] (default: the data's span)."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 1:
        msg = f"masses must be a 1-D array (n,) in GeV; got shape {m.shape}"
        raise InputError(msg)
    if m.size < 2:
        msg = f"a mass sampler needs at least 2 masses to fit; got {m.size}"
        raise InputError(msg)
    if not np.isfinite(m).all():
        msg = f"masses contain {int((~np.isfinite(m)).sum())} NaN/inf value(s); drop them"
        raise InputError(msg)
    check_mass_units(m, name="m")
    low = float(m.min()) if low_gev is None else float(low_gev)
    high = float(m.max()) if high_gev is None else float(high_gev)
    if not low < high:
        msg = f"mass window low edge {low} must be below high edge {high} GeV"
        raise InputError(msg)
    outside = (m < low) | (m > high)
    if outside.any():
        msg = (
            f"{int(outside.sum())} mass(es) lie outside the window [{low:g}, {high:g}] GeV "
            f"(data span {m.min():.0f}-{m.max():.0f} GeV); pass only signal-region masses"
        )
        raise InputError(msg)
    return m, low, high


def _check_n(n: int) -> int:
    if int(n) != n or n < 0:
        msg = f"number of masses must be a non-negative integer; got {n!r}"
        raise InputError(msg)
    return int(n)


class KDEMassSampler:
    """Gaussian KDE of m_JJ [GeV] restricted to a window by reflection.

    Parameters
    ----------
    bandwidth
        "scott" (``h = σ n^(-1/5)``), "silverman" (``h = 0.9 min(σ, IQR/1.34) n^(-1/5)``), or a
        kernel width in GeV (float > 0).
    seed
        Default seed of `sample` when it is given neither ``rng`` nor ``seed``; an int gives the
        same masses on every call, None fresh ones.

    Notes
    -----
    Fitted attributes: ``masses_`` (n,) GeV, ``low_``, ``high_`` (window, GeV), ``bandwidth_``
    (GeV).
    """

    def __init__(self, bandwidth: Bandwidth = "scott", seed: int | None = None) -> None:
        self.bandwidth = bandwidth
        self.seed = seed

    def fit(
        self,
        m: np.ndarray,
        *,
        low_gev: float | None = None,
        high_gev: float | None = None,
    ) -> KDEMassSampler:
        """Fit to masses m (n,) in GeV inside the window ``[low_gev, high_gev]``.

        The window defaults to the data's min and max; pass the SR edges to use those. Raises
        `InputError` for NaN, TeV-looking masses, fewer than 2 masses, or masses outside the window.
        """
        m, low, high = _check_window(m, low_gev, high_gev)
        n = m.size
        sigma = float(m.std(ddof=1))
        if isinstance(self.bandwidth, str):
            if self.bandwidth == "scott":
                h = sigma * n ** (-1 / 5)
            elif self.bandwidth == "silverman":
                q75, q25 = np.percentile(m, [75, 25])
                spread = min(sigma, (q75 - q25) / 1.34) or sigma
                h = 0.9 * spread * n ** (-1 / 5)
            else:
                msg = f"bandwidth must be 'scott', 'silverman' or a width in GeV; got {self.bandwidth!r}"
                raise InputError(msg)
        else:
            h = float(self.bandwidth)
        if not (np.isfinite(h) and h > 0):
            msg = f"KDE bandwidth is {h} GeV (all masses equal?); pass a positive width in GeV"
            raise InputError(msg)
        self.masses_ = np.sort(m)
        self.low_, self.high_ = low, high
        self.bandwidth_ = h
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "masses_"):
            msg = "this KDEMassSampler is not fitted yet; call fit(m) first"
            raise NotFittedError(msg)

    def sample(
        self,
        n: int,
        *,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Draw n masses (n,) in GeV, all inside ``[low_, high_]`` (reflected KDE)."""
        self._fitted()
        n = _check_n(n)
        gen = rng if rng is not None else _rng(seed if seed is not None else self.seed)
        centres = gen.choice(self.masses_, size=n, replace=True)
        x = centres + self.bandwidth_ * gen.standard_normal(n)
        return self._reflect(x)

    def _reflect(self, x: np.ndarray) -> np.ndarray:
        """Fold x into [low, high] by mirror reflection at both edges (exact, any distance)."""
        lo, width = self.low_, self.high_ - self.low_
        t = np.mod(x - lo, 2.0 * width)
        return lo + np.where(t > width, 2.0 * width - t, t)

    def pdf(self, m: np.ndarray) -> np.ndarray:
        """Density (n,) in 1/GeV of the reflected KDE at masses m (GeV); 0 outside the window."""
        self._fitted()
        m = np.asarray(m, dtype=np.float64)
        lo, hi, h, width = self.low_, self.high_, self.bandwidth_, self.high_ - self.low_
        # Mirror images of each kernel centre c: c + 2kw and 2 low - c + 2kw (k = 0, 1 are the
        # reflections at low and high); more images only when the kernel is wide (h > w / 3).
        k_max = int(np.ceil(3 * h / width))
        out = np.zeros(m.shape)
        images = [self.masses_ + 2 * k * width for k in range(-k_max, k_max + 1)]
        images += [2 * lo - self.masses_ + 2 * k * width for k in range(-k_max, k_max + 2)]
        for centre in images:
            for i in range(0, m.size, 4096):
                z = (m.ravel()[i : i + 4096, None] - centre) / h
                out.ravel()[i : i + 4096] += np.exp(-0.5 * z**2).sum(axis=-1)
        out /= self.masses_.size * h * np.sqrt(2 * np.pi)
        return np.where((m >= lo) & (m <= hi), out, 0.0)


class HistogramMassSampler:
    """m_JJ [GeV] drawn from a histogram of the SR masses (SIGMA's mass sampler).

    Parameters
    ----------
    bins
        Number of equal-width bins over the window, or a bin width in GeV when a float.
    seed
        Default seed of `sample` (see `KDEMassSampler`).

    Notes
    -----
    Fitted attributes: ``edges_`` (bins + 1,) GeV, ``counts_`` (bins,), ``low_``, ``high_``.
    """

    def __init__(self, bins: float = 40, seed: int | None = None) -> None:
        self.bins = bins
        self.seed = seed

    def fit(
        self,
        m: np.ndarray,
        *,
        low_gev: float | None = None,
        high_gev: float | None = None,
    ) -> HistogramMassSampler:
        """Histogram the masses m (n,) GeV in ``[low_gev, high_gev]`` (default: their span)."""
        m, low, high = _check_window(m, low_gev, high_gev)
        if isinstance(self.bins, int | np.integer) and not isinstance(self.bins, bool):
            n_bins = int(self.bins)
        elif isinstance(self.bins, float) and self.bins > 0:
            n_bins = max(1, round((high - low) / self.bins))
        else:
            n_bins = 0
        if n_bins < 1:
            msg = f"bins must be a positive number of bins or a bin width in GeV; got {self.bins!r}"
            raise InputError(msg)
        self.counts_, self.edges_ = np.histogram(m, bins=n_bins, range=(low, high))
        self.low_, self.high_ = low, high
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "counts_"):
            msg = "this HistogramMassSampler is not fitted yet; call fit(m) first"
            raise NotFittedError(msg)

    def sample(
        self,
        n: int,
        *,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Draw n masses (n,) in GeV: a bin by its count, then uniform inside it."""
        self._fitted()
        n = _check_n(n)
        gen = rng if rng is not None else _rng(seed if seed is not None else self.seed)
        b = gen.choice(self.counts_.size, size=n, p=self.counts_ / self.counts_.sum())
        lo, hi = self.edges_[b], self.edges_[b + 1]
        return lo + (hi - lo) * gen.random(n)

    def pdf(self, m: np.ndarray) -> np.ndarray:
        """Density in 1/GeV at masses m (GeV): the normalised histogram, 0 outside the window."""
        self._fitted()
        m = np.asarray(m, dtype=np.float64)
        dens = self.counts_ / (self.counts_.sum() * np.diff(self.edges_))
        idx = np.clip(np.searchsorted(self.edges_, m, side="right") - 1, 0, dens.size - 1)
        return np.where((m >= self.low_) & (m <= self.high_), dens[idx], 0.0)
