"""The resumable job of the molecular study: one task's runs, trained together, with their
quantized trajectories (module level, picklable).

Seeds: ``derive_seed(study.seed, purpose, task name, run)``; purposes: 1 split, 2 run
subsample, 3 initialisation, 4 analysis bootstraps.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mis.chem import featurize, load_embeddings, standardize
from mis.exceptions import MisValueError
from mis.quant import StackedQuantizer
from mis.studies._common import derive_seed, torch_threads
from mis.studies.molecular.config import Config
from mis.train.ensemble import train_ensemble
from mis.train.models import MLP
from mis.train.trajectory import TrajectoryRecorder

__all__ = ["split_indices", "task_job"]

SPLIT, SUBSAMPLE, INIT, ANALYSIS = range(1, 5)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random (train, validation) partition of ``range(n)``, both sorted.

    The validation part has ``round(val_fraction · n)`` elements (at least 2).
    """
    n_val = max(2, round(val_fraction * n))
    if n_val >= n - 1:
        raise MisValueError(f"val_fraction={val_fraction} leaves fewer than 2 of {n} for training")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _features(cfg: Config, spec, task) -> np.ndarray:
    """(n, d) float32 raw features of a task: the user's embeddings, or RDKit features."""
    if spec.embeddings:
        return load_embeddings(spec.embeddings, n=len(task))
    f = cfg.features
    x, _ = featurize(task.smiles, kinds=f.kinds, radius=f.radius, n_bits=f.n_bits)
    return x


def _job_config(config: Mapping[str, Any]) -> Config:
    return Config.from_dict(json.loads(Path(config["config"]).read_text()))


def _quantized_params(ensemble, quantizer, params: str) -> dict:
    """The ensemble's stacked parameters quantized as the recorder does (``params``: "all" or
    "weights" = tensors with at least 2 dimensions per model)."""
    return {
        n: quantizer(p.detach().clone()) if params == "all" or p.ndim >= 3 else p
        for n, p in ensemble.params.items()
    }


def _predictions(out, kind: str, y_mean: float, y_sd: float) -> np.ndarray:
    """Model outputs (K, n, C) → predictions (K, n): targets in original units (regression)
    or the probability of class 1 (classification)."""
    if kind == "regression":
        return (out[..., 0].double() * y_sd + y_mean).float().numpy()
    return torch.softmax(out.float(), dim=-1)[..., 1].numpy()


def task_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train the runs of task ``config["task"]`` and record their trajectories.

    Returns ``val_losses`` (R, Q, B, n_val) float32, ``qhash`` (R, Q, B) uint64,
    ``val_epochs`` (R, Q, B) int64 (:class:`~mis.train.TrajectoryRecorder`), ``pred``
    (R, 1 + Q, n_val) float32 (predictions of the original then the quantized final models
    on the validation part), ``y_val`` (n_val,), ``val_index`` (n_val,) int64 (rows of the
    task), ``n_features`` (1,) and ``cpu_seconds`` (1,).
    """
    cfg = _job_config(config)
    spec = cfg.tasks[int(config["task"])]
    cpu0 = time.process_time()
    task = spec.load()
    s = cfg.study.seed
    x = _features(cfg, spec, task)
    train_idx, val_idx = split_indices(
        len(task), cfg.split.val_fraction, derive_seed(s, SPLIT, spec.name)
    )
    x = standardize(x, train_idx)
    regression = task.kind == "regression"
    y = task.y.astype(np.float64)
    y_mean, y_sd = (
        (float(y[train_idx].mean()), float(y[train_idx].std())) if regression else (0.0, 1.0)
    )
    if regression and not y_sd > 0:
        raise MisValueError(f"task {spec.name}: the training targets are constant")
    target = (y - y_mean) / y_sd if regression else task.y
    loss = "mse" if regression else "cross_entropy"
    n_sub = max(2, round(cfg.split.subsample * train_idx.size))
    runs = range(cfg.study.runs)
    subsets = [
        np.sort(
            np.random.default_rng(derive_seed(s, SUBSAMPLE, spec.name, r)).choice(
                train_idx.size, n_sub, replace=False
            )
        )
        for r in runs
    ]
    init = [derive_seed(s, INIT, spec.name, r) for r in runs]
    tr = cfg.trajectory
    quantizers = {q: StackedQuantizer(q) for q in tr.quantizers}
    with torch_threads(1):
        x_t = torch.from_numpy(x)
        x_val = x_t[val_idx]
        rec = TrajectoryRecorder(
            quantizers,
            x_val,
            target[val_idx],
            every=tr.every,
            keep_best=tr.keep_best or None,
            params=tr.params,
            loss=loss,
        )
        ens = train_ensemble(
            functools.partial(MLP, x.shape[1], (cfg.train.hidden,), 1 if regression else 2),
            x_t[train_idx],
            target[train_idx],
            cfg.train.train_config(),
            init,
            subsets=subsets,
            device="cpu",
            callbacks=[rec],
            progress=False,
            loss=loss,
        )
        res = rec.result()
        outs = [ens.forward(x_val)]
        outs += [
            ens.forward(x_val, params=_quantized_params(ens, q, tr.params))
            for q in quantizers.values()
        ]
        pred = np.stack([_predictions(o, task.kind, y_mean, y_sd) for o in outs], axis=1)
    return {
        **res,
        "pred": pred,
        "y_val": task.y[val_idx],
        "val_index": val_idx.astype(np.int64),
        "n_features": np.array([x.shape[1]], dtype=np.int64),
        "classification": np.array([not regression], dtype=np.int64),
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }
