"""Private serial numba kernels of the stacked Aubinais quantizers (:mod:`mis.quant.stacked`).

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
