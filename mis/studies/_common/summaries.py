"""Plain-data summaries shared by the studies' results.json."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ORIGINAL", "fill_keep_best_padding", "interval_dict", "ranking_summary"]

#: The variant name of the unquantized model, beside the quantizers' names.
ORIGINAL = "original"


def fill_keep_best_padding(val_losses, qhash, val_epochs):
    """Replace the padding rows of keep-best trajectories (fewer distinct points than B:
    ``val_epochs < 0``) by copies of the best point; they share its hash, so
    :func:`~mis.security.rq_batch` deduplicates them away.

    Shapes: ``val_losses`` (R, Q, B, n_val), ``qhash`` and ``val_epochs`` (R, Q, B).
    """
    pad = val_epochs < 0
    if not pad.any():
        return val_losses, qhash
    vl = np.where(pad[..., None], val_losses[:, :, :1], val_losses)
    qh = np.where(pad, qhash[:, :, :1], qhash)
    return vl, qh


def interval_dict(iv) -> dict:
    """An :class:`~mis.metrics.Interval` as a plain dict (``estimate``, ``low``, ``high``)."""
    return {"estimate": float(iv.estimate), "low": float(iv.low), "high": float(iv.high)}


def ranking_summary(ranking) -> dict:
    """A :class:`~mis.security.QuantizerRanking` as plain data for ``results.json``."""
    return {
        "per_quantizer": {
            q: {
                "mean": interval_dict(ranking.mean[j]),
                "median": interval_dict(ranking.median[j]),
                "rank": float(ranking.ranks[j]),
                "n_inf": int(ranking.n_inf[j]),
            }
            for j, q in enumerate(ranking.names)
        },
        "order": ranking.ranked_names(),
        "adjacent": [
            {
                "higher": a.higher,
                "lower": a.lower,
                "difference": dataclasses.asdict(a.difference),
                "significant": bool(a.significant),
            }
            for a in ranking.adjacent
        ],
        "confidence_level": ranking.confidence_level,
        "n_resamples": ranking.n_resamples,
    }
