"""Round-to-nearest (RTN): every planned layer's weight → the nearest level of its grid.

The baseline PTQ method: no calibration data, no optimisation. Each supported layer's
weight is replaced by ``grid.fake_quant(W)`` for its :class:`~mis.quant.api.LayerSpec`
(per-channel asymmetric grid, min/max or L_p-searched range, Eq. 2/4 of Zhang et al.
with round-to-nearest), or by ``α_c·sign(W)`` for 1-bit layers. Biases stay float.
Registered as ``"rtn"`` (label "RTN"); it has no settings of its own (:class:`RTNOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mis.quant.api import QuantPlan, register_method

__all__ = ["RTNOptions", "rtn"]


@dataclass(frozen=True)
class RTNOptions:
    """The settings of ``"rtn"``: none (the grid options are those of the QuantConfig)."""


@register_method(
    "rtn",
    options=RTNOptions,
    label="RTN",
    description="round to nearest on the layer's grid (no calibration)",
)
def rtn(model: torch.nn.Module, plan: QuantPlan, calib=None) -> torch.nn.Module:
    """Quantize every planned layer of ``model`` in place (the :mod:`mis.quant.api` interface)."""
    with torch.no_grad():
        for layer in plan.quantized():
            w = layer.module.weight
            w.copy_(layer.spec.round_to_nearest(w))
    return model
