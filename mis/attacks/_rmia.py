"""RMIA, the relative membership inference attack (Zarifzadeh et al. 2024).

Zarifzadeh, Liu, Nguyen, Ye & Shokri (2024), *Low-cost high-power membership
inference attacks*, ICML, §3 (Eq. 2–4) and the offline approximation of §3/App.

Exactly what :func:`rmia` computes, for target model ``θ`` and reference
models ``R`` = every other model:

* ``p_θ(e) = mean_q softmax(f_θ(e_q))_y`` — the true-class probability,
  averaged over the queries (augmentations) ``q`` first;
* ``Pr(e)`` — the probability of ``e`` under a random reference model:
  online ``mean_{θ' ∈ R} p_θ'(e)``; offline (only models that did not train
  on ``e``) ``((1 + a) · mean_{θ' ∈ R, e ∉ θ'} p_θ'(e) + (1 − a)) / 2``, the
  paper's linear approximation with parameter ``a``; the same formula is used
  for ``x`` and for the population samples ``z``;
* ``ratio(e) = p_θ(e) / Pr(e)``;
* ``LR(x, z) = ratio(x) / ratio(z)`` (Eq. 3) and the score (Eq. 4)
  ``Score(x) = |{z ∈ Z, z ≠ x : ratio(x) ≥ γ · ratio(z)}| / |Z \\ {x}|``,
  the share of population samples that ``x`` dominates by a factor ``γ``.

``Z`` is a set of examples (default: all of them, members and non-members of
the target alike, since the attacker does not know which is which). With
``Z`` of size ``k`` the score is computed in O((n + k) log k) by sorting
``γ · ratio(z)`` once.
"""

from __future__ import annotations

import warnings

import numpy as np

from mis._validation import choice, real
from mis.attacks._inputs import (
    chunk_progress,
    chunk_spans,
    examples_per_chunk,
    float_array,
    membership,
    target_index,
)
from mis.exceptions import DegenerateStatisticWarning, MisValueError

__all__ = ["rmia", "rmia_all_targets"]

MODES = ("online", "offline")


def _probabilities(probs, chunk_size) -> np.ndarray:
    """Validated true-class probabilities averaged over queries: float64 (n_models, n_examples)."""
    arr = np.asarray(probs) if not isinstance(probs, np.ndarray) else probs
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = float_array(
        arr, "probs", 3, "(n_models, n_examples) or (n_models, n_examples, n_queries)"
    )
    n_models, n_examples, n_queries = arr.shape
    if n_models < 2:
        raise MisValueError(
            f"probs must hold at least 2 models (target + reference); got {n_models}"
        )
    size = examples_per_chunk(chunk_size, n_examples, n_models * n_queries * 8)
    p = np.empty((n_models, n_examples))
    for a, b in chunk_spans(n_examples, size):
        block = np.asarray(arr[:, a:b], dtype=np.float64)
        bad = ~((block >= 0.0) & (block <= 1.0))  # NaN fails both
        if bad.any():
            idx = tuple(int(v) for v in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape))
            raise MisValueError(
                f"probs must be probabilities in [0, 1]; got {block[idx]} at index "
                f"{(idx[0], idx[1] + a, *idx[2:])} ({int(bad.sum())} invalid values)"
            )
        p[:, a:b] = block.mean(axis=2)
    return p


def _options(mode, a, gamma) -> tuple[bool, float, float]:
    choice(mode, "mode", MODES)
    a = real(a, "a", 0.0, 1.0)
    gamma = real(gamma, "gamma", 0.0, open_lo=True)
    return mode == "offline", a, gamma


def _population(population, n_examples: int) -> np.ndarray:
    """Boolean mask of the population examples Z."""
    if population is None:
        mask = np.ones(n_examples, dtype=bool)
    else:
        pop = np.asarray(population)
        if pop.dtype == bool:
            if pop.shape != (n_examples,):
                raise MisValueError(
                    f"population as a mask must have shape ({n_examples},); got {pop.shape}"
                )
            mask = pop.copy()
        elif np.issubdtype(pop.dtype, np.integer) and pop.ndim == 1:
            if pop.size and (pop.min() < 0 or pop.max() >= n_examples):
                raise MisValueError(
                    f"population indices must lie in [0, {n_examples}); got min {pop.min()}, "
                    f"max {pop.max()}"
                )
            mask = np.zeros(n_examples, dtype=bool)
            mask[pop] = True
        else:
            raise MisValueError(
                "population must be None, a boolean mask or 1-D integer indices of examples; "
                f"got dtype {pop.dtype}, shape {pop.shape}"
            )
    if mask.sum() < 2:
        raise MisValueError(
            f"population must contain at least 2 examples (z ≠ x); got {int(mask.sum())}"
        )
    return mask


class _Sums:
    """Per-example sums over all models, from which every target's Pr(e) is a subtraction."""

    def __init__(self, p, keep, offline, a):
        self.p = p
        self.keep = keep
        self.offline = offline
        self.a = a
        n_models = p.shape[0]
        if offline:
            out = ~keep
            self.total = np.where(out, p, 0.0).sum(axis=0)
            self.count = out.sum(axis=0)
        else:
            self.total = p.sum(axis=0)
            self.count = np.full(p.shape[1], n_models)
        self.floored = 0

    def reference_prob(self, t: int) -> np.ndarray:
        """Pr(e) over the reference models of target ``t``, shape (n_examples,)."""
        own = ~self.keep[t] if self.offline else np.ones(self.p.shape[1], dtype=bool)
        mean = (self.total - np.where(own, self.p[t], 0.0)) / (self.count - own)
        if self.offline:
            return ((1.0 + self.a) * mean + (1.0 - self.a)) / 2.0
        tiny = np.finfo(np.float64).tiny
        low = mean < tiny
        self.floored += int(low.sum())
        return np.maximum(mean, tiny)

    def warn(self):
        if self.floored:
            warnings.warn(
                f"{self.floored} reference probabilities Pr(x) were 0 and were raised to the "
                "smallest normal float (the example then has ratio 0 or a huge ratio)",
                DegenerateStatisticWarning,
                stacklevel=3,
            )


def _score(ratio: np.ndarray, pop: np.ndarray, gamma: float) -> np.ndarray:
    """Share of z in Z \\ {x} with ratio(x) >= gamma * ratio(z), for every x."""
    g = np.sort(gamma * ratio[pop])
    count = np.searchsorted(g, ratio, side="right").astype(np.float64)
    self_hit = pop & (ratio >= gamma * ratio)
    count -= self_hit
    return count / (pop.sum() - pop)


def _check_counts(count, offline, who):
    if offline:
        bad = count < 1
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise MisValueError(
                f"keep: example {j} is never OUT among the reference models {who} "
                f"({int(bad.sum())} examples affected); offline RMIA needs at least one"
            )


def rmia(
    probs,
    keep,
    target,
    *,
    mode="offline",
    a=0.3,
    gamma=2.0,
    population=None,
    chunk_size=None,
) -> np.ndarray:
    """RMIA membership scores of every example on one target model.

    The formula is in the module docstring; every model other than ``target``
    is a reference model.

    Parameters
    ----------
    probs : array_like, shape (n_models, n_examples) or (n_models, n_examples, n_queries)
        True-class probabilities (:func:`~mis.attacks.true_class_probability`);
        queries are averaged first. May be a memory map.
    keep : array_like of bool, shape (n_models, n_examples)
        Membership of each example in each model (offline mode uses it to
        select the reference models that did not train on an example).
    target : int
        Target model (negative counts from the end).
    mode : {"offline", "online"}
        Offline: only OUT reference models with the ``a`` approximation;
        online: all reference models.
    a : float in [0, 1], default 0.3
        Offline approximation parameter (``Pr(x) = ((1+a) Pr_OUT(x) + (1−a))/2``).
    gamma : float > 0, default 2.0
        Likelihood-ratio threshold γ of Eq. 4.
    population : None, bool mask (n_examples,) or int indices
        The population samples Z (default: every example). At least 2.
    chunk_size : int, optional

    Returns
    -------
    ndarray of float64, shape (n_examples,)
        Scores in [0, 1]; higher = more likely a member.

    Raises
    ------
    MisValueError
        Probabilities outside [0, 1] or NaN, shapes that do not match, a bad
        population, or (offline) an example with no OUT reference model.
    """
    offline, a, gamma = _options(mode, a, gamma)
    p = _probabilities(probs, chunk_size)
    n_models, n_examples = p.shape
    k = membership(keep, n_models, n_examples)
    t = target_index(target, n_models)
    pop = _population(population, n_examples)
    sums = _Sums(p, k, offline, a)
    _check_counts(sums.count - (~k[t] if offline else 0), offline, f"of target {t}")
    ratio = p[t] / sums.reference_prob(t)
    sums.warn()
    return _score(ratio, pop, gamma)


def rmia_all_targets(
    probs,
    keep,
    *,
    mode="offline",
    a=0.3,
    gamma=2.0,
    population=None,
    chunk_size=None,
) -> np.ndarray:
    """RMIA scores with each model in turn as target and the others as references.

    Parameters as :func:`rmia`. The sums over all models are formed once and
    each target's own term is subtracted (so row ``t`` equals
    ``rmia(..., target=t)`` exactly).

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples)
    """
    offline, a, gamma = _options(mode, a, gamma)
    p = _probabilities(probs, chunk_size)
    n_models, n_examples = p.shape
    k = membership(keep, n_models, n_examples)
    pop = _population(population, n_examples)
    sums = _Sums(p, k, offline, a)
    _check_counts(sums.count - (sums.count > 0), offline, "of some target")
    out = np.empty((n_models, n_examples))
    for t in chunk_progress(range(n_models), "RMIA targets"):
        out[t] = _score(p[t] / sums.reference_prob(t), pop, gamma)
    sums.warn()
    return out
