"""The plain (one model) trainer: ``torch.optim`` on one ``nn.Module``.

It reads the same :class:`~mis.train.config.TrainConfig` and draws its randomness through the
same helpers (:mod:`mis.train.config`) as the ensemble trainer
(:func:`mis.train.ensemble.train_ensemble`), so a model trained alone and the same model
trained inside an ensemble (same seed, same subset) end with the same weights up to float
rounding.

The plain trainer is meant for the large models (Zhang et al. 2025, §IV-A: SGD momentum 0.9,
weight decay 5e-4, lr 0.1 with cosine annealing, 100 epochs, batch 128, flip + crop;
:meth:`TrainConfig.zhang2025`). On CUDA it uses bf16 autocast and channels-last memory, and
it can checkpoint every epoch (atomic ``torch.save``; resumed with
``torch.load(weights_only=True)``) so an interrupted run continues to the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.train.config import (
    Batch,
    TrainConfig,
    as_tensors,
    atomic_torch_save,
    data_generator,
    deterministic_algorithms,
    epoch_plan,
    init_model,
    lr_at,
    resolve_device,
    subset_indices,
)
from mis.train.data import random_flip_crop
from mis.train.ensemble import Ensemble

__all__ = ["train_model"]


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
    device = resolve_device(device)
    x, y = as_tensors(x, y)
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
            for batch in _on_device(epoch_plan(len(sub), config, gen), device):
                idx = sub_dev[batch.pos]
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
    return random_flip_crop(xb, batch.flip, batch.offsets, padding)


def _on_device(plan: list[Batch], device: torch.device) -> list[Batch]:
    """The epoch's batches on ``device``, copied once per epoch rather than once per step.

    On CUDA a blocking host-to-device copy waits for every kernel queued before it, so a
    copy per step (positions, flips, offsets) would stop the host from running ahead of the
    device. The batches are the same tensors, only moved.
    """
    if not plan:
        return plan
    sizes = [len(b.pos) for b in plan]
    pos = torch.cat([b.pos for b in plan]).to(device).split(sizes)
    if plan[0].flip is None:
        return [Batch(p) for p in pos]
    flip = torch.cat([b.flip for b in plan]).to(device).split(sizes)
    off = torch.cat([b.offsets for b in plan]).to(device).split(sizes)
    return [Batch(*t) for t in zip(pos, flip, off, strict=True)]
