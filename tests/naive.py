"""Slow, obviously-correct reference implementations (stumpy's ``naive.X`` ↔ ``core.X``).

Part 1 holds the twin of every public numba kernel of ``mis/_kernels/<module>.py``: the same
name and parameters, the same outputs, computed with plain loops and scipy
(tests/test_naive_twins.py checks that none is missing and compares each pair on random
inputs). Part 2 holds references of public functions of the package, grouped under a comment
naming the function they mirror. Nothing here is optimised: clarity is the point.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp

# ############################################################################################
# Part 1. Kernel twins: mis/_kernels/<module>.py  <->  naive.<same name>
# ############################################################################################
# Each public numba kernel has a twin here with the same name and parameters: it writes the
# same ``out`` arrays and returns the same values, computed the slow, obvious way (Python
# loops, scipy). Arguments that only select a kernel's fast path are accepted and unused.
# tests/test_naive_twins.py checks that every kernel has its twin and compares each pair.

# ============================================================================================
# mis._kernels.random: splitmix64 streams (stream_state, next_below, two_below)
# ============================================================================================
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    """The splitmix64 output function on Python integers (Vigna's splitmix64.c)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_state(seed, index) -> int:
    """Initial state of stream ``index`` under ``seed``: mix64(seed XOR mix64(index + golden))."""
    return _mix64(int(seed) ^ _mix64((int(index) + _GOLDEN) & _MASK64))


def next_below(state, n) -> tuple[int, int]:
    """Advance the state by the golden gamma; draw ``(high 32 bits of mix64) · n >> 32``."""
    state = (int(state) + _GOLDEN) & _MASK64
    return state, ((_mix64(state) >> 32) * int(n)) >> 32


def two_below(state, n) -> tuple[int, int, int]:
    """Advance once; two draws in [0, n) from the high, then the low 32 bits of one output."""
    state = (int(state) + _GOLDEN) & _MASK64
    r = _mix64(state)
    return state, ((r >> 32) * int(n)) >> 32, ((r & 0xFFFFFFFF) * int(n)) >> 32


# ============================================================================================
# mis._kernels.roc: ROC points, metrics of a weighted sample, bootstrap and jackknife
# ============================================================================================
def roc_points(labels, is_end):
    """(fps, tps, ends): false / true positives above each tie-group end, from (0, 0).

    ``labels`` (nonzero = member) and ``is_end`` are in decreasing order of score.
    """
    labels = np.asarray(labels)
    fps, tps, ends = [0.0], [0.0], []
    for s in range(len(labels)):
        if is_end[s]:
            fps.append(float(np.sum(labels[: s + 1] == 0)))
            tps.append(float(np.sum(labels[: s + 1] != 0)))
            ends.append(s)
    return np.array(fps), np.array(tps), np.array(ends, dtype=np.int64)


def _roc_vertices(cn, cp, neg_end, pos_lo, pos_hi, n_groups):
    """Vertices (FPR, TPR) of the weighted ROC curve described by the kernels' layout.

    Group g (tie group holding a non-member) runs from (FP above it, TP strictly above it)
    to (FP in it or above, TP in it or above); members below the last one end at (1, 1).
    """
    neg, pos = float(cn[-1]), float(cp[-1])
    vertices = [(0.0, 0.0)]
    above = 0
    for g in range(n_groups):
        vertices.append((cn[above] / neg, cp[pos_lo[g]] / pos))
        vertices.append((cn[neg_end[g]] / neg, cp[pos_hi[g]] / pos))
        above = neg_end[g]
    vertices.append((1.0, 1.0))
    return vertices


def roc_metrics(
    cn, cp, neg_end, pos_lo, pos_hi, n_groups, simple, fprs, strict, fpr_min, log_table, out
):
    """TPR at each FPR level, AUC and log-AUC of one weighted sample, into ``out`` (k + 2,).

    From the curve's vertices: the largest TPR at a vertex with FPR <= α (< α when strict);
    the trapezoid area; the log-AUC as the exact integral of each straight segment
    TPR(f) = c + m f against d ln f over [max(f0, fpr_min), f1], over ln(1 / fpr_min).
    NaN everywhere when a class has zero weight. ``simple`` and ``log_table`` (fast paths of
    the kernel) are unused.
    """
    if cn[-1] <= 0 or cp[-1] <= 0:
        out[:] = np.nan
        return
    vertices = _roc_vertices(cn, cp, neg_end, pos_lo, pos_hi, n_groups)
    k = len(fprs)
    for j, alpha in enumerate(fprs):
        out[j] = max(t for f, t in vertices if (f < alpha if strict else f <= alpha))
    auc = 0.0
    log_area = 0.0
    for (f0, t0), (f1, t1) in itertools.pairwise(vertices):
        auc += (f1 - f0) * (t0 + t1) / 2.0
        a = max(f0, fpr_min)
        if f1 > f0 and f1 > a:
            slope = (t1 - t0) / (f1 - f0)
            log_area += (t0 - slope * f0) * math.log(f1 / a) + slope * (f1 - a)
    out[k] = auc
    out[k + 1] = log_area / math.log(1.0 / fpr_min)


def _metrics_of_weights(w_neg, w_pos, neg_perm, pos_perm, layout, fprs, strict, fpr_min, out):
    """Metrics of every scoring s: weights (scoring 0's class order) read through perm[s]."""
    neg_end, pos_lo, pos_hi, n_groups = layout
    for s in range(neg_perm.shape[0]):
        cn = np.concatenate([[0], np.cumsum(np.asarray(w_neg)[neg_perm[s]])])
        cp = np.concatenate([[0], np.cumsum(np.asarray(w_pos)[pos_perm[s]])])
        roc_metrics(
            cn, cp, neg_end[s], pos_lo[s], pos_hi[s], n_groups[s], None, fprs, strict, fpr_min,
            None, out[s],
        )  # fmt: skip


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
    """Metrics of every resample and scoring, (n_resamples, n_scorings, k + 2).

    Resample b reads stream b of ``seed``. Stratified (``n_clusters == 0``): each class,
    non-members first, is drawn with replacement to its own size, two draws per
    :func:`two_below` and a last :func:`next_below` for an odd size; a draw r adds one to
    the weight of the r-th of its class. Cluster mode: ``n_clusters`` draws of
    :func:`next_below` choose clusters, and every observation weighs its cluster's count.
    """
    n_scorings, n_neg = neg_perm.shape
    n_pos = pos_perm.shape[1]
    layout = (neg_end, pos_lo, pos_hi, n_groups)
    reps = np.empty((n_resamples, n_scorings, len(fprs) + 2))
    for b in range(n_resamples):
        state = stream_state(seed, b)
        if n_clusters == 0:
            w_neg, w_pos = [0] * n_neg, [0] * n_pos
            for w in (w_neg, w_pos):
                for _ in range(len(w) // 2):
                    state, r1, r2 = two_below(state, len(w))
                    w[r1] += 1
                    w[r2] += 1
                if len(w) % 2:
                    state, r = next_below(state, len(w))
                    w[r] += 1
        else:
            counts = [0] * n_clusters
            for _ in range(n_clusters):
                state, r = next_below(state, n_clusters)
                counts[r] += 1
            w_neg = [counts[c] for c in neg_clusters]
            w_pos = [counts[c] for c in pos_clusters]
        _metrics_of_weights(
            w_neg, w_pos, neg_perm, pos_perm, layout, fprs, strict, fpr_min, reps[b]
        )
    return reps


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
    """Metrics with block g left out (weight 0, all others 1), (n_blocks, n_scorings, k + 2)."""
    layout = (neg_end, pos_lo, pos_hi, n_groups)
    out = np.empty((n_blocks, neg_perm.shape[0], len(fprs) + 2))
    for g in range(n_blocks):
        w_neg = [0 if blk == g else 1 for blk in neg_blocks]
        w_pos = [0 if blk == g else 1 for blk in pos_blocks]
        _metrics_of_weights(w_neg, w_pos, neg_perm, pos_perm, layout, fprs, strict, fpr_min, out[g])
    return out


# ============================================================================================
# mis._kernels.attacks_signals: the logit transforms
# ============================================================================================
def logit_transform(logits, labels, start, stop, kind, out):
    """``out[m, j, q]`` for examples start:stop, with scipy's logsumexp row by row.

    kind 0 (SIGNAL): ℓ_y − logsumexp_{c≠y} ℓ_c; kind 1 (LOG_PROB): ℓ_y − logsumexp_c ℓ_c.
    Returns the number of non-finite logits in the range (the values are then meaningless).
    """
    n_models, _, n_queries, _ = logits.shape
    for m in range(n_models):
        for j in range(start, stop):
            y = int(labels[j])
            for q in range(n_queries):
                row = np.asarray(logits[m, j, q], dtype=np.float64)
                others = row if kind == 1 else np.delete(row, y)
                with np.errstate(invalid="ignore"):
                    out[m, j, q] = row[y] - logsumexp(others)
    return int((~np.isfinite(np.asarray(logits[:, start:stop], dtype=np.float64))).sum())


# ============================================================================================
# mis._kernels.lira: IN/OUT statistics over shadow models, online scores
# ============================================================================================
def shadow_stats(signals, keep, target, start, stop, median, mu_in, ss_in, mu_out, ss_out, n_in):
    """Per example j in start:stop and query q, over the models other than ``target``:
    the centre (mean, or median) and the sum of squared deviations about the mean of the
    IN values (``keep``) and of the OUT values; NaN for an empty set. ``n_in`` counts the
    IN shadows. The returned number counts the (example, query) pairs holding a non-finite
    value (the caller raises; their outputs, NaN here, are not specified)."""
    n_models, _, n_queries = signals.shape
    shadows = [m for m in range(n_models) if m != target]
    bad = 0
    for r, j in enumerate(range(start, stop)):
        n_in[r] = sum(bool(keep[m, j]) for m in shadows)
        for q in range(n_queries):
            if not np.isfinite([signals[m, j, q] for m in shadows]).all():
                bad += 1
                mu_in[r, q] = ss_in[r, q] = mu_out[r, q] = ss_out[r, q] = np.nan
                continue
            for member, mu, ss in ((True, mu_in, ss_in), (False, mu_out, ss_out)):
                v = np.array([signals[m, j, q] for m in shadows if bool(keep[m, j]) == member])
                if v.size == 0:
                    mu[r, q] = ss[r, q] = np.nan
                else:
                    mu[r, q] = np.median(v) if median else v.mean()
                    ss[r, q] = np.sum((v - v.mean()) ** 2)
    return bad


def loo_stats(signals, keep, start, stop, median, mu_in, ss_in, mu_out, ss_out):
    """:func:`shadow_stats` with every model t in turn left out, into row t of the outputs
    ``(n_models, stop - start, n_queries)``. The returned number counts the (example,
    query) pairs with a non-finite value on any model, once (outputs NaN, not specified)."""
    n_models, _, n_queries = signals.shape
    n_in = np.empty(stop - start, dtype=np.int64)
    for t in range(n_models):
        shadow_stats(
            signals, keep, t, start, stop, median, mu_in[t], ss_in[t], mu_out[t], ss_out[t], n_in
        )
    bad = 0
    for r, j in enumerate(range(start, stop)):
        for q in range(n_queries):
            if not np.isfinite(signals[:, j, q]).all():
                bad += 1
                for arr in (mu_in, ss_in, mu_out, ss_out):
                    arr[:, r, q] = np.nan
    return bad


def online_scores(s, mu_in, ss_in, n_in, mu_out, ss_out, n_out, var_floor, out):
    """``out[j]`` = mean over queries of log N(s; μ_in, σ²_in) − log N(s; μ_out, σ²_out)
    (scipy), σ² = max(ss / n, var_floor); returns how many variances were raised."""
    raised = 0
    for j in range(s.shape[0]):
        terms = []
        for q in range(s.shape[1]):
            v_in = ss_in[j, q] / n_in[j]
            v_out = ss_out[j, q] / n_out[j]
            raised += int(v_in < var_floor) + int(v_out < var_floor)
            v_in, v_out = max(v_in, var_floor), max(v_out, var_floor)
            terms.append(
                stats.norm.logpdf(s[j, q], mu_in[j, q], math.sqrt(v_in))
                - stats.norm.logpdf(s[j, q], mu_out[j, q], math.sqrt(v_out))
            )
        out[j] = sum(terms) / len(terms)
    return raised


# ============================================================================================
# mis._kernels.rq: r_Q of blocks (Algorithm 1, stable form), permutation counts
# ============================================================================================
RQ_OK, RQ_NON_FINITE, RQ_ONE_POINT, RQ_ZERO_VARIANCE = 0, 1, 2, 3  # status codes


def rq_block(L, h, use_hash, ddof, means, kept, deltas, variances, ratios, x1):
    """r_Q of one block (K, N) with its diagnostics (layout of :mod:`mis._kernels.rq`).

    Mean losses by ``math.fsum``; checkpoints sorted by mean (ties: lower index); a
    checkpoint is a duplicate when an earlier kept one has its hash (``use_hash``) or its
    exact loss row; δ_p = m_p − m_0, σ²_p = numpy var(L_p − L_0, ddof); ratio δ²/(2σ²) with
    δ = 0 → 0 and σ² = 0 → inf. ``x1`` is kernel scratch (unused). Returns (status, r_Q,
    δ_2, n_distinct, best checkpoint, position of the minimum or -1).
    """
    L = np.asarray(L, dtype=np.float64)
    n_ck, n_val = L.shape
    if not np.isfinite(L).all():
        return RQ_NON_FINITE, np.nan, np.nan, 0, -1, -1
    m = [math.fsum(row) / n_val for row in L]
    means[:] = m
    points = []
    for c in sorted(range(n_ck), key=lambda k: (m[k], k)):
        if use_hash:
            dup = any(h[p] == h[c] for p in points)
        else:
            dup = any(np.array_equal(L[p], L[c]) for p in points)
        if not dup:
            points.append(c)
    n = len(points)
    kept[:n] = points
    best = points[0]
    deltas[0], variances[0], ratios[0] = 0.0, 0.0, np.inf
    if n == 1:
        return RQ_ONE_POINT, np.inf, np.nan, 1, best, -1
    r_q, argmin, all_zero = np.inf, -1, True
    for p in range(1, n):
        delta = m[points[p]] - m[best]
        var = float(np.var(L[points[p]] - L[best], ddof=ddof))
        all_zero = all_zero and var == 0.0
        ratio = 0.0 if delta == 0.0 else np.inf if var == 0.0 else delta**2 / (2.0 * var)
        deltas[p], variances[p], ratios[p] = delta, var, ratio
        if ratio < r_q:
            r_q, argmin = ratio, p
    status = (RQ_ZERO_VARIANCE if all_zero else RQ_OK) if argmin == -1 else RQ_OK
    return status, r_q, deltas[1], n, best, argmin


def rq_many(L, H, use_hash, ddof, rq, delta2, n_distinct, best, argmin_ck, status):
    """:func:`rq_block` of every (run, quantizer) block of L (R, Q, K, N) into the outputs;
    ``argmin_ck`` is the checkpoint of the minimum (-1 if none)."""
    n_runs, n_q, n_ck, _ = L.shape
    for r in range(n_runs):
        for q in range(n_q):
            kept = np.empty(n_ck, dtype=np.int64)
            st, v, d2, nd, bst, am = rq_block(
                L[r, q], H[r, q] if use_hash else None, use_hash, ddof, np.empty(n_ck), kept,
                np.empty(n_ck), np.empty(n_ck), np.empty(n_ck), None,
            )  # fmt: skip
            status[r, q], rq[r, q], delta2[r, q] = st, v, d2
            n_distinct[r, q], best[r, q] = nd, bst
            argmin_ck[r, q] = kept[am] if am >= 0 else -1


def _correlation_numerators(rx, ry, sx, sy, perm):
    """Σ_i rx_i ry_π(i) and Σ_{i<j} sx_ij sy_π(i)π(j)."""
    q = len(rx)
    rho = sum(rx[i] * ry[perm[i]] for i in range(q))
    tau = sum(sx[i, j] * sy[perm[i], perm[j]] for i in range(q) for j in range(i + 1, q))
    return rho, tau


def exact_permutation_counts(rx, ry, sx, sy, rho_obs, tau_obs, tol):
    """Over all q! permutations π (itertools): how many have |ρ_π| >= |ρ_obs| − tol, how many
    |τ_π| >= |τ_obs| − tol (numerators, as the kernel), and q!."""
    n_rho = n_tau = total = 0
    for perm in itertools.permutations(range(len(rx))):
        rho, tau = _correlation_numerators(rx, ry, sx, sy, perm)
        n_rho += abs(rho) >= abs(rho_obs) - tol
        n_tau += abs(tau) >= abs(tau_obs) - tol
        total += 1
    return n_rho, n_tau, total


def random_permutation_counts(rx, ry, sx, sy, rho_obs, tau_obs, tol, seed, n_perm):
    """As :func:`exact_permutation_counts` over ``n_perm`` random permutations; permutation b
    is the Fisher–Yates shuffle (i = q−1 … 1, swap i with next_below(i + 1)) of stream b."""
    n_rho = n_tau = 0
    for b in range(n_perm):
        state = stream_state(seed, b)
        perm = list(range(len(rx)))
        for i in range(len(rx) - 1, 0, -1):
            state, j = next_below(state, i + 1)
            perm[i], perm[j] = perm[j], perm[i]
        rho, tau = _correlation_numerators(rx, ry, sx, sy, perm)
        n_rho += abs(rho) >= abs(rho_obs) - tol
        n_tau += abs(tau) >= abs(tau_obs) - tol
    return n_rho, n_tau


# ============================================================================================
# mis._kernels.quant: the L_p range search of the affine grids
# ============================================================================================
def pow_approx(x, p):
    """``x ** p``, exactly (float64): the kernel approximates it within POW_REL_ERR."""
    return float(x) ** float(p)


def exact_error(row, s, z, qmax, p):
    """Σ_k |fl(fl(q_k·s) − x_k)|^p: float32 grid arithmetic element by element,
    q_k = clamp(rint(x_k / s), −z, qmax − z), float64 powers summed in order."""
    s, z, qmax = np.float32(s), np.float32(z), np.float32(qmax)
    total = 0.0
    for v in np.asarray(row, dtype=np.float32):
        q = min(max(np.rint(v / s), -z), qmax - z)
        total += math.pow(float(abs(q * s - v)), p)
    return total


def _grid_of(lo, hi, factor, n_levels, symmetric):
    """(s, z) of the range (f·lo, f·hi) in float32: s = max((f·hi − f·lo)/(L − 1), tiny),
    z = L // 2 (symmetric) or rint(−f·lo / s)."""
    f32 = np.float32
    mn, mx = f32(lo) * f32(factor), f32(hi) * f32(factor)
    s = max((mx - mn) / f32(n_levels - 1), f32(np.finfo(np.float32).tiny))
    z = f32(n_levels // 2) if symmetric else np.rint(-mn / s)
    return s, z


def lp_brackets(x, lo, hi, factors, n_levels, symmetric, p, coef, poly_bound, low, high):
    """The tightest brackets: ``low = high`` = :func:`exact_error` of every row and
    candidate. ``coef`` and ``poly_bound`` (the kernel's screening) are unused."""
    for r in range(x.shape[0]):
        for i, f in enumerate(factors):
            s, z = _grid_of(lo[r], hi[r], f, n_levels, symmetric)
            low[r, i] = high[r, i] = exact_error(x[r], s, z, n_levels - 1, p)


def lp_search_rows(x, lo, hi, factors, n_levels, symmetric, p, coef, poly_bound, best, n_exact):
    """``best[r]``: the first candidate of least :func:`exact_error`, every candidate
    evaluated exactly (so ``n_exact[r]`` = the number of candidates)."""
    errors = np.empty((x.shape[0], len(factors)))
    lp_brackets(x, lo, hi, factors, n_levels, symmetric, p, coef, poly_bound, errors, errors)
    for r in range(x.shape[0]):
        best[r] = int(np.argmin(errors[r]))
        n_exact[r] = len(factors)


# ============================================================================================
# mis._kernels.stacked: the stacked Aubinais quantizers
# ============================================================================================
STACKED_SIGN, STACKED_TERNARY, STACKED_BBIT = 0, 1, 2  # quantizer kinds of quantize_rows


def smallest_mask(a, kz, mask=None):
    """The kz smallest of ``a`` in (value, index) order: the first kz of a stable sort.

    Written into ``mask`` when given (as the kernel); also returned.
    """
    out = np.zeros(len(a), dtype=bool)
    out[np.argsort(np.asarray(a), kind="stable")[: max(kz, 0)]] = True
    if mask is not None:
        mask[:] = out
    return out


def quantize_rows(w, alpha, kinds, params, out):
    """Every row of w (K, N) float32 under every quantizer, into out (K, Q, N) float32.

    SIGN: ±1 (sign(0) = +1). TERNARY with sparsity x: the int(x·N + 0.5) smallest |w|
    (ties: lower index) → 0, the rest ±1. BBIT with b bits: n = 2^(b−1) steps of
    α/n (float32), the smallest k in 1..n with fl(k·step) >= |w| (else n), sign kept.
    """
    f32 = np.float32
    n = w.shape[1]
    for r in range(w.shape[0]):
        sign = np.where(w[r] >= 0, f32(1), f32(-1)).astype(np.float32)
        for q, (kind, param) in enumerate(zip(kinds, params, strict=True)):
            if kind == STACKED_SIGN:
                out[r, q] = sign
            elif kind == STACKED_TERNARY:
                out[r, q] = np.where(smallest_mask(np.abs(w[r]), int(param * n + 0.5)), 0, sign)
            else:
                steps = 2 ** (int(param) - 1)
                step = f32(alpha[r]) / f32(steps)
                for i in range(n):
                    mag = abs(w[r, i])
                    k = next((j for j in range(1, steps + 1) if f32(j) * step >= mag), steps)
                    out[r, q, i] = sign[i] * (f32(k) * step)


# ============================================================================================
# mis._kernels.fused: minibatch Adam for many linear classifiers (epoch_permutation, epoch)
# ============================================================================================
def epoch_permutation(seed, epoch, out):
    """Fisher–Yates from the last position down, j uniform in [0, i] from stream ``epoch``."""
    perm = list(range(len(out)))
    state = stream_state(seed, epoch)
    for i in range(len(perm) - 1, 0, -1):
        state, j = next_below(state, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    out[:] = perm


def linear_adam_epoch(
    phi, y, w, b, m_w, v_w, m_b, v_b, seeds, epoch, step, batch_size, lr, beta1, beta2, eps,
    weight_decay,
):  # fmt: skip
    """One epoch for each model with numpy: batch loss = mean BCE-with-logits (one output) or
    softmax cross-entropy, its gradient in closed form, torch's Adam update (float64)."""
    n = phi.shape[1]
    t = step
    for k in range(phi.shape[0]):
        order = np.empty(n, dtype=np.int64)
        epoch_permutation(seeds[k], epoch, order)
        t = step
        for s0 in range(0, n, batch_size):
            idx = order[s0 : s0 + batch_size]
            x = phi[k, idx]  # (B, F)
            z = x @ w[k].T + b[k]  # (B, C)
            if w.shape[1] == 1:
                d = (1.0 / (1.0 + np.exp(-z[:, 0])) - y[k, idx])[:, None]
            else:
                p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
                d = p - np.eye(w.shape[1])[y[k, idx]]
            d = d / len(idx)
            gw, gb = d.T @ x, d.sum(axis=0)
            t += 1
            for p_, g, m, v in ((w[k], gw, m_w[k], v_w[k]), (b[k], gb, m_b[k], v_b[k])):
                g = g + weight_decay * p_
                m[...] = m + (1 - beta1) * (g - m)
                v[...] = v * beta2 + (1 - beta2) * g * g
                denom = np.sqrt(v) / math.sqrt(1 - beta2 ** float(t)) + eps
                p_[...] = p_ - (lr / (1 - beta1 ** float(t))) * m / denom
    return t


# ============================================================================================
# mis._kernels.streaming: streaming r_Q over every distinct quantized point
# ============================================================================================
def _naive_losses(flat, c_out, phi_t, y):
    """Logits (C, n_val) — for C = 2 row 0 is z₁ − z₀, row 1 zero — and per-sample losses."""
    flat = np.asarray(flat, dtype=np.float64)
    w = flat[c_out:].reshape(c_out, phi_t.shape[0])
    z = w @ phi_t + flat[:c_out, None]  # (C, n_val)
    if c_out <= 2:
        if c_out == 2:
            z = np.stack([z[1] - z[0], np.zeros(z.shape[1])])
        a = np.where(y == 0, z[0], -z[0])
        return z, np.logaddexp(0.0, a)
    return z, logsumexp(z, axis=0) - z[y, np.arange(z.shape[1])]


def point_losses(flat, c_out, phi_t, y, z, out):
    """Logits ``W φ + b`` (C = 2: their difference) and per-sample BCE-with-logits (C = 1),
    two-class cross-entropy softplus(±(z₁ − z₀)) (C = 2) or cross-entropy."""
    zz, out[...] = _naive_losses(flat, c_out, phi_t, y)
    z[: 1 if c_out == 2 else c_out] = zz[: 1 if c_out == 2 else c_out]


def _stored_values(codes, scale, bias):
    return np.concatenate([bias, (codes.astype(np.float32) * np.float32(scale)).astype(np.float32)])


def stream_update(
    flat, scale, prev, mult, epoch, phi_t, y, n_changes, count, fp, table, pid, pool, n_pool,
    scales, biases, means, m2, epochs, zrow, n_incr, losses,
):  # fmt: skip
    """Each row that differs from ``prev``: counted; its point looked up among the row's
    stored points by value (the hash table mirrors the kernel's open addressing); a new
    point is appended with codes = value / scale, its mean loss and Σ (ℓ − mean)², all
    computed afresh. ``zrow`` holds the fresh logits of the row's current point."""
    c_out = biases.shape[2]
    bits = np.ascontiguousarray(flat).view(np.uint32)
    size = table.shape[1]
    for r in range(flat.shape[0]):
        n_diff = int(np.sum(flat[r] != prev[r]))
        if n_diff == 0:
            continue
        n_changes[r] += 1
        if c_out != 1 or n_incr[r] < 0 or n_incr[r] >= 64 or 4 * n_diff > flat.shape[1]:
            n_incr[r] = 0
        else:
            n_incr[r] += 1
        prev[r] = flat[r]
        zz, _ = _naive_losses(flat[r], c_out, phi_t, y)
        zrow[r, : 1 if c_out == 2 else c_out] = zz[: 1 if c_out == 2 else c_out]
        h = sum(int(b) * int(m) for b, m in zip(bits[r], mult, strict=True)) & _MASK64
        stored = [
            _stored_values(pool[pid[r, e]], scales[r, e], biases[r, e]) for e in range(count[r])
        ]
        if any(np.array_equal(v, flat[r]) for v in stored):
            continue
        e = int(count[r])
        if e >= fp.shape[1] or n_pool[0] >= pool.shape[0]:
            return 10  # FULL
        q = flat[r, c_out:] / scale[r]
        if not (np.all(q == np.floor(q)) and np.all(np.abs(q) <= 127)):
            return 11  # NOT_A_CODE
        pool[n_pool[0]] = q.astype(np.int8)  # the next free row of the pool
        pid[r, e] = n_pool[0]
        n_pool[0] += 1
        scales[r, e] = scale[r]
        biases[r, e] = flat[r, :c_out]
        _, losses[:] = _naive_losses(flat[r], c_out, phi_t, y)
        means[r, e] = float(np.sum(losses)) / len(losses)
        m2[r, e] = float(np.sum((losses - means[r, e]) ** 2))
        epochs[r, e] = epoch
        fp[r, e] = h
        slot = _mix64(h) & (size - 1)
        while table[r, slot] >= 0:
            slot = (slot + 1) & (size - 1)
        table[r, slot] = e
        count[r] = e + 1
    return 0


def stream_finalize(
    count, pid, pool, scales, biases, means, m2, epochs, phi_t, y, ddof, keep_best, rq,
    rq_kept, delta2, best_epoch, argmin_rank, n_recomputed, status,
):  # fmt: skip
    """Algorithm 1 as written (lines 11–18) over every stored point of each row, losses
    recomputed for all of them; ``rq_kept`` over the ``keep_best`` lowest-mean points.
    ``n_recomputed`` counts every point (the kernel recomputes fewer)."""
    c_out = biases.shape[2]
    for r in range(count.shape[0]):
        d = int(count[r])
        if d == 0:
            rq[r] = rq_kept[r] = delta2[r] = np.nan
            best_epoch[r], argmin_rank[r], n_recomputed[r], status[r] = -1, 0, 0, 1
            continue
        order = np.argsort(means[r, :d], kind="stable")
        best_epoch[r] = epochs[r, order[0]]
        n_recomputed[r] = d
        if d == 1:
            rq[r] = rq_kept[r] = np.inf
            delta2[r], argmin_rank[r], status[r] = np.nan, 0, 2
            continue
        points = [_stored_values(pool[pid[r, e]], scales[r, e], biases[r, e]) for e in order]
        L = [_naive_losses(v, c_out, phi_t, y)[1] for v in points]
        m = [means[r, e] for e in order]
        ratios = []
        for k in range(1, d):
            delta = m[k] - m[0]
            var = float(np.var(L[k] - L[0], ddof=ddof))
            ratios.append(0.0 if delta == 0 else np.inf if var == 0 else delta**2 / (2 * var))
        delta2[r] = m[1] - m[0]
        rq[r] = min(ratios)
        rq_kept[r] = min(ratios[: max(keep_best - 1, 0)], default=np.inf)
        finite = [i for i, v in enumerate(ratios) if v == rq[r] and v < np.inf]
        argmin_rank[r] = finite[0] + 1 if finite else 0
        status[r] = 0 if finite else 3  # no finite ratio: every variance was 0


# ############################################################################################
# Part 2. References of public functions (not kernels), by the function they mirror
# ############################################################################################


# ============================================================================================
# mis.metrics: roc_curve, tpr_at_fpr, roc_auc, log_roc_auc, bootstrap_roc, compare_roc
# ============================================================================================


def auc_pairwise(scores, labels) -> float:
    """AUC by counting every (member, non-member) pair; ties count 1/2."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def roc_rates(scores, labels):
    """(fpr, tpr) at every distinct threshold t (predict member iff score >= t), with (0, 0)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    n_pos = (labels == 1).sum()
    n_neg = (labels == 0).sum()
    fpr, tpr = [0.0], [0.0]
    for t in sorted(set(scores.tolist()), reverse=True):
        pred = scores >= t
        tpr.append(float((pred & (labels == 1)).sum() / n_pos))
        fpr.append(float((pred & (labels == 0)).sum() / n_neg))
    return np.array(fpr), np.array(tpr)


def tpr_at_fpr(scores, labels, alpha, strict=False) -> float:
    """Largest TPR over thresholds with FPR <= alpha (or < alpha when strict)."""
    fpr, tpr = roc_rates(scores, labels)
    ok = fpr < alpha if strict else fpr <= alpha
    return float(tpr[ok].max())


def log_auc_numeric(scores, labels, fpr_min=1e-5, n_grid=200_001) -> float:
    """Normalised area under TPR against log10(FPR) on [fpr_min, 1] by brute-force quadrature.

    The ROC is interpolated linearly in (FPR, TPR) between its points: an FPR x
    between two distinct ROC abscissae lies on the segment from the last point
    with FPR < x (top of a vertical run) to the first point with FPR >= x.
    """
    fpr, tpr = roc_rates(scores, labels)
    u = np.linspace(np.log10(fpr_min), 0.0, n_grid)
    x = 10.0**u
    j = np.searchsorted(fpr, x, side="left")
    i = j - 1
    y = tpr[i] + (tpr[j] - tpr[i]) * (x - fpr[i]) / (fpr[j] - fpr[i])
    return float(np.trapezoid(y, u) / (-np.log10(fpr_min)))


def bootstrap_replicates(
    scores, labels, fprs, seed, n_resamples, strict=False, fpr_min=1e-5, order_scores=None
):
    """Python-loop stratified bootstrap with the same random streams as the kernel.

    Resample b: non-members first, then members, each drawn with replacement to
    its own size, the k-th of a class being its k-th in decreasing order of
    score (stable); every metric recomputed from scratch on the resampled data.
    In a paired comparison the draws follow the order of the first scoring:
    pass it as ``order_scores``.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    order = np.argsort(-np.asarray(scores if order_scores is None else order_scores), kind="stable")
    neg = order[labels[order] == 0]
    pos = order[labels[order] == 1]
    reps = []
    for b in range(n_resamples):
        state_draws = _stratified_draws(seed, b, len(neg), len(pos))
        idx = np.concatenate([neg[state_draws[: len(neg)]], pos[state_draws[len(neg) :]]])
        s, y = scores[idx], labels[idx]
        row = [tpr_at_fpr(s, y, a, strict) for a in fprs]
        row += [auc_pairwise(s, y), log_auc_numeric(s, y, fpr_min, n_grid=20_001)]
        reps.append(row)
    return np.array(reps)


def _stratified_draws(seed, b, n_neg, n_pos):
    """The draws of stratified resample b (as :func:`bootstrap_metrics`), one stream for
    both classes in turn: two per :func:`two_below`, an odd size's last by :func:`next_below`."""
    state = stream_state(seed, b)
    out = []
    for size in (n_neg, n_pos):
        for _ in range(size // 2):
            state, r1, r2 = two_below(state, size)
            out += [r1, r2]
        if size % 2:
            state, r = next_below(state, size)
            out.append(r)
    return np.array(out, dtype=np.int64)


def auc_jackknife_acceleration(scores, labels) -> float:
    """BCa acceleration of the AUC from the delete-one jackknife, one sample per class.

    a = sum_j sum_i U_ji^3 / n_j^3 / (6 (sum_j sum_i U_ji^2 / n_j^2)^(3/2)),
    U_ji = (n_j - 1)(mean_i theta_(ji) - theta_(ji)), as in scipy.stats.bootstrap.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    num = den = 0.0
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        theta = []
        for i in idx:
            keep = np.ones(len(scores), dtype=bool)
            keep[i] = False
            theta.append(auc_pairwise(scores[keep], labels[keep]))
        theta = np.array(theta)
        n = len(idx)
        u = (n - 1) * (theta.mean() - theta)
        num += (u**3).sum() / n**3
        den += (u**2).sum() / n**2
    return num / (6 * den**1.5)


# ============================================================================================
# mis.security: rq (Algorithm 1 as written), rank_agreement (permutation p-values)
# ============================================================================================


def dedup_checkpoints(val_losses, qhash=None):
    """Keep one row per quantized point: first of each hash, or of each identical loss row."""
    L = np.asarray(val_losses, dtype=float)
    keep = []
    for k in range(L.shape[0]):
        if qhash is not None:
            dup = any(qhash[j] == qhash[k] for j in keep)
        else:
            dup = any(np.array_equal(L[j], L[k]) for j in keep)
        if not dup:
            keep.append(k)
    return L[keep]


def rq_algorithm1(val_losses, ddof=1):
    """Algorithm 1 of Aubinais et al. (2025) as written (lines 11-18), no deduplication.

    Lval[k] are the per-sample losses of checkpoint k; mval[k] their means.
    """
    Lval = [np.asarray(row, dtype=float) for row in val_losses]
    mval = [float(np.mean(row)) for row in Lval]
    K = len(Lval)
    idx = np.argsort(mval, kind="stable")  # line 11
    mval = [mval[i] for i in idx]  # line 12
    Lval = [Lval[i] for i in idx]  # line 13
    sigma2 = {}
    for k in range(1, K):  # lines 14-16 (k = 2..K, 0-based here)
        sigma2[k] = float(np.var(Lval[k] - Lval[0], ddof=ddof))
    inner = max(  # line 17
        sigma2[k] * ((mval[1] - mval[0]) / (mval[k] - mval[0])) ** 2 for k in range(1, K)
    )
    r = 0.5 / inner
    return r * (mval[1] - mval[0]) ** 2  # line 18


def permutation_pvalues(x, y):
    """Exact two-sided permutation p-values of Spearman ρ and Kendall τ_b, by itertools.

    Each statistic is recomputed from scratch (scipy) for every pairing of y's
    values with x's; p = share of pairings with |T| >= |t_obs|.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    rho_obs = stats.spearmanr(x, y).statistic
    tau_obs = stats.kendalltau(x, y).statistic
    n_rho = n_tau = total = 0
    for perm in itertools.permutations(range(len(y))):
        yp = y[list(perm)]
        n_rho += abs(stats.spearmanr(x, yp).statistic) >= abs(rho_obs) - 1e-9
        n_tau += abs(stats.kendalltau(x, yp).statistic) >= abs(tau_obs) - 1e-9
        total += 1
    return n_rho / total, n_tau / total


# ============================================================================================
# mis.attacks: lira_signal, lira, rmia; compat="carlini2022" (the reference code)
# ============================================================================================


def lira_signal_naive(logits, labels):
    """log p_y − log Σ_{c≠y} p_c with scipy's logsumexp, one row at a time."""
    logits = np.asarray(logits, dtype=np.float64)
    n_models, n_examples, n_queries, _ = logits.shape
    out = np.empty((n_models, n_examples, n_queries))
    for m in range(n_models):
        for j in range(n_examples):
            y = labels[j]
            for q in range(n_queries):
                row = logits[m, j, q]
                lp = row - logsumexp(row)
                out[m, j, q] = lp[y] - logsumexp(np.delete(lp, y))
    return out


def lira_naive(
    signals, keep, target, mode="online", fixed_variance=False, center="mean", var_floor=1e-12
):
    """LiRA for one target, example by example with scipy.stats.norm.

    The estimator of mis.attacks.lira: ML variances, pooled variance Σ SS / Σ n,
    every variance raised to at least var_floor, online log-likelihood ratio,
    offline log Φ.
    """
    signals = np.asarray(signals, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    n_models, n_examples, n_queries = signals.shape
    shadows = [m for m in range(n_models) if m != target]
    centre = np.median if center == "median" else np.mean
    mu = {True: np.empty((n_examples, n_queries)), False: np.empty((n_examples, n_queries))}
    var = {True: np.empty((n_examples, n_queries)), False: np.empty((n_examples, n_queries))}
    ss_tot = {True: 0.0, False: 0.0}
    n_tot = {True: 0, False: 0}
    for j in range(n_examples):
        for member in (True, False):
            if mode == "offline" and member:
                continue
            vals = signals[[m for m in shadows if keep[m, j] == member], j, :]  # (n_set, Q)
            for q in range(n_queries):
                mu[member][j, q] = centre(vals[:, q])
                var[member][j, q] = np.var(vals[:, q])
                ss_tot[member] += np.sum((vals[:, q] - vals[:, q].mean()) ** 2)
                n_tot[member] += len(vals)
    scores = np.empty(n_examples)
    for j in range(n_examples):
        total = 0.0
        for q in range(n_queries):
            s = signals[target, j, q]
            v_out = ss_tot[False] / n_tot[False] if fixed_variance else var[False][j, q]
            v_out = max(v_out, var_floor)
            if mode == "offline":
                total += stats.norm.logcdf(s, mu[False][j, q], np.sqrt(v_out))
            else:
                v_in = ss_tot[True] / n_tot[True] if fixed_variance else var[True][j, q]
                v_in = max(v_in, var_floor)
                total += stats.norm.logpdf(s, mu[True][j, q], np.sqrt(v_in))
                total -= stats.norm.logpdf(s, mu[False][j, q], np.sqrt(v_out))
        scores[j] = total / n_queries
    return scores


def carlini_score_py(opredictions, labels):
    """Transcription of the reference score.py for one model: logits (N, 1, A, C) → (N, A)."""
    predictions = opredictions - np.max(opredictions, axis=3, keepdims=True)
    predictions = np.array(np.exp(predictions), dtype=np.float64)
    predictions = predictions / np.sum(predictions, axis=3, keepdims=True)
    count = predictions.shape[0]
    y_true = predictions[np.arange(count), :, :, labels[:count]]
    predictions[np.arange(count), :, :, labels[:count]] = 0
    y_wrong = np.sum(predictions, axis=3)
    return np.log(y_true.mean(1) + 1e-45) - np.log(y_wrong.mean(1) + 1e-45)


def carlini_generate(keep, scores, check_keep, check_scores, offline=False, fix_variance=False):
    """Transcription of the reference plot.py generate_ours / generate_ours_offline.

    Python loop over examples to collect the IN/OUT values (truncated to the
    smallest count), median centre, np.std spread, std + 1e-30, two-sided
    logpdf offline; returns (prediction, answers) with lower prediction = member.
    """
    dat_in = []
    dat_out = []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(min(map(len, dat_in)), 100000)
    out_size = min(min(map(len, dat_out)), 100000)
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    prediction = []
    answers = []
    if offline:
        std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
        for ans, sc in zip(check_keep, check_scores, strict=True):
            score = stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
            prediction.extend(score.mean(1))
            answers.extend(ans)
        return prediction, answers
    dat_in = np.array([x[:in_size] for x in dat_in])
    mean_in = np.median(dat_in, 1)
    if fix_variance:
        std_in = np.std(dat_in)
        std_out = np.std(dat_in)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    for ans, sc in zip(check_keep, check_scores, strict=True):
        pr_in = -stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        score = pr_in - pr_out
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def carlini_global(check_keep, check_scores):
    """Transcription of the reference plot.py generate_global (lower prediction = member)."""
    prediction = []
    answers = []
    for ans, sc in zip(check_keep, check_scores, strict=True):
        prediction.extend(-sc.mean(1))
        answers.extend(ans)
    return prediction, answers


def rmia_naive(probs, keep, target, mode="offline", a=0.3, gamma=2.0, population=None):
    """RMIA for one target by the double loop over (x, z) of Zarifzadeh et al. (2024), Eq. 3–4."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 3:
        p = p.mean(axis=2)
    n_models, n_examples = p.shape
    refs = [m for m in range(n_models) if m != target]
    pop = list(range(n_examples)) if population is None else list(population)

    def pr(e):
        if mode == "online":
            return float(np.mean([p[m, e] for m in refs]))
        p_out = float(np.mean([p[m, e] for m in refs if not keep[m, e]]))
        return ((1 + a) * p_out + (1 - a)) / 2

    ratio = [p[target, e] / pr(e) for e in range(n_examples)]
    scores = np.empty(n_examples)
    for x in range(n_examples):
        zs = [z for z in pop if z != x]
        scores[x] = sum(ratio[x] >= gamma * ratio[z] for z in zs) / len(zs)
    return scores


# ============================================================================================
# mis.train: data.shift / random_flip_crop augmentations; TrajectoryRecorder keep-best
# ============================================================================================


def shift_image(x, dy, dx, mode):
    """Translate NCHW images pixel by pixel: out[i, j] = x[i - dy, j - dx], borders padded."""
    h, w = x.shape[2:]
    p = max(abs(dy), abs(dx))
    pad_mode = "reflect" if mode == "reflect" else "constant"
    pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=pad_mode)
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = pad[:, :, i - dy + p, j - dx + p]
    return out


def flip_crop(x, flip, offsets, padding):
    """Per image: mirror if flip[i], zero-pad by `padding`, crop at offsets[i] = (oy, ox)."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        img = x[i, :, :, ::-1] if flip[i] else x[i]
        padded = np.zeros((c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
        padded[:, padding : padding + h, padding : padding + w] = img
        oy, ox = offsets[i]
        out[i] = padded[:, oy : oy + h, ox : ox + w]
    return out


def keep_best(losses, hashes, epochs, b):
    """The b lowest-mean distinct (by hash) checkpoints of one run and quantizer.

    losses: (n_ckpt, n_val); hashes, epochs: (n_ckpt,). Among equal hashes the first
    checkpoint counts; ties in the mean keep the earlier checkpoint. Returns (losses,
    hashes, epochs) sorted by mean, padded with NaN / 0 / -1 up to b rows.
    """
    seen = {}
    for i in range(len(hashes)):
        if int(hashes[i]) not in seen:
            seen[int(hashes[i])] = i
    firsts = sorted(seen.values(), key=lambda i: (float(np.mean(losses[i].astype(np.float64))), i))
    chosen = firsts[:b]
    out_l = np.full((b, losses.shape[1]), np.nan, dtype=np.float32)
    out_h = np.zeros(b, dtype=np.uint64)
    out_e = np.full(b, -1, dtype=np.int64)
    for r, i in enumerate(chosen):
        out_l[r], out_h[r], out_e[r] = losses[i], hashes[i], epochs[i]
    return out_l, out_h, out_e


# ============================================================================================
# mis.quant.grids (affine grids, mse_grid search) and mis.quant.aubinais quantizers
# ============================================================================================


def affine_scale_zero(lo, hi, n_levels, symmetric=False):
    """(s, z) of one range, plain Python floats (float64): the reference convention."""
    if symmetric:
        a = max(abs(lo), abs(hi))
        lo, hi = -a, a
    if hi - lo <= 0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi - lo <= 0:
            lo, hi = -1.0, 1.0
    s = (hi - lo) / (n_levels - 1)
    z = float(n_levels // 2) if symmetric else float(np.round(-lo / s))
    return s, z


def affine_fake_quant_row(row, s, z, n_levels):
    """Ŵ = s·(clamp(round(w/s) + z, 0, L-1) - z), one value at a time (half-to-even)."""
    out = []
    for v in row:
        q = min(max(float(np.round(v / s)) + z, 0.0), n_levels - 1.0)
        out.append(s * (q - z))
    return np.array(out)


def lp_search_loop(
    w2d,
    n_levels,
    *,
    include_zero=True,
    symmetric=False,
    norm=2.4,
    n_candidates=80,
    shrink_step=0.01,
    dtype=np.float64,
):
    """The reference PTQ search, channel by channel and candidate by candidate.

    Grid arithmetic in ``dtype`` (float32 mirrors the float32 library step for step),
    errors summed in float64. Returns (errors (C, n_candidates), first-minimum index).
    """
    t = np.dtype(dtype).type
    w2d = np.asarray(w2d, dtype=dtype)
    errs = np.empty((w2d.shape[0], n_candidates))
    for c, row in enumerate(w2d):
        lo, hi = row.min(), row.max()
        if include_zero:
            lo, hi = min(lo, t(0)), max(hi, t(0))
        if symmetric:
            a = max(abs(lo), abs(hi))
            lo, hi = -a, a
        if hi - lo <= 0:
            lo, hi = min(lo, t(0)), max(hi, t(0))
            if hi - lo <= 0:
                lo, hi = t(-1), t(1)
        for i in range(n_candidates):
            f = t(1.0 - i * shrink_step)
            lo_f, hi_f = lo * f, hi * f
            s = max((hi_f - lo_f) / t(n_levels - 1), t(np.finfo(dtype).tiny))
            z = t(n_levels // 2) if symmetric else np.round(-lo_f / s)
            total = 0.0
            for v in row:
                q = min(max(np.round(v / s) + z, t(0)), t(n_levels - 1))
                total += abs(float(v - s * (q - z))) ** norm
            errs[c, i] = total
    best = np.array([int(np.argmin(e)) for e in errs])
    return errs, best


def ternary_naive(w, sparsity):
    """x % smallest |w| (ties: lower flat index first) -> 0, the rest -> sign (sign(0) = +1)."""
    flat = np.asarray(w, dtype=np.float64).ravel()
    k = int(sparsity * flat.size + 0.5)
    order = sorted(range(flat.size), key=lambda i: (abs(flat[i]), i))
    out = np.array([1.0 if v >= 0 else -1.0 for v in flat])
    for i in order[:k]:
        out[i] = 0.0
    return out.reshape(np.shape(w))


def bbit_naive(w, bits):
    """Aubinais b bits: sign(θ)·(α/n)·(smallest k in 1..n with k·α/n >= |θ|, else n)."""
    flat = np.asarray(w, dtype=np.float64).ravel()
    n = 2 ** (bits - 1)
    m = max(abs(v) for v in flat)
    alpha = 2.0 ** np.round(np.log2(m)) if m > 0 else 1.0
    out = []
    for v in flat:
        k = n
        for j in range(1, n + 1):
            if j * alpha / n >= abs(v):
                k = j
                break
        out.append((1.0 if v >= 0 else -1.0) * k * alpha / n)
    return np.array(out).reshape(np.shape(w))


def distinct_per_row(w2d):
    """Number of distinct values in each row."""
    return np.array([len(set(np.asarray(r).tolist())) for r in w2d])


# ============================================================================================
# mis.quant.obc (obc_quantize), mis.quant.gptq (gptq_quantize, refine), mis.quant.bn
# ============================================================================================


def damped_hessian_naive(H, percdamp):
    """Dead columns (H_jj = 0 -> H_jj = 1) and H + percdamp·mean(diag H)·I; also the dead mask."""
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) == 0
    for j in np.flatnonzero(dead):
        H[j, j] = 1.0
    return H + percdamp * np.mean(np.diag(H)) * np.eye(H.shape[0]), dead


def nearest_level_naive(v, levels):
    """The level nearest to the scalar v (levels sorted ascending; a tie takes the upper
    level, so 0 -> +α on the sign grid)."""
    d = [abs(v - lv) for lv in levels]
    return float(levels[max(i for i, di in enumerate(d) if di == min(d))])


def obc_naive(W, H, levels, percdamp=0.01):
    """ExactOBS (Frantar & Alistarh 2022) one row and one weight at a time, explicit H⁻¹.

    ``levels`` (C, L): each row's sorted grid levels (equally spaced). A weight is outside
    the clamp range when it lies more than half a step beyond the outer levels; such
    weights are fixed first (largest error first), otherwise the least (w - q)²/[H⁻¹]_jj.
    Returns (Q, order).
    """
    W = np.array(W, dtype=np.float64)
    Hd, dead = damped_hessian_naive(H, percdamp)
    W[:, dead] = 0.0
    C, K = W.shape
    Hinv0 = np.linalg.inv(Hd)
    Q = np.zeros((C, K))
    order = np.zeros((C, K), dtype=np.int64)
    for c in range(C):
        lv = np.asarray(levels[c], dtype=np.float64)
        half = (lv[1] - lv[0]) / 2
        w = W[c].copy()
        Hinv = Hinv0.copy()
        free = list(range(K))
        for t in range(K):
            best, best_score, out_best, out_err = None, np.inf, None, -1.0
            for j in free:
                q = nearest_level_naive(w[j], lv)
                e = (w[j] - q) ** 2
                if w[j] < lv[0] - half or w[j] > lv[-1] + half:
                    if e > out_err:
                        out_best, out_err = j, e
                s = e / Hinv[j, j]
                if s < best_score:
                    best, best_score = j, s
            j = out_best if out_best is not None else best
            q = nearest_level_naive(w[j], lv)
            d = Hinv[j, j]
            w = w - (w[j] - q) / d * Hinv[:, j]
            w[j] = q
            Hinv = Hinv - np.outer(Hinv[:, j], Hinv[j, :]) / d
            Q[c, j] = q
            order[c, t] = j
            free.remove(j)
    return Q, order


def ordered_obs_naive(W, H, levels, order, percdamp=0.01):
    """OBS quantization in a fixed column order for all rows (what GPTQ computes, §3):
    explicit H⁻¹, one weight at a time, downdate after each."""
    W = np.array(W, dtype=np.float64)
    Hd, dead = damped_hessian_naive(H, percdamp)
    W[:, dead] = 0.0
    C, K = W.shape
    Q = np.zeros((C, K))
    for c in range(C):
        lv = np.asarray(levels[c], dtype=np.float64)
        w = W[c].copy()
        Hinv = np.linalg.inv(Hd)
        for j in order:
            q = nearest_level_naive(w[j], lv)
            d = Hinv[j, j]
            w = w - (w[j] - q) / d * Hinv[:, j]
            w[j] = q
            Hinv = Hinv - np.outer(Hinv[:, j], Hinv[j, :]) / d
            Q[c, j] = q
    return Q


def constrained_lstsq_naive(w, X, fixed, values, percdamp=0.01):
    """The free weights v_F minimising (v - w)ᵀ H_λ (v - w) with v_S = values fixed.

    H_λ = 2XᵀX/N + λ·mean(diag)·I (X of shape (N, K), rows = inputs). Solved with numpy
    lstsq on the stacked system A = [sqrt(2/N)·X; sqrt(λ·mean diag)·I]: minimise
    ‖A_F (v_F - w_F) + A_S (values - w_S)‖². Returns the full vector v.
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, K = X.shape
    H = 2 * X.T @ X / N
    lam = percdamp * np.mean(np.diag(H))
    A = np.vstack([np.sqrt(2.0 / N) * X, np.sqrt(lam) * np.eye(K)])
    fixed = list(fixed)
    free = [j for j in range(K) if j not in set(fixed)]
    v = w.copy()
    v[fixed] = values
    if free:
        rhs = -A[:, fixed] @ (np.asarray(values) - w[fixed])
        sol, *_ = np.linalg.lstsq(A[:, free], rhs, rcond=None)
        v[free] = w[free] + sol
    return v


def block_refine_naive(W, H, Q, levels, sweeps, block, percdamp=0.01):
    """Refinement sweeps of mis.quant.gptq (block coordinate descent), one row at a time.

    Rows are independent. Per row and sweep s, block borders start at the offset
    [0, B/2, B/4, 3B/4][s mod 4] (distinct values, in that order; a first short block
    [0, offset)). Per block: g = Hd(q − w), t = q_B − inv(Hd_BB) g_B; the candidates are
    the fixed-order OBS quantization of t (Hessian Hd_BB) in forward, then backward
    order; a candidate replaces the current block when its loss (c − t)ᵀHd_BB(c − t) is
    below the best so far by a relative 1e-12; t = 0 exactly in dead columns. Running
    all sweeps equals the fast version's early stop (a row unchanged for a full cycle
    of offsets never changes).
    """
    Hd, dead = damped_hessian_naive(H, percdamp)
    W = np.array(W, dtype=np.float64)
    W[:, dead] = 0.0
    Q = np.array(Q, dtype=np.float64)
    C, K = W.shape
    offsets = []
    for o in (0, block // 2, block // 4, (3 * block) // 4):
        if o not in offsets:
            offsets.append(o)
    for c in range(C):
        q = Q[c].copy()
        for s in range(sweeps):
            off = offsets[s % len(offsets)]
            starts = ([0] if off else []) + list(range(off, K, block))
            for a, b in zip(starts, [*starts[1:], K], strict=True):
                B = list(range(a, b))
                HB = Hd[np.ix_(B, B)]
                g = Hd @ (q - W[c])
                t = q[B] - np.linalg.solve(HB, g[B])
                t[dead[B]] = 0.0  # exact value; rounding would pick a side of sign(0)
                best = q[B].copy()
                best_loss = (best - t) @ HB @ (best - t)
                n = b - a
                for order in (list(range(n)), list(range(n - 1, -1, -1))):
                    cand = ordered_obs_naive(t[None, :], HB, [levels[c]], order, percdamp=0)[0]
                    loss = (cand - t) @ HB @ (cand - t)
                    if loss < best_loss * (1 - 1e-12):
                        best, best_loss = cand, loss
                q[B] = best
        Q[c] = q
    return Q


def damped_loss_naive(W, H, Q, percdamp=0.01):
    """Per-row (q_c − w_c)ᵀ Hd (q_c − w_c), dead columns of W zeroed first (float64)."""
    Hd, dead = damped_hessian_naive(H, percdamp)
    W = np.array(W, dtype=np.float64)
    W[:, dead] = 0.0
    D = np.asarray(Q, dtype=np.float64) - W
    return np.einsum("ck,kl,cl->c", D, Hd, D)


def bn_running_stats_naive(batches, momentum):
    """BatchNorm running mean / unbiased var after reset (0, 1) and one update per batch.

    ``batches``: list of arrays (n, C, ...) — the BN layer's inputs. ``momentum`` None =
    cumulative average (1/k for the k-th batch).
    """
    mean = None
    var = None
    for k, x in enumerate(batches, start=1):
        x = np.asarray(x, dtype=np.float64)
        C = x.shape[1]
        flat = np.moveaxis(x, 1, 0).reshape(C, -1)
        if mean is None:
            mean, var = np.zeros(C), np.ones(C)
        m = 1.0 / k if momentum is None else momentum
        bm = flat.mean(1)
        bv = flat.var(1, ddof=1)
        mean = (1 - m) * mean + m * bm
        var = (1 - m) * var + m * bv
    return mean, var


# ============================================================================================
# mis.quant.reconstruct (AdaRound / BRECQ: rectified_sigmoid, rounding_regularizer,
# beta_at) and mis.quant.fold (fold_batchnorm)
# ============================================================================================


def rectified_sigmoid_naive(v, zeta=1.1, gamma=-0.1):
    """h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), one element at a time with math.exp."""
    v = np.asarray(v, dtype=np.float64)
    out = np.empty_like(v)
    for i, x in np.ndenumerate(v):
        s = 1.0 / (1.0 + math.exp(-x))
        out[i] = min(1.0, max(0.0, s * (zeta - gamma) + gamma))
    return out


def rounding_regularizer_naive(h, beta):
    """Σ 1 − |2h − 1|^β as a Python loop."""
    total = 0.0
    for x in np.asarray(h, dtype=np.float64).ravel():
        total += 1.0 - abs(2.0 * x - 1.0) ** beta
    return total


def beta_naive(t, t_max, warmup=0.2, start_b=20.0, end_b=2.0):
    """The reference schedule: no regulariser (None) while t < warmup·t_max, then linear decay
    from start_b to end_b (yhhhli/BRECQ LinearTempDecay with rel_start_decay = warmup)."""
    start = warmup * t_max
    if t < start:
        return None
    rel = (t - start) / (t_max - start)
    return end_b + (start_b - end_b) * max(0.0, 1.0 - rel)


def fold_bn_naive(w, b, gamma, beta, mean, var, eps):
    """BatchNorm folded into a layer, channel by channel: W'_c = a_c W_c,
    b'_c = a_c (b_c − μ_c) + β_c with a_c = γ_c / sqrt(σ²_c + ε)."""
    w = np.asarray(w, dtype=np.float64)
    w_new = np.empty_like(w)
    b_new = np.empty(w.shape[0])
    for c in range(w.shape[0]):
        a = gamma[c] / math.sqrt(var[c] + eps)
        w_new[c] = a * w[c]
        b_new[c] = a * ((0.0 if b is None else b[c]) - mean[c]) + beta[c]
    return w_new, b_new
