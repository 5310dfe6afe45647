"""Logit extraction under augmentation queries (the input of LiRA).

Carlini et al. (2022, §VI) query every model on every example and on a few augmented
versions of it (mirror, shifts); :func:`extract_logits` returns the canonical run-store array
``logits`` of shape (n_models, n_examples, n_aug, n_classes), float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.train.config import resolve_device
from mis.train.data import augmentation_queries
from mis.train.ensemble import Ensemble

__all__ = ["extract_logits"]


def _queries(queries) -> list[Callable]:
    if queries is None:
        queries = augmentation_queries(1)
    elif isinstance(queries, int):
        queries = augmentation_queries(queries)
    out = [q[1] if isinstance(q, tuple) else q for q in queries]
    if not out or not all(callable(q) for q in out):
        raise MisValueError("queries must be an int (1, 2, 18) or a non-empty list of callables")
    return out


@torch.no_grad()
def extract_logits(
    models,
    x,
    *,
    queries=None,
    batch_size: int = 512,
    device=None,
    amp: bool = False,
    progress: bool | None = None,
    store=None,
    name: str = "logits",
    **meta,
) -> np.ndarray:
    """Logits of every model on every example under every query.

    Parameters
    ----------
    models : Ensemble, nn.Module or sequence of nn.Module
        An :class:`~mis.train.ensemble.Ensemble` is evaluated with ``vmap`` (all models per
        batch); modules are evaluated one after another in eval mode.
    x : Tensor, shape (N, ...), float
        Normalised inputs.
    queries : None, int or sequence
        ``None`` = the input only; an int ``n_aug`` ∈ {1, 2, 18} =
        :func:`~mis.train.data.augmentation_queries`; or callables (or ``(name, callable)``
        pairs) mapping a batch to its augmented batch.
    batch_size : int
        Examples per forward pass.
    device : optional
        Where to evaluate modules (default: CUDA when available). An Ensemble stays where it is.
    amp : bool
        bf16 autocast on CUDA.
    store : RunStore, optional
        When given, the result is also saved there as ``name`` with ``meta``.

    Returns
    -------
    ndarray of float32, shape (n_models, N, n_aug, n_classes)
    """
    qs = _queries(queries)
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        raise MisValueError(f"x must be a float tensor (normalised inputs); got {x.dtype}")
    n = x.shape[0]
    chunks = range(0, n, batch_size)
    if isinstance(models, Ensemble):
        dev = next(iter(models.params.values())).device
        parts = []
        for i in progress_bar(chunks, desc="logits", enabled=progress):
            xb = x[i : i + batch_size].to(dev)
            per_q = [models.forward(q(xb), batch_size=None).float() for q in qs]
            parts.append(torch.stack(per_q, dim=2).cpu())  # (K, b, A, C)
        out = torch.cat(parts, dim=1).numpy()
    else:
        mods: Sequence[nn.Module] = [models] if isinstance(models, nn.Module) else list(models)
        dev = resolve_device(device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda")
        results = []
        for m in progress_bar(mods, desc="logits", enabled=progress):
            was = m.training
            m.eval().to(dev)
            parts = []
            for i in chunks:
                xb = x[i : i + batch_size].to(dev)
                with autocast:
                    per_q = [m(q(xb)).float() for q in qs]
                parts.append(torch.stack(per_q, dim=1).cpu())  # (b, A, C)
            m.train(was)
            results.append(torch.cat(parts, dim=0))
        out = torch.stack(results).numpy()
    out = np.ascontiguousarray(out, dtype=np.float32)
    if store is not None:
        store.save(name, out, n_aug=len(qs), **meta)
    return out
