"""Training configuration and what both trainers derive from it (seeds, batch plans, devices).

:class:`TrainConfig` describes a training run; the plain trainer
(:func:`mis.train.trainer.train_model`) and the ensemble trainer
(:func:`mis.train.ensemble.train_ensemble`) read the same config and draw their randomness
through the helpers below, identically, so a model trained alone and the same model trained
inside an ensemble (same seed, same subset) end with the same weights up to float rounding.

Randomness for one model comes from its integer ``seed`` only: it is split
(:func:`split_seed`) into an *init* seed (the global torch RNG is forked and seeded while the
model is built, :func:`init_model`) and a *data* seed that drives a CPU ``torch.Generator``
(:func:`data_generator`) for the batch order and the augmentation draws (:func:`epoch_plan`).
Everything is deterministic on the CPU for a given seed; on CUDA,
``TrainConfig(deterministic=True)`` asks for deterministic kernels
(:func:`deterministic_algorithms`), which needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the
environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mis._validation import boolean, integer, real, sequence, string
from mis.exceptions import MisValueError
from mis.store import atomic_write

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Batch",
    "TrainConfig",
    "as_tensors",
    "atomic_torch_save",
    "data_generator",
    "deterministic_algorithms",
    "epoch_plan",
    "init_model",
    "lr_at",
    "resolve_device",
    "split_seed",
    "subset_indices",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")


def _beta(value, name: str) -> float:
    return real(value, name, 0.0, 1.0, open_hi=True)


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
        integer(self.epochs, "epochs", 1)
        real(self.lr, "lr", 0.0, open_lo=True)
        string(self.optimizer, "optimizer", OPTIMIZERS)
        string(self.schedule, "schedule", SCHEDULES)
        if self.batch_size is not None:
            integer(self.batch_size, "batch_size", 1)
        real(self.momentum, "momentum", 0.0, 1.0, open_hi=True)
        real(self.weight_decay, "weight_decay", 0.0)
        real(self.eps, "eps", 0.0, open_lo=True)
        integer(self.padding, "padding", 0)
        for name in ("nesterov", "drop_last", "augment", "amp", "channels_last", "deterministic"):
            boolean(getattr(self, name), name)
        betas = sequence(self.betas, "betas", _beta, min_len=2, unique=False)
        if len(betas) != 2:
            raise MisValueError(f"betas must hold two numbers; got {list(self.betas)!r}")
        object.__setattr__(self, "betas", betas)

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
# seeds and initialisation
# ------------------------------------------------------------------------------------------
def split_seed(seed: int) -> tuple[int, int]:
    """Derive (init seed, data seed) from one integer seed (``numpy.random.SeedSequence``)."""
    seed = integer(seed, "seed", 0)
    a, b = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
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


# ------------------------------------------------------------------------------------------
# learning rate and batch plan
# ------------------------------------------------------------------------------------------
def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate during epoch ``epoch`` (0-based)."""
    if config.schedule == "cosine":
        return config.lr * (1 + math.cos(math.pi * epoch / config.epochs)) / 2
    return config.lr


@dataclasses.dataclass
class Batch:
    """Positions (into the model's own subset) of one step, and its augmentation draws.

    Attributes
    ----------
    pos : Tensor of int64, shape (b,)
    flip : Tensor of bool, shape (b,), or None
    offsets : Tensor of int64, shape (b, 2), or None
    """

    pos: torch.Tensor
    flip: torch.Tensor | None = None
    offsets: torch.Tensor | None = None


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


# ------------------------------------------------------------------------------------------
# inputs, devices, determinism, checkpoints
# ------------------------------------------------------------------------------------------
def subset_indices(subset, n_examples: int) -> torch.Tensor:
    """A model's training examples as int64 indices, from None, a bool mask or indices.

    Returns
    -------
    Tensor of int64, shape (n_subset,)
    """
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


def as_tensors(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels as tensors: ``x`` (N, ...) float as given, ``y`` (N,) int64.

    Raises :class:`MisValueError` unless ``y`` is 1-D with one entry per row of ``x`` and
    ``x`` is a float tensor (normalised inputs, not uint8 images).
    """
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


def resolve_device(device) -> torch.device:
    """``device`` as a ``torch.device``; None = CUDA when available, else the CPU."""
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
    atomic_write(path, lambda f: torch.save(obj, f))
