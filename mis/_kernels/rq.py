"""r_Q kernels (Aubinais et al. 2025, Algorithm 1, in the stable form of DESIGN.md).

One *block* is the validation losses of one run under one quantizer, shape
``(n_checkpoints, n_val)``, float32 or float64 (every element is converted to
float64 before any arithmetic, so a float32 block gives bit-identical results
to the same block cast to float64). A block is read twice: once for the mean
losses, once for the variances of the loss differences; a block of 100 × 2,000
float32 values (800 kB) stays in cache between the passes.

Sums use four independent accumulators in a fixed order (no fastmath): the
result does not depend on the thread count, and the dependency chain of a
single float64 accumulator no longer limits the speed.

Per-point diagnostics layout (:func:`rq_block`): positions ``p = 0..n_distinct-1``
are the distinct quantized points sorted by mean loss; ``kept[p]`` is the
checkpoint index of point ``p``; ``deltas[p] = m_p - m_0``;
``variances[p] = Var(L_p - L_0)``; ``ratios[p] = deltas[p]**2 / (2 variances[p])``
(with ``ratios[0] = inf``).
"""

import numpy as np

from mis._kernels._config import jit, parallel_jit, prange
from mis._kernels.random import next_below, stream_state

# status codes of rq_block
OK = 0
NON_FINITE = 1  # a loss is NaN or inf (or a float64 sum overflowed)
ONE_POINT = 2  # every checkpoint is the same quantized point: r_Q = +inf
ZERO_VARIANCE = 3  # every loss difference has zero variance and a positive gap: r_Q = +inf


@jit
def _row_sum(x):
    """Sum of a 1-D array in float64 with four interleaved accumulators."""
    n = x.shape[0]
    m = n // 4
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for j in range(m):
        i = 4 * j
        a0 += np.float64(x[i])
        a1 += np.float64(x[i + 1])
        a2 += np.float64(x[i + 2])
        a3 += np.float64(x[i + 3])
    for i in range(4 * m, n):
        a0 += np.float64(x[i])
    return (a0 + a1) + (a2 + a3)


@jit
def _shifted_moments(xk, x1, shift):
    """``(Σ d, Σ d²)`` with ``d_i = xk_i - x1_i - shift``, in float64 (four accumulators each).

    ``x1`` is float64 (the reference row converted once per block); ``xk`` any float.
    """
    n = xk.shape[0]
    m = n // 4
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    q3 = 0.0
    for j in range(m):
        i = 4 * j
        d0 = (np.float64(xk[i]) - x1[i]) - shift
        d1 = (np.float64(xk[i + 1]) - x1[i + 1]) - shift
        d2 = (np.float64(xk[i + 2]) - x1[i + 2]) - shift
        d3 = (np.float64(xk[i + 3]) - x1[i + 3]) - shift
        s0 += d0
        s1 += d1
        s2 += d2
        s3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
    for i in range(4 * m, n):
        d0 = (np.float64(xk[i]) - x1[i]) - shift
        s0 += d0
        q0 += d0 * d0
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


@jit
def _rows_equal(a, b):
    """Exact equality of two 1-D arrays."""
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


@jit
def rq_block(L, h, use_hash, ddof, means, kept, deltas, variances, ratios, x1):
    """r_Q of one block; fills the per-point diagnostics (module docstring).

    Parameters
    ----------
    L : float32 or float64 (K, N), C-contiguous
        Validation losses, one row per checkpoint.
    h : int64 (K,)
        Checkpoint hashes (ignored unless ``use_hash``).
    use_hash : bool
        Deduplicate by equal hash; otherwise by identical loss rows.
    ddof : int
        Delta degrees of freedom of the variances (N > ddof).
    means, deltas, variances, ratios : float64 (K,)  scratch / output.
    kept : int64 (K,)  scratch / output.
    x1 : float64 (N,)  scratch: the best row in float64.

    Returns
    -------
    status, rq, delta2, n_distinct, best, argmin_pos
        ``best`` is the checkpoint of the lowest mean loss; ``argmin_pos`` the
        sorted position p >= 1 attaining the minimum ratio (-1 if none).
    """
    K = L.shape[0]
    N = L.shape[1]
    for k in range(K):
        s = _row_sum(L[k])
        if not np.isfinite(s):
            return NON_FINITE, np.nan, np.nan, 0, -1, -1
        means[k] = s / N
    order = np.argsort(means, kind="mergesort")  # ties: lower checkpoint index first

    # deduplicate: one point per hash, or per identical loss row (identical rows have
    # bit-identical means, since every row is summed in the same order)
    n = 0
    for p in range(K):
        c = order[p]
        dup = False
        if use_hash:
            for j in range(n):
                if h[kept[j]] == h[c]:
                    dup = True
                    break
        else:
            j = n - 1
            while j >= 0 and means[kept[j]] == means[c]:
                if _rows_equal(L[kept[j]], L[c]):
                    dup = True
                    break
                j -= 1
        if not dup:
            kept[n] = c
            n += 1

    best = kept[0]
    deltas[0] = 0.0
    variances[0] = 0.0
    ratios[0] = np.inf
    if n == 1:
        return ONE_POINT, np.inf, np.nan, 1, best, -1

    m1 = means[best]
    for i in range(N):
        x1[i] = L[best, i]
    rq = np.inf
    argmin = -1
    all_zero_var = True
    for p in range(1, n):
        c = kept[p]
        delta = means[c] - m1
        s, q = _shifted_moments(L[c], x1, delta)
        # corrected two-pass variance (Chan, Golub & LeVeque 1983, eq. 1.7)
        var = (q - s * s / N) / (N - ddof)
        if var < 0.0:
            var = 0.0
        if var > 0.0:
            all_zero_var = False
        if delta == 0.0:
            ratio = 0.0  # equal mean loss, distinct points: r_Q = 0 (DESIGN.md)
        elif var == 0.0:
            ratio = np.inf  # a constant loss gap: this point never beats point 1
        else:
            ratio = delta * delta / (2.0 * var)
        deltas[p] = delta
        variances[p] = var
        ratios[p] = ratio
        if ratio < rq:
            rq = ratio
            argmin = p
    delta2 = deltas[1]
    if argmin == -1:
        status = ZERO_VARIANCE if all_zero_var else OK
        return status, rq, delta2, n, best, -1
    return OK, rq, delta2, n, best, argmin


@parallel_jit
def rq_many(L, H, use_hash, ddof, rq, delta2, n_distinct, best, argmin_ck, status):
    """:func:`rq_block` for every (run, quantizer) block of ``L`` in parallel.

    Parameters
    ----------
    L : float32 or float64 (R, Q, K, N), C-contiguous
    H : int64 (R, Q, K)  (any shape when not ``use_hash``; never read)
    rq, delta2 : float64 (R, Q)  output.
    n_distinct, best, argmin_ck : int64 (R, Q)  output; ``argmin_ck`` is the
        checkpoint index attaining the minimum (-1 if none).
    status : int8 (R, Q)  output, codes of this module.
    """
    R = L.shape[0]
    Q = L.shape[1]
    K = L.shape[2]
    N = L.shape[3]
    for b in prange(R * Q):
        r = b // Q
        q = b - r * Q
        means = np.empty(K)
        kept = np.empty(K, dtype=np.int64)
        deltas = np.empty(K)
        variances = np.empty(K)
        ratios = np.empty(K)
        x1 = np.empty(N)
        if use_hash:
            h = H[r, q]
        else:
            h = kept  # unused
        st, v, d2, nd, bst, am = rq_block(
            L[r, q], h, use_hash, ddof, means, kept, deltas, variances, ratios, x1
        )
        status[r, q] = st
        rq[r, q] = v
        delta2[r, q] = d2
        n_distinct[r, q] = nd
        best[r, q] = bst
        argmin_ck[r, q] = kept[am] if am >= 0 else -1


# --------------------------------------------------------------------------------------------
# permutation null of rank correlations (used by mis.security.rank_agreement)
# --------------------------------------------------------------------------------------------
@jit
def _correlations(rx, ry, sx, sy, perm):
    """Spearman numerator Σ rx_i ry_π(i) and Kendall numerator Σ_{i<j} sx_ij sy_π(i)π(j)."""
    q = rx.shape[0]
    rho = 0.0
    tau = 0.0
    for i in range(q):
        pi = perm[i]
        rho += rx[i] * ry[pi]
        for j in range(i + 1, q):
            tau += sx[i, j] * sy[pi, perm[j]]
    return rho, tau


@jit
def exact_permutation_counts(rx, ry, sx, sy, rho_obs, tau_obs, tol):
    """Count permutations π of y with |ρ_π| ≥ |ρ_obs| − tol and |τ_π| ≥ |τ_obs| − tol.

    All q! permutations are enumerated with Heap's algorithm (iterative form).
    ``rx``, ``ry`` are centred ranks; ``sx``, ``sy`` the (q, q) sign matrices
    sign(a_i − a_j); ``rho_obs`` and ``tau_obs`` are the *numerators* of the
    observed statistics (the denominators do not change under permutation).

    Returns
    -------
    n_rho, n_tau, n_total : int
    """
    q = rx.shape[0]
    perm = np.arange(q)
    c = np.zeros(q, dtype=np.int64)
    a_rho = abs(rho_obs) - tol
    a_tau = abs(tau_obs) - tol
    rho, tau = _correlations(rx, ry, sx, sy, perm)
    n_rho = 1 if abs(rho) >= a_rho else 0
    n_tau = 1 if abs(tau) >= a_tau else 0
    total = 1
    i = 1
    while i < q:
        if c[i] < i:
            j = c[i] if i % 2 == 1 else 0
            t = perm[j]
            perm[j] = perm[i]
            perm[i] = t
            rho, tau = _correlations(rx, ry, sx, sy, perm)
            if abs(rho) >= a_rho:
                n_rho += 1
            if abs(tau) >= a_tau:
                n_tau += 1
            total += 1
            c[i] += 1
            i = 1
        else:
            c[i] = 0
            i += 1
    return n_rho, n_tau, total


@parallel_jit
def random_permutation_counts(rx, ry, sx, sy, rho_obs, tau_obs, tol, seed, n_perm):
    """As :func:`exact_permutation_counts` over ``n_perm`` uniform random permutations.

    Permutation b is a Fisher–Yates shuffle driven by stream b of ``seed``
    (:mod:`mis._kernels.random`), so the counts do not depend on the thread count.
    """
    q = rx.shape[0]
    hit_rho = np.zeros(n_perm, dtype=np.int64)
    hit_tau = np.zeros(n_perm, dtype=np.int64)
    a_rho = abs(rho_obs) - tol
    a_tau = abs(tau_obs) - tol
    for b in prange(n_perm):
        state = stream_state(seed, b)
        perm = np.arange(q)
        for i in range(q - 1, 0, -1):
            state, j = next_below(state, i + 1)
            t = perm[j]
            perm[j] = perm[i]
            perm[i] = t
        rho, tau = _correlations(rx, ry, sx, sy, perm)
        hit_rho[b] = 1 if abs(rho) >= a_rho else 0
        hit_tau[b] = 1 if abs(tau) >= a_tau else 0
    return hit_rho.sum(), hit_tau.sum()
