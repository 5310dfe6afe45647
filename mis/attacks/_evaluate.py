"""Metrics of an attack: per target model, pooled over targets, and their spread.

Through :mod:`mis.metrics`: TPR at fixed FPRs, AUC and log-AUC, each with a
bootstrap confidence interval over examples; plus the balanced accuracy of
the best threshold, ``max_t 1 − (FPR + FNR)/2`` (as the reference LiRA code's
``sweep``, and the "accuracy" Zhang et al. 2025 report).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from mis import metrics
from mis._validation import as_generator
from mis.exceptions import MisValueError, UndefinedMetricWarning

__all__ = ["AttackEvaluation", "Spread", "evaluate"]


@dataclass(frozen=True)
class Spread:
    """Spread of one metric over target models (NaN entries ignored).

    ``std`` uses ddof 1 (NaN for fewer than 2 finite values); ``n`` counts the
    finite values.
    """

    mean: float
    std: float
    min: float
    max: float
    n: int


@dataclass(frozen=True)
class AttackEvaluation:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    fprs : tuple of float
        FPR levels of the TPR metrics.
    per_target : tuple of RocBootstrap
        One per target model: point estimates with CIs over examples
        (members and non-members resampled separately).
    per_target_accuracy : ndarray, shape (n_targets,)
        Best-threshold balanced accuracy of each target.
    pooled : RocBootstrap
        All targets' (score, membership) pairs pooled into one ROC; the CI
        comes from a cluster bootstrap over examples (an example and all its
        rows across targets are drawn together, since they are not
        independent). With one target: the per-target result.
    pooled_accuracy : float
    spread : dict of str to Spread
        For each metric name (``"tpr@0.001fpr"``, …, ``"auc"``, ``"log_auc"``,
        ``"accuracy"``): mean, std, min, max over targets.
    """

    fprs: tuple[float, ...]
    per_target: tuple[metrics.RocBootstrap, ...]
    per_target_accuracy: np.ndarray = field(repr=False)
    pooled: metrics.RocBootstrap
    pooled_accuracy: float
    spread: dict[str, Spread]

    def names(self) -> list[str]:
        """Metric names, in the order of :meth:`per_target_table` columns."""
        return [*self.pooled.names(), "accuracy"]

    def per_target_table(self) -> np.ndarray:
        """Point estimates, shape (n_targets, len(names()))."""
        rows = [
            [*(iv.estimate for iv in r.tpr), r.auc.estimate, r.log_auc.estimate, acc]
            for r, acc in zip(self.per_target, self.per_target_accuracy, strict=True)
        ]
        return np.array(rows, dtype=np.float64)

    def as_dict(self) -> dict:
        """JSON-friendly summary: pooled metrics with CIs, spread, per-target estimates."""
        return {
            "pooled": {**self.pooled.as_dict(), "accuracy": self.pooled_accuracy},
            "spread": {k: asdict(v) for k, v in self.spread.items()},
            "per_target": [
                {**r.as_dict(), "accuracy": float(acc)}
                for r, acc in zip(self.per_target, self.per_target_accuracy, strict=True)
            ],
        }


def _accuracy(scores, labels) -> float:
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    return float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))


def _spread(values: np.ndarray) -> Spread:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return Spread(np.nan, np.nan, np.nan, np.nan, 0)
    std = float(np.std(v, ddof=1)) if v.size > 1 else np.nan
    return Spread(float(v.mean()), std, float(v.min()), float(v.max()), int(v.size))


def evaluate(
    scores,
    keep,
    *,
    fprs=(1e-3, 1e-2),
    n_resamples=1000,
    confidence_level=0.95,
    method="percentile",
    rng=None,
    compat=None,
    fpr_min=metrics.DEFAULT_FPR_MIN,
) -> AttackEvaluation:
    """Per-target and pooled ROC metrics of membership scores, with CIs and spread.

    Parameters
    ----------
    scores : array_like, shape (n_targets, n_examples) or (n_examples,)
        Membership scores (higher = member), e.g. from
        :func:`~mis.attacks.lira_all_targets` or :func:`~mis.attacks.lira`.
    keep : array_like of bool, same shape as ``scores``
        True membership of each example in each target model.
    fprs : sequence of float, default (1e-3, 1e-2)
        FPR levels for TPR@FPR.
    n_resamples, confidence_level, method, compat, fpr_min
        As :func:`mis.metrics.bootstrap_roc` (``compat="carlini2022"``: TPR at
        FPR strictly below the level, as the reference code).
    rng : None, int or numpy.random.Generator
        One seed drives every bootstrap (same seed ⇒ same result).

    Returns
    -------
    AttackEvaluation

    Raises
    ------
    MisValueError
        Shapes that do not match, non-finite scores, or a target whose
        examples are all members (or all non-members).
    """
    s = np.asarray(scores, dtype=np.float64) if not isinstance(scores, np.ndarray) else scores
    k = np.asarray(keep)
    if s.ndim == 1:
        s = s[None, :]
    if k.ndim == 1:
        k = k[None, :]
    if s.ndim != 2 or s.size == 0:
        raise MisValueError(
            "scores must have shape (n_targets, n_examples) or (n_examples,); "
            f"got {np.shape(scores)}"
        )
    if k.shape != s.shape:
        raise MisValueError(
            f"keep must have the same shape as scores {s.shape}; got {np.shape(keep)}"
        )
    gen = as_generator(rng)
    common = dict(
        fprs=fprs,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method=method,
        compat=compat,
        fpr_min=fpr_min,
    )
    per_target = []
    accuracy = np.empty(s.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        for t in range(s.shape[0]):
            try:
                r = metrics.bootstrap_roc(s[t], k[t], rng=_child(gen), **common)
            except MisValueError as exc:
                raise MisValueError(f"target {t}: {exc}") from None
            per_target.append(r)
            accuracy[t] = _accuracy(s[t], k[t])
        if s.shape[0] == 1:
            pooled, pooled_acc = per_target[0], float(accuracy[0])
        else:
            flat_s = np.ascontiguousarray(s).ravel()
            flat_k = np.ascontiguousarray(k).ravel()
            groups = np.tile(np.arange(s.shape[1]), s.shape[0])
            pooled = metrics.bootstrap_roc(flat_s, flat_k, groups=groups, rng=_child(gen), **common)
            pooled_acc = _accuracy(flat_s, flat_k)
    _rewarn(caught)
    table = np.array(
        [[*(iv.estimate for iv in r.tpr), r.auc.estimate, r.log_auc.estimate] for r in per_target]
    )
    names = [*pooled.names(), "accuracy"]
    columns = np.column_stack([table, accuracy])
    spread = {name: _spread(columns[:, i]) for i, name in enumerate(names)}
    return AttackEvaluation(
        fprs=pooled.fprs,
        per_target=tuple(per_target),
        per_target_accuracy=accuracy,
        pooled=pooled,
        pooled_accuracy=pooled_acc,
        spread=spread,
    )


def _child(gen: np.random.Generator) -> int:
    return int(gen.integers(0, 2**63))


def _rewarn(caught) -> None:
    """Re-issue collected warnings once each (not once per target)."""
    seen = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key not in seen:
            seen.add(key)
            warnings.warn(str(w.message), w.category, stacklevel=3)
