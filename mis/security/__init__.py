"""Privacy of quantized training: r_Q, quantizer rankings and the MIS baseline.

* :func:`rq`, :func:`rq_batch`: the r_Q indicator of Aubinais et al. (2025),
  Algorithm 1 (numba; no torch).
* :func:`rank_quantizers`, :func:`rank_stability`, :func:`rank_agreement`:
  rankings of quantizers with bootstrap-over-runs intervals, Fig. 1 stability,
  and Spearman / Kendall agreement with exact permutation p-values.
* :func:`mis_baseline`: the discriminator estimate of the MIS (§4.2). It is the
  only torch code here and is imported lazily, on first access, so that
  ``import mis.security`` never imports torch.
"""

from mis.security.ranking import (
    AdjacentComparison,
    QuantizerRanking,
    RankAgreement,
    RankStability,
    rank_agreement,
    rank_quantizers,
    rank_stability,
)
from mis.security.rq import RqBatchResult, RqResult, rq, rq_batch

_LAZY = {"mis_baseline", "MisResult"}

__all__ = [
    "AdjacentComparison",
    "MisResult",
    "QuantizerRanking",
    "RankAgreement",
    "RankStability",
    "RqBatchResult",
    "RqResult",
    "mis_baseline",
    "rank_agreement",
    "rank_quantizers",
    "rank_stability",
    "rq",
    "rq_batch",
]


def __getattr__(name):
    if name in _LAZY:
        from mis.security import discriminator

        return getattr(discriminator, name)
    raise AttributeError(f"module 'mis.security' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY)
