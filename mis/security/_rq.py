"""The r_Q privacy indicator of Aubinais et al. (2025), Theorem 3.3 and Algorithm 1.

For one training run and one quantizer Q, let θ̄_1, …, θ̄_K be the distinct
quantized checkpoints along the training trajectory, sorted by their mean
validation loss m_1 ≤ m_2 ≤ … ≤ m_K, and L_k the vector of per-sample
validation losses of θ̄_k. With the loss gaps δ_k = m_k − m_1 and the loss
variabilities σ_k² = Var(L_k − L_1) (over the validation samples),
Algorithm 1 returns

    r_Q = δ_2² · ½ [max_{k≥2} σ_k² (δ_2/δ_k)²]⁻¹                (Alg. 1, lines 17–18)

which is algebraically

    r_Q = min_{k≥2} δ_k² / (2 σ_k²).

The second form is what is computed: it has no 0/0 when δ_2 = 0 and no
cancellation. A higher r_Q means a more private quantized algorithm: the MIS
approaches 1 like 1 − exp(−n r_Q (1 + o(1))) (Theorem 3.3).

Rules for the degenerate cases (DESIGN.md § r_Q):

* Checkpoints that quantize to the same point of Θ̄ (same ``qhash``, or, when no
  hash is given, bit-identical loss vectors) are one point and are deduplicated
  first; otherwise δ = σ = 0 would be meaningless. When a hash is given it is
  trusted: the first checkpoint of a hash (in order of mean loss) represents it.
* One distinct point → r_Q = +inf with a :class:`DegenerateStatisticWarning`
  (the quantized algorithm is constant along the trajectory; nothing to estimate).
* δ_k = 0 for a distinct point k (equal mean loss) → the term is 0, so r_Q = 0.
* σ_k = 0 with δ_k > 0 (a constant loss gap) → the term is +inf: point k never
  beats point 1 on any sample, and in the paper's form its λ_k = σ_k²(δ_2/δ_k)²
  is 0, so it never attains the max. If that holds for every k ≥ 2, r_Q = +inf
  with a warning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from mis._kernels import rq as _k
from mis._progress import progress_bar
from mis._validation import as_array, integer
from mis.exceptions import DegenerateStatisticWarning, MisValueError

__all__ = ["RqBatchResult", "RqResult", "rq", "rq_batch"]

_CHUNK_BYTES = 128 * 2**20  # rq_batch streams over runs in chunks of about this size
# float64 blocks whose largest |loss| lies outside [2**-200, 2**200] are rescaled by a power
# of two first: exact, r_Q is scale-invariant, and the squares of the kernel then neither
# overflow nor underflow (float32 blocks cannot reach that range)
_SAFE_LO = 2.0**-200
_SAFE_HI = 2.0**200


@dataclass(frozen=True)
class RqResult:
    """r_Q of one run under one quantizer (result of :func:`rq`).

    Attributes
    ----------
    rq : float
        r_Q = min_{k≥2} δ_k²/(2σ_k²) in [0, +inf].
    delta2 : float
        δ_2 = m_2 − m_1, the gap between the two lowest mean losses (NaN with
        one distinct point).
    argmin_checkpoint : int
        Input index of the checkpoint attaining the minimum, i.e. the k that
        maximises λ_k = σ_k²(δ_2/δ_k)² in Algorithm 1 (-1 when r_Q = inf).
    argmin_position : int
        Its position among the distinct points sorted by mean loss (1 = the
        second best; -1 when r_Q = inf).
    best_checkpoint : int
        Input index of the checkpoint with the lowest mean loss (θ̄_1).
    n_distinct : int
        Number of distinct quantized points after deduplication.
    n_checkpoints : int
        Number of checkpoints given.
    checkpoints : ndarray of int64, shape (n_distinct,)
        Input index of each distinct point, in order of mean loss.
    means : ndarray of float64, shape (n_distinct,)
        m_k of each distinct point.
    deltas, variances : ndarray of float64, shape (n_distinct,)
        δ_k and σ_k² (0 for the first point).
    ratios : ndarray of float64, shape (n_distinct,)
        δ_k²/(2σ_k²) (inf for the first point); ``rq = ratios.min()``.
    """

    rq: float
    delta2: float
    argmin_checkpoint: int
    argmin_position: int
    best_checkpoint: int
    n_distinct: int
    n_checkpoints: int
    checkpoints: np.ndarray = field(repr=False, compare=False)
    means: np.ndarray = field(repr=False, compare=False)
    deltas: np.ndarray = field(repr=False, compare=False)
    variances: np.ndarray = field(repr=False, compare=False)
    ratios: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class RqBatchResult:
    """r_Q of every (run, quantizer) block (result of ``rq_batch(..., details=True)``).

    Every field has shape (n_runs, n_quantizers); the meaning is that of the
    field of the same name in :class:`RqResult`.
    """

    rq: np.ndarray
    delta2: np.ndarray
    n_distinct: np.ndarray
    best_checkpoint: np.ndarray
    argmin_checkpoint: np.ndarray


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_losses_shape(shape, ndim: int, ddof: int, name: str = "val_losses") -> None:
    axes = "(n_checkpoints, n_val)" if ndim == 2 else "(n_runs, n_quantizers, n_checkpoints, n_val)"
    if len(shape) != ndim:
        raise MisValueError(f"{name} must have shape {axes}; got an array of shape {shape}")
    if any(s == 0 for s in shape):
        raise MisValueError(f"{name} must not have an empty axis; got shape {shape}")
    if shape[-2] < 2:
        raise MisValueError(
            f"{name} must hold at least 2 checkpoints (axis -2) to compare quantized points; "
            f"got {shape[-2]}"
        )
    if shape[-1] <= max(ddof, 1):
        raise MisValueError(
            f"{name} must hold more than max(ddof, 1) = {max(ddof, 1)} validation samples "
            f"(axis -1) for a variance; got {shape[-1]}"
        )


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MisValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")


def _hash_codes(qhash, shape: tuple[int, ...]) -> np.ndarray:
    """``qhash`` as int64 codes with the same equality pattern (any dtype that sorts)."""
    h = as_array(qhash, "qhash")
    if h.shape != shape:
        raise MisValueError(
            f"qhash must have shape {shape} (one hash per checkpoint of val_losses); "
            f"got shape {h.shape}"
        )
    if h.dtype.kind in "iub":
        # a bijection onto int64 (uint64 wraps), so equal codes <=> equal hashes
        return np.ascontiguousarray(h.astype(np.int64))
    if h.dtype.kind == "f" and np.isnan(h).any():
        raise MisValueError("qhash must not contain NaN")
    _, codes = np.unique(h.reshape(-1), return_inverse=True)
    return np.ascontiguousarray(codes.reshape(shape).astype(np.int64))


def _rescaled(blocks: np.ndarray) -> np.ndarray:
    """``blocks`` (..., n_checkpoints, n_val), float64, with every block whose largest
    absolute loss lies outside [2**-200, 2**200] multiplied by a power of two that brings it
    into [0.5, 1) (a copy only then).

    Multiplying by a power of two is exact and r_Q = min δ_k²/(2σ_k²) is scale-invariant, so
    the result is the same bit for bit as the unscaled computation wherever that one neither
    overflows nor underflows, and right where it would (``rq(L * 1e300)`` = ``rq(L)``).
    """
    if blocks.dtype != np.float64 or blocks.size == 0:
        return blocks
    with np.errstate(invalid="ignore"):
        hi = blocks.max(axis=(-2, -1))
        lo = blocks.min(axis=(-2, -1))
        m = np.maximum(hi, -lo)
        bad = np.isfinite(m) & ((m > _SAFE_HI) | ((m < _SAFE_LO) & (m > 0)))
    if not bad.any():
        return blocks
    out = np.array(blocks, dtype=np.float64, copy=True)
    exps = np.frexp(m[bad])[1]
    out[bad] = np.ldexp(out[bad], -exps[..., None, None])
    return out


# --------------------------------------------------------------------------------------------
# single block
# --------------------------------------------------------------------------------------------
def rq(val_losses, qhash=None, *, ddof: int = 1) -> RqResult:
    """r_Q of one run under one quantizer (Aubinais et al. 2025, Algorithm 1).

    Parameters
    ----------
    val_losses : array_like of float, shape (n_checkpoints, n_val)
        Per-sample validation losses ℓ(θ̄_k, z) of the quantized checkpoint k
        (rows, any order) on each validation sample z (columns).
    qhash : array_like, shape (n_checkpoints,), optional
        A hash of each quantized checkpoint's weights; equal hashes are one
        point of Θ̄. Without it, checkpoints with bit-identical loss rows are one
        point.
    ddof : int, default 1
        Delta degrees of freedom of σ_k² = Var(L_k − L_1) (1: unbiased).

    Returns
    -------
    RqResult
        ``rq`` and its diagnostics.

    Warns
    -----
    DegenerateStatisticWarning
        One distinct point, or zero variance for every loss difference
        (r_Q = +inf); see the module docstring.

    Raises
    ------
    MisValueError
        Wrong shape, fewer than 2 checkpoints, too few validation samples,
        NaN or infinite losses, or a ``qhash`` of the wrong shape.

    Notes
    -----
    r_Q is computed as min_{k≥2} δ_k²/(2σ_k²), which equals lines 17–18 of
    Algorithm 1. Sums are in float64 whatever the input dtype. r_Q does not change when
    every loss is multiplied by the same positive constant; losses whose magnitude would
    overflow or underflow the squares (beyond 2**±200) are first rescaled by a power of
    two, exactly.
    """
    ddof = integer(ddof, "ddof", minimum=0)
    L = as_array(val_losses, "val_losses")
    _check_numeric(L, "val_losses")
    _check_losses_shape(L.shape, 2, ddof)
    L = np.ascontiguousarray(L, dtype=np.float64)
    bad = ~np.isfinite(L)
    if bad.any():
        k, i = (int(v[0]) for v in np.nonzero(bad))
        raise MisValueError(
            f"val_losses must be finite; found {L[k, i]} at checkpoint {k}, sample {i} "
            f"({int(bad.sum())} non-finite values)"
        )
    L = _rescaled(L[None])[0]
    K = L.shape[0]
    use_hash = qhash is not None
    h = _hash_codes(qhash, (K,)) if use_hash else np.zeros(K, dtype=np.int64)
    means = np.empty(K)
    kept = np.empty(K, dtype=np.int64)
    deltas = np.empty(K)
    variances = np.empty(K)
    ratios = np.empty(K)
    status, value, delta2, n, best, argmin = _k.rq_block(
        L, h, use_hash, ddof, means, kept, deltas, variances, ratios, np.empty(L.shape[1])
    )
    _warn_degenerate(int(status == _k.ONE_POINT), int(status == _k.ZERO_VARIANCE))
    checkpoints = kept[:n].copy()
    return RqResult(
        rq=float(value),
        delta2=float(delta2),
        argmin_checkpoint=int(kept[argmin]) if argmin >= 0 else -1,
        argmin_position=int(argmin),
        best_checkpoint=int(best),
        n_distinct=int(n),
        n_checkpoints=K,
        checkpoints=checkpoints,
        means=means[checkpoints],
        deltas=deltas[:n].copy(),
        variances=variances[:n].copy(),
        ratios=ratios[:n].copy(),
    )


def _warn_degenerate(n_one_point: int, n_zero_var: int, stacklevel: int = 3) -> None:
    if n_one_point:
        warnings.warn(
            f"{n_one_point} block(s) have a single distinct quantized point along the trajectory; "
            "r_Q is +inf there (the quantized algorithm does not move: nothing to estimate)",
            DegenerateStatisticWarning,
            stacklevel=stacklevel,
        )
    if n_zero_var:
        warnings.warn(
            f"{n_zero_var} block(s) have zero variance in every loss difference L_k - L_1 "
            "with a positive gap; r_Q is +inf there",
            DegenerateStatisticWarning,
            stacklevel=stacklevel,
        )


# --------------------------------------------------------------------------------------------
# many blocks
# --------------------------------------------------------------------------------------------
def _kernel_ready(chunk: np.ndarray) -> np.ndarray:
    """A view the kernel can read without copying when possible (float32/64, native, C order)."""
    if chunk.dtype in (np.float32, np.float64) and chunk.dtype.isnative:
        return np.ascontiguousarray(chunk)  # a no-copy view of a contiguous memmap
    return np.ascontiguousarray(chunk, dtype=np.float64)


def rq_batch(
    val_losses,
    qhash=None,
    *,
    ddof: int = 1,
    details: bool = False,
    progress: bool | None = None,
):
    """r_Q for every run and quantizer, in parallel, streaming over runs.

    Parameters
    ----------
    val_losses : array_like of float, shape (n_runs, n_quantizers, n_checkpoints, n_val)
        Per-sample validation losses; typically the store's ``val_losses``
        opened as a float32 ``numpy.memmap``. It is read in chunks of runs
        (about 128 MiB each); float32 and float64 chunks are used in place, so
        the whole array is never copied or converted.
    qhash : array_like, shape (n_runs, n_quantizers, n_checkpoints), optional
        Hash of each quantized checkpoint (the store's ``qhash``, uint64).
    ddof : int, default 1
        As in :func:`rq`.
    details : bool, default False
        Return an :class:`RqBatchResult` with the diagnostics instead of the
        bare r_Q array.
    progress : bool or None
        Show a progress bar over chunks; ``None``: only when stderr is a terminal.

    Returns
    -------
    ndarray of float64, shape (n_runs, n_quantizers), or RqBatchResult
        ``out[r, q]`` equals ``rq(val_losses[r, q], qhash[r, q]).rq``, bit for bit.

    Warns
    -----
    DegenerateStatisticWarning
        Once, with counts, if some blocks have r_Q = +inf (see :func:`rq`).

    Raises
    ------
    MisValueError
        Wrong shapes, fewer than 2 checkpoints, too few validation samples, or a
        non-finite loss (the message names the first offending run and
        quantizer; the check is done inside the kernel, without an extra pass).
    """
    ddof = integer(ddof, "ddof", minimum=0)
    if not hasattr(val_losses, "shape") or not hasattr(val_losses, "dtype"):
        val_losses = as_array(val_losses, "val_losses")
    _check_numeric(val_losses, "val_losses")
    _check_losses_shape(tuple(val_losses.shape), 4, ddof)
    R, Q, K, N = val_losses.shape
    use_hash = qhash is not None
    H = _hash_codes(qhash, (R, Q, K)) if use_hash else np.zeros((1, 1, 1), dtype=np.int64)

    out_rq = np.empty((R, Q))
    out_d2 = np.empty((R, Q))
    out_nd = np.empty((R, Q), dtype=np.int64)
    out_best = np.empty((R, Q), dtype=np.int64)
    out_arg = np.empty((R, Q), dtype=np.int64)
    status = np.empty((R, Q), dtype=np.int8)

    run_bytes = Q * K * N * max(val_losses.dtype.itemsize, 4)
    step = max(1, _CHUNK_BYTES // max(run_bytes, 1))
    starts = range(0, R, step)
    bar = progress_bar(starts, total=math.ceil(R / step), desc="r_Q chunks", enabled=progress)
    for r0 in bar:
        r1 = min(r0 + step, R)
        chunk = _rescaled(_kernel_ready(np.asarray(val_losses[r0:r1])))
        Hc = H[r0:r1] if use_hash else H
        _k.rq_many(
            chunk, Hc, use_hash, ddof,
            out_rq[r0:r1], out_d2[r0:r1], out_nd[r0:r1], out_best[r0:r1], out_arg[r0:r1],
            status[r0:r1],
        )  # fmt: skip
        bad = status[r0:r1] == _k.NON_FINITE
        if bad.any():
            r, q = (int(v[0]) for v in np.nonzero(bad))
            raise MisValueError(
                f"val_losses must be finite; run {r0 + r}, quantizer {q} holds a NaN or infinite "
                f"loss ({int(bad.sum())} such blocks in runs {r0}..{r1 - 1})"
            )
    bar.close()
    _warn_degenerate(int((status == _k.ONE_POINT).sum()), int((status == _k.ZERO_VARIANCE).sum()))
    if not details:
        return out_rq
    return RqBatchResult(
        rq=out_rq,
        delta2=out_d2,
        n_distinct=out_nd,
        best_checkpoint=out_best,
        argmin_checkpoint=out_arg,
    )
