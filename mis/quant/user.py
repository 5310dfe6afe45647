"""A user's own quantizer as a method of the registry, so that the audit can run it.

The user writes ``my_quantizer(model, *, bits, calibration) -> model``: it receives a copy of
the full-precision model (``torch.nn.Module``), the bit width of the variant (an ``int`` or
1.58) and the members-only :class:`~mis.quant.Calibration` of the target (``calibration.data``
is ``(x, y)``), and returns the quantized model (a new one, or the same object changed in
place; returning None also means "changed in place"). It runs under :func:`torch.no_grad`
(weights can be edited in place); a quantizer that optimises opens :func:`torch.enable_grad`
itself. :func:`register_quantizer` wraps it in the :mod:`mis.quant.api` method interface.

The decoupled last layer (§IV-C of Zhang et al.) is applied around the user's function: the
layers whose planned width differs from ``bits`` (the last layer at 8 bits, a
``first_layer_bits`` layer) get back their full-precision weight rounded to the nearest level
of their own grid after the user's function returns, so every quantizer is compared on the same
footing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mis.exceptions import MisValueError
from mis.quant.api import QuantPlan, available_methods, get_method, register_method

__all__ = ["QUANTIZER_CALL", "register_quantizer"]

_USER = "user quantizer"
#: The documented call of a user quantizer (for messages).
QUANTIZER_CALL = "quantizer(model, *, bits, calibration) -> model"


def _as_method(fn: Callable, name: str) -> Callable:
    def method(model: nn.Module, plan: QuantPlan, calib=None) -> nn.Module:
        bits = plan.config.bits
        # layers planned at another width (decoupled last / first layer): their own RTN
        own = {
            p.name: (p.spec, p.module.weight.detach().clone())
            for p in plan.quantized()
            if p.spec.bits != bits
        }
        out = fn(model, bits=bits, calibration=calib)
        out = model if out is None else out  # None: quantized in place
        if not isinstance(out, nn.Module):
            raise MisValueError(
                f"quantizer {name!r} must return the quantized torch.nn.Module; "
                f"got {type(out).__name__}"
            )
        modules = dict(out.named_modules())
        with torch.no_grad():
            for layer, (spec, w) in own.items():
                if layer not in modules:
                    raise MisValueError(
                        f"quantizer {name!r} returned a model without layer {layer!r}, which "
                        "is kept at its own bit width (decoupled last layer)"
                    )
                modules[layer].weight.copy_(spec.round_to_nearest(w))
        return out

    return method


def register_quantizer(name: str, fn: Callable, *, label: str | None = None) -> str:
    """Register ``fn(model, *, bits, calibration) -> model`` as quantization method ``name``.

    Registering the same function again under the same name is a no-op; another function
    replaces it (the latest definition of a script wins).

    Parameters
    ----------
    name : str
        The registry name (the audit uses the ``"package.module:function"`` spec).
    fn : callable
        The user's quantizer (module docstring).
    label : str, optional
        Display name in reports (default: ``fn.__name__``).

    Returns
    -------
    str
        ``name``.
    """
    if name in available_methods() and not get_method(name).description.startswith(_USER):
        raise MisValueError(
            f"quantizer name {name!r} is a built-in method; give your quantizer another name"
        )
    register_method(
        name,
        _as_method(fn, name),
        label=label or getattr(fn, "__name__", name),
        needs_calibration=True,
        description=f"{_USER} {name}",
        overwrite=True,
    )
    return name
