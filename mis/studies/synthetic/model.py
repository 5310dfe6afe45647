"""The single layer on ``[x, x²]`` of the synthetic study as flat parameter vectors: logits,
per-sample losses, predictions and quantization of many runs' parameters at once (numpy in,
numpy out).

Flat layout: ``[bias (C), weight (C·F) row-major]``, float32, with C = 1 output for the
binary head (one logit, binary cross-entropy with logits; Aubinais et al. 2025, §4.2) or
C = 2 for the two-logit head (softmax cross-entropy).
"""

from __future__ import annotations

import numpy as np
import torch

from mis.quant import weight_quantizer
from mis.studies._common import ORIGINAL
from mis.studies.synthetic.streaming import quadratic_features

__all__ = ["flat_params", "logits", "losses", "predictions", "quantize_flat"]


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


def logits(flat: np.ndarray, x: np.ndarray, n_outputs: int) -> np.ndarray:
    """Logits of flat parameters (M, C + C·F) on raw inputs x (n, d): (M, n, C) float64."""
    p = np.asarray(flat, dtype=np.float64)
    b, w = p[:, :n_outputs], p[:, n_outputs:].reshape(p.shape[0], n_outputs, -1)
    phi = quadratic_features(x)  # (n, F)
    return np.einsum("mcf,nf->mnc", w, phi) + b[:, None, :]


def losses(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample loss of logits z (..., n, C) with labels (n,) or (..., n), float64.

    C = 1: binary cross-entropy with logits; C ≥ 2: softmax cross-entropy.
    """
    z = np.asarray(z, dtype=np.float64)
    yy = np.broadcast_to(np.asarray(y), z.shape[:-1])
    if z.shape[-1] == 1:
        a = np.where(yy == 1, -z[..., 0], z[..., 0])  # softplus(z) for y = 0, softplus(-z) for 1
        return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))
    t = torch.from_numpy(np.ascontiguousarray(z))
    lse = torch.logsumexp(t, dim=-1).numpy()
    return lse - np.take_along_axis(z, yy[..., None].astype(np.int64), axis=-1)[..., 0]


def predictions(z: np.ndarray) -> np.ndarray:
    """Predicted labels of logits z (..., C): z > 0 for one logit, argmax otherwise."""
    z = np.asarray(z)
    return (z[..., 0] > 0).astype(np.int64) if z.shape[-1] == 1 else z.argmax(-1)


def quantize_flat(name: str, flat: np.ndarray, n_outputs: int, params: str = "all") -> np.ndarray:
    """Quantize flat (R, C + C·F) parameters tensor by tensor with ``weight_quantizer``
    (``"original"``: unchanged; ``params="weights"``: the bias is kept)."""
    if name == ORIGINAL:
        return flat
    q = weight_quantizer(name)
    out = np.array(flat, dtype=np.float32, copy=True)
    c = n_outputs
    for r in range(flat.shape[0]):
        t = torch.from_numpy(np.ascontiguousarray(flat[r], dtype=np.float32))
        if params == "all":
            out[r, :c] = q(t[:c]).numpy()
        out[r, c:] = q(t[c:].reshape(c, -1)).numpy().reshape(-1)
    return out
