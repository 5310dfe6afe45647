"""Uniform affine weight grids (Zhang et al. 2025, Eq. 2 and 4): scale, zero-point, L levels.

A grid maps a weight tensor ``W`` of shape ``(C, ...)`` to integer codes and back:

    q = clamp(round(W / s) + z, 0, L - 1),        Ŵ = s · (q - z)

with ``L = 2^b`` levels for ``b`` bits and ``L = 3`` for 1.58 bits (Eq. 4). ``s`` and
``z`` are either one scalar (per-tensor) or one value per output channel (axis 0,
per-channel). Rounding is to nearest, ties to even (``torch.round``). Eq. 2 of the
paper writes ``⌊W/s⌋``: that floor is the starting point of adaptive rounding
(AdaRound), which :meth:`AffineGrid.round_down` and :meth:`AffineGrid.from_integer`
expose so AdaRound / BRECQ / OBC / GPTQ reuse the very same grid.

Ranges (``lo``, ``hi`` per channel) come from
* ``"minmax"``: the channel's min and max (widened to contain 0 when ``include_zero``);
* ``"mse"``: the best of ``n_candidates`` shrunk ranges ``(f·lo, f·hi)``,
  ``f = 1 - i·shrink_step`` (``i = 0 … 79`` by default), minimising
  ``Σ |W - Ŵ|^p`` with ``p = 2.4`` — the L_p search of the BRECQ / AdaRound / OBC
  reference code (LAPQ). The error is summed in float64 from float64 powers of the
  grid's (float32) errors. Candidate ``i = 0`` is the min/max range, and ties keep the
  earlier candidate, so the search never ends with a larger error than min/max.
  For float32 weights on the CPU a numba pass brackets the candidates' errors and only
  the candidates it cannot separate are evaluated exactly (see :func:`mse_grid`); the
  result is the exact search's.

Scale and zero-point from a range (the reference convention):
asymmetric ``s = (hi - lo)/(L - 1)``, ``z = round(-lo/s)``; symmetric ``hi = max(|lo|, hi)``,
``lo = -hi``, ``s = 2·hi/(L - 1)``, ``z = L // 2``. A zero-width range (a constant
channel) is widened to contain 0, and an all-zero channel gets the range [-1, 1].

All functions are pure: they never modify their input. Computation is in float32
(float64 for float64 input).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from mis._kernels.quant import interior_poly, lp_search_rows
from mis._validation import TERNARY_BITS, bit_width, integer, real, string
from mis.exceptions import MisValueError

RANGE_METHODS = ("minmax", "mse")
DEFAULT_NORM = 2.4
DEFAULT_N_CANDIDATES = 80
DEFAULT_SHRINK_STEP = 0.01
# Elements per chunk of the vectorized search (channels x candidates x elements).
_SEARCH_CHUNK = 1 << 18


# -------------------------------------------------------------------------------------------
# bits <-> levels
# -------------------------------------------------------------------------------------------


def bits_to_levels(bits) -> int:
    """Number of grid levels ``L`` for a bit width: ``2^b`` for integer ``b``, 3 for 1.58.

    Parameters
    ----------
    bits : int or float
        An integer in [1, 16], or 1.58 (ternary; log2(3) ≈ 1.585 bits per weight), checked
        with :func:`mis._validation.bit_width`.
    """
    return levels_for_bits(bit_width(bits, "bits"))


def levels_for_bits(bits: float | int) -> int:
    """``L`` for a bit width that :func:`mis._validation.bit_width` has already returned
    (1.58 or an int in [1, 16]); no check: the path of validated specs and configs."""
    return 3 if bits == TERNARY_BITS else 1 << int(bits)


def levels_to_bits(n_levels: int) -> float:
    """Bits per parameter of a grid with ``n_levels`` levels: ``log2(L)`` (1.585 for L = 3)."""
    return math.log2(n_levels)


def work_tensor(w, name: str = "w", *, check_finite: bool = True) -> torch.Tensor:
    """Validate ``w`` (tensor or array) and return a detached float tensor to compute with.

    ``check_finite=False`` leaves the (full-pass) finiteness check to the caller.
    """
    if not isinstance(w, torch.Tensor):
        try:
            w = torch.as_tensor(w)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise MisValueError(
                f"{name} must be a tensor or an array; got {type(w).__name__}"
            ) from exc
    if not (
        w.is_floating_point() or w.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)
    ):
        raise MisValueError(f"{name} must be a real floating tensor; got dtype {w.dtype}")
    if w.numel() == 0:
        raise MisValueError(f"{name} must not be empty; got shape {tuple(w.shape)}")
    w = w.detach()
    work = torch.float64 if w.dtype == torch.float64 else torch.float32
    w = w.to(work)
    if check_finite and not bool(torch.isfinite(w).all()):
        raise MisValueError(
            f"{name} must be finite; it contains {int((~torch.isfinite(w)).sum())} NaN/inf"
        )
    return w


def as_channels(w: torch.Tensor) -> torch.Tensor:
    """View ``w`` as ``(C, K)``: channels along axis 0; a 0-d or 1-d tensor is one channel."""
    if w.ndim >= 2:
        return w.reshape(w.shape[0], -1)
    return w.reshape(1, -1)


# -------------------------------------------------------------------------------------------
# the grid object
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AffineGrid:
    """A uniform affine grid ``Ŵ = s · (clamp(round(W/s) + z, 0, L-1) - z)``.

    Attributes
    ----------
    scale : torch.Tensor, shape (C,) or ()
        Step ``s > 0``, one per output channel (``axis == 0``) or a scalar (``axis is None``).
    zero_point : torch.Tensor, same shape as ``scale``
        Integer-valued zero-point ``z`` (stored as a float tensor); it may lie outside
        ``[0, L-1]`` when the range does not contain 0.
    n_levels : int
        Number of levels ``L`` (codes ``0 … L-1``).
    axis : int or None
        0 for a per-channel grid, None for a per-tensor grid.

    Methods take tensors whose first dimension is the channel dimension (any trailing
    shape: a full weight, its ``(C, K)`` flattening, a column ``(C, 1)`` or ``(C,)`` as
    GPTQ uses). A 1-channel grid also takes a 0-d or 1-d tensor as that one channel.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    n_levels: int
    axis: int | None = 0

    def __post_init__(self):
        integer(self.n_levels, "n_levels", 2)
        if self.axis not in (0, None):
            raise MisValueError(
                f"axis must be 0 (per-channel) or None (per-tensor); got {self.axis!r}"
            )
        if self.scale.shape != self.zero_point.shape:
            raise MisValueError(
                f"scale and zero_point must have the same shape; got {tuple(self.scale.shape)} "
                f"and {tuple(self.zero_point.shape)}"
            )
        if (self.axis is None) != (self.scale.ndim == 0):
            raise MisValueError(
                "a per-tensor grid (axis=None) needs 0-d scale/zero_point and a per-channel grid "
                f"(axis=0) 1-d ones; got axis={self.axis} and scale of shape "
                f"{tuple(self.scale.shape)}"
            )
        if not bool((self.scale > 0).all()):
            raise MisValueError("scale must be > 0 everywhere")
        if not bool((self.zero_point == torch.round(self.zero_point)).all()):
            raise MisValueError("zero_point must be integer-valued")

    # -- shapes ------------------------------------------------------------------------------
    @property
    def qmax(self) -> int:
        """Largest code ``L - 1`` (the smallest is 0)."""
        return self.n_levels - 1

    @property
    def bits(self) -> float:
        """Bits per parameter, ``log2(L)``."""
        return levels_to_bits(self.n_levels)

    @property
    def n_channels(self) -> int | None:
        """Number of channels of a per-channel grid (None per-tensor)."""
        return None if self.axis is None else int(self.scale.shape[0])

    def _b(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-channel vector against ``like`` (channels on axis 0)."""
        t = t.to(dtype=like.dtype, device=like.device)
        if self.axis is None:
            return t
        if like.ndim <= 1 and t.shape[0] == 1:
            return t.reshape(())  # a 0-d or 1-d tensor is one channel (as_channels)
        if like.ndim == 0 or like.shape[0] != t.shape[0]:
            raise MisValueError(
                f"a per-channel grid with {t.shape[0]} channels needs a tensor with "
                f"{t.shape[0]} rows on axis 0; got shape {tuple(like.shape)}"
            )
        return t.reshape((-1,) + (1,) * (like.ndim - 1))

    def scale_like(self, w: torch.Tensor) -> torch.Tensor:
        """``s`` broadcastable against ``w``."""
        return self._b(self.scale, w)

    def zero_point_like(self, w: torch.Tensor) -> torch.Tensor:
        """``z`` broadcastable against ``w``."""
        return self._b(self.zero_point, w)

    # -- the maps ----------------------------------------------------------------------------
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes ``clamp(round(w/s) + z, 0, L-1)`` (integer-valued, dtype of ``w``)."""
        s, z = self.scale_like(w), self.zero_point_like(w)
        return torch.clamp(torch.round(w / s) + z, 0, self.qmax)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Values ``s · (codes - z)``."""
        return self.scale_like(codes) * (codes - self.zero_point_like(codes))

    def fake_quant(self, w: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(w))``: the nearest grid value (round to nearest, ties to even)."""
        return self.dequantize(self.quantize(w))

    def round_down(self, w: torch.Tensor) -> torch.Tensor:
        """``floor(w/s)`` before the zero-point and the clamp (the AdaRound starting point)."""
        return torch.floor(w / self.scale_like(w))

    def from_integer(self, q: torch.Tensor) -> torch.Tensor:
        """``s · (clamp(q + z, 0, L-1) - z)`` for an integer part ``q`` (may be soft).

        ``fake_quant(w) == from_integer(round(w/s))``; AdaRound uses
        ``from_integer(round_down(w) + h(V))`` with ``h(V) ∈ [0, 1]``.
        """
        z = self.zero_point_like(q)
        return self.scale_like(q) * (torch.clamp(q + z, 0, self.qmax) - z)

    def levels(self) -> torch.Tensor:
        """Representable values, shape (C, L) per-channel or (L,) per-tensor."""
        q = torch.arange(self.n_levels, dtype=self.scale.dtype, device=self.scale.device)
        if self.axis is None:
            return self.scale * (q - self.zero_point)
        return self.scale[:, None] * (q[None, :] - self.zero_point[:, None])

    def error(self, w: torch.Tensor, norm: float = DEFAULT_NORM) -> torch.Tensor:
        """``Σ |w - fake_quant(w)|^norm`` per channel (shape (C,)) or in total (0-d), float64."""
        e = (w - self.fake_quant(w)).abs().double().pow(norm)
        if self.axis is None:
            return e.sum()
        return as_channels(e).sum(1)

    # -- housekeeping --------------------------------------------------------------------------
    def select(self, index) -> AffineGrid:
        """The grid of a subset of channels (``index``: int, slice, list or tensor)."""
        if self.axis is None:
            return self
        s, z = self.scale[index], self.zero_point[index]
        if s.ndim == 0:
            s, z = s.reshape(1), z.reshape(1)
        return AffineGrid(s, z, self.n_levels, 0)

    def to(self, *args, **kwargs) -> AffineGrid:
        """Move ``scale`` and ``zero_point`` (``torch.Tensor.to`` arguments)."""
        return AffineGrid(
            self.scale.to(*args, **kwargs),
            self.zero_point.to(*args, **kwargs),
            self.n_levels,
            self.axis,
        )

    def __repr__(self) -> str:
        where = "per-tensor" if self.axis is None else f"per-channel, {self.n_channels} channels"
        return f"AffineGrid(n_levels={self.n_levels}, {where})"


# -------------------------------------------------------------------------------------------
# ranges and grids from ranges
# -------------------------------------------------------------------------------------------


def weight_range(w, *, per_channel: bool = True, include_zero: bool = True):
    """Min and max of ``w`` per channel (shape (C,)) or overall (0-d).

    With ``include_zero`` the range is widened to contain 0 (``lo <= 0 <= hi``).
    """
    w = work_tensor(w)
    x = as_channels(w) if per_channel else w.reshape(1, -1)
    lo, hi = x.amin(1), x.amax(1)
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if not per_channel:
        lo, hi = lo[0], hi[0]
    return lo, hi


def _symmetrize(lo: torch.Tensor, hi: torch.Tensor):
    a = torch.maximum(lo.abs(), hi.abs())
    return -a, a


def _fix_degenerate(lo: torch.Tensor, hi: torch.Tensor):
    """A zero-width range is widened to contain 0; an all-zero range becomes [-1, 1]."""
    flat = hi - lo <= 0
    lo = torch.where(flat, lo.clamp(max=0), lo)
    hi = torch.where(flat, hi.clamp(min=0), hi)
    zero = hi - lo <= 0
    lo = torch.where(zero, torch.full_like(lo, -1.0), lo)
    hi = torch.where(zero, torch.full_like(hi, 1.0), hi)
    return lo, hi


def _scale_zero(lo, hi, n_levels: int, symmetric: bool):
    """(s, z) of a range, the reference convention (see the module docstring)."""
    s = ((hi - lo) / (n_levels - 1)).clamp(min=torch.finfo(hi.dtype).tiny)  # no subnormal step
    if symmetric:
        z = torch.full_like(s, float(n_levels // 2))
    else:
        z = torch.round(-lo / s)
    return s, z


def grid_from_range(lo, hi, n_levels: int, *, symmetric: bool = False) -> AffineGrid:
    """The affine grid of a range: per-channel when ``lo``/``hi`` have shape (C,), else per-tensor.

    Parameters
    ----------
    lo, hi : torch.Tensor, shape (C,) or ()
        Range ends, ``lo <= hi``.
    n_levels : int
        Number of levels ``L >= 2``.
    symmetric : bool
        Use ``[-max(|lo|, |hi|), max(|lo|, |hi|)]`` and ``z = L // 2``.
    """
    n_levels = integer(n_levels, "n_levels", 2)
    lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    if lo.shape != hi.shape or lo.ndim > 1:
        raise MisValueError(
            f"lo and hi must both have shape (C,) or (); got {tuple(lo.shape)} "
            f"and {tuple(hi.shape)}"
        )
    if bool((lo > hi).any()):
        raise MisValueError("lo must be <= hi")
    if symmetric:
        lo, hi = _symmetrize(lo, hi)
    lo, hi = _fix_degenerate(lo, hi)
    s, z = _scale_zero(lo, hi, n_levels, symmetric)
    return AffineGrid(s, z, n_levels, None if lo.ndim == 0 else 0)


def minmax_grid(
    w,
    n_levels: int,
    *,
    per_channel: bool = True,
    symmetric: bool = False,
    include_zero: bool = True,
) -> AffineGrid:
    """Affine grid whose range is the min/max of ``w`` (per channel, axis 0, or per tensor)."""
    lo, hi = weight_range(w, per_channel=per_channel, include_zero=include_zero)
    return grid_from_range(lo, hi, n_levels, symmetric=symmetric)


def shrink_factors(
    n_candidates: int = DEFAULT_N_CANDIDATES,
    shrink_step: float = DEFAULT_SHRINK_STEP,
    dtype=torch.float32,
) -> torch.Tensor:
    """Candidate range factors ``1 - i·shrink_step``, ``i = 0 … n_candidates - 1``."""
    n_candidates = integer(n_candidates, "n_candidates", 1)
    if real(shrink_step, "shrink_step", 0.0, open_lo=True) * (n_candidates - 1) >= 1:
        raise MisValueError(
            "shrink_step must be > 0 with 1 - shrink_step·(n_candidates - 1) > 0; got "
            f"shrink_step={shrink_step!r} for n_candidates={n_candidates}"
        )
    i = torch.arange(n_candidates, dtype=torch.float64)
    return (1.0 - shrink_step * i).to(dtype)


def candidate_errors(
    x: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    n_levels: int,
    factors: torch.Tensor,
    *,
    symmetric: bool = False,
    norm: float = DEFAULT_NORM,
    chunk: int = _SEARCH_CHUNK,
) -> torch.Tensor:
    """``Σ_k |x_ck - Ŵ_ck|^norm`` for every row ``c`` and every shrunk range (vectorized).

    Parameters
    ----------
    x : torch.Tensor, shape (R, K)
        Rows to quantize (channels, or one row for a per-tensor grid); float32/float64.
    lo, hi : torch.Tensor, shape (R,)
        Ranges before shrinking (already symmetrized and non-degenerate).
    factors : torch.Tensor, shape (n,)
        Shrink factors; candidate ``i`` uses the range ``(factors[i]·lo, factors[i]·hi)``.

    Returns
    -------
    torch.Tensor, shape (R, n)
        Errors in the dtype of ``x``. Rows are processed in chunks of about ``chunk``
        elements of the (rows, candidates, K) tensor, so memory stays bounded.

    Notes
    -----
    ``|e|^p`` is evaluated as ``exp(p·log|e|)`` (vectorized; ``torch.pow`` with a
    non-integer scalar exponent is not), and as ``e·e`` when ``p == 2``.
    """
    R, K = x.shape
    n = factors.shape[0]
    f = factors.to(dtype=x.dtype, device=x.device)
    out = torch.empty((R, n), dtype=x.dtype, device=x.device)
    step = max(1, chunk // max(1, n * K))
    qmax = float(n_levels - 1)
    for r0 in range(0, R, step):
        xr = x[r0 : r0 + step, None, :]  # (r, 1, K)
        lo_c = lo[r0 : r0 + step, None] * f  # (r, n)
        hi_c = hi[r0 : r0 + step, None] * f
        s, z = _scale_zero(lo_c, hi_c, n_levels, symmetric)
        s, z = s[..., None], z[..., None]  # (r, n, 1)
        a = torch.div(xr, s)  # (r, n, K)
        a.round_().add_(z).clamp_(0.0, qmax).sub_(z)  # (clamp with tensor bounds is slow)
        a.mul_(s).sub_(xr)  # Ŵ - x, product rounded first as in the reference code
        if norm == 2:
            a.mul_(a)
        else:
            a.abs_().log_().mul_(norm).exp_()
        out[r0 : r0 + step] = a.sum(-1)
    return out


def _exact_errors(x, lo, hi, n_levels, factors, rows, cols, symmetric, norm):
    """float64 errors ``Σ_k |x_ck - Ŵ_ck|^norm`` of candidate ``cols[j]`` on row ``rows[j]``,
    shape (m,): the grid arithmetic in the dtype of ``x``, the powers and the sum in float64
    (what :meth:`AffineGrid.error` computes)."""
    f = factors[cols]
    s, z = _scale_zero(lo[rows] * f, hi[rows] * f, n_levels, symmetric)
    return AffineGrid(s, z, n_levels, 0).error(x[rows], norm)


def _refine(err, x, lo, hi, n_levels, factors, symmetric, norm):
    """Winner per row from vectorized errors ``err`` (R, n): the smallest float64 error.

    ``err`` (float32 or float64, from :func:`candidate_errors`) is within a relative 1e-4
    of the float64 error (float32 ``exp``/``log`` and sums: about 1e-6); the candidates
    within 2e-4 of a row's minimum are evaluated in float64 (:func:`_exact_errors`) and
    the first smallest wins, the same choice as :func:`_screened_best`'s.
    """
    e = err.double()
    band = e.amin(1, keepdim=True) * (1 + 2e-4) + x.shape[1] * 1e-36
    rows, cols = torch.nonzero(e <= band, as_tuple=True)
    best = e.argmin(1)
    tied = torch.bincount(rows, minlength=e.shape[0]) > 1
    if bool(tied.any()):
        keep = tied[rows]
        rows, cols = rows[keep], cols[keep]
        exact = torch.full_like(e, math.inf)
        exact[rows, cols] = _exact_errors(x, lo, hi, n_levels, factors, rows, cols, symmetric, norm)
        best[tied] = exact[tied].argmin(1)  # first minimum
    return best


def _screened_best(x, lo, hi, n_levels, factors, symmetric, norm):
    """Winner per row for float32 CPU rows (:func:`mis._kernels.quant.lp_search_rows`).

    Returns (best, n_exact): int64 tensors of shape (R,), the winning candidate and how many
    candidates the screen left for an exact float64 evaluation (0 when it left one).
    """
    R = x.shape[0]
    xs = np.ascontiguousarray(x.numpy())
    los, his = np.ascontiguousarray(lo.numpy()), np.ascontiguousarray(hi.numpy())
    fs = np.ascontiguousarray(factors.numpy())
    coef, bound = interior_poly(float(norm))
    best = np.empty(R, dtype=np.int64)
    n_exact = np.empty(R, dtype=np.int64)

    def run(r0, r1):
        lp_search_rows(
            xs[r0:r1],
            los[r0:r1],
            his[r0:r1],
            fs,
            int(n_levels),
            bool(symmetric),
            float(norm),
            coef,
            bound,
            best[r0:r1],
            n_exact[r0:r1],
        )

    # The kernel releases the GIL: split rows over torch's thread count. (numba's OpenMP
    # pool is avoided on purpose: once started, it slows torch's own small ops by an order
    # of magnitude in the same process.) Rows are independent: the result does not depend
    # on the split.
    n_threads = min(torch.get_num_threads(), R, max(1, x.numel() // (1 << 14)))
    if n_threads <= 1:
        run(0, R)
    else:
        cuts = np.linspace(0, R, n_threads + 1).astype(int)
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, cuts[:-1], cuts[1:]))
    return torch.from_numpy(best), torch.from_numpy(n_exact)


def mse_grid(
    w,
    n_levels: int,
    *,
    per_channel: bool = True,
    symmetric: bool = False,
    include_zero: bool = True,
    norm: float = DEFAULT_NORM,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    shrink_step: float = DEFAULT_SHRINK_STEP,
    return_errors: bool = False,
):
    """Affine grid from the L_p search over shrunk ranges (vectorized over channels and candidates).

    The candidates are ``(f·lo, f·hi)`` with ``f = 1 - i·shrink_step``, ``i = 0 … n-1``,
    where ``(lo, hi)`` is the min/max range (:func:`weight_range`, symmetrized when
    ``symmetric``). For each channel (or once per tensor) the candidate with the
    smallest ``Σ|W - Ŵ|^norm`` wins; ties keep the first (widest) candidate, as in the
    reference loop (strict ``<``). The error is the float64 sum of float64 powers of the
    grid's errors ``|W - Ŵ|`` (:meth:`AffineGrid.error`); the reference code evaluates the
    same ``|W - Ŵ|`` with float32 ``pow`` and ``mean``, which can only differ on near-ties
    (relative gap ~1e-6).

    Parameters
    ----------
    w : torch.Tensor, shape (C, ...)
        Weight; channels on axis 0.
    n_levels : int
        ``L`` (use :func:`bits_to_levels`).
    norm : float
        Exponent ``p`` of the error (2.4 in the BRECQ / OBC reference code; 2 for MSE).

    Returns
    -------
    AffineGrid, or (AffineGrid, errors of shape (C, n) or (1, n)) with ``return_errors``
    (the errors of :func:`candidate_errors`, in the dtype of ``w``).

    Notes
    -----
    float32 weights on the CPU (``norm >= 1``) take a screened path
    (:mod:`mis._kernels.quant`): one numba pass per row brackets the candidates' errors (a
    degree-8 polynomial for unclamped weights, an approximate power for the others),
    abandons a candidate as soon as its partial sum shows it cannot be the minimum, and
    evaluates exactly in float64 only the candidates it could not separate (in about 90 %
    of the rows one is left). Other inputs evaluate every candidate with vectorized torch
    ops (:func:`candidate_errors`) and re-evaluate near-ties in float64. Both give the
    winner of the float64 errors; rows are split over ``torch.get_num_threads()`` threads
    and the result does not depend on their number.
    """
    n_levels = integer(n_levels, "n_levels", 2)
    real(norm, "norm", 0.0, open_lo=True)
    w = work_tensor(w, check_finite=False)
    x = as_channels(w) if per_channel else w.reshape(1, -1)
    lo, hi = x.amin(1), x.amax(1)  # NaN propagates: finite ends <=> finite tensor
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        work_tensor(w)  # raises the error message with the count
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if symmetric:
        lo, hi = _symmetrize(lo, hi)
    lo, hi = _fix_degenerate(lo, hi)
    factors = shrink_factors(n_candidates, shrink_step, x.dtype).to(x.device)
    norm = float(norm)
    screened = x.dtype == torch.float32 and x.device.type == "cpu" and norm >= 1
    err = None
    if return_errors or not screened:
        err = candidate_errors(x, lo, hi, n_levels, factors, symmetric=symmetric, norm=norm)
    if screened:
        best, _ = _screened_best(x, lo, hi, n_levels, factors, symmetric, norm)
    else:
        best = _refine(err, x, lo, hi, n_levels, factors, symmetric, norm)
    f = factors[best]
    s, z = _scale_zero(lo * f, hi * f, n_levels, symmetric)
    if not per_channel:
        s, z = s[0], z[0]
    grid = AffineGrid(s, z, n_levels, 0 if per_channel else None)
    return (grid, err) if return_errors else grid


def make_grid(
    w,
    bits,
    *,
    per_channel: bool = True,
    symmetric: bool = False,
    range_method: str = "mse",
    include_zero: bool = True,
    norm: float = DEFAULT_NORM,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    shrink_step: float = DEFAULT_SHRINK_STEP,
) -> AffineGrid:
    """Affine grid for ``bits`` (1.58 → 3 levels) with the chosen range method."""
    return grid_for_levels(
        w,
        bits_to_levels(bits),
        per_channel=per_channel,
        symmetric=symmetric,
        range_method=range_method,
        include_zero=include_zero,
        norm=norm,
        n_candidates=n_candidates,
        shrink_step=shrink_step,
    )


def grid_for_levels(
    w,
    n_levels: int,
    *,
    per_channel: bool = True,
    symmetric: bool = False,
    range_method: str = "mse",
    include_zero: bool = True,
    norm: float = DEFAULT_NORM,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    shrink_step: float = DEFAULT_SHRINK_STEP,
) -> AffineGrid:
    """Affine grid with ``n_levels`` levels: :func:`minmax_grid` or :func:`mse_grid` by
    ``range_method`` (:func:`make_grid` takes a bit width instead)."""
    string(range_method, "range_method", RANGE_METHODS)
    if range_method == "minmax":
        return minmax_grid(
            w, n_levels, per_channel=per_channel, symmetric=symmetric, include_zero=include_zero
        )
    return mse_grid(
        w,
        n_levels,
        per_channel=per_channel,
        symmetric=symmetric,
        include_zero=include_zero,
        norm=norm,
        n_candidates=n_candidates,
        shrink_step=shrink_step,
    )


def uaq(w, bits, **grid_options) -> torch.Tensor:
    """Uniform affine quantization of ``w`` (Eq. 2 / 4): the fake-quantized tensor, same dtype.

    ``grid_options`` are those of :func:`make_grid` (default: per-channel, asymmetric, MSE range).
    """
    w_in = w if isinstance(w, torch.Tensor) else torch.as_tensor(w)
    x = work_tensor(w_in)
    grid = make_grid(x, bits, **grid_options)
    out = grid.fake_quant(x)
    return out.to(w_in.dtype) if w_in.is_floating_point() else out
