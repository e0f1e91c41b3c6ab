"""Median and 16-84% bands over repeated runs (seeds, trainings, signal injections).

Papers quote a figure of merit as the median over independent retrainings with the central 68%
as a band (LaCATHODE 2210.14924, Fig. 6: "the median of ten independent retrainings whereas the
bands show the central 68%"). `band` does that for any array of values, ignoring NaN (a run that
could not produce a value); `sic_band` first puts several SIC curves on a common eps_B grid.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.evaluation.metrics import SicCurve, roc_curve

__all__ = ["Band", "band", "sic_band"]


@dataclass(frozen=True)
class Band:
    """Median and central 68% (16th to 84th percentile) of repeated values, NaN ignored.

    Attributes
    ----------
    median, lo, hi
        The 50th, 16th and 84th percentiles: floats for 1-D input, else float64 arrays of the
        input shape without the reduced axis. NaN where a position holds no finite value.
    n
        How many non-NaN values each percentile rests on: int for 1-D input, else an int64
        array of the same shape as `median`.
    """

    median: Any
    lo: Any
    hi: Any
    n: Any


def band(values: Any, axis: int = 0) -> Band:
    """Median and 16-84% band of `values` along `axis`, NaN ignored (``numpy.nanpercentile``).

    Parameters
    ----------
    values
        Array of real numbers, e.g. shape (n_seeds,) or (n_seeds, n_points); NaN marks a missing
        value (it does not count in ``n``). ``+-inf`` is not allowed.
    axis
        Axis along which the runs lie.

    Returns
    -------
    Band
        Floats for 1-D input, else arrays without `axis`. A position where every run is NaN
        gets NaN percentiles and ``n = 0``; `InputError` if `values` is empty or entirely NaN.
    """
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        msg = f"values must be real numbers; got dtype {arr.dtype}"
        raise InputError(msg)
    arr = arr.astype(np.float64)
    if arr.ndim == 0:
        msg = "values is a scalar; pass an array of repeated values (one per seed or run)"
        raise InputError(msg)
    if not -arr.ndim <= axis < arr.ndim:
        msg = f"axis {axis} is out of range for values of shape {arr.shape}"
        raise InputError(msg)
    if arr.shape[axis] == 0 or arr.size == 0:
        msg = (
            f"values of shape {arr.shape} hold no entries along axis {axis}; pass at least one "
            "run (e.g. one value per seed)"
        )
        raise InputError(msg)
    if np.isinf(arr).any():
        msg = (
            f"values hold {int(np.isinf(arr).sum())} infinite entries; replace a value that "
            "could not be computed by NaN (it is then ignored)"
        )
        raise InputError(msg)
    finite = ~np.isnan(arr)
    if not finite.any():
        msg = (
            f"values of shape {arr.shape} are all NaN: no run produced a value. Check the runs "
            "(e.g. an eps_B below 1/n_background cannot be reached)"
        )
        raise InputError(msg)
    with warnings.catch_warnings():
        # positions where every run is NaN: nanpercentile warns "All-NaN slice", gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, median, hi = np.nanpercentile(arr, [16.0, 50.0, 84.0], axis=axis)
    n = finite.sum(axis=axis)
    if np.ndim(median) == 0:
        return Band(median=float(median), lo=float(lo), hi=float(hi), n=int(n))
    return Band(
        median=np.asarray(median, dtype=np.float64),
        lo=np.asarray(lo, dtype=np.float64),
        hi=np.asarray(hi, dtype=np.float64),
        n=np.asarray(n, dtype=np.int64),
    )


def _roc_points(curve: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) with fpr > 0 of a `SicCurve` or of a ``(y, score)`` pair."""
    if isinstance(curve, SicCurve):
        return curve.fpr, curve.tpr
    if isinstance(curve, tuple | list) and len(curve) == 2:
        roc = roc_curve(curve[0], curve[1])
        keep = roc.fpr > 0
        return roc.fpr[keep], roc.tpr[keep]
    msg = (
        f"curves[{index}] is a {type(curve).__name__}; pass SicCurve objects (from sic_curve) "
        "or (y_true, scores) pairs"
    )
    raise InputError(msg)


def _sic_on_grid(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """SIC on `grid` as `sic_at` computes it; NaN below the smallest reachable eps_B."""
    # fpr is non-decreasing; at equal fpr keep the largest tpr (top of each vertical step)
    last = np.r_[fpr[1:] != fpr[:-1], True]
    fpr, tpr = fpr[last], tpr[last]
    eps_s = np.interp(np.log(grid), np.log(fpr), tpr)
    sic = eps_s / np.sqrt(grid)
    return np.where(grid < fpr[0], np.nan, sic)


def sic_band(curves: Sequence[Any], eps_b_grid: Any = None) -> tuple[np.ndarray, Band]:
    """Median and 16-84% band of several SIC curves on a common background-efficiency grid.

    Each curve's SIC is read at every grid point as `sic_at` does (eps_S interpolated linearly
    in log eps_B, the highest eps_S at each distinct eps_B); a grid point below the smallest
    eps_B the curve reaches (at best ``1 / n_background``) is NaN for that curve and does not
    count in the band there (``Band.n`` says how many curves do).

    Parameters
    ----------
    curves
        `SicCurve` objects (from `sic_curve`) or ``(y_true, scores)`` pairs, one per seed or
        injection; at least one.
    eps_b_grid
        Background efficiencies in (0, 1], shape (K,); default 100 log-spaced points from
        ``1 / (largest n_background)`` to 1.

    Returns
    -------
    grid, band
        The grid, float64 (K,), and a `Band` of arrays (K,) over the curves.
    """
    if isinstance(curves, SicCurve) or len(curves) == 0:
        msg = "curves must be a non-empty sequence of SicCurve objects or (y_true, scores) pairs"
        raise InputError(msg)
    points = [_roc_points(c, i) for i, c in enumerate(curves)]
    for i, (fpr, _) in enumerate(points):
        if fpr.size == 0:
            msg = f"curves[{i}] has no point with eps_B > 0; it holds no background event"
            raise InputError(msg)
    if eps_b_grid is None:
        smallest = min(float(fpr[0]) for fpr, _ in points)
        grid = np.geomspace(smallest, 1.0, 100)
    else:
        grid = np.asarray(eps_b_grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            msg = f"eps_b_grid must be a non-empty 1-D array; got shape {grid.shape}"
            raise InputError(msg)
        bad = ~((grid > 0.0) & (grid <= 1.0))
        if bad.any():
            msg = (
                f"eps_b_grid must lie in (0, 1]; got {grid[bad][:5].tolist()}. Use e.g. "
                "np.geomspace(1e-4, 1, 50)"
            )
            raise InputError(msg)
    values = np.stack([_sic_on_grid(fpr, tpr, grid) for fpr, tpr in points])
    if np.isnan(values).all():
        need = math.ceil(1.0 / float(grid.max()))
        msg = (
            f"no curve reaches any eps_B of the grid (largest {grid.max():.3g}); that needs at "
            f"least {need} background events per curve. Use a grid of larger efficiencies"
        )
        raise InputError(msg)
    return grid, band(values, axis=0)
