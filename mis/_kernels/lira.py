"""LiRA kernels (private): per-example IN/OUT statistics over shadow models.

The kernels work on blocks of ``BLOCK`` consecutive examples (one parallel
task each) and read the signals model by model, so every read streams
through a contiguous row. Per example and query they produce the centre
(mean or median) and the sum of squared deviations about the mean (``ss``)
of the IN and of the OUT values; the caller turns ``ss`` into variances and
scores.

* Means and ``ss`` come from one branch-free streaming pass of shifted sums
  (see :func:`_moments`), accumulated in model order.
* Medians gather each example's values into a block buffer; one target needs
  a selection (quickselect), leave-one-out a full sort (insertion sort of a
  few dozen values) so that every target's median can be read off.

No validation here: signals float64 ``(n_models, n_examples, n_queries)``,
keep bool ``(n_models, n_examples)``, outputs preallocated float64. A
non-finite signal makes its example's sum non-finite; the kernels count those
examples and the caller raises.
"""

import math

import numpy as np

from mis._kernels._config import jit, parallel_jit, prange

BLOCK = 512  # examples per parallel task (a block's sums stay in L1/L2)


@jit
def _weights(keep_row, n_queries, w, n_in):
    """``w[i * Q + q] = keep_row[i]`` as 0.0 / 1.0, and ``n_in += keep_row`` (branch-free)."""
    bs = keep_row.shape[0]
    if n_queries == 1:
        for i in range(bs):
            x = np.int64(keep_row[i])
            n_in[i] += x
            w[i] = np.float64(x)
    elif n_queries == 2:
        for i in range(bs):
            x = np.int64(keep_row[i])
            n_in[i] += x
            w[2 * i] = np.float64(x)
            w[2 * i + 1] = np.float64(x)
    else:
        for i in range(bs):
            x = np.int64(keep_row[i])
            n_in[i] += x
            for q in range(n_queries):
                w[i * n_queries + q] = np.float64(x)


@jit
def _accumulate(row, w, c, acc):
    """Shifted sums of one model's row: IN sums weighted by ``w``, OUT sums by ``1 - w``."""
    for k in range(row.shape[0]):
        d = row[k] - c[k]
        a = w[k] * d
        b = d - a
        acc[0, k] += a
        acc[1, k] += a * d
        acc[2, k] += b
        acc[3, k] += b * d


@jit
def _exact(signals, keep, skip, j, q, member):
    """Two-pass mean and ss of one example's IN (``member``) or OUT values (slow, exact)."""
    n = 0
    total = 0.0
    for m in range(signals.shape[0]):
        if m != skip and keep[m, j] == member:
            total += signals[m, j, q]
            n += 1
    mean = total / n
    ss = 0.0
    for m in range(signals.shape[0]):
        if m != skip and keep[m, j] == member:
            d = signals[m, j, q] - mean
            ss += d * d
    return mean, ss


#: above this value of (mean − shift)² / variance the shifted sums could lose digits, and the
#: example is recomputed exactly (relative error of ss then stays below ~ε · 1e4)
CANCELLATION = 1e4


@jit
def _moments(signals, keep, skip, j0, j1, n_in, n_out, mu_in, ss_in, mu_out, ss_out):
    """Counts, means and ss of the IN/OUT values of examples ``j0:j1`` over models ≠ ``skip``.

    One streaming, branch-free pass of shifted sums (Chan, Golub & LeVeque
    1983, "Algorithms for computing the sample variance"): with ``d = v − c``
    for a shift ``c`` (the example's value on the first model),
    ``mean = c + Σd/n`` and ``ss = Σd² − (Σd)²/n``. Its relative error is about
    ``ε (1 + (mean − c)²/σ²)``; a set where that factor exceeds
    ``CANCELLATION`` (a shift far from the set, e.g. an IN set with a tiny
    spread far from an OUT shift) is recomputed by the exact two-pass
    :func:`_exact`. Outputs are indexed by ``j - j0``: counts ``(bs,)``, the
    rest ``(bs, Q)``; an empty set gets NaN. Returns the number of (example,
    query) pairs whose sums are non-finite (a NaN or inf signal).
    """
    n_models = signals.shape[0]
    n_queries = signals.shape[2]
    bs = j1 - j0
    size = bs * n_queries
    first = 1 if skip == 0 else 0
    c = signals[first, j0:j1].reshape(size).copy()
    acc = np.zeros((4, size))
    w = np.empty(size)
    n_in[:] = 0
    for m in range(n_models):
        if m == skip:
            continue
        _weights(keep[m, j0:j1], n_queries, w, n_in)
        _accumulate(signals[m, j0:j1].reshape(size), w, c, acc)
    n_total = n_models if skip < 0 else n_models - 1
    bad = 0
    for i in range(bs):
        n_out[i] = n_total - n_in[i]
        for q in range(n_queries):
            k = i * n_queries + q
            if not math.isfinite(acc[0, k] + acc[1, k] + acc[2, k] + acc[3, k]):
                bad += 1
                mu_in[i, q] = ss_in[i, q] = mu_out[i, q] = ss_out[i, q] = np.nan
                continue
            for member in (True, False):
                n = n_in[i] if member else n_out[i]
                s1 = acc[0, k] if member else acc[2, k]
                s2 = acc[1, k] if member else acc[3, k]
                if n == 0:
                    mean = np.nan
                    ss = np.nan
                else:
                    ss = s2 - s1 * s1 / n
                    if s1 * s1 / n > CANCELLATION * ss:
                        mean, ss = _exact(signals, keep, skip, j0 + i, q, member)
                    else:
                        mean = c[k] + s1 / n
                if member:
                    mu_in[i, q] = mean
                    ss_in[i, q] = ss
                else:
                    mu_out[i, q] = mean
                    ss_out[i, q] = ss
    return bad


@jit
def _insertion_sort(x, n):
    """Sort ``x[:n]`` in place (fast for the few dozen values of one example)."""
    for k in range(1, n):
        v = x[k]
        p = k - 1
        while p >= 0 and x[p] > v:
            x[p + 1] = x[p]
            p -= 1
        x[p + 1] = v


@jit
def _gather_sorted(signals, keep, skip, j0, j1, n_in, buf):
    """As :func:`_gather`, then each example's IN values and OUT values sorted.

    Uses the counts ``n_in`` from :func:`_moments` (same ``skip``).
    """
    _gather(signals, keep, skip, j0, j1, n_in, buf)
    n_shadows = signals.shape[0] - (1 if 0 <= skip < signals.shape[0] else 0)
    for i in range(j1 - j0):
        for q in range(signals.shape[2]):
            _insertion_sort(buf[i, q, :], n_in[i])
            _insertion_sort(buf[i, q, n_in[i] :], n_shadows - n_in[i])


@jit
def _select(x, lo, hi, k):
    """Rearrange ``x[lo:hi]`` so that ``x[k]`` is its (k − lo)-th smallest, smaller ones before.

    Quickselect with the median of three as pivot (expected O(hi − lo)).
    """
    hi -= 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three to x[mid]
        if x[mid] < x[lo]:
            x[mid], x[lo] = x[lo], x[mid]
        if x[hi] < x[lo]:
            x[hi], x[lo] = x[lo], x[hi]
        if x[hi] < x[mid]:
            x[hi], x[mid] = x[mid], x[hi]
        pivot = x[mid]
        i = lo
        j = hi
        while i <= j:
            while x[i] < pivot:
                i += 1
            while x[j] > pivot:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@jit
def _median_select(x, n):
    """Median of ``x[:n]`` (reorders ``x``), equal to ``numpy.median``: the middle value, or
    ``(a + b) / 2`` of the two middle values for an even ``n``."""
    k = n // 2
    _select(x, 0, n, k)
    if n % 2 == 1:
        return x[k]
    a = x[0]
    for p in range(1, k):
        if x[p] > a:
            a = x[p]
    return (a + x[k]) / 2.0


@jit
def _gather(signals, keep, skip, j0, j1, n_in, buf):
    """IN values of examples ``j0:j1`` in ``buf[i, q, :n_in[i]]``, OUT values after them."""
    n_models = signals.shape[0]
    n_queries = signals.shape[2]
    bs = j1 - j0
    a = np.zeros(bs, dtype=np.int64)
    z = np.zeros(bs, dtype=np.int64)
    for m in range(n_models):
        if m == skip:
            continue
        for i in range(bs):
            if keep[m, j0 + i]:
                k = a[i]
                a[i] += 1
            else:
                k = n_in[i] + z[i]
                z[i] += 1
            for q in range(n_queries):
                buf[i, q, k] = signals[m, j0 + i, q]


@jit
def _median_sorted(xs, n, skip_rank):
    """Median of the sorted ``xs[:n]`` with the element at rank ``skip_rank`` removed.

    ``skip_rank = -1`` removes nothing. An even count gives ``(a + b) / 2`` of
    the two middle values, as ``numpy.median``.
    """
    m = n if skip_rank < 0 else n - 1
    if m % 2 == 1:
        k = m // 2
        if skip_rank >= 0 and k >= skip_rank:
            k += 1
        return xs[k]
    k1 = m // 2 - 1
    k2 = m // 2
    if skip_rank >= 0:
        if k1 >= skip_rank:
            k1 += 1
        if k2 >= skip_rank:
            k2 += 1
    return (xs[k1] + xs[k2]) / 2.0


@jit
def _rank(xs, n, v):
    """Index of a value equal to ``v`` in the sorted ``xs[:n]`` (binary search)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@parallel_jit
def shadow_stats(signals, keep, target, start, stop, median, mu_in, ss_in, mu_out, ss_out, n_in):
    """IN/OUT statistics over every model except ``target``, for examples ``start:stop``.

    Outputs have shape ``(stop - start, n_queries)``: ``mu_*`` the mean (or the
    median when ``median``), ``ss_*`` the sum of squared deviations about the
    mean; NaN for an empty set; ``n_in`` (int64, ``(stop - start,)``) the
    number of IN shadows. Returns the count of non-finite sums.
    """
    n_models = signals.shape[0]
    n_queries = signals.shape[2]
    n_c = stop - start
    n_blocks = (n_c + BLOCK - 1) // BLOCK
    bad = 0
    for b in prange(n_blocks):
        j0 = start + b * BLOCK
        j1 = min(j0 + BLOCK, stop)
        r0 = j0 - start
        r1 = j1 - start
        bs = j1 - j0
        cnt = n_in[r0:r1]
        n_out = np.empty(bs, dtype=np.int64)
        bad += _moments(
            signals,
            keep,
            target,
            j0,
            j1,
            cnt,
            n_out,
            mu_in[r0:r1],
            ss_in[r0:r1],
            mu_out[r0:r1],
            ss_out[r0:r1],
        )
        if median:
            buf = np.empty((bs, n_queries, n_models))
            _gather(signals, keep, target, j0, j1, cnt, buf)
            for i in range(bs):
                for q in range(n_queries):
                    if cnt[i] > 0:
                        mu_in[r0 + i, q] = _median_select(buf[i, q, :], cnt[i])
                    if n_out[i] > 0:
                        mu_out[r0 + i, q] = _median_select(buf[i, q, cnt[i] :], n_out[i])
    return bad


#: a downdated ss below this share of the full-set ss has lost digits to cancellation and is
#: recomputed exactly (two passes over the remaining models)
DOWNDATE_LOSS = 1e-4


@jit
def _downdate(n, mean, ss, v):
    """Mean and ss of a set of ``n`` values without the value ``v`` (inverse Welford step).

    ``mean' = mean + (mean − v)/(n − 1)``, ``ss' = ss − (v − mean)(v − mean')``,
    clamped at 0 against rounding; exactly 0 when one value is left.
    """
    if n <= 1:
        return np.nan, np.nan
    mean1 = mean + (mean - v) / (n - 1)
    if n == 2:
        return mean1, 0.0
    ss1 = ss - (v - mean) * (v - mean1)
    return mean1, max(ss1, 0.0)


@parallel_jit
def loo_stats(signals, keep, start, stop, median, mu_in, ss_in, mu_out, ss_out):
    """Leave-one-out IN/OUT statistics for every model as target, examples ``start:stop``.

    Outputs have shape ``(n_models, stop - start, n_queries)``: row ``t`` holds
    the statistics over all models but ``t``. The full-set statistics of an
    example are computed once, then downdated for each target whose own value
    is in the set (O(n_models) per example and query instead of
    O(n_models²)). For the median one sort per example and query serves every
    target: the target's value is found by binary search and its rank skipped.
    Returns the count of non-finite sums.
    """
    n_models = signals.shape[0]
    n_queries = signals.shape[2]
    n_c = stop - start
    n_blocks = (n_c + BLOCK - 1) // BLOCK
    bad = 0
    for b in prange(n_blocks):
        j0 = start + b * BLOCK
        j1 = min(j0 + BLOCK, stop)
        r0 = j0 - start
        bs = j1 - j0
        n_in = np.empty(bs, dtype=np.int64)
        n_out = np.empty(bs, dtype=np.int64)
        f_mu_in = np.empty((bs, n_queries))
        f_ss_in = np.empty((bs, n_queries))
        f_mu_out = np.empty((bs, n_queries))
        f_ss_out = np.empty((bs, n_queries))
        bad += _moments(
            signals, keep, -1, j0, j1, n_in, n_out, f_mu_in, f_ss_in, f_mu_out, f_ss_out
        )
        buf = np.empty((bs if median else 0, n_queries, n_models))
        med_in = np.empty((bs, n_queries))
        med_out = np.empty((bs, n_queries))
        if median:
            _gather_sorted(signals, keep, -1, j0, j1, n_in, buf)
            for i in range(bs):
                for q in range(n_queries):
                    med_in[i, q] = _median_sorted(buf[i, q, :], n_in[i], -1) if n_in[i] else np.nan
                    med_out[i, q] = (
                        _median_sorted(buf[i, q, n_in[i] :], n_out[i], -1) if n_out[i] else np.nan
                    )
        for t in range(n_models):
            for i in range(bs):
                j = j0 + i
                r = r0 + i
                member = keep[t, j]
                for q in range(n_queries):
                    v = signals[t, j, q]
                    if member:
                        mean1, ss1 = _downdate(n_in[i], f_mu_in[i, q], f_ss_in[i, q], v)
                        if ss1 < DOWNDATE_LOSS * f_ss_in[i, q]:
                            mean1, ss1 = _exact(signals, keep, t, j, q, True)
                        if median and n_in[i] > 1:
                            xs = buf[i, q, :]
                            mean1 = _median_sorted(xs, n_in[i], _rank(xs, n_in[i], v))
                        mu_in[t, r, q] = mean1
                        ss_in[t, r, q] = ss1
                        mu_out[t, r, q] = med_out[i, q] if median else f_mu_out[i, q]
                        ss_out[t, r, q] = f_ss_out[i, q]
                    else:
                        mean1, ss1 = _downdate(n_out[i], f_mu_out[i, q], f_ss_out[i, q], v)
                        if ss1 < DOWNDATE_LOSS * f_ss_out[i, q]:
                            mean1, ss1 = _exact(signals, keep, t, j, q, False)
                        if median and n_out[i] > 1:
                            xs = buf[i, q, n_in[i] :]
                            mean1 = _median_sorted(xs, n_out[i], _rank(xs, n_out[i], v))
                        mu_out[t, r, q] = mean1
                        ss_out[t, r, q] = ss1
                        mu_in[t, r, q] = med_in[i, q] if median else f_mu_in[i, q]
                        ss_in[t, r, q] = f_ss_in[i, q]
    return bad


@jit
def online_scores(s, mu_in, ss_in, n_in, mu_out, ss_out, n_out, var_floor, out):
    """Online LiRA score per example, averaged over queries, with per-example variances.

    ``var = max(ss / n, var_floor)``; ``out[j] = mean_q [½ d_out²/var_out − ½ d_in²/var_in
    + ½ log(var_out / var_in)]``. Inputs ``(n, Q)``, counts ``(n,)``. Returns the number
    of variances raised to ``var_floor``.
    """
    n_examples = s.shape[0]
    n_queries = s.shape[1]
    raised = 0
    for j in range(n_examples):
        total = 0.0
        for q in range(n_queries):
            v_in = ss_in[j, q] / n_in[j]
            v_out = ss_out[j, q] / n_out[j]
            if v_in < var_floor:
                v_in = var_floor
                raised += 1
            if v_out < var_floor:
                v_out = var_floor
                raised += 1
            d_in = s[j, q] - mu_in[j, q]
            d_out = s[j, q] - mu_out[j, q]
            total += 0.5 * (d_out * d_out / v_out - d_in * d_in / v_in)
            total += 0.5 * (math.log(v_out) - math.log(v_in))
        out[j] = total / n_queries
    return raised
