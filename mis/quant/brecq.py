"""BRECQ (Li et al. 2021): AdaRound's relaxation optimised jointly over blocks. Registered
as ``"brecq"``.

Steps (reference code yhhhli/BRECQ, ``main_imagenet.py``):

1. BatchNorm is folded into the preceding conv/linear (:func:`mis.quant.fold.fold_batchnorm`;
   ``fold_bn=False`` keeps it).
2. First and last quantized layers (stem and head) get 8 bits unless the
   :class:`~mis.quant.api.QuantConfig` sets ``first_layer_bits`` / ``last_layer_bits`` or
   an override names them (``head_stem_bits=None`` switches this off). The plan's specs
   are updated so :func:`~mis.quant.api.quantization_report` shows the real bit widths.
3. Units in execution order: each *block* — by default a residual ``BasicBlock`` /
   ``Bottleneck`` (any module whose class is named so, e.g. the project's ResNets and
   torchvision's) and DenseNet's dense layer (``_DenseLayer``) and transition — is
   reconstructed on its output with all its quantized layers' ``V`` optimised jointly; any
   other layer (stem, head, the layers of MLPs and the digits CNN) is reconstructed alone,
   with its fused ReLU, as in AdaRound. ``blocks=("name", ...)`` chooses the blocks by
   module name instead.
4. Loss: MSE by default, ``loss="fisher_diag"`` weights the squared error by squared output
   gradients of the task loss (BRECQ §3.3): ``Σ_1 (Δ ⊙ (|∂ℓ/∂out| + damping))²``.

1 bit as in AdaRound: learned sign on ``{-α_c, +α_c}`` (``one_bit="adaround"``) or
``α_c·sign(W)`` (``one_bit="rtn"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mis._validation import bit_width, sequence, string
from mis.exceptions import MisValueError
from mis.quant.api import QuantPlan, register_method
from mis.quant.calibration import Calibration
from mis.quant.fold import fold_batchnorm
from mis.quant.reconstruct import ReconstructionConfig, planned_layer_with_spec, run_method

__all__ = ["BLOCK_CLASS_NAMES", "BRECQConfig", "brecq", "find_blocks"]

BLOCK_CLASS_NAMES = frozenset(
    {"BasicBlock", "_BasicBlock", "Bottleneck", "_Bottleneck", "_DenseLayer", "_Transition"}
)


@dataclass(frozen=True)
class BRECQConfig(ReconstructionConfig):
    """BRECQ settings: :class:`~mis.quant.reconstruct.ReconstructionConfig` (λ = 0.01, 20,000
    iterations per unit, batch 32, Adam lr 1e-3, β 20 → 2 after 20 % warm-up) plus

    Attributes
    ----------
    fold_bn : bool, default True
        Fold BatchNorm into the preceding layer first.
    head_stem_bits : float or None, default 8
        Bit width of the first and last quantized layers when the QuantConfig leaves them
        to the default; None = same as the other layers.
    blocks : tuple of str or None, default None
        Module names reconstructed as blocks; None = automatic (:func:`find_blocks`).
    """

    fold_bn: bool = True
    head_stem_bits: float | None = 8
    blocks: tuple | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.head_stem_bits is not None:
            object.__setattr__(
                self, "head_stem_bits", bit_width(self.head_stem_bits, "head_stem_bits")
            )
        if self.blocks is not None:
            object.__setattr__(self, "blocks", sequence(self.blocks, "blocks", string, min_len=0))


def find_blocks(model: nn.Module) -> tuple[str, ...]:
    """Names of the outermost modules whose class name is in :data:`BLOCK_CLASS_NAMES`."""
    found: list[str] = []
    for name, m in model.named_modules():
        if type(m).__name__ in BLOCK_CLASS_NAMES and not any(
            name.startswith(b + ".") for b in found
        ):
            found.append(name)
    return tuple(found)


def _apply_head_stem(plan: QuantPlan, bits) -> None:
    cfg = plan.config
    ends = (
        (plan.layers[0], cfg.first_layer_bits),
        (plan.layers[-1], cfg.last_layer_bits),
    )
    for layer, explicit in ends:
        if explicit is not None or layer.name in cfg.overrides or layer.spec is None:
            continue
        planned_layer_with_spec(layer, layer.spec._with(bits=bits))  # bits validated


@register_method(
    "brecq",
    options=BRECQConfig,
    label="BRECQ",
    needs_calibration=True,
    description="BRECQ: block reconstruction with learned rounding (Li et al. 2021)",
)
def brecq(model: nn.Module, plan: QuantPlan, calib: Calibration) -> nn.Module:
    """Quantize ``model`` in place with BRECQ (the :mod:`mis.quant.api` method interface).

    Settings: ``plan.config.method_options``, a :class:`BRECQConfig` (the
    :class:`~mis.quant.api.QuantConfig` built it from a mapping of its fields). The returned
    model has its BatchNorms folded (replaced by ``nn.Identity``) unless ``fold_bn=False``,
    and carries ``mis_reconstruction``.
    """
    config = plan.config.method_options
    if config.head_stem_bits is not None:
        _apply_head_stem(plan, config.head_stem_bits)
    modules = dict(model.named_modules())
    if config.blocks is None:
        blocks = find_blocks(model)
    else:
        missing = [b for b in config.blocks if b not in modules]
        if missing:
            raise MisValueError(f"blocks names modules that the model lacks: {missing}")
        blocks = config.blocks
    prepare = fold_batchnorm if config.fold_bn else None
    return run_method(model, plan, calib, config, method="brecq", blocks=blocks, prepare=prepare)
