"""Analysis of the molecular study (recomputed on every call): r_Q per run and quantizer
ranked with bootstrap-over-runs intervals; per run, R² and Spearman correlations (Tables 4–5)
or the AUROC (Table 3) of the original and quantized models, with their means over runs,
Student-t intervals and ratios to the original model's (r^val_m of §5.2.1)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from mis.exceptions import DegenerateStatisticWarning
from mis.metrics import roc_auc, t_interval
from mis.security import rank_quantizers, rq_batch
from mis.studies._common import ORIGINAL, derive_seed, fill_keep_best_padding, ranking_summary
from mis.studies.molecular.config import Config
from mis.studies.molecular.jobs import ANALYSIS

__all__ = ["analyse_task", "performance"]


def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficient of determination of predictions (..., n) for targets y broadcastable to
    them (NaN where the targets are constant)."""
    y = np.broadcast_to(y, pred.shape)
    ss_tot = ((y - y.mean(-1, keepdims=True)) ** 2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ((pred - y) ** 2).sum(-1) / ss_tot, np.nan)


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (average ranks for ties; NaN, with a
    warning, where a row is constant)."""
    ra = rankdata(a, axis=-1)
    rb = rankdata(np.broadcast_to(b, a.shape), axis=-1)
    ra -= ra.mean(-1, keepdims=True)
    rb -= rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    if (den == 0).any():
        warnings.warn(
            "a prediction vector is constant: its Spearman correlation is undefined (NaN)",
            DegenerateStatisticWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)


def performance(pred: np.ndarray, y: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Per-run metrics of every model variant on the validation part.

    Parameters
    ----------
    pred : ndarray, shape (R, V, n)
        Predictions of R runs × V variants (variant 0 = the original model).
    y : ndarray, shape (n,)
    kind : {"regression", "classification"}

    Returns
    -------
    dict of (R, V) float64 arrays: ``r2``, ``spearman`` (predictions vs labels),
    ``spearman_original`` and ``r2_original`` (vs the original model's predictions) for
    regression; ``auroc`` for classification.
    """
    pred = np.asarray(pred, dtype=np.float64)
    if kind == "regression":
        return {
            "r2": _r2(pred, y),
            "spearman": _spearman(pred, y),
            "spearman_original": _spearman(pred, pred[:, :1, :]),
            "r2_original": _r2(pred, pred[:, :1, :]),
        }
    auc = np.array([[roc_auc(p, y) for p in run] for run in pred])
    return {"auroc": auc}


def _summary(values: np.ndarray, level: float) -> dict:
    """Mean over runs of each variant with its Student-t interval, and the ratio of means to
    the original's (column 0)."""
    rows = [t_interval(values[:, j], level) for j in range(values.shape[1])]
    base = rows[0]["mean"]
    for r in rows:
        r["relative"] = r["mean"] / base if base else float("nan")
    return rows


def analyse_task(cfg: Config, store, spec) -> dict:
    """The results of one task: r_Q ranking and the performance of the quantized models."""
    key = spec.name
    names = list(cfg.trajectory.quantizers)
    an = cfg.analysis
    get = lambda n: np.asarray(store.load(f"{key}/{n}"))  # noqa: E731
    epochs = get("val_epochs")
    vl, qh = fill_keep_best_padding(get("val_losses"), get("qhash"), epochs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateStatisticWarning)
        det = rq_batch(vl, qh, details=True, progress=False)
    rq = det.rq
    # keep_best truncation: a minimum at the last kept checkpoint of a full buffer may sit
    # beyond it (the module docstring of mis.train.trajectory)
    full = epochs[:, :, -1] >= 0
    at_last = full & (det.argmin_checkpoint == epochs.shape[2] - 1)
    degenerate = sorted({str(w.message) for w in caught})
    ranking = rank_quantizers(
        rq,
        names,
        n_resamples=an.n_resamples,
        confidence_level=an.confidence_level,
        rng=derive_seed(cfg.study.seed, ANALYSIS, key),
    )
    kind = "classification" if int(get("classification")[0]) else "regression"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateStatisticWarning)
        perf = performance(get("pred"), get("y_val"), kind)
    degenerate += sorted({str(w.message) for w in caught})
    variants = [ORIGINAL, *names]
    metrics = {
        m: dict(zip(variants, _summary(v, an.confidence_level), strict=True))
        for m, v in perf.items()
    }
    return {
        "task": key,
        "source": spec.source,
        "kind": kind,
        "n_runs": int(rq.shape[0]),
        "n_val": int(get("y_val").size),
        "n_features": int(get("n_features")[0]),
        "rq": ranking_summary(ranking),
        "rq_diagnostics": {
            "mean_distinct_kept": {
                q: float(det.n_distinct[:, j].mean()) for j, q in enumerate(names)
            },
            "share_min_at_last_kept": {q: float(at_last[:, j].mean()) for j, q in enumerate(names)},
        },
        "metrics": metrics,
        "per_run": {
            "rq": rq.tolist(),
            **{m: v.tolist() for m, v in perf.items()},
        },
        "degenerate": degenerate,
        "cpu_seconds": float(get("cpu_seconds")[0]),
    }
