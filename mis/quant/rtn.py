"""Round-to-nearest (RTN): every planned layer's weight → the nearest level of its grid.

The baseline PTQ method: no calibration data, no optimisation. Each supported layer's
weight is replaced by ``grid.fake_quant(W)`` for its :class:`~mis.quant.api.LayerSpec`
(per-channel asymmetric grid, min/max or L_p-searched range, Eq. 2/4 of Zhang et al.
with round-to-nearest), or by ``α_c·sign(W)`` for 1-bit layers. Biases stay float.
Registered as ``"rtn"``.
"""

from __future__ import annotations

import torch

from mis.quant.api import QuantPlan, register_method


@register_method("rtn", description="round to nearest on the layer's grid (no calibration)")
def rtn(model: torch.nn.Module, plan: QuantPlan, calib=None) -> torch.nn.Module:
    """Quantize every planned layer of ``model`` in place (the :mod:`mis.quant.api` interface)."""
    with torch.no_grad():
        for layer in plan.quantized():
            w = layer.module.weight
            w.copy_(layer.spec.round_to_nearest(w))
    return model
