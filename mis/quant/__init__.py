"""Post-training weight quantization (torch): grids, RTN, the Aubinais quantizers, one API.

* :mod:`mis.quant.grids` — uniform affine grids (Zhang et al. Eq. 2/4): :class:`AffineGrid`,
  min/max and vectorized L_p range search.
* :mod:`mis.quant.aubinais` — Sign, 1.58b x % and b-bit quantizers (Aubinais et al., Table 1),
  their names (:data:`AUBINAIS_QUANTIZERS`) and display names (:func:`quantizer_label`).
* :mod:`mis.quant.api` — :func:`quantize_model`, :class:`QuantConfig`, the method registry
  (:func:`register_method`, :func:`get_method`, :func:`method_label`),
  :func:`weight_quantizer`, :func:`quantization_report`.
* :mod:`mis.quant.calibration` — :class:`Calibration`, members-only calibration data.
* :mod:`mis.quant.stacked` — the Aubinais quantizers on many models' stacked weights at once
  (:func:`stacked_quantize`, :class:`StackedQuantizer`).

* :mod:`mis.quant.rtn` — round to nearest (:class:`RTNOptions`: none);
* :mod:`mis.quant.adaround`, :mod:`mis.quant.brecq` — AdaRound and BRECQ
  (:class:`AdaRoundConfig`, :class:`BRECQConfig`; with :mod:`mis.quant.reconstruct` and BN
  folding in :mod:`mis.quant.fold`);
* :mod:`mis.quant.obc`, :mod:`mis.quant.gptq` — OBC (ExactOBS), GPTQ as the reference
  implementation and GPTQ with our refinement sweeps (:class:`OBCOptions`,
  :class:`GPTQOptions`, :class:`GPTQRefineOptions`); :mod:`mis.quant.bn` — batch-norm
  re-estimation; :mod:`mis.quant.capture` — layer Hessians.

Methods register on import, each with its options dataclass and display label: ``rtn``,
``adaround``, ``brecq``, ``obc``, ``gptq`` and ``gptq-refine`` (our extension) below. This
package never imports :mod:`mis.train`.
"""

from mis.quant.adaround import AdaRoundConfig
from mis.quant.api import (
    SUPPORTED_LAYERS,
    LayerReport,
    LayerSpec,
    MethodInfo,
    NoOptions,
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
    method_label,
    plan_layers,
    quantization_report,
    quantize_model,
    register_method,
    weight_quantizer,
)
from mis.quant.aubinais import (
    AUBINAIS_QUANTIZERS,
    bbit_quantize,
    quantizer_label,
    sign_quantize,
    ternary_quantize,
)
from mis.quant.bn import bn_tune
from mis.quant.brecq import BRECQConfig
from mis.quant.calibration import Calibration, check_members, select_calibration
from mis.quant.gptq import GPTQOptions, GPTQRefineOptions
from mis.quant.grids import (
    AffineGrid,
    bits_to_levels,
    grid_for_levels,
    grid_from_range,
    levels_to_bits,
    make_grid,
    minmax_grid,
    mse_grid,
    uaq,
    weight_range,
)
from mis.quant.obc import LayerwiseOptions, OBCOptions
from mis.quant.rtn import RTNOptions
from mis.quant.stacked import STACKED_QUANTIZERS, StackedQuantizer, stacked_quantize
from mis.quant.user import register_quantizer

__all__ = [
    "AUBINAIS_QUANTIZERS",
    "STACKED_QUANTIZERS",
    "SUPPORTED_LAYERS",
    "AdaRoundConfig",
    "AffineGrid",
    "BRECQConfig",
    "Calibration",
    "GPTQOptions",
    "GPTQRefineOptions",
    "LayerReport",
    "LayerSpec",
    "LayerwiseOptions",
    "MethodInfo",
    "NoOptions",
    "OBCOptions",
    "PlannedLayer",
    "QuantConfig",
    "QuantInfo",
    "QuantPlan",
    "QuantizationReport",
    "RTNOptions",
    "StackedQuantizer",
    "WeightQuantizer",
    "available_methods",
    "available_weight_quantizers",
    "bbit_quantize",
    "bits_to_levels",
    "bn_tune",
    "check_members",
    "distinct_per_channel",
    "get_method",
    "grid_for_levels",
    "grid_from_range",
    "levels_to_bits",
    "make_grid",
    "method_label",
    "minmax_grid",
    "mse_grid",
    "plan_layers",
    "quantization_report",
    "quantize_model",
    "quantizer_label",
    "register_method",
    "register_quantizer",
    "select_calibration",
    "sign_quantize",
    "stacked_quantize",
    "ternary_quantize",
    "uaq",
    "weight_quantizer",
    "weight_range",
]
