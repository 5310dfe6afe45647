"""L_p range search for uniform affine grids: screening brackets, exact tie-break (private numba).

For every row ``r`` of ``x`` (R, K) and every shrink factor ``f_i`` the search needs the
error of the grid of the range ``(f_i·lo_r, f_i·hi_r)``, with the float32 arithmetic of
:class:`mis.quant.grids.AffineGrid` (``s = max((f·hi - f·lo)/(L-1), tiny)``,
``z = rint(-f·lo/s)`` or ``L // 2``, ``q = clamp(rint(x/s), -z, L-1-z)``):

    E_i = Σ_k a_k^p,    a_k = |fl(fl(q_k·s) - x_k)|  (a float32 number),

with float64 powers summed in float64 in the row's order (:func:`exact_error`). That is
the error the search minimises (the smallest wins, ties keep the first candidate); the
reference PTQ code evaluates the same ``a_k`` with float32 ``pow`` and ``mean``.

:func:`lp_search_rows` finds the minimiser while evaluating almost no float64 power:

1. the row is copied grouped by how far out each element lies (``x/hi`` or ``x/lo``,
   ``_NBUCKET`` buckets, outermost first; counting sort), in blocks of ``_BLOCK``, so
   the clamped elements of a candidate gather in a few blocks and come first;
2. :func:`_bracket` gives ``low_i <= E_i <= high_i`` block by block:

   * interior blocks (``t = x·fl(1/s)`` within ``[-z - ½, L-1-z + ½]`` at the block's
     min and max, so no element is clamped): the term is ``(s/2)^p·P(fl(4e - 1))``,
     ``e = |t - rint(t)| ∈ [0, ½]``, ``P`` the degree-8 polynomial of
     :func:`interior_poly` (``≈ ((y + 1)/2)^p`` on [-1, 1]) evaluated with fused
     multiply-adds: about 13 vector operations per weight and candidate;
   * other blocks: ``a`` exactly as defined, ``a^p`` by :func:`pow_approx`;

3. candidates are visited outward from the previous row's winner; every ``_CHECK``
   blocks the partial sums are bracketed, and a candidate whose partial lower end lies
   above the smallest upper end so far is abandoned (the terms are >= 0, so a partial
   sum bounds the whole): on ResNet-18-like rows about 45 % of the element-candidate
   pairs are visited;
4. candidates whose lower end lies above the smallest upper end cannot be the minimum;
   when more than one is left (about 1 row in 10), those are evaluated exactly.

The bracket. Interior term (p >= 1): with ``u = 2^-24``, ``τ = x/s`` and ``T`` the
block's largest ``|t|``, ``|s·e - a| <= s·η``, ``η = u·(7.001·T + 1.01)`` (``6u|τ|`` from
``x·fl(1/s)`` against ``x/s``, including a different rounding at a tie or at the clamp
limit; ``u(|q|s + a)`` from the definition's two roundings), hence
``|a^p - (s/2)^p (2e)^p| <= (s/2)^p·2pη(1 + 2η)^(p-1)``, plus the polynomial's bound.
Blocks with ``T > _T_FAST_MAX`` or ``p < 1`` take the ``pow_approx`` path (relative error
<= ``POW_REL_ERR``; terms below 2^-125 count as 0). The terms are summed in 16 float32
lanes, at most 16 per lane between two checks, then pairwise (``γ_20`` of the absolute
terms), and in float64 from there; ``(K + 16)·2^-52`` relative covers the float64 sums
here and in :func:`exact_error`. A non-finite partial sum gives the bracket (-inf, inf).

Each call is serial and releases the GIL; the caller splits rows over threads (rows are
independent: the result does not depend on the thread count, only the visiting order of
the candidates does). ``fastmath`` stays off; ``llvm.fma`` only enters the brackets.
:func:`lp_brackets` returns every bracket without early stops (for the tests).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from numpy.polynomial import chebyshev, polynomial

from mis._kernels._config import JIT, jit, njit

#: Bound on the relative error of one approximate term |e|^p of :func:`pow_approx` (p <= 4).
POW_REL_ERR = 2e-4
#: Degree of the interior polynomial (fixed: the coefficients are unrolled in the kernel).
POLY_DEGREE = 8

_F = np.float32
_U = 2.0**-24  # unit roundoff of float32
_BLOCK = 64  # elements per screening block (one interior/clamped decision)
_LANES = 16  # float32 accumulator lanes
_CHECK = 4  # blocks between two partial sums (each lane then holds <= 16 terms)
# float32 summation bound: <= 16 sequential terms per lane, then 4 pairwise levels
_GAMMA = 20 * 2.0**-24 / (1 - 20 * 2.0**-24)
_NBUCKET = 64  # buckets of the "how far out" ordering
_T_FAST_MAX = 128.0  # largest |x/s| of an interior block (bound grows with it)
_TINY32 = 1.1754943508222875e-38


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


@intrinsic
def _fma32(typingctx, a, b, c):
    """``a·b + c`` with one rounding (``llvm.fma.f32``; vectorizes like any float op)."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(inline="always", **JIT)  # inlined so the caller's loop vectorizes
def pow_approx(x, p):
    """``x**p`` for float32 ``x >= 0`` and ``p > 0`` (relative error <= POW_REL_ERR).

    ``2^(p·log2 x)``: log2 from the exponent bits and a degree-4 polynomial of the mantissa
    on [√½, √2), ``2^f`` from a degree-4 polynomial on [-½, ½] (Horner with fused
    multiply-adds). Results below 2^-126 are 0, results beyond the float32 range +inf.
    """
    i = _f32_bits(x)
    e = _F((i >> 23) - 127)
    m = _bits_f32((i & 0x7FFFFF) | 0x3F800000)  # mantissa in [1, 2)
    big = m > _F(1.4142135623730951)
    m = m * _F(0.5) if big else m
    e = e + _F(1.0) if big else e
    u = m - _F(1.0)
    poly = _fma32(_F(0.2556668716317013), u, _F(-0.3911231730033573))
    poly = _fma32(poly, u, _F(0.4852140571816433))
    poly = _fma32(poly, u, _F(-0.7205412109097521))
    poly = _fma32(poly, u, _F(1.4426475745511185))
    y = p * _fma32(u, poly, e)  # p·log2(x)
    n = np.rint(y)
    f = y - n
    g = _fma32(_F(0.009676037097921105), f, _F(0.05592203564722869))
    g = _fma32(g, f, _F(0.24022107355829078))
    g = _fma32(g, f, _F(0.6931210339915459))
    g = _fma32(g, f, _F(1.000000075495349))
    ok = (n > _F(-126.0)) & (x > _F(0.0))
    n = n if n < _F(128.0) else _F(128.0)  # exponent field 255: +inf
    nb = np.int32(n + _F(127.0)) if ok else np.int32(1)
    r = _bits_f32(nb << 23) * g
    return r if ok else _F(0.0)


# -------------------------------------------------------------------------------------------
# the interior polynomial
# -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def interior_poly(p: float):
    """Coefficients of ``P(y) ≈ ((y + 1)/2)^p`` on [-1, 1] and a bound on the term error.

    Chebyshev interpolation of degree :data:`POLY_DEGREE`, converted to the monomial basis
    and rounded to float32. The bound covers, for ``y = fl(4e - 1)`` and float32 Horner
    evaluation with fused multiply-adds: the float32 polynomial's deviation (maximum on
    2^21 + 1 points plus half a spacing times a bound on the deviation's derivative), the
    rounding of ``y`` and the Horner roundings (``d·u·Σ|c_k|``).

    Returns
    -------
    coef : numpy.ndarray, shape (POLY_DEGREE + 1,), float32
        ``c_0 … c_d`` (``P(y) = Σ c_k y^k``).
    bound : float
        ``|fl(P(fl(4e - 1))) - (2e)^p| <= bound`` for every float32 ``e ∈ [0, ½]``.
    """
    p = float(p)
    d = POLY_DEGREE
    cheb = chebyshev.chebinterpolate(lambda y: ((y + 1.0) / 2.0) ** p, d)
    coef = chebyshev.cheb2poly(cheb).astype(np.float32)
    c64 = coef.astype(np.float64)
    y = np.linspace(-1.0, 1.0, (1 << 21) + 1)
    dev = np.max(np.abs(polynomial.polyval(y, c64) - ((y + 1.0) / 2.0) ** p))
    k = np.arange(d + 1)
    dpoly = float(np.sum(k * np.abs(c64)))  # >= max |P'| on [-1, 1]
    dtarget = p / 2.0 * max(1.0, 2.0 ** (1.0 - p))  # >= max |d/dy ((y+1)/2)^p|
    spacing = 2.0 / (1 << 21)
    bound = dev + spacing / 2 * (dpoly + dtarget)
    bound += _U * dpoly  # y = fl(4e - 1) is within u of 4e - 1
    bound += (d + 1) * _U * float(np.sum(np.abs(c64))) * 1.01  # Horner with FMA
    return coef, float(bound * 1.01)


# -------------------------------------------------------------------------------------------
# kernels
# -------------------------------------------------------------------------------------------


@njit(inline="always", **JIT)
def _grid(lo, hi, f, qmax, half_levels, symmetric):
    """(s, z) of the range (f·lo, f·hi), float32, the reference convention."""
    mn = lo * f
    mx = hi * f
    s = (mx - mn) / qmax
    s = s if s > _F(_TINY32) else _F(_TINY32)
    z = half_levels if symmetric else np.rint(-mn / s)
    return s, z


@jit
def exact_error(row, s, z, qmax, p):
    """``Σ_k |fl(fl(q_k·s) - x_k)|^p`` in float64 (float64 powers, sequential sum).

    row: (K,) float32; s, z, qmax: float32; p: float64.
    """
    qlo = -z
    qhi = qmax - z
    total = 0.0
    for k in range(row.shape[0]):
        v = row[k]
        q = np.rint(v / s)
        q = q if q > qlo else qlo
        q = q if q < qhi else qhi
        total += math.pow(np.float64(abs(q * s - v)), p)
    return total


@njit(inline="always", **JIT)
def _order_row(row, lo, hi, buf, key, start, bmin, bmax):
    """Copy ``row`` into ``buf`` grouped by how far out each element lies, outermost first
    (``x/hi`` or ``x/lo`` in ``_NBUCKET`` buckets, counting sort), and each block's
    min and max into ``bmin``/``bmax``."""
    K = row.shape[0]
    rhi = _F(_NBUCKET) / hi if hi > 0 else _F(0.0)
    rlo = _F(_NBUCKET) / lo if lo < 0 else _F(0.0)
    for k in range(K):
        v = row[k]
        o = v * (rhi if v > 0 else rlo)  # in [0, _NBUCKET], or inf / NaN for a tiny range
        o = o if o < _F(_NBUCKET - 1) else _F(_NBUCKET - 1)  # (NaN -> the last bucket)
        o = o if o > _F(0.0) else _F(0.0)
        key[k] = _NBUCKET - 1 - np.int32(o)
    start[:] = 0
    for k in range(K):
        start[key[k] + 1] += 1
    for j in range(_NBUCKET):
        start[j + 1] += start[j]
    for k in range(K):
        j = key[k]
        buf[start[j]] = row[k]
        start[j] += 1
    for b in range(bmin.shape[0]):
        k0 = b * _BLOCK
        k1 = min(k0 + _BLOCK, K)
        mn = buf[k0]
        mx = buf[k0]
        for k in range(k0 + 1, k1):
            v = buf[k]
            mn = v if v < mn else mn
            mx = v if v > mx else mx
        bmin[b] = mn
        bmax[b] = mx


@njit(inline="always", **JIT)
def _interior_term(t, c0, c1, c2, c3, c4, c5, c6, c7, c8):
    """P(fl(4e - 1)) for e = |t - rint(t)| (Horner with float32 FMAs)."""
    e = abs(t - np.rint(t))
    y = _fma32(_F(4.0), e, _F(-1.0))
    h = _fma32(c8, y, c7)
    h = _fma32(h, y, c6)
    h = _fma32(h, y, c5)
    h = _fma32(h, y, c4)
    h = _fma32(h, y, c3)
    h = _fma32(h, y, c2)
    h = _fma32(h, y, c1)
    return _fma32(h, y, c0)


@njit(inline="always", **JIT)
def _interior_terms(buf, k0, m, acc, inv, c0, c1, c2, c3, c4, c5, c6, c7, c8):
    """acc[j % 16] += P(fl(4e - 1)), e = |t - rint(t)|, t = x·inv, for buf[k0 : k0 + m]."""
    ng = m // _LANES
    for g in range(ng):
        base = k0 + g * _LANES
        for j in range(_LANES):  # unrolled and vectorized
            acc[j] += _interior_term(buf[base + j] * inv, c0, c1, c2, c3, c4, c5, c6, c7, c8)
    base = k0 + ng * _LANES
    for j in range(m - ng * _LANES):
        acc[j] += _interior_term(buf[base + j] * inv, c0, c1, c2, c3, c4, c5, c6, c7, c8)


@njit(inline="always", **JIT)
def _clamped_terms(buf, k0, m, acc, s, qlo, qhi, pf):
    """acc[j % 16] += pow_approx(a) for buf[k0 : k0 + m] (a exactly as defined)."""
    ng = m // _LANES
    for g in range(ng):
        base = k0 + g * _LANES
        for j in range(_LANES):
            v = buf[base + j]
            q = np.rint(v / s)
            q = q if q > qlo else qlo
            q = q if q < qhi else qhi
            acc[j] += pow_approx(abs(q * s - v), pf)
    base = k0 + ng * _LANES
    for j in range(m - ng * _LANES):
        v = buf[base + j]
        q = np.rint(v / s)
        q = q if q > qlo else qlo
        q = q if q < qhi else qhi
        acc[j] += pow_approx(abs(q * s - v), pf)


@njit(inline="always", **JIT)
def _lane_sum(acc):
    """Σ of the 16 float32 lanes (pairwise, 4 roundings) as float64; acc is zeroed."""
    for h in (8, 4, 2, 1):
        for j in range(h):
            acc[j] += acc[j + h]
    total = np.float64(acc[0])
    acc[:] = 0.0
    return total


@njit(inline="always", **JIT)
def _bracket(buf, bmin, bmax, s, z, qmax, p, pf, coef, poly_bound, lip, acc, sacc, upper):
    """(low, high) with ``low <= E <= high`` for the grid (s, z) on the ordered row ``buf``.

    Stops early with ``low > upper`` (a lower bound that already exceeds ``upper``; the
    terms are >= 0, so a partial sum bounds the whole); non-finite sums give (-inf, inf).
    """
    K = buf.shape[0]
    nblk = bmin.shape[0]
    c0, c1, c2, c3, c4 = coef[0], coef[1], coef[2], coef[3], coef[4]
    c5, c6, c7, c8 = coef[5], coef[6], coef[7], coef[8]
    fast_ok = p >= 1.0
    sp = math.pow(0.5 * np.float64(s), p)  # (s/2)^p
    inv = _F(1.0) / s
    qlo = -z
    qhi = qmax - z
    lim_lo = qlo - _F(0.5)
    lim_hi = qhi + _F(0.5)
    fsum = 0.0
    ssum = 0.0
    n_fast = 0
    n_slow = 0
    eta_sum = 0.0  # Σ over interior elements of η / u
    low = -np.inf
    high = np.inf
    for b in range(nblk):
        k0 = b * _BLOCK
        mb = min(_BLOCK, K - k0)
        tmin = bmin[b] * inv
        tmax = bmax[b] * inv
        tabs = max(abs(tmin), abs(tmax))
        if fast_ok and tmin >= lim_lo and tmax <= lim_hi and tabs <= _T_FAST_MAX:
            _interior_terms(buf, k0, mb, acc, inv, c0, c1, c2, c3, c4, c5, c6, c7, c8)
            eta_sum += (7.001 * np.float64(tabs) + 1.01) * mb
            n_fast += mb
        else:
            _clamped_terms(buf, k0, mb, sacc, s, qlo, qhi, pf)
            n_slow += mb
        if b % _CHECK == _CHECK - 1 or b == nblk - 1:
            fsum += _lane_sum(acc)
            ssum += _lane_sum(sacc)
            approx = sp * fsum + ssum
            slack = sp * (n_fast * poly_bound + lip * 2.0 * _U * eta_sum)
            slack += POW_REL_ERR * ssum + n_slow * 2.0**-125
            # float32 lanes and their pairwise sums: γ of the absolute terms (P >= -bound);
            # float64 sums here and in exact_error: (K + 16)·2^-52
            slack += (_GAMMA + (K + 16) * 2.0**-52) * (
                sp * (abs(fsum) + 2.0 * n_fast * poly_bound) + ssum
            )
            if math.isfinite(approx) and math.isfinite(slack):
                low = approx - slack
                high = approx + slack
                if low > upper:
                    return low, high  # (the lanes were just emptied)
            else:
                low = -np.inf
                high = np.inf
    return low, high


@njit(inline="always", **JIT)
def _lip(p):
    """p·(1 + 2η)^(p-1) for the largest η of an interior block."""
    return p * math.pow(1.0 + 2.0 * _U * (7.001 * _T_FAST_MAX + 1.01), max(p - 1.0, 0.0))


@jit
def lp_brackets(x, lo, hi, factors, n_levels, symmetric, p, coef, poly_bound, low, high):
    """Screening brackets of every row and candidate (no early stop): low, high (R, n)."""
    R, K = x.shape
    nblk = (K + _BLOCK - 1) // _BLOCK
    qmax = _F(n_levels - 1)
    half_levels = _F(n_levels // 2)
    lip = _lip(p)
    buf = np.empty(K, np.float32)
    key = np.empty(K, np.int32)
    start = np.empty(_NBUCKET + 1, np.int64)
    bmin = np.empty(nblk, np.float32)
    bmax = np.empty(nblk, np.float32)
    acc = np.zeros(_LANES, np.float32)
    sacc = np.zeros(_LANES, np.float32)
    for r in range(R):
        _order_row(x[r], lo[r], hi[r], buf, key, start, bmin, bmax)
        for i in range(factors.shape[0]):
            s, z = _grid(lo[r], hi[r], factors[i], qmax, half_levels, symmetric)
            lw, hg = _bracket(
                buf, bmin, bmax, s, z, qmax, p, _F(p), coef, poly_bound, lip, acc, sacc, np.inf
            )
            low[r, i] = lw
            high[r, i] = hg


@jit
def lp_search_rows(x, lo, hi, factors, n_levels, symmetric, p, coef, poly_bound, best, n_exact):
    """Index of the smallest float64 error :func:`exact_error` over the candidates, per row.

    x: (R, K) float32 C-contiguous; lo, hi: (R,) float32 (symmetrized, non-degenerate,
    containing the row); factors: (n,) float32; coef: (POLY_DEGREE + 1,) float32 and
    poly_bound from :func:`interior_poly`; best, n_exact: (R,) int64 outputs (the
    winner; how many candidates were evaluated exactly, 0 when the screen left one).

    Candidates are visited outward from the previous row's winner; once one bracket is
    complete, a candidate is abandoned as soon as the lower end of its partial bracket
    lies above the smallest upper end so far (:func:`_bracket`).
    """
    R, K = x.shape
    n = factors.shape[0]
    nblk = (K + _BLOCK - 1) // _BLOCK
    qmax = _F(n_levels - 1)
    half_levels = _F(n_levels // 2)
    pf = _F(p)
    lip = _lip(p)
    buf = np.empty(K, np.float32)
    key = np.empty(K, np.int32)
    start = np.empty(_NBUCKET + 1, np.int64)
    bmin = np.empty(nblk, np.float32)
    bmax = np.empty(nblk, np.float32)
    acc = np.zeros(_LANES, np.float32)
    sacc = np.zeros(_LANES, np.float32)
    low = np.empty(n, np.float64)
    order = np.empty(n, np.int64)
    guess = n // 4
    for r in range(R):
        lo_r = lo[r]
        hi_r = hi[r]
        _order_row(x[r], lo_r, hi_r, buf, key, start, bmin, bmax)
        # visiting order: outward from the guess
        order[0] = guess
        m = 1
        d = 1
        while m < n:
            if guess + d < n:
                order[m] = guess + d
                m += 1
            if guess - d >= 0:
                order[m] = guess - d
                m += 1
            d += 1
        upper = np.inf
        for step in range(n):
            i = order[step]
            s, z = _grid(lo_r, hi_r, factors[i], qmax, half_levels, symmetric)
            lw, hg = _bracket(
                buf, bmin, bmax, s, z, qmax, p, pf, coef, poly_bound, lip, acc, sacc, upper
            )
            low[i] = lw
            upper = min(upper, hg)
        # every candidate whose lower end lies above the smallest upper end is out
        n_left = 0
        first = -1
        for i in range(n):
            if low[i] <= upper:
                n_left += 1
                if first < 0:
                    first = i
        if n_left == 1:
            best[r] = first
            n_exact[r] = 0
            guess = first
            continue
        best_i = -1
        best_e = np.inf
        for i in range(n):
            if low[i] <= upper:
                s, z = _grid(lo_r, hi_r, factors[i], qmax, half_levels, symmetric)
                e = exact_error(x[r], s, z, qmax, p)
                if best_i < 0 or e < best_e:
                    best_i = i
                    best_e = e
        best[r] = best_i
        n_exact[r] = n_left
        guess = best_i
