"""Standard figures: ROC, SIC, score distributions, the m_JJ spectrum before/after a cut, the
figures over repeated runs: SIC band, SIC vs injected signal, sculpting chi2/ndof, and the bump
hunt's: the fit of one window, local significance and limits over a scan of windows.

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
from sideband.report import new_file_mode

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sideband.bumphunt import BumpHuntResult
    from sideband.evaluation.bands import Band
    from sideband.evaluation.sculpting import SculptingResult

__all__ = [
    "plot_fit",
    "plot_injection",
    "plot_mjj",
    "plot_roc",
    "plot_scan_limits",
    "plot_scan_significance",
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
        os.chmod(tmp, new_file_mode())  # mkstemp creates 0600
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


# -- the bump hunt: one window, and scans over windows ----------------------------------------

_FIT_INFO_KEYS = ("edges", "counts", "background", "background_err", "sr_bins", "signal_shape")
_ROW_KEYS = ("center_gev", "efficiency", "status")


def _poisson_interval(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Garwood 68.3% interval of Poisson counts (N,): lower and upper error bars (N,), events."""
    from scipy import stats

    n = np.asarray(counts, dtype=np.float64)
    alpha = 1.0 - 0.682689492
    lo = np.where(n > 0, stats.chi2.ppf(alpha / 2, 2 * n) / 2, 0.0)
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * (n + 1)) / 2
    return n - lo, hi - n


def _fit_arrays(result: Any) -> dict[str, np.ndarray]:
    """The fit_info arrays `plot_fit` draws, checked for shapes and finiteness."""
    info = getattr(result, "fit_info", None)
    if not isinstance(info, dict) or any(k not in info for k in _FIT_INFO_KEYS):
        missing = [k for k in _FIT_INFO_KEYS if not isinstance(info, dict) or k not in info]
        msg = f"result must be a BumpHuntResult whose fit_info holds {missing}; got {result!r:.80}"
        raise InputError(msg)
    edges = _check_1d("fit_info['edges']", info["edges"])
    n_bins = edges.size - 1
    out = {"edges": edges}
    for key in ("counts", "background", "background_err"):
        out[key] = _check_1d(f"fit_info[{key!r}]", info[key], ("the bins", n_bins))
    sr = np.asarray(info["sr_bins"], dtype=bool)
    if sr.shape != (n_bins,) or not sr.any():
        msg = f"fit_info['sr_bins'] must be a boolean mask over the {n_bins} bins with SR bins"
        raise InputError(msg)
    out["sr_bins"] = sr
    out["signal_shape"] = _check_1d(
        "fit_info['signal_shape']", info["signal_shape"], ("the SR bins", int(sr.sum()))
    )
    if not all(np.isfinite(v).all() for v in out.values()) or np.diff(edges).min() <= 0:
        msg = "fit_info arrays must be finite and edges increasing; is this a BumpHuntResult?"
        raise InputError(msg)
    return out


def plot_fit(result: BumpHuntResult, path: str | os.PathLike[str] | None = None) -> Figure:
    """Pre- and post-fit m_JJ [GeV] of one bump-hunt window, with pulls (log y).

    Upper panel: data with Garwood (68%) Poisson error bars; the sideband-fit background
    (pre-fit: the dijet prediction in every bin) with its +-1 sigma band; in the SR the post-fit
    background + signal, ``background + mu_hat x signal_shape`` (the background nuisance
    parameters' pulls are not applied: the drawn background is the sideband fit's); SR shaded.
    Lower panel: pulls ``(data - background) / sqrt(background + background_err^2)`` per bin.
    With bins of different widths the counts are drawn per GeV.

    Parameters
    ----------
    result
        A `BumpHuntResult`; only ``result.mu_hat`` and ``result.fit_info`` entries ``edges``,
        ``counts``, ``background``, ``background_err``, ``sr_bins`` and ``signal_shape`` are used.
    path
        Optional output file.
    """
    arr = _fit_arrays(result)
    mu_hat = float(getattr(result, "mu_hat", np.nan))
    if not np.isfinite(mu_hat):
        msg = f"result.mu_hat must be a finite number of signal events; got {mu_hat!r}"
        raise InputError(msg)
    edges, counts, bkg, err, sr = (arr[k] for k in ("edges", "counts", "background",
                                                    "background_err", "sr_bins"))  # fmt: skip
    widths = np.diff(edges)
    per_gev = not np.allclose(widths, widths[0], rtol=1e-6)
    scale = 1.0 / widths if per_gev else np.ones_like(widths)
    centres = 0.5 * (edges[:-1] + edges[1:])
    sr_idx = np.flatnonzero(sr)
    sr_edges = edges[sr_idx[0] : sr_idx[-1] + 2]
    post = bkg[sr] + mu_hat * arr["signal_shape"]
    down, up = _poisson_interval(counts)
    sigma = np.sqrt(np.clip(bkg, 0.0, None) + err**2)
    pulls = np.divide(counts - bkg, sigma, out=np.zeros_like(bkg), where=sigma > 0)
    from matplotlib.figure import Figure

    with _style():
        fig = Figure(figsize=(7.0, 7.0), layout="constrained")
        ax, ax_pull = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        ax.axvspan(sr_edges[0], sr_edges[-1], color="grey", alpha=0.2,
                   label=f"SR {sr_edges[0]:g}-{sr_edges[-1]:g} GeV")  # fmt: skip
        ax.stairs((bkg + err) * scale, edges, baseline=np.clip(bkg - err, 0, None) * scale,
                  fill=True, color="tab:blue", alpha=0.3, label=r"$\pm1\sigma$ fit")  # fmt: skip
        ax.stairs(bkg * scale, edges, baseline=None, color="tab:blue",
                  label="background (sideband fit)")  # fmt: skip
        ax.stairs(post * scale[sr], sr_edges, baseline=None, color="tab:red", linestyle="--",
                  label=rf"post-fit bkg + $\hat\mu$ sig ($\hat\mu$ = {mu_hat:.1f})")  # fmt: skip
        ax.errorbar(centres, counts * scale, yerr=(down * scale, up * scale), fmt="ko",
                    markersize=4, label=f"data ({int(counts.sum())} events)")  # fmt: skip
        ax.set_yscale("log")
        shown = counts[counts > 0] * scale[counts > 0]
        bottom = 0.3 * float(min(shown.min(), (bkg * scale).min())) if shown.size else 0.1
        top = float(max(shown.max() if shown.size else 1.0, (bkg * scale).max()))
        ax.set_ylim(bottom, top * (top / bottom) ** 0.8)  # headroom for the legend
        ax.set_ylabel("events / GeV" if per_gev else f"events / {widths[0]:g} GeV")
        ax.legend(fontsize="x-small", loc="upper right")
        ax_pull.bar(centres, pulls, width=widths, color="tab:blue", alpha=0.6)
        ax_pull.axhline(0.0, color="k", linewidth=1.0)
        for level in (-2.0, 2.0):
            ax_pull.axhline(level, color="k", linestyle=":", linewidth=1.0)
        lim = max(3.0, float(np.abs(pulls).max()) * 1.1)
        ax_pull.set_ylim(-lim, lim)
        ax_pull.set_ylabel(r"(data$-$bkg)$/\sigma$")
        ax_pull.set_xlabel(MJJ_LABEL)
        ax_pull.set_xlim(edges[0], edges[-1])
        return _finish(fig, path)


def _ok_rows(rows: Any, *, need: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows with status "ok" and non-None values for `need`; InputError for bad/empty input."""
    if isinstance(rows, dict) or not isinstance(rows, Sequence) or len(rows) == 0:
        msg = "rows must be a non-empty list of dicts, one per window x efficiency"
        raise InputError(msg)
    keep = []
    for i, row in enumerate(rows):
        missing = [k for k in (*_ROW_KEYS, *need) if not isinstance(row, dict) or k not in row]
        if missing:
            msg = f"row {i} lacks {missing}; each row needs {[*_ROW_KEYS, *need]}"
            raise InputError(msg)
        if row["status"] == "ok" and all(row[k] is not None for k in need):
            keep.append(row)
    return keep


def _efficiency_label(eff: Any) -> str:
    return "no cut" if eff is None else rf"$\epsilon$ = {float(eff):g}"


def _sort_key(eff: Any) -> float:
    return np.inf if eff is None else float(eff)


def plot_scan_significance(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    global_z: dict[Any, float] | None = None,
) -> Figure:
    """Local significance against the window centre [GeV], one line per efficiency.

    Plots ``z_signed`` where a row has it (not None), else ``z``; rows with status other than
    "ok" or without a Z are skipped. A dashed line marks Z = 0; with `global_z`, a dashed line
    per efficiency at the local Z that corresponds to a global 2 sigma (in the efficiency's
    colour, in the legend).

    Parameters
    ----------
    rows
        One dict per window x efficiency with ``center_gev``, ``efficiency``, ``status`` and
        ``z`` / ``z_signed`` (see `plot_scan_limits` for the other keys).
    path
        Optional output file.
    global_z
        ``{efficiency: local Z}`` at which the scan's largest local Z is globally 2 sigma
        (from background-only toys: `sideband.scan.global_significance`).
    """
    ok = _ok_rows(rows, need=("z",))
    if not ok:
        msg = "no row has status 'ok' and a Z; nothing to draw (did every window fail?)"
        raise InputError(msg)
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in ok:
        groups.setdefault(row["efficiency"], []).append(row)
    with _style():
        fig, ax = _new_figure()
        colours = {}
        for eff in sorted(groups, key=_sort_key):
            group = sorted(groups[eff], key=lambda r: float(r["center_gev"]))
            x = np.array([float(r["center_gev"]) for r in group])
            y = np.array([
                float(r["z_signed"] if r.get("z_signed") is not None else r["z"]) for r in group
            ])  # fmt: skip
            line = ax.plot(x, y, "o-", label=_efficiency_label(eff))[0]
            colours[eff] = line.get_color()
        ax.axhline(0.0, color="k", linestyle="--", linewidth=1.0)
        for eff, value in (global_z or {}).items():
            ax.axhline(float(value), color=colours.get(eff, "grey"), linestyle="--",
                       linewidth=1.0, label=f"global 2σ, {_efficiency_label(eff)}: "
                       f"local Z {float(value):.2f}")  # fmt: skip
        ax.set_xlabel(r"window centre $m_{JJ}$ [GeV]")
        ax.set_ylabel(r"local significance $Z$ (signed)")
        ax.legend(fontsize="small")
        return _finish(fig, path)


def plot_scan_limits(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike[str] | None = None,
    efficiency: Any = None,
) -> Figure:
    """Observed and expected 95% CL upper limits on the signal events against the window centre.

    The observed limit is a solid line with markers; the expected median dashed, with its
    +-1 sigma (green) and +-2 sigma (yellow) bands, for one efficiency.

    Parameters
    ----------
    rows
        One dict per window x efficiency with ``center_gev``, ``sr_low_gev``, ``sr_high_gev``,
        ``efficiency``, ``status`` ("ok" or "failed"), ``z``, ``z_signed``, ``upper_limit`` and
        ``expected_limits`` (5 values at -2, -1, 0, +1, +2 sigma, or None). Failed rows and rows
        whose limit is None are skipped (the bands also skip rows without expected limits).
    path
        Optional output file.
    efficiency
        Which efficiency to draw (default: the smallest present).
    """
    ok = _ok_rows(rows, need=("upper_limit",))
    present = sorted({r["efficiency"] for r in rows if isinstance(r, dict)}, key=_sort_key)
    eff = present[0] if efficiency is None else efficiency
    chosen = [r for r in ok if r["efficiency"] == eff]
    if not chosen:
        msg = (
            f"no row with status 'ok' and an upper limit at efficiency {eff!r} (present: "
            f"{present}); nothing to draw"
        )
        raise InputError(msg)
    chosen.sort(key=lambda r: float(r["center_gev"]))
    x = np.array([float(r["center_gev"]) for r in chosen])
    obs = np.array([float(r["upper_limit"]) for r in chosen])
    band = [r for r in chosen if r.get("expected_limits") is not None]
    with _style():
        fig, ax = _new_figure()
        if band:
            xb = np.array([float(r["center_gev"]) for r in band])
            exp = np.array([[float(v) for v in r["expected_limits"]] for r in band])
            if exp.shape[1] != 5:
                msg = "expected_limits must hold 5 values (-2, -1, 0, +1, +2 sigma)"
                raise InputError(msg)
            ax.fill_between(
                xb, exp[:, 0], exp[:, 4], color="yellow", label=r"expected $\pm2\sigma$"
            )
            ax.fill_between(xb, exp[:, 1], exp[:, 3], color="limegreen",
                            label=r"expected $\pm1\sigma$")  # fmt: skip
            ax.plot(xb, exp[:, 2], "k--", label="expected (median)")
        ax.plot(x, obs, "ko-", label="observed")
        ax.set_xlabel(r"window centre $m_{JJ}$ [GeV]")
        ax.set_ylabel("95% CL upper limit on signal events")
        ax.set_ylim(bottom=0.0)
        ax.legend(title=_efficiency_label(eff), fontsize="small")
        return _finish(fig, path)
