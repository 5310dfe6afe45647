"""OBC — Optimal Brain Compression's ExactOBS quantizer (Frantar & Alistarh 2022), ``"obc"``.

Each supported layer ``W`` (shape ``(C, K)``, a conv flattened in ``nn.Unfold`` column
order) is quantized to minimise the layer-output error ``‖WX − ŴX‖²`` on calibration
inputs. The loss is a quadratic with Hessian ``H = 2XXᵀ/N`` (:mod:`mis.quant.capture`),
the same for every row, and the rows are independent. Per row (OBC paper, Eq. 3–7,
Algorithm 1 with the quantization "pruning" rule of §5):

1. ``H`` in float64; *dead* columns (``H_jj = 0``: an input that is always 0) get
   ``H_jj = 1`` and their weights set to 0; relative damping
   ``H += λ·mean(diag H)·I`` (``λ = percdamp``, default 0.01; the OBC reference has no
   damping but retries with ``+I`` when the Cholesky fails — a relative damping is the
   GPTQ reference's, and keeps ``H⁻¹`` well conditioned for tiny calibration sets).
2. ``H⁻¹`` by Cholesky.
3. Repeat ``K`` times: for every not-yet-quantized weight, ``q_j`` = its nearest grid
   level and the OBS cost ``(w_j − q_j)² / [H⁻¹]_jj``; fix the weight of least cost —
   except that weights *outside the clamp range* of the grid (whose rounding error
   exceeds half a step; the reference's ``err > s²/4``) go first, largest error first.
   Then compensate the remaining weights (Eq. 7)::

       w ← w − (w_j − q_j) / [H⁻¹]_jj · H⁻¹_{:,j}

   and downdate ``H⁻¹ ← H⁻¹ − H⁻¹_{:,j} H⁻¹_{j,:} / [H⁻¹]_jj`` (Eq. 5), which is the
   inverse of ``H`` restricted to the remaining weights (so the compensation is the
   least-squares optimum of the remaining weights given the fixed ones).

Vectorization: ``block_rows`` rows at a time as batched tensors. The downdates are
*lazy*: ``H⁻¹_t = H⁻¹_0 − U Uᵀ`` with ``U`` holding the scaled columns
``H⁻¹_{:,j}/√[H⁻¹]_jj`` of the last ``lazy_block`` steps, so one step costs
``O(K·lazy_block)`` per row; every ``lazy_block`` steps ``U Uᵀ`` is folded into
``H⁻¹`` with one batched GEMM, restricted (gathered) to the weights still free — the
matrices shrink as the row is quantized. The arithmetic is the same OBS update; only
the order of floating-point operations differs from the plain loop
(``tests/naive.py::obc_naive``). The first block reads the shared ``H⁻¹_0``, so the
per-row ``(K, K)`` copies appear only after the first fold.

Grids: the layer's :class:`~mis.quant.api.LayerSpec` grid — per-channel asymmetric by
default, computed once from the (dead-column-zeroed) original weight before any
update, as in the reference. 1-bit layers use :class:`SignGrid`: projection onto
``{−α_c, +α_c}`` with ``α_c = mean|W_c|`` fixed from the original weight before the OBS
updates (Zhang et al.'s 1-bit quantizer; the affine grid cannot express ±α).

The layer-wise driver :func:`run_layerwise` (shared with GPTQ) captures ``H`` per layer
(:func:`mis.quant.capture.iter_hessians`: by default from the full-precision network,
as the OBC reference does), writes the quantized weight back, and with
``bn_tuning=True`` re-estimates BatchNorm statistics afterwards
(:func:`mis.quant.bn.bn_tune`, as Frantar & Alistarh and Zhang et al. §IV-A do).

``method_options`` of ``"obc"`` (the fields of :class:`OBCOptions`): ``percdamp`` (0.01),
``block_rows`` (None: as many as fit in ``memory_budget`` bytes, 1 GiB), ``lazy_block``
(64), ``dtype`` ("float64" or "float32", the solver's precision), ``sequential`` (False),
``batch_size`` (128, calibration forward passes), ``device`` (None: the model's),
``progress`` (None: when stderr is a terminal), ``bn_tuning`` (False), ``bn_batches``
(100), ``bn_batch_size`` (64), ``bn_momentum`` (0.1).

References
----------
E. Frantar, D. Alistarh. Optimal Brain Compression: a framework for accurate
post-training quantization and pruning. NeurIPS 2022 (IST-DASLab/OBC, ``trueobs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mis._progress import progress_bar
from mis._validation import boolean, integer, real, string
from mis.exceptions import MisValueError
from mis.quant.api import LayerSpec, QuantPlan, register_method
from mis.quant.bn import DEFAULT_BN_BATCH_SIZE, DEFAULT_BN_BATCHES, DEFAULT_BN_MOMENTUM, bn_tune
from mis.quant.calibration import Calibration
from mis.quant.capture import DEFAULT_BATCH_SIZE, iter_hessians, model_device
from mis.quant.grids import AffineGrid, as_channels

DEFAULT_PERCDAMP = 0.01
DEFAULT_LAZY_BLOCK = 64
DEFAULT_MEMORY_BUDGET = 1 << 30
# Compact H⁻¹ to the free weights at a fold once this fraction of the active set is fixed
# (gathering (b, r, r) costs more than the GEMM it saves when done at every fold).
_COMPACT_FRACTION = 0.25
SOLVER_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# -------------------------------------------------------------------------------------------
# grids the solvers project onto
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SignGrid:
    """The 1-bit grid ``{−α_c, +α_c}`` per output channel (``sign(0) = +1``).

    Attributes
    ----------
    alpha : torch.Tensor, shape (C,)
        ``α_c > 0``; :func:`layer_grid` uses ``mean|W_c|`` of the original weight, fixed
        before any OBS update (the least-squares scale of ``sign(W_c)`` for ``W_c`` itself).
    """

    alpha: torch.Tensor

    def _a(self, w: torch.Tensor) -> torch.Tensor:
        a = self.alpha.to(dtype=w.dtype, device=w.device)
        if w.ndim <= 1:  # a column (C,) as GPTQ uses, or one channel
            return a if a.shape[0] > 1 else a.reshape(())
        return a.reshape((-1,) + (1,) * (w.ndim - 1))

    def fake_quant(self, w: torch.Tensor) -> torch.Tensor:
        """``α_c·sign(w)`` (rows = channels)."""
        a = self._a(w)
        return torch.where(w >= 0, a, -a)

    def outside(self, w: torch.Tensor) -> torch.Tensor:
        """Beyond the outer levels by more than half a step: ``|w| > 2α_c``.

        The levels ``±α_c`` are a step ``2α_c`` apart, so this is the affine grids' rule
        (rounding error above half a step). OBC fixes such weights first.
        """
        return w.abs() > 2 * self._a(w)

    def select(self, index) -> SignGrid:
        """The grid of a subset of channels."""
        return SignGrid(self.alpha[index].reshape(-1))

    def on_grid(self, w: torch.Tensor) -> torch.Tensor:
        """Boolean mask: ``w`` equals ``±α_c`` of its row."""
        a = self._a(w)
        return (w == a) | (w == -a)


def outside_range(grid, w: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the entries of ``w`` outside the grid's clamp range.

    For an :class:`~mis.quant.grids.AffineGrid`: ``round(w/s) + z ∉ [0, L−1]``, i.e. the
    rounding error exceeds half a step (the OBC reference's ``(w − q)² > s²/4``).
    """
    if isinstance(grid, AffineGrid):
        u = torch.round(w / grid.scale_like(w)) + grid.zero_point_like(w)
        return (u < 0) | (u > grid.qmax)
    return grid.outside(w)


def layer_grid(spec: LayerSpec, w: torch.Tensor):
    """The grid of a layer's weight ``w`` (shape (C, ...)) for its spec.

    An :class:`~mis.quant.grids.AffineGrid` (``spec.grid(w)``) or, for 1-bit layers, a
    :class:`SignGrid` with ``α_c = mean|W_c|`` (computed in float64, cast to ``w``'s dtype).
    """
    if spec.is_sign:
        x = as_channels(w.detach())
        alpha = x.double().abs().mean(1)
        alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha)).to(w.dtype)
        return SignGrid(alpha)
    return spec.grid(w)


def on_grid(grid, w: torch.Tensor) -> torch.Tensor:
    """Boolean mask: entries of ``w`` (rows = channels) that are levels of ``grid``."""
    if isinstance(grid, SignGrid):
        return grid.on_grid(w)
    return grid.fake_quant(w) == w


# -------------------------------------------------------------------------------------------
# Hessian preparation
# -------------------------------------------------------------------------------------------


def check_layer_inputs(w: torch.Tensor, H: torch.Tensor) -> tuple[int, int]:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.ndim < 2:
        raise MisValueError(
            "w must be a floating weight tensor of shape (C, ...) with at least 2 dimensions; "
            f"got {type(w).__name__} {getattr(w, 'shape', '')}"
        )
    C, K = w.shape[0], w[0].numel()
    if not isinstance(H, torch.Tensor) or H.shape != (K, K):
        raise MisValueError(
            f"H must be a tensor of shape ({K}, {K}) (K = weight[0].numel()); "
            f"got {tuple(getattr(H, 'shape', ()))}"
        )
    if not bool(torch.isfinite(H).all()) or not bool(torch.isfinite(w).all()):
        raise MisValueError("w and H must be finite")
    return C, K


def prepare_hessian(H: torch.Tensor, w: torch.Tensor, percdamp: float = DEFAULT_PERCDAMP):
    """Dead columns and relative damping (both solvers' step 1).

    Parameters
    ----------
    H : torch.Tensor, shape (K, K)
    w : torch.Tensor, shape (C, K)
    percdamp : float
        ``λ``: ``H + λ·mean(diag H)·I``.

    Returns
    -------
    H : torch.Tensor, shape (K, K)
        A new tensor: ``H_jj = 1`` for dead columns, then damped.
    w : torch.Tensor, shape (C, K)
        A new tensor with the dead columns set to 0.
    dead : torch.Tensor of bool, shape (K,)
    """
    H = H.clone()
    w = w.clone()
    dead = torch.diagonal(H) == 0
    if bool(dead.any()):
        H[dead, dead] = 1.0
        w[:, dead] = 0.0
    d = torch.diagonal(H)
    d += real(percdamp, "percdamp", 0.0) * d.mean()
    return H, w, dead


def _inverse_spd(H: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise MisValueError(
            "the damped Hessian is not positive definite (too few calibration inputs for the "
            "layer's width?); increase percdamp"
        )
    return torch.cholesky_inverse(L)


def _rows_per_batch(C: int, K: int, itemsize: int, budget: int) -> int:
    # per row: H⁻¹ (K²) + its gathered copy at a fold (K²) + U (K·lazy) — about 2.5 K²
    per_row = max(1, int(2.5 * K * K * itemsize))
    return max(1, min(C, budget // per_row))


# -------------------------------------------------------------------------------------------
# the solver
# -------------------------------------------------------------------------------------------


def obc_quantize(
    w: torch.Tensor,
    H: torch.Tensor,
    grid,
    *,
    percdamp: float = DEFAULT_PERCDAMP,
    block_rows: int | None = None,
    lazy_block: int = DEFAULT_LAZY_BLOCK,
    dtype: torch.dtype = torch.float64,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool | None = False,
    return_trace: bool = False,
):
    """Quantize one layer's weight with ExactOBS (greedy order, lazy batched downdates).

    Parameters
    ----------
    w : torch.Tensor, shape (C, ...)
        The weight (a conv weight is flattened to ``(C, K)`` in ``nn.Unfold`` order).
    H : torch.Tensor, shape (K, K)
        ``2XXᵀ/N`` of the layer's inputs (float64 recommended); not modified.
    grid : LayerSpec, AffineGrid or SignGrid
        The target grid, per output channel. A :class:`~mis.quant.api.LayerSpec` builds it
        from the weight after dead columns are zeroed (:func:`layer_grid`).
    percdamp : float
        Relative damping ``λ``.
    block_rows : int, optional
        Rows processed together (default: as many as fit in ``memory_budget`` bytes).
    lazy_block : int
        Steps between folds of the lazy downdates into ``H⁻¹``.
    dtype : torch.dtype
        Precision of the solver (float64 or float32).
    progress : bool or None
        Progress bar over row batches (None: when stderr is a terminal).
    return_trace : bool
        Also return the order in which each row's weights were fixed, shape (C, K), and
        the weights after every step, shape (K + 1, C, K) (step 0 = after dead-column
        zeroing). Memory ``O(C·K²)``: for small layers and tests.

    Returns
    -------
    torch.Tensor
        The quantized weight, shape and dtype of ``w``, every entry on its row's grid.
        With ``return_trace``: ``(q, order, trace)``.
    """
    C, K = check_layer_inputs(w, H)
    for name, v in (("lazy_block", lazy_block), ("memory_budget", memory_budget)):
        integer(v, name, 1)
    if dtype not in SOLVER_DTYPES.values():
        raise MisValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    dev = w.device
    W = as_channels(w.detach()).to(dtype)
    Hd, W, _ = prepare_hessian(H.detach().to(dev, torch.float64), W, percdamp)
    if isinstance(grid, LayerSpec):
        grid = layer_grid(grid, W.to(w.dtype))
    Hinv0 = _inverse_spd(Hd).to(dtype)
    del Hd
    if block_rows is None:
        block_rows = _rows_per_batch(C, K, W.element_size(), memory_budget)
    else:
        integer(block_rows, "block_rows", 1)
    T = int(min(lazy_block, K))
    Q = torch.empty_like(W)
    order = torch.empty((C, K), dtype=torch.long, device=dev) if return_trace else None
    trace = None
    if return_trace:
        trace = torch.empty((K + 1, C, K), dtype=dtype, device=dev)
        trace[0] = W
    starts = range(0, C, int(block_rows))
    for r0 in progress_bar(starts, desc="obc rows", enabled=progress):
        r1 = min(r0 + int(block_rows), C)
        sl = slice(r0, r1)
        g = grid.select(sl)
        res = _obc_rows(W[sl], Hinv0, g, T, trace_rows=(trace[:, sl] if return_trace else None))
        Q[sl] = res[0]
        if return_trace:
            order[sl] = res[1]
    out = Q.to(w.dtype).reshape(w.shape)
    if return_trace:
        return out, order, trace
    return out


def _obc_rows(w0: torch.Tensor, Hinv0: torch.Tensor, g, T: int, trace_rows=None):
    """ExactOBS for a batch of rows ``w0`` (b, K) sharing the initial inverse ``Hinv0``.

    State, in the *active* index space (the weights not yet folded out; ``idx`` maps an
    active position to its column): ``w`` (b, r), ``hinv`` — ``Hinv0`` itself (shared,
    2-D) before the first fold, else (b, r, r) — ``U`` (b, T, r) the lazy downdates,
    ``diag`` (b, r) the current diagonal of ``H⁻¹``, ``fixed`` (b, r).
    """
    b, K = w0.shape
    dev, dt = w0.device, w0.dtype
    ar = torch.arange(b, device=dev)
    w = w0.clone()
    idx = torch.arange(K, device=dev).expand(b, K).clone()
    hinv = Hinv0
    diag = torch.diagonal(Hinv0).expand(b, K).clone()
    U = torch.empty((b, T, K), dtype=dt, device=dev)
    fixed = torch.zeros((b, K), dtype=torch.bool, device=dev)
    Q = torch.empty((b, K), dtype=dt, device=dev)
    order = torch.empty((b, K), dtype=torch.long, device=dev)
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    t = 0
    for step in range(K):
        q = g.fake_quant(w)
        err = (w - q).square_()
        score = torch.where(fixed, inf, err / diag)
        j = score.argmin(1)
        out = outside_range(g, w) & ~fixed
        has = out.any(1)
        if bool(has.any()):  # weights outside the clamp range first, largest error first
            j = torch.where(has, torch.where(out, err, -inf).argmax(1), j)
        # column j of the current H⁻¹ = H⁻¹_0[:, j] − U U[j, :]ᵀ  (H⁻¹ symmetric: read a row)
        col = hinv[j] if hinv.ndim == 2 else hinv[ar, j]
        if t:
            col = col - torch.bmm(U[ar, :t, j].unsqueeze(1), U[:, :t]).squeeze(1)
        col = col.masked_fill(fixed, 0.0)  # exactly 0 in exact arithmetic
        d = col[ar, j]
        qj = q[ar, j]
        w.sub_(col * ((w[ar, j] - qj) / d).unsqueeze(1))  # OBS compensation (Eq. 7)
        w[ar, j] = qj
        cj = idx[ar, j]
        Q[ar, cj] = qj
        order[:, step] = cj
        fixed[ar, j] = True
        if trace_rows is not None:
            full = Q.clone()
            full.scatter_(1, idx, w)
            trace_rows[step + 1] = full
        if step == K - 1:
            break
        u = col / d.sqrt().unsqueeze(1)  # H⁻¹ ← H⁻¹ − u uᵀ  (Eq. 5), lazily
        U[:, t] = u
        diag.sub_(u.square())
        t += 1
        if t == T:
            n_fixed = step + 1 - (K - w.shape[1])  # fixed weights still in the active set
            if n_fixed >= _COMPACT_FRACTION * w.shape[1]:
                # drop the fixed weights, then fold U into H⁻¹ on the free ones only
                # (their block of H⁻¹ is the inverse of H restricted to them)
                keep = torch.sort(fixed.to(torch.int8), dim=1, stable=True).indices
                keep = keep[:, : w.shape[1] - n_fixed]
                w = torch.gather(w, 1, keep)
                idx = torch.gather(idx, 1, keep)
                Uk = torch.gather(U, 2, keep.unsqueeze(1).expand(-1, T, -1))  # (b, T, r')
                if hinv.ndim == 2:
                    hinv = hinv[keep.unsqueeze(2), keep.unsqueeze(1)]
                else:
                    hinv = hinv[ar.view(-1, 1, 1), keep.unsqueeze(2), keep.unsqueeze(1)]
                hinv.baddbmm_(Uk.transpose(1, 2), Uk, alpha=-1.0)
                fixed = torch.zeros_like(w, dtype=torch.bool)
                U = torch.empty((b, T, w.shape[1]), dtype=dt, device=dev)
            else:
                if hinv.ndim == 2:  # first fold: the per-row copies of H⁻¹ appear here
                    hinv = hinv.expand(b, -1, -1).clone()
                hinv.baddbmm_(U.transpose(1, 2), U, alpha=-1.0)
            # fresh diagonal (fixed weights: 0 up to rounding; masked by `fixed`)
            diag = torch.diagonal(hinv, dim1=1, dim2=2).clone()
            t = 0
    return Q, order


# -------------------------------------------------------------------------------------------
# options and the layer-wise driver (shared with GPTQ)
# -------------------------------------------------------------------------------------------


def _solver_dtype(value, name: str) -> str:
    """``"float64"`` or ``"float32"`` (a ``torch.dtype`` is given by its name)."""
    if isinstance(value, torch.dtype):
        value = {v: k for k, v in SOLVER_DTYPES.items()}.get(value, value)
    return string(value, name, tuple(SOLVER_DTYPES))


@dataclass(frozen=True)
class LayerwiseOptions:
    """Settings shared by the layer-wise Hessian methods (``"obc"``, ``"gptq"``).

    Attributes
    ----------
    percdamp : float, default 0.01
        Relative damping ``λ``: ``H + λ·mean(diag H)·I``.
    dtype : {"float64", "float32"}, default "float64"
        The solver's precision (a ``torch.dtype`` is accepted and stored by name).
    batch_size : int, default 128
        Calibration examples per forward pass while the Hessians are captured.
    device : str, torch.device or None
        Where the model runs while quantized (None: its own device).
    progress : bool or None
        Progress bar over layers (None: when stderr is a terminal).
    bn_tuning : bool, default False
        Re-estimate the BatchNorm statistics afterwards (:func:`mis.quant.bn.bn_tune`).
    bn_batches, bn_batch_size : int, default 100, 64
    bn_momentum : float in (0, 1] or None, default 0.1
        The BN tuning settings (:func:`~mis.quant.bn.bn_tune`).
    """

    percdamp: float = DEFAULT_PERCDAMP
    dtype: str = "float64"
    batch_size: int = DEFAULT_BATCH_SIZE
    device: Any = None
    progress: bool | None = None
    bn_tuning: bool = False
    bn_batches: int = DEFAULT_BN_BATCHES
    bn_batch_size: int = DEFAULT_BN_BATCH_SIZE
    bn_momentum: float | None = DEFAULT_BN_MOMENTUM

    def __post_init__(self):
        real(self.percdamp, "percdamp", 0.0)
        object.__setattr__(self, "dtype", _solver_dtype(self.dtype, "dtype"))
        for name in ("batch_size", "bn_batches", "bn_batch_size"):
            integer(getattr(self, name), name, 1)
        if self.device is not None:
            try:
                object.__setattr__(self, "device", torch.device(self.device))
            except (RuntimeError, TypeError) as exc:
                raise MisValueError(f"device must be a torch device; got {self.device!r}") from exc
        if self.progress is not None:
            boolean(self.progress, "progress")
        boolean(self.bn_tuning, "bn_tuning")
        if self.bn_momentum is not None:
            real(self.bn_momentum, "bn_momentum", 0.0, 1.0, open_lo=True)

    @property
    def torch_dtype(self) -> torch.dtype:
        """:attr:`dtype` as a ``torch.dtype``."""
        return SOLVER_DTYPES[self.dtype]


@dataclass(frozen=True)
class OBCOptions(LayerwiseOptions):
    """Settings of ``"obc"``: :class:`LayerwiseOptions` plus

    Attributes
    ----------
    sequential : bool, default False
        Capture each layer's Hessian in the network whose earlier layers are already
        quantized (False: in the full-precision network, as the OBC reference does).
    block_rows : int or None
        Rows solved together (None: as many as fit in ``memory_budget`` bytes).
    lazy_block : int, default 64
        Steps between folds of the lazy downdates into ``H⁻¹``.
    memory_budget : int, default 1 GiB
    """

    sequential: bool = False
    block_rows: int | None = None
    lazy_block: int = DEFAULT_LAZY_BLOCK
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    def __post_init__(self):
        super().__post_init__()
        boolean(self.sequential, "sequential")
        if self.block_rows is not None:
            integer(self.block_rows, "block_rows", 1)
        integer(self.lazy_block, "lazy_block", 1)
        integer(self.memory_budget, "memory_budget", 1)


def run_layerwise(
    model: nn.Module,
    plan: QuantPlan,
    calib: Calibration,
    solve: Callable,
    opts: LayerwiseOptions,
    desc: str,
) -> nn.Module:
    """Quantize the planned layers of ``model`` in place with ``solve(w, H, spec)``.

    ``H`` comes from :func:`mis.quant.capture.iter_hessians` (``opts.sequential``);
    the solver returns the quantized weight (shape and dtype of ``w``). The model runs on
    ``opts.device`` (default: its own) and is moved back afterwards. BN tuning follows
    when ``opts.bn_tuning``.
    """
    home = model_device(model)
    dev = opts.device or home
    model.to(dev)
    layers = {p.name: p for p in plan.quantized()}
    with torch.no_grad():
        bar = progress_bar(total=len(layers), desc=desc, enabled=opts.progress)
        try:
            for name, H in iter_hessians(
                model,
                list(layers),
                calib,
                sequential=opts.sequential,
                batch_size=opts.batch_size,
            ):
                p = layers[name]
                bar.set_postfix_str(name)
                weight = p.module.weight
                q = solve(weight.detach(), H.to(dev), p.spec)
                weight.copy_(q.reshape(weight.shape))
                bar.update()
        finally:
            bar.close()
        if opts.bn_tuning:
            bn_tune(
                model,
                calib,
                n_batches=opts.bn_batches,
                batch_size=opts.bn_batch_size,
                momentum=opts.bn_momentum,
                progress=opts.progress,
            )
    model.to(home)
    return model


@register_method(
    "obc",
    options=OBCOptions,
    label="OBC",
    needs_calibration=True,
    description="OBC / ExactOBS: greedy OBS quantization with Hessian compensation "
    "(Frantar & Alistarh 2022); option bn_tuning=True",
)
def obc(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """The ``"obc"`` method; settings: ``plan.config.method_options``, an :class:`OBCOptions`."""
    opts = plan.config.method_options

    def solve(w, H, spec):
        return obc_quantize(
            w,
            H,
            spec,
            percdamp=opts.percdamp,
            block_rows=opts.block_rows,
            lazy_block=opts.lazy_block,
            dtype=opts.torch_dtype,
            memory_budget=opts.memory_budget,
            progress=False,
        )

    return run_layerwise(model, plan, calib, solve, opts, "obc")
