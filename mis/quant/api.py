"""One entry point for post-training weight quantization: configs, the method registry, reports.

``quantize_model(model, config, calib=None)`` deep-copies ``model``, works out which
layers get which bit width (a :class:`QuantPlan`), hands the copy to the registered
method (``"rtn"`` here; ``"adaround"``, ``"brecq"``, ``"obc"``, ``"gptq"`` register
themselves the same way) and returns the quantized copy. Weights only: activations
stay float, biases stay float, and the input model is never modified.

Which layers are quantized
--------------------------
* Every ``nn.Linear`` and ``nn.Conv2d`` (subclasses included) — the *supported* layers —
  in ``model.named_modules()`` order; "first" and "last" layer refer to that order
  (for the project's models, execution order: stem first, classifier head last).
* Modules without a weight matrix (activations, pooling, containers, and norm layers
  whose parameters are 1-D) are left alone.
* Any other module that owns a parameter with 2 or more dimensions (``nn.Conv1d``,
  ``nn.Embedding``, ``nn.ConvTranspose2d``, ...) raises :class:`MisValueError` listing the
  supported types — a weight matrix is never silently left in float. Keep such a module
  in float on purpose with ``overrides={"name": "float"}``.
* Bit width of a supported layer, by precedence: ``overrides[name]`` > ``last_layer_bits``
  (last layer) > ``first_layer_bits`` (first layer) > ``bits``. ``last_layer_bits=8``
  is the *decoupled quantization* of Zhang et al. 2025, §IV-C. A bit width may be
  ``"float"`` to keep that layer in full precision.

Method interface (for ``register_method``)
------------------------------------------
``fn(model, plan, calib) -> nn.Module | None``

* ``model``: the deep copy, to be modified in place (or replaced by the returned module).
* ``plan``: :class:`QuantPlan` — ``plan.config`` (the :class:`QuantConfig`, with
  ``method_options``, an instance of the options dataclass the method was registered with,
  and ``seed``) and ``plan.layers``, a
  tuple of :class:`PlannedLayer` ``(name, module, spec)`` whose ``module`` is the layer
  *inside the copy* and ``spec`` a :class:`LayerSpec` (``None`` = keep float).
  ``spec.grid(w)`` gives the :class:`~mis.quant.grids.AffineGrid` of a weight and
  ``spec.is_sign`` flags 1-bit layers (``α_c·sign(W)``, no affine grid).
* ``calib``: a validated :class:`~mis.quant.calibration.Calibration` (members only) or
  ``None``. Methods registered with ``needs_calibration=True`` always receive one.

The method must leave the quantized weight in ``module.weight`` (fake-quantized values
on the layer's grid); it must not quantize activations. Extra per-layer outputs may be
stored on the module (e.g. ``module.weight_grid``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from mis._validation import bit_width, boolean, integer, real, string
from mis.exceptions import MisValueError
from mis.quant.aubinais import bbit_quantize, sign_quantize, ternary_quantize
from mis.quant.calibration import Calibration
from mis.quant.grids import (
    DEFAULT_N_CANDIDATES,
    DEFAULT_NORM,
    DEFAULT_SHRINK_STEP,
    RANGE_METHODS,
    AffineGrid,
    as_channels,
    grid_for_levels,
    levels_for_bits,
    levels_to_bits,
    shrink_factors,
    uaq,
)

SUPPORTED_LAYERS: tuple[type, ...] = (nn.Linear, nn.Conv2d)
FLOAT = "float"


def _supported_names() -> str:
    return ", ".join(f"nn.{t.__name__}" for t in SUPPORTED_LAYERS)


def _bits_or_float(value, name: str) -> float | int | str:
    """A bit width (:func:`mis._validation.bit_width`) or ``"float"`` (keep the layer in
    full precision)."""
    if isinstance(value, str) and value == FLOAT:
        return FLOAT
    try:
        return bit_width(value, name)
    except MisValueError:
        raise MisValueError(
            f'{name} must be 1.58, an integer in [1, 16] or "float"; got {value!r}'
        ) from None


# -------------------------------------------------------------------------------------------
# configs
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """How one layer's weight is quantized.

    Attributes
    ----------
    bits : float
        1 (sign with per-channel ``α_c = mean|W_c|``), 1.58 (3 levels) or an integer 2–16.
    per_channel, symmetric, range_method, include_zero, norm, n_candidates, shrink_step
        Grid options, see :func:`mis.quant.grids.make_grid`.
    """

    bits: float = 4
    per_channel: bool = True
    symmetric: bool = False
    range_method: str = "mse"
    include_zero: bool = True
    norm: float = DEFAULT_NORM
    n_candidates: int = DEFAULT_N_CANDIDATES
    shrink_step: float = DEFAULT_SHRINK_STEP

    def __post_init__(self):
        object.__setattr__(self, "bits", bit_width(self.bits, "bits"))
        for name in ("per_channel", "symmetric", "include_zero"):
            boolean(getattr(self, name), name)
        string(self.range_method, "range_method", RANGE_METHODS)
        real(self.norm, "norm", 0.0, open_lo=True)
        shrink_factors(self.n_candidates, self.shrink_step)  # validates both

    @classmethod
    def _from_validated(cls, values: Mapping[str, Any]) -> LayerSpec:
        """A spec of field values that a :class:`LayerSpec` (or a :class:`QuantConfig`,
        or a method's options) has validated already: no second check."""
        spec = object.__new__(cls)
        for name in _GRID_FIELDS:
            object.__setattr__(spec, name, values[name])
        return spec

    def _with(self, **validated) -> LayerSpec:
        """This spec with some fields changed to values validated already (no check)."""
        return LayerSpec._from_validated({**self._values(), **validated})

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _GRID_FIELDS}

    @property
    def n_levels(self) -> int:
        """Number of levels ``L`` (2 for sign)."""
        return levels_for_bits(self.bits)

    @property
    def is_sign(self) -> bool:
        """1-bit layer: ``α_c·sign(W)``, not an affine grid."""
        return self.bits == 1

    @property
    def bits_per_parameter(self) -> float:
        """``log2(L)`` (1.585 for 1.58 bits)."""
        return levels_to_bits(self.n_levels)

    def grid(self, w: torch.Tensor) -> AffineGrid:
        """The affine grid of weight ``w`` (not for 1-bit layers; see :attr:`is_sign`)."""
        if self.is_sign:
            raise MisValueError(
                "a 1-bit layer is quantized as α_c·sign(W) (Zhang et al.), which no affine grid "
                "with an integer zero-point expresses; use mis.quant.sign_quantize(w, scale='mean')"
            )
        return grid_for_levels(
            w,
            self.n_levels,
            per_channel=self.per_channel,
            symmetric=self.symmetric,
            range_method=self.range_method,
            include_zero=self.include_zero,
            norm=self.norm,
            n_candidates=self.n_candidates,
            shrink_step=self.shrink_step,
        )

    def round_to_nearest(self, w: torch.Tensor) -> torch.Tensor:
        """RTN: ``w`` on this spec's grid (nearest level), same shape and dtype."""
        if self.is_sign:
            return sign_quantize(w, scale="mean")
        x = w.detach()
        work = x.double() if x.dtype == torch.float64 else x.float()
        return self.grid(work).fake_quant(work).to(w.dtype)


_GRID_FIELDS = tuple(f.name for f in fields(LayerSpec))


@dataclass(frozen=True)
class QuantConfig:
    """Configuration of :func:`quantize_model`; validated on construction.

    Everything is checked here, once: the method name (in the registry), the grid options,
    every bit width, the overrides and the method's own options (converted to the method's
    options dataclass). What is built from a config afterwards is not checked again.

    Attributes
    ----------
    bits : float, default 4
        Bit width of every supported layer (1, 1.58, 2, ..., 16).
    method : str, default "rtn"
        A name from :func:`available_methods`.
    per_channel : bool, default True
        One scale / zero-point per output channel (axis 0) — Zhang et al.'s setting.
    symmetric : bool, default False
        Asymmetric (Zhang et al.) or symmetric grids.
    range_method : {"mse", "minmax"}, default "mse"
        Range search: the L_p search over 80 shrunk ranges (BRECQ / AdaRound / OBC
        reference initialisation) or plain min/max.
    include_zero : bool, default True
        Widen the range to contain 0 (OBC/GPTQ convention; ``False`` reproduces the
        BRECQ/AdaRound reference MSE initialisation, which searches around [min, max]).
    norm, n_candidates, shrink_step : float, int, float
        The L_p exponent (2.4), number of candidates (80) and shrink step (0.01).
    first_layer_bits, last_layer_bits : float, "float" or None
        Bit width of the first / last supported layer; None = ``bits``.
        ``last_layer_bits=8`` is the decoupled quantization of Zhang et al. §IV-C.
    overrides : mapping of str to (bits, "float" or mapping)
        Per-layer settings by module name (``dict(model.named_modules())`` keys): a bit
        width, ``"float"`` to keep the layer unquantized, or a mapping of
        :class:`LayerSpec` fields (e.g. ``{"bits": 8, "range_method": "minmax"}``).
    method_options : mapping or the method's options dataclass
        Settings of the method itself (iterations, learning rate, ...): a mapping of the
        fields of the method's options class (``get_method(method).options``, e.g.
        :class:`~mis.quant.adaround.AdaRoundConfig`, :class:`~mis.quant.obc.OBCOptions`),
        or an instance of it. Stored as that instance (defaults filled in).
    seed : int, default 0
        Seed for methods with randomness.
    """

    bits: float = 4
    method: str = "rtn"
    per_channel: bool = True
    symmetric: bool = False
    range_method: str = "mse"
    include_zero: bool = True
    norm: float = DEFAULT_NORM
    n_candidates: int = DEFAULT_N_CANDIDATES
    shrink_step: float = DEFAULT_SHRINK_STEP
    first_layer_bits: float | str | None = None
    last_layer_bits: float | str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    method_options: Any = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        info = get_method(string(self.method, "method"))
        base = LayerSpec(
            self.bits,
            self.per_channel,
            self.symmetric,
            self.range_method,
            self.include_zero,
            self.norm,
            self.n_candidates,
            self.shrink_step,
        )  # the one check of the grid options and bits
        object.__setattr__(self, "bits", base.bits)
        for name in ("first_layer_bits", "last_layer_bits"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _bits_or_float(v, name))
        if not isinstance(self.overrides, Mapping):
            raise MisValueError(
                f"overrides must be a mapping name -> bits; got {type(self.overrides).__name__}"
            )
        clean = {}
        for key, v in self.overrides.items():
            if not isinstance(key, str):
                raise MisValueError(f"overrides keys must be module names (str); got {key!r}")
            if isinstance(v, Mapping):
                unknown = set(v) - set(_GRID_FIELDS)
                if unknown:
                    raise MisValueError(
                        f"overrides[{key!r}] has unknown fields {sorted(unknown)}; "
                        f"allowed: {list(_GRID_FIELDS)}"
                    )
                spec = LayerSpec(**{**base._values(), **v})  # validates
                clean[key] = MappingProxyType({name: getattr(spec, name) for name in v})
            else:
                clean[key] = _bits_or_float(v, f"overrides[{key!r}]")
        object.__setattr__(self, "overrides", MappingProxyType(clean))
        object.__setattr__(self, "method_options", _build_options(info, self.method_options))
        integer(self.seed, "seed", 0)

    def with_seed(self, seed: int) -> QuantConfig:
        """This configuration with another ``seed``; the other fields, already checked when
        it was built, are not checked again."""
        out = copy.copy(self)
        object.__setattr__(out, "seed", integer(seed, "seed", 0))
        return out

    def base_spec(self) -> LayerSpec:
        """The :class:`LayerSpec` of a layer without override."""
        return LayerSpec._from_validated({name: getattr(self, name) for name in _GRID_FIELDS})

    def spec_for(self, name: str, *, first: bool, last: bool) -> LayerSpec | None:
        """Resolved spec of a supported layer (None = keep float); see the module docstring."""
        base = self.base_spec()
        if name in self.overrides:
            v = self.overrides[name]
            if v == FLOAT:
                return None
            return base._with(**v) if isinstance(v, Mapping) else base._with(bits=v)
        for flag, v in ((last, self.last_layer_bits), (first, self.first_layer_bits)):
            if flag and v is not None:
                return None if v == FLOAT else base._with(bits=v)
        return base


@dataclass(frozen=True)
class PlannedLayer:
    """A supported layer of the model copy and how to quantize it (``spec`` None = float)."""

    name: str
    module: nn.Module
    spec: LayerSpec | None


@dataclass(frozen=True)
class QuantPlan:
    """What a method must do: the config and the supported layers in order."""

    config: QuantConfig
    layers: tuple[PlannedLayer, ...]

    def quantized(self) -> tuple[PlannedLayer, ...]:
        """The layers with a spec (those to quantize)."""
        return tuple(p for p in self.layers if p.spec is not None)


def plan_layers(model: nn.Module, config: QuantConfig) -> QuantPlan:
    """Resolve which layers of ``model`` get which :class:`LayerSpec` (see the module docstring)."""
    modules = dict(model.named_modules())
    for key in config.overrides:
        if key not in modules:
            names = [n for n, m in modules.items() if isinstance(m, SUPPORTED_LAYERS)]
            raise MisValueError(
                f"overrides names {key!r}, which is not a module of the model; "
                f"supported layers are {names[:20]}{' ...' if len(names) > 20 else ''}"
            )
        m = modules[key]
        if not isinstance(m, SUPPORTED_LAYERS) and config.overrides[key] != FLOAT:
            raise MisValueError(
                f"cannot quantize {key!r} of type {type(m).__name__}: supported layers are "
                f"{_supported_names()} (a module may only be set to 'float')"
            )
    supported = []
    for name, m in modules.items():
        if isinstance(m, SUPPORTED_LAYERS):
            supported.append((name, m))
            continue
        own = [p for p in m.parameters(recurse=False) if p.ndim >= 2]
        if own and config.overrides.get(name) != FLOAT:
            raise MisValueError(
                f"module {name!r} of type {type(m).__name__} holds a weight matrix but is not "
                f"supported; supported layers are {_supported_names()}. Keep it in float with "
                f"overrides={{{name!r}: 'float'}}"
            )
    if not supported:
        raise MisValueError(
            f"the model has no layer to quantize; supported layers are {_supported_names()}"
        )
    last = len(supported) - 1
    layers = tuple(
        PlannedLayer(name, m, config.spec_for(name, first=i == 0, last=i == last))
        for i, (name, m) in enumerate(supported)
    )
    return QuantPlan(config, layers)


# -------------------------------------------------------------------------------------------
# registry
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has none (the default of :func:`register_method`)."""


@dataclass(frozen=True)
class MethodInfo:
    """A registered quantization method.

    Attributes
    ----------
    name : str
        The registry key (``QuantConfig.method``).
    fn : callable
        ``fn(model, plan, calib) -> nn.Module | None`` (see the module docstring).
    needs_calibration : bool
        ``quantize_model`` refuses to run it without calibration data.
    description : str
    options : type
        The frozen dataclass of the method's settings; ``QuantConfig.method_options``
        becomes an instance of it, validated by its ``__post_init__``.
    label : str
        Display name in reports and figures (``"AdaRound"``).
    """

    name: str
    fn: Callable
    needs_calibration: bool = False
    description: str = ""
    options: type = NoOptions
    label: str = ""


_METHODS: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    fn: Callable | None = None,
    *,
    options: type | None = None,
    label: str | None = None,
    needs_calibration: bool = False,
    description: str = "",
    overwrite: bool = False,
):
    """Register ``fn(model, plan, calib) -> model`` under ``name``; usable as a decorator.

    Parameters
    ----------
    name : str
    fn : callable, optional
        The method (see the module docstring for the interface); omitted when used as a
        decorator.
    options : dataclass type, optional
        The frozen dataclass of the method's settings, validated in its ``__post_init__``
        (default :class:`NoOptions`: the method takes none).
    label : str, optional
        Display name (default: ``name``); read with :func:`method_label`.
    needs_calibration : bool
    description : str
    overwrite : bool
        Re-registering a name raises unless true.
    """
    if not isinstance(name, str) or not name:
        raise MisValueError(f"name must be a non-empty string; got {name!r}")
    options = NoOptions if options is None else options
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise MisValueError(f"options of method {name!r} must be a dataclass type; got {options!r}")
    label = name if label is None else string(label, "label")

    def deco(f):
        if not callable(f):
            raise MisValueError(f"method {name!r} must be callable; got {type(f).__name__}")
        if name in _METHODS and not overwrite:
            raise MisValueError(f"method {name!r} is already registered (pass overwrite=True)")
        _METHODS[name] = MethodInfo(
            name, f, bool(needs_calibration), description, options=options, label=label
        )
        return f

    return deco if fn is None else deco(fn)


def available_methods() -> tuple[str, ...]:
    """Names of the registered methods, sorted."""
    return tuple(sorted(_METHODS))


def get_method(name: str) -> MethodInfo:
    """The :class:`MethodInfo` registered under ``name`` (the one lookup of the registry)."""
    if name not in _METHODS:
        raise MisValueError(
            f"unknown quantization method {name!r}; available: {list(available_methods())}"
        )
    return _METHODS[name]


def method_label(name: str) -> str:
    """Display name of a method (``"adaround"`` → ``"AdaRound"``); an unregistered name is
    returned unchanged (e.g. a method of a results file whose plugin is not imported)."""
    return _METHODS[name].label if name in _METHODS else name


def _build_options(info: MethodInfo, options) -> Any:
    """``options`` (a mapping of the fields of ``info.options``, or an instance of it) as an
    instance of ``info.options``, validated.

    Raises :class:`MisValueError` naming ``method_options.<key>`` and the valid keys for an
    unknown key, and the field for an invalid value.
    """
    cls = info.options
    if isinstance(options, cls):
        return options
    if not isinstance(options, Mapping):
        raise MisValueError(
            f"method_options of method {info.name!r} must be a mapping or a {cls.__name__}; "
            f"got {type(options).__name__}"
        )
    valid = [f.name for f in fields(cls)]
    unknown = [str(k) for k in options if k not in valid]
    if unknown:
        raise MisValueError(
            f"unknown {', '.join(f'method_options.{k}' for k in unknown)} for method "
            f"{info.name!r}; valid keys: {valid}"
        )
    try:
        return cls(**options)
    except MisValueError as exc:
        raise MisValueError(f"method_options of method {info.name!r}: {exc}") from None


# -------------------------------------------------------------------------------------------
# entry point
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantInfo:
    """Attached to a quantized model as ``model.mis_quant_info``."""

    method: str
    config: QuantConfig
    specs: Mapping[str, LayerSpec | None]


def quantize_model(
    model: nn.Module,
    config: QuantConfig | None = None,
    calib: Calibration | None = None,
    **config_kwargs,
) -> nn.Module:
    """Quantize the weights of a copy of ``model``; the input model is left untouched.

    Parameters
    ----------
    model : torch.nn.Module
    config : QuantConfig, optional
        Defaults to ``QuantConfig(**config_kwargs)``.
    calib : Calibration, optional
        Calibration examples, all training members of the target (built with
        :func:`~mis.quant.calibration.select_calibration`). Raw tensors are refused: the
        membership check must have happened. Required by methods that calibrate.

    Returns
    -------
    torch.nn.Module
        The quantized copy, with ``mis_quant_info`` (:class:`QuantInfo`); see
        :func:`quantization_report`.
    """
    if not isinstance(model, nn.Module):
        raise MisValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if config is None:
        config = QuantConfig(**config_kwargs)
    elif config_kwargs:
        raise MisValueError("give either config or keyword options, not both")
    if not isinstance(config, QuantConfig):
        raise MisValueError(f"config must be a QuantConfig; got {type(config).__name__}")
    info = get_method(config.method)
    if calib is not None and not isinstance(calib, Calibration):
        raise MisValueError(
            "calib must be a mis.quant.Calibration (build it with select_calibration(x, y, "
            f"member_mask=keep_row, ...)) so that membership is checked; got {type(calib).__name__}"
        )
    if info.needs_calibration and calib is None:
        raise MisValueError(f"method {config.method!r} needs calibration data (calib=...)")
    qmodel = copy.deepcopy(model)
    plan = plan_layers(qmodel, config)
    with torch.no_grad():
        out = info.fn(qmodel, plan, calib)
    qmodel = qmodel if out is None else out
    qmodel.mis_quant_info = QuantInfo(
        config.method, config, MappingProxyType({p.name: p.spec for p in plan.layers})
    )
    return qmodel


# -------------------------------------------------------------------------------------------
# report
# -------------------------------------------------------------------------------------------


def distinct_per_channel(w: torch.Tensor) -> np.ndarray:
    """Number of distinct values in each output channel (axis 0) of ``w``, shape (C,)."""
    x = as_channels(w.detach())
    s = torch.sort(x, dim=1).values
    return (1 + (s[:, 1:] != s[:, :-1]).sum(1)).cpu().numpy().astype(np.int64)


@dataclass(frozen=True)
class LayerReport:
    """Per-layer facts: nominal bit width and measured distinct levels per channel."""

    name: str
    kind: str
    shape: tuple
    bits: float | None  # nominal; None = float
    levels_per_channel: np.ndarray
    sparsity: float

    @property
    def max_levels(self) -> int:
        return int(self.levels_per_channel.max())

    @property
    def bits_per_parameter(self) -> float:
        """Nominal ``log2(L)`` (32 for a float layer)."""
        return 32.0 if self.bits is None else levels_to_bits(levels_for_bits(self.bits))

    @property
    def n_params(self) -> int:
        return int(np.prod(self.shape))

    def as_dict(self) -> dict:
        return dict(
            name=self.name,
            kind=self.kind,
            shape=list(self.shape),
            bits=self.bits,
            bits_per_parameter=self.bits_per_parameter,
            max_levels=self.max_levels,
            min_levels=int(self.levels_per_channel.min()),
            sparsity=self.sparsity,
        )


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantization_report` returns."""

    method: str | None
    layers: tuple[LayerReport, ...]

    @property
    def bits_per_parameter(self) -> float:
        """Parameter-weighted mean of the layers' nominal bits (float layers count 32)."""
        n = np.array([lr.n_params for lr in self.layers], dtype=float)
        b = np.array([lr.bits_per_parameter for lr in self.layers])
        return float((n * b).sum() / n.sum())

    def __getitem__(self, name: str) -> LayerReport:
        for lr in self.layers:
            if lr.name == name:
                return lr
        raise KeyError(name)

    def as_dict(self) -> dict:
        return dict(
            method=self.method,
            bits_per_parameter=self.bits_per_parameter,
            layers=[lr.as_dict() for lr in self.layers],
        )


def quantization_report(model: nn.Module) -> QuantizationReport:
    """Bits per parameter and distinct levels per channel of every supported layer's weight.

    Nominal bit widths come from ``model.mis_quant_info`` (set by :func:`quantize_model`;
    a model without it reports every layer as float); the levels are counted on the
    weights themselves.
    """
    info = getattr(model, "mis_quant_info", None)
    specs = info.specs if info is not None else {}
    reps = []
    for name, m in model.named_modules():
        if not isinstance(m, SUPPORTED_LAYERS):
            continue
        spec = specs.get(name)
        w = m.weight.detach()
        reps.append(
            LayerReport(
                name,
                type(m).__name__,
                tuple(w.shape),
                None if spec is None else spec.bits,
                distinct_per_channel(w),
                float((w == 0).double().mean()),
            )
        )
    return QuantizationReport(None if info is None else info.method, tuple(reps))


# -------------------------------------------------------------------------------------------
# named weight quantizers (for the trajectory recorder)
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightQuantizer:
    """A named callable ``w -> w_q`` acting on **one layer's weight tensor**.

    Same shape, dtype and device out as in; a numpy array in gives a numpy array out;
    the input is never modified. With ``stacked=True`` the first axis indexes models
    (the trajectory recorder's fast path) and each slice is quantized on its own.
    """

    name: str
    fn: Callable
    description: str = ""
    stacked: bool = False

    def __call__(self, w):
        if isinstance(w, np.ndarray):
            return self(torch.from_numpy(w)).numpy()
        if not isinstance(w, torch.Tensor):
            raise MisValueError(
                f"w must be a torch.Tensor or a numpy array; got {type(w).__name__}"
            )
        if self.stacked:
            if w.ndim == 0:
                raise MisValueError("a stacked quantizer needs a tensor of shape (n_models, ...)")
            return torch.stack([self.fn(w[k]) for k in range(w.shape[0])])
        return self.fn(w)


def _uaq(bits, range_method):
    def fn(w):
        return uaq(w, bits, per_channel=True, symmetric=False, range_method=range_method)

    return fn


_WEIGHT_QUANTIZERS: dict[str, tuple[Callable, str]] = {
    "sign": (lambda w: sign_quantize(w), "sign(w), ±1 (Aubinais et al., Table 1)"),
    "sign-mean": (
        lambda w: sign_quantize(w, scale="mean"),
        "α_c·sign(w), α_c = mean|W_c| (Zhang et al. 1-bit)",
    ),
    "ternary-33": (
        lambda w: ternary_quantize(w, 0.33),
        "1.58b 33%: 33% smallest |w| -> 0, rest sign",
    ),
    "ternary-50": (lambda w: ternary_quantize(w, 0.50), "1.58b 50%"),
    "ternary-90": (lambda w: ternary_quantize(w, 0.90), "1.58b 90%"),
    **{
        f"{b}bit": (
            (lambda w, b=b: bbit_quantize(w, b)),
            f"{b} bits of Aubinais et al. (2^{b} levels)",
        )
        for b in (2, 3, 4, 5)
    },
    **{
        f"uaq-{b}": (
            _uaq(b, "minmax"),
            f"uniform affine {b} bits, per-channel, min/max range (Eq. 2/4)",
        )
        for b in (4, 2, 1.58)
    },
    **{
        f"uaq-{b}-mse": (_uaq(b, "mse"), f"uniform affine {b} bits, per-channel, L2.4 range search")
        for b in (4, 2, 1.58)
    },
}


def available_weight_quantizers() -> tuple[str, ...]:
    """Names accepted by :func:`weight_quantizer`."""
    return tuple(_WEIGHT_QUANTIZERS)


def weight_quantizer(name: str, *, stacked: bool = False) -> WeightQuantizer:
    """The named per-layer quantizer ``w -> w_q`` (see :func:`available_weight_quantizers`).

    ``sign``, ``ternary-33/50/90`` and ``2bit`` … ``5bit`` are the quantizers of
    Aubinais et al. (layer-wise, :mod:`mis.quant.aubinais`); ``uaq-4``, ``uaq-2``,
    ``uaq-1.58`` the per-channel asymmetric uniform affine grids of Zhang et al.
    (Eq. 2/4) with min/max ranges (``-mse`` suffix: the L2.4 range search).
    """
    if name not in _WEIGHT_QUANTIZERS:
        raise MisValueError(
            f"unknown weight quantizer {name!r}; available: {list(available_weight_quantizers())}"
        )
    boolean(stacked, "stacked")
    fn, desc = _WEIGHT_QUANTIZERS[name]
    return WeightQuantizer(name, fn, desc, stacked)
