"""Ranking quantizers by privacy, with the uncertainty that comes from the runs.

Every function takes per-run values, shape (n_runs, n_quantizers): typically
``rq_batch(...)`` (one r_Q per training run and quantizer), or per-run MIS
estimates (``DiscriminatorMIS.per_run_mis``). The runs are the independent units, so
every interval here is a bootstrap over runs. Higher values mean more private
(rank 1 = most private), as for r_Q and the MIS.

Infinite values. r_Q is +inf when a run's trajectory has a single distinct
quantized point (see :func:`mis.security.rq`); other measures never are. Two
policies, chosen with ``inf_policy``:

* ``"propagate"`` (default): +inf is a value like any other. A mean over runs is
  +inf as soon as one run is +inf; a median only when at least half are. In a
  ranking, +inf is the largest value and equal values tie (average ranks for
  correlations; random tie-breaking for the rank-frequency matrices of
  :func:`rank_stability`). A difference +inf − (+inf) counts as 0 (a tie).
* ``"omit"``: +inf runs are left out of that quantizer's mean or median (the
  count is reported); a quantizer whose runs are all +inf keeps +inf.

NaN and −inf are invalid input.

References: Aubinais et al. (2025), §5.1 and Fig. 1 (rank stability over random
subsets of runs), Fig. 2 (Spearman correlation between r_Q and the MIS);
Efron & Tibshirani (1993) §13 (percentile bootstrap), §16.4 (bootstrap tests);
Kendall (1938) and Kendall (1945) for τ_b; exact permutation p-values:
Pitman (1937).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from mis._kernels import rq as _k
from mis._validation import (
    as_generator,
    boolean,
    check_memory,
    choice,
    draw_seed,
    integer,
    positive_int,
    probability,
)
from mis.exceptions import MisValueError, ResourceLimitError, UndefinedMetricWarning
from mis.metrics import Difference, Interval, bootstrap_test, holm

__all__ = [
    "AdjacentComparison",
    "PooledStability",
    "QuantizerRanking",
    "RankAgreement",
    "RankStability",
    "pooled_rank_stability",
    "rank_agreement",
    "rank_quantizers",
    "rank_stability",
]

STATISTICS = ("mean", "median")
INF_POLICIES = ("propagate", "omit")
EXACT_MAX_QUANTIZERS = 10  # 10! = 3,628,800 permutations, under a second
_BOOT_CHUNK_ELEMENTS = 4_000_000  # resamples × runs × quantizers held at once
#: Ceilings on the work of rank_quantizers (bootstrap resamples) and rank_stability (subsets
#: per size); the memory they need is checked against the machine's too.
MAX_RESAMPLES = 10_000_000
MAX_SUBSETS = 1_000_000
#: Ceiling on the random permutations of :func:`rank_agreement`'s Monte Carlo test.
MAX_PERMUTATIONS = 100_000_000
#: Ceiling on the subset draws of a stability analysis with its bootstrap intervals.
MAX_STABILITY_DRAWS = 20_000_000


# --------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------
def _check_ranking_input(rq_values, names) -> None:
    """Checks of rank_quantizers / rank_stability beyond the shapes: r_Q (and the MIS) are
    never negative, and names are distinct strings."""
    arr = np.asarray(rq_values)
    if arr.dtype.kind in "iuf" and arr.size and (arr < 0).any():
        i = tuple(int(v[0]) for v in np.nonzero(arr < 0))
        raise MisValueError(
            f"rq_values must be >= 0 (r_Q and the MIS are never negative); found {arr[i]} at "
            f"{i} ({int((arr < 0).sum())} negative values)"
        )
    if names is not None:
        if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
            raise MisValueError(f"names must be a sequence of strings; got {names!r:.60}")
        names = list(names)
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise MisValueError(f"names must be strings; got {bad[0]!r}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MisValueError(f"names must be distinct; {dup} repeat")


def _check_work(count, name: str, ceiling: int, nbytes_each: int) -> int:
    """``count`` as a positive int within ``ceiling``, whose memory fits the machine."""
    count = positive_int(count, name)
    if count > ceiling:
        raise ResourceLimitError(f"{name} must be at most {ceiling:,}; got {count:,}")
    check_memory(count * nbytes_each, f"{name}={count:,}")
    return count


def _check_stability_work(n_subsets: int, n_resamples: int, n_sizes: int) -> None:
    """Bound the subset draws of a stability analysis: every size, every subset, and again
    for every bootstrap resample of the runs."""
    draws = n_subsets * (1 + n_resamples) * n_sizes
    if draws > MAX_STABILITY_DRAWS:
        raise ResourceLimitError(
            f"n_subsets × (1 + n_resamples) × len(k_runs) = {draws:,} subset draws; the "
            f"ceiling is {MAX_STABILITY_DRAWS:,}: lower n_subsets or n_resamples"
        )


def _check_values(values, name: str, allow_1d: bool = False) -> np.ndarray:
    arr = np.asarray(values)
    shapes = "(n_runs, n_quantizers)" + (" or (n_quantizers,)" if allow_1d else "")
    if arr.ndim != 2 and not (allow_1d and arr.ndim == 1):
        raise MisValueError(f"{name} must have shape {shapes}; got an array of shape {arr.shape}")
    if arr.size == 0:
        raise MisValueError(f"{name} must not be empty; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MisValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if np.isnan(arr).any():
        raise MisValueError(f"{name} must not contain NaN; found {int(np.isnan(arr).sum())}")
    if (arr == -np.inf).any():
        raise MisValueError(f"{name} must not contain -inf (only +inf, e.g. an r_Q with one point)")
    return arr


def _check_common(statistic, inf_policy, confidence_level=None) -> None:
    choice(statistic, "statistic", STATISTICS)
    choice(inf_policy, "inf_policy", INF_POLICIES)
    if confidence_level is not None:
        probability(confidence_level, "confidence_level")


def _check_names(names, n: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"q{j}" for j in range(n))
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise MisValueError(f"names must have one entry per quantizer ({n}); got {len(names)}")
    return names


def _summarise(v: np.ndarray, statistic: str, inf_policy: str) -> np.ndarray:
    """Mean or median over the runs axis (-2) of ``v`` (..., n_runs, n_quantizers)."""
    if inf_policy == "propagate":
        return v.mean(axis=-2) if statistic == "mean" else np.median(v, axis=-2)
    w = np.where(np.isinf(v), np.nan, v)
    all_inf = np.isnan(w).all(axis=-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-inf columns: handled below
        out = np.nanmean(w, axis=-2) if statistic == "mean" else np.nanmedian(w, axis=-2)
    return np.where(all_inf, np.inf, out)


def _bootstrap_summaries(
    v: np.ndarray, n_resamples: int, gen: np.random.Generator, statistics, inf_policy: str
) -> list[np.ndarray]:
    """Summaries of ``n_resamples`` resamples of the runs; one (B, n_quantizers) per statistic.

    The run indices of every resample are drawn first, in one call, so the
    result does not depend on the chunking.
    """
    n_runs, n_q = v.shape
    idx = gen.integers(0, n_runs, size=(n_resamples, n_runs))
    outs = [np.empty((n_resamples, n_q)) for _ in statistics]
    step = max(1, _BOOT_CHUNK_ELEMENTS // (n_runs * n_q))
    for b0 in range(0, n_resamples, step):
        block = v[idx[b0 : b0 + step]]  # (b, n_runs, n_q)
        for out, stat in zip(outs, statistics, strict=True):
            out[b0 : b0 + step] = _summarise(block, stat, inf_policy)
    return outs


def _quantile(sorted_r: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of sorted values that may hold +inf."""
    h = (sorted_r.size - 1) * q
    i = math.floor(h)
    frac = h - i
    a = float(sorted_r[i])
    if frac == 0.0 or i + 1 >= sorted_r.size:
        return a
    b = float(sorted_r[i + 1])
    if math.isinf(b):
        return math.inf  # a < inf = b and frac > 0, or both +inf
    return a + frac * (b - a)


def _percentile(reps: np.ndarray, confidence_level: float) -> tuple[float, float]:
    """Percentile interval of 1-D replicates that may hold +inf (NaN replicates dropped)."""
    reps = np.sort(reps[~np.isnan(reps)])
    if reps.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence_level) / 2.0
    return _quantile(reps, alpha), _quantile(reps, 1.0 - alpha)


def _diff(a, b):
    """a − b with +inf − (+inf) = 0 (a tie)."""
    with np.errstate(invalid="ignore"):
        d = np.subtract(a, b)
    return np.where(np.isinf(a) & np.isinf(b), 0.0, d)


def _ranks_desc(s: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, 1 = largest value."""
    return stats.rankdata(-s, method="average", axis=-1)


def _order_desc(s: np.ndarray) -> np.ndarray:
    """Indices from largest to smallest value; ties by index."""
    return np.lexsort((np.arange(s.shape[-1]), -s))


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ (average ranks) between matching rows of ``a`` and ``b``; NaN if constant."""
    ra = stats.rankdata(a, axis=-1)
    rb = stats.rankdata(b, axis=-1)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _signs(a: np.ndarray) -> np.ndarray:
    """sign(a_i − a_j) along the last axis, shape (..., q, q); correct for +inf."""
    x = a[..., :, None]
    y = a[..., None, :]
    return (x > y).astype(np.float64) - (x < y).astype(np.float64)


def _kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall τ_b between matching rows; NaN if one row is constant."""
    sa = _signs(a)
    sb = _signs(b)
    num = (sa * sb).sum(axis=(-2, -1))
    den = np.sqrt((sa * sa).sum(axis=(-2, -1)) * (sb * sb).sum(axis=(-2, -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# --------------------------------------------------------------------------------------------
# rank_quantizers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdjacentComparison:
    """Two quantizers adjacent in a ranking: is the higher one significantly more private?

    ``difference`` is statistic(higher) − statistic(lower) with its paired bootstrap
    percentile interval and two-sided p-value (:func:`mis.metrics.bootstrap_test`: the
    interval excludes 0 exactly when ``p < 1 − confidence_level``); ``significant`` says so.
    ``pvalue_holm`` is Holm's adjustment over the n_quantizers − 1 adjacent comparisons of
    the ranking and ``significant_holm`` whether it is below 1 − confidence_level (the
    family-wise error of all the adjacent claims of one ranking is then controlled).
    """

    higher: str
    lower: str
    difference: Difference
    significant: bool
    pvalue_holm: float = math.nan
    significant_holm: bool = False


@dataclass(frozen=True)
class QuantizerRanking:
    """Quantizers ranked by privacy (result of :func:`rank_quantizers`).

    Attributes
    ----------
    names : tuple of str
        Quantizer names, input order.
    statistic : str
        The summary that ranks: ``"mean"`` or ``"median"`` over runs.
    inf_policy : str
    mean, median : tuple of Interval
        Per quantizer (input order), with bootstrap-over-runs percentile intervals.
    n_inf : tuple of int
        Runs with a value of +inf, per quantizer.
    ranks : tuple of float
        Rank of each quantizer (input order), 1 = most private; ties share the
        average rank.
    order : tuple of int
        Quantizer indices from most to least private (ties: input order).
    adjacent : tuple of AdjacentComparison
        One per consecutive pair of ``order``.
    tie_groups : tuple of tuple of str
        The ranking cut where an adjacent comparison is significant after Holm's
        correction, most private group first: quantizers in one group cannot be told apart
        at the stated level (a chain: A ~ B and B ~ C put A, B and C in one group even if
        A and C alone would separate).
    confidence_level : float
    n_resamples, n_runs : int
    replicates : ndarray, shape (n_resamples, n_quantizers)
        Bootstrap distribution of the ranking statistic.
    """

    names: tuple[str, ...]
    statistic: str
    inf_policy: str
    mean: tuple[Interval, ...]
    median: tuple[Interval, ...]
    n_inf: tuple[int, ...]
    ranks: tuple[float, ...]
    order: tuple[int, ...]
    adjacent: tuple[AdjacentComparison, ...]
    confidence_level: float
    n_resamples: int
    n_runs: int
    replicates: np.ndarray = field(repr=False, compare=False)
    tie_groups: tuple[tuple[str, ...], ...] = ()

    def ranked_names(self) -> list[str]:
        """Names from most to least private."""
        return [self.names[j] for j in self.order]

    def group_of(self, name: str) -> int:
        """Index of the tie group holding ``name`` (0 = the most private group)."""
        for i, g in enumerate(self.tie_groups):
            if name in g:
                return i
        raise MisValueError(f"name must be one of {list(self.names)}; got {name!r}")

    def table(self) -> list[dict]:
        """One row per quantizer, most private first (for tables and JSON)."""
        rows = []
        for j in self.order:
            rows.append(
                {
                    "name": self.names[j],
                    "rank": self.ranks[j],
                    "mean": asdict(self.mean[j]),
                    "median": asdict(self.median[j]),
                    "n_inf": self.n_inf[j],
                }
            )
        return rows


def rank_quantizers(
    rq_values,
    names=None,
    *,
    statistic: str = "mean",
    inf_policy: str = "propagate",
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    rng=None,
) -> QuantizerRanking:
    """Rank quantizers by mean (or median) r_Q over runs, with bootstrap-over-runs intervals.

    Parameters
    ----------
    rq_values : array_like, shape (n_runs, n_quantizers)
        One value per run and quantizer (e.g. :func:`~mis.security.rq_batch`);
        higher = more private. +inf allowed (see the module docstring).
    names : sequence of str, optional
        Quantizer names (default ``q0, q1, ...``).
    statistic : {"mean", "median"}
        The summary over runs that ranks (Aubinais et al. rank by the mean).
    inf_policy : {"propagate", "omit"}
        How +inf values enter means and medians (module docstring).
    n_resamples : int, default 2000
        Bootstrap resamples of the runs (with replacement).
    confidence_level : float, default 0.95
    rng : int, Generator or None

    Returns
    -------
    QuantizerRanking
        For each pair of quantizers adjacent in the ranking, the paired
        bootstrap difference of the statistic (both computed on the same
        resampled runs) with its percentile interval and two-sided p-value from
        the same replicates (:func:`mis.metrics.bootstrap_test`:
        ``p = min(1, 2 (1 + #{Δ* ≤ 0})/(1 + B), 2 (1 + #{Δ* ≥ 0})/(1 + B))``, and the
        interval excludes 0 exactly when p < 1 − confidence_level), Holm's adjustment
        over the adjacent comparisons, and the tie groups it implies.
    """
    _check_common(statistic, inf_policy, probability(confidence_level, "confidence_level"))
    v = _check_values(rq_values, "rq_values")
    _check_ranking_input(v, names)
    n_runs, n_q = v.shape
    if n_runs < 2:
        raise MisValueError(f"rq_values must hold at least 2 runs to bootstrap; got {n_runs}")
    names = _check_names(names, n_q)
    n_resamples = _check_work(n_resamples, "n_resamples", MAX_RESAMPLES, 8 * (n_runs + 3 * n_q))
    gen = as_generator(rng)
    level = float(confidence_level)

    point = {s: _summarise(v, s, inf_policy) for s in STATISTICS}
    reps = dict(
        zip(
            STATISTICS,
            _bootstrap_summaries(v, n_resamples, gen, STATISTICS, inf_policy),
            strict=True,
        )
    )
    intervals = {
        s: tuple(
            Interval(float(point[s][j]), *_percentile(reps[s][:, j], level)) for j in range(n_q)
        )
        for s in STATISTICS
    }
    stat, rep = point[statistic], reps[statistic]
    order = _order_desc(stat)
    tests = [
        bootstrap_test(float(_diff(stat[a], stat[b])), _diff(rep[:, a], rep[:, b]), level)
        for a, b in itertools.pairwise(order)
    ]
    alpha = 1.0 - level
    p_holm, _ = holm([t.pvalue for t in tests], alpha)
    adjacent = []
    groups, current = [], [names[order[0]]]
    for (a, b), t, ph in zip(itertools.pairwise(order), tests, p_holm, strict=True):
        sig_holm = bool(ph < alpha)
        adjacent.append(
            AdjacentComparison(
                higher=names[a],
                lower=names[b],
                difference=t,
                significant=bool(t.pvalue < alpha),
                pvalue_holm=float(ph),
                significant_holm=sig_holm,
            )
        )
        if sig_holm:
            groups.append(tuple(current))
            current = []
        current.append(names[b])
    groups.append(tuple(current))
    rep.setflags(write=False)
    return QuantizerRanking(
        names=names,
        statistic=statistic,
        inf_policy=inf_policy,
        mean=intervals["mean"],
        median=intervals["median"],
        n_inf=tuple(int(c) for c in np.isinf(v).sum(axis=0)),
        ranks=tuple(float(r) for r in _ranks_desc(stat)),
        order=tuple(int(j) for j in order),
        adjacent=tuple(adjacent),
        confidence_level=level,
        n_resamples=n_resamples,
        n_runs=n_runs,
        replicates=rep,
        tie_groups=tuple(groups),
    )


# --------------------------------------------------------------------------------------------
# rank_stability (Fig. 1)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankStability:
    """How stable the ranking is over random subsets of runs (result of :func:`rank_stability`).

    Attributes
    ----------
    names : tuple of str
    k_runs : tuple of int
        Subset sizes.
    n_subsets : int
    reference_ranks : ndarray, shape (n_quantizers,)
        Average ranks over all runs (1 = most private).
    reference_order : ndarray of int, shape (n_quantizers,)
        Quantizers from most to least private over all runs.
    frequencies : ndarray, shape (len(k_runs), n_quantizers, n_quantizers)
        ``frequencies[i, q, r]``: share of the subsets of ``k_runs[i]`` runs in
        which quantizer ``q`` (input order) is ranked ``r + 1`` (ties broken at
        random, so each subset gives a permutation and every row and column
        sums to 1). These are the pie charts of Fig. 1.
    spearman : ndarray, shape (len(k_runs), n_subsets)
        Spearman ρ between each subset's statistic and the all-runs statistic
        (NaN when a subset's statistic is constant across quantizers). The all-runs
        ranking contains the subset's runs, so this overstates how well k runs predict
        the ranking of new runs (more so as k approaches n_runs).
    spearman_disjoint : ndarray, shape (len(k_runs), n_subsets)
        Spearman ρ between the same subset's statistic and that of the *other*
        n_runs − k runs (disjoint halves: not optimistic; NaN when k = n_runs).
    spearman_ci, spearman_disjoint_ci : ndarray, shape (len(k_runs), 2)
        Basic bootstrap intervals of the mean ρ per subset size, resampling the runs (each
        resample redraws the subsets); NaN without resamples.
    n_resamples : int
    confidence_level : float
    """

    names: tuple[str, ...]
    k_runs: tuple[int, ...]
    n_subsets: int
    statistic: str
    inf_policy: str
    reference_ranks: np.ndarray = field(compare=False)
    reference_order: np.ndarray = field(compare=False)
    frequencies: np.ndarray = field(repr=False, compare=False)
    spearman: np.ndarray = field(repr=False, compare=False)
    spearman_disjoint: np.ndarray = field(default=None, repr=False, compare=False)
    spearman_ci: np.ndarray = field(default=None, repr=False, compare=False)
    spearman_disjoint_ci: np.ndarray = field(default=None, repr=False, compare=False)
    n_resamples: int = 0
    confidence_level: float = 0.95

    @property
    def spearman_mean(self) -> np.ndarray:
        """Mean Spearman ρ per subset size (the top panel of Fig. 1), NaNs ignored."""
        return _nanmean_rows(self.spearman)

    @property
    def spearman_disjoint_mean(self) -> np.ndarray:
        """Mean Spearman ρ per subset size against the other runs, NaNs ignored."""
        return _nanmean_rows(self.spearman_disjoint)

    @property
    def at_reference_rank(self) -> np.ndarray:
        """Share of subsets placing each quantizer at its all-runs rank.

        Shape (len(k_runs), n_quantizers); the all-runs rank of quantizer q is
        its position in ``reference_order``.
        """
        pos = np.empty(len(self.names), dtype=np.int64)
        pos[self.reference_order] = np.arange(len(self.names))
        return self.frequencies[:, np.arange(len(self.names)), pos]

    def confusion(self, k: int) -> np.ndarray:
        """(n_quantizers, n_quantizers) rank confusion matrix for subsets of ``k`` runs.

        Row i is the quantizer ranked i + 1 over all runs, column r the share of
        subsets ranking it r + 1 (the right panels of Fig. 1).
        """
        if k not in self.k_runs:
            raise MisValueError(f"k must be one of k_runs {list(self.k_runs)}; got {k!r}")
        return self.frequencies[self.k_runs.index(k)][self.reference_order]


def rank_stability(
    rq_values,
    k_runs=(5, 10, 20, 50, 100),
    n_subsets: int = 100,
    *,
    names=None,
    statistic: str = "mean",
    inf_policy: str = "propagate",
    n_resamples: int = 0,
    confidence_level: float = 0.95,
    rng=None,
) -> RankStability:
    """Rank-frequency matrices and Spearman stability over random subsets of runs (Fig. 1).

    For each size k in ``k_runs``, draw ``n_subsets`` subsets of k distinct runs
    uniformly at random, rank the quantizers by the statistic over each subset,
    and compare with the ranking over all runs (the protocol Fig. 1 suggests; the
    paper does not state it) and with the ranking over the other runs (disjoint).

    Parameters
    ----------
    rq_values : array_like, shape (n_runs, n_quantizers)
    k_runs : sequence of int
        Subset sizes, each in [1, n_runs].
    n_subsets : int, default 100
    names, statistic, inf_policy
        As in :func:`rank_quantizers`.
    n_resamples : int, default 0
        Bootstrap resamples of the runs for the intervals of the mean ρ (0: none).
    confidence_level : float, default 0.95
    rng : int, Generator or None

    Returns
    -------
    RankStability
    """
    _check_common(statistic, inf_policy, confidence_level)
    n_resamples = integer(n_resamples, "n_resamples", 0)
    v = _check_values(rq_values, "rq_values")
    _check_ranking_input(v, names)
    n_runs, n_q = v.shape
    names = _check_names(names, n_q)
    n_subsets = _check_work(n_subsets, "n_subsets", MAX_SUBSETS, 8 * (2 * n_runs + 3 * n_q + 8))
    ks = tuple(positive_int(k, "k_runs entries") for k in np.atleast_1d(k_runs).tolist())
    if not ks:
        raise MisValueError("k_runs must hold at least one subset size")
    too_big = [k for k in ks if k > n_runs]
    if too_big:
        raise MisValueError(f"k_runs must be at most n_runs = {n_runs}; got {too_big}")
    _check_stability_work(n_subsets, n_resamples, len(ks))
    gen = as_generator(rng)

    ref = _summarise(v, statistic, inf_policy)
    freq = np.zeros((len(ks), n_q, n_q))
    rho = np.empty((len(ks), n_subsets))
    rho_dis = np.empty((len(ks), n_subsets))
    for i, k in enumerate(ks):
        subs = np.stack([gen.permutation(n_runs)[:k] for _ in range(n_subsets)])
        s = _summarise(v[subs], statistic, inf_policy)  # (n_subsets, n_q)
        rho[i] = _spearman_rows(s, np.broadcast_to(ref, s.shape))
        rho_dis[i] = _spearman_rows(s, _complement_summaries(v, subs, statistic, inf_policy))
        # random tie-breaking: sort by (−value, random key)
        key = gen.random(s.shape)
        for row, kr in zip(s, key, strict=True):
            order = np.lexsort((kr, -row))
            freq[i, order, np.arange(n_q)] += 1.0
    freq /= n_subsets
    observed = (_nanmean_rows(rho), _nanmean_rows(rho_dis))
    ci, ci_dis = _stability_intervals(
        [v], ks, n_subsets, n_resamples, confidence_level, gen, statistic, inf_policy, observed
    )
    n_nan = int(np.isnan(rho).sum())
    if n_nan:
        warnings.warn(
            f"{n_nan} subsets had a statistic constant across quantizers (or the all-runs "
            "statistic is constant); their Spearman correlation is NaN",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return RankStability(
        names=names,
        k_runs=ks,
        n_subsets=n_subsets,
        statistic=statistic,
        inf_policy=inf_policy,
        reference_ranks=_ranks_desc(ref),
        reference_order=_order_desc(ref),
        frequencies=freq,
        spearman=rho,
        spearman_disjoint=rho_dis,
        spearman_ci=ci,
        spearman_disjoint_ci=ci_dis,
        n_resamples=n_resamples,
        confidence_level=float(confidence_level),
    )


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=1)


def _complement_summaries(v, subs, statistic, inf_policy) -> np.ndarray:
    """Summary over the runs *not* in each subset: (n_subsets, n_q); NaN when none are left."""
    n, k = v.shape[0], subs.shape[1]
    if k >= n:
        return np.full((subs.shape[0], v.shape[1]), np.nan)
    if statistic == "mean" and np.isfinite(v).all():
        return (v.sum(axis=0) - v[subs].sum(axis=1)) / (n - k)
    keep = np.ones((subs.shape[0], n), dtype=bool)
    keep[np.arange(subs.shape[0])[:, None], subs] = False
    return np.stack([_summarise(v[m], statistic, inf_policy) for m in keep])


def _pooled_rhos(blocks, ks, n_subsets, gen, statistic, inf_policy):
    """Mean ρ (vs all runs, vs the other runs) per subset size, the blocks' quantizer
    summaries concatenated (one block: the per-setting stability)."""
    refs = np.concatenate([_summarise(v, statistic, inf_policy) for v in blocks])
    out = np.empty((2, len(ks), n_subsets))
    for i, k in enumerate(ks):
        parts, rest = [], []
        for v in blocks:
            subs = np.argsort(gen.random((n_subsets, v.shape[0])), axis=1)[:, :k]
            parts.append(_summarise(v[subs], statistic, inf_policy))
            rest.append(_complement_summaries(v, subs, statistic, inf_policy))
        s = np.concatenate(parts, axis=1)
        out[0, i] = _spearman_rows(s, np.broadcast_to(refs, s.shape))
        out[1, i] = _spearman_rows(s, np.concatenate(rest, axis=1))
    return out


def _stability_intervals(
    blocks, ks, n_subsets, n_resamples, level, gen, statistic, inf_policy, observed
):
    """Bootstrap-over-runs intervals of the mean ρ per subset size, both variants.

    Basic (reverse-percentile) intervals ``[2θ̂ − q_hi, 2θ̂ − q_lo]`` around the observed
    means ``observed`` (2, len(ks)), clipped to [−1, 1]: resampling runs with replacement
    puts copies of a run both in a subset and in the rest, which biases this statistic
    upwards, and the basic interval removes that shift (Davison & Hinkley 1997, §5.2).
    """
    nan = np.full((len(ks), 2), np.nan)
    if not n_resamples:
        return nan, nan.copy()
    means = np.empty((n_resamples, 2, len(ks)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for b in range(n_resamples):
            res = [v[gen.integers(0, v.shape[0], v.shape[0])] for v in blocks]
            means[b] = np.nanmean(_pooled_rhos(res, ks, n_subsets, gen, statistic, inf_policy), 2)
    alpha = (1.0 - level) / 2.0
    ci = np.full((2, len(ks), 2), np.nan)
    for j in range(2):
        for i in range(len(ks)):
            lo, hi = _percentile_pair(means[:, j, i], alpha)
            est = observed[j][i]
            if math.isfinite(est):
                ci[j, i] = (max(-1.0, 2 * est - hi), min(1.0, 2 * est - lo))
    return ci[0], ci[1]


def _percentile_pair(x: np.ndarray, alpha: float) -> tuple[float, float]:
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        return math.nan, math.nan
    return _quantile(x, alpha), _quantile(x, 1.0 - alpha)


@dataclass(frozen=True)
class PooledStability:
    """Rank stability pooled over settings (result of :func:`pooled_rank_stability`).

    ``spearman[i, j]``: Spearman ρ, over all (setting, quantizer) cells at once, between
    the summaries of subset j of ``k_runs[i]`` runs (drawn in every setting) and those of
    all runs; ``spearman_disjoint`` the same against the other runs. Differences between
    settings enter the ranks too, so pooled ρ is not the mean of the per-setting ρ.
    """

    k_runs: tuple[int, ...]
    n_subsets: int
    n_blocks: int
    spearman: np.ndarray = field(repr=False, compare=False)
    spearman_disjoint: np.ndarray = field(repr=False, compare=False)
    spearman_ci: np.ndarray = field(repr=False, compare=False)
    spearman_disjoint_ci: np.ndarray = field(repr=False, compare=False)
    n_resamples: int = 0
    confidence_level: float = 0.95

    @property
    def spearman_mean(self) -> np.ndarray:
        return _nanmean_rows(self.spearman)

    @property
    def spearman_disjoint_mean(self) -> np.ndarray:
        return _nanmean_rows(self.spearman_disjoint)


def pooled_rank_stability(
    blocks,
    k_runs=(5, 10, 20, 50, 100),
    n_subsets: int = 100,
    *,
    statistic: str = "mean",
    inf_policy: str = "propagate",
    n_resamples: int = 0,
    confidence_level: float = 0.95,
    rng=None,
) -> PooledStability:
    """Stability of the ranking of all (setting, quantizer) cells at once over random
    subsets of k runs per setting (the other reading of Fig. 1's average over settings).

    Parameters
    ----------
    blocks : sequence of array_like, each of shape (n_runs_s, n_quantizers)
        One block of per-run values per setting (same quantizers, any number of runs).
    k_runs, n_subsets, statistic, inf_policy, n_resamples, confidence_level, rng
        As in :func:`rank_stability`; each k must not exceed any block's runs.

    Returns
    -------
    PooledStability
    """
    _check_common(statistic, inf_policy, confidence_level)
    blocks = [_check_values(b, f"blocks[{i}]") for i, b in enumerate(blocks)]
    if not blocks:
        raise MisValueError("blocks must hold at least one setting")
    n_q = blocks[0].shape[1]
    if any(b.shape[1] != n_q for b in blocks):
        raise MisValueError(
            f"blocks must have the same number of quantizers; got {[b.shape[1] for b in blocks]}"
        )
    n_subsets = positive_int(n_subsets, "n_subsets")
    n_resamples = integer(n_resamples, "n_resamples", 0)
    ks = tuple(positive_int(k, "k_runs entries") for k in np.atleast_1d(k_runs).tolist())
    n_min = min(b.shape[0] for b in blocks)
    if not ks or max(ks) > n_min:
        raise MisValueError(f"k_runs must be non-empty sizes <= {n_min} runs; got {list(ks)}")
    _check_stability_work(n_subsets * len(blocks), n_resamples, len(ks))
    gen = as_generator(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rho = _pooled_rhos(blocks, ks, n_subsets, gen, statistic, inf_policy)
    observed = (_nanmean_rows(rho[0]), _nanmean_rows(rho[1]))
    ci, ci_dis = _stability_intervals(
        blocks, ks, n_subsets, n_resamples, confidence_level, gen, statistic, inf_policy, observed
    )
    return PooledStability(
        k_runs=ks,
        n_subsets=n_subsets,
        n_blocks=len(blocks),
        spearman=rho[0],
        spearman_disjoint=rho[1],
        spearman_ci=ci,
        spearman_disjoint_ci=ci_dis,
        n_resamples=n_resamples,
        confidence_level=float(confidence_level),
    )


# --------------------------------------------------------------------------------------------
# rank_agreement (Fig. 2)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankAgreement:
    """Agreement of two privacy measures over quantizers (result of :func:`rank_agreement`).

    Attributes
    ----------
    spearman, kendall : Interval
        Spearman ρ and Kendall τ_b between the two summaries (over quantizers),
        with percentile intervals from the bootstrap over runs.
    spearman_pvalue, kendall_pvalue : float
        Two-sided permutation p-values, P(|T| ≥ |t_obs|) under random pairing of
        the quantizers: exact (all n_quantizers! pairings) or Monte Carlo.
    permutation : str
        ``"exact"`` or ``"monte-carlo (B)"``.
    x_summary, y_summary : ndarray, shape (n_quantizers,)
    n_quantizers, n_resamples, n_valid : int
        ``n_valid``: resamples where both correlations were defined.
    paired : bool
    spearman_replicates, kendall_replicates : ndarray, shape (n_resamples,)
        The bootstrap distributions (NaN where undefined), e.g. to combine settings.
    """

    spearman: Interval
    kendall: Interval
    spearman_pvalue: float
    kendall_pvalue: float
    permutation: str
    x_summary: np.ndarray = field(repr=False, compare=False)
    y_summary: np.ndarray = field(repr=False, compare=False)
    n_quantizers: int = 0
    n_resamples: int = 0
    n_valid: int = 0
    paired: bool = False
    confidence_level: float = 0.95
    spearman_replicates: np.ndarray = field(default=None, repr=False, compare=False)
    kendall_replicates: np.ndarray = field(default=None, repr=False, compare=False)


def _permutation_pvalues(x: np.ndarray, y: np.ndarray, n_permutations, rng) -> tuple:
    """Two-sided permutation p-values of Spearman and Kendall τ_b between vectors x and y."""
    rx = stats.rankdata(x)
    ry = stats.rankdata(y)
    rx = np.ascontiguousarray(rx - rx.mean())
    ry = np.ascontiguousarray(ry - ry.mean())
    sx = np.ascontiguousarray(_signs(x))
    sy = np.ascontiguousarray(_signs(y))
    rho_num = float(rx @ ry)
    tau_num = float(np.triu(sx * sy, 1).sum())
    # centred ranks are multiples of 1/2 and signs are integers: the sums are exact, so a
    # tiny tolerance only guards the comparison of equal values
    tol = 1e-9
    if n_permutations is None:
        n_rho, n_tau, total = _k.exact_permutation_counts(rx, ry, sx, sy, rho_num, tau_num, tol)
        return n_rho / total, n_tau / total, "exact"
    n_rho, n_tau = _k.random_permutation_counts(
        rx, ry, sx, sy, rho_num, tau_num, tol, draw_seed(rng), n_permutations
    )
    b = n_permutations
    return (1 + n_rho) / (1 + b), (1 + n_tau) / (1 + b), f"monte-carlo ({b})"


def rank_agreement(
    x,
    y,
    *,
    statistic: str = "mean",
    inf_policy: str = "propagate",
    paired: bool = False,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    n_permutations: int | None = None,
    rng=None,
) -> RankAgreement:
    """Spearman and Kendall agreement between two privacy measures over quantizers (Fig. 2).

    Parameters
    ----------
    x, y : array_like, shape (n_runs, n_quantizers) or (n_quantizers,)
        Per-run values of two measures (e.g. r_Q from :func:`~mis.security.rq_batch`
        and per-test-run MIS from ``DiscriminatorMIS.per_run_mis``); the runs of x
        and y may differ in number. A 1-D input is a fixed summary and is not
        resampled.
    statistic : {"mean", "median"}
        Summary over runs of each measure.
    inf_policy : {"propagate", "omit"}
        As in :func:`rank_quantizers`.
    paired : bool, default False
        x and y were measured on the same runs (same n_runs, row r = run r):
        resample the same runs for both. Otherwise each is resampled over its
        own runs, independently.
    n_resamples : int, default 2000
    confidence_level : float, default 0.95
    n_permutations : int or None
        None: exact p-values over all n_quantizers! pairings when
        n_quantizers ≤ 10, else 100,000 random permutations. An int forces a
        Monte Carlo test with that many permutations, p = (1 + hits)/(1 + B).
    rng : int, Generator or None

    Returns
    -------
    RankAgreement

    Notes
    -----
    With 9 quantizers a Fisher-z interval for ρ is useless (it assumes a
    bivariate normal sample of n = 9); the p-value comes from the permutation
    null of the quantizer pairing (Pitman 1937), exact, and the interval from
    the runs, which are the independent units. Ties (e.g. several +inf means)
    get average ranks; τ is τ_b.
    """
    _check_common(statistic, inf_policy)
    level = probability(confidence_level, "confidence_level")
    paired = boolean(paired, "paired")
    xv = _check_values(x, "x", allow_1d=True)
    yv = _check_values(y, "y", allow_1d=True)
    q = xv.shape[-1]
    if yv.shape[-1] != q:
        raise MisValueError(
            f"x and y must have the same number of quantizers (last axis); got {q} and "
            f"{yv.shape[-1]}"
        )
    if q < 3:
        raise MisValueError(f"rank correlations need at least 3 quantizers; got {q}")
    if paired and (xv.ndim != 2 or yv.shape != xv.shape):
        raise MisValueError(
            f"paired=True needs x and y of the same shape (n_runs, n_quantizers); got {xv.shape} "
            f"and {yv.shape}"
        )
    runs = max(xv.shape[0] if xv.ndim == 2 else 1, yv.shape[0] if yv.ndim == 2 else 1)
    n_resamples = _check_work(n_resamples, "n_resamples", MAX_RESAMPLES, 8 * (runs + 6 * q))
    if n_permutations is not None:
        n_permutations = _check_work(n_permutations, "n_permutations", MAX_PERMUTATIONS, 8 * q)
    elif q > EXACT_MAX_QUANTIZERS:
        n_permutations = 100_000
    gen = as_generator(rng)

    def summary(v):
        return v if v.ndim == 1 else _summarise(v, statistic, inf_policy)

    xs, ys = summary(xv), summary(yv)
    rho = float(_spearman_rows(xs, ys))
    tau = float(_kendall_rows(xs, ys))

    # bootstrap over runs
    if xv.ndim == 1 and yv.ndim == 1:
        warnings.warn(
            "x and y are both fixed summaries (1-D): there are no runs to resample, "
            "so the intervals are NaN",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        rho_r = tau_r = np.full(0, np.nan)
    else:
        if paired:
            idx = gen.integers(0, xv.shape[0], size=(n_resamples, xv.shape[0]))
            xb = _summarise(xv[idx], statistic, inf_policy)
            yb = _summarise(yv[idx], statistic, inf_policy)
        else:
            xb = (
                np.broadcast_to(xs, (n_resamples, q))
                if xv.ndim == 1
                else _bootstrap_summaries(xv, n_resamples, gen, [statistic], inf_policy)[0]
            )
            yb = (
                np.broadcast_to(ys, (n_resamples, q))
                if yv.ndim == 1
                else _bootstrap_summaries(yv, n_resamples, gen, [statistic], inf_policy)[0]
            )
        rho_r = _spearman_rows(xb, yb)
        tau_r = _kendall_rows(xb, yb)
    ok = np.isfinite(rho_r) & np.isfinite(tau_r)
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {n_resamples} bootstrap resamples had a summary constant across "
            "quantizers; they were dropped",
            UndefinedMetricWarning,
            stacklevel=2,
        )

    if np.isfinite(rho) and np.isfinite(tau):
        p_rho, p_tau, how = _permutation_pvalues(xs, ys, n_permutations, gen)
    else:
        warnings.warn(
            "a summary is constant across quantizers: the correlations are undefined (NaN)",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        p_rho = p_tau = math.nan
        how = "exact" if n_permutations is None else f"monte-carlo ({n_permutations})"
    return RankAgreement(
        spearman=Interval(rho, *_percentile(rho_r[ok], level)),
        kendall=Interval(tau, *_percentile(tau_r[ok], level)),
        spearman_pvalue=float(p_rho),
        kendall_pvalue=float(p_tau),
        permutation=how,
        x_summary=xs,
        y_summary=ys,
        n_quantizers=q,
        n_resamples=n_resamples,
        n_valid=int(ok.sum()),
        paired=bool(paired),
        confidence_level=level,
        spearman_replicates=rho_r,
        kendall_replicates=tau_r,
    )
