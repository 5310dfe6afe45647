"""GPTQ — the fast blocked-Cholesky OBS quantizer (Frantar et al. 2023), ``"gptq"``.

GPTQ quantizes the columns of a layer ``W`` (shape ``(C, K)``) in one fixed order for
all rows at once, instead of OBC's greedy per-row order. With a fixed order the OBS
updates of all rows share one sequence of inverse Hessians ``H⁻¹_{F_t}``, whose needed
rows are exactly the rows of the upper Cholesky factor ``R`` of ``H⁻¹``
(``H⁻¹ = RᵀR``; GPTQ paper §3 "Step 3: Cholesky reformulation"). For column ``j``::

    q_j = quant(w_j),   e_j = (w_j − q_j) / R_jj,   w_{j+1:} ← w_{j+1:} − e_j R_{j, j+1:}

"Lazy batch updates" (§3, Step 2): the update is applied inside a block of
``block_size`` columns (128) immediately and to the columns after the block at once,
``W_{:, i2:} −= E R_{i1:i2, i2:}`` — the same arithmetic, regrouped as a GEMM.
``act_order=True`` processes columns by decreasing ``diag H`` (the reference's
``--act-order``). It is the default of the ``"gptq"`` method here (the reference's
default is off): on the digits CNN at 2 and 1.58 bits it was clearly more accurate
(``experiments/ptq_digits_obc_gptq.py``); :func:`gptq_quantize` keeps ``False``.

Same Hessian (:mod:`mis.quant.capture`, float64 accumulation), same dead-column
handling and relative damping (``percdamp``, default 0.01, as in the reference), and the
same grids as :mod:`mis.quant.obc` (per-channel affine from the layer's
:class:`~mis.quant.api.LayerSpec`, computed once from the original weight; ``α_c·sign``
with fixed ``α_c = mean|W_c|`` for 1 bit).

``method_options`` of ``"gptq"``: ``percdamp`` (0.01), ``block_size`` (128),
``act_order`` (True), ``dtype`` ("float64"), ``sequential`` (True: each layer's inputs
come from the already-quantized layers before it, as in the reference), ``batch_size``,
``device``, ``progress``, ``bn_tuning`` (False), ``bn_batches``, ``bn_batch_size``,
``bn_momentum`` (see :mod:`mis.quant.obc`).

References
----------
E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh. GPTQ: Accurate post-training
quantization for generative pre-trained transformers. ICLR 2023 (IST-DASLab/gptq).
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from mis.exceptions import MisValueError
from mis.quant.api import LayerSpec, QuantPlan, register_method
from mis.quant.calibration import Calibration
from mis.quant.grids import as_channels
from mis.quant.obc import (
    _DTYPES,
    COMMON_OPTIONS,
    DEFAULT_PERCDAMP,
    _bool,
    _check_layer_inputs,
    _int_ge1,
    layer_grid,
    parse_options,
    prepare_hessian,
    run_layerwise,
)

DEFAULT_BLOCK_SIZE = 128


def gptq_quantize(
    w: torch.Tensor,
    H: torch.Tensor,
    grid,
    *,
    percdamp: float = DEFAULT_PERCDAMP,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Quantize one layer's weight with GPTQ.

    Parameters
    ----------
    w : torch.Tensor, shape (C, ...)
        The weight (a conv weight is flattened to ``(C, K)`` in ``nn.Unfold`` order).
    H : torch.Tensor, shape (K, K)
        ``2XXᵀ/N`` of the layer's inputs; not modified.
    grid : LayerSpec, AffineGrid or SignGrid
        Per-channel target grid; a spec builds it from the dead-column-zeroed weight.
    percdamp : float
        Relative damping ``λ`` (``H + λ·mean(diag H)·I``).
    block_size : int
        Columns per lazy-update block.
    act_order : bool
        Quantize columns in order of decreasing ``diag H``.
    dtype : torch.dtype
        Solver precision.

    Returns
    -------
    torch.Tensor
        Shape and dtype of ``w``; every entry on its row's grid.
    """
    _, K = _check_layer_inputs(w, H)
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise MisValueError(f"block_size must be an integer >= 1; got {block_size!r}")
    if block_size < 1:
        raise MisValueError(f"block_size must be an integer >= 1; got {block_size!r}")
    if not isinstance(act_order, bool):
        raise MisValueError(f"act_order must be True or False; got {act_order!r}")
    if dtype not in _DTYPES.values():
        raise MisValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    dev = w.device
    W = as_channels(w.detach()).to(dtype)
    Hd, W, _ = prepare_hessian(H.detach().to(dev, torch.float64), W, percdamp)
    if isinstance(grid, LayerSpec):
        grid = layer_grid(grid, W.to(w.dtype))
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
    # upper Cholesky factor R of H⁻¹: row j of R is H⁻¹_{F_j}[j, j:] / sqrt(H⁻¹_{F_j}[j, j])
    R = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).to(dtype)
    del L, Hd
    Q = torch.empty_like(W)
    bs = int(block_size)
    for i1 in range(0, K, bs):
        i2 = min(i1 + bs, K)
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
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q.to(w.dtype).reshape(w.shape)


GPTQ_OPTIONS = {
    **COMMON_OPTIONS,
    "sequential": (True, _bool),
    "block_size": (DEFAULT_BLOCK_SIZE, _int_ge1),
    "act_order": (True, _bool),
}


@register_method(
    "gptq",
    needs_calibration=True,
    description="GPTQ: blocked-Cholesky OBS quantization with lazy batch updates "
    "(Frantar et al. 2023); options act_order, bn_tuning",
)
def gptq(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """The ``"gptq"`` method (see the module docstring for ``method_options``)."""
    opts = parse_options("gptq", plan.config.method_options, GPTQ_OPTIONS)

    def solve(w, H, spec):
        return gptq_quantize(
            w,
            H,
            spec,
            percdamp=opts["percdamp"],
            block_size=opts["block_size"],
            act_order=opts["act_order"],
            dtype=opts["dtype"],
        )

    return run_layerwise(model, plan, calib, solve, opts, "gptq")
