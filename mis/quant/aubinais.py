"""The weight quantizers of Aubinais et al. 2025 (Appendix D, Table 1): Sign, 1.58b x %, b bits.

Each acts on **one layer's weight tensor** at a time (the quantile of the ternary
quantizers and the ``max|θ|`` of the b-bit quantizer are taken over the whole layer).
Table 1 of the paper has typos; the text of §5.1.1 rules, and where the table is
ambiguous the resolution is stated below.

* **Sign**: ``Q(θ) = sign(θ)`` with ``sign(0) = +1`` (values ±1).
* **1.58b x %**: the ``k = ⌊x·N/100 + 1/2⌋`` entries of smallest ``|θ|`` among the
  layer's ``N`` weights become 0 and the rest ``sign(θ)`` (Table 1 prints the
  inequality the wrong way round; the text says the smallest go to zero). Ties in
  ``|θ|`` are broken by flat index (earlier first), so exactly ``k`` zeros appear.
* **b bits** (b = 2, 3, 4, 5), with ``n = 2^(b-1)`` and ``α = 2^round(log2 max|θ|)``::

      Q(θ) = sign(θ) · (α/n) · k(θ),   k(θ) = min{k ∈ {1, …, n} : k·α/n >= |θ|}  (n if none)

  i.e. ``k = clip(⌈n|θ|/α⌉, 1, n)``: ``2n = 2^b`` levels ``±α/n, ±2α/n, …, ±α``.
  Table 1 writes ``int(1 + clip(n θ/α, 0, n))``; read with ``|θ|`` (the sign is
  factored out), ``int(1 + u) = ⌈u⌉`` for every non-integer ``u``, and the upper
  clip ``n`` (which would allow ``n + 1`` magnitudes, ``2^b + 2`` levels) is taken as
  the typo for a grid of ``2^b`` levels. Using the ceiling rather than ``int(1 + u)``
  only changes weights exactly on a grid point (measure zero) and makes ``Q``
  idempotent. ``round`` is half-to-even.

Options that are **not** in the paper (defaults reproduce it):

* ``scale="mean"`` for Sign and 1.58b: multiply channel ``c`` (axis 0) by
  ``α_c = mean |θ|`` over the channel's non-zero outputs (for Sign: ``mean |W_c|``, the
  1-bit quantizer of Zhang et al.; the least-squares scale for a fixed sign pattern).
* ``alpha`` for b bits: ``"pow2max"`` (paper), ``"max"`` (``α = max|θ|``), ``"mean"``
  (``α = mean|θ|``; not idempotent) or ``"none"`` (``α = 1``, the fixed grid of Fig. 5).

Zeros of the output are ``+0.0``. The output has the shape and dtype of the input
(a numpy array in gives a tensor out).
"""

from __future__ import annotations

import torch

from mis._validation import integer, real, string
from mis.quant.grids import as_channels, work_tensor

__all__ = [
    "AUBINAIS_QUANTIZERS",
    "BBIT_ALPHAS",
    "SIGN_SCALES",
    "bbit_alpha",
    "bbit_quantize",
    "n_zeros",
    "quantizer_label",
    "sign_quantize",
    "ternary_quantize",
]

SIGN_SCALES = ("none", "mean")
BBIT_ALPHAS = ("pow2max", "max", "mean", "none")

#: The quantizers of Aubinais et al. (Appendix D, Table 1), as named by
#: :func:`mis.quant.weight_quantizer`, in the paper's order.
AUBINAIS_QUANTIZERS = (
    "sign",
    "ternary-33",
    "ternary-50",
    "ternary-90",
    "2bit",
    "3bit",
    "4bit",
    "5bit",
)

# Display names (Table 1 / Fig. 2 of the paper); "original" is the unquantized model.
_LABELS = {
    "sign": "Sign",
    "ternary-33": "1.58b 33%",
    "ternary-50": "1.58b 50%",
    "ternary-90": "1.58b 90%",
    "2bit": "2 bits",
    "3bit": "3 bits",
    "4bit": "4 bits",
    "5bit": "5 bits",
    "original": "original",
}


def quantizer_label(name: str) -> str:
    """Display name of a weight quantizer (``"ternary-33"`` → ``"1.58b 33%"``).

    The quantizers of :data:`AUBINAIS_QUANTIZERS` and ``"original"`` (the unquantized
    model) have one; any other name is returned unchanged.
    """
    return _LABELS.get(name, name)


def _finish(out: torch.Tensor, w_in) -> torch.Tensor:
    """``+0.0`` for zeros, and the input's floating dtype (float32 for integer input)."""
    t = w_in if isinstance(w_in, torch.Tensor) else torch.as_tensor(w_in)
    out = out + 0.0  # -0.0 -> +0.0
    return out.to(t.dtype) if t.is_floating_point() else out


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _channel_scale(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per-channel mean |x| over entries with a non-zero code (float64) like like ``x``."""
    xc, cc = as_channels(x).double(), as_channels(codes)
    nz = cc != 0
    num = (xc.abs() * nz).sum(1)
    den = nz.sum(1).clamp(min=1)
    alpha = (num / den).to(x.dtype)
    return alpha.reshape((-1,) + (1,) * (x.ndim - 1)) if x.ndim >= 2 else alpha.reshape(())


def sign_quantize(w, *, scale: str = "none") -> torch.Tensor:
    """Sign quantizer: ``sign(w)`` (``sign(0) = +1``), optionally times ``α_c = mean|W_c|``.

    Parameters
    ----------
    w : torch.Tensor or array, shape (C, ...)
        One layer's weight.
    scale : {"none", "mean"}
        ``"none"``: values ±1 (Aubinais et al., Table 1). ``"mean"``: ``α_c·sign(W_c)``
        per output channel (axis 0), the 1-bit quantizer of Zhang et al.
    """
    string(scale, "scale", SIGN_SCALES)
    x = work_tensor(w)
    codes = _sign(x)
    out = codes * _channel_scale(x, codes) if scale == "mean" else codes
    return _finish(out, w)


def _smallest_mask(a: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` smallest entries of flat ``a`` (ties: lower index first)."""
    n = a.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=a.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=a.device)
    t = torch.kthvalue(a, k).values
    below = a < t
    tie = a == t
    need = k - int(below.sum())
    return below | (tie & (torch.cumsum(tie, 0) <= need))


def n_zeros(n: int, sparsity: float) -> int:
    """Number of weights set to zero by a 1.58b quantizer: ``⌊sparsity·n + 1/2⌋``."""
    return int(sparsity * n + 0.5)


def ternary_quantize(w, sparsity: float, *, scale: str = "none") -> torch.Tensor:
    """1.58b x % quantizer: the ``x %`` smallest ``|w|`` of the layer → 0, the rest → ``sign(w)``.

    Parameters
    ----------
    w : torch.Tensor or array
        One layer's weight.
    sparsity : float
        Fraction ``x/100`` in [0, 1] (0.33, 0.5 and 0.9 in the paper); exactly
        :func:`n_zeros` ``(w.numel(), sparsity)`` outputs are 0.
    scale : {"none", "mean"}
        ``"mean"`` multiplies channel ``c`` by the mean ``|w|`` of its non-zero outputs.
    """
    real(sparsity, "sparsity", 0.0, 1.0)
    string(scale, "scale", SIGN_SCALES)
    x = work_tensor(w)
    flat = x.reshape(-1)
    zero = _smallest_mask(flat.abs(), n_zeros(flat.numel(), float(sparsity)))
    codes = torch.where(zero, torch.zeros_like(flat), _sign(flat)).reshape(x.shape)
    out = codes * _channel_scale(x, codes) if scale == "mean" else codes
    return _finish(out, w)


def bbit_alpha(x: torch.Tensor, alpha: str = "pow2max") -> torch.Tensor:
    """The scale ``α`` of the b-bit quantizer (0-d tensor), see the module docstring."""
    string(alpha, "alpha", BBIT_ALPHAS)
    if alpha == "none":
        return torch.ones((), dtype=x.dtype, device=x.device)
    a = x.abs().max() if alpha in ("pow2max", "max") else x.abs().double().mean().to(x.dtype)
    if a <= 0:  # an all-zero layer: any α gives the same levels' signs; use 1
        return torch.ones((), dtype=x.dtype, device=x.device)
    if alpha == "pow2max":
        return torch.exp2(torch.round(torch.log2(a)))
    return a


def bbit_quantize(w, bits: int, *, alpha: str = "pow2max") -> torch.Tensor:
    """b-bit quantizer of Aubinais et al. (Table 1): ``sign(θ)·(α/n)·clip(⌈n|θ|/α⌉, 1, n)``.

    Parameters
    ----------
    w : torch.Tensor or array
        One layer's weight.
    bits : int
        ``b >= 2``; ``n = 2^(b-1)`` magnitudes on each side, ``2^b`` levels in all.
    alpha : {"pow2max", "max", "mean", "none"}
        ``α = 2^round(log2 max|θ|)`` (paper), ``max|θ|``, ``mean|θ|`` or 1.
    """
    integer(bits, "bits", 2, 16)
    x = work_tensor(w)
    n = 1 << (int(bits) - 1)
    a = bbit_alpha(x, alpha)
    if a / n < torch.finfo(x.dtype).tiny:  # a (sub)normal-tiny layer: α/n would underflow
        x = x.double()
        a = bbit_alpha(x, alpha)
    step = a / n  # a power of two for "pow2max"/"none", so k·step is exact
    mag = x.abs()
    k = torch.clamp(torch.ceil(mag / step), 1, n)
    # Make k exactly the smallest k with k·step >= |θ| in float arithmetic (idempotence).
    k = torch.where((k > 1) & ((k - 1) * step >= mag), k - 1, k)
    k = torch.where((k < n) & (k * step < mag), k + 1, k)
    return _finish(_sign(x) * (k * step), w)
