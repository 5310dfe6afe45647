"""Keep masks: which model trains on which example (the LiRA recipe)."""

from __future__ import annotations

import numpy as np

from mis._validation import as_generator, positive_int, probability
from mis.exceptions import MisValueError

__all__ = ["keep_masks"]


def keep_masks(n_models, n_examples, pkeep=0.5, rng=None) -> np.ndarray:
    """Random membership masks with every example IN for exactly ``pkeep · n_models`` models.

    Carlini et al. (2022, §VI-A) train shadow models so that each example is in the training
    set of exactly half of them. Here, independently for every example, a uniformly random
    subset of ``n_in = pkeep · n_models`` models is drawn (the ranks of i.i.d. uniforms down
    the model axis). Per-model training-set sizes then vary around ``pkeep · n_examples``.

    Parameters
    ----------
    n_models : int
        At least 2.
    n_examples : int
    pkeep : float, default 0.5
        Fraction of models that train on each example; ``pkeep · n_models`` must be an integer
        between 1 and ``n_models - 1`` (each example is both IN and OUT somewhere).
    rng : int, numpy.random.Generator or None

    Returns
    -------
    keep : ndarray of bool, shape (n_models, n_examples)
        ``keep[m, i]`` is true when model ``m`` trains on example ``i``;
        ``keep.sum(0) == n_in`` exactly.
    """
    n_models = positive_int(n_models, "n_models", minimum=2)
    n_examples = positive_int(n_examples, "n_examples")
    p = probability(pkeep, "pkeep")
    n_in = round(p * n_models)
    if abs(n_in - p * n_models) > 1e-9 * n_models or not 1 <= n_in <= n_models - 1:
        raise MisValueError(
            f"pkeep · n_models must be an integer in 1..n_models-1 so that every example is IN "
            f"for exactly that many models; got pkeep={pkeep!r}, n_models={n_models} "
            f"(product {p * n_models:g})"
        )
    g = as_generator(rng)
    u = g.random((n_models, n_examples))
    ranks = np.argsort(np.argsort(u, axis=0, kind="stable"), axis=0, kind="stable")
    return ranks < n_in
