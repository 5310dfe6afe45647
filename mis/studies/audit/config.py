"""Configuration of the PTQ privacy audit (Zhang et al. 2025), from TOML or in code.

Every key has a default; :func:`default_config` is the embedded default (the digits CNN,
``experiments/digits.toml``). A TOML file overrides the defaults of :class:`Config` (the
paper's settings) section by section; an unknown section or key, or a value of the wrong type
or range, raises :class:`~mis.exceptions.MisValueError` naming the key (``train.epochs``,
...). Everything is checked here, once, when the configuration is built: the quantization of
every variant becomes a validated :class:`~mis.quant.QuantConfig` (method looked up in the
:mod:`mis.quant` registry, bit widths, grid and method options), which the jobs use as is.

Sections and keys (defaults in parentheses)
-------------------------------------------
``[study]``
    ``name`` ("audit"); ``seed`` (0) — master seed, every random quantity derives from it;
    ``shadows`` (64) — shadow models (full precision by default); ``targets`` (10) — target
    models, one per "random seed" of the paper; ``pkeep`` (0.5) — each example is IN for
    exactly ``pkeep · (shadows + targets)`` models; ``device`` ("auto": CUDA when available);
    ``torch_threads`` (0 = torch's default; 1 for tiny models on a busy CPU);
    ``chunk_size`` (16) — models trained together by the ensemble trainer in one resumable
    job (the plain trainer always trains one model per job); ``save_logits`` (true) — keep the
    full-precision logits ``(n_models, n_examples, n_aug, n_classes)`` in the run store
    (the attacks need only the compact per-example arrays).
``[data]``
    ``source`` ("cifar10"; former name ``name``) — ``digits``, ``fashion_mnist``, ``mnist``,
    ``cifar10``, ``cifar100``, ``tinyimagenet``, ``idx`` (any data set in the four IDX files
    of the MNIST release, under ``root``), ``npz``, ``synthetic`` or ``callable``;
    ``loader`` ("") — with ``source = "callable"``, ``"package.module:load"``: ``load()``
    returns a :class:`~mis.train.Dataset`, ``(x, y)``, ``(x, y, x_test, y_test)`` or a
    mapping with those keys (arrays; images NCHW); ``root`` ("") — data directory
    ((Fashion-)MNIST IDX files, CIFAR, TinyImageNet), relative to the working directory
    (Fashion-MNIST: "" = ``/usr/share/datasets/fashion-mnist``, Debian's
    ``dataset-fashion-mnist``); ``path`` ("") — the ``.npz`` file; ``n_examples`` (0 = all)
    — size of the audit pool (the training split, from which every model draws its members);
    ``n_test`` (0 = all) — test examples for the accuracy; ``test_size`` (0) — examples split
    off the pool as the test set when the data set has no test split (digits, npz without
    one); ``synthetic_*`` — the class-prototype images of ``name = "synthetic"``:
    ``synthetic_n`` (2048), ``synthetic_n_test`` (512), ``synthetic_shape`` ([3, 32, 32]),
    ``synthetic_classes`` (10), ``synthetic_noise`` (1.0).
``[model]``
    ``name`` ("resnet18") — a built-in architecture; ``factory`` ("") — your own instead:
    ``"package.module:make_model"``, called as ``make_model(n_classes=..., input_shape=...,
    **options)`` (``input_shape``: one example's shape, e.g. ``(1, 28, 28)``) and returning a
    fresh ``torch.nn.Module`` (each model is built under its own seed); ``options`` ({}) —
    constructor arguments; for a built-in, ``n_classes`` and ``in_channels`` (and ``size``
    for ``digits_cnn``) are filled in from the data.
``[train]``
    ``fn`` ("") — your own training function instead of ours: ``"package.module:fit"``, called
    as ``fit(model, x, y, config, seed)`` with the fresh model, the model's members ``x``
    (float32 tensor, normalised as our trainer sees it) and ``y`` (int64 tensor), all on
    ``study.device``, the :class:`~mis.train.TrainConfig` of this table and the model's
    seed; it returns the trained model (None: trained in place; one model per job);
    ``trainer`` ("auto": the vmap ensemble trainer for BatchNorm-free models, else the plain
    trainer) and the :class:`~mis.train.TrainConfig` fields (all but the Adam constants
    ``betas`` and ``eps``), default :meth:`TrainConfig.zhang2025` (SGD 0.9, wd 5e-4, lr 0.1
    cosine, 100 epochs, batch 128, flip + crop); ``batch_size = 0`` means full batch.
``[quant]``
    ``methods`` (["rtn", "adaround", "brecq", "obc", "gptq"]) — names in the
    :mod:`mis.quant` registry, or your own quantizer ``"package.module:my_quantizer"``,
    called as ``my_quantizer(model, *, bits, calibration)`` and returning the quantized model
    (:mod:`mis.quant.user`; the decoupled last layer is applied around it); ``bits``
    ([4, 2, 1.58, 1]); ``decoupled_last_layer_bits`` (8; 0 = no decoupled variants) — every
    (method, bits) is also run with the last layer at this width (§IV-C);
    ``calibration_samples`` (1024) — drawn from the target's members only, the same set
    for every method (§IV-A); ``grid`` ({}) — :class:`~mis.quant.QuantConfig`
    grid options (``range_method``, ``include_zero``, ...); ``options`` ({}) —
    ``options.<method>`` is that method's ``method_options`` (the string ``"none"`` stands
    for ``None``, which TOML cannot write: ``head_stem_bits = "none"`` for BRECQ).
``[attack]``
    ``attacks`` (["lira_online", "lira_offline", "rmia", "loss"]); ``n_aug`` (2) — queries
    (1, 2 or 18, :func:`~mis.train.augmentation_queries`); ``online_fixed_variance`` (false)
    and ``offline_fixed_variance`` (true) — the paper's "Online" and "Offline fixed variance"
    (§IV-A, Fig. 3); ``rmia_mode`` ("offline"), ``rmia_a`` (0.3), ``rmia_gamma`` (2.0);
    ``quantize_shadows`` (false) — the paper's threat model quantizes the target only; true
    quantizes every shadow with the target's method and bit width (each calibrated on its own
    members).
``[metrics]``
    ``fprs`` ([0.001, 0.01]); ``n_resamples`` (1000) — bootstrap resamples of every CI and
    paired test; ``confidence_level`` (0.95); ``method`` ("percentile" or "bca");
    ``fpr_min`` (1e-5, log-AUC); ``alpha`` (0.05) — Holm family-wise level;
    ``band_resamples`` (200) — resamples of the ROC confidence bands; ``band_points`` (40).
``[report]``
    The verdict that opens ``report.md`` (:func:`mis.studies.audit.analysis.verdict`):
    ``attack`` ("" = ``lira_online`` when configured, else the first attack) — the attack
    whose TPR at the lowest FPR level ranks the quantizers; ``max_accuracy_drop`` (0.01) —
    the accuracy budget: a quantizer is recommended only if its mean test-accuracy drop
    against full precision is at most this (a fraction: 0.01 = one percentage point).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from mis._callables import is_callable_spec, resolve_callable, spec_label
from mis._validation import (
    TERNARY_BITS,
    bit_width,
    boolean,
    integer,
    plain,
    probability,
    real,
    sequence,
    string,
    table,
)
from mis.exceptions import MisValueError
from mis.quant import QuantConfig, available_methods, get_method, method_label
from mis.quant.user import QUANTIZER_CALL, register_quantizer
from mis.studies._common import load_toml, override_sections, sections_dict
from mis.train.config import TrainConfig
from mis.train.models import available_models

__all__ = [
    "ATTACKS",
    "ATTACK_LABELS",
    "AttackSection",
    "Config",
    "DataSection",
    "MetricsSection",
    "ModelSection",
    "QuantSection",
    "ReportSection",
    "StudySection",
    "TrainSection",
    "Variant",
    "bits_label",
    "default_config",
    "load_config",
]

ATTACKS = ("lira_online", "lira_offline", "rmia", "loss")
#: Display names of the attacks.
ATTACK_LABELS = {
    "lira_online": "LiRA online",
    "lira_offline": "LiRA offline",
    "rmia": "RMIA",
    "loss": "loss threshold",
}
DATASETS = (
    "digits",
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "tinyimagenet",
    "idx",
    "npz",
    "synthetic",
    "callable",
)
PAPER_METHODS = ("rtn", "adaround", "brecq", "obc", "gptq")
FP = "fp"
#: In ``[quant.options.<method>]``, the string that stands for ``None`` (TOML has no null).
NONE = "none"
#: Keys of ``[quant.grid]``: the grid options of :class:`~mis.quant.QuantConfig`.
GRID_KEYS = (
    "per_channel",
    "symmetric",
    "range_method",
    "include_zero",
    "norm",
    "n_candidates",
    "shrink_step",
    "first_layer_bits",
)


def _method_key(method: str) -> str:
    """A method's name in variant keys and store paths: ``"pkg.mod:my_q"`` → ``"pkg.mod-my_q"``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", method) if is_callable_spec(method) else method


def bits_label(bits) -> str:
    """``4`` → "4", ``1.58`` → "1.58"."""
    return "1.58" if bits == TERNARY_BITS else str(int(bits))


def _open_unit(value, key):
    return probability(value, key)


# ------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudySection:
    name: str = "audit"
    seed: int = 0
    shadows: int = 64
    targets: int = 10
    pkeep: float = 0.5
    device: str = "auto"
    torch_threads: int = 0
    chunk_size: int = 16
    save_logits: bool = True

    def __post_init__(self):
        string(self.name, "study.name")
        integer(self.seed, "study.seed", 0)
        integer(self.shadows, "study.shadows", 2)
        integer(self.targets, "study.targets", 1)
        probability(self.pkeep, "study.pkeep")
        string(self.device, "study.device")
        integer(self.torch_threads, "study.torch_threads", 0)
        integer(self.chunk_size, "study.chunk_size", 1)
        boolean(self.save_logits, "study.save_logits")
        m = self.shadows + self.targets
        n_in = self.pkeep * m
        if abs(n_in - round(n_in)) > 1e-9:
            raise MisValueError(
                f"study.pkeep · (study.shadows + study.targets) must be an integer (every example "
                f"IN for exactly that many models); got {self.pkeep} · {m} = {n_in:g}"
            )
        # the worst example has all targets on one side: its shadows must still include an
        # IN and an OUT model (online LiRA needs both)
        n_in = round(n_in)
        if n_in - self.targets < 1 or (m - n_in) - self.targets < 1:
            raise MisValueError(
                f"study.shadows is too small for study.targets = {self.targets}: an example IN "
                f"(or OUT) for every target would have no IN (or OUT) shadow; need "
                f"pkeep·(shadows+targets) - targets >= 1 on both sides; got shadows="
                f"{self.shadows}, targets={self.targets}, pkeep={self.pkeep}"
            )

    @property
    def n_models(self) -> int:
        return self.shadows + self.targets


@dataclasses.dataclass(frozen=True)
class DataSection:
    ALIASES: ClassVar[dict] = {"name": "source"}

    source: str = "cifar10"
    loader: str = ""
    root: str = ""
    path: str = ""
    n_examples: int = 0
    n_test: int = 0
    test_size: int = 0
    synthetic_n: int = 2048
    synthetic_n_test: int = 512
    synthetic_shape: tuple = (3, 32, 32)
    synthetic_classes: int = 10
    synthetic_noise: float = 1.0

    def __post_init__(self):
        string(self.source, "data.source", DATASETS)
        string(self.loader, "data.loader")
        if self.source == "callable":
            if not self.loader:
                raise MisValueError(
                    "data.loader must name your loader as 'package.module:load' "
                    "(data.source = 'callable')"
                )
            resolve_callable(self.loader, "data.loader", args=(), call="load()")
        elif self.loader:
            raise MisValueError(
                f"data.loader is read only with data.source = 'callable'; got data.source = "
                f"{self.source!r}"
            )
        string(self.root, "data.root")
        string(self.path, "data.path")
        integer(self.n_examples, "data.n_examples", 0)
        integer(self.n_test, "data.n_test", 0)
        integer(self.test_size, "data.test_size", 0)
        integer(self.synthetic_n, "data.synthetic_n", 4)
        integer(self.synthetic_n_test, "data.synthetic_n_test", 1)
        shape = sequence(
            self.synthetic_shape,
            "data.synthetic_shape",
            lambda v, k: integer(v, k, 1),
            min_len=3,
            unique=False,
        )
        if len(shape) != 3:
            raise MisValueError(
                f"data.synthetic_shape must be [channels, height, width]; got {list(shape)!r}"
            )
        object.__setattr__(self, "synthetic_shape", shape)
        integer(self.synthetic_classes, "data.synthetic_classes", 2)
        real(self.synthetic_noise, "data.synthetic_noise", 0, open_lo=True)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    name: str = "resnet18"
    factory: str = ""
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        string(self.name, "model.name", available_models())
        string(self.factory, "model.factory")
        object.__setattr__(self, "options", table(self.options, "model.options"))
        if self.factory:
            kwargs = {"n_classes": 2, "input_shape": (1,), **self.options}
            resolve_callable(
                self.factory,
                "model.factory",
                kwargs=kwargs,
                call="make_model(n_classes=..., input_shape=..., **model.options)",
            )

    @property
    def label(self) -> str:
        """The architecture for reports: ``name``, or the factory's spec."""
        return spec_label(self.factory) if self.factory else self.name


#: The fields of :class:`~mis.train.TrainConfig` that ``[train]`` exposes (all but the
#: Adam constants), with the defaults of :meth:`TrainConfig.zhang2025`.
_TRAIN_DEFAULTS = {
    f.name: getattr(TrainConfig.zhang2025(), f.name)
    for f in dataclasses.fields(TrainConfig)
    if f.name not in ("betas", "eps")
}


#: The documented call of ``train.fn``.
TRAIN_CALL = "fit(model, x, y, config, seed)"


def _check_train(section) -> None:
    string(section.trainer, "train.trainer", ("auto", "ensemble", "plain"))
    string(section.fn, "train.fn")
    if section.fn:
        resolve_callable(section.fn, "train.fn", args=(None,) * 5, call=TRAIN_CALL)
        if section.trainer == "ensemble":
            raise MisValueError(
                "train.trainer = 'ensemble' trains many models at once with our loop; with "
                "train.fn set, leave train.trainer = 'auto' (one model per job)"
            )
    integer(section.batch_size, "train.batch_size", 0)
    try:
        section.train_config()
    except MisValueError as exc:
        raise MisValueError(f"[train]: {exc}") from None


def _train_config(section) -> TrainConfig:
    """The :class:`~mis.train.TrainConfig` of the ``[train]`` table (``batch_size = 0``: full
    batch)."""
    kw = {name: getattr(section, name) for name in _TRAIN_DEFAULTS}
    kw["batch_size"] = kw["batch_size"] or None
    return TrainConfig(**kw)


#: ``[train]``: ``trainer`` plus the exposed :class:`~mis.train.TrainConfig` fields, derived
#: from that class so the two never drift apart.
TrainSection = dataclasses.make_dataclass(
    "TrainSection",
    [
        ("trainer", str, dataclasses.field(default="auto")),
        ("fn", str, dataclasses.field(default="")),
    ]
    + [(name, Any, dataclasses.field(default=value)) for name, value in _TRAIN_DEFAULTS.items()],
    namespace={
        "__post_init__": _check_train,
        "train_config": _train_config,
        "__doc__": "``trainer`` plus the :class:`~mis.train.TrainConfig` fields (default: "
        "Zhang et al.).",
    },
    frozen=True,
)
TrainSection.__module__ = __name__


@dataclasses.dataclass(frozen=True)
class QuantSection:
    methods: tuple = PAPER_METHODS
    bits: tuple = (4, 2, 1.58, 1)
    decoupled_last_layer_bits: Any = 8
    calibration_samples: int = 1024
    grid: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        methods = sequence(self.methods, "quant.methods", string, min_len=0)
        for i, m in enumerate(methods):
            if is_callable_spec(m):
                # the user's quantizer: registered under its spec (in every process that
                # reads this configuration)
                fn = resolve_callable(
                    m,
                    f"quant.methods[{i}]",
                    args=(None,),
                    kwargs={"bits": 4, "calibration": None},
                    call=QUANTIZER_CALL,
                )
                register_quantizer(m, fn)  # label: the function's name
                continue
            try:
                get_method(m)
            except MisValueError:
                raise MisValueError(
                    f"quant.methods[{i}] = {m!r} is not a registered quantization method; "
                    f"available methods: {list(available_methods())}"
                ) from None
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "bits", sequence(self.bits, "quant.bits", bit_width, min_len=0))
        d = self.decoupled_last_layer_bits
        if d != 0:
            d = bit_width(d, "quant.decoupled_last_layer_bits")
        object.__setattr__(self, "decoupled_last_layer_bits", d)
        integer(self.calibration_samples, "quant.calibration_samples", 1)
        grid = table(self.grid, "quant.grid")
        bad = sorted(set(grid) - set(GRID_KEYS))
        if bad:
            raise MisValueError(
                f"unknown key 'quant.grid.{bad[0]}'; valid keys: {sorted(GRID_KEYS)}"
            )
        object.__setattr__(self, "grid", grid)
        options = table(self.options, "quant.options")
        for m, opts in options.items():
            if not isinstance(opts, dict):
                raise MisValueError(f"quant.options.{m} must be a table; got {opts!r}")
            # TOML has no null: the string "none" stands for None (e.g. BRECQ's
            # head_stem_bits = "none" switches its 8-bit stem and head off)
            options[m] = {k: (None if v == NONE else v) for k, v in opts.items()}
        object.__setattr__(self, "options", options)


@dataclasses.dataclass(frozen=True)
class AttackSection:
    attacks: tuple = ATTACKS
    n_aug: int = 2
    online_fixed_variance: bool = False
    offline_fixed_variance: bool = True
    rmia_mode: str = "offline"
    rmia_a: float = 0.3
    rmia_gamma: float = 2.0
    quantize_shadows: bool = False

    def __post_init__(self):
        attacks = sequence(self.attacks, "attack.attacks", lambda v, k: string(v, k, ATTACKS))
        object.__setattr__(self, "attacks", attacks)
        if self.n_aug not in (1, 2, 18) or isinstance(self.n_aug, bool):
            raise MisValueError(f"attack.n_aug must be 1, 2 or 18; got {self.n_aug!r}")
        boolean(self.online_fixed_variance, "attack.online_fixed_variance")
        boolean(self.offline_fixed_variance, "attack.offline_fixed_variance")
        string(self.rmia_mode, "attack.rmia_mode", ("offline", "online"))
        real(self.rmia_a, "attack.rmia_a", 0, 1)
        real(self.rmia_gamma, "attack.rmia_gamma", 0, open_lo=True)
        boolean(self.quantize_shadows, "attack.quantize_shadows")


@dataclasses.dataclass(frozen=True)
class MetricsSection:
    fprs: tuple = (1e-3, 1e-2)
    n_resamples: int = 1000
    confidence_level: float = 0.95
    method: str = "percentile"
    fpr_min: float = 1e-5
    alpha: float = 0.05
    band_resamples: int = 200
    band_points: int = 40

    def __post_init__(self):
        object.__setattr__(self, "fprs", sequence(self.fprs, "metrics.fprs", _open_unit))
        integer(self.n_resamples, "metrics.n_resamples", 10)
        probability(self.confidence_level, "metrics.confidence_level")
        string(self.method, "metrics.method", ("percentile", "bca"))
        probability(self.fpr_min, "metrics.fpr_min")
        probability(self.alpha, "metrics.alpha")
        integer(self.band_resamples, "metrics.band_resamples", 10)
        integer(self.band_points, "metrics.band_points", 2)


@dataclasses.dataclass(frozen=True)
class ReportSection:
    attack: str = ""
    max_accuracy_drop: float = 0.01

    def __post_init__(self):
        if self.attack != "":
            string(self.attack, "report.attack", ATTACKS)
        real(self.max_accuracy_drop, "report.max_accuracy_drop", 0, 1)


#: The tables of a configuration file and the section each one fills.
SECTIONS = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "quant": QuantSection,
    "attack": AttackSection,
    "metrics": MetricsSection,
    "report": ReportSection,
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model variant of a target: full precision, or a quantization.

    ``quant`` is the validated :class:`~mis.quant.QuantConfig` of the variant (``None`` for
    full precision); ``method``, ``bits`` and ``last_layer_bits`` are read from it.
    """

    key: str
    quant: QuantConfig | None = None

    @property
    def is_fp(self) -> bool:
        return self.quant is None

    @property
    def method(self) -> str | None:
        return None if self.quant is None else self.quant.method

    @property
    def bits(self):
        return None if self.quant is None else self.quant.bits

    @property
    def last_layer_bits(self):
        return None if self.quant is None else self.quant.last_layer_bits

    @property
    def label(self) -> str:
        if self.is_fp:
            return "full precision"
        s = f"{method_label(self.method)} {bits_label(self.bits)}-bit"
        if self.last_layer_bits is not None:
            s += f" (last {bits_label(self.last_layer_bits)}-bit)"
        return s

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "method": self.method,
            "bits": self.bits,
            "last_layer_bits": self.last_layer_bits,
            "label": self.label,
        }


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole audit; see the module docstring for every key and its default."""

    study: StudySection = dataclasses.field(default_factory=StudySection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    quant: QuantSection = dataclasses.field(default_factory=QuantSection)
    attack: AttackSection = dataclasses.field(default_factory=AttackSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)
    report: ReportSection = dataclasses.field(default_factory=ReportSection)

    def __post_init__(self):
        if self.report.attack and self.report.attack not in self.attack.attacks:
            raise MisValueError(
                f"report.attack must be one of attack.attacks {list(self.attack.attacks)}; "
                f"got {self.report.attack!r}"
            )
        object.__setattr__(self, "_variants", tuple(self._build_variants()))

    @property
    def verdict_attack(self) -> str:
        """The attack of the verdict: ``report.attack``, else LiRA online when configured,
        else the first attack."""
        if self.report.attack:
            return self.report.attack
        return "lira_online" if "lira_online" in self.attack.attacks else self.attack.attacks[0]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: Config | None = None) -> Config:
        """Override ``base`` (default: :class:`Config` defaults) with the sections of ``d``."""
        return override_sections(base or cls(), d, SECTIONS)

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys changed: ``cfg.replace(study={"targets": 2})``."""
        return Config.from_dict(sections, self)

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON / TOML-compatible) nested dict."""
        return sections_dict(self, SECTIONS)

    # -- derived --------------------------------------------------------------------------
    def _build_variants(self):
        """Full precision, then method × bits × (plain, decoupled last layer), each with its
        :class:`~mis.quant.QuantConfig` (built, and so checked, here only)."""
        q = self.quant
        yield Variant(FP)
        d = q.decoupled_last_layer_bits
        for m in q.methods:
            for b in q.bits:
                for last in (None, d) if d else (None,):
                    key = f"{_method_key(m)}_{bits_label(b)}b" + (
                        f"_last{bits_label(last)}" if last else ""
                    )
                    try:
                        qc = QuantConfig(
                            bits=b,
                            method=m,
                            last_layer_bits=last,
                            method_options=dict(q.options.get(m, {})),
                            **q.grid,
                        )
                    except MisValueError as exc:
                        raise MisValueError(f"[quant] {key}: {exc}") from None
                    yield Variant(key, qc)

    def variants(self) -> list[Variant]:
        """Full precision first, then method × bits × (plain, decoupled last layer)."""
        return list(self._variants)

    def variant(self, key: str) -> Variant:
        """The variant named ``key``."""
        for v in self._variants:
            if v.key == key:
                return v
        raise MisValueError(
            f"variant must be one of {[v.key for v in self._variants]}; got {key!r}"
        )

    def target_models(self) -> list[int]:
        """Model indices of the targets (after the shadows)."""
        s = self.study.shadows
        return list(range(s, s + self.study.targets))


def load_config(path, base: Config | None = None) -> Config:
    """Read a TOML file; missing keys keep the defaults of ``base`` (default: the paper's)."""
    return Config.from_dict(load_toml(path), base)


#: The embedded default (``experiments/digits.toml`` holds the same settings; a test checks).
DIGITS = {
    "study": {
        "name": "digits",
        "seed": 0,
        "shadows": 16,
        "targets": 4,
        "pkeep": 0.5,
        "device": "auto",
        "torch_threads": 1,
        "chunk_size": 20,
        "save_logits": True,
    },
    "data": {"name": "digits", "test_size": 297},
    "model": {"name": "digits_cnn", "options": {"batchnorm": False}},
    "train": {
        "trainer": "auto",
        "epochs": 30,
        "lr": 0.05,
        "batch_size": 64,
        "augment": False,
    },
    "quant": {
        "methods": list(PAPER_METHODS),
        "bits": [4, 2, 1.58, 1],
        "decoupled_last_layer_bits": 8,
        "calibration_samples": 512,
        "options": {
            "adaround": {"n_iter": 100},
            "brecq": {"n_iter": 100},
        },
    },
    "attack": {"n_aug": 2},
    "metrics": {"n_resamples": 1000, "band_resamples": 200},
}


def default_config() -> Config:
    """The embedded default: the digits CNN with RTN and the PTQ methods of the paper
    (``experiments/digits.toml``)."""
    return Config.from_dict(plain(DIGITS))
