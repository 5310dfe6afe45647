"""Configuration of the synthetic study (Aubinais et al. 2025, §5.1), from TOML or in code.

Every option has a default, documented below; :func:`default_config` is the paper's study
and :func:`demo_config` the reduced one behind ``mis demo``. A TOML file (read with the
standard library's :mod:`tomllib`) overrides the defaults of :func:`default_config` section by
section;
an unknown section or key, or a value of the wrong type or range, raises
:class:`~mis.exceptions.MisValueError` naming the key (``data.n_val``, ...).

Sections and keys (defaults = the paper's study)
---------------------------------------------
``[study]``
    ``name = "aubinais2025-synthetic"`` — label in the report.
    ``seed = 0`` — master seed; every mixture, training set, initialisation, batch order,
    validation / test / non-member set, fold split, discriminator and bootstrap seed
    derives from it.
    ``runs = 300`` — independent runs (models) per setting (§5.1.1: k_run = 300).
    ``chunk_size = 50`` — runs trained together as one resumable job.
    ``workers = 2`` — worker processes (1: everything in this process).
``[data]``
    ``dim = 128``; ``k_modes = [6, 8, 16]``; ``sigmas = [1.5, 2.0, 3.0]`` — the 3 × 3 grid of
    mixture settings; ``centre_scale`` — cluster centres ~ N(0, centre_scale² I) (the
    paper does not say how centres are drawn; the default is calibrated against Table 2's
    original-model accuracies, ``docs/synthetic_calibration.md``);
    ``n_train = 128`` — training samples per run (n of §5.1.1);
    ``n_val = 512`` — validation samples for r_Q, shared by the runs of a setting;
    ``n_test = 4096`` — held-out samples for the accuracies of Table 2.
``[model]``
    ``head = "binary"`` — one logit and the binary cross-entropy with logits (§4.2: "if the
    model θ̂n is a binary classifier, … the binary cross-entropy loss"); ``"two-logit"``:
    two logits and the softmax cross-entropy (earlier versions, kept for comparison).
``[train]``
    ``epochs = 3000``; ``lr = 1e-4`` — Adam (§5.1.1); ``batch_size`` — minibatch size
    (rows shuffled every epoch with a seeded order; 0 = full batch); not in the paper,
    calibrated with ``centre_scale`` (``docs/synthetic_calibration.md``).
``[trajectory]``
    ``quantizers = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit",
    "4bit", "5bit"]`` (Appendix D); ``every = 1`` — a checkpoint after every epoch (the
    paper evaluates the quantized validation loss "at each validation step"; Lightning
    validates once per epoch); ``keep_best = 0`` — r_Q over every distinct quantized
    checkpoint (Algorithm 1); B > 0 restricts it to the B lowest-loss distinct points (the
    old keep-best mode; the report always counts the runs where B = 64 would change r_Q);
    ``params = "all"`` — quantize weight and bias (θ̄ = Q(θ)), or ``"weights"``.
``[mis]``
    ``enabled = true``; ``include_original = true`` — also the unquantized model;
    ``n_members = 128`` — members (and as many fresh non-members) per run given to the
    discriminator; ``folds = 5`` — cross-fitting by run: each run is scored by a
    discriminator trained on the other folds, so every run is a test run;
    ``repeats = 1`` — independent discriminator seeds (the first gives the estimate, the
    others the spread reported beside it); ``hidden = [256, 256]``, ``epochs = 50``,
    ``batch_size = 256``, ``lr = 1e-3``, ``val_fraction = 0.1`` (of the training runs of a
    fold, for early stopping) — :func:`mis.security.discriminator_mis`; ``patience = 5``
    (the function's default is 10: the validation loss is lowest at epochs 1–4 here, and
    with 5 folds per variant the 6 extra epochs cost a third of the MIS stage for nothing —
    on k8-s2 the MIS of the unquantized model is the same, 0.876, with either).
``[analysis]``
    ``k_runs = [5, 10, 15, 20, 50, 100]`` — subset sizes of the stability analysis (Fig. 1;
    sizes above ``runs`` are dropped); ``n_subsets = 100``; ``n_resamples = 2000`` —
    bootstrap resamples of runs; ``confidence_level = 0.95`` (also the level of the tie
    groups: Holm over the adjacent comparisons of a ranking at 1 − confidence_level);
    ``stability_resamples = 200`` — bootstrap resamples of runs for the intervals of the
    stability curves (0: none).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mis._validation import boolean, integer, real, sequence, string
from mis.exceptions import MisValueError
from mis.studies._common import (
    AnalysisSection,
    TrajectorySection,
    load_toml,
    override_sections,
    sections_dict,
)

__all__ = [
    "AnalysisSection",
    "Config",
    "DataSection",
    "DiscriminatorSection",
    "ModelSection",
    "StudySection",
    "SyntheticAnalysisSection",
    "SyntheticTrajectorySection",
    "TrainSection",
    "TrajectorySection",
    "default_config",
    "demo_config",
    "load_config",
]


#: Output layers of ``[model] head``.
HEADS = ("binary", "two-logit")
#: Defaults calibrated against the original-model accuracies of Table 2 only
#: (docs/synthetic_calibration.md), before any ranking claim was looked at.
CALIBRATED_BATCH_SIZE = 32
CALIBRATED_CENTRE_SCALE = 1.2


def _positive(value, key):
    return real(value, key, 0.0, open_lo=True)


# ------------------------------------------------------------------------------------------
# sections (each value is checked when the section is built; the message names the key)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StudySection:
    name: str = "aubinais2025-synthetic"
    seed: int = 0
    runs: int = 300
    chunk_size: int = 50
    workers: int = 2

    def __post_init__(self):
        string(self.name, "study.name")
        integer(self.seed, "study.seed", 0)
        integer(self.runs, "study.runs", 2)
        integer(self.chunk_size, "study.chunk_size", 1)
        integer(self.workers, "study.workers", 1)


@dataclasses.dataclass(frozen=True)
class DataSection:
    dim: int = 128
    k_modes: tuple[int, ...] = (6, 8, 16)
    sigmas: tuple[float, ...] = (1.5, 2.0, 3.0)
    centre_scale: float = CALIBRATED_CENTRE_SCALE
    n_train: int = 128
    n_val: int = 512
    n_test: int = 4096

    def __post_init__(self):
        integer(self.dim, "data.dim", 1)
        k_modes = sequence(self.k_modes, "data.k_modes", lambda v, k: integer(v, k, 2))
        object.__setattr__(self, "k_modes", k_modes)
        object.__setattr__(self, "sigmas", sequence(self.sigmas, "data.sigmas", _positive))
        _positive(self.centre_scale, "data.centre_scale")
        integer(self.n_train, "data.n_train", 2)
        integer(self.n_val, "data.n_val", 3)
        integer(self.n_test, "data.n_test", 1)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """The ``[model]`` table: the classifier's output layer (§4.2, §5.1.1)."""

    head: str = "binary"

    def __post_init__(self):
        string(self.head, "model.head", HEADS)

    @property
    def n_outputs(self) -> int:
        """Logits of the layer: 1 (binary head) or 2 (two logits)."""
        return 1 if self.head == "binary" else 2


@dataclasses.dataclass(frozen=True)
class TrainSection:
    epochs: int = 3000
    lr: float = 1e-4
    batch_size: int = CALIBRATED_BATCH_SIZE

    def __post_init__(self):
        integer(self.epochs, "train.epochs", 1)
        _positive(self.lr, "train.lr")
        integer(self.batch_size, "train.batch_size", 0)


@dataclasses.dataclass(frozen=True)
class SyntheticTrajectorySection(TrajectorySection):
    """The ``[trajectory]`` table of this study: every distinct checkpoint by default."""

    keep_best: int = 0


@dataclasses.dataclass(frozen=True)
class DiscriminatorSection:
    """The ``[mis]`` table: the cross-fitted discriminator estimate of the MIS (§4.2)."""

    enabled: bool = True
    include_original: bool = True
    n_members: int = 128
    folds: int = 5
    repeats: int = 1
    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 5
    val_fraction: float = 0.1

    def __post_init__(self):
        boolean(self.enabled, "mis.enabled")
        boolean(self.include_original, "mis.include_original")
        integer(self.n_members, "mis.n_members", 1)
        integer(self.folds, "mis.folds", 2)
        integer(self.repeats, "mis.repeats", 1)
        hidden = sequence(
            self.hidden, "mis.hidden", lambda v, k: integer(v, k, 1), min_len=0, unique=False
        )
        object.__setattr__(self, "hidden", hidden)
        integer(self.epochs, "mis.epochs", 1)
        integer(self.batch_size, "mis.batch_size", 1)
        _positive(self.lr, "mis.lr")
        integer(self.patience, "mis.patience", 1)
        real(self.val_fraction, "mis.val_fraction", 0.0, 0.9)


@dataclasses.dataclass(frozen=True)
class SyntheticAnalysisSection(AnalysisSection):
    """The ``[analysis]`` table of this study: also the stability intervals."""

    stability_resamples: int = 200

    def __post_init__(self):
        super().__post_init__()
        integer(self.stability_resamples, "analysis.stability_resamples", 0)


#: The tables of a configuration file and the section each one fills.
SECTIONS = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "trajectory": SyntheticTrajectorySection,
    "mis": DiscriminatorSection,
    "analysis": SyntheticAnalysisSection,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole study; see the module docstring for every key and its default."""

    study: StudySection = dataclasses.field(default_factory=StudySection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    trajectory: SyntheticTrajectorySection = dataclasses.field(
        default_factory=SyntheticTrajectorySection
    )
    mis: DiscriminatorSection = dataclasses.field(default_factory=DiscriminatorSection)
    analysis: SyntheticAnalysisSection = dataclasses.field(default_factory=SyntheticAnalysisSection)

    def __post_init__(self):
        if self.mis.enabled and self.mis.n_members > self.data.n_train:
            raise MisValueError(
                f"mis.n_members must be <= data.n_train ({self.data.n_train}); "
                f"got {self.mis.n_members}"
            )
        if self.mis.enabled and self.mis.folds > self.study.runs:
            raise MisValueError(
                f"mis.folds must be <= study.runs ({self.study.runs}); got {self.mis.folds}"
            )
        if self.train.batch_size > self.data.n_train:
            raise MisValueError(
                f"train.batch_size must be <= data.n_train ({self.data.n_train}); "
                f"got {self.train.batch_size}"
            )
        if self.trajectory.every > self.train.epochs:
            raise MisValueError(
                f"trajectory.every must be <= train.epochs ({self.train.epochs}); "
                f"got {self.trajectory.every}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Config | None = None) -> Config:
        """Override ``base`` (default: the paper's study) with the sections of ``d``."""
        return override_sections(base or cls(), d, SECTIONS)

    def as_dict(self) -> dict[str, Any]:
        """Plain (JSON / TOML-compatible) nested dict."""
        return sections_dict(self, SECTIONS)

    def settings(self) -> list[tuple[int, float]]:
        """The (k_modes, sigma) pairs, σ varying slowest (the rows of Table 2)."""
        return [(k, s) for s in self.data.sigmas for k in self.data.k_modes]


def default_config(**overrides) -> Config:
    """The paper's study (§5.1.1): 3 × 3 settings, 300 runs, 3,000 epochs, 8 quantizers."""
    return Config.from_dict(overrides) if overrides else Config()


def demo_config() -> Config:
    """The reduced study of ``mis demo`` (about 2 minutes on a 2-core CPU).

    One mixture setting (k_modes = 8, σ = 2, the example of §5.1.2) with 100 runs of the
    paper's model and training (n = 128, one logit, 3,000 epochs of minibatch Adam at lr
    1e-4), the 8 quantizers, r_Q over every distinct checkpoint, and the cross-fitted MIS
    baseline with the full study's discriminator; everything else as in
    :func:`default_config`.
    """
    return Config.from_dict(
        {
            "study": {"name": "mis demo (reduced synthetic study)", "runs": 100},
            "data": {"k_modes": [8], "sigmas": [2.0]},
            "analysis": {"k_runs": [5, 10, 20, 50], "n_resamples": 1000},
        }
    )


def load_config(path, base: Config | None = None) -> Config:
    """Read a TOML file; missing keys keep the defaults of ``base`` (default: the paper's)."""
    return Config.from_dict(load_toml(path), base)
