"""Privacy of quantized training: r_Q, quantizer rankings and the discriminator MIS.

* :func:`rq`, :func:`rq_batch`: the r_Q indicator of Aubinais et al. (2025),
  Algorithm 1 (numba; no torch).
* :func:`rank_quantizers`, :func:`rank_stability`, :func:`pooled_rank_stability`,
  :func:`rank_agreement`: rankings of quantizers with bootstrap-over-runs intervals, Holm
  over adjacent comparisons and tie groups, Fig. 1 stability (per setting, pooled, against
  all runs or the other runs), and Spearman / Kendall agreement with exact permutation
  p-values.
* :func:`discriminator_mis`: the discriminator estimate of the MIS (§4.2), with its
  result :class:`DiscriminatorMIS`. It is the only torch code here and is imported
  lazily, on first access, so that ``import mis.security`` never imports torch: this
  ``__getattr__`` is the one boundary that keeps torch out of the estimators.
"""

from mis.security._ranking import (
    AdjacentComparison,
    PooledStability,
    QuantizerRanking,
    RankAgreement,
    RankStability,
    pooled_rank_stability,
    rank_agreement,
    rank_quantizers,
    rank_stability,
)
from mis.security._rq import RqBatchResult, RqResult, rq, rq_batch

#: names served by :mod:`mis.security._discriminator` (torch), imported on first access
_DISCRIMINATOR_NAMES = {"DiscriminatorMIS", "discriminator_mis"}

__all__ = [
    "AdjacentComparison",
    "DiscriminatorMIS",
    "PooledStability",
    "QuantizerRanking",
    "RankAgreement",
    "RankStability",
    "RqBatchResult",
    "RqResult",
    "discriminator_mis",
    "pooled_rank_stability",
    "rank_agreement",
    "rank_quantizers",
    "rank_stability",
    "rq",
    "rq_batch",
]


def __getattr__(name):
    if name in _DISCRIMINATOR_NAMES:
        from mis.security import _discriminator  # the torch boundary (module docstring)

        return getattr(_discriminator, name)
    raise AttributeError(f"module 'mis.security' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _DISCRIMINATOR_NAMES)
