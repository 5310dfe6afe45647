"""Plots a person would rather look at than read (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> Path:
    """Lay out ``fig``, write it as PNG atomically, close it."""
    from mis.store import atomic_write

    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    pyplot().close(fig)
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=120)
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
