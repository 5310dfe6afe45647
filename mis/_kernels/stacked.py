"""Private serial numba kernels of the stacked recorder (:mod:`mis.studies.stacked`).

Compiled through :mod:`mis._kernels._config` (cache on, no fastmath). Serial on purpose:
they run between torch operations in the same process, and numba's parallel pool, once
started, slows torch's small operations. Inputs are contiguous and already validated.
"""

from __future__ import annotations

import numpy as np

from mis._kernels._config import jit

SIGN, TERNARY, BBIT = 0, 1, 2


@jit
def smallest_mask(a, kz, mask):
    """``mask[i]`` = element i is among the ``kz`` smallest of ``a`` (n,) in (value, index)
    order — ties at the threshold go to the lowest indices, as a stable sort would. O(n):
    one selection (``np.partition``) instead of a sort."""
    n = a.shape[0]
    if kz <= 0 or kz >= n:
        mask[:] = kz > 0
        return
    t = np.partition(a, kz - 1)[kz - 1]
    left = kz
    for i in range(n):
        if a[i] < t:
            left -= 1
    for i in range(n):
        if a[i] < t:
            mask[i] = True
        elif a[i] == t and left > 0:
            mask[i] = True
            left -= 1
        else:
            mask[i] = False


@jit
def quantize_rows(w, alpha, kinds, params, out):
    """Quantize each row of ``w`` with every quantizer.

    w : (K, N) float32 — one parameter tensor per model, flattened.
    alpha : (K,) float32 — ``2^round(log2 max|w_k|)`` (1 for an all-zero row), computed by
        the caller with the torch operations of the reference.
    kinds : (Q,) int64 — SIGN, TERNARY or BBIT; params : (Q,) float64 — sparsity or bits.
    out : (K, Q, N) float32.
    """
    k_models, n = w.shape
    nq = kinds.shape[0]
    zero = np.empty(n, dtype=np.bool_)
    mag = np.empty(n, dtype=np.float32)
    one = np.float32(1.0)
    for r in range(k_models):
        for i in range(n):
            mag[i] = abs(w[r, i])
        for q in range(nq):
            kind = kinds[q]
            if kind == SIGN:
                for i in range(n):
                    out[r, q, i] = one if w[r, i] >= 0 else -one
            elif kind == TERNARY:
                smallest_mask(mag, np.int64(params[q] * n + 0.5), zero)
                for i in range(n):
                    if zero[i]:
                        out[r, q, i] = np.float32(0.0)
                    else:
                        out[r, q, i] = one if w[r, i] >= 0 else -one
            else:
                levels = np.int64(1) << (np.int64(params[q]) - 1)
                nf = np.float32(levels)
                step = np.float32(alpha[r] / nf)
                for i in range(n):
                    x = w[r, i]
                    m = mag[i]
                    kk = np.float32(np.ceil(np.float32(m / step)))
                    if kk < one:
                        kk = one
                    if kk > nf:
                        kk = nf
                    if kk > one and np.float32((kk - one) * step) >= m:
                        kk = kk - one
                    if kk < nf and np.float32(kk * step) < m:
                        kk = kk + one
                    v = np.float32(kk * step)
                    out[r, q, i] = v if x >= 0 else -v


@jit
def changes_and_fingerprints(flat, prev, mult, changed, fp):
    """Rows of ``flat`` (R, P) float32 that differ from ``prev``; their 64-bit fingerprints.

    ``fp[i] = Σ_p bits(flat[i, p]) · mult[p]`` modulo 2^64 (uint32 bit patterns, odd uint64
    multipliers), for changed rows only. ``changed`` (R,) bool out, ``fp`` (R,) uint64 out.
    """
    rows, p = flat.shape
    bits = flat.view(np.uint32)
    for i in range(rows):
        diff = False
        for j in range(p):
            if flat[i, j] != prev[i, j]:
                diff = True
                break
        changed[i] = diff
        if diff:
            acc = np.uint64(0)
            for j in range(p):
                acc += np.uint64(bits[i, j]) * mult[j]
            fp[i] = acc


@jit
def keep_best_update(
    pairs, losses, flat, fp, epoch, st_losses, st_mean, st_epoch, st_fp, st_w, st_filled
):
    """Offer each changed (run, quantizer) point to its kept set (TrajectoryRecorder rules).

    pairs : (M,) int64 — row of the (run, quantizer) pair in the state arrays.
    losses : (M, n_val) float32 — its per-sample validation losses.
    flat : (R, P) float32, fp : (R,) uint64 — quantized weights and fingerprints by row.
    State (R = K·Q rows, B slots): st_losses (R, B, n_val) float32, st_mean (R, B) float64,
    st_epoch (R, B) int64, st_fp (R, B) uint64, st_w (R, B, P) float32, st_filled (R, B) bool.

    A point already kept (same weights) is skipped; otherwise it fills the first empty slot,
    or, when all B are filled, replaces the worst (largest mean, latest epoch among ties) if
    its mean is strictly lower.
    """
    m, nv = losses.shape
    b = st_mean.shape[1]
    p = flat.shape[1]
    for i in range(m):
        row = pairs[i]
        mean = 0.0
        for j in range(nv):
            mean += np.float64(losses[i, j])
        mean /= nv
        present = False
        for s in range(b):
            if st_filled[row, s] and st_fp[row, s] == fp[row]:
                same = True
                for j in range(p):
                    if st_w[row, s, j] != flat[row, j]:
                        same = False
                        break
                if same:
                    present = True
                    break
        if present:
            continue
        slot = -1
        for s in range(b):
            if not st_filled[row, s]:
                slot = s
                break
        if slot < 0:
            worst = 0
            for s in range(1, b):
                if st_mean[row, s] > st_mean[row, worst] or (
                    st_mean[row, s] == st_mean[row, worst]
                    and st_epoch[row, s] > st_epoch[row, worst]
                ):
                    worst = s
            if not mean < st_mean[row, worst]:
                continue
            slot = worst
        for j in range(nv):
            st_losses[row, slot, j] = losses[i, j]
        for j in range(p):
            st_w[row, slot, j] = flat[row, j]
        st_mean[row, slot] = mean
        st_epoch[row, slot] = epoch
        st_fp[row, slot] = fp[row]
        st_filled[row, slot] = True
