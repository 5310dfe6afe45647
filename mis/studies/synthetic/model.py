"""The single layer on ``[x, x²]`` of the synthetic study as flat parameter vectors: logits,
per-sample losses and quantization of many runs' parameters at once (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mis.quant import weight_quantizer
from mis.studies._common import ORIGINAL
from mis.train.models import QuadraticLinear

__all__ = ["cross_entropy", "flat_params", "logits", "quantize_flat"]


def flat_params(weight, bias) -> np.ndarray:
    """(K, C, F), (K, C) → (K, C + C·F) float32, parameters in name order (bias, weight)."""
    k = weight.shape[0]
    return np.concatenate(
        [
            np.asarray(bias, dtype=np.float32).reshape(k, -1),
            np.asarray(weight, dtype=np.float32).reshape(k, -1),
        ],
        axis=1,
    )


def logits(flat: np.ndarray, x: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Logits of flat parameters (M, C + C·F) on raw inputs x (n, d): (M, n, C) float32."""
    t = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
    b, w = t[:, :n_classes], t[:, n_classes:].reshape(t.shape[0], n_classes, -1)
    phi = QuadraticLinear.features(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return (torch.matmul(w, phi.t()) + b[:, :, None]).transpose(1, 2).numpy()


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy of logits (..., n, C) with labels (n,) or (..., n), float32."""
    z = torch.from_numpy(np.ascontiguousarray(logits))
    yy = torch.from_numpy(np.broadcast_to(y, z.shape[:-1]).astype(np.int64))
    return (
        F.cross_entropy(z.reshape(-1, z.shape[-1]), yy.reshape(-1), reduction="none")
        .reshape(z.shape[:-1])
        .numpy()
    )


def quantize_flat(name: str, flat: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Quantize flat (R, C + C·F) parameters tensor by tensor with ``weight_quantizer``
    (``"original"``: unchanged)."""
    if name == ORIGINAL:
        return flat
    q = weight_quantizer(name)
    out = np.empty_like(flat)
    for r in range(flat.shape[0]):
        t = torch.from_numpy(np.ascontiguousarray(flat[r]))
        out[r, :n_classes] = q(t[:n_classes]).numpy()
        out[r, n_classes:] = q(t[n_classes:].reshape(n_classes, -1)).numpy().reshape(-1)
    return out
