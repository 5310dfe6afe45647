"""ROC kernels over a fixed sort order and per-observation weights.

The scores of a scoring are sorted once (decreasing); every kernel then works
in that sorted order with ``labels`` (1 = member), ``is_end`` (true at the last
position of each run of tied scores) and a weight vector ``w`` (1 for the
data itself, bootstrap counts for a resample, 0 for a left-out observation).
One sequential O(n) pass over the weights gives the whole ROC, so no resample
is ever re-sorted. Labels and weights are int64 (counts add exactly and
quickly), so cumulative false-positive counts index a table of logarithms
(``log_table[k] = ln k``).

Several scorings of the same observations (a paired comparison) share the
weights: they are drawn in the sorted order of scoring 0 and scoring ``s``
reads them through ``perm[s]`` (sorted position in ``s`` → sorted position in 0).

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
def roc_metrics(labels, w, is_end, fprs, strict, fpr_min, log_table, out):
    """TPR at each FPR level, AUC and log-AUC of one weighted sample, into ``out``.

    Parameters
    ----------
    labels : int64 (n,)    1 = member, 0 = non-member, in decreasing order of score.
    w : int64 (n,)         observation weights (counts), same order.
    is_end : bool (n,)     true at the last position of each tie group.
    fprs : float64 (k,)    FPR levels, increasing.
    strict : bool          FPR < alpha (reference LiRA code) instead of FPR <= alpha.
    fpr_min : float        lower end of the log-AUC range.
    log_table : float64    ``ln j`` for j = 0, 1, ...
    out : float64 (k+2,)   TPRs, AUC, log-AUC; NaN where a class has zero weight.

    Notes
    -----
    The pass works on the cumulative counts TP and FP (whole numbers, exact in
    float64) and divides only where it must: the labels of sorted scores are
    unpredictable, so counts are accumulated without branching on them, and an
    FPR level α is a count threshold (:func:`_level_count`). Twice the AUC is
    the sum over ROC steps of ΔFP (TP + TP_prev), divided by 2 P N at the end.
    The log-AUC integrates each straight ROC segment (f0,t0)–(f1,t1), on which
    TPR(f) = c + m f, against d ln f over [a, f1] with a = max(f0, fpr_min):
    c ln(f1/a) + m (f1 − a); in counts, ln(f1/f0) = ln FP1 − ln FP0 and
    ln(f1/fpr_min) = ln FP1 − ln(N fpr_min).
    """
    k = fprs.shape[0]
    n = labels.shape[0]
    pos_i = 0
    total_i = 0
    for i in range(n):  # integer sums: exact, and free to vectorise
        total_i += w[i]
        pos_i += w[i] * labels[i]
    if pos_i <= 0 or total_i - pos_i <= 0:
        out[:] = np.nan
        return
    pos = float(pos_i)
    neg = float(total_i - pos_i)
    floor_count = neg * fpr_min  # the (fractional) fp count at fpr_min
    ln_floor = np.log(floor_count)
    tp_i = 0
    fp_i = 0
    tp_prev = 0.0
    fp_prev = 0.0
    fp_point = 0  # fp count of the current ROC point
    ln_fp_prev = ln_floor
    auc2 = 0.0  # twice the AUC, times pos * neg
    log_area = 0.0  # times pos
    jp = 0  # next FPR level the curve has not passed yet
    level = _level_count(fprs[0], neg, strict) if k > 0 else np.inf
    n_table = log_table.shape[0]
    for s in range(n):
        # Branch-free body: positions inside a tie group or without a new false positive
        # add exactly zero below (d_fp = 0), so nothing depends on an unpredictable branch.
        w_pos = w[s] * labels[s]
        tp_i += w_pos
        fp_i += w[s] - w_pos
        end = is_end[s]
        fp_point = fp_i if end else fp_point
        fp = float(fp_i) if end else fp_prev
        tp = float(tp_i) if end else tp_prev
        d_fp = fp - fp_prev
        while fp > level:  # the curve leaves FPR level jp: its TPR is the previous point's
            out[jp] = tp_prev / pos
            jp += 1
            level = _level_count(fprs[jp], neg, strict) if jp < k else np.inf
        auc2 += d_fp * (tp + tp_prev)
        above = fp > floor_count
        ln_fp = (log_table[fp_point] if fp_point < n_table else np.log(fp)) if above else ln_floor
        slope = (tp - tp_prev) / (d_fp if d_fp > 0.0 else 1.0)
        a = fp_prev if fp_prev > floor_count else floor_count
        gain = (tp_prev - slope * fp_prev) * (ln_fp - ln_fp_prev) + slope * (fp - a)
        log_area += gain if above else 0.0
        ln_fp_prev = ln_fp
        fp_prev = fp
        tp_prev = tp
    while jp < k:  # levels the curve never passes: the whole curve qualifies
        out[jp] = tp_prev / pos
        jp += 1
    out[k] = 0.5 * auc2 / (pos * neg)
    out[k + 1] = log_area / (pos * np.log(1.0 / fpr_min))


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
def _draw_weights(w, strata, strata_start, clusters, n_clusters, seed, b):
    """Bootstrap counts of resample ``b`` into ``w`` (sorted order of scoring 0).

    Stratified mode (``n_clusters == 0``): ``strata`` lists positions grouped
    by class, ``strata_start`` the boundaries; each class is resampled with
    replacement to its own size. Cluster mode: ``n_clusters`` clusters are
    drawn with replacement and every observation of a drawn cluster gets its
    cluster's count (``clusters[i]`` is the cluster of position ``i``).
    """
    state = stream_state(seed, b)
    w[:] = 0
    if n_clusters == 0:
        for c in range(strata_start.shape[0] - 1):
            lo = strata_start[c]
            size = strata_start[c + 1] - lo
            for _ in range(size // 2):
                state, r1, r2 = two_below(state, size)
                w[strata[lo + r1]] += 1
                w[strata[lo + r2]] += 1
            if size % 2:
                state, r = next_below(state, size)
                w[strata[lo + r]] += 1
    else:
        counts = np.zeros(n_clusters, dtype=np.int64)
        for _ in range(n_clusters):
            state, r = next_below(state, n_clusters)
            counts[r] += 1.0
        for i in range(w.shape[0]):
            w[i] = counts[clusters[i]]


@jit
def _all_scorings(labels, w, w_s, is_ends, perms, fprs, strict, fpr_min, log_table, out):
    """Metrics of every scoring under weights ``w`` (sorted order of scoring 0)."""
    roc_metrics(labels[0], w, is_ends[0], fprs, strict, fpr_min, log_table, out[0])
    for s in range(1, labels.shape[0]):
        perm = perms[s]
        for i in range(w.shape[0]):
            w_s[i] = w[perm[i]]
        roc_metrics(labels[s], w_s, is_ends[s], fprs, strict, fpr_min, log_table, out[s])


@parallel_jit
def bootstrap_metrics(
    labels,
    is_ends,
    perms,
    strata,
    strata_start,
    clusters,
    n_clusters,
    fprs,
    strict,
    fpr_min,
    log_table,
    seed,
    n_resamples,
):
    """Metrics of ``n_resamples`` bootstrap resamples for one or more scorings.

    ``labels``, ``is_ends`` and ``perms`` have one row per scoring of the same
    observations; all scorings see the same resampled observations, which
    makes a paired comparison. Returns float64 ``(n_resamples, n_scorings, k + 2)``.
    Resample ``b`` depends only on ``(seed, b)``, not on the number of threads.
    """
    n = labels.shape[1]
    reps = np.empty((n_resamples, labels.shape[0], fprs.shape[0] + 2))
    for b in prange(n_resamples):
        w = np.empty(n, dtype=np.int64)
        w_s = np.empty(n, dtype=np.int64)
        _draw_weights(w, strata, strata_start, clusters, n_clusters, seed, b)
        _all_scorings(labels, w, w_s, is_ends, perms, fprs, strict, fpr_min, log_table, reps[b])
    return reps


@parallel_jit
def jackknife_metrics(labels, is_ends, perms, blocks, n_blocks, fprs, strict, fpr_min, log_table):
    """Delete-a-block jackknife: metrics with block ``g`` left out, for each ``g``.

    ``blocks[i]`` is the block of position ``i`` in scoring 0's order (-1:
    never left out). Returns float64 ``(n_blocks, n_scorings, k + 2)``.
    """
    n = labels.shape[1]
    out = np.empty((n_blocks, labels.shape[0], fprs.shape[0] + 2))
    for g in prange(n_blocks):
        w = np.ones(n, dtype=np.int64)
        w_s = np.empty(n, dtype=np.int64)
        for i in range(n):
            if blocks[i] == g:
                w[i] = 0
        _all_scorings(labels, w, w_s, is_ends, perms, fprs, strict, fpr_min, log_table, out[g])
    return out
