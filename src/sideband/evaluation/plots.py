"""Standard figures: ROC, SIC, score distributions and the m_JJ spectrum before/after a cut.

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

__all__ = ["plot_mjj", "plot_roc", "plot_scores", "plot_sic", "save_figure"]

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
