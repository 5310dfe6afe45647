"""Plots a person would rather look at than read (matplotlib's object-oriented API, rendered
with the Agg canvas: no screen and no global pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mis.metrics import RocBand
from mis.security import QuantizerRanking
from mis.store import atomic_write

__all__ = [
    "colormap",
    "plot_accuracy_vs_leak",
    "plot_ranking",
    "plot_roc",
    "roc_loglog",
    "save_figure",
    "subplots",
]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, dpi=None, **kwargs):
    """``(figure, axes)`` as :func:`matplotlib.pyplot.subplots` returns them, without pyplot."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colormap(name: str):
    """A registered matplotlib colormap by name."""
    return matplotlib.colormaps[name]


def save_figure(fig, path) -> Path:
    """Lay out ``fig`` and write it as PNG atomically."""
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def roc_loglog(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path,
    *,
    fpr_min=1e-5,
    title: str = "ROC (log-log)",
) -> Path:
    """Save log-log ROC curves, the view of Carlini et al. (2022) Fig. 1, with the chance line.

    Parameters
    ----------
    curves : mapping of label -> (fpr, tpr)
        As returned by :func:`mis.metrics.roc_curve`.
    path : path-like
        PNG file to write (atomically).
    fpr_min : float
        Left end of the FPR axis.
    """
    fig, ax = subplots(figsize=(4.8, 4.2), dpi=120)
    grid = np.logspace(np.log10(fpr_min), 0, 100)
    ax.plot(grid, grid, ls=":", color="grey", lw=1, label="chance")
    for label, (fpr, tpr) in curves.items():
        ax.plot(np.maximum(fpr, fpr_min), np.maximum(tpr, fpr_min), lw=1.5, label=label)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(fpr_min, 1),
        ylim=(fpr_min, 1.05),
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title=title,
    )
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_roc(
    bands: Mapping[str, RocBand],
    *,
    title: str = "ROC (log-log) with pointwise bootstrap bands",
    ax=None,
) -> Figure:
    """Log-log ROC curves with their pointwise bootstrap bands and the chance line.

    Parameters
    ----------
    bands : mapping of label → :class:`~mis.metrics.RocBand`
        From :func:`mis.metrics.roc_band` (one per scoring: e.g. full precision and a
        quantized model attacked the same way).
    title : str
    ax : matplotlib Axes, optional
        Draw into it (a panel of a larger figure); by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Save it with :func:`save_figure` (or ``fig.savefig``).
    """
    if ax is None:
        fig, ax = subplots(figsize=(5.2, 4.4), dpi=120)
    else:
        fig = ax.figure
    lo = min(float(b.fpr[0]) for b in bands.values()) if bands else 1e-3
    grid = np.logspace(np.log10(lo), 0, 50)
    ax.plot(grid, grid, ls=":", color="grey", lw=1, label="chance")
    for label, b in bands.items():
        floor = lo / 2  # a TPR of 0 is drawn at the bottom edge
        line = ax.plot(b.fpr, np.maximum(b.tpr, floor), lw=1.5, label=label)[0]
        ax.fill_between(
            b.fpr, np.maximum(b.low, floor), np.maximum(b.high, floor), color=line.get_color(),
            alpha=0.2, lw=0,
        )  # fmt: skip
    level = next(iter(bands.values())).confidence_level if bands else 0.95
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, 1),
        ylim=(lo / 2, 1.05),
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title=f"{title} ({level:.0%})" if bands else title,
    )
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_ranking(
    ranking: QuantizerRanking,
    *,
    labels: Mapping[str, str] | None = None,
    xlabel: str | None = None,
    title: str = "Privacy ranking (higher = more private)",
    log: bool | None = None,
    ax=None,
) -> Figure:
    """Forest plot of a quantizer ranking: one row per quantizer, most private on top, the
    ranking statistic with its bootstrap interval, tie groups shaded alternately.

    Parameters
    ----------
    ranking : :class:`~mis.security.QuantizerRanking`
        From :func:`mis.security.rank_quantizers` (e.g. of r_Q per run and quantizer).
    labels : mapping name → display name, optional
    xlabel : str, optional
        Default: "<statistic> r_Q over runs (95 % bootstrap CI)".
    title : str
    log : bool, optional
        Logarithmic axis; by default when the positive estimates span more than a factor 20.
    ax : matplotlib Axes, optional
        Draw into it; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = labels or {}
    stat = ranking.mean if ranking.statistic == "mean" else ranking.median
    order = list(ranking.order)
    n = len(order)
    if ax is None:
        fig, ax = subplots(figsize=(6.4, 0.42 * n + 1.4), dpi=120)
    else:
        fig = ax.figure
    est = np.array([stat[j].estimate for j in order], dtype=float)
    lo = np.array([stat[j].low for j in order], dtype=float)
    hi = np.array([stat[j].high for j in order], dtype=float)
    y = np.arange(n)[::-1]  # most private on top
    group = {name: g for g, members in enumerate(ranking.tie_groups) for name in members}
    for g in range(len(ranking.tie_groups)):
        rows = [y[i] for i, j in enumerate(order) if group.get(ranking.names[j]) == g]
        if rows and g % 2 == 0:
            ax.axhspan(min(rows) - 0.5, max(rows) + 0.5, color="0.92", lw=0, zorder=0)
    finite = np.isfinite(est)
    ax.errorbar(
        est[finite], y[finite], xerr=[est[finite] - lo[finite], hi[finite] - est[finite]],
        fmt="o", color="tab:blue", ms=5, capsize=3, lw=1.2, zorder=2,
    )  # fmt: skip
    positive = est[finite & (est > 0)]
    if log is None:
        log = positive.size > 1 and positive.max() / positive.min() > 20
    if log:
        ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels([labels.get(ranking.names[j], ranking.names[j]) for j in order], fontsize=9)
    for i in np.flatnonzero(~finite):
        ax.annotate("+inf", (1.0, y[i]), xycoords=("axes fraction", "data"), ha="right",
                    va="center", fontsize=8, color="tab:red")  # fmt: skip
    level = f"{ranking.confidence_level:.0%}"
    ax.set_xlabel(xlabel or f"{ranking.statistic} r_Q over runs ({level} bootstrap CI)")
    groups = len(ranking.tie_groups)
    ax.set_title(
        f"{title}\n{groups} tie group(s) at {level}, Holm over adjacent pairs (shaded bands)",
        fontsize=10,
    )
    ax.grid(True, axis="x", lw=0.4, alpha=0.5)
    return fig


def _interval(point: Mapping, key: str) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of ``point[key]`` (low/high default to the estimate)."""
    est = float(point[key])
    return est, float(point.get(f"{key}_low", est)), float(point.get(f"{key}_high", est))


def plot_accuracy_vs_leak(
    points: Mapping[str, Mapping[str, float]],
    *,
    fpr: float | None = None,
    reference: str | None = None,
    title: str = "Accuracy against leak",
    ax=None,
) -> Figure:
    """Test accuracy against the attack's TPR at a low FPR, one point per model variant.

    Parameters
    ----------
    points : mapping label → mapping
        For each variant ``accuracy`` (a fraction) and ``tpr``, optionally with their
        interval bounds ``accuracy_low``, ``accuracy_high``, ``tpr_low``, ``tpr_high``
        (drawn as error bars).
    fpr : float, optional
        The FPR of the TPR: labels the axis and draws chance (TPR = FPR) as a dotted line;
        a TPR of 0 is then drawn at FPR / 4 (the axis is logarithmic).
    reference : str, optional
        The label of the reference (full precision): drawn as a black star.
    title : str
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Lower right is better: less leak, more accuracy.
    """
    if ax is None:
        fig, ax = subplots(figsize=(5.6, 4.2), dpi=120)
    else:
        fig = ax.figure
    floor = fpr / 4 if fpr else None
    for i, (label, p) in enumerate(points.items()):
        a, alo, ahi = _interval(p, "accuracy")
        t, tlo, thi = _interval(p, "tpr")
        if floor is not None:
            t, tlo, thi = (max(v, floor) for v in (t, tlo, thi))
        ref = label == reference
        ax.errorbar(
            [100 * a], [t], xerr=[[100 * (a - alo)], [100 * (ahi - a)]],
            yerr=[[t - tlo], [thi - t]], fmt="*" if ref else "o", ms=10 if ref else 6,
            color="black" if ref else colormap("tab10")(i % 10), capsize=2, lw=0.9, label=label,
        )  # fmt: skip
    if fpr:
        ax.axhline(fpr, ls=":", color="grey", lw=0.8, label="chance")
        ax.set_yscale("log")
    ax.set(
        xlabel="test accuracy %",
        ylabel=f"TPR @ {fpr:g} FPR" if fpr else "TPR at low FPR",
        title=title,
    )
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.legend(fontsize=8, loc="best")
    return fig
