"""Post-training weight quantization (torch): grids, RTN, the Aubinais quantizers, one API.

* :mod:`mis.quant.grids` — uniform affine grids (Zhang et al. Eq. 2/4): :class:`AffineGrid`,
  min/max and vectorized L_p range search.
* :mod:`mis.quant.aubinais` — Sign, 1.58b x % and b-bit quantizers (Aubinais et al., Table 1).
* :mod:`mis.quant.api` — :func:`quantize_model`, :class:`QuantConfig`, the method registry,
  :func:`weight_quantizer`, :func:`quantization_report`.
* :mod:`mis.quant.calibration` — :class:`Calibration`, members-only calibration data.

* :mod:`mis.quant.adaround`, :mod:`mis.quant.brecq` — AdaRound and BRECQ (with
  :mod:`mis.quant.reconstruct` and BN folding in :mod:`mis.quant.fold`);
* :mod:`mis.quant.obc`, :mod:`mis.quant.gptq` — OBC (ExactOBS) and GPTQ;
  :mod:`mis.quant.bn` — batch-norm re-estimation; :mod:`mis.quant.capture` — layer Hessians.

Methods register on import: ``rtn``, ``adaround``, ``brecq``, ``obc`` and ``gptq`` below.
"""

from mis.quant import adaround as _adaround  # noqa: F401  registers "adaround"
from mis.quant import brecq as _brecq  # noqa: F401  registers "brecq"
from mis.quant import gptq as _gptq  # noqa: F401  registers "gptq"
from mis.quant import obc as _obc  # noqa: F401  registers "obc"
from mis.quant import rtn as _rtn  # noqa: F401  registers "rtn"
from mis.quant.api import (
    SUPPORTED_LAYERS,
    LayerReport,
    LayerSpec,
    MethodInfo,
    PlannedLayer,
    QuantConfig,
    QuantInfo,
    QuantizationReport,
    QuantPlan,
    WeightQuantizer,
    available_methods,
    available_weight_quantizers,
    distinct_per_channel,
    get_method,
    plan_layers,
    quantization_report,
    quantize_model,
    register_method,
    weight_quantizer,
)
from mis.quant.aubinais import bbit_quantize, sign_quantize, ternary_quantize
from mis.quant.bn import bn_tune
from mis.quant.calibration import Calibration, check_members, select_calibration
from mis.quant.grids import (
    AffineGrid,
    bits_to_levels,
    grid_from_range,
    levels_to_bits,
    make_grid,
    minmax_grid,
    mse_grid,
    uaq,
    weight_range,
)

__all__ = [
    "SUPPORTED_LAYERS",
    "AffineGrid",
    "Calibration",
    "LayerReport",
    "LayerSpec",
    "MethodInfo",
    "PlannedLayer",
    "QuantConfig",
    "QuantInfo",
    "QuantPlan",
    "QuantizationReport",
    "WeightQuantizer",
    "available_methods",
    "available_weight_quantizers",
    "bbit_quantize",
    "bits_to_levels",
    "bn_tune",
    "check_members",
    "distinct_per_channel",
    "get_method",
    "grid_from_range",
    "levels_to_bits",
    "make_grid",
    "minmax_grid",
    "mse_grid",
    "plan_layers",
    "quantization_report",
    "quantize_model",
    "register_method",
    "select_calibration",
    "sign_quantize",
    "ternary_quantize",
    "uaq",
    "weight_quantizer",
    "weight_range",
]
