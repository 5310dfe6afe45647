"""Per-sample training losses shared by the ensemble trainer and the trajectory recorder.

Two losses, named by a string so that they travel through configurations and job
arguments:

``"cross_entropy"`` (classification)
    ``ℓ(z, y) = −log softmax(z)_y`` for logits ``z`` of shape (..., C) and integer labels.
``"mse"`` (regression)
    ``ℓ(z, y) = (z − y)²`` for one output per example, ``z`` of shape (..., 1), and float
    targets. The per-sample squared error is the loss whose distribution r_Q compares
    (Aubinais et al., 2025, §5.2: regression tasks of TDC).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mis._validation import string
from mis.exceptions import MisValueError

__all__ = ["LOSSES", "as_targets", "check_loss", "per_sample_loss"]

#: Names accepted by ``loss=`` arguments.
LOSSES = ("cross_entropy", "mse")


def check_loss(loss) -> str:
    """``loss`` if it names one of :data:`LOSSES`, else a ``ValueError``."""
    return string(loss, "loss", LOSSES)


def as_targets(y, loss: str, name: str = "y") -> torch.Tensor:
    """Targets as the loss expects them: int64 class labels, or float32 regression values.

    Raises ``ValueError`` when regression targets are not finite.
    """
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if check_loss(loss) == "cross_entropy":
        return t.long()
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise MisValueError(f"{name} must be finite regression targets for loss='mse'")
    return t


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Loss of every example.

    Parameters
    ----------
    out : Tensor, shape (..., B, C)
        Model outputs (logits; C = 1 for ``"mse"``).
    y : Tensor, shape (..., B)
        Targets from :func:`as_targets`, broadcastable to ``out.shape[:-1]``.
    loss : {"cross_entropy", "mse"}

    Returns
    -------
    Tensor, shape out.shape[:-1], float32
    """
    yy = y.expand(out.shape[:-1])
    if loss == "cross_entropy":
        ce = F.cross_entropy(out.float().flatten(0, -2), yy.flatten(), reduction="none")
        return ce.view(out.shape[:-1])
    if out.shape[-1] != 1:
        raise MisValueError(
            f"loss='mse' needs one output per example; the model gives {out.shape[-1]}"
        )
    return (out.float()[..., 0] - yy).square()
