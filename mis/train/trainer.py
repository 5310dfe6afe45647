"""Training configuration and the plain (one model) trainer.

:class:`TrainConfig` describes a training run; the plain trainer :func:`train_model` and the
ensemble trainer :func:`mis.train.ensemble.train_ensemble` read the same config and draw their
randomness identically, so a model trained alone and the same model trained inside an
ensemble (same seed, same subset) end with the same weights up to float rounding.

Randomness for one model comes from its integer ``seed`` only: it is split
(:func:`split_seed`) into an *init* seed (the global torch RNG is forked and seeded while the
model is built, :func:`init_model`) and a *data* seed that drives a CPU ``torch.Generator`` for
the batch order and the augmentation draws (:func:`epoch_plan`). Everything is deterministic
on the CPU for a given seed; on CUDA, ``TrainConfig(deterministic=True)`` asks for
deterministic kernels (``torch.use_deterministic_algorithms``), which needs
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment.

The plain trainer is meant for the large models (Zhang et al. 2025, §IV-A: SGD momentum 0.9,
weight decay 5e-4, lr 0.1 with cosine annealing, 100 epochs, batch 128, flip + crop;
:meth:`TrainConfig.zhang2025`). On CUDA it uses bf16 autocast and channels-last memory, and
it can checkpoint every epoch (atomic ``torch.save``; resumed with
``torch.load(weights_only=True)``) so an interrupted run continues to the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mis.exceptions import MisValueError

__all__ = ["TrainConfig", "epoch_plan", "init_model", "lr_at", "split_seed", "train_model"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    epochs : int
    lr : float
        Initial learning rate.
    optimizer : {"sgd", "adam"}
        ``torch.optim.SGD`` (dampening 0) or ``torch.optim.Adam`` (L2 ``weight_decay``).
    momentum, nesterov : SGD momentum.
    weight_decay : float
        L2 penalty added to the gradient (both optimizers, as in ``torch.optim``).
    betas, eps : Adam constants.
    schedule : {"constant", "cosine"}
        ``cosine``: ``lr_e = lr · (1 + cos(π e / epochs)) / 2`` for epoch ``e = 0 ..
        epochs-1`` (``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch, closed form).
    batch_size : int or None
        ``None`` = full batch (one step per epoch on the whole training subset).
    drop_last : bool
        Drop a last incomplete mini-batch.
    augment : bool
        Random horizontal flip and random crop with ``padding`` zero pixels (NCHW images).
    padding : int
    amp : bool
        bf16 autocast on CUDA (ignored on the CPU).
    channels_last : bool
        Channels-last memory format for 4-D inputs on CUDA (ignored on the CPU).
    deterministic : bool
        ``torch.use_deterministic_algorithms(True)`` while training.
    """

    epochs: int = 100
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "cosine"
    batch_size: int | None = 128
    drop_last: bool = False
    augment: bool = False
    padding: int = 4
    amp: bool = True
    channels_last: bool = True
    deterministic: bool = False

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise MisValueError(f"epochs must be an integer >= 1; got {self.epochs!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MisValueError(f"lr must be a positive number; got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise MisValueError(f"optimizer must be 'sgd' or 'adam'; got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise MisValueError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise MisValueError(f"batch_size must be None or an int >= 1; got {self.batch_size!r}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or self.padding < 0:
            raise MisValueError(
                "need 0 <= momentum < 1, weight_decay >= 0, padding >= 0; got "
                f"{self.momentum!r}, {self.weight_decay!r}, {self.padding!r}"
            )
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def zhang2025(cls, **overrides) -> TrainConfig:
        """Zhang et al. (2025), §IV-A (after Carlini et al. 2022): SGD 0.9, wd 5e-4, lr 0.1
        cosine, 100 epochs, batch 128, flip + crop."""
        base = dict(
            epochs=100,
            lr=0.1,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=5e-4,
            schedule="cosine",
            batch_size=128,
            augment=True,
            padding=4,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def aubinais2025(cls, **overrides) -> TrainConfig:
        """Aubinais et al. (2025), §5.1.1: full-batch Adam, lr 1e-4, 3,000 epochs."""
        base = dict(
            epochs=3000,
            lr=1e-4,
            optimizer="adam",
            weight_decay=0.0,
            schedule="constant",
            batch_size=None,
            augment=False,
        )
        return cls(**{**base, **overrides})

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d


# ------------------------------------------------------------------------------------------
# Shared helpers (used identically by the plain and the ensemble trainer)
# ------------------------------------------------------------------------------------------
def split_seed(seed: int) -> tuple[int, int]:
    """Derive (init seed, data seed) from one integer seed (``numpy.random.SeedSequence``)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MisValueError(f"seed must be a non-negative integer; got {seed!r}")
    a, b = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)
    return int(a) >> 1, int(b) >> 1


def init_model(model_fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build ``model_fn()`` with the global torch RNG seeded from ``seed`` (and restored after)."""
    init_seed, _ = split_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return model_fn()


def data_generator(seed: int) -> torch.Generator:
    """The CPU generator for batch order and augmentation of the model with ``seed``."""
    return torch.Generator().manual_seed(split_seed(seed)[1])


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate during epoch ``epoch`` (0-based)."""
    if config.schedule == "cosine":
        return config.lr * (1 + math.cos(math.pi * epoch / config.epochs)) / 2
    return config.lr


@dataclasses.dataclass
class Batch:
    """Positions (into the model's own subset) of one step, and its augmentation draws."""

    pos: torch.Tensor  # (b,) int64
    flip: torch.Tensor | None = None  # (b,) bool
    offsets: torch.Tensor | None = None  # (b, 2) int64


def epoch_plan(n: int, config: TrainConfig, gen: torch.Generator) -> list[Batch]:
    """The steps of one epoch over a subset of size ``n``, drawing from ``gen`` in a fixed order.

    Full batch: one step over ``arange(n)`` (no permutation drawn). Mini-batch: one
    ``randperm(n)``, split into batches of ``batch_size``. With ``augment``: for each batch in
    turn, ``rand(b) < 0.5`` (flip) then ``randint(0, 2·padding+1, (b, 2))`` (crop offsets).
    """
    if config.batch_size is None:
        pos_list = [torch.arange(n)]
    else:
        perm = torch.randperm(n, generator=gen)
        b = config.batch_size
        stop = (n // b) * b if config.drop_last else n
        pos_list = [perm[i : i + b] for i in range(0, stop, b)]
    plan = []
    for pos in pos_list:
        if config.augment:
            flip = torch.rand(len(pos), generator=gen) < 0.5
            off = torch.randint(0, 2 * config.padding + 1, (len(pos), 2), generator=gen)
            plan.append(Batch(pos, flip, off))
        else:
            plan.append(Batch(pos))
    return plan


def subset_indices(subset, n_examples: int) -> torch.Tensor:
    """A model's training examples as int64 indices, from None, a bool mask or indices."""
    if subset is None:
        return torch.arange(n_examples)
    s = torch.as_tensor(np.asarray(subset))
    if s.dtype == torch.bool:
        if s.ndim != 1 or s.shape[0] != n_examples:
            raise MisValueError(
                f"subset mask must have shape ({n_examples},); got {tuple(s.shape)}"
            )
        s = torch.nonzero(s).flatten()
    elif s.ndim != 1 or s.dtype.is_floating_point:
        raise MisValueError(f"subset must be a 1-D bool mask or int indices; got {s.dtype}")
    s = s.long()
    if s.numel() == 0:
        raise MisValueError("subset is empty: a model needs at least one training example")
    if int(s.min()) < 0 or int(s.max()) >= n_examples:
        raise MisValueError(f"subset indices must lie in 0..{n_examples - 1}")
    return s


def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """Temporarily ``torch.use_deterministic_algorithms(enabled)`` (no-op when False)."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename."""
    from mis.store import atomic_write

    atomic_write(path, lambda f: torch.save(obj, f))


def _as_tensors(x, y):
    x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise MisValueError(
            f"y must be 1-D with one label per row of x ({x.shape[0]}); got {tuple(y.shape)}"
        )
    if not x.is_floating_point():
        raise MisValueError(
            f"x must be a float tensor (normalised inputs); got {x.dtype}. "
            "Use Dataset.tensor() for uint8 images."
        )
    return x, y


# ------------------------------------------------------------------------------------------
# Plain trainer
# ------------------------------------------------------------------------------------------
def _make_optimizer(model: nn.Module, config: TrainConfig):
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    return torch.optim.Adam(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def train_model(
    model_fn: Callable[[], nn.Module],
    x,
    y,
    config: TrainConfig,
    seed: int,
    *,
    subset=None,
    device=None,
    checkpoint=None,
    checkpoint_every: int = 1,
    callbacks: Sequence[Callable] = (),
    progress: bool | None = None,
) -> nn.Module:
    """Train one model with ``torch.optim`` (the reference loop; used for large models).

    Parameters
    ----------
    model_fn : callable
        Zero-argument factory; the model is built by :func:`init_model` from ``seed``.
    x : Tensor, shape (N, ...), float
        All inputs (already normalised). Kept on ``device`` for the whole run.
    y : Tensor or array, shape (N,), int
    config : TrainConfig
    seed : int
        The model's seed (initialisation, batch order, augmentation).
    subset : None, bool mask (N,) or int indices
        The model's training examples (default: all).
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    checkpoint : path, optional
        Resume from this file when it exists; rewrite it atomically every
        ``checkpoint_every`` epochs (and at the end). Holds model, optimizer and data
        generator state, so a resumed run gives the same weights as an uninterrupted one.
    callbacks : sequence of callable
        ``cb(epoch, ensemble_view)`` after every epoch (``epoch`` = epochs completed); the view
        is a one-model :class:`~mis.train.ensemble.Ensemble` (used by the trajectory recorder).
    progress : bool or None
        Progress bar over epochs; None = only when stderr is a terminal.

    Returns
    -------
    nn.Module
        The trained model (in eval mode, on ``device``).
    """
    from mis.train import progress_bar
    from mis.train.ensemble import Ensemble

    device = resolve_device(device)
    x, y = _as_tensors(x, y)
    sub = subset_indices(subset, x.shape[0])
    on_cuda = device.type == "cuda"
    channels_last = config.channels_last and on_cuda and x.ndim == 4
    x = x.to(device)
    y = y.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model = init_model(model_fn, seed).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(model, config)
    gen = data_generator(seed)
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("seed") != int(seed) or state.get("config") != config.as_dict():
            raise MisValueError(
                f"checkpoint {checkpoint} was written for another seed or config; "
                "delete it or choose another path"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start = int(state["epoch"])

    def save(epoch):
        atomic_torch_save(
            {
                "epoch": epoch,
                "seed": int(seed),
                "config": config.as_dict(),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
            },
            checkpoint,
        )

    sub_dev = sub.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and on_cuda)
    with deterministic_algorithms(config.deterministic):
        for epoch in progress_bar(range(start, config.epochs), desc="train", enabled=progress):
            model.train()
            lr = lr_at(config, epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            for batch in epoch_plan(len(sub), config, gen):
                idx = sub_dev[batch.pos.to(device)]
                xb, yb = x[idx], y[idx]
                if config.augment:
                    xb = _augment(xb, batch, config.padding)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast:
                    loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            done = epoch + 1
            if callbacks:
                model.eval()
                view = Ensemble.from_modules([model], seeds=[seed])
                for cb in callbacks:
                    cb(done, view)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == config.epochs):
                save(done)
    return model.eval()


def _augment(xb, batch: Batch, padding: int):
    from mis.train.data import random_flip_crop

    return random_flip_crop(xb, batch.flip, batch.offsets, padding)
