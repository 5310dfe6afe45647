"""The Aubinais quantizers on many models at once: every model's slice of a stacked tensor.

:func:`stacked_quantize` applies the quantizers of :func:`mis.quant.weight_quantizer`
(``sign``, ``ternary-33/50/90``, ``2bit`` … ``5bit``; Aubinais et al. 2025, Appendix D) to
every model's slice of a stacked (K, ...) tensor at once; :class:`StackedQuantizer` is one of
them as a callable for :class:`~mis.train.TrajectoryRecorder` (any architecture). Each slice
is quantized exactly as ``weight_quantizer(name)(w[k])`` (the same float operations, element
by element; tested bit for bit). The work is a serial numba kernel
(:func:`mis._kernels.stacked.quantize_rows`; the ternary quantizers find their zeros with one
O(n) selection per row instead of a sort).
"""

from __future__ import annotations

import numpy as np
import torch

from mis._kernels import stacked as _k
from mis.exceptions import MisValueError
from mis.quant.aubinais import AUBINAIS_QUANTIZERS

__all__ = ["STACKED_QUANTIZERS", "StackedQuantizer", "stacked_quantize"]

#: Names accepted by :func:`stacked_quantize`: the quantizers of Aubinais et al.
STACKED_QUANTIZERS = AUBINAIS_QUANTIZERS
_SPARSITY = {"ternary-33": 0.33, "ternary-50": 0.50, "ternary-90": 0.90}
_BITS = {"2bit": 2, "3bit": 3, "4bit": 4, "5bit": 5}


def _codes(names) -> tuple[np.ndarray, np.ndarray]:
    """Kernel codes (kind, parameter) of quantizer names."""
    bad = [q for q in names if q not in STACKED_QUANTIZERS]
    if bad:
        raise MisValueError(
            f"quantizers {bad} have no stacked implementation; available: "
            f"{list(STACKED_QUANTIZERS)}"
        )
    kinds = np.array(
        [_k.SIGN if q == "sign" else _k.TERNARY if q in _SPARSITY else _k.BBIT for q in names],
        dtype=np.int64,
    )
    params = np.array([_SPARSITY.get(q, _BITS.get(q, 0)) for q in names], dtype=np.float64)
    return kinds, params


def pow2max_alpha(x: torch.Tensor) -> torch.Tensor:
    """Per row of ``x`` (K, N): ``α = 2^round(log2 max|x|)``, 1 for an all-zero row.

    The torch operations of the reference (:func:`mis.quant.aubinais.bbit_alpha`), applied to
    the (K,) vector of row maxima (the same element-wise kernels, so the same values).
    """
    a = x.abs().amax(1)
    one = torch.ones_like(a)
    pos = a > 0
    return torch.where(pos, torch.exp2(torch.round(torch.log2(torch.where(pos, a, one)))), one)


def _check_alpha(alpha: torch.Tensor, kinds, params, name) -> None:
    """The reference switches to float64 when α/n underflows float32; that is not done here."""
    if not (kinds == 2).any():
        return
    n = float(1 << (int(params[kinds == 2].max()) - 1))
    if bool((alpha / n < torch.finfo(torch.float32).tiny).any()):
        raise MisValueError(
            f"{name} has a row with max|w| so small that the b-bit step underflows float32; "
            "use mis.quant.weight_quantizer for it"
        )


class RowQuantizer:
    """All quantizers on every row of a (K, N) float32 tensor."""

    def __init__(self, names):
        self.kinds, self.params = _codes(names)

    def __call__(self, w: torch.Tensor, name: str = "w") -> np.ndarray:
        x = w.detach().reshape(w.shape[0], -1).to("cpu", torch.float32).contiguous()
        alpha = pow2max_alpha(x)
        _check_alpha(alpha, self.kinds, self.params, name)
        xn = x.numpy()
        out = np.empty((xn.shape[0], len(self.kinds), xn.shape[1]), dtype=np.float32)
        _k.quantize_rows(xn, alpha.numpy(), self.kinds, self.params, out)
        return out


def stacked_quantize(names, w: torch.Tensor) -> torch.Tensor:
    """Quantize every model's slice ``w[k]`` of a stacked tensor on its own, with each quantizer.

    Parameters
    ----------
    names : str or sequence of str
        Quantizers from :data:`STACKED_QUANTIZERS`.
    w : Tensor, shape (K, ...), float32
        One parameter tensor of K models (e.g. ``fc.weight`` of shape (K, C, F)).

    Returns
    -------
    Tensor, shape (K, ...) for one name, (K, Q, ...) for a sequence of Q names; float32
        ``out[k]`` (``out[k, j]``) equals ``mis.quant.weight_quantizer(name)(w[k])`` bit for bit.
    """
    single = isinstance(names, str)
    names = [names] if single else list(names)
    if not isinstance(w, torch.Tensor) or w.dtype != torch.float32 or w.ndim < 2:
        raise MisValueError(
            "w must be a float32 tensor of shape (n_models, ...); got "
            f"{type(w).__name__} {getattr(w, 'dtype', '')} {tuple(getattr(w, 'shape', ()))}"
        )
    if not bool(torch.isfinite(w).all()):
        raise MisValueError("w must be finite")
    out = torch.from_numpy(RowQuantizer(names)(w))  # (K, Q, N)
    shape = (w.shape[0], len(names), *w.shape[1:])
    out = out.reshape(shape)
    return out[:, 0] if single else out


class StackedQuantizer:
    """One quantizer as a stacked callable for :class:`~mis.train.TrajectoryRecorder`:
    ``StackedQuantizer("ternary-50")(w)`` equals ``stacked_quantize("ternary-50", w)`` on
    ``w`` (K, ...), for any model architecture."""

    stacked = True

    def __init__(self, name: str):
        self.name = name
        self._rows = RowQuantizer([name])  # validates the name

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        if not isinstance(w, torch.Tensor) or w.dtype != torch.float32 or w.ndim < 2:
            raise MisValueError(
                "w must be a float32 tensor of shape (n_models, ...); got "
                f"{type(w).__name__} {getattr(w, 'dtype', '')} {tuple(getattr(w, 'shape', ()))}"
            )
        return torch.from_numpy(self._rows(w, self.name)).reshape(w.shape).to(w.device)
