"""The molecular study of Aubinais et al. (2025), §5.2 and Appendix F, end to end.

For every task of the configuration (:mod:`mis.studies.molecular_config`):

1. **Training and trajectories** (one resumable job per task). The molecules are featurised
   (:func:`mis.chem.featurize`, or the user's embeddings), a fixed random 40 % is held out
   as the validation part, features (and regression targets) are standardised with the
   statistics of the training part. Each of the 10 runs trains a two-layer MLP (hidden 128)
   on its own random 90 % of the training part for 500 epochs; the runs train together as
   one ensemble (:func:`~mis.train.train_ensemble`, squared error for regression,
   cross-entropy for classification). After every epoch a
   :class:`~mis.train.TrajectoryRecorder` quantizes every run's parameters with the 8
   quantizers and keeps the lowest-loss distinct quantized checkpoints with their
   per-sample validation losses (Algorithm 1). The job also stores the predictions of the
   final original and quantized models on the validation part.
2. **Analysis** (recomputed on every call): r_Q per run and quantizer
   (:func:`~mis.security.rq_batch`) ranked with bootstrap-over-runs intervals
   (:func:`~mis.security.rank_quantizers`); per run, R² and the Spearman correlation
   between predictions and labels (Tables 4–5), the Spearman correlation between quantized
   and original predictions, and the AUROC for classification tasks (Table 3) — each with
   its mean over runs, a Student-t interval, and its ratio to the original model's
   (r^val_m of §5.2.1).
3. **Report** (:mod:`mis.report.molecular`): ``report.md``, ``results.json``, CSV, and the
   privacy–performance plot of Fig. 3/4.

Resuming and seeds as in :mod:`mis.studies.synthetic`: jobs write atomically, a finished
job is skipped, and every random quantity derives from ``study.seed`` and the task's name
(:func:`~mis.studies.common.derive_seed`; purposes: 1 split, 2 run subsample, 3
initialisation, 4 analysis bootstraps).
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mis.exceptions import DegenerateStatisticWarning, MisValueError
from mis.studies.common import (
    check_out_config,
    derive_seed,
    fill_keep_best_padding,
    job_spec,
    make_executor,
    ranking_summary,
    run_stage,
    torch_threads,
    versions,
)
from mis.studies.molecular_config import MolecularConfig
from mis.studies.synthetic import LABELS, ORIGINAL

__all__ = ["performance", "run_molecular", "split_indices", "task_job"]

SPLIT, SUBSAMPLE, INIT, ANALYSIS = range(1, 5)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random (train, validation) partition of ``range(n)``, both sorted.

    The validation part has ``round(val_fraction · n)`` elements (at least 2).
    """
    n_val = max(2, round(val_fraction * n))
    if n_val >= n - 1:
        raise MisValueError(f"val_fraction={val_fraction} leaves fewer than 2 of {n} for training")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _features(cfg: MolecularConfig, spec, task) -> np.ndarray:
    """(n, d) float32 raw features of a task: the user's embeddings, or RDKit features."""
    if spec.embeddings:
        from mis.chem import load_embeddings

        return load_embeddings(spec.embeddings, n=len(task))
    from mis.chem import featurize

    f = cfg.features
    x, _ = featurize(task.smiles, kinds=f.kinds, radius=f.radius, n_bits=f.n_bits)
    return x


def _job_config(config: Mapping[str, Any]) -> MolecularConfig:
    return MolecularConfig.from_dict(json.loads(Path(config["config"]).read_text()))


# ------------------------------------------------------------------------------------------
# the job of one task
# ------------------------------------------------------------------------------------------
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
    import torch

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
    import torch

    from mis.chem import standardize
    from mis.studies.stacked import StackedQuantizer
    from mis.train.ensemble import train_ensemble
    from mis.train.models import MLP
    from mis.train.trajectory import TrajectoryRecorder

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


# ------------------------------------------------------------------------------------------
# analysis
# ------------------------------------------------------------------------------------------
def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficient of determination of predictions (..., n) for targets y broadcastable to
    them (NaN where the targets are constant)."""
    y = np.broadcast_to(y, pred.shape)
    ss_tot = ((y - y.mean(-1, keepdims=True)) ** 2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ((pred - y) ** 2).sum(-1) / ss_tot, np.nan)


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (average ranks for ties; NaN, with a
    warning, where a row is constant)."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=-1)
    rb = rankdata(np.broadcast_to(b, a.shape), axis=-1)
    ra -= ra.mean(-1, keepdims=True)
    rb -= rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    if (den == 0).any():
        warnings.warn(
            "a prediction vector is constant: its Spearman correlation is undefined (NaN)",
            DegenerateStatisticWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)


def performance(pred: np.ndarray, y: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Per-run metrics of every model variant on the validation part.

    Parameters
    ----------
    pred : ndarray, shape (R, V, n)
        Predictions of R runs × V variants (variant 0 = the original model).
    y : ndarray, shape (n,)
    kind : {"regression", "classification"}

    Returns
    -------
    dict of (R, V) float64 arrays: ``r2``, ``spearman`` (predictions vs labels),
    ``spearman_original`` and ``r2_original`` (vs the original model's predictions) for
    regression; ``auroc`` for classification.
    """
    pred = np.asarray(pred, dtype=np.float64)
    if kind == "regression":
        return {
            "r2": _r2(pred, y),
            "spearman": _spearman(pred, y),
            "spearman_original": _spearman(pred, pred[:, :1, :]),
            "r2_original": _r2(pred, pred[:, :1, :]),
        }
    from mis.metrics import roc_auc

    auc = np.array([[roc_auc(p, y) for p in run] for run in pred])
    return {"auroc": auc}


def _summary(values: np.ndarray, level: float) -> dict:
    """Mean over runs of each variant with its Student-t interval, and the ratio of means to
    the original's (column 0)."""
    from mis.studies.audit_analysis import over_targets

    rows = [over_targets(values[:, j], level) for j in range(values.shape[1])]
    base = rows[0]["mean"]
    for r in rows:
        r["relative"] = r["mean"] / base if base else float("nan")
    return rows


def _analyse_task(cfg: MolecularConfig, store, spec) -> dict:
    from mis.security import rank_quantizers, rq_batch

    key = spec.name
    names = list(cfg.trajectory.quantizers)
    an = cfg.analysis
    get = lambda n: np.asarray(store.load(f"{key}/{n}"))  # noqa: E731
    epochs = get("val_epochs")
    vl, qh = fill_keep_best_padding(get("val_losses"), get("qhash"), epochs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateStatisticWarning)
        det = rq_batch(vl, qh, details=True, progress=False)
    rq = det.rq
    # keep_best truncation: a minimum at the last kept checkpoint of a full buffer may sit
    # beyond it (the module docstring of mis.train.trajectory)
    full = epochs[:, :, -1] >= 0
    at_last = full & (det.argmin_checkpoint == epochs.shape[2] - 1)
    degenerate = sorted({str(w.message) for w in caught})
    ranking = rank_quantizers(
        rq,
        names,
        n_resamples=an.n_resamples,
        confidence_level=an.confidence_level,
        rng=derive_seed(cfg.study.seed, ANALYSIS, key),
    )
    kind = "classification" if int(get("classification")[0]) else "regression"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateStatisticWarning)
        perf = performance(get("pred"), get("y_val"), kind)
    degenerate += sorted({str(w.message) for w in caught})
    variants = [ORIGINAL, *names]
    metrics = {
        m: dict(zip(variants, _summary(v, an.confidence_level), strict=True))
        for m, v in perf.items()
    }
    return {
        "task": key,
        "source": spec.source,
        "kind": kind,
        "n_runs": int(rq.shape[0]),
        "n_val": int(get("y_val").size),
        "n_features": int(get("n_features")[0]),
        "rq": ranking_summary(ranking),
        "rq_diagnostics": {
            "mean_distinct_kept": {
                q: float(det.n_distinct[:, j].mean()) for j, q in enumerate(names)
            },
            "share_min_at_last_kept": {q: float(at_last[:, j].mean()) for j, q in enumerate(names)},
        },
        "metrics": metrics,
        "per_run": {
            "rq": rq.tolist(),
            **{m: v.tolist() for m, v in perf.items()},
        },
        "degenerate": degenerate,
        "cpu_seconds": float(get("cpu_seconds")[0]),
    }


# ------------------------------------------------------------------------------------------
# orchestration
# ------------------------------------------------------------------------------------------
def run_molecular(
    config: MolecularConfig,
    out,
    *,
    executor=None,
    workers: int = 1,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Run (or resume) the molecular study and write its report to ``out``.

    Parameters
    ----------
    config : MolecularConfig
    out : path-like
        Output directory: ``store/``, ``config.json``, ``report.md``, ``results.json``,
        CSV tables and PNG plots.
    executor : object with ``map(fn, iterable)``, optional
        Runs the jobs (one per task); default: ``workers`` processes (serial when 1).
    workers : int, default 1
    progress : bool or None
        Progress bar over tasks (None: only when stderr is a terminal).
    log : callable or None
        Receives one line per stage (default ``print``).

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from mis.report.molecular import write_report
    from mis.store import RunStore

    if not isinstance(config, MolecularConfig):
        raise MisValueError(f"config must be a MolecularConfig; got {type(config).__name__}")
    say = log or (lambda s: None)
    out = Path(out)
    cfg_path = check_out_config(out, config.as_dict(), "molecular study")
    store_path = out / "store"
    store = RunStore(store_path)
    executor = executor or make_executor(workers)
    specs = [
        job_spec(store_path, t.name, i, {"config": cfg_path, "task": i})
        for i, t in enumerate(config.tasks)
    ]
    say(
        f"[train] {len(specs)} task(s) × {config.study.runs} runs × {config.train.epochs} "
        f"epochs, {len(config.trajectory.quantizers)} quantizers"
    )
    ran, skipped, train_s = run_stage(task_job, specs, executor, "train", progress, say)

    t0 = time.perf_counter()
    tasks = [_analyse_task(config, store, t) for t in config.tasks]
    analysis_s = time.perf_counter() - t0
    results = {
        "study": config.study.name,
        "paper": "Aubinais et al. (2025), Membership Inference Risks in Quantized Models, §5.2",
        "config": config.as_dict(),
        "quantizers": list(config.trajectory.quantizers),
        "labels": {q: LABELS.get(q, q) for q in [ORIGINAL, *config.trajectory.quantizers]},
        "tasks": tasks,
        "timing": {
            "train_s": round(train_s, 3),
            "analysis_s": round(analysis_s, 3),
            "jobs_run": ran,
            "jobs_skipped": skipped,
            "cpu_seconds_jobs": round(sum(t["cpu_seconds"] for t in tasks), 3),
        },
        "versions": versions(),
    }
    t0 = time.perf_counter()
    files = write_report(results, out)
    say(f"[report] {', '.join(sorted(files))} in {time.perf_counter() - t0:.1f} s → {out}")
    return results
