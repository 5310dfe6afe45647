"""Configuration of the molecular study (Aubinais et al. 2025, §5.2), from TOML or in code.

Every key has a default (the paper's protocol where it gives one); a TOML file overrides
them section by section, and an unknown section or key, or a bad value, raises
:class:`~mis.exceptions.MisValueError` naming the key.

Sections and keys (defaults)
----------------------------
``[study]``
    ``name = "aubinais2025-molecular"``; ``seed = 0`` — master seed of every split,
    subsample, initialisation and bootstrap; ``runs = 10`` — runs per task, each on its own
    random ``subsample`` of the training part (§5.2.1: "repeated 10 times").
``[[tasks]]`` (an array of tables; default: FreeSolv and solubility)
    ``source`` — ``"freesolv"``, ``"solubility"`` (log S), ``"solubility-low"`` (binary),
    ``"csv"`` or ``"tdc"`` (:mod:`mis.chem.data`); ``name`` — label (default: from the
    source); ``path`` — the file of a ``csv`` / ``tdc`` task; ``kind`` — ``"regression"``
    or ``"classification"`` for those two (a bundled task's kind is fixed by its source);
    ``smiles_col = "smiles"``, ``target_col = "y"`` (``csv``); ``embeddings`` — optional
    ``npz`` path with an array ``x`` (n, d), one row per molecule in the task's order, used
    instead of the computed features.
``[features]``
    ``kinds = ["morgan", "descriptors"]``, ``radius = 2``, ``n_bits = 1024``
    (:func:`mis.chem.featurize`: the stand-in for the paper's pretrained embedders).
``[split]``
    ``val_fraction = 0.4`` — held out for r_Q and the performance metrics (§5.2.1);
    ``subsample = 0.9`` — fraction of the training part each run trains on.
``[train]``
    ``hidden = 128`` (two-layer MLP, §5.2.1); ``epochs = 500``; ``lr = 1e-3`` (Adam);
    ``batch_size = 64``; ``weight_decay = 0.0``. The paper gives neither the optimiser nor
    the batch size: these are our choices.
``[trajectory]``
    ``quantizers`` (Appendix D: Sign, 1.58b 33/50/90 %, 2–5 bits); ``every = 1``;
    ``keep_best = 64``; ``params = "all"`` — as in the synthetic study
    (:mod:`mis.studies.synthetic.config`).
``[analysis]``
    ``n_resamples = 2000`` — bootstrap resamples of runs; ``confidence_level = 0.95``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mis._validation import integer, real, sequence, string
from mis.chem import data as chem_data
from mis.exceptions import MisValueError
from mis.studies._common import (
    AnalysisSection,
    TrajectorySection,
    load_toml,
    override_sections,
    sections_dict,
)
from mis.train.config import TrainConfig

__all__ = [
    "SOURCES",
    "Config",
    "FeatureSection",
    "SplitSection",
    "StudySection",
    "TaskSpec",
    "TrainSection",
    "default_config",
    "load_config",
]

#: Task sources: bundled data sets (``mis[chem]``) and a user's own files.
SOURCES = ("freesolv", "solubility", "solubility-low", "csv", "tdc")
#: The kind of each bundled task (``kind`` is only read for ``csv`` / ``tdc`` tasks).
BUNDLED_KINDS = {
    "freesolv": "regression",
    "solubility": "regression",
    "solubility-low": "classification",
}


@dataclasses.dataclass(frozen=True)
class StudySection:
    name: str = "aubinais2025-molecular"
    seed: int = 0
    runs: int = 10

    def __post_init__(self):
        string(self.name, "study.name")
        integer(self.seed, "study.seed", 0)
        integer(self.runs, "study.runs", 2)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    source: str
    name: str = ""
    path: str = ""
    kind: str = "regression"
    smiles_col: str = "smiles"
    target_col: str = "y"
    embeddings: str = ""

    def __post_init__(self):
        string(self.source, "tasks.source", SOURCES)
        for key in ("name", "path", "smiles_col", "target_col", "embeddings"):
            string(getattr(self, key), f"tasks.{key}")
        string(self.kind, "tasks.kind", ("regression", "classification"))
        if self.source in ("csv", "tdc") and not self.path:
            raise MisValueError(f"tasks.path is required for a {self.source!r} task")
        if self.source in BUNDLED_KINDS:
            object.__setattr__(self, "kind", BUNDLED_KINDS[self.source])
        if not self.name:
            object.__setattr__(self, "name", Path(self.path).stem if self.path else self.source)

    def load(self):
        """The :class:`~mis.chem.MolecularTask`."""
        if self.source == "freesolv":
            return chem_data.load_freesolv()
        if self.source == "solubility":
            return chem_data.load_solubility("logS")
        if self.source == "solubility-low":
            return chem_data.load_solubility("low")
        if self.source == "csv":
            return chem_data.load_csv(
                self.path,
                smiles_col=self.smiles_col,
                target_col=self.target_col,
                kind=self.kind,
                name=self.name,
            )
        return chem_data.load_tdc(self.path, kind=self.kind, name=self.name)


@dataclasses.dataclass(frozen=True)
class FeatureSection:
    kinds: tuple[str, ...] = ("morgan", "descriptors")
    radius: int = 2
    n_bits: int = 1024

    def __post_init__(self):
        kinds = sequence(
            self.kinds, "features.kinds", lambda v, k: string(v, k, ("morgan", "descriptors"))
        )
        object.__setattr__(self, "kinds", kinds)
        integer(self.radius, "features.radius", 0)
        integer(self.n_bits, "features.n_bits", 8)


@dataclasses.dataclass(frozen=True)
class SplitSection:
    val_fraction: float = 0.4
    subsample: float = 0.9

    def __post_init__(self):
        real(self.val_fraction, "split.val_fraction", 0.05, 0.9)
        real(self.subsample, "split.subsample", 0.1, 1.0)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    hidden: int = 128
    epochs: int = 500
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0

    def __post_init__(self):
        integer(self.hidden, "train.hidden", 1)
        integer(self.epochs, "train.epochs", 1)
        real(self.lr, "train.lr", 0.0, open_lo=True)
        integer(self.batch_size, "train.batch_size", 1)
        real(self.weight_decay, "train.weight_decay", 0.0)

    def train_config(self) -> TrainConfig:
        """The :class:`~mis.train.TrainConfig` (Adam, constant learning rate, no AMP)."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            optimizer="adam",
            weight_decay=self.weight_decay,
            schedule="constant",
            batch_size=self.batch_size,
            amp=False,
        )


def _tasks(value) -> tuple[TaskSpec, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise MisValueError(f"tasks must be a non-empty array of tables ([[tasks]]); got {value!r}")
    out = []
    for i, t in enumerate(value):
        if isinstance(t, TaskSpec):
            out.append(t)
            continue
        if not isinstance(t, Mapping):
            raise MisValueError(f"tasks[{i}] must be a table; got {t!r}")
        fields = {f.name for f in dataclasses.fields(TaskSpec)}
        bad = sorted(set(t) - fields)
        if bad:
            raise MisValueError(f"unknown key 'tasks[{i}].{bad[0]}'; valid keys: {sorted(fields)}")
        if "source" not in t:
            raise MisValueError(f"tasks[{i}] needs a source (one of {list(SOURCES)})")
        out.append(TaskSpec(**t))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise MisValueError(f"task names must be distinct; got {names}")
    return tuple(out)


#: The tables of a configuration file (besides ``[[tasks]]``) and the section each one fills.
SECTIONS = {
    "study": StudySection,
    "features": FeatureSection,
    "split": SplitSection,
    "train": TrainSection,
    "trajectory": TrajectorySection,
    "analysis": AnalysisSection,
}

DEFAULT_TASKS = (TaskSpec("freesolv"), TaskSpec("solubility"))


@dataclasses.dataclass(frozen=True)
class _Sections:
    study: StudySection = dataclasses.field(default_factory=StudySection)
    features: FeatureSection = dataclasses.field(default_factory=FeatureSection)
    split: SplitSection = dataclasses.field(default_factory=SplitSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    trajectory: TrajectorySection = dataclasses.field(default_factory=TrajectorySection)
    analysis: AnalysisSection = dataclasses.field(default_factory=AnalysisSection)


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole study: ``tasks`` and the sections of the module docstring."""

    tasks: tuple[TaskSpec, ...] = DEFAULT_TASKS
    sections: _Sections = dataclasses.field(default_factory=_Sections)

    def __post_init__(self):
        object.__setattr__(self, "tasks", _tasks(self.tasks))
        if self.trajectory.every > self.train.epochs:
            raise MisValueError(
                f"trajectory.every must be <= train.epochs ({self.train.epochs}); "
                f"got {self.trajectory.every}"
            )

    def __getattr__(self, name):  # cfg.study, cfg.train, ...
        if name in SECTIONS:
            return getattr(self.sections, name)
        raise AttributeError(name)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: Config | None = None) -> Config:
        """Override ``base`` (default: the paper's protocol on FreeSolv and solubility)."""
        base = base or cls()
        if not isinstance(d, Mapping):
            raise MisValueError(f"a configuration must be a table of sections; got {d!r}")
        d = dict(d)
        tasks = _tasks(d.pop("tasks")) if "tasks" in d else base.tasks
        return cls(tasks, override_sections(base.sections, d, SECTIONS))

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON / TOML-compatible) nested dict."""
        out: dict[str, Any] = sections_dict(self, SECTIONS)
        out["tasks"] = [dataclasses.asdict(t) for t in self.tasks]
        return out


def default_config(**sections) -> Config:
    """The paper's protocol (module docstring), with ``sections`` overriding keys."""
    return Config.from_dict(sections)


def load_config(path, base: Config | None = None) -> Config:
    """Read a TOML file; missing keys keep the defaults."""
    return Config.from_dict(load_toml(path), base)
