"""Resumable jobs and executors.

A *job* is a pure function ``fn(config, index, seed, scratch) -> {key: array}`` of a
configuration, a model index and a seed (``scratch`` is a private directory the job may use
for checkpoints; its outputs must not depend on whether it was used). :func:`run_job` runs
one job described by a :class:`JobSpec` and writes its outputs atomically into the run store
as ``<name>/<key>``, then a ``<name>/done`` marker; a job whose marker exists is skipped. So
an interrupted study, re-run with the same specs, resumes where it stopped: finished models
are never redone or lost, and a job that was killed mid-way restarts from its own last
checkpoint (for the plain trainer) or from scratch — with identical results either way.

Executors have one method, ``map(fn, iterable)`` → iterable of results in order (the
:class:`concurrent.futures.Executor` shape), so a distributed executor (e.g. Dask) can be
added without touching the jobs: :class:`SerialExecutor` runs in this process,
:class:`ProcessExecutor` in a pool of spawned processes (jobs must then be picklable:
module-level functions and plain configs).

Two standard jobs cover the studies: :func:`lira_job` (one shadow model: keep-mask row,
training, logits under augmentation queries) and :func:`trajectory_job` (one run of the
synthetic r_Q experiment of Aubinais et al. §5.1.1: fresh samples, training, quantized
validation losses). :func:`gather` stacks the per-job arrays into the canonical ones.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.quant import weight_quantizer
from mis.store import RunStore
from mis.train.config import TrainConfig, resolve_device
from mis.train.data import (
    GaussianMixture,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_npz,
    load_tinyimagenet,
)
from mis.train.logits import extract_logits
from mis.train.masks import keep_masks
from mis.train.models import build_model
from mis.train.trainer import train_model
from mis.train.trajectory import TrajectoryRecorder

__all__ = [
    "JobSpec",
    "ProcessExecutor",
    "SerialExecutor",
    "gather",
    "lira_job",
    "run_job",
    "run_jobs",
    "trajectory_job",
]

DONE = "done"


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job: where its outputs go and the arguments of the job function.

    Attributes
    ----------
    store : str
        Run-store directory.
    name : str
        Output prefix inside the store (e.g. ``"models/0003"``).
    index : int
        Model / run index passed to the job.
    seed : int
        The job's seed.
    config : dict
        Passed to the job unchanged (shared by all jobs of a study).
    """

    store: str
    name: str
    index: int
    seed: int
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def scratch(self) -> Path:
        return Path(self.store) / ".scratch" / self.name


def _describe(obj):
    """A JSON-safe description of a config (callables by qualified name)."""
    if isinstance(obj, Mapping):
        return {str(k): _describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_describe(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    return repr(obj)


def job_done(spec: JobSpec) -> bool:
    """True when the job's outputs are all in its store (its ``done`` marker exists)."""
    if not (Path(spec.store) / "manifest.json").exists():
        return False
    return RunStore(spec.store).has(f"{spec.name}/{DONE}")


def run_job(fn: Callable, spec: JobSpec) -> str:
    """Run ``fn(spec.config, spec.index, spec.seed, scratch)`` unless already done.

    Outputs (a mapping key → array) are saved as ``<name>/<key>`` with the seed, index and
    config in their metadata, then the marker ``<name>/done``; the scratch directory is
    removed afterwards.

    Returns
    -------
    str
        ``"skipped"`` or ``"done"``.
    """
    store = RunStore(spec.store)
    if store.has(f"{spec.name}/{DONE}"):
        return "skipped"
    scratch = spec.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    outputs = fn(spec.config, spec.index, spec.seed, scratch)
    if not isinstance(outputs, Mapping) or not outputs:
        raise MisValueError(
            f"job {getattr(fn, '__name__', fn)!r} must return a non-empty mapping key → array"
        )
    meta = dict(index=spec.index, seed=spec.seed, job=_describe(fn), config=_describe(spec.config))
    for key, arr in outputs.items():
        store.save(f"{spec.name}/{key}", np.asarray(arr), **meta)
    store.save(f"{spec.name}/{DONE}", np.ones(1, dtype=np.uint8), **meta)
    shutil.rmtree(scratch, ignore_errors=True)
    return "done"


class SerialExecutor:
    """Run jobs one after another in this process."""

    def map(self, fn: Callable, iterable: Iterable) -> Iterable:
        return (fn(item) for item in iterable)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class ProcessExecutor:
    """Run jobs in a pool of worker processes (``concurrent.futures.ProcessPoolExecutor``).

    Parameters
    ----------
    max_workers : int, optional
        Default: the number of CPUs.
    threads_per_worker : int, optional
        ``torch.set_num_threads`` in each worker; default ``max(1, cpus // max_workers)`` so
        the workers do not oversubscribe the cores.
    mp_context : str, default "spawn"
        Start method; "spawn" is safe with torch (no forked thread pools or CUDA state).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        threads_per_worker: int | None = None,
        mp_context: str = "spawn",
    ):
        cpus = os.cpu_count() or 1
        self.max_workers = max_workers or cpus
        self.threads = threads_per_worker or max(1, cpus // self.max_workers)
        self.mp_context = mp_context

    def map(self, fn: Callable, iterable: Iterable) -> Iterable:
        with concurrent.futures.ProcessPoolExecutor(
            self.max_workers,
            mp_context=multiprocessing.get_context(self.mp_context),
            initializer=_init_worker,
            initargs=(self.threads,),
        ) as pool:
            yield from pool.map(fn, iterable)


def run_jobs(
    fn: Callable, specs: Sequence[JobSpec], executor=None, *, progress: bool | None = None
) -> list[str]:
    """Run every job of ``specs`` with ``executor`` (default serial); skip finished ones.

    Returns the status of each job (``"done"`` or ``"skipped"``), in order.
    """
    specs = list(specs)
    executor = executor or SerialExecutor()
    results = executor.map(functools.partial(run_job, fn), specs)
    return list(progress_bar(results, total=len(specs), desc="jobs", enabled=progress))


def gather(store, names: Sequence[str], key: str, out: str | None = None, **meta) -> np.ndarray:
    """Stack ``<name>/<key>`` over ``names`` (in order) along a new axis 0.

    With ``out``, the stacked array is also saved in ``store`` under that name (e.g.
    ``gather(store, names, "logits", out="logits")``).
    """
    store = store if isinstance(store, RunStore) else RunStore(store, create=False)
    missing = [n for n in names if not store.has(f"{n}/{DONE}")]
    if missing:
        raise MisValueError(f"{len(missing)} job(s) have not finished, e.g. {missing[:3]}")
    arr = np.stack([np.asarray(store.load(f"{n}/{key}")) for n in names])
    if out is not None:
        store.save(out, arr, gathered_from=[f"{n}/{key}" for n in names[:5]], **meta)
    return arr


# ------------------------------------------------------------------------------------------
# Standard jobs
# ------------------------------------------------------------------------------------------
def load_dataset(spec: Mapping[str, Any]):
    """A :class:`~mis.train.data.Dataset` from ``{"name": ..., ...}`` (digits, cifar10,
    cifar100, tinyimagenet with ``root``; npz with ``path``)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    loaders = {
        "digits": load_digits,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "tinyimagenet": load_tinyimagenet,
        "npz": load_npz,
    }
    if name not in loaders:
        raise MisValueError(f"dataset name must be one of {sorted(loaders)}; got {name!r}")
    return loaders[name](**spec)


def _model_fn(spec: Mapping[str, Any]):
    spec = dict(spec)
    name = spec.pop("name", None)
    return functools.partial(build_model, name, **spec)


def lira_job(config: Mapping[str, Any], index: int, seed: int, scratch: Path) -> dict:
    """Train shadow model ``index`` on its keep-mask row and return its logits.

    Config keys: ``dataset`` (for :func:`load_dataset`), ``n_models``, ``pkeep`` (default
    0.5), ``keep_seed`` (the keep masks are recomputed identically in every job),
    ``model`` (``{"name": ..., **kwargs}`` for :func:`~mis.train.models.build_model`),
    ``train`` (:class:`~mis.train.config.TrainConfig` fields), ``n_aug`` (queries, default 2),
    ``device`` (optional), ``n_examples`` (optional: use only the first ones).

    Returns ``{"keep": (N,) bool, "logits": (N, n_aug, n_classes) float32}``.
    Checkpoints every epoch in ``scratch`` so a killed job resumes.
    """
    ds = load_dataset(config["dataset"])
    n = int(config.get("n_examples") or len(ds))
    keep = keep_masks(
        int(config["n_models"]), n, config.get("pkeep", 0.5), rng=int(config.get("keep_seed", 0))
    )[index]
    x = ds.tensor(ds.x[:n])
    y = ds.y[:n]
    cfg = TrainConfig(**config.get("train", {}))
    model = train_model(
        _model_fn(config["model"]),
        x,
        y,
        cfg,
        seed,
        subset=keep,
        device=config.get("device"),
        checkpoint=Path(scratch) / "ckpt.pt",
        progress=False,
    )
    logits = extract_logits(
        model, x, queries=int(config.get("n_aug", 2)), device=config.get("device")
    )
    return {"keep": keep, "logits": logits[0]}


def _resolve_quantizers(spec) -> dict:
    """Names → callables: callables pass through; strings go to ``mis.quant.weight_quantizer``."""
    if not isinstance(spec, Mapping):
        spec = {
            (q if isinstance(q, str) else getattr(q, "__name__", f"q{i}")): q
            for i, q in enumerate(spec)
        }
    out = {}
    for name, q in spec.items():
        out[name] = weight_quantizer(q) if isinstance(q, str) else q
    return out


def trajectory_job(config: Mapping[str, Any], index: int, seed: int, scratch: Path) -> dict:
    """One run of the synthetic r_Q experiment (Aubinais et al. 2025, §5.1.1).

    Config keys: ``mixture`` (``dim``, ``k_modes``, ``sigma``, ``seed``: the fixed
    :class:`~mis.train.data.GaussianMixture`), ``n`` (training samples, fresh per run from
    ``seed``), ``n_val`` and ``val_seed`` (a validation set shared by all runs), ``model``
    (default the quadratic single layer), ``train`` (default
    :meth:`TrainConfig.aubinais2025`), ``quantizers`` (mapping name → callable or quantizer
    name), ``every``, ``keep_best``, ``device``.

    Returns ``val_losses`` (n_q, n_ckpt, n_val), ``qhash`` and ``val_epochs``
    (n_q, n_ckpt), plus the run's training set ``x`` (n, dim) and ``y``.
    """
    mx = dict(config["mixture"])
    mixture = GaussianMixture.random(
        dim=mx.get("dim", 128), k_modes=mx["k_modes"], sigma=mx["sigma"], rng=int(mx.get("seed", 0))
    )
    device = resolve_device(config.get("device"))
    ss = np.random.SeedSequence([int(seed), 1])
    x, y = mixture.sample(int(config.get("n", 128)), np.random.default_rng(ss))
    xv, yv = mixture.sample(int(config.get("n_val", 1000)), int(config.get("val_seed", 12345)))
    model = config.get("model", {"name": "quadratic_linear", "dim": mixture.dim})
    cfg = TrainConfig.aubinais2025(**config.get("train", {}))
    rec = TrajectoryRecorder(
        _resolve_quantizers(config["quantizers"]),
        torch.as_tensor(xv, device=device),
        torch.as_tensor(yv, device=device),
        every=int(config.get("every", 1)),
        keep_best=config.get("keep_best"),
    )
    train_model(
        _model_fn(model),
        torch.as_tensor(x),
        y,
        cfg,
        seed,
        device=device,
        callbacks=[rec],
        progress=False,
    )
    res = rec.result()
    return {**{k: v[0] for k, v in res.items()}, "x": x, "y": y}
