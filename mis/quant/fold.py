"""BatchNorm folding: merge an eval-mode BatchNorm into the Linear/Conv2d that feeds it.

For a layer ``y = W x + b`` followed by ``BN(y) = γ (y - μ)/sqrt(σ² + ε) + β`` (running
statistics, eval mode), with ``a_c = γ_c / sqrt(σ²_c + ε)`` per output channel ``c``:

    W'_c = a_c · W_c,        b'_c = a_c · (b_c - μ_c) + β_c

so ``BN(layer(x)) = layer'(x)`` exactly (up to float rounding; computed in float64). The
BatchNorm is then replaced by ``nn.Identity``. BRECQ folds before quantizing (Li et al.
2021; reference ``search_fold_and_remove_bn``), so the grid is chosen for the weights the
network actually applies.

A pair is folded only when the BatchNorm is the layer's *only* consumer (possibly through
``nn.Identity``) and is called once — found by ``torch.fx`` tracing
(:func:`mis.quant.reconstruct.analyse_structure`). Pre-activation BatchNorms (DenseNet's
``BN → ReLU → conv``) have no preceding layer and stay.
"""

from __future__ import annotations

import torch
from torch import nn

from mis.exceptions import MisValueError
from mis.quant.reconstruct import analyse_structure


def fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` into ``layer`` in place (``layer`` gains a bias if it had none).

    Parameters
    ----------
    layer : nn.Linear or nn.Conv2d
        Weight of shape (C, ...), C = ``bn.num_features``.
    bn : BatchNorm1d/2d with running statistics.
    """
    w = layer.weight
    if bn.running_mean is None or bn.running_var is None:
        raise MisValueError(
            f"cannot fold {type(bn).__name__} without running statistics "
            "(track_running_stats=False); keep it with fold_bn=False"
        )
    if w.shape[0] != bn.num_features:
        raise MisValueError(
            f"cannot fold a BatchNorm of {bn.num_features} features into a layer with "
            f"{w.shape[0]} output channels"
        )
    with torch.no_grad():
        var = bn.running_var.double()
        mean = bn.running_mean.double()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
        a = gamma / torch.sqrt(var + bn.eps)
        b = layer.bias.double() if layer.bias is not None else torch.zeros_like(var)
        new_w = w.double() * a.reshape((-1,) + (1,) * (w.ndim - 1))
        new_b = a * (b - mean) + beta
        w.copy_(new_w.to(w.dtype))
        if layer.bias is None:
            layer.bias = nn.Parameter(
                new_b.to(dtype=w.dtype, device=w.device), requires_grad=w.requires_grad
            )
        else:
            layer.bias.copy_(new_b.to(layer.bias.dtype))


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every foldable BatchNorm of ``model`` into its preceding layer, in place.

    Returns
    -------
    list of (layer name, BatchNorm name)
        The folded pairs; each BatchNorm is replaced by ``nn.Identity``.
    """
    if not isinstance(model, nn.Module):
        raise MisValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    structure = analyse_structure(model)
    modules = dict(model.named_modules())
    pairs = sorted(structure.bn_after.items(), key=lambda kv: structure.order.get(kv[0], 0))
    for layer_name, bn_name in pairs:
        fold_pair(modules[layer_name], modules[bn_name])
        _set_submodule(model, bn_name, nn.Identity())
    return pairs
