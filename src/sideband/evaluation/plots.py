"""Standard figures: ROC, SIC, score distributions, the m_JJ spectrum before/after a cut, and the
figures over repeated runs: SIC band, SIC vs injected signal, sculpting chi2/ndof.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot (no global figure
registry, nothing to close, any backend) in the mplhep ROOT style (applied in a context, never
globally), and writes it atomically to ``path`` when one is given (format from the suffix).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sideband.errors import InputError
from sideband.evaluation.metrics import DEFAULT_MIN_BACKGROUND, roc_curve, sic_curve
from sideband.regions import SignalRegion

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sideband.evaluation.bands import Band
    from sideband.evaluation.sculpting import SculptingResult

__all__ = [
    "plot_injection",
    "plot_mjj",
    "plot_roc",
    "plot_scores",
    "plot_sculpting",
    "plot_sic",
    "plot_sic_band",
    "save_figure",
]

logger = logging.getLogger(__name__)

MJJ_LABEL = r"$m_{JJ}$ [GeV]"


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib as mpl
    import mplhep

    with mpl.style.context(mplhep.style.ROOT):
        yield


def _new_figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax = fig.subplots()
    return fig, ax


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` to `path` atomically (temporary file in the same folder, then ``os.replace``).

    The format comes from the suffix (``.pdf``, ``.png``, ``.svg``, ...); missing folders are
    created.
    """
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower()
    if not fmt:
        msg = f"cannot tell the image format of {str(target)!r}: give a suffix such as .png or .pdf"
        raise InputError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions of a new file
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    logger.info("wrote %s", target)
    return target


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_roc(
    y: Any, scores: Any, path: str | os.PathLike[str] | None = None, *, label: str | None = None
) -> Figure:
    """Background rejection 1/eps_B against signal efficiency eps_S (log y), with the line of a
    random classifier.

    Parameters
    ----------
    y
        Labels (N,): 1 = signal, 0 = background.
    scores
        Scores (N,); larger = more signal-like.
    path
        Optional output file.
    label
        Legend entry of the curve (default: the AUC).
    """
    from sideband.evaluation.metrics import auc

    roc = roc_curve(y, scores)
    keep = roc.fpr > 0
    area = auc(y, scores)
    with _style():
        fig, ax = _new_figure()
        ax.plot(
            roc.tpr[keep],
            1.0 / roc.fpr[keep],
            label=label if label is not None else f"score (AUC = {area:.3f})",
        )
        eps = np.geomspace(max(1.0 / roc.n_background, 1e-6), 1.0, 200)
        ax.plot(eps, 1.0 / eps, "k--", label="random")
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"signal efficiency $\epsilon_S$")
        ax.set_ylabel(r"background rejection $1/\epsilon_B$")
        ax.legend()
        return _finish(fig, path)


def plot_sic(
    y: Any,
    scores: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    min_background: int = DEFAULT_MIN_BACKGROUND,
    label: str | None = None,
) -> Figure:
    """SIC = eps_S/sqrt(eps_B) against background rejection 1/eps_B (log x).

    Points keeping fewer than `min_background` background events are drawn dashed; the maximum
    SIC among the others is marked. The random classifier (SIC = sqrt(eps_B)) is drawn for
    reference.
    """
    sic = sic_curve(y, scores, min_background=min_background)
    with _style():
        fig, ax = _new_figure()
        rejection = 1.0 / sic.fpr
        ok = sic.passes
        # the whole curve dashed, the points passing the cutoff solid on top of it
        line = ax.plot(
            np.where(ok, rejection, np.nan),
            np.where(ok, sic.sic, np.nan),
            label=label if label is not None else "score",
        )[0]
        if (~ok).any():
            ax.plot(
                rejection,
                sic.sic,
                linestyle="--",
                linewidth=1.0,
                color=line.get_color(),
                label=f"< {sic.min_background} background events kept",
            )
        if ok.any():
            best = int(np.argmax(np.where(ok, sic.sic, -np.inf)))
            ax.plot(
                rejection[best], sic.sic[best], "o", color=line.get_color(),
                label=f"max SIC = {sic.sic[best]:.2f}",
            )  # fmt: skip
        r = np.geomspace(1.0, rejection.max(), 200)
        ax.plot(r, 1.0 / np.sqrt(r), "k:", label="random")
        ax.set_xscale("log")
        ax.set_xlabel(r"background rejection $1/\epsilon_B$")
        ax.set_ylabel(r"SIC $= \epsilon_S\,/\,\epsilon_B^{1/2}$")
        ax.set_ylim(bottom=0.0)
        ax.legend()
        return _finish(fig, path)


def plot_scores(
    scores: Any,
    y: Any = None,
    path: str | os.PathLike[str] | None = None,
    *,
    bins: int = 50,
    labels: Sequence[str] = ("background", "signal"),
) -> Figure:
    """Score distributions, normalised to unit area, per label when `y` (N,) is given.

    Parameters
    ----------
    scores
        Scores (N,), finite.
    y
        Optional labels (N,), 0/1; ``labels`` names them in the legend.
    bins
        Number of equal-width bins between the smallest and largest score.
    """
    import hist
    import mplhep

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all():
        msg = f"scores must be a non-empty finite 1-D array; got shape {s.shape}"
        raise InputError(msg)
    if y is None:
        groups = [(s, "events")]
    else:
        yy = np.asarray(y)
        if yy.shape != s.shape or not np.isin(yy, (0, 1)).all():
            msg = f"y must be 0/1 labels of the same shape as scores {s.shape}; got {yy.shape}"
            raise InputError(msg)
        groups = [(s[yy == k], labels[k]) for k in (0, 1) if (yy == k).any()]
    lo, hi = float(s.min()), float(s.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    with _style():
        fig, ax = _new_figure()
        for values, name in groups:
            h = hist.Hist(hist.axis.Regular(bins, lo, hi, name="score", label="score"))
            h.fill(score=values)
            mplhep.histplot(h, ax=ax, density=True, label=f"{name} ({values.size})")
        ax.set_xlabel("anomaly score")
        ax.set_ylabel("normalised events")
        ax.set_yscale("log")
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * (top / bottom) ** 0.3)  # headroom for the legend
        ax.legend(fontsize="small", loc="upper right")
        return _finish(fig, path)


def plot_mjj(
    mjj_before: Any,
    mjj_after: Any,
    *,
    bins: int | Sequence[float] | np.ndarray,
    sr: tuple[float, float] | SignalRegion | None = None,
    fit: tuple[Any, Any] | None = None,
    path: str | os.PathLike[str] | None = None,
    labels: tuple[str, str] = ("before cut", "after cut"),
) -> Figure:
    """m_JJ spectrum [GeV] before and after a score cut (log y), SR shaded.

    Parameters
    ----------
    mjj_before, mjj_after
        Dijet masses (N,), (M,) in GeV.
    bins
        Bin edges in GeV (increasing), or a number of equal bins spanning `mjj_before`.
    sr
        Signal region ``(low, high)`` in GeV or a `SignalRegion`; shaded when given.
    fit
        Optional fitted background for the after-cut histogram: ``(bin_centres, expected
        counts per bin)`` in GeV and events, drawn as a curve.
    path
        Optional output file.
    """
    import hist
    import mplhep

    before = np.asarray(mjj_before, dtype=np.float64)
    after = np.asarray(mjj_after, dtype=np.float64)
    for name, arr in (("mjj_before", before), ("mjj_after", after)):
        if arr.ndim != 1 or not np.isfinite(arr).all():
            msg = f"{name} must be a finite 1-D array of masses in GeV; got shape {arr.shape}"
            raise InputError(msg)
    if before.size == 0:
        msg = "mjj_before is empty; pass the m_JJ of the events before the cut (GeV)"
        raise InputError(msg)
    if np.ndim(bins) == 0:
        n_bins = int(bins)  # type: ignore[arg-type]
        if n_bins < 1:
            msg = f"bins must be a positive number of bins or an array of edges; got {bins!r}"
            raise InputError(msg)
        axis = hist.axis.Regular(n_bins, float(before.min()), float(before.max()), name="mjj")
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
            msg = f"bin edges must be a strictly increasing 1-D array of >= 2 GeV values; got {bins!r}"
            raise InputError(msg)
        axis = hist.axis.Variable(edges, name="mjj")
    if isinstance(sr, SignalRegion):
        sr = (sr.low_gev, sr.high_gev)
    with _style():
        fig, ax = _new_figure()
        for values, name in zip((before, after), labels, strict=True):
            h = hist.Hist(axis)
            h.fill(mjj=values)
            mplhep.histplot(h, ax=ax, label=f"{name} ({values.size} events)", yerr=True)
        if fit is not None:
            centres, expected = (np.asarray(a, dtype=np.float64) for a in fit)
            if centres.shape != expected.shape or centres.ndim != 1:
                msg = (
                    "fit must be (bin centres, expected counts), two 1-D arrays of equal length; "
                    f"got shapes {centres.shape} and {expected.shape}"
                )
                raise InputError(msg)
            ax.plot(centres, expected, "-", color="tab:red", label="background fit")
        if sr is not None:
            low, high = (float(v) for v in sr)
            ax.axvspan(low, high, color="grey", alpha=0.2, label=f"SR {low:g}-{high:g} GeV")
        ax.set_yscale("log")
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * (top / bottom) ** 0.5)  # headroom for the legend
        ax.set_xlabel(MJJ_LABEL)
        ax.set_ylabel("events / bin")
        ax.legend(fontsize="small", loc="upper right")
        return _finish(fig, path)


def _check_1d(name: str, values: Any, like: tuple[str, int] | None = None) -> np.ndarray:
    """`values` as a non-empty float64 1-D array, of the length ``like[1]`` of array ``like[0]``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        msg = f"{name} must be a non-empty 1-D array; got shape {arr.shape}"
        raise InputError(msg)
    if like is not None and arr.size != like[1]:
        msg = f"{name} has {arr.size} entries but {like[0]} has {like[1]}; pass one per point"
        raise InputError(msg)
    return arr


def plot_sic_band(
    grid: Any,
    band: Band,
    path: str | os.PathLike[str] | None = None,
    *,
    label: str | None = None,
) -> Figure:
    """Median SIC and its 16-84% band against background rejection 1/eps_B (log x), as
    `plot_sic` draws a single curve; the random classifier (SIC = sqrt(eps_B)) for reference.

    Parameters
    ----------
    grid, band
        The output of `sic_band`: eps_B grid (K,) and a `Band` of arrays (K,). Grid points no
        curve reaches (NaN) are left out.
    path
        Optional output file.
    label
        Legend entry of the median (default: "median of N runs").
    """
    eps_b = _check_1d("grid", grid)
    med = _check_1d("band.median", band.median, ("grid", eps_b.size))
    lo = _check_1d("band.lo", band.lo, ("grid", eps_b.size))
    hi = _check_1d("band.hi", band.hi, ("grid", eps_b.size))
    if ((eps_b <= 0) | (eps_b > 1)).any():
        msg = "grid must hold background efficiencies in (0, 1]; pass the grid from sic_band"
        raise InputError(msg)
    ok = np.isfinite(med)
    if not ok.any():
        msg = "band.median is NaN everywhere: no curve reaches the grid; nothing to draw"
        raise InputError(msg)
    n_runs = int(np.max(band.n))
    order = np.argsort(-eps_b)  # increasing rejection
    rejection = 1.0 / eps_b[order]
    med, lo, hi, ok = med[order], lo[order], hi[order], ok[order]
    with _style():
        fig, ax = _new_figure()
        line = ax.plot(
            rejection[ok],
            med[ok],
            label=label if label is not None else f"median of {n_runs} runs",
        )[0]
        ax.fill_between(
            rejection[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.3, label="16-84%"
        )
        r = np.geomspace(1.0, rejection[ok].max(), 200)
        ax.plot(r, 1.0 / np.sqrt(r), "k:", label="random")
        ax.set_xscale("log")
        ax.set_xlabel(r"background rejection $1/\epsilon_B$")
        ax.set_ylabel(r"SIC $= \epsilon_S\,/\,\epsilon_B^{1/2}$")
        ax.set_ylim(bottom=0.0)
        ax.legend()
        return _finish(fig, path)


def plot_injection(
    n_signal: Any,
    sic_median: Any,
    sic_lo: Any,
    sic_hi: Any,
    *,
    ylabel: str = r"SIC at $\epsilon_B = 10^{-3}$",
    label: str = "sideband",
    reference: dict[str, tuple[Any, Any, Any, Any]] | None = None,
    n_background: float | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """A figure of merit (default SIC at eps_B = 1e-3) against the injected number of signal
    events, median with its 16-84% band (linear axes).

    Parameters
    ----------
    n_signal
        Injected signal events (K,), e.g. in the SR or in the whole sample (say which in the
        caption).
    sic_median, sic_lo, sic_hi
        Median, 16th and 84th percentiles (K,) over seeds at each injection (see `band`).
    ylabel, label
        Axis label and legend entry of the main curve.
    reference
        Further curves ``{label: (n_signal, median, lo, hi)}``, e.g. the idealized anomaly
        detector; drawn the same way.
    n_background
        Background events B in the region where `n_signal` is counted; when given, a top axis
        shows ``S / sqrt(B)``.
    path
        Optional output file.
    """
    curves = {label: (n_signal, sic_median, sic_lo, sic_hi)}
    for name, value in (reference or {}).items():
        if name in curves or not isinstance(value, tuple | list) or len(value) != 4:
            msg = (
                f"reference[{name!r}] must be a 4-tuple (n_signal, median, lo, hi) with a label "
                f"other than {label!r}"
            )
            raise InputError(msg)
        curves[name] = (value[0], value[1], value[2], value[3])
    checked: dict[str, tuple[np.ndarray, ...]] = {}
    for name, (n, med, lo, hi) in curves.items():
        x = _check_1d(f"n_signal of {name!r}", n)
        if not np.isfinite(x).all() or (x < 0).any():
            msg = f"n_signal of {name!r} must be finite and non-negative event counts"
            raise InputError(msg)
        order = np.argsort(x)
        checked[name] = tuple(
            _check_1d(f"{part} of {name!r}", v, (f"n_signal of {name!r}", x.size))[order]
            for part, v in (("n_signal", x), ("median", med), ("lo", lo), ("hi", hi))
        )
    if n_background is not None and not float(n_background) > 0:
        msg = f"n_background must be a positive number of background events; got {n_background!r}"
        raise InputError(msg)
    with _style():
        fig, ax = _new_figure()
        for name, (x, med, lo, hi) in checked.items():
            line = ax.plot(x, med, "o-", label=name)[0]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25)
        ax.set_xlabel(r"injected signal events $N_\mathrm{sig}$")
        ax.set_ylabel(ylabel)
        ax.set_xlim(left=0.0)
        ax.set_ylim(bottom=0.0)
        if n_background is not None:
            root_b = float(np.sqrt(float(n_background)))
            top = ax.secondary_xaxis("top", functions=(lambda n: n / root_b, lambda s: s * root_b))
            top.set_xlabel(rf"$S/B^{{1/2}}$ ($B$ = {float(n_background):.3g})")
        ax.legend(title="median, 16-84% band", fontsize="small")
        return _finish(fig, path)


def plot_sculpting(result: SculptingResult, path: str | os.PathLike[str] | None = None) -> Figure:
    """chi2/ndof of the m_JJ spectrum after a score cut against the selection efficiency (log x),
    with the mean +- std of random selections of the same size (LaCATHODE Fig. 6, top right).

    Parameters
    ----------
    result
        Output of `sculpting_test`.
    path
        Optional output file.
    """
    eps = _check_1d("result.eps_sel", result.eps_sel)
    value = _check_1d("result.chi2_ndof", result.chi2_ndof, ("result.eps_sel", eps.size))
    mean = _check_1d(
        "result.random_chi2_ndof_mean", result.random_chi2_ndof_mean, ("result.eps_sel", eps.size)
    )
    std = _check_1d(
        "result.random_chi2_ndof_std", result.random_chi2_ndof_std, ("result.eps_sel", eps.size)
    )
    order = np.argsort(eps)
    eps, value, mean, std = eps[order], value[order], mean[order], std[order]
    n_bins = len(result.bin_edges) - 1
    with _style():
        fig, ax = _new_figure()
        ax.plot(eps, value, "o-", label="score cut")
        ax.plot(eps, mean, "-", color="grey", label="random selection (mean)")
        ax.fill_between(eps, mean - std, mean + std, color="grey", alpha=0.3, label=r"$\pm1\sigma$")
        ax.axhline(1.0, color="k", linestyle=":", linewidth=1.0)
        ax.set_xscale("log")
        ax.set_xlabel(r"selection efficiency $\epsilon_\mathrm{sel}$ (SR)")
        ax.set_ylabel(r"$\chi^2/n_\mathrm{dof}$ of $m_{JJ}$ after / before the cut")
        ax.set_ylim(bottom=0.0)
        ax.legend(title=f"{n_bins} equal-population bins", fontsize="small")
        return _finish(fig, path)
