"""ROC metrics for membership inference, with bootstrap confidence intervals.

Also the summaries every study shares: :func:`t_interval` (mean and Student-t interval
over independent replicates) and :func:`holm` (Holm's multiple-testing correction).

Conventions (see DESIGN.md § Numerical conventions):

* ``scores``: higher = more likely a member; ``labels``: 1 = member, 0 = non-member.
* The ROC curve has one point per distinct score (threshold ``score >= t``),
  plus the origin; tied scores move the curve diagonally.
* ``tpr_at_fpr(α)`` is the largest TPR over thresholds whose FPR ≤ α;
  ``compat="carlini2022"`` uses FPR < α as the reference LiRA code does.
  For α below the resolvable floor 1/n_negatives the answer is NaN with an
  :class:`~mis.exceptions.UndefinedMetricWarning`.
* The AUC is the area under the piecewise-linear ROC curve, which equals the
  Mann–Whitney statistic U / (n₁ n₀) with ties counted ½.
* The log-AUC (the "log-AUROC" of Zhang et al. 2025) is defined in
  :func:`log_roc_auc`.

All heavy work runs in numba kernels (:mod:`mis._kernels.roc`) that sort the
scores once and compute a whole ROC from per-observation weights in one pass,
so a bootstrap resample costs O(n) and is never re-sorted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from mis._kernels import roc as _roc
from mis._validation import (
    as_generator,
    check_memory,
    choice,
    integer,
    positive_int,
    probability,
    probability_in_open_unit,
    real_array,
    scores_and_labels,
)
from mis.exceptions import MisValueError, ResourceLimitError, UndefinedMetricWarning

__all__ = [
    "Difference",
    "Interval",
    "RocBand",
    "RocBootstrap",
    "RocComparison",
    "bootstrap_roc",
    "bootstrap_test",
    "compare_roc",
    "holm",
    "log_roc_auc",
    "roc_auc",
    "roc_band",
    "roc_curve",
    "t_interval",
    "tpr_at_fpr",
]

COMPAT_MODES = (None, "carlini2022")
#: Ceiling on bootstrap resamples (and the memory of their replicates is checked too).
MAX_RESAMPLES = 10_000_000
CI_METHODS = ("percentile", "bca")
DEFAULT_FPR_MIN = 1e-5


# --------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------
def _sort(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decreasing sort order (stable) and tie-group ends of ``scores``."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    is_end = np.empty(s.shape[0], dtype=np.bool_)
    is_end[:-1] = s[:-1] != s[1:]
    is_end[-1] = True
    return order.astype(np.int64), is_end


def _log_table(n: int) -> np.ndarray:
    """``ln k`` for k = 0..n (ln 0 = -inf is never read)."""
    with np.errstate(divide="ignore"):
        return np.log(np.arange(n + 1, dtype=np.float64))


def _kernel_fprs(fprs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR levels in increasing order for the kernels, and the order to undo it."""
    order = np.argsort(fprs, kind="stable")
    return np.ascontiguousarray(fprs[order]), np.argsort(order)


def _strict_fpr(compat) -> bool:
    """Whether ``compat`` asks for FPR < α (the reference LiRA code) instead of FPR <= α."""
    choice(compat, "compat", COMPAT_MODES)
    return compat == "carlini2022"


def _undefined_fprs(
    fprs: np.ndarray, n_neg: int, stacklevel: int = 3, strict: bool = False
) -> np.ndarray:
    """Mask of FPR levels below 1/n_negatives, warning once if any.

    With ``strict`` (``compat="carlini2022"``) nothing is undefined: the rule FPR < α always
    has the threshold above every score (FPR 0), so, as the reference code, the TPR there.
    """
    low = fprs < 1.0 / n_neg
    if strict:
        return np.zeros_like(low)
    if low.any():
        warnings.warn(
            f"fpr={fprs[low].tolist()} is below the resolvable floor 1/n_negatives = "
            f"{1.0 / n_neg:.3g} ({n_neg} non-members); TPR there is undefined and returned as NaN",
            UndefinedMetricWarning,
            stacklevel=stacklevel,
        )
    return low


def _layout(y_sorted: np.ndarray, is_end: np.ndarray) -> tuple[np.ndarray, ...]:
    """Tie groups holding a non-member, as the kernels take them (see :mod:`mis._kernels.roc`).

    ``y_sorted`` and ``is_end`` are in decreasing order of score. Returns, per
    such group in that order, ``neg_end`` (non-members in it or above),
    ``pos_lo`` (members strictly above it) and ``pos_hi`` (members in it or
    above), int32; and whether the layout is tie-free (one non-member per
    group, no member tied with one), which the kernels take a faster path for.
    """
    neg = np.cumsum(y_sorted == 0)[is_end]
    pos = np.cumsum(y_sorted == 1)[is_end]
    neg_before = np.concatenate([[0], neg[:-1]])
    pos_before = np.concatenate([[0], pos[:-1]])
    has_neg = neg > neg_before
    neg_end = neg[has_neg].astype(np.int32)
    pos_lo = pos_before[has_neg].astype(np.int32)
    pos_hi = pos[has_neg].astype(np.int32)
    simple = neg_end.shape[0] == neg[-1] and bool(np.array_equal(pos_lo, pos_hi))
    return neg_end, pos_lo, pos_hi, simple


def _check_size(n: int) -> None:
    if n >= 2**31:
        raise MisValueError(f"scores must have fewer than 2**31 entries; got {n}")


def _point_metrics(scores, labels, fprs, strict, fpr_min) -> np.ndarray:
    _check_size(scores.shape[0])
    order, is_end = _sort(scores)
    neg_end, pos_lo, pos_hi, simple = _layout(labels[order], is_end)
    n_pos = int(labels.sum())
    n_neg = labels.shape[0] - n_pos
    kfprs, undo = _kernel_fprs(fprs)
    out = np.empty(fprs.shape[0] + 2)
    _roc.roc_metrics(
        np.arange(n_neg + 1, dtype=np.int32),
        np.arange(n_pos + 1, dtype=np.int32),
        neg_end,
        pos_lo,
        pos_hi,
        neg_end.shape[0],
        simple,
        kfprs,
        strict,
        fpr_min,
        _log_table(n_neg),
        out,
    )
    out[: fprs.shape[0]] = out[: fprs.shape[0]][undo]
    return out


# --------------------------------------------------------------------------------------------
# point metrics
# --------------------------------------------------------------------------------------------
def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC curve, one point per distinct score.

    Parameters
    ----------
    scores : array_like of float, shape (n,)
        Membership scores, higher = more likely a member.
    labels : array_like of {0, 1} or bool, shape (n,)
        1 for members, 0 for non-members; both must occur.

    Returns
    -------
    fpr, tpr : ndarray of float64, shape (g + 1,)
        Rates at each threshold, starting at (0, 0); g is the number of
        distinct scores.
    thresholds : ndarray of float64, shape (g + 1,)
        ``thresholds[0] = inf``, then the distinct scores in decreasing order:
        point i counts the observations with ``score >= thresholds[i]``.
        Same as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    s, y = scores_and_labels(scores, labels)
    order, is_end = _sort(s)
    fps, tps, ends = _roc.roc_points(y[order].astype(np.int64), is_end)
    thresholds = np.concatenate([[np.inf], s[order[ends]]])
    return fps / fps[-1], tps / tps[-1], thresholds


def tpr_at_fpr(scores, labels, fpr=1e-3, *, compat=None):
    """True-positive rate at a false-positive rate α.

    Parameters
    ----------
    scores, labels : array_like, shape (n,)
        As in :func:`roc_curve`.
    fpr : float or sequence of float in (0, 1), default 1e-3
        The level(s) α.
    compat : {None, "carlini2022"}
        ``None``: the largest TPR over thresholds with FPR ≤ α.
        ``"carlini2022"``: FPR < α, as ``tpr[np.where(fpr < α)[0][-1]]`` in the
        reference LiRA code (Carlini et al. 2022, tensorflow/privacy
        ``research/mi_lira_2021/plot.py``).

    Returns
    -------
    float or ndarray
        A float for a scalar ``fpr``, an array for a sequence. NaN (with an
        :class:`~mis.exceptions.UndefinedMetricWarning`) where α < 1/n_negatives.
    """
    s, y = scores_and_labels(scores, labels)
    strict = _strict_fpr(compat)
    fprs = probability_in_open_unit(fpr, "fpr")
    out = _point_metrics(s, y, fprs, strict, DEFAULT_FPR_MIN)[: fprs.shape[0]]
    out[_undefined_fprs(fprs, int((y == 0).sum()), strict=strict)] = np.nan
    return float(out[0]) if np.ndim(fpr) == 0 else out


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve, = Mann–Whitney U / (n₁ n₀) with ties counted ½.

    Parameters
    ----------
    scores, labels : array_like, shape (n,)
        As in :func:`roc_curve`.
    """
    s, y = scores_and_labels(scores, labels)
    return float(_point_metrics(s, y, np.empty(0), False, DEFAULT_FPR_MIN)[0])


def log_roc_auc(scores, labels, *, fpr_min=DEFAULT_FPR_MIN) -> float:
    """Normalised area under the ROC curve on a logarithmic FPR axis ("log-AUROC").

    Definition::

        log_auc = 1 / ln(1 / fpr_min) * ∫_{fpr_min}^{1} TPR(f) d ln f

    i.e. the mean height of the ROC curve plotted against log10(FPR) over
    [log10 fpr_min, 0], where TPR(f) is the exact ROC curve of
    :func:`roc_curve` joined by straight lines in linear (FPR, TPR) space
    (the same curve whose area is the AUC). A perfect attack scores 1; a
    random one (TPR = FPR) scores (1 − fpr_min) / ln(1/fpr_min) ≈ 0.0869 for
    the default fpr_min = 1e-5. The weight 1/f emphasises low FPRs, the
    regime that matters for membership inference (Carlini et al. 2022); Zhang
    et al. 2025 report it as log-AUROC without a formula, so this is our
    precise reading. Below 1/n_negatives the curve is the straight segment
    from the origin (or from the TPR at FPR 0) to the first ROC point.

    Parameters
    ----------
    scores, labels : array_like, shape (n,)
        As in :func:`roc_curve`.
    fpr_min : float in (0, 1), default 1e-5
        Lower end of the integration range.
    """
    s, y = scores_and_labels(scores, labels)
    fpr_min = probability(fpr_min, "fpr_min")
    return float(_point_metrics(s, y, np.empty(0), False, fpr_min)[1])


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """A paired difference (A − B) with its confidence interval and two-sided p-value."""

    estimate: float
    low: float
    high: float
    pvalue: float


def _metric_names(fprs) -> list[str]:
    return [f"tpr@{f:g}fpr" for f in fprs] + ["auc", "log_auc"]


@dataclass(frozen=True)
class RocBootstrap:
    """Bootstrap confidence intervals for ROC metrics (result of :func:`bootstrap_roc`).

    Attributes
    ----------
    fprs : tuple of float
        The FPR levels of ``tpr``.
    tpr : tuple of Interval
        TPR at each level of ``fprs``.
    auc, log_auc : Interval
    confidence_level : float
    method : str
        ``"percentile"`` or ``"bca"``.
    n_resamples : int
    n_valid : int
        Resamples with a finite value of every metric (cluster resamples that
        drew only one class are dropped).
    replicates : ndarray, shape (n_resamples, len(fprs) + 2)
        The bootstrap distribution, columns as :meth:`names`.
    """

    fprs: tuple[float, ...]
    tpr: tuple[Interval, ...]
    auc: Interval
    log_auc: Interval
    confidence_level: float
    method: str
    n_resamples: int
    n_valid: int
    replicates: np.ndarray = field(repr=False, compare=False)

    def names(self) -> list[str]:
        """Metric names in column order of ``replicates``."""
        return _metric_names(self.fprs)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{metric name: {"estimate", "low", "high"}}``."""
        values = [*self.tpr, self.auc, self.log_auc]
        return {k: asdict(v) for k, v in zip(self.names(), values, strict=True)}


@dataclass(frozen=True)
class RocComparison:
    """Paired bootstrap comparison of two scorings (result of :func:`compare_roc`).

    ``tpr``, ``auc`` and ``log_auc`` hold the differences A − B with their
    confidence intervals and p-values; ``replicates`` has shape
    (n_resamples, len(fprs) + 2) and holds the bootstrap differences.
    """

    fprs: tuple[float, ...]
    tpr: tuple[Difference, ...]
    auc: Difference
    log_auc: Difference
    confidence_level: float
    method: str
    n_resamples: int
    n_valid: int
    replicates: np.ndarray = field(repr=False, compare=False)

    def names(self) -> list[str]:
        """Metric names in column order of ``replicates``."""
        return _metric_names(self.fprs)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{metric name: {"estimate", "low", "high", "pvalue"}}``."""
        values = [*self.tpr, self.auc, self.log_auc]
        return {k: asdict(v) for k, v in zip(self.names(), values, strict=True)}


@dataclass(frozen=True)
class _Prepared:
    """Validated inputs of a bootstrap, in the layout the kernels take (:mod:`mis._kernels.roc`).

    Row ``s`` of ``neg_end``/``pos_lo``/``pos_hi`` (padded to n0 columns,
    ``n_groups[s]`` valid) describes scoring ``s``, and ``simple[s]`` says
    whether it is tie-free; ``neg_perm[s][j]`` is the class rank, in scoring
    0's order, of the non-member ranked j-th in scoring ``s`` (``pos_perm``
    likewise for members). ``neg_obs``/``pos_obs`` are the original indices of
    the non-members/members in scoring 0's order, ``neg_clusters``/
    ``pos_clusters`` their clusters. Counts are int32, hence ``n < 2**31``.
    """

    neg_perm: np.ndarray
    pos_perm: np.ndarray
    neg_end: np.ndarray
    pos_lo: np.ndarray
    pos_hi: np.ndarray
    n_groups: np.ndarray
    simple: np.ndarray
    neg_obs: np.ndarray
    pos_obs: np.ndarray
    neg_clusters: np.ndarray
    pos_clusters: np.ndarray
    n_clusters: int
    fprs: np.ndarray
    kernel_fprs: np.ndarray
    undo_fprs: np.ndarray
    strict: bool
    fpr_min: float
    log_table: np.ndarray
    undefined: np.ndarray

    def layout(self) -> tuple:
        return (
            self.neg_perm,
            self.pos_perm,
            self.neg_end,
            self.pos_lo,
            self.pos_hi,
            self.n_groups,
            self.simple,
        )

    def kernel_args(self) -> tuple:
        return (self.kernel_fprs, self.strict, self.fpr_min, self.log_table)

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Put the TPR columns (last axis) back in the caller's FPR order."""
        k = self.fprs.shape[0]
        values[..., :k] = values[..., :k][..., self.undo_fprs]
        return values


def _prepare(scorings, labels, fprs, groups, compat, fpr_min) -> _Prepared:
    names = ["scores"] if len(scorings) == 1 else ["scores_a", "scores_b"]
    checked = [scores_and_labels(s, labels, name=n) for s, n in zip(scorings, names, strict=True)]
    y = checked[0][1]
    n = y.shape[0]
    _check_size(n)
    fprs = probability_in_open_unit(fprs, "fprs")
    kernel_fprs, undo = _kernel_fprs(fprs)
    strict = _strict_fpr(compat)
    fpr_min = probability(fpr_min, "fpr_min")
    n_neg = int((y == 0).sum())
    n_pos = n - n_neg
    # class rank of every observation in scoring 0's order
    rank0 = np.empty(n, dtype=np.int32)
    neg_obs = pos_obs = None
    neg_perm = np.empty((len(scorings), n_neg), dtype=np.int32)
    pos_perm = np.empty((len(scorings), n_pos), dtype=np.int32)
    neg_end = np.zeros((len(scorings), n_neg), dtype=np.int32)
    pos_lo = np.zeros((len(scorings), n_neg), dtype=np.int32)
    pos_hi = np.zeros((len(scorings), n_neg), dtype=np.int32)
    n_groups = np.empty(len(scorings), dtype=np.int64)
    simple = np.empty(len(scorings), dtype=np.bool_)
    for s, (scores, _) in enumerate(checked):
        order, is_end = _sort(scores)
        ys = y[order]
        negs = order[ys == 0]
        poss = order[ys == 1]
        if s == 0:
            neg_obs, pos_obs = negs, poss
            rank0[negs] = np.arange(n_neg)
            rank0[poss] = np.arange(n_pos)
        neg_perm[s] = rank0[negs]
        pos_perm[s] = rank0[poss]
        ends, lo, hi, simple[s] = _layout(ys, is_end)
        n_groups[s] = ends.shape[0]
        neg_end[s, : ends.shape[0]] = ends
        pos_lo[s, : ends.shape[0]] = lo
        pos_hi[s, : ends.shape[0]] = hi
    if groups is None:
        clusters = np.zeros(n, dtype=np.int32)
        n_clusters = 0
    else:
        g = np.asarray(groups)
        if g.ndim != 1 or g.shape[0] != n:
            raise MisValueError(
                f"groups must be 1-D with one entry per score ({n}); got shape {g.shape}"
            )
        _, inverse = np.unique(g, return_inverse=True)
        clusters = inverse.astype(np.int32)
        n_clusters = int(inverse.max()) + 1
        if n_clusters < 2:
            raise MisValueError(f"groups must contain at least 2 distinct groups; got {n_clusters}")
        largest = int(np.bincount(inverse).max())
        if n_clusters * largest >= 2**31:  # a resample's total weight must fit the int32 counts
            raise MisValueError(
                "groups must satisfy n_groups * (size of the largest group) < 2**31; got "
                f"{n_clusters} groups, the largest of {largest}"
            )
    return _Prepared(
        neg_perm=neg_perm,
        pos_perm=pos_perm,
        neg_end=neg_end,
        pos_lo=pos_lo,
        pos_hi=pos_hi,
        n_groups=n_groups,
        simple=simple,
        neg_obs=neg_obs,
        pos_obs=pos_obs,
        neg_clusters=clusters[neg_obs],
        pos_clusters=clusters[pos_obs],
        n_clusters=n_clusters,
        fprs=fprs,
        kernel_fprs=kernel_fprs,
        undo_fprs=undo,
        strict=strict,
        fpr_min=fpr_min,
        log_table=_log_table(n),
        undefined=_undefined_fprs(fprs, n_neg, stacklevel=5, strict=strict),
    )


def _point(p: _Prepared) -> np.ndarray:
    """Metrics of the data itself, shape (n_scorings, k + 2)."""
    n_scorings, n_neg = p.neg_perm.shape
    out = np.empty((n_scorings, p.fprs.shape[0] + 2))
    cn = np.arange(n_neg + 1, dtype=np.int32)
    cp = np.arange(p.pos_perm.shape[1] + 1, dtype=np.int32)
    for s in range(n_scorings):
        _roc.roc_metrics(
            cn,
            cp,
            p.neg_end[s],
            p.pos_lo[s],
            p.pos_hi[s],
            p.n_groups[s],
            p.simple[s],
            *p.kernel_args(),
            out[s],
        )
    return p.unsort(out)


def _replicates_from_seed(p: _Prepared, seed, n_resamples: int) -> np.ndarray:
    """Bootstrap replicates, shape (n_resamples, n_scorings, k + 2), of stream ``seed``."""
    reps = _roc.bootstrap_metrics(
        *p.layout(),
        p.neg_clusters,
        p.pos_clusters,
        p.n_clusters,
        *p.kernel_args(),
        np.uint64(seed),
        n_resamples,
    )
    return p.unsort(reps)


def _replicates(p: _Prepared, n_resamples: int, rng) -> np.ndarray:
    n_scorings = p.neg_perm.shape[0]
    check_memory(
        2 * n_resamples * n_scorings * (p.fprs.shape[0] + 2) * 8,
        f"n_resamples={n_resamples} bootstrap replicates",
    )
    seed = np.uint64(as_generator(rng).integers(0, 2**63, dtype=np.int64))
    return _replicates_from_seed(p, seed, n_resamples)


def _jackknife_acceleration(p: _Prepared, combine) -> np.ndarray:
    """BCa acceleration â per metric from a (blocked) jackknife.

    In stratified mode each class is a sample of its own and
    â = Σ_j Σ_i U_ji³ / n_j³ / (6 (Σ_j Σ_i U_ji² / n_j²)^{3/2}) with
    U_ji = (n_j − 1)(θ̄_j − θ_(ji)) (Efron & Tibshirani 1993, eq. 14.15,
    extended to several samples as in scipy.stats.bootstrap). Classes larger
    than 1000 are left out in 1000 random blocks (delete-d jackknife) to bound
    the cost at O(2000 n); in cluster mode the clusters are the blocks.
    """
    blockings = []
    if p.n_clusters:
        blockings.append((p.neg_clusters, p.pos_clusters, p.n_clusters))
    else:
        rng = np.random.default_rng(0)  # block assignment only; does not affect the resamples
        for size, other in (
            (p.neg_perm.shape[1], p.pos_perm.shape[1]),
            (p.pos_perm.shape[1], p.neg_perm.shape[1]),
        ):
            n_blocks = min(size, 1000)
            blocks = np.empty(size, dtype=np.int32)
            blocks[rng.permutation(size)] = np.arange(size) % n_blocks
            never = np.full(other, -1, dtype=np.int32)
            pair = (blocks, never) if len(blockings) == 0 else (never, blocks)
            blockings.append((*pair, n_blocks))
    num = 0.0
    den = 0.0
    for neg_blocks, pos_blocks, n_blocks in blockings:
        theta = combine(
            p.unsort(
                _roc.jackknife_metrics(
                    *p.layout(), neg_blocks, pos_blocks, n_blocks, *p.kernel_args()
                )
            )
        )
        with warnings.catch_warnings():  # an undefined metric is NaN in every block
            warnings.simplefilter("ignore", RuntimeWarning)
            u = (n_blocks - 1) * (np.nanmean(theta, axis=0) - theta)
        num = num + np.nansum(u**3, axis=0) / n_blocks**3
        den = den + np.nansum(u**2, axis=0) / n_blocks**2
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / (6.0 * den**1.5)


def _intervals(theta_hat, reps, confidence_level, method, accel) -> tuple[np.ndarray, np.ndarray]:
    """Percentile or BCa interval for each column of ``reps`` (NaN rows already removed)."""
    alpha = (1.0 - confidence_level) / 2.0
    m = reps.shape[1]
    low = np.full(m, np.nan)
    high = np.full(m, np.nan)
    for j in range(m):
        r = reps[:, j]
        if not np.isfinite(theta_hat[j]) or r.size == 0:
            continue
        q = np.array([alpha, 1.0 - alpha])
        if method == "bca":
            # Efron (1987); Efron & Tibshirani (1993) §14.3, eq. 14.10 and 14.14.
            frac = (np.sum(r < theta_hat[j]) + 0.5 * np.sum(r == theta_hat[j])) / r.size
            z0 = stats.norm.ppf(frac)
            a = accel[j] if np.isfinite(accel[j]) else 0.0
            if np.isfinite(z0):
                z = stats.norm.ppf(q)
                q = stats.norm.cdf(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
        low[j], high[j] = np.quantile(r, q)
    return low, high


def _finite_rows(reps: np.ndarray, undefined_cols: np.ndarray) -> np.ndarray:
    ok = np.isfinite(reps[:, ~undefined_cols]).all(axis=1)
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {reps.shape[0]} bootstrap resamples drew a single class and were dropped",
            UndefinedMetricWarning,
            stacklevel=4,
        )
    return reps[ok]


def _tail_pvalues(n_boot: int, z0: float, accel: float) -> np.ndarray:
    """Doubled one-sided p-values ``P[n]``, n = 0..B, for ``n`` replicates on the far side of 0.

    ``P[n] = 2 β((n + 1)/(B + 1))`` where β inverts the BCa level map
    ``α ↦ Φ(z0 + (z0 + z_α)/(1 − a (z0 + z_α)))`` (Efron & Tibshirani 1993, eq. 14.10; the
    identity for the percentile interval, z0 = a = 0, where ``P[n] = 2(n + 1)/(B + 1)``).
    Made non-decreasing in ``n`` (a running maximum) so that comparisons with a level are
    monotone; levels the BCa map cannot reach give 0 or 2.
    """
    t = (np.arange(n_boot + 1) + 1.0) / (n_boot + 1.0)
    if z0 == 0.0 and accel == 0.0:
        return 2.0 * t
    with np.errstate(divide="ignore", invalid="ignore"):
        v = stats.norm.ppf(t) - z0
        den = 1.0 + accel * v
        beta = stats.norm.cdf(v / den - z0)
    beta = np.where(den > 0, beta, np.where(v > 0, 1.0, 0.0))
    beta = np.where(np.isnan(beta), 1.0, beta)
    return np.maximum.accumulate(2.0 * beta)


def bootstrap_test(
    estimate, replicates, confidence_level=0.95, *, method="percentile", acceleration=0.0
) -> Difference:
    """Interval and two-sided p-value for H0: θ = 0 from one bootstrap distribution.

    The interval and the p-value are read off the same ordered replicates, so that

        the interval excludes 0  ⇔  p < 1 − confidence_level

    holds exactly, for every data set (a test asserts it). With the B finite-or-infinite
    replicates sorted, ``n≤`` of them ≤ 0 and ``n≥`` ≥ 0, and α = 1 − confidence_level:

    * percentile: ``p = min(1, 2 (1 + n≤)/(1 + B), 2 (1 + n≥)/(1 + B))`` (the +1 correction of
      Davison & Hinkley 1997, eq. 4.11); the lower bound is the j-th smallest replicate with
      j = #{n : 2(1 + n)/(1 + B) < α} (about (B + 1) α/2, the order statistic of Davison &
      Hinkley 1997, §5.2.1), the upper bound the j-th largest, and ±inf when j = 0 (too few
      replicates for the level);
    * BCa: the same with the tail shares mapped through the inverse of the BCa level map
      (bias correction z0 from the share of replicates below the estimate, the given
      acceleration; Efron & Tibshirani 1993, §14.3), i.e. p is the smallest α at which the
      BCa interval excludes 0, and the bounds are the order statistics of the BCa levels.

    Parameters
    ----------
    estimate : float
        The point estimate θ̂ (returned as is; used by BCa only).
    replicates : array_like, shape (B,)
        Bootstrap replicates θ*; NaN entries are dropped, ±inf kept.
    confidence_level : float, default 0.95
    method : {"percentile", "bca"}
    acceleration : float, default 0
        BCa acceleration â (e.g. from a jackknife); a non-finite value counts as 0.

    Returns
    -------
    Difference
        ``(estimate, low, high, pvalue)``; NaN bounds and p-value without replicates.
    """
    probability(confidence_level, "confidence_level")
    choice(method, "method", CI_METHODS)
    r = np.sort(np.asarray(replicates, dtype=np.float64).ravel())
    r = r[~np.isnan(r)]
    est = float(estimate)
    b = r.size
    if b == 0:
        return Difference(est, math.nan, math.nan, math.nan)
    alpha = 1.0 - confidence_level
    z0 = a = 0.0
    if method == "bca" and math.isfinite(est):
        frac = (np.sum(r < est) + 0.5 * np.sum(r == est)) / b
        z0 = float(stats.norm.ppf(frac))
        a = float(acceleration) if math.isfinite(acceleration) else 0.0
        if not math.isfinite(z0):
            z0 = a = 0.0  # all replicates on one side of the estimate: percentile
    n_le = int(np.searchsorted(r, 0.0, side="right"))
    n_ge = b - int(np.searchsorted(r, 0.0, side="left"))
    p_low = _tail_pvalues(b, z0, a)
    p_high = p_low if z0 == 0.0 and a == 0.0 else _tail_pvalues(b, -z0, -a)
    j_low = int(np.sum(p_low < alpha))
    j_high = int(np.sum(p_high < alpha))
    low = float(r[j_low - 1]) if j_low else -math.inf
    high = float(r[b - j_high]) if j_high else math.inf
    p = min(1.0, float(p_low[n_le]), float(p_high[n_ge]))
    return Difference(est, low, high, p)


def _check_bootstrap_args(n_resamples, confidence_level, method) -> int:
    """Check the bootstrap options; return ``n_resamples`` as an int."""
    n_resamples = positive_int(n_resamples, "n_resamples")
    if n_resamples > MAX_RESAMPLES:
        raise ResourceLimitError(
            f"n_resamples must be at most {MAX_RESAMPLES:,} (mis.metrics.MAX_RESAMPLES); "
            f"got {n_resamples:,}"
        )
    probability(confidence_level, "confidence_level")
    choice(method, "method", CI_METHODS)
    return n_resamples


def bootstrap_roc(
    scores,
    labels,
    *,
    fprs=(1e-3, 1e-2),
    n_resamples=1000,
    confidence_level=0.95,
    method="percentile",
    groups=None,
    rng=None,
    compat=None,
    fpr_min=DEFAULT_FPR_MIN,
) -> RocBootstrap:
    """Bootstrap confidence intervals for TPR@FPR, AUC and log-AUC.

    Members and non-members are resampled separately, each to its own size
    (the class sizes are fixed by design in a membership experiment). With
    ``groups`` the resampling unit is the group instead (a cluster bootstrap,
    e.g. over target models when scores of several targets are pooled).

    Parameters
    ----------
    scores, labels : array_like, shape (n,)
        As in :func:`roc_curve`.
    fprs : float or sequence of float in (0, 1), default (1e-3, 1e-2)
        FPR levels for the TPRs.
    n_resamples : int, default 1000
    confidence_level : float, default 0.95
    method : {"percentile", "bca"}
        Percentile interval, or bias-corrected and accelerated (Efron 1987),
        whose acceleration comes from a (blocked) jackknife.
    groups : array_like, shape (n,), optional
        Cluster labels for a cluster bootstrap.
    rng : None, int or numpy.random.Generator
        Same seed ⇒ bit-identical result on the CPU, whatever the thread count.
    compat : {None, "carlini2022"}
        TPR@FPR convention, as in :func:`tpr_at_fpr`.
    fpr_min : float, default 1e-5
        Lower end of the log-AUC, as in :func:`log_roc_auc`.

    Returns
    -------
    RocBootstrap

    Notes
    -----
    Each resample is a vector of counts over the original observations drawn
    by a counter-based generator keyed by (seed, resample index); the ROC of a
    resample is computed from those counts over the single sort of the data,
    in O(n). A point estimate that is NaN (FPR below 1/n_negatives) gets a NaN
    interval. Percentile intervals are not guaranteed to contain the point
    estimate for very small or very discrete samples.
    """
    n_resamples = _check_bootstrap_args(n_resamples, confidence_level, method)
    p = _prepare([scores], labels, fprs, groups, compat, fpr_min)
    theta = _point(p)[0]
    theta[: p.fprs.shape[0]][p.undefined] = np.nan
    reps_all = _replicates(p, n_resamples, rng)[:, 0, :]
    cols_undefined = np.concatenate([p.undefined, [False, False]])
    reps_all[:, cols_undefined] = np.nan
    reps = _finite_rows(reps_all, cols_undefined)
    accel = _jackknife_acceleration(p, lambda t: t[:, 0, :]) if method == "bca" else None
    low, high = _intervals(theta, reps, confidence_level, method, accel)
    iv = [
        Interval(float(t), float(lo), float(hi)) for t, lo, hi in zip(theta, low, high, strict=True)
    ]
    k = p.fprs.shape[0]
    reps_all.setflags(write=False)
    return RocBootstrap(
        fprs=tuple(float(f) for f in p.fprs),
        tpr=tuple(iv[:k]),
        auc=iv[k],
        log_auc=iv[k + 1],
        confidence_level=float(confidence_level),
        method=method,
        n_resamples=n_resamples,
        n_valid=int(reps.shape[0]),
        replicates=reps_all,
    )


def compare_roc(
    scores_a,
    scores_b,
    labels,
    *,
    fprs=(1e-3, 1e-2),
    n_resamples=1000,
    confidence_level=0.95,
    method="percentile",
    groups=None,
    rng=None,
    compat=None,
    fpr_min=DEFAULT_FPR_MIN,
) -> RocComparison:
    """Paired bootstrap of the difference A − B between two scorings of the same examples.

    Both scorings are evaluated on the same resampled examples (e.g. the same
    members and non-members attacked on a full-precision and on a quantized
    model), so their correlation is kept and the difference is tested fairly.

    Parameters
    ----------
    scores_a, scores_b : array_like, shape (n,)
        Two scorings of the same examples.
    labels : array_like, shape (n,)
    fprs, n_resamples, confidence_level, method, groups, rng, compat, fpr_min
        As in :func:`bootstrap_roc`.

    Returns
    -------
    RocComparison
        For each metric: the difference, its CI and a two-sided p-value, both from the
        bootstrap distribution of the paired difference by :func:`bootstrap_test`, so
        that the interval excludes 0 exactly when ``p < 1 − confidence_level``
        (percentile: ``p = min(1, 2 (1 + #{Δ* ≤ 0})/(1 + B), 2 (1 + #{Δ* ≥ 0})/(1 + B))``;
        BCa: its inversion). Comparisons of one family (several quantizers against one
        reference) are corrected with :func:`holm` by the caller.
    """
    n_resamples = _check_bootstrap_args(n_resamples, confidence_level, method)
    p = _prepare([scores_a, scores_b], labels, fprs, groups, compat, fpr_min)
    point = _point(p)
    delta = point[0] - point[1]
    k = p.fprs.shape[0]
    delta[:k][p.undefined] = np.nan
    reps_pair = _replicates(p, n_resamples, rng)
    reps_all = reps_pair[:, 0, :] - reps_pair[:, 1, :]
    cols_undefined = np.concatenate([p.undefined, [False, False]])
    reps_all[:, cols_undefined] = np.nan
    reps = _finite_rows(reps_all, cols_undefined)
    accel = (
        _jackknife_acceleration(p, lambda t: t[:, 0, :] - t[:, 1, :]) if method == "bca" else None
    )
    diffs = []
    for j, d in enumerate(delta):
        if not np.isfinite(d):
            diffs.append(Difference(float(d), math.nan, math.nan, math.nan))
            continue
        a = float(accel[j]) if accel is not None else 0.0
        diffs.append(bootstrap_test(d, reps[:, j], confidence_level, method=method, acceleration=a))
    reps_all.setflags(write=False)
    return RocComparison(
        fprs=tuple(float(f) for f in p.fprs),
        tpr=tuple(diffs[:k]),
        auc=diffs[k],
        log_auc=diffs[k + 1],
        confidence_level=float(confidence_level),
        method=method,
        n_resamples=n_resamples,
        n_valid=int(reps.shape[0]),
        replicates=reps_all,
    )


# --------------------------------------------------------------------------------------------
# summaries over independent replicates and multiple testing
# --------------------------------------------------------------------------------------------
def t_interval(values, confidence_level: float = 0.95) -> dict:
    """Mean, standard deviation and Student-t confidence interval of the finite values.

    For the ``n`` finite entries of ``values`` (NaN and ±inf are left out), with mean
    ``m`` and standard deviation ``sd`` (ddof 1), the interval is

        m ± t_{(1 + c)/2, n − 1} · sd / √n

    (``c`` = ``confidence_level``): the usual interval for the mean of independent
    replicates, e.g. a metric over target models trained with different seeds ("mean
    over 10 seeds" in Zhang et al. 2025). It assumes roughly normal replicates; with few
    of them it is only as good as that assumption.

    Parameters
    ----------
    values : array_like of float, shape (n_values,)
        One value per independent replicate; non-finite values are ignored.
    confidence_level : float, default 0.95
        Coverage ``c`` of the interval, in (0, 1).

    Returns
    -------
    dict
        ``{"mean", "sd", "low", "high", "n"}``: plain floats and the int ``n``, the number
        of finite values. With ``n == 0`` every float is NaN; with ``n == 1`` the mean is
        the value and ``sd``, ``low``, ``high`` are NaN.
    """
    probability(confidence_level, "confidence_level")
    v = real_array(values, "values").ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "sd": math.nan, "low": math.nan, "high": math.nan, "n": n}
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence_level) / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n": n}


def holm(pvalues, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values and rejections at family-wise level ``alpha``.

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= … <= p_(m)``, the adjusted
    values are (1-based)

        p̃_(i) = min(1, max_{j <= i} (m − j + 1) · p_(j))

    and hypothesis ``(i)`` is rejected when ``p̃_(i) <= alpha``. This controls the
    family-wise error rate at ``alpha`` under any dependence between the tests (Holm 1979,
    *A simple sequentially rejective multiple test procedure*, Scand. J. Statist. 6,
    65–70). The numbers are those of
    ``statsmodels.stats.multitest.multipletests(p, alpha, method="holm")`` (checked in
    the tests); they are computed here because that function calls ``gc.collect()`` on
    every call, a third of a second each in a process holding torch.

    Parameters
    ----------
    pvalues : array_like of float, shape (n_tests,)
        One p-value per test of the family. NaN marks an undefined test: it stays NaN,
        is never rejected and does not count in ``m``.
    alpha : float
        Family-wise level.

    Returns
    -------
    adjusted : ndarray of float64, shape (n_tests,)
        Holm-adjusted p-values, in the input order (NaN where the input is NaN).
    reject : ndarray of bool, shape (n_tests,)
        Whether each hypothesis is rejected at family-wise level ``alpha``.
    """
    probability(alpha, "alpha")
    p = real_array(pvalues, "pvalues", ndim=1)
    if ((p < 0) | (p > 1)).any():
        raise MisValueError(
            f"pvalues must lie in [0, 1] (or be NaN); got {p[(p < 0) | (p > 1)][:3]}"
        )
    adj = np.full(p.shape, np.nan)
    rej = np.zeros(p.shape, dtype=bool)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        a = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
        adj[order] = a
        rej[order] = a <= alpha
    return adj, rej


@dataclass(frozen=True)
class RocBand:
    """A ROC curve with a pointwise bootstrap band on a log-spaced FPR grid (:func:`roc_band`).

    Attributes
    ----------
    fpr : ndarray, shape (n_points,)
        The FPR grid, from just above the resolvable floor 1/n_non-members to 0.99.
    tpr, low, high : ndarray, shape (n_points,)
        TPR@FPR (largest TPR with FPR ≤ the grid value) and its percentile interval.
    confidence_level : float
    n_resamples : int
    """

    fpr: np.ndarray
    tpr: np.ndarray
    low: np.ndarray
    high: np.ndarray
    confidence_level: float
    n_resamples: int


def roc_band(
    scores,
    labels,
    *,
    n_points: int = 40,
    n_resamples: int = 200,
    confidence_level: float = 0.95,
    groups=None,
    rng=None,
) -> RocBand:
    """The ROC curve of a scoring at log-spaced FPRs with pointwise bootstrap intervals.

    The grid runs from ``1.0001 / n_non-members`` (the lowest FPR a threshold can resolve)
    to 0.99 in ``n_points`` log-spaced steps; at each point the TPR and its percentile
    interval come from :func:`bootstrap_roc` (members and non-members resampled separately,
    or whole clusters with ``groups``). The band is pointwise: it covers each TPR@FPR
    separately at ``confidence_level``, not the whole curve at once.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Membership scores (higher = member).
    labels : array_like, shape (n,)
        1 = member, 0 = non-member.
    n_points : int, default 40
    n_resamples : int, default 200
    confidence_level : float, default 0.95
    groups : array_like, shape (n,), optional
        Cluster ids for a cluster bootstrap (as :func:`bootstrap_roc`).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    RocBand
    """
    integer(n_points, "n_points", 2)
    _, y = scores_and_labels(scores, labels)
    n_neg = int((y == 0).sum())
    if n_neg < 2:
        raise MisValueError(f"labels must hold at least 2 non-members for a ROC band; got {n_neg}")
    grid = np.logspace(math.log10(1.0001 / n_neg), math.log10(0.99), n_points)
    res = bootstrap_roc(
        scores,
        labels,
        fprs=grid,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        groups=groups,
        rng=rng,
    )
    return RocBand(
        fpr=grid,
        tpr=np.array([iv.estimate for iv in res.tpr]),
        low=np.array([iv.low for iv in res.tpr]),
        high=np.array([iv.high for iv in res.tpr]),
        confidence_level=float(confidence_level),
        n_resamples=int(res.n_resamples),
    )
