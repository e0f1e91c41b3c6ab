"""Sideband fit of the m_JJ spectrum with the standard dijet function (Poisson likelihood).

The dijet function, with ``x = m / sqrt(s)``::

    f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x)        (p3, p4 optional)

is a density per unit ``x`` (events per unit of m/sqrt(s)); the expected count of a bin is its
integral over the bin, computed with Gauss-Legendre quadrature (5 nodes per bin), not the value at
the centre times the width. ``ln f`` is linear in ``theta = (ln p0, p1, p2, p3, p4)`` with basis
``(1, ln(1-x), -ln x, -ln^2 x, -ln^3 x)``; the fit works in orthonormalised coordinates of that
basis (Fisher matrix close to the identity), which avoids the 0.999 correlations and 1e8 condition
numbers of the raw parameters, and minimises the Poisson deviance with Newton steps (analytic
gradient and Hessian) in stages: 3 parameters, then p3 free, then p4 free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from sideband.errors import FitError, InputError
from sideband.regions import SignalRegion

__all__ = ["DijetFit", "fit_dijet", "mass_binning"]

log = logging.getLogger(__name__)

_N_NODES = 5
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_N_NODES)
#: A Fisher matrix (orthonormalised coordinates) with eigenvalue ratio below this is singular.
_SINGULAR_RATIO = 1e-10


def mass_binning(
    low_gev: float,
    high_gev: float,
    sr: SignalRegion,
    *,
    width_gev: float = 100.0,
    resolution: float | None = None,
) -> np.ndarray:
    """Bin edges in GeV on a grid that holds the SR edges exactly, within ``[low, high]``.

    With ``resolution=None`` (default) the bins are `width_gev` wide: the SR is split into
    ``ceil(sr.width / width_gev)`` equal bins (exactly `width_gev` wide when the SR width is a
    multiple of it); outside the SR the grid steps by `width_gev` from the SR edges outwards.

    With a `resolution` (a fraction, e.g. 0.05 for a 5% dijet mass resolution) the bins follow
    it: each bin is ``resolution`` times its centre wide, i.e. consecutive edges grow by the
    constant ratio ``q = (2 + resolution) / (2 - resolution)`` (equal steps in ln m), and
    `width_gev` is ignored. The SR is split into ``ceil(ln(high/low) / ln q)`` bins equal in
    ln m (each at most ``resolution`` x centre wide); outside the SR the edges step by the
    factor ``q`` from the SR edges outwards.

    In both cases the outermost edges are the last grid points inside ``[low_gev, high_gev]``
    (within 1e-6 GeV), so no bin extends past the data range or the sideband bounds: at most one
    bin width of events is left out at each end.

    Parameters
    ----------
    low_gev, high_gev
        Histogram range, GeV.
    sr
        The signal region; its edges are bin edges.
    width_gev
        Bin width in GeV when `resolution` is None.
    resolution
        Relative bin width (bin width / bin centre), in (0, 1); None for fixed-width bins.

    Returns
    -------
    np.ndarray
        Float64 edges (n_bins + 1,), GeV, strictly increasing.
    """
    low, high, width = float(low_gev), float(high_gev), float(width_gev)
    if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(width)) or width <= 0:
        msg = f"mass_binning needs finite low/high and a positive width; got {low}, {high}, {width}"
        raise InputError(msg)
    tol = 1e-6
    if sr.low_gev < low - tol or sr.high_gev > high + tol:
        msg = (
            f"signal region ({sr.low_gev:g}, {sr.high_gev:g}) GeV is not inside the histogram "
            f"range [{low:g}, {high:g}] GeV; move the SR inside the data/sideband range (GeV)."
        )
        raise InputError(msg)
    if resolution is not None:
        return _resolution_binning(low, high, sr, float(resolution))
    n_sr = max(1, int(np.ceil(sr.width_gev / width - 1e-9)))
    inner = np.linspace(sr.low_gev, sr.high_gev, n_sr + 1)
    n_below = int(np.floor((sr.low_gev - low) / width + 1e-9))
    n_above = int(np.floor((high - sr.high_gev) / width + 1e-9))
    below = sr.low_gev - width * np.arange(n_below, 0, -1)
    above = sr.high_gev + width * np.arange(1, n_above + 1)
    return np.concatenate([below, inner, above]).astype(np.float64)


def _resolution_binning(low: float, high: float, sr: SignalRegion, resolution: float) -> np.ndarray:
    """Edges (n_bins + 1,) in GeV growing by ``(2 + r) / (2 - r)``; see `mass_binning`."""
    if not (np.isfinite(resolution) and 0.0 < resolution < 1.0):
        msg = (
            f"resolution must be a fraction in (0, 1) (bin width / bin centre, e.g. 0.05); got "
            f"{resolution!r}. Pass resolution=None for fixed-width bins of width_gev."
        )
        raise InputError(msg)
    if low <= 0:
        msg = f"resolution-following bins need a positive low edge (GeV); got {low:g}"
        raise InputError(msg)
    log_step = float(np.log((2.0 + resolution) / (2.0 - resolution)))
    eps = 1e-6 / (low * log_step)  # 1e-6 GeV, in steps of ln m (at most)
    log_sr = (np.log(sr.low_gev), np.log(sr.high_gev))
    n_sr = max(1, int(np.ceil((log_sr[1] - log_sr[0]) / log_step - 1e-9)))
    inner = np.linspace(log_sr[0], log_sr[1], n_sr + 1)
    n_below = int(np.floor((log_sr[0] - np.log(low)) / log_step + eps))
    n_above = int(np.floor((np.log(high) - log_sr[1]) / log_step + eps))
    below = log_sr[0] - log_step * np.arange(n_below, 0, -1)
    above = log_sr[1] + log_step * np.arange(1, n_above + 1)
    edges = np.exp(np.concatenate([below, inner, above]))
    # the SR edges exactly, and no edge past [low, high] from rounding in exp/log
    edges[n_below], edges[n_below + n_sr] = sr.low_gev, sr.high_gev
    return np.clip(edges, low, high).astype(np.float64)


def _basis(x: np.ndarray, n_params: int) -> np.ndarray:
    """Columns (1, ln(1-x), -ln x, -ln^2 x, -ln^3 x)[:n_params] at `x`, shape x.shape + (P,)."""
    lx = np.log(x)
    cols = [np.ones_like(x), np.log1p(-x), -lx, -(lx**2), -(lx**3)]
    return np.stack(cols[:n_params], axis=-1)


def _nodes(edges_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights (n_bins, N_NODES) in x for bins with the given x edges."""
    lo, hi = edges_x[:-1, None], edges_x[1:, None]
    half = 0.5 * (hi - lo)
    return lo + half * (_NODES[None, :] + 1.0), half * _WEIGHTS[None, :]


def _check_edges(edges: np.ndarray, sqrt_s_gev: float) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        msg = f"bin edges must be a 1-D array of at least 2 values (GeV); got shape {edges.shape}"
        raise InputError(msg)
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        msg = "bin edges must be finite and strictly increasing (GeV)"
        raise InputError(msg)
    if edges[0] <= 0 or edges[-1] >= sqrt_s_gev:
        msg = (
            f"bin edges span {edges[0]:g}-{edges[-1]:g} GeV, outside (0, sqrt(s) = "
            f"{sqrt_s_gev:g} GeV); masses must be in GeV and below sqrt(s)."
        )
        raise InputError(msg)
    return edges


@dataclass(frozen=True, eq=False)
class DijetFit:
    """Result of `fit_dijet` (frozen).

    Attributes
    ----------
    params
        (n_params,) physical parameters ``(p0, p1, p2[, p3[, p4]])`` of
        ``f(x) = p0 (1-x)^p1 / x^(p2 + p3 ln x + p4 ln^2 x)``; ``p0`` in events per unit x.
    cov
        (n_params, n_params) covariance of `params`, ``inv(J^T diag(1/nu) J)`` at the minimum
        (J = d nu / d params over the fitted bins), propagated from the log-linear coefficients.
    n_params
        Number of parameters actually used (may be below the request after a fallback).
    deviance
        Poisson deviance ``2 sum(nu - n + n ln(n/nu))`` over the fitted bins (chi2-like).
    ndof
        Fitted bins minus parameters.
    gof_pvalue
        ``chi2.sf(deviance, ndof)``: goodness of fit. A converged fit can still be bad.
    converged
        True when the Newton decrement fell below tolerance.
    coef, coef_cov
        Log-linear coefficients ``(ln p0, p1, p2, ...)`` and their covariance.
    sqrt_s_gev
        Centre-of-mass energy used for ``x = m / sqrt(s)``, GeV.
    n_params_requested
        The request: 3, 4, 5 or ``"auto"``.
    selection
        How `n_params` was chosen: ``method`` (``"wilks"`` for ``n_params="auto"``, else
        ``"fixed"``), ``alpha`` (Wilks test level, None when fixed), ``n_params_max`` (the
        largest number the statistics and bins allow), ``chosen`` and ``stages``, one dict per
        fitted stage with ``n_params``, ``deviance``, ``converged``, ``fisher_ratio``, ``healthy``
        and, from the second stage on, ``delta_deviance`` (previous stage minus this one),
        ``p_value`` (``chi2.sf(delta_deviance, 1)``) and ``accepted``. Plain Python values.
    """

    params: np.ndarray
    cov: np.ndarray
    n_params: int
    deviance: float
    ndof: int
    gof_pvalue: float
    converged: bool
    coef: np.ndarray
    coef_cov: np.ndarray
    sqrt_s_gev: float
    n_params_requested: int | str
    fit_edges: np.ndarray = field(repr=False)
    fit_mask: np.ndarray = field(repr=False)
    _rinv: np.ndarray = field(repr=False)
    _cov_beta: np.ndarray = field(repr=False)
    selection: dict[str, Any] = field(default_factory=dict)

    def _pieces(self, edges: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected counts (n_bins,) and Jacobian d nu / d coef (n_bins, P) for `coef`."""
        edges = _check_edges(edges, self.sqrt_s_gev)
        xk, wk = _nodes(edges / self.sqrt_s_gev)
        u = _basis(xk, self.n_params)
        with np.errstate(over="ignore"):
            dens = wk * np.exp(u @ coef)
        return dens.sum(axis=1), np.einsum("ik,ikp->ip", dens, u)

    def predict(self, edges: np.ndarray) -> np.ndarray:
        """Expected background counts per bin (n_bins,) for bin edges in GeV (n_bins + 1,)."""
        return self._pieces(np.asarray(edges, dtype=np.float64), self.coef)[0]

    def eigen_shifts(self) -> np.ndarray:
        """Coefficient shifts ``sqrt(lambda_k) v_k`` (n_params, n_params), one row per eigenvector.

        Eigenvectors of the covariance in the fit's orthonormalised coordinates, mapped back to
        the coefficients; ``sum_k d_k d_k^T`` equals `coef_cov`.
        """
        lam, vec = np.linalg.eigh(self._cov_beta)
        lam = np.clip(lam, 0.0, None)
        return (self._rinv @ (vec * np.sqrt(lam))).T

    def predict_variations(
        self, edges: np.ndarray, *, linear: bool = True, scale: float = 1.0
    ) -> np.ndarray:
        """Predictions shifted by each eigenvector of the covariance, shape (n_params, 2, n_bins).

        ``[k, 0]`` is down (-sqrt(lambda_k) v_k), ``[k, 1]`` up. With ``linear=True`` (default)
        the shifts are linearised, ``nu +- J d_k``, so their outer products add up to the
        prediction covariance ``J cov J^T`` exactly; ``linear=False`` evaluates ``nu(coef +- d_k)``
        (always positive). `scale` multiplies every shift (``scale`` standard deviations).
        Counts per bin; `edges` in GeV.
        """
        edges = np.asarray(edges, dtype=np.float64)
        shifts = float(scale) * self.eigen_shifts()
        nu, jac = self._pieces(edges, self.coef)
        out = np.empty((len(shifts), 2, len(nu)))
        for k, d in enumerate(shifts):
            if linear:
                delta = jac @ d
                out[k, 0], out[k, 1] = nu - delta, nu + delta
            else:
                out[k, 0] = self._pieces(edges, self.coef - d)[0]
                out[k, 1] = self._pieces(edges, self.coef + d)[0]
        return out

    def predict_covariance(self, edges: np.ndarray) -> np.ndarray:
        """Covariance of the predicted counts, ``J coef_cov J^T``, shape (n_bins, n_bins)."""
        _, jac = self._pieces(np.asarray(edges, dtype=np.float64), self.coef)
        return jac @ self.coef_cov @ jac.T


class _Objective:
    """Poisson deviance of the binned dijet function in coordinates ``beta`` (coef = R^-1 beta)."""

    def __init__(self, counts: np.ndarray, ub: np.ndarray, wk: np.ndarray) -> None:
        self.n = counts  # (B,)
        self.ub = ub  # (B, K, P): basis in beta coordinates at the nodes
        self.wk = wk  # (B, K)
        pos = counts > 0
        self.pos = pos
        self.nlogn = np.zeros_like(counts)
        self.nlogn[pos] = counts[pos] * np.log(counts[pos])

    def nu_jac(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):
            dens = self.wk * np.exp(self.ub @ beta)  # (B, K)
        nu = dens.sum(axis=1)
        jac = np.einsum("ik,ikp->ip", dens, self.ub)
        return nu, jac, dens

    def value(self, beta: np.ndarray) -> float:
        nu = self.nu_jac(beta)[0]
        if not np.all(np.isfinite(nu)) or np.any(nu <= 0):
            return np.inf
        n = self.n
        with np.errstate(divide="ignore"):
            logs = np.where(self.pos, self.nlogn - n * np.log(nu), 0.0)
        return max(0.0, float(2.0 * np.sum(nu - n + logs)))

    def all(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        nu, jac, dens = self.nu_jac(beta)
        value = self.value(beta)
        r = 1.0 - self.n / nu
        grad = 2.0 * (jac.T @ r)
        hess_nu = np.einsum("ik,ikp,ikq->ipq", dens, self.ub, self.ub)
        hess = 2.0 * (np.einsum("i,ipq->pq", r, hess_nu) + (jac.T * (self.n / nu**2)) @ jac)
        return value, grad, hess


def _newton(
    obj: _Objective, beta: np.ndarray, *, max_iter: int, tol: float
) -> tuple[np.ndarray, bool, int]:
    """Damped Newton with backtracking; returns (beta, converged, iterations)."""
    value, grad, hess = obj.all(beta)
    if not np.isfinite(value):
        return beta, False, 0
    for it in range(1, max_iter + 1):
        lam = 0.0
        scale = float(np.max(np.abs(np.diag(hess)))) or 1.0
        for _ in range(30):
            try:
                chol = np.linalg.cholesky(hess + lam * scale * np.eye(len(beta)))
                break
            except np.linalg.LinAlgError:
                lam = max(1e-8, 10 * lam)
        else:
            return beta, False, it
        step = -np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
        decrement = float(-grad @ step)
        if decrement < tol:
            return beta, True, it
        t = 1.0
        while t > 1e-10:
            trial = beta + t * step
            new = obj.value(trial)
            if np.isfinite(new) and new <= value - 1e-4 * t * decrement:
                break
            t *= 0.5
        else:
            return beta, decrement < 1e3 * tol, it
        beta = trial
        value, grad, hess = obj.all(beta)
    return beta, False, max_iter


def _fit_stage(
    obj_data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    coef0: np.ndarray,
    n_params: int,
    *,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, float, float]:
    """Fit with `n_params`, starting at `coef0` (padded with zeros).

    Returns (coef, rinv, cov_beta, converged, deviance, eigenvalue ratio of the Fisher matrix).
    """
    counts, xk, wk, xc = obj_data
    u_nodes = _basis(xk, n_params)  # (B, K, P)
    # orthonormalise the basis at the bin centres, weighted by the counts (Fisher ~ identity)
    u_c = _basis(xc, n_params)
    r = np.linalg.qr(np.sqrt(counts + 1.0)[:, None] * u_c, mode="r")
    rinv = np.linalg.inv(r)
    coef_start = np.zeros(n_params)
    coef_start[: len(coef0)] = coef0
    obj = _Objective(counts, u_nodes @ rinv, wk)
    beta, converged, _ = _newton(obj, r @ coef_start, max_iter=max_iter, tol=tol)
    nu, jac, _ = obj.nu_jac(beta)
    fisher = (jac.T / nu) @ jac
    eig = np.linalg.eigvalsh(fisher)
    ratio = float(eig[0] / eig[-1]) if eig[-1] > 0 else 0.0
    cov_beta = np.linalg.inv(fisher) if ratio > _SINGULAR_RATIO else np.full_like(fisher, np.nan)
    return rinv @ beta, rinv, cov_beta, converged, obj.value(beta), ratio


def fit_dijet(
    counts: np.ndarray,
    edges: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    sqrt_s_gev: float = 13000.0,
    n_params: int | Literal["auto"] = 4,
    n_params_alpha: float = 0.05,
    min_events: int = 20,
    min_events_per_param: float = 50.0,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> DijetFit:
    """Fit the dijet function to the bins where `mask` is true (the sidebands).

    Parameters
    ----------
    counts
        Events per bin, shape (n_bins,), non-negative.
    edges
        Bin edges in GeV, shape (n_bins + 1,), strictly increasing, below `sqrt_s_gev`.
    mask
        Boolean (n_bins,): bins used in the fit (True = sideband). None = all bins.
    sqrt_s_gev
        Centre-of-mass energy, GeV (x = m / sqrt(s)).
    n_params
        3, 4 or 5 parameters. The fit is staged (3 parameters, then p3, then p4 free, each stage
        starting from the last); it falls back to fewer parameters (logged, recorded in
        ``DijetFit.n_params``) when a stage does not converge, its Fisher matrix is singular, or
        the fitted bins hold fewer than ``min_events_per_param * n_params`` events.

        ``"auto"``: choose 3, 4 or 5 by a stated test. The same stages are fitted in turn and
        ``p + 1`` parameters replace ``p`` only when the Wilks test on the Poisson deviance
        difference, ``delta = deviance(p) - deviance(p + 1) ~ chi2(1)`` under the simpler
        function, gives ``chi2.sf(delta, 1) < n_params_alpha`` and the larger fit is healthy
        (converged, non-singular Fisher matrix, finite parameters); the search stops at the
        first rejection. The stages, deviances and p-values are in ``DijetFit.selection``.
        The test only asks whether the sidebands need more parameters, not whether the SR
        interpolation is unbiased: on an LHCO-like 4-parameter truth (3000-5000 GeV, ~9,500
        sideband events) "auto" kept 3 parameters in 189 of 200 background-only toys and the
        signed Z widened to a standard deviation of 1.15 (1.04 with a fixed 4); see
        benchmarks/bumphunt_calibration.py.
    n_params_alpha
        Level of the Wilks test of ``n_params="auto"`` (default 0.05); unused otherwise.
    min_events
        Fewer fitted events than this raise `FitError`.

    Returns
    -------
    DijetFit
        Parameters, covariance ``inv(J^T diag(1/nu) J)``, deviance, goodness of fit.

    Raises
    ------
    InputError
        Bad counts, edges or mask.
    FitError
        Too few events or fitted bins, or no stage converged.
    """
    auto = isinstance(n_params, str) and n_params == "auto"
    if not auto and (isinstance(n_params, bool) or n_params not in (3, 4, 5)):
        msg = f"n_params must be 3, 4, 5 or 'auto' for the dijet function; got {n_params!r}"
        raise InputError(msg)
    alpha = float(n_params_alpha)
    if not 0.0 < alpha < 1.0:
        msg = f"n_params_alpha must be a test level in (0, 1), e.g. 0.05; got {n_params_alpha!r}"
        raise InputError(msg)
    edges = _check_edges(edges, sqrt_s_gev)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (edges.size - 1,):
        msg = (
            f"counts has shape {counts.shape}; expected ({edges.size - 1},) for {edges.size} edges"
        )
        raise InputError(msg)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        msg = "counts must be finite and non-negative (events per bin); found NaN/inf or < 0"
        raise InputError(msg)
    mask = np.ones(counts.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != counts.shape:
        msg = f"mask has shape {mask.shape}; expected {counts.shape} like counts"
        raise InputError(msg)
    n_fit = float(counts[mask].sum())
    n_bins_fit = int(mask.sum())
    if n_fit < min_events:
        msg = (
            f"the sideband bins hold {n_fit:g} events (need at least {min_events}) for the dijet "
            f"fit over {edges[0]:g}-{edges[-1]:g} GeV; widen the sidebands, loosen the cut or use "
            "more data."
        )
        raise FitError(msg)
    if n_bins_fit < 4:
        msg = (
            f"only {n_bins_fit} sideband bins to fit (need at least 4 for 3 parameters); widen the "
            "fit range or use narrower bins."
        )
        raise FitError(msg)

    x_edges = edges / sqrt_s_gev
    xk, wk = _nodes(x_edges)
    xc = 0.5 * (x_edges[:-1] + x_edges[1:])
    data = (counts[mask], xk[mask], wk[mask], xc[mask])

    # start: weighted least squares of ln(density) on the 3-parameter basis at the bin centres
    dens = (counts[mask] + 0.5) / np.diff(x_edges)[mask]
    u3 = _basis(xc[mask], 3)
    sw = np.sqrt(counts[mask] + 0.5)
    coef = np.linalg.lstsq(sw[:, None] * u3, sw * np.log(dens), rcond=None)[0]

    n_max = 5 if auto else int(n_params)
    max_by_stats = n_max if min_events_per_param <= 0 else int(n_fit // min_events_per_param)
    max_by_stats = max(3, max_by_stats)
    target = min(n_max, max_by_stats, n_bins_fit - 1)
    if target < n_max:
        log.log(
            logging.INFO if auto else logging.WARNING,
            "dijet fit: %g sideband events in %d bins support %d parameters, not %d; using %d",
            n_fit, n_bins_fit, target, n_max, target,
        )  # fmt: skip
    stages: list[dict[str, Any]] = []
    best = None
    for p in range(3, target + 1):
        stage = _fit_stage(data, coef, p, max_iter=max_iter, tol=tol)
        coef_p, _, cov_beta, converged, dev_p, ratio = stage
        ok = converged and ratio > _SINGULAR_RATIO and bool(np.all(np.isfinite(cov_beta)))
        # |ln p0| > 300 with p3/p4 free: the extra parameters run away (seen below ~300 events);
        # the prediction may still be fine, but fall back to the simpler function
        ok = ok and (p == 3 or abs(float(coef_p[0])) < 300.0)
        record = _stage_record(p, dev_p, converged, ratio, ok, stages, alpha if auto else None)
        stages.append(record)
        if not ok:
            if p == 3:
                msg = (
                    f"the 3-parameter dijet fit of {n_fit:g} sideband events in {n_bins_fit} bins "
                    f"did not converge (converged={converged}, Fisher eigenvalue ratio "
                    f"{ratio:.2g}); check the m_JJ spectrum (GeV, falling) and the fit range."
                )
                raise FitError(msg)
            log.log(
                logging.INFO if auto else logging.WARNING,
                "dijet fit with %d parameters failed (converged=%s, Fisher eigenvalue ratio %.2g);"
                " falling back to %d parameters", p, converged, ratio, p - 1,
            )  # fmt: skip
            break
        if auto and p > 3 and not record["accepted"]:
            log.info(
                "dijet fit: %d parameters not needed (deviance %.2f -> %.2f, Wilks p = %.3g >= "
                "%g); keeping %d", p, stages[-2]["deviance"], dev_p, record["p_value"], alpha,
                p - 1,
            )  # fmt: skip
            break
        best = (p, stage)
        coef = coef_p
    assert best is not None  # the 3-parameter stage either succeeded or raised
    p, (coef, rinv, cov_beta, converged, deviance, _) = best
    selection = {
        "method": "wilks" if auto else "fixed",
        "alpha": alpha if auto else None,
        "n_params_max": target,
        "chosen": p,
        "stages": stages,
    }
    coef_cov = rinv @ cov_beta @ rinv.T
    coef_cov = 0.5 * (coef_cov + coef_cov.T)
    if abs(float(coef[0])) > 300.0:
        log.warning(
            "dijet fit: extreme parameters (ln p0 = %.3g) from %g sideband events: the spectrum "
            "barely constrains the function; p0 and its covariance may be 0 or inf (predictions "
            "use ln p0 and stay finite)", coef[0], n_fit,
        )  # fmt: skip
    params = coef.copy()
    jac = np.eye(p)
    with np.errstate(over="ignore", invalid="ignore"):
        params[0] = np.exp(coef[0])
        jac[0, 0] = params[0]
        cov = jac @ coef_cov @ jac.T
    ndof = n_bins_fit - p
    gof = float(stats.chi2.sf(deviance, ndof))
    if gof < 1e-3:
        log.warning(
            "dijet fit: poor goodness of fit (deviance %.1f for %d dof, p = %.2g); the sideband "
            "spectrum may be sculpted or the range may include a trigger turn-on",
            deviance, ndof, gof,
        )  # fmt: skip
    return DijetFit(
        params=params,
        cov=cov,
        n_params=p,
        deviance=float(deviance),
        ndof=ndof,
        gof_pvalue=gof,
        converged=bool(converged),
        coef=coef,
        coef_cov=coef_cov,
        sqrt_s_gev=float(sqrt_s_gev),
        n_params_requested=n_params,
        fit_edges=edges,
        fit_mask=mask,
        _rinv=rinv,
        _cov_beta=cov_beta,
        selection=selection,
    )


def _stage_record(
    n_params: int,
    deviance: float,
    converged: bool,
    fisher_ratio: float,
    healthy: bool,
    previous: list[dict[str, Any]],
    alpha: float | None,
) -> dict[str, Any]:
    """One entry of ``DijetFit.selection["stages"]``, with the Wilks test against `previous`.

    ``delta_deviance`` = previous deviance - this one (clipped at 0: a larger nested function
    cannot fit worse, a negative value is the minimiser's tolerance); ``p_value`` =
    ``chi2.sf(delta_deviance, 1)``; ``accepted`` = healthy and ``p_value < alpha`` (healthy
    alone when `alpha` is None: a fixed request takes every healthy stage).
    """
    record: dict[str, Any] = {
        "n_params": n_params,
        "deviance": float(deviance),
        "converged": bool(converged),
        "fisher_ratio": float(fisher_ratio),
        "healthy": bool(healthy),
    }
    if previous:
        delta = max(float(previous[-1]["deviance"]) - float(deviance), 0.0)
        p_value = float(stats.chi2.sf(delta, 1))
        record.update(
            delta_deviance=delta,
            p_value=p_value,
            accepted=bool(healthy and (alpha is None or p_value < alpha)),
        )
    return record
