"""Configuration of the synthetic study (Aubinais et al. 2025, §5.1), from TOML or in code.

Every option has a default, documented below; :func:`full_config` is the paper's study and
:func:`demo_config` the reduced one behind ``mis demo``. A TOML file (read with the standard
library's :mod:`tomllib`) overrides the defaults of :func:`full_config` section by section;
an unknown section or key, or a value of the wrong type or range, raises
:class:`~mis.exceptions.MisValueError` naming the key (``data.n_val``, ...).

Sections and keys (defaults = the full study)
---------------------------------------------
``[study]``
    ``name = "aubinais2025-synthetic"`` — label in the report.
    ``seed = 0`` — master seed; every mixture, training set, initialisation, validation /
    test / non-member set, discriminator and bootstrap seed derives from it.
    ``runs = 300`` — independent runs (models) per setting (§5.1.1: k_run = 300).
    ``chunk_size = 50`` — runs trained together as one resumable job (one vmap ensemble).
    ``workers = 2`` — worker processes (1: everything in this process).
``[data]``
    ``dim = 128``; ``k_modes = [6, 8, 16]``; ``sigmas = [1.5, 2.0, 3.0]`` — the 3 × 3 grid of
    mixture settings; ``centre_scale = 1.0`` — cluster centres ~ N(0, centre_scale² I) (the
    paper does not say how centres are drawn);
    ``n_train = 128`` — training samples per run (n of §5.1.1);
    ``n_val = 512`` — validation samples for r_Q, shared by the runs of a setting;
    ``n_test = 4096`` — held-out samples for the accuracies of Table 2.
``[train]``
    ``epochs = 3000``; ``lr = 1e-4`` — full-batch Adam (§5.1.1).
``[trajectory]``
    ``quantizers = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit",
    "4bit", "5bit"]`` (Appendix D); ``every = 1`` — a checkpoint after every epoch (the
    paper evaluates the quantized validation loss "at each validation step"; Lightning
    validates once per epoch); ``keep_best = 64`` — distinct lowest-loss quantized
    checkpoints kept per run and quantizer (0 = keep every checkpoint; Appendix F.3 shows
    the maximum of Λ_kk at low-loss checkpoints); ``params = "all"`` — quantize weight and
    bias (θ̄ = Q(θ)), or ``"weights"``.
``[mis]``
    ``enabled = true``; ``include_original = true`` — also the unquantized model;
    ``n_members = 128`` — members (and as many fresh non-members) per run given to the
    discriminator; ``hidden = [256, 256]``, ``epochs = 50``, ``batch_size = 256``,
    ``lr = 1e-3``, ``patience = 10``, ``test_fraction = 0.3``, ``val_fraction = 0.1`` —
    :func:`mis.security.mis_baseline` (its defaults).
``[analysis]``
    ``k_runs = [5, 10, 15, 20, 50, 100]`` — subset sizes of the stability analysis (Fig. 1;
    sizes above ``runs`` are dropped); ``n_subsets = 100``; ``n_resamples = 2000`` —
    bootstrap resamples of runs; ``confidence_level = 0.95``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mis.exceptions import MisValueError

__all__ = [
    "AnalysisConfig",
    "DataConfig",
    "MisConfig",
    "StudyConfig",
    "SyntheticConfig",
    "TrainSection",
    "TrajectoryConfig",
    "demo_config",
    "full_config",
    "load_config",
]

#: The quantizers of Aubinais et al. (Appendix D), as named by :func:`mis.quant.weight_quantizer`.
AUBINAIS_QUANTIZERS = (
    "sign",
    "ternary-33",
    "ternary-50",
    "ternary-90",
    "2bit",
    "3bit",
    "4bit",
    "5bit",
)


# ------------------------------------------------------------------------------------------
# checks (the message names the key)
# ------------------------------------------------------------------------------------------
def _int(value, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MisValueError(f"{key} must be an integer >= {minimum}; got {value!r}")
    return value


def _float(value, key: str, lo: float = -math.inf, hi: float = math.inf, open_lo=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisValueError(f"{key} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi or (open_lo and v == lo):
        lo_s = f"> {lo}" if open_lo else f">= {lo}"
        raise MisValueError(f"{key} must be a finite number {lo_s} and <= {hi}; got {value!r}")
    return v


def _bool(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise MisValueError(f"{key} must be true or false; got {value!r}")
    return value


def _str(value, key: str, choices=None) -> str:
    if not isinstance(value, str) or (choices is not None and value not in choices):
        want = f"one of {list(choices)}" if choices is not None else "a string"
        raise MisValueError(f"{key} must be {want}; got {value!r}")
    return value


def _list(value, key: str, item, min_len: int = 1) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise MisValueError(f"{key} must be a list; got {value!r}")
    if len(value) < min_len:
        raise MisValueError(f"{key} must hold at least {min_len} item(s); got {list(value)!r}")
    out = tuple(item(v, f"{key}[{i}]") for i, v in enumerate(value))
    if len(set(out)) != len(out):
        raise MisValueError(f"{key} must not repeat items; got {list(value)!r}")
    return out


# ------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudyConfig:
    name: str = "aubinais2025-synthetic"
    seed: int = 0
    runs: int = 300
    chunk_size: int = 50
    workers: int = 2

    def __post_init__(self):
        _str(self.name, "study.name")
        _int(self.seed, "study.seed", 0)
        _int(self.runs, "study.runs", 2)
        _int(self.chunk_size, "study.chunk_size", 1)
        _int(self.workers, "study.workers", 1)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dim: int = 128
    k_modes: tuple[int, ...] = (6, 8, 16)
    sigmas: tuple[float, ...] = (1.5, 2.0, 3.0)
    centre_scale: float = 1.0
    n_train: int = 128
    n_val: int = 512
    n_test: int = 4096

    def __post_init__(self):
        _int(self.dim, "data.dim", 1)
        object.__setattr__(
            self, "k_modes", _list(self.k_modes, "data.k_modes", lambda v, k: _int(v, k, 2))
        )
        object.__setattr__(
            self,
            "sigmas",
            _list(self.sigmas, "data.sigmas", lambda v, k: _float(v, k, 0.0, open_lo=True)),
        )
        _float(self.centre_scale, "data.centre_scale", 0.0, open_lo=True)
        _int(self.n_train, "data.n_train", 2)
        _int(self.n_val, "data.n_val", 3)
        _int(self.n_test, "data.n_test", 1)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    epochs: int = 3000
    lr: float = 1e-4

    def __post_init__(self):
        _int(self.epochs, "train.epochs", 1)
        _float(self.lr, "train.lr", 0.0, open_lo=True)


@dataclasses.dataclass(frozen=True)
class TrajectoryConfig:
    quantizers: tuple[str, ...] = AUBINAIS_QUANTIZERS
    every: int = 1
    keep_best: int = 64
    params: str = "all"

    def __post_init__(self):
        q = _list(
            self.quantizers,
            "trajectory.quantizers",
            lambda v, k: _str(v, k, AUBINAIS_QUANTIZERS),
            min_len=3,
        )
        object.__setattr__(self, "quantizers", q)
        _int(self.every, "trajectory.every", 1)
        _int(self.keep_best, "trajectory.keep_best", 0)
        _str(self.params, "trajectory.params", ("all", "weights"))


@dataclasses.dataclass(frozen=True)
class MisConfig:
    enabled: bool = True
    include_original: bool = True
    n_members: int = 128
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 10
    test_fraction: float = 0.3
    val_fraction: float = 0.1

    def __post_init__(self):
        _bool(self.enabled, "mis.enabled")
        _bool(self.include_original, "mis.include_original")
        _int(self.n_members, "mis.n_members", 1)
        object.__setattr__(
            self,
            "hidden",
            tuple(_int(v, f"mis.hidden[{i}]", 1) for i, v in enumerate(_seq(self.hidden))),
        )
        _int(self.epochs, "mis.epochs", 1)
        _int(self.batch_size, "mis.batch_size", 1)
        _float(self.lr, "mis.lr", 0.0, open_lo=True)
        _int(self.patience, "mis.patience", 1)
        _float(self.test_fraction, "mis.test_fraction", 0.0, 1.0, open_lo=True)
        if self.test_fraction >= 1:
            raise MisValueError(f"mis.test_fraction must be < 1; got {self.test_fraction!r}")
        _float(self.val_fraction, "mis.val_fraction", 0.0, 0.9)


def _seq(value):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise MisValueError(f"mis.hidden must be a list of layer widths; got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    k_runs: tuple[int, ...] = (5, 10, 15, 20, 50, 100)
    n_subsets: int = 100
    n_resamples: int = 2000
    confidence_level: float = 0.95

    def __post_init__(self):
        object.__setattr__(
            self, "k_runs", _list(self.k_runs, "analysis.k_runs", lambda v, k: _int(v, k, 1))
        )
        _int(self.n_subsets, "analysis.n_subsets", 1)
        _int(self.n_resamples, "analysis.n_resamples", 10)
        _float(self.confidence_level, "analysis.confidence_level", 0.0, 1.0, open_lo=True)
        if self.confidence_level >= 1:
            raise MisValueError(
                f"analysis.confidence_level must be < 1; got {self.confidence_level!r}"
            )


def override_sections(base, d, sections: dict[str, type]):
    """``base`` (a frozen dataclass of section dataclasses) with the keys of the tables of
    ``d`` replaced; an unknown section or key raises ``ValueError`` naming it."""
    if not isinstance(d, Mapping):
        raise MisValueError(f"a configuration must be a table of sections; got {d!r}")
    unknown = sorted(set(d) - set(sections))
    if unknown:
        raise MisValueError(
            f"unknown configuration section {unknown[0]!r}; valid sections: {list(sections)}"
        )
    parts = {}
    for section, klass in sections.items():
        current = getattr(base, section)
        values = d.get(section, {})
        if not isinstance(values, Mapping):
            raise MisValueError(f"{section} must be a table ([{section}]); got {values!r}")
        fields = {f.name for f in dataclasses.fields(klass)}
        bad = sorted(set(values) - fields)
        if bad:
            raise MisValueError(
                f"unknown configuration key '{section}.{bad[0]}'; valid keys of "
                f"[{section}]: {sorted(fields)}"
            )
        parts[section] = dataclasses.replace(current, **values) if values else current
    return type(base)(**parts)


def load_toml(path) -> dict:
    """The tables of a TOML file; a missing or invalid file raises ``ValueError``."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise MisValueError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MisValueError(f"config file {p} is not valid TOML: {exc}") from None


_SECTIONS = {
    "study": StudyConfig,
    "data": DataConfig,
    "train": TrainSection,
    "trajectory": TrajectoryConfig,
    "mis": MisConfig,
    "analysis": AnalysisConfig,
}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """The whole study; see the module docstring for every key and its default."""

    study: StudyConfig = dataclasses.field(default_factory=StudyConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    trajectory: TrajectoryConfig = dataclasses.field(default_factory=TrajectoryConfig)
    mis: MisConfig = dataclasses.field(default_factory=MisConfig)
    analysis: AnalysisConfig = dataclasses.field(default_factory=AnalysisConfig)

    def __post_init__(self):
        if self.mis.enabled and self.mis.n_members > self.data.n_train:
            raise MisValueError(
                f"mis.n_members must be <= data.n_train ({self.data.n_train}); "
                f"got {self.mis.n_members}"
            )
        if self.trajectory.every > self.train.epochs:
            raise MisValueError(
                f"trajectory.every must be <= train.epochs ({self.train.epochs}); "
                f"got {self.trajectory.every}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: SyntheticConfig | None = None) -> SyntheticConfig:
        """Override ``base`` (default: the full study) with the sections of ``d``."""
        return override_sections(base or cls(), d, _SECTIONS)

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON / TOML-compatible) nested dict."""

        def plain(x):
            if isinstance(x, tuple):
                return [plain(v) for v in x]
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            return x

        return {s: plain(dataclasses.asdict(getattr(self, s))) for s in _SECTIONS}

    def settings(self) -> list[tuple[int, float]]:
        """The (k_modes, sigma) pairs, σ varying slowest (the rows of Table 2)."""
        return [(k, s) for s in self.data.sigmas for k in self.data.k_modes]


def full_config(**overrides) -> SyntheticConfig:
    """The paper's study (§5.1.1): 3 × 3 settings, 300 runs, 3,000 epochs, 8 quantizers."""
    return SyntheticConfig.from_dict(overrides) if overrides else SyntheticConfig()


def demo_config() -> SyntheticConfig:
    """The reduced study of ``mis demo`` (about 1–3 minutes on a 2-core CPU).

    One mixture setting (k_modes = 8, σ = 2, the example of §5.1.2) with 100 runs of the
    paper's model and training (n = 128, 3,000 epochs of full-batch Adam at lr 1e-4), the 8
    quantizers, every-epoch checkpoints, and the MIS baseline with the full study's
    discriminator; everything else as in :func:`full_config`.
    """
    return SyntheticConfig.from_dict(
        {
            "study": {"name": "mis demo (reduced synthetic study)", "runs": 100},
            "data": {"k_modes": [8], "sigmas": [2.0]},
            "analysis": {"k_runs": [5, 10, 20, 50], "n_resamples": 1000},
        }
    )


def load_config(path, base: SyntheticConfig | None = None) -> SyntheticConfig:
    """Read a TOML file; missing keys keep the defaults of ``base`` (default: full study)."""
    return SyntheticConfig.from_dict(load_toml(path), base)
