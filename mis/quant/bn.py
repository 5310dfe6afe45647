"""Batch-norm tuning after weight quantization (Frantar & Alistarh 2022; Zhang et al. §IV-A).

Quantizing the weights shifts the mean and variance of every pre-activation, so the
BatchNorm running statistics recorded on the full-precision network no longer match.
BN tuning resets them and re-estimates them on calibration data — training members
only (:class:`~mis.quant.calibration.Calibration`) — by running ``n_batches`` forward
passes with the BatchNorm layers in train mode. Nothing is learned: weights, biases and
the BN affine parameters stay fixed (``torch.no_grad``, no optimizer).

As in the OBC reference (``postproc.py --bnt``): ``reset_running_stats()``, momentum 0.1,
100 batches, cycling through the calibration set in a fixed order (``momentum=None``
gives the exact cumulative average instead). One deliberate difference: only the
BatchNorm modules are put in train mode; every other module keeps its mode, so dropout
(if any) stays off while the statistics are collected. The momentum and the train/eval
flags of all modules are restored afterwards.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mis._progress import progress_bar
from mis._validation import positive_int, real
from mis.exceptions import MisValueError
from mis.quant.calibration import Calibration
from mis.quant.capture import model_device

DEFAULT_BN_BATCHES = 100
DEFAULT_BN_BATCH_SIZE = 64
DEFAULT_BN_MOMENTUM = 0.1


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The BatchNorm modules of ``model`` that track running statistics, in order."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    ]


def bn_tune(
    model: nn.Module,
    calib: Calibration,
    *,
    n_batches: int = DEFAULT_BN_BATCHES,
    batch_size: int = DEFAULT_BN_BATCH_SIZE,
    momentum: float | None = DEFAULT_BN_MOMENTUM,
    progress: bool | None = None,
) -> nn.Module:
    """Reset and re-estimate the BatchNorm running statistics of ``model`` in place.

    Parameters
    ----------
    model : nn.Module
        Typically a quantized copy; runs on its own device.
    calib : Calibration
        Calibration examples (training members only); ``calib.x`` is fed to the model.
    n_batches : int, default 100
        Forward passes; the calibration set is cycled in a fixed order
        (batch ``i`` = rows ``[i·batch_size, (i+1)·batch_size)`` modulo the set).
    batch_size : int, default 64
        Must be at least 2 (train-mode BatchNorm needs more than one value per channel).
    momentum : float in (0, 1] or None, default 0.1
        Running-average momentum during tuning; None = cumulative moving average.
    progress : bool or None
        Progress bar (None: when stderr is a terminal).

    Returns
    -------
    nn.Module
        ``model`` itself. A model without BatchNorm layers that track running statistics
        is returned unchanged with a ``UserWarning``.
    """
    if not isinstance(model, nn.Module):
        raise MisValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(calib, Calibration):
        raise MisValueError(
            "calib must be a mis.quant.Calibration (members only, see select_calibration); "
            f"got {type(calib).__name__}"
        )
    n_batches = positive_int(n_batches, "n_batches")
    batch_size = positive_int(batch_size, "batch_size")
    if batch_size < 2:
        raise MisValueError(f"batch_size must be >= 2 for train-mode BatchNorm; got {batch_size}")
    if momentum is not None:
        real(momentum, "momentum", 0.0, 1.0, open_lo=True)
    bns = batchnorm_layers(model)
    if not bns:
        warnings.warn(
            "bn_tune: the model has no BatchNorm layer with running statistics; nothing to tune",
            UserWarning,
            stacklevel=2,
        )
        return model
    dev = model_device(model)
    x = calib.x
    n = x.shape[0]
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for _, m in bns}
    try:
        model.eval()
        for _, m in bns:
            m.reset_running_stats()
            m.momentum = momentum
            m.train()
        with torch.no_grad():
            for i in progress_bar(range(n_batches), desc="bn tuning", enabled=progress):
                pos = torch.arange(i * batch_size, (i + 1) * batch_size) % n
                model(x[pos].to(dev))
    finally:
        for m, flag in modes.items():
            m.train(flag)
        for m, mom in momenta.items():
            m.momentum = mom
    return model
