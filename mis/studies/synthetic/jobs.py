"""The resumable jobs of the synthetic study (module-level functions: picklable for process
and distributed executors) and the names of their outputs in the run store.

A job reads the study configuration from the ``config.json`` its arguments name (kept out
of the job's arguments, which the run store records with every array).
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

from mis.security import discriminator_mis
from mis.store import RunStore
from mis.studies._common import ORIGINAL, derive_seed, torch_threads
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import (
    DISCRIMINATOR,
    INIT,
    nonmember_set,
    setting_data,
    setting_key,
    setting_keys,
    training_set,
)
from mis.studies.synthetic.model import cross_entropy, flat_params, logits, quantize_flat
from mis.studies.synthetic.stacked import KeepBestRecorder
from mis.train.config import TrainConfig
from mis.train.ensemble import train_ensemble
from mis.train.models import QuadraticLinear

__all__ = [
    "DISCRIMINATOR_SUMMARY",
    "chunk_name",
    "chunks",
    "discriminator_job",
    "discriminator_variants",
    "train_chunk_job",
]

#: Entries of a discriminator job's ``summary`` array.
DISCRIMINATOR_SUMMARY = (
    "mis",
    "mis_low",
    "mis_high",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "best_epoch",
    "epochs_run",
    "n_test",
)


def chunks(cfg: Config) -> list[tuple[int, int]]:
    """The run ranges [a, b) trained together by one job each."""
    c, n = cfg.study.chunk_size, cfg.study.runs
    return [(a, min(a + c, n)) for a in range(0, n, c)]


def chunk_name(key: str, i: int) -> str:
    """Store prefix of training chunk ``i`` of setting ``key``."""
    return f"{key}/train/chunk{i:04d}"


def discriminator_variants(cfg: Config) -> list[str]:
    """The quantizers (and the unquantized model) whose MIS the discriminator estimates."""
    return list(cfg.trajectory.quantizers) + ([ORIGINAL] if cfg.mis.include_original else [])


def _job_config(config: Mapping[str, Any]) -> Config:
    """The study configuration of a job, read from the ``config.json`` it names."""
    return Config.from_dict(json.loads(Path(config["config"]).read_text()))


def train_chunk_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train runs ``config["runs"] = [r0, r1)`` of one setting and record their trajectories.

    Returns ``val_losses`` (K, Q, B, n_val) float32, ``qhash`` (K, Q, B) uint64,
    ``val_epochs`` (K, Q, B) int64, ``n_changes`` (K, Q) int64, ``final_params``
    (K, 2 + 2·2d) float32 (bias, weight), ``acc_train`` / ``acc_test`` (K, 1 + Q) float64
    (original model first, then the quantizers in config order).
    """
    cfg = _job_config(config)
    k_modes, sigma = config["k_modes"], config["sigma"]
    r0, r1 = (int(v) for v in config["runs"])
    runs = np.arange(r0, r1)
    tr = cfg.trajectory
    cpu0 = time.process_time()
    with torch_threads(1):
        mixture, (xv, yv), (xt, yt) = setting_data(cfg, k_modes, sigma)
        sets = [training_set(cfg, mixture, k_modes, sigma, int(r)) for r in runs]
        x = torch.from_numpy(np.concatenate([s[0] for s in sets]))
        y = torch.from_numpy(np.concatenate([s[1] for s in sets]))
        n = cfg.data.n_train
        subsets = [np.arange(i * n, (i + 1) * n) for i in range(len(runs))]
        keys = setting_keys(k_modes, sigma)
        init = [derive_seed(cfg.study.seed, INIT, *keys, int(r)) for r in runs]
        keep = tr.keep_best or max(1, cfg.train.epochs // tr.every)
        rec = KeepBestRecorder(
            tr.quantizers,
            torch.from_numpy(xv),
            yv,
            keep_best=keep,
            every=tr.every,
            params=tr.params,
        )
        ens = train_ensemble(
            functools.partial(QuadraticLinear, cfg.data.dim),
            x,
            y,
            TrainConfig.aubinais2025(epochs=cfg.train.epochs, lr=cfg.train.lr),
            init,
            subsets=subsets,
            device="cpu",
            callbacks=[rec],
            progress=False,
        )
        res = rec.result()
        weight, bias = ens.params["fc.weight"], ens.params["fc.bias"]
        k, nq = len(runs), len(tr.quantizers)
        final = flat_params(weight.numpy(), bias.numpy())  # (K, P)
        quant = rec.quantize(weight, bias).reshape(k, nq, -1)  # (K, Q, P)
        variants = np.concatenate([final[:, None], quant], axis=1)  # (K, 1 + Q, P)
        acc_train = np.empty((k, 1 + nq))
        acc_test = np.empty((k, 1 + nq))
        for i, (xs, ys) in enumerate(sets):
            acc_train[i] = (logits(variants[i], xs).argmax(-1) == ys).mean(axis=1)
            acc_test[i] = (logits(variants[i], xt).argmax(-1) == yt).mean(axis=1)
    return {
        **res,
        "n_changes": rec.n_changes,
        "final_params": final,
        "acc_train": acc_train,
        "acc_test": acc_test,
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }


def discriminator_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """The discriminator estimate of the MIS for one setting and one quantizer (or
    ``"original"``), :func:`mis.security.discriminator_mis`.

    Returns ``summary`` (9,) float64 (the entries of :data:`DISCRIMINATOR_SUMMARY`: MIS and
    test accuracy with their Clopper–Pearson bounds, best epoch, epochs run, test
    decisions), and ``per_run_mis``, ``per_run_accuracy``, ``test_runs`` (n_test_runs,).
    """
    cfg = _job_config(config)
    k_modes, sigma, name = config["k_modes"], config["sigma"], config["quantizer"]
    store = RunStore(config["store"], create=False)
    names = [chunk_name(setting_key(k_modes, sigma), i) for i in range(len(chunks(cfg)))]
    cpu0 = time.process_time()
    with torch_threads(1):
        final = np.concatenate([np.asarray(store.load(f"{c}/final_params")) for c in names])
        params = quantize_flat(name, final)
        if cfg.trajectory.params == "weights" and name != ORIGINAL:
            params[:, :2] = final[:, :2]
        mixture, _, _ = setting_data(cfg, k_modes, sigma)
        m = cfg.mis.n_members
        mx, my, ml, nx, ny, nl = ([] for _ in range(6))
        for r in range(final.shape[0]):
            xs, ys = training_set(cfg, mixture, k_modes, sigma, r)
            xs, ys = xs[:m], ys[:m]
            xn, yn = nonmember_set(cfg, mixture, k_modes, sigma, r)
            both = cross_entropy(
                logits(params[r : r + 1], np.concatenate([xs, xn]))[0], np.concatenate([ys, yn])
            )
            mx.append(xs), my.append(ys), ml.append(both[:m])
            nx.append(xn), ny.append(yn), nl.append(both[m:])
        c = cfg.mis
        res = discriminator_mis(
            params,
            np.stack(mx),
            np.stack(my),
            np.stack(ml),
            np.stack(nx),
            np.stack(ny),
            np.stack(nl),
            n_classes=2,
            test_fraction=c.test_fraction,
            val_fraction=c.val_fraction,
            hidden=c.hidden,
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            patience=c.patience,
            device="cpu",
            num_threads=1,
            rng=derive_seed(cfg.study.seed, DISCRIMINATOR, *setting_keys(k_modes, sigma)),
            progress=False,
        )
    summary = [
        res.mis.estimate,
        res.mis.low,
        res.mis.high,
        res.accuracy.estimate,
        res.accuracy.low,
        res.accuracy.high,
        res.best_epoch,
        len(res.history["train_loss"]),
        res.n_test,
    ]
    return {
        "summary": np.array(summary, dtype=np.float64),
        "per_run_mis": res.per_run_mis,
        "per_run_accuracy": res.per_run_accuracy,
        "test_runs": res.test_runs.astype(np.int64),
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }
