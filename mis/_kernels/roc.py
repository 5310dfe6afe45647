"""ROC kernels over per-class cumulative counts and a fixed sort order.

Layout. The scores of a scoring are sorted once (decreasing, stable). Within
each class the observations are numbered in that order: non-member
("negative") ``j`` is the j-th non-member from the top, member ("positive")
``i`` the i-th member. A weighted sample -- the data itself (all weights 1), a
bootstrap resample (counts) or a jackknife sample (0 for a left-out block) --
is two count vectors ``w_neg`` (n0,) and ``w_pos`` (n1,); the metric kernel
reads their prefix sums ``cn`` (n0 + 1,) and ``cp`` (n1 + 1,), with
``cn[0] = cp[0] = 0``, i.e. false- and true-positive counts.

How the two classes interleave is fixed by the sort and stored once, as the
tie groups that hold at least one negative, in decreasing order of score: for
group ``g``, ``neg_end[g]`` negatives score in it or above, ``pos_lo[g]``
positives strictly above it and ``pos_hi[g]`` in it or above. The ROC segment
of group g runs from ``(cn[neg_end[g-1]], cp[pos_lo[g]])`` to
``(cn[neg_end[g]], cp[pos_hi[g]])``. Groups of positives only are vertical
segments that add nothing to either area, so one pass over at most n0 groups
gives the AUC and the log-AUC, with integer counts and no branch on a label;
the TPR at an FPR level is a binary search in ``cn``. A tie-free layout
(continuous scores: one negative per group, ``pos_lo = pos_hi``) takes a
faster path (:func:`_simple_areas`).

Several scorings of the same observations (a paired comparison) share the
weights: they are drawn in the class order of scoring 0, and scoring ``s``
reads them through ``neg_perm[s]``, ``pos_perm[s]`` (class rank in ``s`` →
class rank in scoring 0; row 0 is the identity). Layout arrays of several
scorings are stacked row-wise, ``neg_end``, ``pos_lo`` and ``pos_hi`` padded to
n0 columns, row ``s`` holding ``n_groups[s]`` groups.

Counts are int32 (the wrappers require n < 2**31 and, for cluster resamples,
n_clusters × largest cluster < 2**31, so no prefix sum can overflow): the
per-resample working set of a 50,000-score bootstrap is then ~400 kB and stays
in the L2 cache. Indices read from arrays are cast to unsigned before use,
which spares numba's negative-index wraparound in the hot loops.

Output layout of :func:`roc_metrics`: ``out[:k]`` are the TPRs at the ``k``
requested FPRs (given in increasing order), ``out[k]`` the AUC and
``out[k + 1]`` the log-AUC.
"""

import numpy as np

from mis._kernels._config import jit, parallel_jit, prange
from mis._kernels.random import next_below, stream_state, two_below


@jit
def _level_count(alpha, neg, strict):
    """Largest false-positive count k with k/neg <= alpha (k/neg < alpha when strict).

    Compared in floating point exactly as the rate fp/neg would be, so counting
    against it equals comparing rates.
    """
    k = np.floor(alpha * neg)
    while (k + 1.0) / neg < alpha or (not strict and (k + 1.0) / neg == alpha):
        k += 1.0
    while k >= 0.0 and (k / neg > alpha or (strict and k / neg == alpha)):
        k -= 1.0
    return k


@jit
def _first_above(cn, neg_end, n_groups, level):
    """First group whose FP count exceeds ``level`` (``n_groups`` if none), by bisection."""
    lo = 0
    hi = n_groups
    while lo < hi:
        mid = (lo + hi) >> 1
        if cn[np.uint64(neg_end[mid])] > level:
            hi = mid
        else:
            lo = mid + 1
    return lo


@jit
def _simple_areas(cn, cp, pos_lo, n_groups, g0, ln_floor, log_table):
    """Twice the AUC (times P N, int64) and the log-area (times P) of a tie-free layout.

    Tie-free: every group is one negative (``neg_end[g] = g + 1``) and no
    positive shares its score (``pos_hi = pos_lo``), so every segment is
    horizontal at height TP = ``cp[pos_lo[g]]``: it adds 2 ΔFP TP to twice the
    AUC and TP (ln FP1 − ln FP0) to the log-area. Groups before ``g0`` end at
    or below the log-AUC floor and add nothing to the log-area. Needs
    ``len(log_table) > cn[-1]``. Indices are cast to unsigned, which spares
    numba's negative-index wraparound in the hot loop (~3x faster).
    """
    auc = np.int64(0)
    fp0 = np.int64(0)
    for g in range(g0):
        fp1 = np.int64(cn[g + 1])
        auc += (fp1 - fp0) * np.int64(cp[np.uint64(pos_lo[g])])
        fp0 = fp1
    area = 0.0
    ln0 = ln_floor
    for h in range(n_groups - g0):
        g = np.uint64(h + g0)
        fp1 = np.int64(cn[g + np.uint64(1)])
        tp = np.int64(cp[np.uint64(pos_lo[g])])
        auc += (fp1 - fp0) * tp
        ln1 = log_table[np.uint64(fp1)]
        area += float(tp) * (ln1 - ln0)
        fp0 = fp1
        ln0 = ln1
    return 2 * auc, area


@jit
def _general_areas(cn, cp, neg_end, pos_lo, pos_hi, n_groups, g0, floor_count, ln_floor, log_table):
    """As :func:`_simple_areas` for any layout: tied negatives, members tied with them.

    A segment (f0,t0)–(f1,t1) adds ΔFP (t0 + t1) to twice the AUC and, on
    TPR(f) = c + m f, c ln(f1/a) + m (f1 − a) with a = max(f0, floor) to the
    log-area (division only where t1 ≠ t0). ``ln FP`` comes from ``log_table``
    while it reaches, from ``np.log`` beyond (cluster resamples can weigh
    more than n).
    """
    n_table = log_table.shape[0]
    auc = np.int64(0)
    fp0_i = np.int64(0)
    for g in range(g0):
        fp1_i = np.int64(cn[np.uint64(neg_end[g])])
        t0 = np.int64(cp[np.uint64(pos_lo[g])])
        t1 = np.int64(cp[np.uint64(pos_hi[g])])
        auc += (fp1_i - fp0_i) * (t0 + t1)
        fp0_i = fp1_i
    area = 0.0
    fp0 = float(fp0_i)
    ln0 = ln_floor
    for g in range(g0, n_groups):
        fp1_i = np.int64(cn[np.uint64(neg_end[g])])
        t0 = np.int64(cp[np.uint64(pos_lo[g])])
        t1 = np.int64(cp[np.uint64(pos_hi[g])])
        auc += (fp1_i - fp0_i) * (t0 + t1)
        fp1 = float(fp1_i)
        tp0 = float(t0)
        ln1 = log_table[np.uint64(fp1_i)] if fp1_i < n_table else np.log(fp1)
        if t1 == t0:  # horizontal segment: no division
            area += tp0 * (ln1 - ln0)
        else:
            d = fp1 - fp0
            slope = (float(t1) - tp0) / (d if d > 0.0 else 1.0)
            a = fp0 if fp0 > floor_count else floor_count
            area += (tp0 - slope * fp0) * (ln1 - ln0) + slope * (fp1 - a)
        fp0_i = fp1_i
        fp0 = fp1
        ln0 = ln1
    return auc, area


@jit
def roc_metrics(
    cn, cp, neg_end, pos_lo, pos_hi, n_groups, simple, fprs, strict, fpr_min, log_table, out
):
    """TPR at each FPR level, AUC and log-AUC of one weighted sample, into ``out``.

    Parameters
    ----------
    cn : int (n0 + 1,)      cumulative negative weights, ``cn[0] = 0`` (FP counts).
    cp : int (n1 + 1,)      cumulative positive weights, ``cp[0] = 0`` (TP counts).
    neg_end, pos_lo, pos_hi : int (>= n_groups,)
                            tie groups holding a negative (module docstring).
    n_groups : int          number of such groups.
    simple : bool           the layout is tie-free (:func:`_simple_areas`).
    fprs : float64 (k,)     FPR levels, increasing.
    strict : bool           FPR < alpha (reference LiRA code) instead of FPR <= alpha.
    fpr_min : float         lower end of the log-AUC range.
    log_table : float64     ``ln j`` for j = 0, 1, ... (``np.log`` beyond its end).
    out : float64 (k+2,)    TPRs, AUC, log-AUC; NaN where a class has zero weight.

    Notes
    -----
    TPR at level α: the curve's TPR just before the first group whose FP count
    exceeds the count threshold of α (:func:`_level_count`), i.e. the largest
    TPR over points with FPR ≤ α (< α when strict). Twice the AUC is the sum
    over segments of ΔFP (TP0 + TP1), an exact integer, divided by 2 P N at the
    end. The log-AUC integrates each straight segment (f0,t0)–(f1,t1), on which
    TPR(f) = c + m f, against d ln f over [a, f1] with a = max(f0, fpr_min):
    c ln(f1/a) + m (f1 − a); in counts, ln(f1/f0) = ln FP1 − ln FP0 and
    ln(f1/fpr_min) = ln FP1 − ln(N fpr_min). Segments that end at or below
    N fpr_min add nothing to it, and a segment with ΔFP = 0 adds exactly zero
    to both areas, so zero-weight groups need no branch.
    """
    k = fprs.shape[0]
    neg_i = cn[cn.shape[0] - 1]
    pos_i = cp[cp.shape[0] - 1]
    if pos_i <= 0 or neg_i <= 0:
        out[:] = np.nan
        return
    pos = float(pos_i)
    neg = float(neg_i)
    for j in range(k):
        g = _first_above(cn, neg_end, n_groups, _level_count(fprs[j], neg, strict))
        out[j] = (cp[np.uint64(pos_lo[g])] if g < n_groups else pos_i) / pos
    floor_count = neg * fpr_min  # the (fractional) fp count at fpr_min
    ln_floor = np.log(floor_count)
    g0 = _first_above(cn, neg_end, n_groups, floor_count)
    if simple and neg_i < log_table.shape[0]:
        auc2, log_area = _simple_areas(cn, cp, pos_lo, n_groups, g0, ln_floor, log_table)
    else:
        auc2, log_area = _general_areas(
            cn, cp, neg_end, pos_lo, pos_hi, n_groups, g0, floor_count, ln_floor, log_table
        )
    out[k] = 0.5 * float(auc2) / (pos * neg)
    out[k + 1] = log_area / (pos * np.log(1.0 / fpr_min))


@jit
def _cumulate(w, c):
    """Prefix sums with a leading zero: ``c[0] = 0``, ``c[i + 1] = w[0] + ... + w[i]``."""
    acc = c.dtype.type(0)
    c[0] = acc
    for i in range(w.shape[0]):
        acc += w[i]
        c[i + 1] = acc


@jit
def _cumulate_perm(w, perm, c):
    """Prefix sums of ``w[perm]`` with a leading zero."""
    acc = c.dtype.type(0)
    c[0] = acc
    for i in range(perm.shape[0]):
        acc += w[np.uint64(perm[i])]
        c[i + 1] = acc


@jit
def roc_points(labels, is_end):
    """Cumulative (false positives, true positives) at each tie-group end, with the origin.

    ``labels`` (0/1) and ``is_end`` are in decreasing order of score.

    Returns
    -------
    fps, tps : float64 (g+1,) counts, starting at 0.
    ends : int64 (g,) sorted positions of the group ends.
    """
    n = labels.shape[0]
    g = 0
    for s in range(n):
        if is_end[s]:
            g += 1
    fps = np.zeros(g + 1)
    tps = np.zeros(g + 1)
    ends = np.empty(g, dtype=np.int64)
    tp = 0.0
    fp = 0.0
    j = 0
    for s in range(n):
        if labels[s]:
            tp += 1.0
        else:
            fp += 1.0
        if is_end[s]:
            fps[j + 1] = fp
            tps[j + 1] = tp
            ends[j] = s
            j += 1
    return fps, tps, ends


@jit
def _draw_class(w, state):
    """Add ``len(w)`` uniform draws with replacement from ``[0, len(w))`` to the counts ``w``.

    Two draws per splitmix64 output (:func:`two_below`: high half, then low
    half); an odd size takes one more output's high half (:func:`next_below`).
    """
    size = w.shape[0]
    for _ in range(size >> 1):
        state, r1, r2 = two_below(state, size)
        w[np.uint64(r1)] += 1  # unsigned: no negative-index wraparound
        w[np.uint64(r2)] += 1
    if size & 1:
        state, r = next_below(state, size)
        w[r] += 1
    return state


@jit
def _draw_counts(w_neg, w_pos, neg_clusters, pos_clusters, n_clusters, cluster_counts, seed, b):
    """Bootstrap counts of resample ``b`` into ``w_neg``, ``w_pos`` (class order of scoring 0).

    The random stream of resample b is stream ``b`` of ``seed``
    (:func:`~mis._kernels.random.stream_state`), whatever the thread running it.
    Stratified mode (``n_clusters == 0``): the non-members are resampled with
    replacement to their own size, then the members from the same stream
    (:func:`_draw_class`), a draw ``r`` adding one to the r-th of its class in
    decreasing order of score. Cluster mode: ``n_clusters`` draws of
    :func:`next_below` pick clusters with replacement and every observation of
    a drawn cluster gets its cluster's count (``neg_clusters[j]`` is the
    cluster of negative ``j``).
    """
    state = stream_state(seed, b)
    if n_clusters == 0:
        w_neg[:] = 0
        w_pos[:] = 0
        state = _draw_class(w_neg, state)
        state = _draw_class(w_pos, state)
    else:
        cluster_counts[:] = 0
        for _ in range(n_clusters):
            state, r = next_below(state, n_clusters)
            cluster_counts[np.uint64(r)] += 1
        for j in range(w_neg.shape[0]):
            w_neg[j] = cluster_counts[np.uint64(neg_clusters[j])]
        for i in range(w_pos.shape[0]):
            w_pos[i] = cluster_counts[np.uint64(pos_clusters[i])]


@jit
def _all_scorings(
    w_neg,
    w_pos,
    cn,
    cp,
    neg_perm,
    pos_perm,
    neg_end,
    pos_lo,
    pos_hi,
    n_groups,
    simple,
    fprs,
    strict,
    fpr_min,
    log_table,
    out,
):
    """Metrics of every scoring under the weights ``w_neg``, ``w_pos`` (scoring 0's order)."""
    for s in range(neg_perm.shape[0]):
        if s == 0:  # row 0 of the permutations is the identity
            _cumulate(w_neg, cn)
            _cumulate(w_pos, cp)
        else:
            _cumulate_perm(w_neg, neg_perm[s], cn)
            _cumulate_perm(w_pos, pos_perm[s], cp)
        roc_metrics(
            cn,
            cp,
            neg_end[s],
            pos_lo[s],
            pos_hi[s],
            n_groups[s],
            simple[s],
            fprs,
            strict,
            fpr_min,
            log_table,
            out[s],
        )


@parallel_jit
def bootstrap_metrics(
    neg_perm,
    pos_perm,
    neg_end,
    pos_lo,
    pos_hi,
    n_groups,
    simple,
    neg_clusters,
    pos_clusters,
    n_clusters,
    fprs,
    strict,
    fpr_min,
    log_table,
    seed,
    n_resamples,
):
    """Metrics of ``n_resamples`` bootstrap resamples for one or more scorings.

    The layout arrays (module docstring) have one row per scoring of the same
    observations; all scorings see the same resampled observations, which
    makes a paired comparison. Returns float64 ``(n_resamples, n_scorings, k + 2)``.
    Resample ``b`` depends only on ``(seed, b)`` (:func:`_draw_counts`), not on
    the number of threads.
    """
    n_scorings, n0 = neg_perm.shape
    n1 = pos_perm.shape[1]
    reps = np.empty((n_resamples, n_scorings, fprs.shape[0] + 2))
    for b in prange(n_resamples):
        w_neg = np.empty(n0, dtype=np.int32)
        w_pos = np.empty(n1, dtype=np.int32)
        cn = np.empty(n0 + 1, dtype=np.int32)
        cp = np.empty(n1 + 1, dtype=np.int32)
        cluster_counts = np.empty(n_clusters, dtype=np.int32)
        _draw_counts(w_neg, w_pos, neg_clusters, pos_clusters, n_clusters, cluster_counts, seed, b)
        _all_scorings(
            w_neg,
            w_pos,
            cn,
            cp,
            neg_perm,
            pos_perm,
            neg_end,
            pos_lo,
            pos_hi,
            n_groups,
            simple,
            fprs,
            strict,
            fpr_min,
            log_table,
            reps[b],
        )
    return reps


@parallel_jit
def jackknife_metrics(
    neg_perm,
    pos_perm,
    neg_end,
    pos_lo,
    pos_hi,
    n_groups,
    simple,
    neg_blocks,
    pos_blocks,
    n_blocks,
    fprs,
    strict,
    fpr_min,
    log_table,
):
    """Delete-a-block jackknife: metrics with block ``g`` left out, for each ``g``.

    ``neg_blocks[j]`` (``pos_blocks[i]``) is the block of negative j (positive
    i) in scoring 0's class order (-1: never left out). Returns float64
    ``(n_blocks, n_scorings, k + 2)``.
    """
    n_scorings, n0 = neg_perm.shape
    n1 = pos_perm.shape[1]
    out = np.empty((n_blocks, n_scorings, fprs.shape[0] + 2))
    for g in prange(n_blocks):
        w_neg = np.empty(n0, dtype=np.int32)
        w_pos = np.empty(n1, dtype=np.int32)
        cn = np.empty(n0 + 1, dtype=np.int32)
        cp = np.empty(n1 + 1, dtype=np.int32)
        for j in range(n0):
            w_neg[j] = 0 if neg_blocks[j] == g else 1
        for i in range(n1):
            w_pos[i] = 0 if pos_blocks[i] == g else 1
        _all_scorings(
            w_neg,
            w_pos,
            cn,
            cp,
            neg_perm,
            pos_perm,
            neg_end,
            pos_lo,
            pos_hi,
            n_groups,
            simple,
            fprs,
            strict,
            fpr_min,
            log_table,
            out[g],
        )
    return out
