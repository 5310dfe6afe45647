"""Private kernels of the streaming r_Q recorder (:mod:`mis.studies.synthetic.streaming`):
Algorithm 1 of Aubinais et al. (2025) over *every* distinct quantized checkpoint of many
linear models, with memory bounded by the quantized weights alone.

Rows. One row ``r`` is one (model, quantizer) pair. At each checkpoint the row's quantized
parameters arrive flat, float32, ``flat[r] = [bias (C), weight (C·F)]``; the weight is stored
as int8 codes with one float32 scale (``value = float32(code) · scale``, exact for the
quantizers of Aubinais et al., whose non-zero levels are ±k·2^e), the bias as float32.

Streaming pass (:func:`stream_update`, once per checkpoint). A row equal to its previous
checkpoint is skipped. Otherwise its 64-bit linear fingerprint of the float32 bit patterns
is looked up in the row's open-addressing table and confirmed by exact comparison of the
values; a new point is appended with its first epoch, its mean validation loss ``m`` and
``M2 = Σ (ℓ_i − m)²``. Its losses themselves are not kept.

Final pass (:func:`stream_finalize`). Points sorted by (mean, first epoch) — the order of
Algorithm 1's ``argsort`` after duplicates are removed; the first is θ̄₁. Then
``r_Q = min_{k ≥ 2} δ_k² / (2 σ_k²)`` (the stable form of line 17 times δ₂², DESIGN.md) with
``δ_k = m_k − m_1`` and ``σ_k² = Var(L_k − L_1)``, both computed exactly as
:func:`mis._kernels.rq.rq_block` does from the recomputed losses of points k and 1. Points are
visited in order of increasing mean, and a point whose lower bound
``δ_k² / (2 (s_k + s_1)²)`` (``Var(A − B) ≤ (sd A + sd B)²``) already exceeds the current
minimum (by a relative margin of 1e-9) cannot attain it and is not recomputed: the result is
that of every point, at the cost of a few recomputations.

Losses: ``z = W φ + b`` on validation features φ (float64, given transposed (F, n_val)); with
C = 1 the binary cross-entropy with logits ``softplus(z)`` for y = 0 and ``softplus(−z)`` for
y = 1, otherwise the softmax cross-entropy. Reading φ (1 MB for 256 features × 512 samples)
dominates a fresh computation of z, so with one logit the streaming pass updates each row's
z by the few parameters that changed since its previous checkpoint (afresh when many
changed, and every 64 updates); the final pass recomputes the losses it needs afresh
(:func:`point_losses`). The two agree to float64 rounding (about 1e-15 relative), which could
only matter for two distinct points whose means tie to that precision. With two logits the
loss depends on the logit difference only, distinct weights often give the same function,
and such ties are exact: z is then always computed afresh from the weight differences, so
that equal functions get bit-identical losses.
"""

from __future__ import annotations

import numpy as np

from mis._kernels._config import jit
from mis._kernels.random import _mix64
from mis._kernels.rq import NON_FINITE, OK, ONE_POINT, ZERO_VARIANCE, _row_sum, _shifted_moments

#: Status codes of :func:`stream_update` (besides OK = 0).
FULL = 10  # a row holds as many points as its capacity (more checkpoints than declared)
NOT_A_CODE = 11  # a quantized weight is not an int8 multiple of its scale
STATUS_NAMES = {OK: "ok", NON_FINITE: "non-finite", ONE_POINT: "one point",
                ZERO_VARIANCE: "zero variance", FULL: "full", NOT_A_CODE: "not a code"}  # fmt: skip


@jit
def _losses_from_z(z, c_out, y, out):
    """Per-sample losses of logits z with labels y: ``out`` (n_val,) float64.

    C ≤ 2: ``z[0]`` is the logit (C = 1) or the logit difference z₁ − z₀ (C = 2), and the
    loss is ``softplus(z)`` for y = 0, ``softplus(−z)`` for y = 1. C > 2: cross-entropy of
    the rows of z.
    """
    n = z.shape[1]
    if c_out <= 2:
        for i in range(n):
            a = z[0, i] if y[i] == 0 else -z[0, i]
            out[i] = max(a, 0.0) + np.log1p(np.exp(-abs(a)))
    else:
        for i in range(n):
            zmax = z[0, i]
            for c in range(1, c_out):
                zmax = max(zmax, z[c, i])
            tot = 0.0
            for c in range(c_out):
                tot += np.exp(z[c, i] - zmax)
            out[i] = zmax + np.log(tot) - z[y[i], i]


@jit
def _fresh_z(flat, c_out, phi_t, z):
    """Logits ``z`` of flat float32 parameters [bias (C), weight (C·F)], in a fixed order.

    C = 2: ``z[0]`` = (b₁ − b₀) + Σ_f (w₁f − w₀f) φ_f, the only thing the two-class
    cross-entropy depends on, so that two points with the same weight differences — distinct
    points of one function — get bit-identical losses (δ = 0 exactly, as Algorithm 1 says).
    """
    f_in = phi_t.shape[0]
    n = phi_t.shape[1]
    rows = 1 if c_out == 2 else c_out
    for c in range(rows):
        zc = z[c]
        if c_out == 2:
            bc = np.float64(flat[1]) - np.float64(flat[0])
        else:
            bc = np.float64(flat[c])
        for i in range(n):
            zc[i] = bc
        for f in range(f_in):
            if c_out == 2:
                v = np.float64(flat[2 + f_in + f]) - np.float64(flat[2 + f])
            else:
                v = np.float64(flat[c_out + c * f_in + f])
            if v != 0.0:
                row = phi_t[f]
                for i in range(n):
                    zc[i] += v * row[i]


@jit
def point_losses(flat, c_out, phi_t, y, z, out):
    """Per-sample validation losses of one point: ``out`` (n_val,) float64.

    flat : float32 (C + C·F,) — [bias, weight row-major]; c_out : C;
    phi_t : float64 (F, n_val); y : int64 (n_val,); z : float64 (C, n_val) scratch (holds
    the logits on return; for C = 2, row 0 holds the difference z₁ − z₀ and row 1 is unused).
    """
    _fresh_z(flat, c_out, phi_t, z)
    _losses_from_z(z, c_out, y, out)


@jit
def _values(codes, scale, bias, out):
    """The flat float32 parameters [bias, weight] of a stored point."""
    c_out = bias.shape[0]
    for c in range(c_out):
        out[c] = bias[c]
    for j in range(codes.shape[0]):
        out[c_out + j] = np.float32(np.float32(codes[j]) * scale)


@jit
def _same_values(flat, c_out, codes, scale, bias):
    """Whether the flat float32 point equals a stored (codes, scale, bias) point."""
    for c in range(c_out):
        if flat[c] != bias[c]:
            return False
    for j in range(codes.shape[0]):
        if flat[c_out + j] != np.float32(np.float32(codes[j]) * scale):
            return False
    return True


@jit
def stream_update(
    flat, scale, prev, mult, epoch, phi_t, y, n_changes, count, fp, table, pid, pool, n_pool,
    scales, biases, means, m2, epochs, zrow, n_incr, losses,
):  # fmt: skip
    """Offer one checkpoint of every row (module docstring); returns a status code.

    flat : float32 (R, P), P = C + C·F — quantized [bias, weight] of each row.
    scale : float32 (R,) — the weight scale of each row at this checkpoint.
    prev : float32 (R, P) — the previous checkpoint (NaN before the first); updated.
    mult : uint64 (P,) — odd fingerprint multipliers.
    epoch : int — the checkpoint's epoch.
    phi_t : float64 (F, n_val); y : int64 (n_val,).
    State: n_changes, count (R,) int64; fp (R, cap) uint64; table (R, H) int64 (−1 = empty,
    H a power of two > cap); pid (R, cap) int64, the row of ``pool`` (P, C·F) int8 that
    holds each point's weight codes, ``n_pool`` (1,) int64 the pool rows in use (the caller
    keeps at least R free: memory grows with the distinct points, not with the capacity);
    scales (R, cap) float32; biases (R, cap, C) float32; means, m2 (R, cap) float64;
    epochs (R, cap) int64;
    zrow (R, C, n_val) float64, the logits of each row's current point: with C = 1 updated
    from the previous checkpoint's by the parameters that changed (recomputed afresh when
    more than a quarter of them changed, and after every 64 updates, so rounding cannot
    drift); with C ≥ 2 always afresh (:func:`_fresh_z`); n_incr (R,) int64, updates since the
    last fresh computation.
    Scratch: losses (n_val,) float64.

    Returns OK, FULL (a row is at capacity) or NOT_A_CODE.
    """
    rows, p = flat.shape
    cap = fp.shape[1]
    mask = np.uint64(table.shape[1] - 1)
    n_val = phi_t.shape[1]
    c_out = biases.shape[2]
    f_in = phi_t.shape[0]
    bits = flat.view(np.uint32)
    for r in range(rows):
        n_diff = 0
        for j in range(p):
            if flat[r, j] != prev[r, j]:
                n_diff += 1
        if n_diff == 0:
            continue
        n_changes[r] += 1
        z = zrow[r]
        if c_out != 1 or n_incr[r] < 0 or n_incr[r] >= 64 or 4 * n_diff > p:
            _fresh_z(flat[r], c_out, phi_t, z)
            n_incr[r] = 0
        else:
            for c in range(c_out):
                db = np.float64(flat[r, c]) - np.float64(prev[r, c])
                if db != 0.0:
                    for i in range(n_val):
                        z[c, i] += db
                for f in range(f_in):
                    j = c_out + c * f_in + f
                    dv = np.float64(flat[r, j]) - np.float64(prev[r, j])
                    if dv != 0.0:
                        row = phi_t[f]
                        for i in range(n_val):
                            z[c, i] += dv * row[i]
            n_incr[r] += 1
        for j in range(p):
            prev[r, j] = flat[r, j]
        h = np.uint64(0)
        for j in range(p):
            h += np.uint64(bits[r, j]) * mult[j]
        slot = np.int64(_mix64(h) & mask)
        found = False
        while table[r, slot] >= 0:
            e = table[r, slot]
            same = fp[r, e] == h and _same_values(
                flat[r], c_out, pool[pid[r, e]], scales[r, e], biases[r, e]
            )
            if same:
                found = True
                break
            slot = np.int64((np.uint64(slot) + np.uint64(1)) & mask)
        if found:
            continue
        e = count[r]
        if e >= cap or n_pool[0] >= pool.shape[0]:
            return FULL
        s = scale[r]
        row = pool[n_pool[0]]
        for j in range(p - c_out):
            v = flat[r, c_out + j]
            q = np.float32(v / s) if s != 0 else np.float32(0.0)
            if q != np.floor(q) or abs(q) > 127 or np.float32(q * s) != v:
                return NOT_A_CODE
            row[j] = np.int8(q)
        pid[r, e] = n_pool[0]
        n_pool[0] += 1
        scales[r, e] = s
        for c in range(c_out):
            biases[r, e, c] = flat[r, c]
        _losses_from_z(z, c_out, y, losses)
        m = _row_sum(losses) / n_val
        acc = 0.0
        for i in range(n_val):
            d = losses[i] - m
            acc += d * d
        means[r, e] = m
        m2[r, e] = acc
        epochs[r, e] = epoch
        fp[r, e] = h
        table[r, slot] = e
        count[r] = e + 1
    return OK


@jit
def stream_finalize(
    count, pid, pool, scales, biases, means, m2, epochs, phi_t, y, ddof, keep_best, rq,
    rq_kept, delta2, best_epoch, argmin_rank, n_recomputed, status,
):  # fmt: skip
    """r_Q of every row from its distinct points (module docstring).

    State as :func:`stream_update`. ``ddof`` of the variances (as :func:`mis.security.rq`);
    ``keep_best`` B ≥ 1: ``rq_kept`` is r_Q over the B lowest-mean points only (the
    ``keep_best`` mode of earlier versions; B ≥ count gives ``rq``).

    Outputs per row: rq, rq_kept, delta2 (m_2 − m_1) float64; best_epoch (first epoch of θ̄₁),
    argmin_rank (position by mean of the point attaining r_Q, θ̄₁ = 0, θ̄₂ = 1; 0 if none),
    n_recomputed (loss rows recomputed) int64; status int8 (codes of :mod:`mis._kernels.rq`).
    """
    rows = count.shape[0]
    n_val = phi_t.shape[1]
    c_out = biases.shape[2]
    z = np.empty((c_out, n_val))
    x1 = np.empty(n_val)
    lk = np.empty(n_val)
    pt = np.empty(c_out + pool.shape[1], dtype=np.float32)
    for r in range(rows):
        d = count[r]
        rq[r] = np.nan
        rq_kept[r] = np.nan
        delta2[r] = np.nan
        best_epoch[r] = -1
        argmin_rank[r] = 0
        n_recomputed[r] = 0
        bad = False
        for e in range(d):
            if not np.isfinite(means[r, e]):
                bad = True
        if d == 0 or bad:
            status[r] = NON_FINITE
            continue
        order = np.argsort(means[r, :d], kind="mergesort")  # ties: earlier first epoch
        best = order[0]
        best_epoch[r] = epochs[r, best]
        if d == 1:
            status[r] = ONE_POINT
            rq[r] = np.inf
            rq_kept[r] = np.inf
            continue
        _values(pool[pid[r, best]], scales[r, best], biases[r, best], pt)
        point_losses(pt, c_out, phi_t, y, z, x1)
        n_recomputed[r] = 1
        m1 = means[r, best]
        s1 = np.sqrt(m2[r, best] / (n_val - ddof))
        delta2[r] = means[r, order[1]] - m1
        cur = np.inf
        argmin = -1
        all_zero_var = True
        for p in range(1, d):
            if p == keep_best:
                rq_kept[r] = cur
            c = order[p]
            delta = means[r, c] - m1
            if cur < np.inf and delta > 0.0:
                sc = np.sqrt(m2[r, c] / (n_val - ddof))
                spread = sc + s1
                if spread == 0.0 or delta * delta / (2.0 * spread * spread) > cur * (1.0 + 1e-9):
                    continue
            _values(pool[pid[r, c]], scales[r, c], biases[r, c], pt)
            point_losses(pt, c_out, phi_t, y, z, lk)
            n_recomputed[r] += 1
            s, q = _shifted_moments(lk, x1, delta)
            var = (q - s * s / n_val) / (n_val - ddof)
            if var < 0.0:
                var = 0.0
            if var > 0.0:
                all_zero_var = False
            if delta == 0.0:
                ratio = 0.0
            elif var == 0.0:
                ratio = np.inf
            else:
                ratio = delta * delta / (2.0 * var)
            if ratio < cur:
                cur = ratio
                argmin = p
        if keep_best >= d:
            rq_kept[r] = cur
        rq[r] = cur
        argmin_rank[r] = argmin if argmin >= 0 else 0
        if argmin == -1:
            status[r] = ZERO_VARIANCE if all_zero_var else OK
        else:
            status[r] = OK
