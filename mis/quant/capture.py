"""Layer inputs from calibration data: column matrices and the Hessian ``H = 2XXᵀ/N``.

OBC (Frantar & Alistarh 2022, Eq. 1–2) and GPTQ (Frantar et al. 2023, §3) quantize a
layer ``W`` (shape ``(C, K)``) to minimise the layer-output error
``‖WX − ŴX‖²`` over calibration inputs ``X`` (shape ``(K, N)``, one column per
input vector). The loss is quadratic in each row of ``W`` with Hessian
``H = 2XXᵀ/N`` (the same for every row), so all the solvers need is ``H``.

Input vectors (columns of ``X``)
--------------------------------
* ``nn.Linear``: every input row ``x ∈ R^K`` (leading dimensions flattened, so a
  ``(B, T, K)`` input gives ``B·T`` columns).
* ``nn.Conv2d``: every receptive field, unfolded as :class:`torch.nn.Unfold` does —
  feature index ``c·kh·kw + i·kw + j`` — which is the column order of
  ``weight.reshape(C_out, -1)``; so ``W_2d @ X`` is the convolution without bias. A
  batch of ``B`` images with ``L`` output positions gives ``B·L`` columns. Zero padding
  (int, tuple, ``"valid"`` or ``"same"``) is applied explicitly; other padding modes and
  grouped convolutions raise :class:`~mis.exceptions.MisValueError`.

``N`` is the total number of columns. (The reference code divides by the number of
images instead; a constant factor in ``H`` changes neither OBC nor GPTQ, whose damping
is relative.) ``XXᵀ`` is accumulated in float64 batch by batch, so the inputs are
never stored; ``H`` is formed at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mis._validation import integer
from mis.exceptions import MisValueError
from mis.quant.calibration import Calibration

DEFAULT_BATCH_SIZE = 128


def _conv_padding(module: nn.Conv2d):
    """Explicit (left, right, top, bottom) zero padding of a conv layer."""
    kh, kw = module.kernel_size
    dh, dw = module.dilation
    p = module.padding
    if isinstance(p, str):
        if p == "valid":
            return (0, 0, 0, 0)
        # "same" (stride 1): total dilation·(k - 1), the extra pixel on the right/bottom
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = p
    return (pw, pw, ph, ph)


def check_layer(module: nn.Module) -> None:
    """Raise :class:`MisValueError` unless ``module`` is a layer whose inputs we can unfold."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise MisValueError(
                f"grouped convolutions (groups={module.groups}) are not supported by OBC/GPTQ "
                "input capture; keep the layer in float with overrides={name: 'float'}"
            )
        if module.padding_mode != "zeros":
            raise MisValueError(
                f"conv padding_mode must be 'zeros' for input capture; got {module.padding_mode!r}"
            )
        return
    if isinstance(module, nn.Linear):
        return
    raise MisValueError(
        f"input capture supports nn.Linear and nn.Conv2d; got {type(module).__name__}"
    )


def input_columns(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """The input vectors of one forward call of ``module``, as columns.

    Parameters
    ----------
    module : nn.Linear or nn.Conv2d
    inp : torch.Tensor
        The layer's input: ``(..., K)`` for a linear layer, ``(B, C_in, H, W)`` (or
        ``(C_in, H, W)``) for a convolution.

    Returns
    -------
    torch.Tensor, shape (K, m)
        ``K = weight[0].numel()``; ``weight.reshape(C, K) @ columns`` is the layer output
        without bias (for a conv: at each of the ``m = B·L`` output positions, batch-major).
    """
    check_layer(module)
    if isinstance(module, nn.Linear):
        return inp.reshape(-1, inp.shape[-1]).t()
    if inp.ndim == 3:
        inp = inp.unsqueeze(0)
    pad = _conv_padding(module)
    if any(pad):
        inp = F.pad(inp, pad)
    cols = F.unfold(inp, module.kernel_size, dilation=module.dilation, stride=module.stride)
    # (B, K, L) -> (K, B·L)
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)


class HessianAccumulator:
    """Running ``S = Σ x xᵀ`` (float64) over a layer's input columns; ``H = 2S/N``.

    Parameters
    ----------
    module : nn.Linear or nn.Conv2d
    device : torch.device, optional
        Where ``S`` lives (default: the device of the layer's weight).
    """

    def __init__(self, module: nn.Module, device=None):
        check_layer(module)
        self.module = module
        k = module.weight[0].numel()
        dev = module.weight.device if device is None else torch.device(device)
        self.sum = torch.zeros((k, k), dtype=torch.float64, device=dev)
        self.n_columns = 0

    @property
    def n_features(self) -> int:
        """``K``, the number of input features (columns of the flattened weight)."""
        return self.sum.shape[0]

    def add(self, inp: torch.Tensor) -> None:
        """Add the columns of one forward call (the layer's input tensor)."""
        x = input_columns(self.module, inp.detach()).to(self.sum.device, torch.float64)
        if x.shape[0] != self.n_features:
            raise MisValueError(
                f"the layer input has {x.shape[0]} features per column; the weight expects "
                f"{self.n_features}"
            )
        self.sum.addmm_(x, x.t())
        self.n_columns += x.shape[1]

    def hessian(self) -> torch.Tensor:
        """``H = 2XXᵀ/N``, shape (K, K), float64 (a fresh tensor)."""
        if self.n_columns == 0:
            raise MisValueError(
                "the layer received no input during calibration: is it used in forward()?"
            )
        return self.sum * (2.0 / self.n_columns)

    def hook(self, module, args, output) -> None:
        """``register_forward_hook`` callback."""
        self.add(args[0])


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def run_calibration(
    model: nn.Module, calib: Calibration, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> None:
    """Forward every calibration input through ``model`` once (eval mode, no grad).

    The inputs go to the model's device; the model's train/eval flags are restored after.
    """
    if not isinstance(calib, Calibration):
        raise MisValueError(
            "calib must be a mis.quant.Calibration (members only, see select_calibration); "
            f"got {type(calib).__name__}"
        )
    batch_size = integer(batch_size, "batch_size", 1)
    dev = model_device(model)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for xb, *_ in calib.batches(batch_size, device=dev):
                model(xb)
    finally:
        for m, flag in modes.items():
            m.train(flag)


def capture_hessians(
    model: nn.Module,
    layers: Sequence[nn.Module],
    calib: Calibration,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[torch.Tensor]:
    """``H = 2XXᵀ/N`` of each layer in ``layers`` from one pass of the calibration data.

    Parameters
    ----------
    model : nn.Module
        The network the layers belong to (run in eval mode on its own device).
    layers : sequence of nn.Linear / nn.Conv2d
        Modules of ``model``; inputs are captured with forward hooks (every call counts).
    calib : Calibration
        Calibration examples (training members only).
    batch_size : int
        Forward batch size.

    Returns
    -------
    list of torch.Tensor, each (K_l, K_l) float64
        On the layer's device, in the order of ``layers``.
    """
    accs = [HessianAccumulator(m) for m in layers]
    handles = [m.register_forward_hook(a.hook) for m, a in zip(layers, accs, strict=True)]
    try:
        run_calibration(model, calib, batch_size=batch_size)
    finally:
        for h in handles:
            h.remove()
    return [a.hessian() for a in accs]


def iter_hessians(
    model: nn.Module,
    names: Sequence[str],
    calib: Calibration,
    *,
    sequential: bool,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_bytes: int = 1 << 30,
):
    """Yield ``(name, H)`` for the named layers of ``model``, in order, for a layer-wise solver.

    ``sequential=False`` (OBC reference): every ``H`` comes from the full-precision
    network — a frozen copy of ``model`` taken before the first yield — with as many
    layers per calibration pass as fit in ``max_bytes`` of float64 Hessians.
    ``sequential=True`` (GPTQ reference): ``H`` of each layer is captured from ``model``
    itself right before it is yielded, so the layers quantized by the caller in the
    meantime feed their quantized outputs forward (one calibration pass per layer).
    """
    modules = dict(model.named_modules())
    if sequential:
        for name in names:
            yield name, capture_hessians(model, [modules[name]], calib, batch_size=batch_size)[0]
        return
    frozen = copy.deepcopy(model)
    fmods = dict(frozen.named_modules())
    group: list[str] = []
    used = 0
    groups = []
    for name in names:
        k = fmods[name].weight[0].numel()
        size = 8 * k * k
        if group and used + size > max_bytes:
            groups.append(group)
            group, used = [], 0
        group.append(name)
        used += size
    if group:
        groups.append(group)
    for g in groups:
        hs = capture_hessians(frozen, [fmods[n] for n in g], calib, batch_size=batch_size)
        yield from zip(g, hs, strict=True)
        del hs
