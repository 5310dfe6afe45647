"""Configuration sections shared by the r_Q studies (synthetic and molecular)."""

from __future__ import annotations

import dataclasses

from mis._validation import integer, probability, sequence, string
from mis.quant import AUBINAIS_QUANTIZERS

__all__ = ["AnalysisSection", "TrajectorySection"]


@dataclasses.dataclass(frozen=True)
class TrajectorySection:
    quantizers: tuple[str, ...] = AUBINAIS_QUANTIZERS
    every: int = 1
    keep_best: int = 64
    params: str = "all"

    def __post_init__(self):
        q = sequence(
            self.quantizers,
            "trajectory.quantizers",
            lambda v, k: string(v, k, AUBINAIS_QUANTIZERS),
            min_len=3,
        )
        object.__setattr__(self, "quantizers", q)
        integer(self.every, "trajectory.every", 1)
        integer(self.keep_best, "trajectory.keep_best", 0)
        string(self.params, "trajectory.params", ("all", "weights"))


@dataclasses.dataclass(frozen=True)
class AnalysisSection:
    k_runs: tuple[int, ...] = (5, 10, 15, 20, 50, 100)
    n_subsets: int = 100
    n_resamples: int = 2000
    confidence_level: float = 0.95

    def __post_init__(self):
        k_runs = sequence(self.k_runs, "analysis.k_runs", lambda v, k: integer(v, k, 1))
        object.__setattr__(self, "k_runs", k_runs)
        integer(self.n_subsets, "analysis.n_subsets", 1)
        integer(self.n_resamples, "analysis.n_resamples", 10)
        probability(self.confidence_level, "analysis.confidence_level")
