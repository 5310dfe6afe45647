"""ROC kernels over a fixed sort order and per-observation weights.

Every kernel works on observations in their original order together with
``order`` (the indices that sort the scores in decreasing order) and
``is_end`` (``is_end[i]`` is true when sorted position ``i`` is the last of a
run of tied scores). A weight vector ``w`` (1 for the data itself, bootstrap
counts for a resample, 0 for a left-out observation) is then enough to get
the whole ROC in one O(n) pass: no resample is ever re-sorted.

Output layout of :func:`roc_metrics`: ``out[:k]`` are the TPRs at the ``k``
requested FPRs, ``out[k]`` the AUC and ``out[k + 1]`` the log-AUC.
"""

import numpy as np

from mis._kernels._config import jit, parallel_jit, prange
from mis._kernels.random import next_below, stream_state


@jit
def log_segment_area(f0, t0, f1, t1, fpr_min):
    """Integral of the straight ROC segment (f0,t0)–(f1,t1) against ln(FPR) over [fpr_min, 1].

    On the segment TPR(f) = c + m f, so the integral of TPR(f)/f from a to f1
    is c ln(f1/a) + m (f1 - a), with a = max(f0, fpr_min).
    """
    if f1 <= fpr_min or f1 <= f0:
        return 0.0
    m = (t1 - t0) / (f1 - f0)
    c = t0 - m * f0
    a = f0 if f0 > fpr_min else fpr_min
    return c * np.log(f1 / a) + m * (f1 - a)


@jit
def roc_metrics(labels, w, order, is_end, fprs, strict, fpr_min, out):
    """TPR@FPR for each ``fprs[k]``, AUC and log-AUC of one weighted sample, into ``out``.

    Parameters
    ----------
    labels : uint8 (n,)  1 = member, original order.
    w : float64 (n,)     observation weights, original order.
    order : int64 (n,)   indices sorting the scores in decreasing order.
    is_end : bool (n,)   true at the last sorted position of each tie group.
    fprs : float64 (k,)  FPR levels.
    strict : bool        use FPR < alpha (reference LiRA code) instead of FPR <= alpha.
    fpr_min : float      lower end of the log-AUC range.
    out : float64 (k+2,) TPRs, AUC, log-AUC; NaN where a class has zero weight.
    """
    k = fprs.shape[0]
    n = order.shape[0]
    pos = 0.0
    neg = 0.0
    for i in range(n):
        if labels[i]:
            pos += w[i]
        else:
            neg += w[i]
    if pos <= 0.0 or neg <= 0.0:
        out[:] = np.nan
        return
    for j in range(k):
        out[j] = 0.0  # the origin (FPR 0, TPR 0) is always on the curve
    tp = 0.0
    fp = 0.0
    f_prev = 0.0
    t_prev = 0.0
    auc = 0.0
    log_area = 0.0
    for s in range(n):
        i = order[s]
        if labels[i]:
            tp += w[i]
        else:
            fp += w[i]
        if is_end[s]:
            f = fp / neg
            t = tp / pos
            if f > f_prev:
                auc += (f - f_prev) * (t + t_prev) * 0.5
                log_area += log_segment_area(f_prev, t_prev, f, t, fpr_min)
            for j in range(k):
                if f < fprs[j] or (not strict and f == fprs[j]):
                    out[j] = t
            f_prev = f
            t_prev = t
    out[k] = auc
    out[k + 1] = log_area / np.log(1.0 / fpr_min)


@jit
def roc_points(labels, order, is_end):
    """Cumulative (false positives, true positives) at each tie-group end, with the origin.

    Returns
    -------
    fps, tps : float64 (g+1,) counts, starting at 0.
    ends : int64 (g,) sorted positions of the group ends.
    """
    n = order.shape[0]
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
        if labels[order[s]]:
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
    """Bootstrap counts of resample ``b`` into ``w`` (original order).

    Stratified mode (``n_clusters == 0``): ``strata`` lists observation indices
    grouped by class, ``strata_start`` the boundaries; each class is resampled
    with replacement to its own size. Cluster mode: ``n_clusters`` clusters
    are drawn with replacement and every observation of a drawn cluster gets
    its cluster's count.
    """
    state = stream_state(seed, b)
    w[:] = 0.0
    if n_clusters == 0:
        for c in range(strata_start.shape[0] - 1):
            lo = strata_start[c]
            size = strata_start[c + 1] - lo
            for _ in range(size):
                state, r = next_below(state, size)
                w[strata[lo + r]] += 1.0
    else:
        counts = np.zeros(n_clusters)
        for _ in range(n_clusters):
            state, r = next_below(state, n_clusters)
            counts[r] += 1.0
        for i in range(w.shape[0]):
            w[i] = counts[clusters[i]]


@parallel_jit
def bootstrap_metrics(
    labels, orders, is_ends, strata, strata_start, clusters, n_clusters,
    fprs, strict, fpr_min, seed, n_resamples,
):
    """Metrics of ``n_resamples`` bootstrap resamples for one or more scorings.

    ``orders`` and ``is_ends`` have one row per scoring of the same
    observations; every scoring sees the same resampled weights, which makes a
    paired comparison. Returns float64 ``(n_resamples, n_scorings, k + 2)``.
    Resample ``b`` depends only on ``(seed, b)``: results do not depend on the
    number of threads.
    """
    n = labels.shape[0]
    n_scorings = orders.shape[0]
    m = fprs.shape[0] + 2
    reps = np.empty((n_resamples, n_scorings, m))
    for b in prange(n_resamples):
        w = np.empty(n)
        _draw_weights(w, strata, strata_start, clusters, n_clusters, seed, b)
        for s in range(n_scorings):
            roc_metrics(labels, w, orders[s], is_ends[s], fprs, strict, fpr_min, reps[b, s])
    return reps


@parallel_jit
def jackknife_metrics(labels, orders, is_ends, blocks, n_blocks, fprs, strict, fpr_min):
    """Delete-a-block jackknife: metrics with block ``g`` left out, for each ``g``.

    ``blocks[i]`` is the block of observation ``i`` (-1: never left out).
    Returns float64 ``(n_blocks, n_scorings, k + 2)``.
    """
    n = labels.shape[0]
    n_scorings = orders.shape[0]
    m = fprs.shape[0] + 2
    out = np.empty((n_blocks, n_scorings, m))
    for g in prange(n_blocks):
        w = np.ones(n)
        for i in range(n):
            if blocks[i] == g:
                w[i] = 0.0
        for s in range(n_scorings):
            roc_metrics(labels, w, orders[s], is_ends[s], fprs, strict, fpr_min, out[g, s])
    return out
