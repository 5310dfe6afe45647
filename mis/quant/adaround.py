"""AdaRound (Nagel et al. 2020): learned up/down rounding, layer by layer. Registered as
``"adaround"``.

Every planned layer is reconstructed on its own, in execution order: inputs from the network
whose earlier layers are already quantized, targets from the full-precision network, the
layer's output taken after its BatchNorm (when not folded) and ReLU when those are its only
consumers (``act(bn(W x))``, the "fused ReLU"). The rounding of ``W/s`` on the layer's grid
(per-channel asymmetric by default, Zhang et al. Eq. 2/4, 1.58 bits = 3 levels) is relaxed
with the rectified sigmoid and optimised with Adam on ``V`` only; the regulariser with β
annealed 20 → 2 after a 20 % warm-up drives ``h(V)`` to {0, 1}; the result is hard-rounded
(``⌊W/s⌋`` or ``⌊W/s⌋ + 1`` only). Details: :mod:`mis.quant.reconstruct`.

1 bit: the layer's values are ``±α_c`` with ``α_c = mean|W_c|`` fixed (Zhang et al.'s sign
quantizer); AdaRound learns the sign on that 2-level grid (``one_bit="adaround"``, default)
or keeps ``α_c·sign(W)`` (``one_bit="rtn"``).

Usage::

    qm = quantize_model(model, QuantConfig(bits=2, method="adaround",
                                           method_options={"n_iter": 2000}), calib)
    qm.mis_reconstruction.units[0].history   # losses during optimisation
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mis.quant.api import QuantPlan, register_method
from mis.quant.calibration import Calibration
from mis.quant.fold import fold_batchnorm
from mis.quant.reconstruct import ReconstructionConfig, run_method

__all__ = ["AdaRoundConfig", "adaround"]


@dataclass(frozen=True)
class AdaRoundConfig(ReconstructionConfig):
    """AdaRound settings: :class:`~mis.quant.reconstruct.ReconstructionConfig` with
    ``fold_bn=False`` (BatchNorm kept and included in the layer's reconstructed output) and
    the paper defaults λ = 0.01, 20,000 iterations, batch 32, Adam lr 1e-3, β 20 → 2 after a
    20 % warm-up, MSE loss."""

    fold_bn: bool = False


@register_method(
    "adaround",
    options=AdaRoundConfig,
    label="AdaRound",
    needs_calibration=True,
    description="AdaRound: learned rounding per layer (Nagel et al. 2020)",
)
def adaround(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """Quantize ``model`` in place with AdaRound (the :mod:`mis.quant.api` method interface).

    Settings: ``plan.config.method_options``, an :class:`AdaRoundConfig` (the
    :class:`~mis.quant.api.QuantConfig` built it from a mapping of its fields); mini-batches
    are drawn with ``plan.config.seed``. The returned model carries ``mis_reconstruction``
    (:class:`~mis.quant.reconstruct.ReconstructionLog`).
    """
    config = plan.config.method_options
    prepare = fold_batchnorm if config.fold_bn else None
    return run_method(model, plan, calib, config, method="adaround", blocks=(), prepare=prepare)
