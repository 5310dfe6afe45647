"""Shared machinery of AdaRound and BRECQ: relaxation, β schedule, units, caching, the loop.

Adaptive rounding (Nagel et al. 2020, §4, Eq. 21–25) replaces round-to-nearest on a
layer's grid by a learned choice between ``⌊W/s⌋`` and ``⌊W/s⌋ + 1``:

    W̃ = s · (clamp(⌊W/s⌋ + h(V) + z, 0, L-1) - z),
    h(V) = clamp(σ(V)(ζ - γ) + γ, 0, 1),          ζ = 1.1, γ = -0.1   (rectified sigmoid)
    f_reg(V) = Σ_ij 1 - |2 h(V_ij) - 1|^β                              (rounding regulariser)

and minimises, over ``V`` only (Adam), the reconstruction error of a *unit* plus
``λ f_reg``. ``V`` starts where ``h(V)`` equals the fractional part ``W/s - ⌊W/s⌋``
(so the soft weight starts at ``W`` itself, inside the clamp range); ``β`` stays at
``β_start`` with the regulariser switched off during the first ``warmup`` fraction of
the iterations, then decays linearly to ``β_end`` (the reference code's schedule). At the
end each weight is rounded up where ``h(V) ≥ 1/2`` (``V ≥ 0``) and down elsewhere: only
``⌊W/s⌋`` or ``⌊W/s⌋ + 1`` (then clamped to the grid), never anything else.

A *unit* is what one optimisation reconstructs:

* a **layer** (AdaRound; BRECQ's stem, head and plain layers): ``act(bn(layer(x)))``, where a
  following BatchNorm (if not folded) and ReLU — functional or module — are included when
  they are the layer's only consumers (found by ``torch.fx`` tracing; "fused ReLU");
* a **block** (BRECQ, Li et al. 2021): a module such as a residual BasicBlock, whose
  quantized layers are optimised jointly on the block's output.

Inputs of a unit come from the network whose earlier units are already quantized
(hard-rounded), targets from the full-precision network (asymmetric reconstruction,
Nagel et al. §4.3), both cached over the calibration set through forward hooks that stop
the forward pass early. The reconstruction loss is the squared error summed over the
channel axis (axis 1) and averaged over the rest (the reference ``lp_loss``), or the
Fisher-diagonal version ``Σ_1 (Δ ⊙ g)²`` with ``g = |∂ℓ/∂out| + damping`` (BRECQ §3.3 and
reference code ``save_grad_data``).

1-bit layers (``α_c·sign(W)``, ``α_c = mean|W_c|``) are handled as a 2-level grid
``{-α_c, +α_c}``: ``t = W/(2α_c) + 1/2``, ``Ŵ = 2α_c(clamp(⌊t⌋ + h, 0, 1) - 1/2)``, so the
learned choice flips the sign of weights with ``|W| < α_c`` (weights beyond ±α_c are
clamped whatever h is). Nearest rounding of this grid is ``sign(W)`` (``sign(0) = +1``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from mis._progress import progress_bar
from mis._validation import boolean, integer, real, string
from mis.exceptions import MisValueError
from mis.quant.api import SUPPORTED_LAYERS, LayerSpec, PlannedLayer, QuantPlan
from mis.quant.calibration import Calibration
from mis.quant.grids import AffineGrid, as_channels

ZETA = 1.1
GAMMA = -0.1
LOSSES = ("mse", "fisher_diag")
FISHER_GRADS = ("auto", "ce", "kl")
ONE_BIT_MODES = ("adaround", "rtn")

# -------------------------------------------------------------------------------------------
# the relaxation
# -------------------------------------------------------------------------------------------


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """``h(V) = clamp(σ(V)(ζ - γ) + γ, 0, 1)`` with ζ = 1.1, γ = -0.1 (Nagel et al. Eq. 23)."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def inverse_rectified_sigmoid(h: torch.Tensor) -> torch.Tensor:
    """``V`` with ``rectified_sigmoid(V) = h`` for ``h ∈ [0, 1]`` (the AdaRound initialisation).

    ``σ(V) = (h - γ)/(ζ - γ)`` lies in ``[1/12, 11/12]`` for ``h ∈ [0, 1]``, so ``V`` is finite.
    """
    return -torch.log((ZETA - GAMMA) / (h - GAMMA) - 1.0)


def rounding_regularizer(h: torch.Tensor, beta: float) -> torch.Tensor:
    """``Σ 1 - |2h - 1|^β`` (Nagel et al. Eq. 24): 0 when every ``h`` is 0 or 1."""
    return (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()


def beta_at(
    step: int, n_iter: int, *, warmup: float = 0.2, beta_start: float = 20.0, beta_end: float = 2.0
) -> float | None:
    """Annealing temperature β at ``step`` (1-based); None while the regulariser is off.

    No regulariser for ``step < warmup·n_iter``; from there β decays linearly from
    ``beta_start`` to ``beta_end``, reached at ``step = n_iter`` (reference
    ``LinearTempDecay`` with ``rel_start_decay = warmup``).
    """
    start = warmup * n_iter
    if step < start:
        return None
    rel = (step - start) / max(n_iter - start, 1e-12)
    return beta_end + (beta_start - beta_end) * max(0.0, 1.0 - rel)


class SoftRounding(nn.Module):
    """The learnable rounding of one weight tensor on a fixed grid.

    ``Ŵ(h) = mult · (clamp(base + h + z, 0, qmax) - z)`` with ``base = ⌊W/s⌋`` (affine grid,
    ``mult = s``) or ``base = ⌊W/(2α) + 1/2⌋ - 1/2`` (sign grid, ``mult = 2α``, ``z = 1/2``,
    ``qmax = 1``), and ``h = rectified_sigmoid(V)`` (soft) or ``1[V ≥ 0]`` (hard).

    Attributes
    ----------
    v : torch.nn.Parameter, shape of W
        The relaxation variable, initialised so that ``h(V)`` is the fractional part.
    grid : AffineGrid or None
        The affine grid (None for a sign layer).
    """

    def __init__(self, mult, zero, base, frac, qmax: int, grid: AffineGrid | None):
        super().__init__()
        self.register_buffer("mult", mult)
        self.register_buffer("zero", zero)
        self.register_buffer("base", base)
        self.qmax = int(qmax)
        self.grid = grid
        self.v = nn.Parameter(inverse_rectified_sigmoid(frac.clamp(0.0, 1.0)))

    @classmethod
    def from_grid(cls, w: torch.Tensor, grid: AffineGrid) -> SoftRounding:
        """Rounding of ``w`` on an affine grid: ``base = ⌊W/s⌋``, ``h(V₀) = W/s - ⌊W/s⌋``."""
        w = w.detach()
        s, z = grid.scale_like(w), grid.zero_point_like(w)
        base = grid.round_down(w)
        frac = w / s - base
        return cls(s.expand_as(w).clone(), z.expand_as(w).clone(), base, frac, grid.qmax, grid)

    @classmethod
    def from_sign(cls, w: torch.Tensor) -> SoftRounding:
        """Rounding of ``w`` on the 2-level grid ``{-α_c, +α_c}``, ``α_c = mean|W_c|``."""
        w = w.detach()
        alpha = as_channels(w).abs().mean(1)
        alpha = alpha.reshape((-1,) + (1,) * (w.ndim - 1)) if w.ndim >= 2 else alpha.reshape(())
        safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
        t = w / (2.0 * safe) + 0.5
        fl = torch.floor(t)
        half = torch.full_like(w, 0.5)
        return cls((2.0 * alpha).expand_as(w).clone(), half, fl - 0.5, t - fl, 1, None)

    def h(self) -> torch.Tensor:
        """Soft rounding variable ``h(V) ∈ [0, 1]``."""
        return rectified_sigmoid(self.v)

    def hard_h(self) -> torch.Tensor:
        """Hard rounding ``1[V ≥ 0]`` (= ``1[h(V) ≥ 1/2]``)."""
        return (self.v >= 0).to(self.v.dtype)

    def weight(self, h: torch.Tensor) -> torch.Tensor:
        """``mult · (clamp(base + h + z, 0, qmax) - z)``."""
        return self.mult * (torch.clamp(self.base + h + self.zero, 0.0, self.qmax) - self.zero)

    def soft_weight(self) -> torch.Tensor:
        return self.weight(self.h())

    def hard_weight(self) -> torch.Tensor:
        return self.weight(self.hard_h())

    def nearest_weight(self) -> torch.Tensor:
        """Round-half-up of the same grid (``h = 1[frac ≥ 1/2]``); RTN up to ties."""
        frac = self.h().detach()
        return self.weight((frac >= 0.5).to(frac.dtype))

    def floor_ceil(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two admissible values of every weight: ``Ŵ(0)`` and ``Ŵ(1)``."""
        return self.weight(torch.zeros_like(self.v)), self.weight(torch.ones_like(self.v))


def soft_rounding_for(w: torch.Tensor, spec: LayerSpec) -> SoftRounding:
    """The :class:`SoftRounding` of a layer weight for its spec (sign grid for 1 bit)."""
    x = w.detach()
    x = x.double() if x.dtype == torch.float64 else x.float()
    if spec.is_sign:
        return SoftRounding.from_sign(x)
    return SoftRounding.from_grid(x, spec.grid(x))


# -------------------------------------------------------------------------------------------
# configuration
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings shared by AdaRound and BRECQ (paper defaults; validated on construction).

    Attributes
    ----------
    n_iter : int, default 20000
        Adam steps per unit (layer or block). Small models need far fewer (e.g. 1000–5000).
    batch_size : int, default 32
        Calibration examples per step (drawn without replacement within a step).
    lr : float, default 1e-3
        Adam learning rate on ``V``.
    reg_weight : float, default 0.01
        λ, the weight of the rounding regulariser.
    beta_start, beta_end : float, default 20, 2
        Annealing range of β.
    warmup : float, default 0.2
        Fraction of ``n_iter`` without regulariser (β constant).
    loss : {"mse", "fisher_diag"}, default "mse"
        Reconstruction loss (see the module docstring).
    fisher_grad : {"auto", "ce", "kl"}, default "auto"
        Task loss whose output gradients weight ``fisher_diag``: cross-entropy with the
        calibration labels ("ce"), or the KL divergence between full-precision and
        quantized-so-far outputs (reference code, "kl"); "auto" = "ce" when labels exist.
    fisher_damping : float, default 1.0
        ``g = |∂ℓ/∂out| + damping`` (reference code).
    fold_bn : bool
        Fold BatchNorm into the preceding layer before quantizing (see :mod:`mis.quant.fold`).
    one_bit : {"adaround", "rtn"}, default "adaround"
        1-bit layers: learn the rounding on ``{-α_c, +α_c}``, or keep ``α_c·sign(W)`` (RTN).
    record_every : int or None
        Record losses every this many steps (None: ``max(1, n_iter // 20)``).
    eval_samples : int, default 256
        Cached examples on which the hard-rounded loss is recorded during optimisation.
    cache_batch_size : int, default 256
        Batch size of the forward passes that cache inputs and targets.
    progress : bool or None
        tqdm bar per unit; None = only when stderr is a terminal.
    num_threads : int or None
        On the CPU, torch intra-op threads while reconstructing (restored afterwards);
        None leaves torch's setting. Small units run fastest with 1 (the per-step tensors
        are tiny and thread hand-offs dominate, worse on a loaded machine).
    """

    n_iter: int = 20000
    batch_size: int = 32
    lr: float = 1e-3
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    loss: str = "mse"
    fisher_grad: str = "auto"
    fisher_damping: float = 1.0
    fold_bn: bool = False
    one_bit: str = "adaround"
    record_every: int | None = None
    eval_samples: int = 256
    cache_batch_size: int = 256
    progress: bool | None = None
    num_threads: int | None = None

    def __post_init__(self):
        if self.num_threads is not None:
            integer(self.num_threads, "num_threads", 1)
        for name in ("n_iter", "batch_size", "eval_samples", "cache_batch_size"):
            integer(getattr(self, name), name, 1)
        if self.record_every is not None:
            integer(self.record_every, "record_every", 1)
        real(self.lr, "lr", 0.0, open_lo=True)
        real(self.reg_weight, "reg_weight", 0.0)
        real(self.beta_start, "beta_start", 0.0, open_lo=True)
        real(self.beta_end, "beta_end", 0.0, open_lo=True)
        real(self.fisher_damping, "fisher_damping", 0.0)
        real(self.warmup, "warmup", 0.0, 1.0, open_hi=True)
        string(self.loss, "loss", LOSSES)
        string(self.fisher_grad, "fisher_grad", FISHER_GRADS)
        string(self.one_bit, "one_bit", ONE_BIT_MODES)
        boolean(self.fold_bn, "fold_bn")
        if self.progress is not None:
            boolean(self.progress, "progress")

    @property
    def recording_interval(self) -> int:
        return self.record_every or max(1, self.n_iter // 20)


# -------------------------------------------------------------------------------------------
# model structure (torch.fx): execution order, fused BatchNorm / ReLU after each layer
# -------------------------------------------------------------------------------------------

_RELU_FUNCS = (F.relu, torch.relu, torch.relu_, F.relu_)


def _is_relu(node, modules) -> bool:
    if node.op == "call_function":
        return node.target in _RELU_FUNCS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    return False


@dataclass(frozen=True)
class Structure:
    """What tracing the model tells: module call order and what follows each layer.

    Attributes
    ----------
    order : dict of str to int
        Position of each called leaf module in execution order.
    bn_after : dict of str to str
        Layer name → the BatchNorm that is its only consumer (possibly through Identity).
    relu_after : frozenset of str
        Layers whose output (after that BatchNorm, if any) has a ReLU as only consumer.
    traced : bool
        False when ``torch.fx`` could not trace the model (then nothing is fused).
    """

    order: Mapping[str, int]
    bn_after: Mapping[str, str]
    relu_after: frozenset
    traced: bool = True


def analyse_structure(model: nn.Module) -> Structure:
    """Trace ``model`` with ``torch.fx`` and find, for every Linear/Conv2d, the BatchNorm and
    ReLU applied to it alone; on a tracing failure warn and return an empty structure."""
    modules = dict(model.named_modules())
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # any tracing failure means "no structure"
        warnings.warn(
            f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: {exc}); "
            "layers are reconstructed without fused BatchNorm/ReLU, in named_modules order",
            stacklevel=3,
        )
        order = {name: i for i, name in enumerate(modules)}
        return Structure(order, {}, frozenset(), traced=False)

    def only_user(node):
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def skip_identity(node):
        while (
            node is not None
            and node.op == "call_module"
            and isinstance(modules.get(node.target), nn.Identity)
        ):
            node = only_user(node)
        return node

    calls: dict[str, int] = {}
    order: dict[str, int] = {}
    for i, node in enumerate(gm.graph.nodes):
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
            order.setdefault(node.target, i)
    bn_after, relu_after = {}, set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), SUPPORTED_LAYERS):
            continue
        nxt = skip_identity(only_user(node))
        if (
            nxt is not None
            and nxt.op == "call_module"
            and isinstance(modules.get(nxt.target), nn.modules.batchnorm._BatchNorm)
            and calls.get(nxt.target) == 1
        ):
            bn_after[node.target] = nxt.target
            nxt = skip_identity(only_user(nxt))
        if nxt is not None and _is_relu(nxt, modules):
            relu_after.add(node.target)
    return Structure(order, bn_after, frozenset(relu_after))


# -------------------------------------------------------------------------------------------
# units
# -------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One reconstruction target: a layer (with its fused BN/ReLU) or a block module.

    ``layers`` maps the parameter path of each planned weight inside ``name``'s module
    (``"weight"`` for a layer unit, ``"conv1.weight"`` … for a block) to its planned layer.
    """

    name: str
    kind: str  # "layer" or "block"
    layers: dict = field(default_factory=dict)  # param path -> PlannedLayer
    bn: str | None = None
    relu: bool = False
    position: int = 0


def build_units(model: nn.Module, plan: QuantPlan, structure: Structure, blocks=()) -> list[Unit]:
    """Partition the planned (quantized) layers into units, in execution order.

    A planned layer inside one of the ``blocks`` (module names) joins that block's unit;
    any other planned layer is a layer unit with its fused BatchNorm/ReLU.
    """
    blocks = tuple(blocks)
    units: dict[str, Unit] = {}
    for p in plan.quantized():
        owner = next((b for b in blocks if p.name.startswith(b + ".")), None)
        pos = structure.order.get(p.name, len(structure.order))
        if owner is None:
            units[p.name] = Unit(
                p.name,
                "layer",
                {"weight": p},
                structure.bn_after.get(p.name),
                p.name in structure.relu_after,
                pos,
            )
        else:
            u = units.setdefault(owner, Unit(owner, "block", position=pos))
            u.layers[p.name[len(owner) + 1 :] + ".weight"] = p
            u.position = min(u.position, pos)
    return sorted(units.values(), key=lambda u: u.position)


class _UnitRunner:
    """Evaluates a unit in one model (the quantized copy or the full-precision reference)."""

    def __init__(self, model: nn.Module, unit: Unit):
        mods = dict(model.named_modules())
        self.module = mods[unit.name]
        self.bn = mods[unit.bn] if unit.bn is not None else None
        self.relu = unit.relu

    def post(self, out):
        if self.bn is not None:
            out = self.bn(out)
        return F.relu(out) if self.relu else out

    def __call__(self, x, weights: Mapping[str, torch.Tensor]):
        return self.post(functional_call(self.module, dict(weights), (x,)))


# -------------------------------------------------------------------------------------------
# caching through forward hooks
# -------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted tensor is captured."""


def _capture(model, module, x_all, *, want: str, batch_size: int) -> torch.Tensor:
    """Input (``want="input"``) or output of ``module`` for every row of ``x_all``."""
    store = []

    def pre_hook(_m, args):
        if not args or not isinstance(args[0], torch.Tensor):
            raise MisValueError(
                f"a reconstructed module must take one tensor input; {type(_m).__name__} got "
                f"{[type(a).__name__ for a in args]}"
            )
        store.append(args[0].detach())
        raise _Stop

    def hook(_m, _args, out):
        store.append(out.detach())
        raise _Stop

    handle = (
        module.register_forward_pre_hook(pre_hook)
        if want == "input"
        else module.register_forward_hook(hook)
    )
    try:
        with torch.no_grad():
            for i in range(0, x_all.shape[0], batch_size):
                before = len(store)
                try:
                    model(x_all[i : i + batch_size])
                except _Stop:
                    pass
                if len(store) != before + 1:
                    raise MisValueError(
                        f"module {type(module).__name__} was not called by the model's forward"
                    )
    finally:
        handle.remove()
    return torch.cat(store)


class _ReluProbe(TorchFunctionMode):
    """Replaces the first ReLU output computed from ``watch`` by a leaf that records grads."""

    def __init__(self):
        super().__init__()
        self.watch = None
        self.probe = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (
            self.watch is not None
            and self.probe is None
            and args
            and args[0] is self.watch
            and (func in _RELU_FUNCS or func in (torch.Tensor.relu, torch.Tensor.relu_))
        ):
            self.probe = out.detach().requires_grad_(True)
            return self.probe
        return out


def _output_gradients(qmodel, fp_model, unit: Unit, x_all, y_all, mode: str, batch_size: int):
    """Per-example ``∂ℓ/∂(unit output)`` in the quantized-so-far network (current unit at
    full precision), ``ℓ`` = summed cross-entropy ("ce") or KL(fp ‖ q) ("kl")."""
    mods = dict(qmodel.named_modules())
    if unit.kind == "block":
        last, relu = mods[unit.name], False
    else:
        last = mods[unit.bn] if unit.bn is not None else mods[unit.name]
        relu = unit.relu
    grads = []
    for i in range(0, x_all.shape[0], batch_size):
        xb = x_all[i : i + batch_size]
        probe = _ReluProbe()
        holder = {}

        def hook(_m, _args, out, probe=probe, holder=holder):
            if relu:
                probe.watch = out
                return out
            leaf = out.detach().requires_grad_(True)
            holder["leaf"] = leaf
            return leaf

        handle = last.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                if relu:
                    with probe:
                        out_q = qmodel(xb)
                    leaf = probe.probe
                else:
                    out_q = qmodel(xb)
                    leaf = holder.get("leaf")
                if leaf is None:
                    raise MisValueError(
                        f"could not locate the output of unit {unit.name!r} for the Fisher loss"
                    )
                if mode == "ce":
                    loss = F.cross_entropy(out_q, y_all[i : i + batch_size], reduction="sum")
                else:
                    with torch.no_grad():
                        p_fp = F.log_softmax(fp_model(xb), dim=1)
                    loss = F.kl_div(F.log_softmax(out_q, 1), p_fp, log_target=True, reduction="sum")
                (g,) = torch.autograd.grad(loss, leaf, allow_unused=True)
        finally:
            handle.remove()
        grads.append(torch.zeros_like(leaf) if g is None else g.detach())
    return torch.cat(grads)


# -------------------------------------------------------------------------------------------
# losses and logs
# -------------------------------------------------------------------------------------------


def reconstruction_loss(pred, target, weight=None) -> torch.Tensor:
    """``mean over (batch, spatial) of Σ_channels (pred - target)²`` (times ``weight²``)."""
    d = pred - target
    d = d * d if weight is None else (d * weight) ** 2
    return d.sum(1).mean() if d.ndim > 1 else d.mean()


@dataclass(frozen=True)
class UnitLog:
    """What happened while reconstructing one unit.

    Attributes
    ----------
    name, kind : str
        Module name, "layer" or "block".
    layers : tuple of str
        Quantized layers of the unit.
    history : numpy.ndarray, shape (k, 5)
        Columns: step, soft reconstruction loss (mini-batch), regulariser (0 in warm-up),
        β (NaN in warm-up), hard-rounded reconstruction loss on ``eval_samples`` cached
        examples. Row 0 is step 0 (before any update: hard = nearest rounding).
    nearest_loss, final_loss : float
        Reconstruction loss on the whole calibration cache with nearest rounding (the
        starting point) and with the learned hard rounding.
    flipped : float
        Fraction of weights whose learned rounding differs from nearest rounding.
    seconds : float
    """

    name: str
    kind: str
    layers: tuple
    history: np.ndarray
    nearest_loss: float
    final_loss: float
    flipped: float
    seconds: float

    def as_dict(self) -> dict:
        return dict(
            name=self.name,
            kind=self.kind,
            layers=list(self.layers),
            nearest_loss=self.nearest_loss,
            final_loss=self.final_loss,
            flipped=self.flipped,
            seconds=self.seconds,
            history=self.history.tolist(),
        )


# -------------------------------------------------------------------------------------------
# the driver
# -------------------------------------------------------------------------------------------


def _check_calibration(calib):
    if not isinstance(calib, Calibration):
        raise MisValueError(
            "calib must be a mis.quant.Calibration of training members (select_calibration("
            f"x, y, member_mask=keep_row, ...)); got {type(calib).__name__}"
        )


def _loss_on(runner, inps, tgts, grads, weights, batch_size) -> float:
    total, n = 0.0, inps.shape[0]
    with torch.no_grad():
        for i in range(0, n, batch_size):
            g = None if grads is None else grads[i : i + batch_size]
            out = runner(inps[i : i + batch_size], weights)
            total += float(reconstruction_loss(out, tgts[i : i + batch_size], g)) * min(
                batch_size, n - i
            )
    return total / n


def reconstruct(
    model: nn.Module,
    fp_model: nn.Module,
    plan: QuantPlan,
    calib: Calibration,
    config: ReconstructionConfig,
    units: list[Unit],
    *,
    desc: str = "adaround",
) -> tuple[UnitLog, ...]:
    """Optimise the rounding of every unit in turn and write hard-rounded weights into ``model``.

    Parameters
    ----------
    model : nn.Module
        The copy being quantized (modified in place); earlier units are quantized before
        a later unit's inputs are cached.
    fp_model : nn.Module
        A full-precision copy with the same structure (targets).
    units : list of Unit
        From :func:`build_units`, in execution order.

    Returns
    -------
    tuple of UnitLog
    """
    _check_calibration(calib)
    device = next(model.parameters()).device
    x_all = calib.x.to(device)
    if x_all.is_floating_point():
        x_all = x_all.to(next(model.parameters()).dtype)
    y_all = calib.y.to(device) if calib.y is not None else None
    fisher = config.loss == "fisher_diag"
    grad_mode = config.fisher_grad
    if fisher and grad_mode == "auto":
        grad_mode = "ce" if y_all is not None else "kl"
    if fisher and grad_mode == "ce" and y_all is None:
        raise MisValueError("fisher_grad='ce' needs calibration labels (select_calibration(x, y))")
    gen = torch.Generator().manual_seed(int(plan.config.seed))
    n = x_all.shape[0]
    bs = min(config.batch_size, n)
    cbs = config.cache_batch_size
    logs = []
    for unit in units:
        t0 = time.perf_counter()
        q_run, fp_run = _UnitRunner(model, unit), _UnitRunner(fp_model, unit)
        inps = _capture(model, q_run.module, x_all, want="input", batch_size=cbs)
        tgts = fp_run.post(_capture(fp_model, fp_run.module, x_all, want="output", batch_size=cbs))
        grads = None
        if fisher:
            g = _output_gradients(model, fp_model, unit, x_all, y_all, grad_mode, cbs)
            grads = g.abs() + config.fisher_damping
        roundings = {
            path: soft_rounding_for(p.module.weight, p.spec).to(device)
            for path, p in unit.layers.items()
        }
        fixed = {}
        if config.one_bit == "rtn":
            for path, p in unit.layers.items():
                if p.spec.is_sign:
                    fixed[path] = roundings.pop(path).nearest_weight().detach()
        wdtype = {path: p.module.weight.dtype for path, p in unit.layers.items()}

        def weights(kind, roundings=roundings, fixed=fixed, wdtype=wdtype):
            out = dict(fixed)
            for path, r in roundings.items():
                w = getattr(r, kind)()
                out[path] = w.to(wdtype[path])
            return out

        n_eval = min(config.eval_samples, n)
        ev = (inps[:n_eval], tgts[:n_eval], None if grads is None else grads[:n_eval])
        nearest = weights("nearest_weight")
        history = [
            (0, math.nan, 0.0, math.nan, _loss_on(q_run, *ev, nearest, cbs)),
        ]
        nearest_loss = _loss_on(q_run, inps, tgts, grads, nearest, cbs)
        params = [r.v for r in roundings.values()]
        every = config.recording_interval
        if params:
            opt = torch.optim.Adam(params, lr=config.lr)
            bar = progress_bar(
                range(1, config.n_iter + 1), desc=f"{desc} {unit.name}", enabled=config.progress
            )
            with torch.enable_grad():
                for step in bar:
                    idx = torch.randperm(n, generator=gen)[:bs].to(device)
                    out = q_run(inps[idx], weights("soft_weight"))
                    rec = reconstruction_loss(out, tgts[idx], None if grads is None else grads[idx])
                    beta = beta_at(
                        step,
                        config.n_iter,
                        warmup=config.warmup,
                        beta_start=config.beta_start,
                        beta_end=config.beta_end,
                    )
                    if beta is None:
                        reg = torch.zeros((), device=device)
                    else:
                        reg = config.reg_weight * sum(
                            rounding_regularizer(r.h(), beta) for r in roundings.values()
                        )
                    opt.zero_grad(set_to_none=True)
                    (rec + reg).backward()
                    opt.step()
                    if step % every == 0 or step == config.n_iter:
                        hard = _loss_on(q_run, *ev, weights("hard_weight"), cbs)
                        history.append(
                            (
                                step,
                                float(rec.detach()),
                                float(reg.detach()),
                                math.nan if beta is None else beta,
                                hard,
                            )
                        )
                        bar.set_postfix(rec=f"{float(rec.detach()):.4g}", hard=f"{hard:.4g}")
        final = weights("hard_weight")
        final_loss = _loss_on(q_run, inps, tgts, grads, final, cbs)
        n_flip, n_tot = 0, 0
        with torch.no_grad():
            for path, p in unit.layers.items():
                w_new = final[path]
                n_flip += int((w_new != nearest[path]).sum())
                n_tot += w_new.numel()
                p.module.weight.copy_(w_new)
                r = roundings.get(path)
                if r is not None and r.grid is not None:
                    p.module.weight_grid = r.grid
        logs.append(
            UnitLog(
                unit.name,
                unit.kind,
                tuple(p.name for p in unit.layers.values()),
                np.asarray(history, dtype=np.float64),
                nearest_loss,
                final_loss,
                n_flip / max(n_tot, 1),
                time.perf_counter() - t0,
            )
        )
        del inps, tgts, grads
    return tuple(logs)


@dataclass(frozen=True)
class ReconstructionLog:
    """Attached to a model quantized by AdaRound/BRECQ as ``model.mis_reconstruction``."""

    method: str
    config: ReconstructionConfig
    units: tuple

    def __getitem__(self, name: str) -> UnitLog:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(name)

    def as_dict(self) -> dict:
        return dict(method=self.method, units=[u.as_dict() for u in self.units])


def run_method(
    model: nn.Module,
    plan: QuantPlan,
    calib: Calibration,
    config: ReconstructionConfig,
    *,
    method: str,
    blocks=(),
    prepare=None,
) -> nn.Module:
    """Common driver of AdaRound and BRECQ (the :mod:`mis.quant.api` method interface).

    ``prepare(model)`` (e.g. BN folding) runs on the copy first; the full-precision
    reference is copied after it. Parameters are frozen (``requires_grad=False``) and all
    modules in eval mode while optimising; both are restored on the returned model.
    """
    _check_calibration(calib)
    training = {name: m.training for name, m in model.named_modules()}
    grad_flags = {name: p.requires_grad for name, p in model.named_parameters()}
    model.eval()
    if prepare is not None:
        prepare(model)
    for p in model.parameters():
        p.requires_grad_(False)
    fp_model = copy.deepcopy(model).eval()
    structure = analyse_structure(model)
    units = build_units(model, plan, structure, blocks)
    on_cpu = next(model.parameters()).device.type == "cpu"
    threads = torch.get_num_threads()
    if on_cpu and config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        logs = reconstruct(model, fp_model, plan, calib, config, units, desc=method)
    finally:
        torch.set_num_threads(threads)
    for name, m in model.named_modules():
        m.train(training.get(name, False))
    for name, p in model.named_parameters():
        p.requires_grad_(grad_flags.get(name, True))
    model.mis_reconstruction = ReconstructionLog(method, config, logs)
    return model


def planned_layer_with_spec(layer: PlannedLayer, spec: LayerSpec | None) -> None:
    """Change the spec of a planned layer in place (the plan is per-call; used by BRECQ's
    8-bit stem/head default so that ``quantization_report`` shows the real bit width)."""
    object.__setattr__(layer, "spec", spec)
