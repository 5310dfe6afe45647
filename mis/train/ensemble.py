"""Ensemble trainer: K models of one architecture trained at once with ``torch.func``.

The K models' parameters are stacked along a new leading axis
(``torch.func.stack_module_state``); one forward pass is ``vmap`` of ``functional_call`` over
that axis, the K losses are summed and one backward pass gives every model its own gradient
(model k's loss depends only on model k's parameters). The optimizer
(:class:`_StackedOptimizer`) applies ``torch.optim``'s SGD / Adam update formulas to the
stacked tensors.

Each model trains on its own subset of a shared input tensor: a bool mask or an index array
per model. Subsets may differ in size; every model draws its own batch order and
augmentation from its own seed exactly as :func:`~mis.train.trainer.train_model` does
(:func:`~mis.train.config.epoch_plan`), batches are padded to a common width with zero-weight
rows, and a model whose epoch has fewer steps than the longest one is *inactive* on the extra
steps (its parameters, optimizer state and step count do not move). So model k of an
ensemble ends with the same weights, up to float rounding, as ``train_model`` with seed
``seeds[k]`` and subset ``subsets[k]``: tested in ``tests/test_train_ensemble.py``.

Fast path. For :class:`~mis.train.models.QuadraticLinear` without augmentation the gradient of
the cross-entropy is computed in closed form with batched matrix products
(``∂L/∂z = (softmax(z) − onehot(y)) · w / Σw``, ``∂L/∂W = (∂L/∂z)ᵀ [x, x²]``) on features
computed once, instead of autograd through ``vmap``: the same numbers up to float rounding,
several times faster on the CPU for the tiny models of Aubinais et al. (§5.1.1), where
per-operation overhead dominates. Likewise for :class:`~mis.train.models.MLP` with the
cross-entropy (:func:`_mlp_grads`): the forward pass is one ``baddbmm`` + ReLU per layer and
the backward pass the textbook chain rule with batched matrix products
(``∂L/∂z_L = (softmax − onehot) · w / Σw``, ``∂L/∂W_l = (∂L/∂z_l)ᵀ h_{l−1}``,
``∂L/∂z_{l−1} = (∂L/∂z_l W_l) ⊙ [z_{l−1} > 0]``), no autograd and no ``vmap``: about twice
as fast on the CPU for the Fashion-MNIST MLP of the audit, where the GEMMs dominate.
``fast=False`` forces the generic path.

Limitations: models must not contain BatchNorm (running statistics cannot be updated per
model under ``vmap``; train those with :func:`~mis.train.trainer.train_model`) nor dropout;
the loss is the cross-entropy or, for regression, the squared error
(:mod:`mis.train.losses`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.train.config import (
    TrainConfig,
    as_tensors,
    data_generator,
    deterministic_algorithms,
    epoch_plan,
    init_model,
    lr_at,
    resolve_device,
    subset_indices,
)
from mis.train.data import random_flip_crop
from mis.train.losses import as_targets, check_loss, per_sample_loss
from mis.train.models import MLP, QuadraticLinear

__all__ = ["Ensemble", "train_ensemble"]


# ------------------------------------------------------------------------------------------
# The stacked models
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Ensemble:
    """K models of one architecture with stacked parameters.

    Attributes
    ----------
    base : nn.Module
        A module of the architecture, used as the skeleton for ``functional_call``.
    params : dict of str → Tensor, each of shape (K, ...)
    buffers : dict of str → Tensor, each of shape (K, ...)
    seeds : list of int
    """

    base: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    seeds: list[int]

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], seeds=None) -> Ensemble:
        """Stack modules (no copy of the parameters when there is only one)."""
        modules = list(modules)
        if not modules:
            raise MisValueError("modules must not be empty")
        if len(modules) == 1:
            m = modules[0]
            params = {n: p.detach().unsqueeze(0) for n, p in m.named_parameters()}
            buffers = {n: b.detach().unsqueeze(0) for n, b in m.named_buffers()}
            base = m
        else:
            params, buffers = stack_module_state(modules)
            params = {n: p.detach() for n, p in params.items()}
            base = modules[0]
        seeds = list(seeds) if seeds is not None else [-1] * len(modules)
        return cls(base=base, params=params, buffers=buffers, seeds=seeds)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Parameters and buffers of model ``k`` (views, not copies)."""
        out = {n: p[k] for n, p in self.params.items()}
        out.update({n: b[k] for n, b in self.buffers.items()})
        return out

    def model(self, k: int) -> nn.Module:
        """Model ``k`` as an independent ``nn.Module`` (a copy)."""
        m = copy.deepcopy(self.base)
        m.load_state_dict({n: t.clone() for n, t in self.state_dict(k).items()})
        return m.eval()

    def forward(self, x, *, params=None, batch_size: int | None = 4096) -> torch.Tensor:
        """Logits of every model, in eval mode, without gradients.

        Parameters
        ----------
        x : Tensor, shape (N, ...) shared by all models, on the models' device
        params : dict, optional
            Stacked parameters to use instead of ``self.params`` (e.g. quantized ones).
        batch_size : int or None
            Examples per forward pass (bounds memory); None = all at once.

        Returns
        -------
        Tensor, shape (K, N, n_classes)
        """
        params = self.params if params is None else params
        k = next(iter(params.values())).shape[0]
        was_training = self.base.training
        self.base.eval()
        try:
            with torch.no_grad():
                if k == 1:  # no vmap: also works for BatchNorm models

                    def fwd(xx):
                        p = {n: t[0] for n, t in params.items()}
                        b = {n: t[0] for n, t in self.buffers.items()}
                        return functional_call(self.base, (p, b), (xx,))[None]
                else:
                    vf = vmap(
                        lambda p, b, xx: functional_call(self.base, (p, b), (xx,)),
                        in_dims=(0, 0, None),
                    )

                    def fwd(xx):
                        return vf(params, self.buffers, xx)

                n = x.shape[0]
                step = n if batch_size is None else batch_size
                return torch.cat([fwd(x[i : i + step]) for i in range(0, n, step)], dim=1)
        finally:
            self.base.train(was_training)


# ------------------------------------------------------------------------------------------
# Optimizer on stacked tensors (torch.optim's formulas)
# ------------------------------------------------------------------------------------------
class _StackedOptimizer:
    """SGD / Adam applied to stacked (K, ...) tensors, with a per-model ``active`` mask.

    When every model is active and all step counts are equal (full batch, or equal subset
    sizes), the update uses Python-float scalars exactly as ``torch.optim``'s single-tensor
    implementation does; otherwise per-model bias corrections are broadcast tensors and
    inactive models are left untouched with ``torch.where``.
    """

    def __init__(self, params: dict[str, torch.Tensor], config: TrainConfig, k: int):
        self.config = config
        self.k = k
        self.steps = np.zeros(k, dtype=np.int64)
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        for n, p in params.items():
            if config.optimizer == "adam":
                self.state[n] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
            elif config.momentum > 0:
                self.state[n] = {"buf": torch.zeros_like(p)}
            else:
                self.state[n] = {}

    @torch.no_grad()
    def step(self, params, grads, lr: float, active: np.ndarray):
        c = self.config
        all_active = bool(active.all())
        first = self.steps == 0
        self.steps += active
        uniform = all_active and (self.steps == self.steps[0]).all()
        # per-model masks copied to the device once per step, not once per parameter (on CUDA
        # every blocking host-to-device copy waits for the queued kernels)
        dev = next(iter(params.values())).device
        active_t = None if all_active else torch.as_tensor(active, device=dev)
        first_t = torch.as_tensor(first, device=dev) if first.any() else None
        per_model = {}  # Adam's per-model step sizes, per dtype
        for n, p in params.items():
            g = grads[n]
            st = self.state[n]
            mask = None if active_t is None else _bview(active_t, p)
            if c.weight_decay:
                g = g.add(p, alpha=c.weight_decay)
            if c.optimizer == "sgd":
                d = g
                if c.momentum > 0:
                    if first.all() and all_active:
                        buf = g.clone()
                    elif first_t is None:  # no model takes its first step: where(False, ...)
                        buf = st["buf"].mul(c.momentum).add_(g)
                    else:
                        fresh = _bview(first_t, p)
                        buf = torch.where(fresh, g, st["buf"].mul(c.momentum).add_(g))
                    st["buf"] = buf if mask is None else torch.where(mask, buf, st["buf"])
                    d = g.add(buf, alpha=c.momentum) if c.nesterov else buf
                new = p.add(d, alpha=-lr)
            else:
                b1, b2 = c.betas
                m = st["m"].lerp(g, 1 - b1)
                v = st["v"].mul(b2).addcmul_(g, g, value=1 - b2)
                if uniform:
                    t = int(self.steps[0])
                    bc1, bc2 = 1 - b1**t, 1 - b2**t
                    denom = (v.sqrt() / math.sqrt(bc2)).add_(c.eps)
                    new = p.addcdiv(m, denom, value=-(lr / bc1))
                else:
                    if p.dtype not in per_model:
                        t = np.maximum(self.steps, 1).astype(np.float64)
                        both = np.stack([lr / (1 - b1**t), np.sqrt(1 - b2**t)])
                        per_model[p.dtype] = torch.as_tensor(both, dtype=p.dtype, device=dev)
                    step_size = _bview(per_model[p.dtype][0], p)
                    bc2t = _bview(per_model[p.dtype][1], p)
                    denom = (v.sqrt() / bc2t).add_(c.eps)
                    new = p - step_size * (m / denom)
                if mask is not None:
                    m, v = torch.where(mask, m, st["m"]), torch.where(mask, v, st["v"])
                st["m"], st["v"] = m, v
            if mask is not None:
                new = torch.where(mask, new, p)
            p.copy_(new)


def _bview(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (K,) tensor to broadcast against a (K, ...) tensor."""
    return t.view((-1,) + (1,) * (like.ndim - 1))


# ------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------
def _generic_grads(base, params, buffers, xs, ys, w, x_shared: bool, loss: str = "cross_entropy"):
    """Autograd through a vmapped functional forward; returns (grads, per-model loss)."""
    k = w.shape[0]
    fwd = vmap(
        lambda p, b, xx: functional_call(base, (p, b), (xx,)),
        in_dims=(0, 0, None if x_shared else 0),
    )
    with torch.enable_grad():
        leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        out = fwd(leaves, buffers, xs)  # (K, B, C)
        yy = ys.expand(k, -1) if ys.ndim == 1 else ys
        losses = per_sample_loss(out, yy, loss)  # (K, B)
        mean = (losses * w).sum(1) / w.sum(1).clamp_min(1)
        grads = torch.autograd.grad(mean.sum(), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True)), mean.detach()


def _quadratic_grads(phi, params, ys, w, phi_t=None):
    """Closed-form cross-entropy gradient of the quadratic single layer (see module doc).

    phi: features (K, B, F) or shared (B, F); phi_t: the same transposed (…, F, B), e.g.
    precomputed contiguous for a fixed full batch; ys: (K, B) or (B,); w: (K, B).
    Logits are laid out (K, C, B): a softmax over a short middle axis is much cheaper
    than over a last axis of size 2.
    """
    weight, bias = params["fc.weight"], params["fc.bias"]  # (K, C, F), (K, C)
    if phi_t is None:
        phi_t = phi.transpose(-1, -2)
    z = torch.matmul(weight, phi_t) + bias[:, :, None]  # (K, C, B)
    logp = torch.log_softmax(z, dim=1)
    yy = (ys.expand(w.shape[0], -1) if ys.ndim == 1 else ys).unsqueeze(1)  # (K, 1, B)
    scale = w / w.sum(1, keepdim=True).clamp_min(1)  # (K, B)
    loss = -(logp.gather(1, yy).squeeze(1) * scale).sum(1)
    r = logp.exp_()
    r.scatter_add_(1, yy, torch.full_like(r[:, :1], -1.0))
    r.mul_(scale.unsqueeze(1))
    gw = torch.matmul(r, phi)  # (K, C, F)
    return {"fc.weight": gw, "fc.bias": r.sum(2)}, loss


def _mlp_layers(base: MLP) -> list[str]:
    """Names (``net.<i>``) of the Linear layers of an :class:`~mis.train.models.MLP`."""
    return [f"net.{i}" for i, m in enumerate(base.net) if isinstance(m, nn.Linear)]


def _mlp_grads(layers, params, xs, ys, w):
    """Closed-form cross-entropy gradient of K stacked MLPs (see the module docstring).

    layers: the Linear layers' names in order (:func:`_mlp_layers`); xs: (K, B, ...) inputs,
    flattened from axis 2; ys: (K, B) labels; w: (K, B) example weights (0 = padding).
    Returns (grads, per-model weighted mean loss), as :func:`_generic_grads`.
    """
    h = xs.flatten(2)
    acts = [h]
    for i, name in enumerate(layers):
        z = torch.baddbmm(params[f"{name}.bias"][:, None, :], h,
                          params[f"{name}.weight"].transpose(1, 2))  # fmt: skip
        h = z.clamp_min_(0.0) if i < len(layers) - 1 else z
        acts.append(h)
    logp = torch.log_softmax(acts[-1], dim=2)  # (K, B, C)
    scale = w / w.sum(1, keepdim=True).clamp_min(1)  # (K, B)
    loss = -(logp.gather(2, ys.unsqueeze(2)).squeeze(2) * scale).sum(1)
    d = logp.exp_()
    d.scatter_add_(2, ys.unsqueeze(2), torch.full_like(d[..., :1], -1.0))
    d.mul_(scale.unsqueeze(2))  # ∂L/∂z of the last layer
    grads = {}
    for i in range(len(layers) - 1, -1, -1):
        name = layers[i]
        grads[f"{name}.weight"] = torch.bmm(d.transpose(1, 2), acts[i])
        grads[f"{name}.bias"] = d.sum(1)
        if i:
            d = torch.bmm(d, params[f"{name}.weight"]).mul_(acts[i] > 0)
    return grads, loss


# ------------------------------------------------------------------------------------------
# Public trainer
# ------------------------------------------------------------------------------------------
def train_ensemble(
    model_fn: Callable[[], nn.Module],
    x,
    y,
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    subsets=None,
    device=None,
    callbacks: Sequence[Callable] = (),
    progress: bool | None = None,
    fast: bool = True,
    loss: str = "cross_entropy",
) -> Ensemble:
    """Train ``len(seeds)`` models of one architecture at once.

    Parameters
    ----------
    model_fn : callable
        Zero-argument factory (e.g. ``functools.partial(build_model, "mlp", ...)``); model k
        is built by :func:`~mis.train.config.init_model` from ``seeds[k]``.
    x : Tensor, shape (N, ...), float
        Inputs shared by all models (for one independent data set per model, concatenate
        them and pass index sets as ``subsets``).
    y : Tensor or array, shape (N,)
        Class labels (int) for ``loss="cross_entropy"``, float targets for ``"mse"``.
    config : TrainConfig
    seeds : sequence of int, length K
    subsets : None, bool array (K, N), or sequence of K index arrays
        Each model's training examples; ``keep_masks(...)`` output fits directly.
        None = every model trains on all of ``x``.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    callbacks : sequence of callable
        ``cb(epoch, ensemble)`` after each epoch (``epoch`` = epochs completed), e.g. a
        :class:`~mis.train.trajectory.TrajectoryRecorder`.
    progress : bool or None
        Progress bar over epochs; None = only when stderr is a terminal.
    fast : bool, default True
        Use the closed-form gradient for :class:`~mis.train.models.QuadraticLinear` and
        :class:`~mis.train.models.MLP` (cross-entropy).
    loss : {"cross_entropy", "mse"}
        Training loss (:mod:`mis.train.losses`); ``"mse"`` needs one output per example.

    Returns
    -------
    Ensemble
    """
    seeds = [int(s) for s in seeds]
    k = len(seeds)
    if k == 0:
        raise MisValueError("seeds must name at least one model")
    device = resolve_device(device)
    targets = as_targets(y, check_loss(loss))
    x, _ = as_tensors(x, targets)  # shape checks
    y = targets
    n = x.shape[0]
    if subsets is None:
        subs = [torch.arange(n)] * k
    else:
        if isinstance(subsets, (np.ndarray, torch.Tensor)) and subsets.ndim == 2:
            rows = list(subsets)
        else:
            rows = list(subsets)
        if len(rows) != k:
            raise MisValueError(f"subsets must have one row per seed ({k}); got {len(rows)}")
        subs = [subset_indices(r, n) for r in rows]

    models = [init_model(model_fn, s) for s in seeds]
    for m in models[0].modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise MisValueError(
                f"{type(models[0]).__name__} contains BatchNorm, which the vmap ensemble cannot "
                "train; use mis.train.train_model for it (one model at a time)"
            )
        if isinstance(m, nn.Dropout) and m.p > 0:
            raise MisValueError("dropout is not supported by the ensemble trainer")
    ens = Ensemble.from_modules(models, seeds)
    ens.params = {nm: p.to(device) for nm, p in ens.params.items()}
    ens.buffers = {nm: b.to(device) for nm, b in ens.buffers.items()}
    base = copy.deepcopy(models[0]).to(device)
    ens.base = base
    del models

    x = x.to(device)
    y = y.to(device)
    sizes = [len(s) for s in subs]
    n_max = max(sizes)
    sub_pad = torch.zeros((k, n_max), dtype=torch.long)
    for i, s in enumerate(subs):
        sub_pad[i, : len(s)] = s
    sub_pad = sub_pad.to(device)
    use_fast = fast and isinstance(base, QuadraticLinear) and not config.augment and loss != "mse"
    mlp = _mlp_layers(base) if fast and type(base) is MLP and loss == "cross_entropy" else None
    everyone_all = subsets is None

    # Full batch without augmentation: the batch never changes, build it once.
    fixed = None
    if config.batch_size is None and not config.augment:
        if everyone_all:
            xs, ys, shared = x, y, True
            w = torch.ones((k, n), device=device)
        else:
            valid = torch.arange(n_max) < torch.tensor(sizes)[:, None]
            w = valid.to(device=device, dtype=x.dtype)
            xs, ys, shared = x[sub_pad], y[sub_pad], False
        phi_t = None
        if use_fast:
            xs = QuadraticLinear.features(xs)
            phi_t = xs.transpose(-1, -2).contiguous()
        fixed = (xs, ys, w, shared)

    gens = [data_generator(s) for s in seeds]
    opt = _StackedOptimizer(ens.params, config, k)
    with deterministic_algorithms(config.deterministic):
        for epoch in progress_bar(range(config.epochs), desc="ensemble", enabled=progress):
            lr = lr_at(config, epoch)
            if fixed is not None:
                steps = [(fixed, np.ones(k, dtype=bool))]
            else:
                steps = _epoch_batches(x, y, sub_pad, sizes, config, gens, device, use_fast)
            for (xs, ys, w, shared), active in steps:
                if use_fast:
                    pt = phi_t if fixed is not None else None
                    grads, _ = _quadratic_grads(xs, ens.params, ys, w, pt)
                elif mlp is not None:
                    xk = xs.expand(k, *xs.shape) if shared else xs
                    grads, _ = _mlp_grads(mlp, ens.params, xk, ys.expand(k, -1), w)
                else:
                    grads, _ = _generic_grads(
                        base, ens.params, ens.buffers, xs, ys, w, shared, loss
                    )
                opt.step(ens.params, grads, lr, active)
            for cb in callbacks:
                cb(epoch + 1, ens)
    return ens


def _epoch_batches(x, y, sub_pad, sizes, config, gens, device, use_fast):
    """Yield the padded (K, B) steps of one epoch; each model follows its own epoch_plan.

    The whole epoch's draws are made up front (in each model's generator order); the
    batches themselves are gathered lazily, one step at a time.
    """
    k = len(sizes)
    plans = [epoch_plan(sizes[i], config, gens[i]) for i in range(k)]
    n_steps = max(len(p) for p in plans)
    width = max((len(b.pos) for p in plans for b in p), default=1)
    pos = torch.full((k, n_steps, width), -1, dtype=torch.long)
    flip = torch.zeros((k, n_steps, width), dtype=torch.bool)
    off = torch.full((k, n_steps, width, 2), config.padding, dtype=torch.long)
    for i, plan in enumerate(plans):
        for s, b in enumerate(plan):
            pos[i, s, : len(b.pos)] = b.pos
            if config.augment:
                flip[i, s, : len(b.pos)] = b.flip
                off[i, s, : len(b.pos)] = b.offsets
    pos = pos.to(device)
    if config.augment:  # one copy per epoch (see _StackedOptimizer.step)
        flip, off = flip.to(device), off.to(device)
    valid = pos >= 0
    idx = sub_pad.gather(1, pos.clamp_min(0).view(k, -1)).view(k, n_steps, width)
    active = valid.any(2).cpu().numpy()  # (K, n_steps)
    for s in range(n_steps):
        ids = idx[:, s]
        xs, ys = x[ids], y[ids]  # (K, B, ...), (K, B)
        if config.augment:
            shp = xs.shape
            xs = random_flip_crop(
                xs.flatten(0, 1), flip[:, s].flatten(), off[:, s].flatten(0, 1), config.padding
            ).view(shp)
        if use_fast:
            xs = QuadraticLinear.features(xs)
        w = valid[:, s].to(x.dtype)
        yield (xs, ys, w, False), active[:, s]
