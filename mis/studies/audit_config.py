"""Configuration of the PTQ privacy audit (Zhang et al. 2025), from TOML or in code.

Every key has a default; :func:`default_config` is the embedded default (the digits CNN,
``experiments/digits.toml``), :func:`paper_config` the paper's settings for one data set and
model. A TOML file overrides the defaults of :class:`AuditConfig` section by section; an
unknown section or key, or a value of the wrong type or range, raises
:class:`~mis.exceptions.MisValueError` naming the key (``train.epochs``, ...).

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
    ``name`` ("cifar10") — ``digits``, ``cifar10``, ``cifar100``, ``tinyimagenet``, ``npz``
    or ``synthetic``; ``root`` ("") — data directory (CIFAR, TinyImageNet), relative to the
    working directory; ``path`` ("") — the ``.npz`` file; ``n_examples`` (0 = all) — size of
    the audit pool (the training split, from which every model draws its members);
    ``n_test`` (0 = all) — test examples for the accuracy; ``test_size`` (0) — examples split
    off the pool as the test set when the data set has no test split (digits, npz without
    one); ``synthetic_*`` — the class-prototype images of ``name = "synthetic"``:
    ``synthetic_n`` (2048), ``synthetic_n_test`` (512), ``synthetic_shape`` ([3, 32, 32]),
    ``synthetic_classes`` (10), ``synthetic_noise`` (1.0).
``[model]``
    ``name`` ("resnet18"); ``options`` ({}) — constructor arguments; ``n_classes`` and
    ``in_channels`` (and ``size`` for ``digits_cnn``) are filled in from the data.
``[train]``
    ``trainer`` ("auto": the vmap ensemble trainer for BatchNorm-free models, else the plain
    trainer) and every :class:`~mis.train.TrainConfig` field, default
    :meth:`TrainConfig.zhang2025` (SGD 0.9, wd 5e-4, lr 0.1 cosine, 100 epochs, batch 128,
    flip + crop); ``batch_size = 0`` means full batch.
``[quant]``
    ``methods`` (["rtn", "adaround", "brecq", "obc", "gptq"]) — names in the
    :mod:`mis.quant` registry; ``bits`` ([4, 2, 1.58, 1]); ``decoupled_last_layer_bits``
    (8; 0 = no decoupled variants) — every (method, bits) is also run with the last layer at
    this width (§IV-C); ``calibration_samples`` (1024) — drawn from the target's members only,
    the same set for every method (§IV-A); ``grid`` ({}) — :class:`~mis.quant.QuantConfig`
    grid options (``range_method``, ``include_zero``, ...); ``options`` ({}) —
    ``options.<method>`` is that method's ``method_options``.
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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from mis.exceptions import MisValueError
from mis.studies.config import _bool, _int, _list, _str, load_toml, override_sections

__all__ = [
    "ATTACKS",
    "AttackSection",
    "AuditConfig",
    "DataSection",
    "MetricsSection",
    "ModelSection",
    "QuantSection",
    "StudySection",
    "TrainSection",
    "Variant",
    "default_config",
    "load_audit_config",
]

ATTACKS = ("lira_online", "lira_offline", "rmia", "loss")
DATASETS = ("digits", "cifar10", "cifar100", "tinyimagenet", "npz", "synthetic")
PAPER_METHODS = ("rtn", "adaround", "brecq", "obc", "gptq")
FP = "fp"
#: Display names of the PTQ methods.
METHOD_LABELS = {
    "rtn": "RTN",
    "adaround": "AdaRound",
    "brecq": "BRECQ",
    "obc": "OBC",
    "gptq": "GPTQ",
}


# ------------------------------------------------------------------------------------------
# checks (the message names the key)
# ------------------------------------------------------------------------------------------


def _float(value, key: str, lo=-math.inf, hi=math.inf, open_lo=False, open_hi=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisValueError(f"{key} must be a number; got {value!r}")
    v = float(value)
    bad = not math.isfinite(v) or v < lo or v > hi or (open_lo and v == lo) or (open_hi and v == hi)
    if bad:
        a = "(" if open_lo else "["
        b = ")" if open_hi else "]"
        raise MisValueError(f"{key} must be a finite number in {a}{lo}, {hi}{b}; got {value!r}")
    return v


def _table(value, key: str) -> dict:
    if not isinstance(value, Mapping):
        raise MisValueError(f"{key} must be a table; got {value!r}")
    return {str(k): _plain(v) for k, v in value.items()}


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _bits(value, key: str):
    """1, 1.58 or an integer 2..16 (as the quantization API accepts)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisValueError(f"{key} must be 1, 1.58 or an integer 2..16; got {value!r}")
    if abs(float(value) - 1.58) < 1e-9:
        return 1.58
    if float(value).is_integer() and 1 <= value <= 16:
        return int(value)
    raise MisValueError(f"{key} must be 1, 1.58 or an integer 2..16; got {value!r}")


def bits_label(bits) -> str:
    """``4`` → "4", ``1.58`` → "1.58"."""
    return "1.58" if bits == 1.58 else str(int(bits))


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
        _str(self.name, "study.name")
        _int(self.seed, "study.seed", 0)
        _int(self.shadows, "study.shadows", 2)
        _int(self.targets, "study.targets", 1)
        _float(self.pkeep, "study.pkeep", 0, 1, open_lo=True, open_hi=True)
        _str(self.device, "study.device")
        _int(self.torch_threads, "study.torch_threads", 0)
        _int(self.chunk_size, "study.chunk_size", 1)
        _bool(self.save_logits, "study.save_logits")
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
    name: str = "cifar10"
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
        _str(self.name, "data.name", DATASETS)
        _str(self.root, "data.root")
        _str(self.path, "data.path")
        _int(self.n_examples, "data.n_examples", 0)
        _int(self.n_test, "data.n_test", 0)
        _int(self.test_size, "data.test_size", 0)
        _int(self.synthetic_n, "data.synthetic_n", 4)
        _int(self.synthetic_n_test, "data.synthetic_n_test", 1)
        shape = self.synthetic_shape
        if (
            isinstance(shape, (str, bytes))
            or not isinstance(shape, (list, tuple))
            or len(shape) != 3
        ):
            raise MisValueError(
                f"data.synthetic_shape must be [channels, height, width]; got {shape!r}"
            )
        shape = tuple(_int(v, f"data.synthetic_shape[{i}]", 1) for i, v in enumerate(shape))
        object.__setattr__(self, "synthetic_shape", shape)
        _int(self.synthetic_classes, "data.synthetic_classes", 2)
        _float(self.synthetic_noise, "data.synthetic_noise", 0, open_lo=True)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    name: str = "resnet18"
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from mis.train.models import _REGISTRY

        _str(self.name, "model.name", sorted(_REGISTRY))
        object.__setattr__(self, "options", _table(self.options, "model.options"))


_TRAIN_FIELDS = (
    "epochs",
    "lr",
    "optimizer",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "batch_size",
    "drop_last",
    "augment",
    "padding",
    "amp",
    "channels_last",
    "deterministic",
)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """``trainer`` plus the :class:`~mis.train.TrainConfig` fields (default: Zhang et al.)."""

    trainer: str = "auto"
    epochs: int = 100
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    batch_size: int = 128
    drop_last: bool = False
    augment: bool = True
    padding: int = 4
    amp: bool = True
    channels_last: bool = True
    deterministic: bool = False

    def __post_init__(self):
        _str(self.trainer, "train.trainer", ("auto", "ensemble", "plain"))
        _int(self.batch_size, "train.batch_size", 0)
        try:
            self.train_config()
        except MisValueError as exc:
            raise MisValueError(f"[train]: {exc}") from None

    def train_config(self):
        from mis.train.trainer import TrainConfig

        kw = {f: getattr(self, f) for f in _TRAIN_FIELDS}
        kw["batch_size"] = kw["batch_size"] or None  # 0 = full batch
        return TrainConfig(**kw)


@dataclasses.dataclass(frozen=True)
class QuantSection:
    methods: tuple = PAPER_METHODS
    bits: tuple = (4, 2, 1.58, 1)
    decoupled_last_layer_bits: int = 8
    calibration_samples: int = 1024
    grid: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        methods = _list(self.methods, "quant.methods", lambda v, k: _str(v, k), min_len=0)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "bits", _list(self.bits, "quant.bits", _bits, min_len=0))
        d = self.decoupled_last_layer_bits
        if d != 0:
            d = _bits(d, "quant.decoupled_last_layer_bits")
        object.__setattr__(self, "decoupled_last_layer_bits", d)
        _int(self.calibration_samples, "quant.calibration_samples", 1)
        grid = _table(self.grid, "quant.grid")
        allowed = {"per_channel", "symmetric", "range_method", "include_zero", "norm",
                   "n_candidates", "shrink_step", "first_layer_bits"}  # fmt: skip
        bad = sorted(set(grid) - allowed)
        if bad:
            raise MisValueError(f"unknown key 'quant.grid.{bad[0]}'; valid keys: {sorted(allowed)}")
        object.__setattr__(self, "grid", grid)
        options = _table(self.options, "quant.options")
        for m, opts in options.items():
            if not isinstance(opts, dict):
                raise MisValueError(f"quant.options.{m} must be a table; got {opts!r}")
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
        object.__setattr__(
            self, "attacks", _list(self.attacks, "attack.attacks", lambda v, k: _str(v, k, ATTACKS))
        )
        if self.n_aug not in (1, 2, 18) or isinstance(self.n_aug, bool):
            raise MisValueError(f"attack.n_aug must be 1, 2 or 18; got {self.n_aug!r}")
        _bool(self.online_fixed_variance, "attack.online_fixed_variance")
        _bool(self.offline_fixed_variance, "attack.offline_fixed_variance")
        _str(self.rmia_mode, "attack.rmia_mode", ("offline", "online"))
        _float(self.rmia_a, "attack.rmia_a", 0, 1)
        _float(self.rmia_gamma, "attack.rmia_gamma", 0, open_lo=True)
        _bool(self.quantize_shadows, "attack.quantize_shadows")


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
        object.__setattr__(
            self,
            "fprs",
            _list(self.fprs, "metrics.fprs", lambda v, k: _float(v, k, 0, 1, True, True)),
        )
        _int(self.n_resamples, "metrics.n_resamples", 10)
        _float(self.confidence_level, "metrics.confidence_level", 0, 1, True, True)
        _str(self.method, "metrics.method", ("percentile", "bca"))
        _float(self.fpr_min, "metrics.fpr_min", 0, 1, True, True)
        _float(self.alpha, "metrics.alpha", 0, 1, True, True)
        _int(self.band_resamples, "metrics.band_resamples", 10)
        _int(self.band_points, "metrics.band_points", 2)


_SECTIONS = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "quant": QuantSection,
    "attack": AttackSection,
    "metrics": MetricsSection,
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One model variant of a target: full precision or (method, bits, last-layer bits)."""

    key: str
    method: str | None = None
    bits: float | None = None
    last_layer_bits: float | None = None

    @property
    def is_fp(self) -> bool:
        return self.method is None

    @property
    def label(self) -> str:
        if self.is_fp:
            return "full precision"
        s = f"{METHOD_LABELS.get(self.method, self.method)} {bits_label(self.bits)}-bit"
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
class AuditConfig:
    """The whole audit; see the module docstring for every key and its default."""

    study: StudySection = dataclasses.field(default_factory=StudySection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    quant: QuantSection = dataclasses.field(default_factory=QuantSection)
    attack: AttackSection = dataclasses.field(default_factory=AttackSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: AuditConfig | None = None) -> AuditConfig:
        """Override ``base`` (default: :class:`AuditConfig` defaults) with the sections of ``d``."""
        return override_sections(base or cls(), d, _SECTIONS)

    def replace(self, **sections: Mapping[str, Any]) -> AuditConfig:
        """A copy with some keys changed: ``cfg.replace(study={"targets": 2})``."""
        return AuditConfig.from_dict(sections, self)

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON / TOML-compatible) nested dict."""
        return {s: _plain(dataclasses.asdict(getattr(self, s))) for s in _SECTIONS}

    # -- derived --------------------------------------------------------------------------
    def variants(self) -> list[Variant]:
        """Full precision first, then method × bits × (plain, decoupled last layer)."""
        out = [Variant(FP)]
        d = self.quant.decoupled_last_layer_bits
        for m in self.quant.methods:
            for b in self.quant.bits:
                out.append(Variant(f"{m}_{bits_label(b)}b", m, b, None))
                if d:
                    out.append(Variant(f"{m}_{bits_label(b)}b_last{bits_label(d)}", m, b, d))
        return out

    def target_models(self) -> list[int]:
        """Model indices of the targets (after the shadows)."""
        s = self.study.shadows
        return list(range(s, s + self.study.targets))


def load_audit_config(path, base: AuditConfig | None = None) -> AuditConfig:
    """Read a TOML file; missing keys keep the defaults of ``base`` (default: the paper's)."""
    return AuditConfig.from_dict(load_toml(path), base)


#: The embedded default (``experiments/digits.toml`` holds the same settings; a test checks).
#: ``quant.methods`` is filled in by :func:`default_config`: rtn plus every PTQ method of the
#: paper that is available.
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
        "methods": ["rtn"],
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


def available_paper_methods() -> list[str]:
    """``rtn`` plus those of adaround, brecq, obc, gptq that are registered or importable."""
    import importlib

    quant = importlib.import_module("mis.quant")
    out = ["rtn"]
    for name in PAPER_METHODS[1:]:
        if name not in quant.available_methods():
            try:
                importlib.import_module(f"mis.quant.{name}")
            except ImportError:
                continue
        if name in quant.available_methods():
            out.append(name)
    return out


def default_config() -> AuditConfig:
    """The embedded default: the digits CNN (``experiments/digits.toml``) with rtn and every
    available PTQ method of the paper (:func:`available_paper_methods`)."""
    d = {k: dict(v) for k, v in DIGITS.items()}
    d["quant"]["methods"] = available_paper_methods()
    return AuditConfig.from_dict(d)
