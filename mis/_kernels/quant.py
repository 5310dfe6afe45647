"""L_p range-search errors for uniform affine grids, fused in one pass (private numba kernel).

For every row ``r`` of ``x`` (R, K) and every shrink factor ``f_i``, the kernel
quantizes the row on the grid of the range ``(f_i·lo_r, f_i·hi_r)`` with the float32
arithmetic of :class:`mis.quant.grids.AffineGrid` (``s = (hi - lo)/(L-1)``,
``z = rint(-lo/s)`` or ``L // 2``, ``q = clamp(rint(x/s), -z, L-1-z)``) and sums
``|x - s·q|^p`` with an approximate power:

    |e|^p = 2^(p·log2|e|),  log2 from the float's exponent and a degree-4 polynomial of
    the mantissa on [√½, √2), 2^f from a degree-4 polynomial on [-1/2, 1/2].

Relative error of one term <= ``POW_REL_ERR`` (checked against float64 in the tests; terms
below 2^-126 count as 0), plus the float32 pairwise sum. The caller uses the result
only to discard candidates that cannot be the minimum and evaluates the survivors
exactly. Everything is vectorizable (no calls, explicit float32), ``fastmath`` off.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from mis._kernels._config import JIT, jit, njit

#: Bound on the relative error of one approximate term |e|^p (p <= 4), with margin.
POW_REL_ERR = 2e-4

_F = np.float32


@intrinsic
def _f32_bits(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, i):
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if i.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif i.bitwidth < 32:
            v = builder.sext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(i), codegen


@njit(inline="always", **JIT)  # inlined so the caller's loop vectorizes
def pow_approx(x, p):
    """``x**p`` for float32 ``x >= 0`` and ``p > 0`` (relative error <= POW_REL_ERR)."""
    i = _f32_bits(x)
    e = _F((i >> 23) - 127)
    m = _bits_f32((i & 0x7FFFFF) | 0x3F800000)  # mantissa in [1, 2)
    big = m > _F(1.4142135623730951)
    m = m * _F(0.5) if big else m
    e = e + _F(1.0) if big else e
    u = m - _F(1.0)
    poly = _F(0.2556668716317013)
    poly = poly * u + _F(-0.3911231730033573)
    poly = poly * u + _F(0.4852140571816433)
    poly = poly * u + _F(-0.7205412109097521)
    poly = poly * u + _F(1.4426475745511185)
    y = p * (e + u * poly)  # p·log2(x)
    n = np.rint(y)
    f = y - n
    g = _F(0.009676037097921105)
    g = g * f + _F(0.05592203564722869)
    g = g * f + _F(0.24022107355829078)
    g = g * f + _F(0.6931210339915459)
    g = g * f + _F(1.000000075495349)
    ok = (n > _F(-126.0)) & (x > _F(0.0))
    nb = np.int32(n + _F(127.0)) if ok else np.int32(1)
    r = _bits_f32(nb << 23) * g
    return r if ok else _F(0.0)


@jit
def lp_errors_approx(x, lo, hi, factors, n_levels, symmetric, p, out):
    """out[r, i] ≈ Σ_k |x[r,k] - Ŵ|^p on the grid of (factors[i]·lo[r], factors[i]·hi[r]).

    x: (R, K) float32 C-contiguous; lo, hi: (R,) float32; factors: (n,) float32;
    out: (R, n) float64. Serial on purpose: numba's OpenMP pool, once started, slows
    torch's own small ops by an order of magnitude in the same process (seen with
    torch 2.13 / numba 0.68), and this kernel runs inside torch code.
    """
    R, K = x.shape
    n = factors.shape[0]
    size = 1
    while size < K:
        size *= 2
    qmax = _F(n_levels - 1)
    tiny = _F(1.1754943508222875e-38)
    pf = _F(p)
    buf = np.zeros(size, np.float32)
    for task in range(R * n):
        r = task // n
        i = task - r * n
        buf[:] = 0.0
        f = factors[i]
        mn = lo[r] * f
        mx = hi[r] * f
        s = (mx - mn) / qmax
        s = s if s > tiny else tiny
        z = _F(n_levels // 2) if symmetric else np.rint(-mn / s)
        qlo = -z
        qhi = qmax - z
        for k in range(K):
            v = x[r, k]
            q = np.rint(v / s)
            q = q if q > qlo else qlo
            q = q if q < qhi else qhi
            buf[k] = pow_approx(abs(q * s - v), pf)
        h = size
        while h > 1:  # pairwise sum, vectorizable
            h //= 2
            for j in range(h):
                buf[j] += buf[j + h]
        out[r, i] = buf[0]
