"""GPTQ — the fast blocked-Cholesky OBS quantizer (Frantar et al. 2023), ``"gptq"``, and our
refinement sweeps after it, ``"gptq-refine"``.

GPTQ quantizes the columns of a layer ``W`` (shape ``(C, K)``) in one fixed order for
all rows at once, instead of OBC's greedy per-row order. With a fixed order the OBS
updates of all rows share one sequence of inverse Hessians ``H⁻¹_{F_t}``, whose needed
rows are exactly the rows of the upper Cholesky factor ``R`` of ``H⁻¹``
(``H⁻¹ = RᵀR``; GPTQ paper §3 "Step 3: Cholesky reformulation"). For column ``j``::

    q_j = quant(w_j),   e_j = (w_j − q_j) / R_jj,   w_{j+1:} ← w_{j+1:} − e_j R_{j, j+1:}

"Lazy batch updates" (§3, Step 2): the update is applied inside a block of
``block_size`` columns (128) immediately and to the columns after the block at once,
``W_{:, i2:} −= E R_{i1:i2, i2:}`` — the same arithmetic, regrouped as a GEMM.

The ``"gptq"`` method is the reference algorithm
------------------------------------------------
Checked line by line against the reference implementation (IST-DASLab/gptq, ``gptq.py``
``GPTQ.fasterquant`` and ``quant.py`` ``Quantizer``; the ``opt.py`` driver):

* columns in their natural order (the reference's default; ``act_order=True`` is its
  ``--act-order`` heuristic, decreasing ``diag H``, off by default as there);
* the per-channel grid is fixed once from the *original* weight, before dead columns are
  zeroed and before any update (the reference calls ``find_params(W)`` first);
* dead columns (``H_jj = 0``) get ``H_jj = 1`` and weight 0; relative damping
  ``H + percdamp·mean(diag H)·I``, ``percdamp = 0.01``; Cholesky of ``H``, then of
  ``H⁻¹`` (upper); blocks of 128 columns with lazy updates;
* layers one after another, each Hessian captured in the network whose earlier layers are
  already quantized (``sequential=True``, the reference's sequential driver);
* no refinement of any kind.

Where it differs, on purpose: ``H`` is accumulated and factorised in float64 (the reference
accumulates in float32; ``dtype="float32"`` runs the solver in float32), a Hessian that is
not positive definite after damping raises a :class:`~mis.exceptions.MisValueError` (the
reference fails inside ``torch.linalg.cholesky``), and the grid is the
:class:`~mis.quant.api.QuantConfig`'s — the same for every method of an audit (per-channel
asymmetric with the L2.4 range search by default; the reference's default is the min/max
range including 0, ``range_method="minmax"``, ``include_zero=True``). 1-bit layers use
``α_c·sign(W)`` with ``α_c = mean|W_c|`` from the original weight (Zhang et al.'s 1-bit
quantizer; the reference has no 1-bit grid). The test
``tests/test_quant_gptq.py::test_gptq_equals_fixed_order_obs`` checks the result against a
plain one-column-at-a-time OBS loop in the same order.

The ``"gptq-refine"`` method: refinement sweeps (*our extension*, not in the GPTQ paper)
------------------------------------------------------------------------------------------
GPTQ fixes each column once, in one order shared by all rows, and the last columns have
no free weights left to absorb their rounding errors. On a 256 × 2304 conv layer with
correlated inputs its error ``‖WX − ŴX‖²`` is about 1.2× OBC's at 4 bits (1.3–1.4× at 2
and 1.58 bits, ``benchmarks/bench_obc.py``); neither the column order (natural,
act-order, reversed, random and cost-based orders are all within a few per cent) nor
the grid closes that gap. What does is revisiting the columns once all of them are fixed.
A sweep is block coordinate descent on the damped loss
``f(Q) = Σ_c (q_c − w_c) H (q_c − w_c)ᵀ``: the columns, in the layer's own order (so a
block holds neighbouring taps of a few input channels, the most strongly coupled
weights), are cut into blocks ``B`` of ``refine_block`` columns — the borders start at
0, B/2, B/4, 3B/4 in successive sweeps, so that they move — and for each block, with all
other columns held at their current quantized values,

1. the unconstrained optimum of the block, ``T_B = Q_B − G_B H_BB⁻¹`` with
   ``G = (Q − W) H`` (the gradient of ``f``, halved), so that
   ``f(Q) = const + Σ_c (q_{c,B} − t_{c,B}) H_BB (q_{c,B} − t_{c,B})ᵀ``;
2. GPTQ of ``T_B`` with Hessian ``H_BB``, in forward and in backward column order,
   gives two candidates ``Q'_B`` on the same grid;
3. each row takes the better candidate only if it lowers that row's loss, so ``f``
   never increases; ``G += (Q'_B − Q_B) H_{B,:}``.

A sweep costs one to two GPTQ passes (``C·K²`` flops in GEMMs plus ``2K`` small column
steps). Sweeps stop early at a fixed point (a full cycle of border offsets that changes
nothing). On the benchmark layer 8 sweeps bring GPTQ (act-order) from 1.21× to about
1.07× OBC's error at 4 bits and from 1.38× to about 1.11× at 2 bits, at about 5× the
time of plain GPTQ (still far below OBC's); the same sweeps lower OBC's own error by
only 1–3 %, so they mostly repair what the fixed order costs GPTQ. The idea is that of
coordinate descent on the layer loss (CDQuant, Nair & Suggala 2024, greedy updates of
one weight or a small group at a time, started from GPTQ); re-quantizing blocks with
GPTQ itself in two orders is our variant.

On the digits CNN (``experiments/ptq_digits_obc_gptq.py``, 3 seeds) the sweeps make
``"gptq-refine"`` at least as accurate as RTN on every seed at 2 and 1.58 bits. At
1 bit (``α_c·sign``) they lower every layer's output error too, but the relative errors
are then 0.5–0.8 of the outputs' energy, and the least-squares solution is a poor
classifier: accuracy fell (3-seed mean 54 % → 36 %, RTN 71 %, OBC 66 %; all methods
are erratic there), so ``"gptq-refine"``'s default (``refine_sweeps=None``) runs 8
sweeps on layers of 3 or more levels and none on 1-bit layers. ``"gptq-refine"`` also
orders the columns by decreasing ``diag H`` (``act_order=True``), which was clearly more
accurate than the natural order on the digits CNN at 2 and 1.58 bits.

Same Hessian (:mod:`mis.quant.capture`, float64 accumulation), same dead-column
handling and relative damping (``percdamp``, default 0.01, as in the reference), and the
same grids as :mod:`mis.quant.obc` (per-channel affine from the layer's
:class:`~mis.quant.api.LayerSpec`; ``α_c·sign`` with fixed ``α_c = mean|W_c|`` for 1 bit).

``method_options`` of ``"gptq"`` (the fields of :class:`GPTQOptions`): ``percdamp``
(0.01), ``block_size`` (128), ``act_order`` (False), ``dtype`` ("float64"), ``sequential``
(True), ``batch_size``, ``device``, ``progress``, ``bn_tuning`` (False), ``bn_batches``,
``bn_batch_size``, ``bn_momentum`` (see :class:`~mis.quant.obc.LayerwiseOptions`).
``"gptq-refine"`` (:class:`GPTQRefineOptions`) adds ``refine_sweeps`` (None: 8, or 0 on
1-bit layers) and ``refine_block`` (32), and defaults to ``act_order=True``.

References
----------
E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh. GPTQ: Accurate post-training
quantization for generative pre-trained transformers. ICLR 2023 (IST-DASLab/gptq).
P. A. Nair, A. S. Suggala. CDQuant: Greedy coordinate descent for accurate LLM
quantization. arXiv:2406.17542, 2024 (greedy coordinate descent on the same loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mis._validation import boolean, integer
from mis.exceptions import MisValueError
from mis.quant.api import LayerSpec, QuantPlan, register_method
from mis.quant.calibration import Calibration
from mis.quant.grids import as_channels
from mis.quant.obc import (
    DEFAULT_PERCDAMP,
    SOLVER_DTYPES,
    LayerwiseOptions,
    check_layer_inputs,
    layer_grid,
    on_grid,
    prepare_hessian,
    run_layerwise,
)

DEFAULT_BLOCK_SIZE = 128
DEFAULT_REFINE_BLOCK = 32
# refinement sweeps of the "gptq-refine" method (gptq_quantize defaults to 0: plain GPTQ)
DEFAULT_METHOD_REFINE_SWEEPS = 8
# a row takes a block's new values only if its loss drops by more than this fraction
# (rounding noise must not count as progress)
_REFINE_RTOL = 1e-12


def _gptq_columns(W: torch.Tensor, R: torch.Tensor, grid, block_size: int) -> torch.Tensor:
    """The GPTQ column sweep (§3, Steps 2–3) of ``W`` (C, K), modified in place.

    ``R`` (K, K): upper Cholesky factor of ``H⁻¹``. Returns the quantized ``Q`` (C, K).
    """
    K = W.shape[1]
    Q = torch.empty_like(W)
    for i1 in range(0, K, block_size):
        i2 = min(i1 + block_size, K)
        W1 = W[:, i1:i2].clone()
        E1 = torch.empty_like(W1)
        R1 = R[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = W1[:, i]
            q = grid.fake_quant(col)
            Q[:, i1 + i] = q
            e = (col - q) / R1[i, i]
            W1[:, i:].sub_(e.unsqueeze(1) * R1[i, i:].unsqueeze(0))
            E1[:, i] = e
        if i2 < K:
            W[:, i2:].sub_(E1 @ R[i1:i2, i2:])  # lazy batch update
    return Q


def _gptq_multi(W: torch.Tensor, R: torch.Tensor, grid) -> torch.Tensor:
    """GPTQ of ``m`` problems at once without lazy blocks: ``W`` (C, m, n), ``R`` (m, n, n).

    Problem ``k`` is ``W[:, k]`` with factor ``R[k]``; every row keeps its own grid.
    Returns ``Q`` (C, m, n); ``W`` is not modified.
    """
    W = W.clone()
    Q = torch.empty_like(W)
    for i in range(W.shape[2]):
        col = W[:, :, i]
        q = grid.fake_quant(col)  # (C, m): channel c's grid for all m problems
        Q[:, :, i] = q
        e = (col - q) / R[:, i, i]
        W[:, :, i:].sub_(e.unsqueeze(2) * R[:, i, i:].unsqueeze(0))
    return Q


def _upper_inverse_factor(L: torch.Tensor) -> torch.Tensor:
    """``R`` upper with ``RᵀR = H⁻¹`` from the lower Cholesky factor ``L`` of ``H``.

    Row ``j`` of ``R`` is ``H⁻¹_{F_j}[j, j:] / sqrt(H⁻¹_{F_j}[j, j])`` (GPTQ §3, Step 3).
    """
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def _block_offsets(block: int) -> list[int]:
    """Where the block borders of successive sweeps start: 0, B/2, B/4, 3B/4 (distinct)."""
    return list(dict.fromkeys([0, block // 2, block // 4, (3 * block) // 4]))


def _refine_blocks(
    W: torch.Tensor,
    Q: torch.Tensor,
    Hd: torch.Tensor,
    dead: torch.Tensor,
    grid,
    sweeps: int,
    block: int,
) -> tuple[torch.Tensor, int]:
    """Block coordinate descent on ``Σ_c (q_c − w_c) Hd (q_c − w_c)ᵀ`` (module docstring).

    ``W``, ``Q`` (C, K) and ``Hd`` (K, K, damped) in the solver's dtype; ``Q`` on
    ``grid``; ``dead`` (K,) bool: the dead columns, whose block optimum is exactly 0
    (``W`` and the off-diagonal ``H`` are 0 there; set so, not left to rounding, which
    would pick a side of ``sign(0)``). Returns the refined ``Q`` (a new tensor) and the
    number of sweeps run.
    """
    K = W.shape[1]
    Q = Q.clone()
    G = (Q - W) @ Hd  # kept current by the rank-|B| updates below
    offsets = _block_offsets(block)
    factors: dict[tuple[int, int], tuple] = {}
    idle = 0
    done = 0
    for s in range(sweeps):
        off = offsets[s % len(offsets)]
        starts = ([0] if off else []) + list(range(off, K, block))
        changed = False
        for a, b in zip(starts, [*starts[1:], K], strict=True):
            Hbb = Hd[a:b, a:b]
            if (a, b) not in factors:  # a principal block of an SPD matrix: SPD
                L = torch.linalg.cholesky(Hbb)
                rev = torch.arange(b - a - 1, -1, -1, device=Hd.device)
                Rr = _upper_inverse_factor(torch.linalg.cholesky(Hbb[rev][:, rev]))
                factors[(a, b)] = (L, _upper_inverse_factor(L), rev, Rr)
            L, Rf, rev, Rr = factors[(a, b)]
            Qb = Q[:, a:b]
            T = Qb - torch.cholesky_solve(G[:, a:b].T, L).T  # block optimum, rest fixed
            T[:, dead[a:b]] = 0.0
            best, loss = Qb, _row_loss(Qb - T, Hbb)
            # GPTQ of the block in forward and backward column order, side by side
            both = _gptq_multi(torch.stack((T, T[:, rev]), 1), torch.stack((Rf, Rr)), grid)
            for cand in (both[:, 0], both[:, 1, rev]):
                c_loss = _row_loss(cand - T, Hbb)
                take = c_loss < loss * (1 - _REFINE_RTOL)
                best = torch.where(take.unsqueeze(1), cand, best)
                loss = torch.where(take, c_loss, loss)
            rows = torch.nonzero((best != Qb).any(1)).flatten()
            if rows.numel() == 0:
                continue
            changed = True
            G[rows] += (best[rows] - Qb[rows]) @ Hd[a:b]
            Q[rows, a:b] = best[rows]  # exact grid values
        done = s + 1
        idle = 0 if changed else idle + 1
        if idle == len(offsets):  # every block partition leaves Q unchanged: a fixed point
            break
    return Q, done


def _row_loss(D: torch.Tensor, Hbb: torch.Tensor) -> torch.Tensor:
    """``d_c Hbb d_cᵀ`` for every row ``d_c`` of ``D``."""
    return ((D @ Hbb) * D).sum(1)


def gptq_quantize(
    w: torch.Tensor,
    H: torch.Tensor,
    grid,
    *,
    percdamp: float = DEFAULT_PERCDAMP,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = False,
    refine_sweeps: int = 0,
    refine_block: int = DEFAULT_REFINE_BLOCK,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Quantize one layer's weight with GPTQ (optionally followed by refinement sweeps).

    Parameters
    ----------
    w : torch.Tensor, shape (C, ...)
        The weight (a conv weight is flattened to ``(C, K)`` in ``nn.Unfold`` order).
    H : torch.Tensor, shape (K, K)
        ``2XXᵀ/N`` of the layer's inputs; not modified.
    grid : LayerSpec, AffineGrid or SignGrid
        Per-channel target grid; a spec builds it from ``w`` as given (before the dead
        columns are zeroed, as the reference's ``find_params(W)``).
    percdamp : float
        Relative damping ``λ`` (``H + λ·mean(diag H)·I``).
    block_size : int
        Columns per lazy-update block.
    act_order : bool, default False
        Quantize columns in order of decreasing ``diag H`` (the reference's
        ``--act-order``); False: the natural order (the reference's default).
    refine_sweeps : int, default 0
        Block-coordinate-descent sweeps after GPTQ (our extension, see the module
        docstring); 0 = plain GPTQ. They never increase the damped loss of any row.
    refine_block : int
        Columns per refinement block.
    dtype : torch.dtype
        Solver precision.

    Returns
    -------
    torch.Tensor
        Shape and dtype of ``w``; every entry on its row's grid.
    """
    check_layer_inputs(w, H)
    bs = integer(block_size, "block_size", 1)
    sweeps = integer(refine_sweeps, "refine_sweeps", 0)
    rblock = integer(refine_block, "refine_block", 1)
    boolean(act_order, "act_order")
    if dtype not in SOLVER_DTYPES.values():
        raise MisValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    dev = w.device
    W = as_channels(w.detach()).to(dtype)
    if isinstance(grid, LayerSpec):  # from the original weight, as the reference
        grid = layer_grid(grid, as_channels(w.detach()))
    Hd, W, dead = prepare_hessian(H.detach().to(dev, torch.float64), W, percdamp)
    perm = None
    if act_order:
        perm = torch.argsort(torch.diagonal(Hd), descending=True, stable=True)
        W = W[:, perm]
        Hd = Hd[perm][:, perm]
    L, info = torch.linalg.cholesky_ex(Hd)
    if int(info) != 0:
        raise MisValueError(
            "the damped Hessian is not positive definite (too few calibration inputs for the "
            "layer's width?); increase percdamp"
        )
    R = _upper_inverse_factor(L).to(dtype)
    del L
    W0 = W.clone() if sweeps else None
    Q = _gptq_columns(W, R, grid, bs)
    del R
    if perm is not None:
        inv = torch.argsort(perm)
        Q = Q[:, inv]
        if sweeps:
            W0, Hd = W0[:, inv], Hd[inv][:, inv]
    if sweeps:  # in the layer's own column order (see the module docstring)
        Q, _ = _refine_blocks(W0, Q, Hd.to(dtype), dead, grid, sweeps, rblock)
    return Q.to(w.dtype).reshape(w.shape)


def refine_quantized(
    w: torch.Tensor,
    q: torch.Tensor,
    H: torch.Tensor,
    grid,
    *,
    percdamp: float = DEFAULT_PERCDAMP,
    sweeps: int = DEFAULT_METHOD_REFINE_SWEEPS,
    block: int = DEFAULT_REFINE_BLOCK,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Refinement sweeps (our extension, module docstring) of any quantized weight ``q``.

    What ``gptq_quantize(..., refine_sweeps=sweeps)`` applies after GPTQ, for a ``q``
    from any solver (OBC, RTN) on the same grid.

    Parameters
    ----------
    w : torch.Tensor, shape (C, ...)
        The full-precision weight.
    q : torch.Tensor, shape of ``w``
        Its quantized version, every entry on ``grid``.
    H : torch.Tensor, shape (K, K)
        ``2XXᵀ/N``; damped and dead columns handled as in :func:`gptq_quantize`.
    grid : LayerSpec, AffineGrid or SignGrid
        The grid of ``q``. A spec builds the grid the solvers use: from the dead-column-zeroed
        ``w`` (OBC, RTN of the zeroed weight) or, when ``q`` does not lie on that one, from
        ``w`` as given (:func:`gptq_quantize`, which fixes the grid before zeroing dead
        columns, as its reference does). Without dead columns the two are the same.
    percdamp, dtype
        As in :func:`gptq_quantize`.
    sweeps : int
        Maximal number of sweeps (>= 0).
    block : int
        Columns per block.

    Returns
    -------
    torch.Tensor
        Shape and dtype of ``w``; on ``grid``, with a damped loss
        ``Σ_c (q_c − w_c) H_λ (q_c − w_c)ᵀ`` no larger than ``q``'s for every row.
    """
    C, K = check_layer_inputs(w, H)
    if not isinstance(q, torch.Tensor) or q.numel() != C * K:
        raise MisValueError(
            f"q must be a tensor with the shape of w {tuple(w.shape)}; "
            f"got {tuple(getattr(q, 'shape', ()))}"
        )
    sweeps = integer(sweeps, "sweeps", 0)
    block = integer(block, "block", 1)
    if dtype not in SOLVER_DTYPES.values():
        raise MisValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    W = as_channels(w.detach()).to(dtype)
    Hd, W, dead = prepare_hessian(H.detach().to(w.device, torch.float64), W, percdamp)
    Q = q.detach().reshape(C, K).to(dtype)
    if isinstance(grid, LayerSpec):
        spec = grid
        grid = layer_grid(spec, W.to(w.dtype))
        if bool(dead.any()) and not bool(on_grid(grid, Q.to(q.dtype)).all()):
            grid = layer_grid(spec, as_channels(w.detach()))  # gptq_quantize's grid
    if not bool(on_grid(grid, Q.to(q.dtype)).all()):
        raise MisValueError("q must lie on grid (every entry a level of its row's grid)")
    Q, _ = _refine_blocks(W, Q, Hd.to(dtype), dead, grid, sweeps, block)
    return Q.to(w.dtype).reshape(w.shape)


@dataclass(frozen=True)
class GPTQOptions(LayerwiseOptions):
    """Settings of ``"gptq"`` (the reference algorithm): :class:`~mis.quant.obc.LayerwiseOptions`
    plus

    Attributes
    ----------
    sequential : bool, default True
        Capture each layer's Hessian in the network whose earlier layers are already
        quantized (the GPTQ reference).
    block_size : int, default 128
        Columns per lazy-update block.
    act_order : bool, default False
        Quantize columns by decreasing ``diag H`` (the reference's ``--act-order``); the
        natural order by default, as in the reference.
    """

    sequential: bool = True
    block_size: int = DEFAULT_BLOCK_SIZE
    act_order: bool = False

    def __post_init__(self):
        super().__post_init__()
        boolean(self.sequential, "sequential")
        integer(self.block_size, "block_size", 1)
        boolean(self.act_order, "act_order")


@dataclass(frozen=True)
class GPTQRefineOptions(GPTQOptions):
    """Settings of ``"gptq-refine"`` (GPTQ + our refinement sweeps): :class:`GPTQOptions` plus

    Attributes
    ----------
    act_order : bool, default True
        As in :class:`GPTQOptions`, but on by default.
    refine_sweeps : int or None, default None
        Refinement sweeps after GPTQ (our extension); None = 8 on layers of 3 or more
        levels and none on 1-bit layers.
    refine_block : int, default 32
        Columns per refinement block.
    """

    act_order: bool = True
    refine_sweeps: int | None = None
    refine_block: int = DEFAULT_REFINE_BLOCK

    def __post_init__(self):
        super().__post_init__()
        if self.refine_sweeps is not None:
            integer(self.refine_sweeps, "refine_sweeps", 0)
        integer(self.refine_block, "refine_block", 1)


@register_method(
    "gptq",
    options=GPTQOptions,
    label="GPTQ",
    needs_calibration=True,
    description="GPTQ: blocked-Cholesky OBS quantization with lazy batch updates "
    "(Frantar et al. 2023), as the reference implementation; options act_order, bn_tuning",
)
def gptq(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """The ``"gptq"`` method; settings: ``plan.config.method_options``, a :class:`GPTQOptions`."""
    opts = plan.config.method_options

    def solve(w, H, spec):
        return gptq_quantize(
            w,
            H,
            spec,
            percdamp=opts.percdamp,
            block_size=opts.block_size,
            act_order=opts.act_order,
            dtype=opts.torch_dtype,
        )

    return run_layerwise(model, plan, calib, solve, opts, "gptq")


@register_method(
    "gptq-refine",
    options=GPTQRefineOptions,
    label="GPTQ-refine",
    needs_calibration=True,
    description="GPTQ (act-order) followed by block-coordinate-descent refinement sweeps "
    "(our extension, not in the GPTQ paper); options refine_sweeps, refine_block, bn_tuning",
)
def gptq_refine(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """The ``"gptq-refine"`` method (our extension); settings: a :class:`GPTQRefineOptions`."""
    opts = plan.config.method_options

    def solve(w, H, spec):
        return gptq_quantize(
            w,
            H,
            spec,
            percdamp=opts.percdamp,
            block_size=opts.block_size,
            act_order=opts.act_order,
            refine_sweeps=(
                opts.refine_sweeps
                if opts.refine_sweeps is not None
                else (0 if spec.is_sign else DEFAULT_METHOD_REFINE_SWEEPS)
            ),
            refine_block=opts.refine_block,
            dtype=opts.torch_dtype,
        )

    return run_layerwise(model, plan, calib, solve, opts, "gptq-refine")
