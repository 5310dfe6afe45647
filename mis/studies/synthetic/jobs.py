"""The resumable jobs of the synthetic study (module-level functions: picklable for process
and distributed executors) and the names of their outputs in the run store.

A job reads the study configuration from the ``config.json`` its arguments name (kept out
of the job's arguments, which the run store records with every array).
"""

from __future__ import annotations

import functools
import json
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mis.security import discriminator_mis
from mis.store import RunStore
from mis.studies._common import ORIGINAL, derive_seed, torch_threads
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import (
    BATCHES,
    DISCRIMINATOR,
    INIT,
    nonmember_set,
    setting_data,
    setting_key,
    setting_keys,
    training_set,
)
from mis.studies.synthetic.model import flat_params, logits, losses, predictions, quantize_flat
from mis.studies.synthetic.streaming import StreamingRecorder, quadratic_features
from mis.train.config import init_model
from mis.train.fused import train_linear_ensemble
from mis.train.models import QuadraticLinear

__all__ = [
    "DISCRIMINATOR_SUMMARY",
    "chunk_name",
    "chunks",
    "discriminator_job",
    "discriminator_name",
    "discriminator_variants",
    "train_chunk_job",
    "train_runs",
]

#: Entries of a discriminator job's ``summary`` array.
DISCRIMINATOR_SUMMARY = (
    "mis",
    "mis_low",
    "mis_high",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "mis_cp_low",
    "mis_cp_high",
    "mean_best_epoch",
    "mean_epochs_run",
    "n_test",
)

#: B of the diagnostic r_Q over the B lowest-loss points (the old ``keep_best = 64``).
KEPT_DIAGNOSTIC = 64


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


def train_runs(cfg: Config, mixture, k_modes, sigma, runs, callbacks=()):
    """Train the runs ``runs`` of a setting as in the study; returns the trained
    :class:`~mis.train.fused.LinearEnsemble` and the runs' training sets [(x, y), ...].

    Initialisation: :class:`~mis.train.QuadraticLinear` (``model.head`` outputs) built from
    each run's seed; training: :func:`mis.train.train_linear_ensemble` on ``[x, x²]``
    (float64), ``train.batch_size`` rows per step in each run's seeded order.
    """
    sets = [training_set(cfg, mixture, k_modes, sigma, int(r)) for r in runs]
    keys = setting_keys(k_modes, sigma)
    s0 = cfg.study.seed
    models = [
        init_model(
            functools.partial(QuadraticLinear, cfg.data.dim, cfg.model.n_outputs),
            derive_seed(s0, INIT, *keys, int(r)),
        )
        for r in runs
    ]
    ens = train_linear_ensemble(
        np.stack([quadratic_features(xs) for xs, _ in sets]),
        np.stack([ys for _, ys in sets]),
        np.stack([m.fc.weight.detach().numpy() for m in models]),
        np.stack([m.fc.bias.detach().numpy() for m in models]),
        epochs=cfg.train.epochs,
        lr=cfg.train.lr,
        batch_size=cfg.train.batch_size or None,
        seeds=[derive_seed(s0, BATCHES, *keys, int(r)) for r in runs],
        callbacks=callbacks,
        progress=False,
    )
    return ens, sets


def train_chunk_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train runs ``config["runs"] = [r0, r1)`` of one setting and stream their r_Q.

    The runs train together with the fused minibatch Adam trainer
    (:func:`mis.train.train_linear_ensemble`) on ``[x, x²]`` (float64), from the
    initialisation of :class:`~mis.train.QuadraticLinear` built from each run's seed; a
    :class:`~mis.studies.synthetic.streaming.StreamingRecorder` quantizes every checkpoint with
    every quantizer and computes r_Q over all distinct quantized points (Algorithm 1).

    Returns, for K runs and Q quantizers: ``rq`` (K, Q) float64 (r_Q, or with
    ``trajectory.keep_best = B`` r_Q over the B lowest-loss points), ``rq_all`` and
    ``rq_kept`` (K, Q) (every point; the ``kept`` (1,) lowest-loss points: B, or 64 as a
    diagnostic when every point counts), ``delta2``, ``best_epoch``,
    ``argmin_rank``, ``n_distinct``, ``n_changes``, ``n_recomputed``, ``status`` (K, Q);
    ``final_params`` (K, C + C·F) float32 (bias, weight); ``acc_train`` / ``acc_test``
    (K, 1 + Q) float64 (original model first, then the quantizers in config order);
    ``cpu_seconds`` and ``peak_rss_mb`` (1,).
    """
    cfg = _job_config(config)
    k_modes, sigma = config["k_modes"], config["sigma"]
    r0, r1 = (int(v) for v in config["runs"])
    runs = np.arange(r0, r1)
    tr = cfg.trajectory
    c = cfg.model.n_outputs
    cpu0 = time.process_time()
    with torch_threads(1):
        mixture, (xv, yv), (xt, yt) = setting_data(cfg, k_modes, sigma)
        rec = StreamingRecorder(
            tr.quantizers,
            xv,
            yv,
            n_checkpoints=cfg.train.epochs // tr.every,
            every=tr.every,
            params=tr.params,
            keep_best=tr.keep_best or KEPT_DIAGNOSTIC,
        )
        ens, sets = train_runs(cfg, mixture, k_modes, sigma, runs, callbacks=[rec])
        res = rec.result()
        k, nq = len(runs), len(tr.quantizers)
        final = flat_params(ens.weight, ens.bias)  # (K, P) float32
        flat, _ = rec.quantize(ens.weight, ens.bias)  # (K, Q, P)
        variants = np.concatenate([final[:, None], flat], axis=1)  # (K, 1 + Q, P)
        acc_train = np.empty((k, 1 + nq))
        acc_test = np.empty((k, 1 + nq))
        for i, (xs, ys) in enumerate(sets):
            acc_train[i] = (predictions(logits(variants[i], xs, c)) == ys).mean(axis=1)
            acc_test[i] = (predictions(logits(variants[i], xt, c)) == yt).mean(axis=1)
    rq_all, rq_kept = res.pop("rq"), res.pop("rq_kept")
    return {
        **res,
        "rq": rq_kept if tr.keep_best else rq_all,
        "rq_all": rq_all,
        "rq_kept": rq_kept,
        "kept": np.array([tr.keep_best or KEPT_DIAGNOSTIC]),
        "final_params": final,
        "acc_train": acc_train,
        "acc_test": acc_test,
        "cpu_seconds": np.array([time.process_time() - cpu0]),
        "peak_rss_mb": np.array([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0]),
    }


def discriminator_name(key: str, variant: str, repeat: int = 0) -> str:
    """Store prefix of the discriminator job of a setting, variant and seed repeat."""
    return f"{key}/mis/{variant}" + (f"/seed{repeat}" if repeat else "")


def discriminator_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """The cross-fitted discriminator estimate of the MIS for one setting and one quantizer
    (or ``"original"``), :func:`mis.security.discriminator_mis` with ``mis.folds`` folds by run.

    ``config["repeat"]`` (0, 1, …) selects the discriminator seed; the folds and
    initialisations of repeat 0 are shared by every quantizer of a setting.

    Returns ``summary`` (float64, the entries of :data:`DISCRIMINATOR_SUMMARY`: MIS and
    accuracy with their cluster-bootstrap bounds, the Clopper–Pearson bounds for comparison,
    mean kept epoch and mean epochs run over the folds, test decisions), ``per_run_mis`` and
    ``per_run_accuracy`` (n_runs,) and ``fold_of_run`` (n_runs,) int64.
    """
    cfg = _job_config(config)
    k_modes, sigma, name = config["k_modes"], config["sigma"], config["quantizer"]
    repeat = int(config.get("repeat", 0))
    store = RunStore(config["store"], create=False)
    names = [chunk_name(setting_key(k_modes, sigma), i) for i in range(len(chunks(cfg)))]
    c = cfg.model.n_outputs
    cpu0 = time.process_time()
    with torch_threads(1):
        final = np.concatenate([np.asarray(store.load(f"{ch}/final_params")) for ch in names])
        params = quantize_flat(name, final, c, cfg.trajectory.params)
        mixture, _, _ = setting_data(cfg, k_modes, sigma)
        m = cfg.mis.n_members
        mx, my, ml, nx, ny, nl = ([] for _ in range(6))
        for r in range(final.shape[0]):
            xs, ys = training_set(cfg, mixture, k_modes, sigma, r)
            xs, ys = xs[:m], ys[:m]
            xn, yn = nonmember_set(cfg, mixture, k_modes, sigma, r)
            both = losses(
                logits(params[r : r + 1], np.concatenate([xs, xn]), c)[0],
                np.concatenate([ys, yn]),
            )
            mx.append(xs), my.append(ys), ml.append(both[:m])
            nx.append(xn), ny.append(yn), nl.append(both[m:])
        mc = cfg.mis
        res = discriminator_mis(
            params,
            np.stack(mx),
            np.stack(my),
            np.stack(ml),
            np.stack(nx),
            np.stack(ny),
            np.stack(nl),
            n_classes=None if c == 1 else c,
            folds=mc.folds,
            val_fraction=mc.val_fraction,
            hidden=mc.hidden,
            epochs=mc.epochs,
            batch_size=mc.batch_size,
            lr=mc.lr,
            patience=mc.patience,
            confidence_level=cfg.analysis.confidence_level,
            n_resamples=cfg.analysis.n_resamples,
            device="cpu",
            num_threads=1,
            rng=derive_seed(cfg.study.seed, DISCRIMINATOR, *setting_keys(k_modes, sigma), repeat),
            progress=False,
        )
    summary = [
        res.mis.estimate,
        res.mis.low,
        res.mis.high,
        res.accuracy.estimate,
        res.accuracy.low,
        res.accuracy.high,
        res.mis_clopper_pearson.low,
        res.mis_clopper_pearson.high,
        float(np.mean(res.best_epochs)),
        float(np.mean([len(h["train_loss"]) for h in res.histories])),
        res.n_test,
    ]
    per_run_mis = np.full(final.shape[0], np.nan)
    per_run_acc = np.full(final.shape[0], np.nan)
    per_run_mis[res.test_runs] = res.per_run_mis
    per_run_acc[res.test_runs] = res.per_run_accuracy
    return {
        "summary": np.array(summary, dtype=np.float64),
        "per_run_mis": per_run_mis,
        "per_run_accuracy": per_run_acc,
        "fold_of_run": res.fold_of_run.astype(np.int64),
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }
