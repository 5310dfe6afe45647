"""Fused trainer: many linear classifiers on fixed features, minibatch Adam, in one numba kernel.

For tiny models the cost of a training step is the framework's per-operation overhead, not
arithmetic: the single layer of Aubinais et al. (2025, §5.1.1) has 257 parameters, and
minibatch training (n = 128, batch 8) takes 48,000 steps per model over 3,000 epochs. Here a
whole epoch of every model is one call of a serial numba kernel
(:func:`mis._kernels.fused.linear_adam_epoch`): forward pass, gradient and Adam update of
K models, each on its own training rows, with no per-step Python at all.

Model k is ``z = W_k φ + b_k`` on fixed features φ (e.g. ``[x, x²]``):

* ``C = 1`` output: binary classifier, loss ``BCEWithLogits(z, y)`` (labels 0/1);
* ``C ≥ 2`` outputs: loss ``cross_entropy(z, y)`` (labels in [0, C)).

Each step minimises the mean loss of its batch with ``torch.optim.Adam``'s update (the same
formula, in float64); each epoch visits a model's rows in the order
:func:`batch_order` (seeded by the model's seed and the epoch). A model trained alone with
``torch.optim.Adam`` on ``torch.nn.Linear`` in float64, on batches taken in that order,
ends with the same weights to rounding (``tests/test_train_fused.py`` checks 1e-6 after
hundreds of steps); ``benchmarks/bench_training.py`` times it against that loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from mis._kernels import fused as _k
from mis._progress import progress_bar
from mis._validation import integer, real, sequence
from mis.exceptions import MisValueError

__all__ = ["LinearEnsemble", "batch_order", "train_linear_ensemble"]


@dataclasses.dataclass
class LinearEnsemble:
    """K linear classifiers trained by :func:`train_linear_ensemble`.

    Attributes
    ----------
    weight : ndarray, shape (K, C, F), float64
    bias : ndarray, shape (K, C), float64
    steps : int
        Adam steps taken by every model.
    epochs : int
    """

    weight: np.ndarray
    bias: np.ndarray
    steps: int
    epochs: int

    def logits(self, features) -> np.ndarray:
        """Logits on shared features (n, F): shape (K, n, C), float64."""
        phi = np.asarray(features, dtype=np.float64)
        return np.einsum("kcf,nf->knc", self.weight, phi) + self.bias[:, None, :]


def batch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which a model with batch-order seed ``seed`` visits its ``n`` training rows
    during epoch ``epoch`` (0-based): a uniform permutation, shape (n,), int64.

    Batches are consecutive slices of it of ``batch_size`` rows (the last one shorter when
    ``batch_size`` does not divide ``n``).
    """
    seed = integer(seed, "seed", 0)
    epoch = integer(epoch, "epoch", 0)
    out = np.empty(integer(n, "n", 1), dtype=np.int64)
    _k.epoch_permutation(np.uint64(seed), np.uint64(epoch), out)
    return out


def train_linear_ensemble(
    features,
    labels,
    weight,
    bias,
    *,
    epochs: int,
    lr: float,
    seeds: Sequence[int],
    batch_size: int | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    callbacks: Sequence[Callable] = (),
    progress: bool | None = None,
) -> LinearEnsemble:
    """Train K linear classifiers at once with minibatch Adam (see the module docstring).

    Parameters
    ----------
    features : array_like, shape (K, n, F)
        Each model's training rows (e.g. ``[x, x²]`` of its own training set); float64 inside.
    labels : array_like of int, shape (K, n)
        0/1 when C = 1; class indices in [0, C) otherwise.
    weight, bias : array_like, shapes (K, C, F) and (K, C)
        Initial parameters (e.g. those of ``torch.nn.Linear`` built from each model's seed);
        not modified.
    epochs : int
    lr : float
    seeds : sequence of int, length K
        Batch-order seed of each model (:func:`batch_order`).
    batch_size : int or None
        Rows per step; None = the whole training set (full-batch Adam).
    betas, eps, weight_decay
        As ``torch.optim.Adam``.
    callbacks : sequence of callable
        ``cb(epoch, weight, bias)`` after each epoch, ``epoch`` = epochs completed; ``weight``
        (K, C, F) and ``bias`` (K, C) are the live float64 arrays: read, do not modify.
    progress : bool or None
        Progress bar over epochs (None: only when stderr is a terminal).

    Returns
    -------
    LinearEnsemble
    """
    phi = np.ascontiguousarray(features, dtype=np.float64)
    if phi.ndim != 3 or 0 in phi.shape:
        raise MisValueError(f"features must have shape (K, n, F), non-empty; got {phi.shape}")
    if not np.isfinite(phi).all():
        raise MisValueError("features must be finite")
    k, n, f = phi.shape
    w = np.array(weight, dtype=np.float64, order="C")  # copies: the inputs stay untouched
    b = np.array(bias, dtype=np.float64, order="C")
    if w.ndim != 3 or w.shape[0] != k or w.shape[2] != f:
        raise MisValueError(f"weight must have shape (K={k}, C, F={f}); got {w.shape}")
    c = w.shape[1]
    if b.shape != (k, c):
        raise MisValueError(f"bias must have shape (K, C) = {(k, c)}; got {b.shape}")
    y = np.asarray(labels)
    if y.shape != (k, n) or not np.issubdtype(y.dtype, np.integer):
        raise MisValueError(f"labels must be integers of shape (K, n) = {(k, n)}; got {y.dtype} "
                            f"{y.shape}")  # fmt: skip
    hi = 1 if c == 1 else c - 1
    if y.size and (y.min() < 0 or y.max() > hi):
        raise MisValueError(
            f"labels must lie in [0, {hi}] for {c} output(s); got [{y.min()}, {y.max()}]"
        )
    y = np.ascontiguousarray(y, dtype=np.int64)
    seeds = sequence(list(seeds), "seeds", lambda v, key: integer(v, key, 0), unique=False)
    if len(seeds) != k:
        raise MisValueError(f"seeds must have one entry per model ({k}); got {len(seeds)}")
    epochs = integer(epochs, "epochs", 1)
    lr = real(lr, "lr", 0.0, open_lo=True)
    bs = n if batch_size is None else integer(batch_size, "batch_size", 1, n)
    b1 = real(betas[0], "betas[0]", 0.0, 1.0, open_hi=True)
    b2 = real(betas[1], "betas[1]", 0.0, 1.0, open_hi=True)
    eps = real(eps, "eps", 0.0, open_lo=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)

    s = np.array(seeds, dtype=np.uint64)
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b, v_b = np.zeros_like(b), np.zeros_like(b)
    step = 0
    for epoch in progress_bar(range(epochs), desc="fused training", enabled=progress):
        step = _k.linear_adam_epoch(
            phi, y, w, b, m_w, v_w, m_b, v_b, s, epoch, step, bs, lr, b1, b2, eps, weight_decay
        )
        for cb in callbacks:
            cb(epoch + 1, w, b)
    return LinearEnsemble(weight=w, bias=b, steps=int(step), epochs=epochs)
