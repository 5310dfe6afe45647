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
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mis import __version__
from mis._progress import progress_bar
from mis._validation import integer
from mis.exceptions import ConfigMismatchError, MisValueError
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
    "job_done",
    "job_identity",
    "lira_job",
    "pending_jobs",
    "run_job",
    "run_jobs",
    "trajectory_job",
]

DONE = "done"

log = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
#: PID of the process that started this worker (set in pool workers by ``_init_worker``).
_PARENT_PID: int | None = None


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job: where its outputs go and the arguments of the job function.

    Attributes
    ----------
    store : str
        Run-store directory.
    name : str
        Output prefix inside the store (e.g. ``"models/0003"``): letters, digits, ``_ . -``
        with ``/`` between parts.
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

    def __post_init__(self):
        if not isinstance(self.store, (str, os.PathLike)) or str(self.store) == "":
            raise MisValueError(f"store must be a non-empty path; got {self.store!r}")
        if (
            not isinstance(self.name, str)
            or not _JOB_NAME.fullmatch(self.name)
            or ".." in self.name.split("/")
        ):
            raise MisValueError(
                "name must be letters, digits, '_', '.', '-' with '/' between parts; "
                f"got {self.name!r}"
            )
        integer(self.index, "index", 0)
        integer(self.seed, "seed", 0)

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


def job_identity(spec: JobSpec, run_identity: str | None = None) -> str:
    """The identity of a job's outputs: a sha256 over the job's name, index and seed, the
    package version, and either ``run_identity`` (the content hash of the study
    configuration that the store records, see :meth:`~mis.store.RunStore.claim_identity`) or
    else the content of ``spec.config``. Recorded with the outputs; a finished job is skipped
    only when its recorded identity is the one asked for.
    """
    body: dict[str, Any] = {
        "name": spec.name,
        "index": int(spec.index),
        "seed": int(spec.seed),
        "mis": __version__,
    }
    if run_identity:
        body["run"] = run_identity
    else:
        body["config"] = _describe(spec.config)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _run_identity(manifest: Mapping[str, Any]) -> str | None:
    ident = manifest.get("identity")
    return ident.get("hash") if isinstance(ident, Mapping) else None


def _job_state(spec: JobSpec, store: RunStore, manifest=None) -> tuple[str, str | None]:
    """``("done" | "todo" | "damaged" | "foreign", why)`` of a job in an open store.

    done: its marker is listed, was made under this identity (markers of older versions
    carry none and are trusted) and every output it lists verifies (sha256). damaged: the
    marker is there but an output is missing or fails verification. foreign: the marker was
    made under another identity.
    """
    manifest = manifest or store.manifest
    arrays = manifest["arrays"]
    marker = arrays.get(f"{spec.name}/{DONE}")
    if marker is None:
        return "todo", None
    meta = marker.get("meta") or {}
    recorded = meta.get("identity")
    if recorded is not None and recorded != job_identity(spec, _run_identity(manifest)):
        return "foreign", (
            f"job {spec.name!r} in {spec.store} was made by another configuration (identity "
            f"{str(recorded)[:12]}…); use another store, or delete its outputs to recompute it"
        )
    keys = meta.get("outputs")
    if isinstance(keys, list):
        names = [f"{spec.name}/{k}" for k in keys]
    else:  # markers written before outputs were listed: everything under the job's prefix
        names = [n for n in arrays if n.startswith(f"{spec.name}/") and n != f"{spec.name}/{DONE}"]
    problems = store.check([*names, f"{spec.name}/{DONE}"], manifest=manifest)
    bad = [msg for msg in problems.values() if msg is not None]
    if bad:
        return "damaged", bad[0]
    return "done", None


def job_done(spec: JobSpec, store: RunStore | None = None, manifest=None) -> bool:
    """True when the job is finished: its ``done`` marker exists, was made under the same
    identity (:func:`job_identity`) and every output it lists verifies (sha256).

    ``store`` (an open :class:`~mis.store.RunStore` of ``spec.store``) and ``manifest`` (its
    manifest, read once) save re-reading them when many jobs are checked.
    """
    if store is None:
        if not (Path(spec.store) / "manifest.json").exists():
            return False
        store = RunStore(spec.store, create=False)
    return _job_state(spec, store, manifest)[0] == "done"


def pending_jobs(specs: Sequence[JobSpec]) -> list[JobSpec]:
    """The jobs of ``specs`` that are not finished, in order (each store opened once).

    A job whose outputs fail verification is pending again, with one warning line on the
    ``mis`` logger saying so; a job made under another identity raises
    :class:`~mis.exceptions.ConfigMismatchError`.
    """
    stores: dict[str, tuple[RunStore, dict] | None] = {}
    todo = []
    for spec in specs:
        key = str(spec.store)
        if key not in stores:
            if (Path(key) / "manifest.json").exists():
                st = RunStore(key, create=False)
                stores[key] = (st, st.manifest)
            else:
                stores[key] = None
        if stores[key] is None:
            todo.append(spec)
            continue
        state, why = _job_state(spec, *stores[key])
        if state == "foreign":
            raise ConfigMismatchError(why)
        if state == "damaged":
            log.warning("job %s failed verification, re-running it: %s", spec.name, why)
        if state != "done":
            todo.append(spec)
    return todo


def _scratch(spec: JobSpec, store: RunStore) -> Path:
    scratch = spec.scratch
    store._make_parent(scratch / "x", f"scratch of job {spec.name!r}")
    scratch.mkdir(exist_ok=True)
    return scratch


def run_job(fn: Callable, spec: JobSpec) -> str:
    """Run ``fn(spec.config, spec.index, spec.seed, scratch)`` unless already done.

    Outputs (a mapping key → array) are saved as ``<name>/<key>`` with the seed, index,
    config and the job's identity (:func:`job_identity`) in their metadata, then the marker
    ``<name>/done`` listing them; the scratch directory is removed afterwards. A job whose
    marker is there but whose outputs fail verification is re-run (its marker is dropped
    first, so an interruption leaves it unfinished).

    Returns
    -------
    str
        ``"skipped"`` or ``"done"``.

    Raises
    ------
    ConfigMismatchError
        If the store holds this job's outputs made under another identity.
    """
    store = RunStore(spec.store)
    manifest = store.manifest
    state, why = _job_state(spec, store, manifest)
    if state == "done":
        return "skipped"
    if state == "foreign":
        raise ConfigMismatchError(why)
    if state == "damaged":
        log.debug("job %s: %s; re-running", spec.name, why)
        store.drop([f"{spec.name}/{DONE}"])
    scratch = _scratch(spec, store)
    outputs = fn(spec.config, spec.index, spec.seed, scratch)
    if not isinstance(outputs, Mapping) or not outputs:
        raise MisValueError(
            f"job {getattr(fn, '__name__', fn)!r} must return a non-empty mapping key → array"
        )
    _exit_if_orphaned()
    identity = job_identity(spec, _run_identity(manifest))
    meta = dict(
        index=spec.index,
        seed=spec.seed,
        job=_describe(fn),
        config=_describe(spec.config),
        identity=identity,
    )
    for key, arr in outputs.items():
        _exit_if_orphaned()
        store.save(f"{spec.name}/{key}", np.asarray(arr), **meta)
    _exit_if_orphaned()
    store.save(
        f"{spec.name}/{DONE}", np.ones(1, dtype=np.uint8), outputs=[str(k) for k in outputs], **meta
    )
    shutil.rmtree(scratch, ignore_errors=True)
    return "done"


class SerialExecutor:
    """Run jobs one after another in this process."""

    def map(self, fn: Callable, iterable: Iterable) -> Iterable:
        return (fn(item) for item in iterable)


# ------------------------------------------------------------------------------------------
# worker processes that die with their parent
# ------------------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _exit_if_orphaned() -> None:
    """In a pool worker whose parent is gone: exit at once, writing nothing more."""
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        os._exit(1)


def _watch_parent(interval: float) -> None:
    while True:
        _exit_if_orphaned()
        time.sleep(interval)


def _die_with_parent(parent_pid: int) -> None:
    """Make this process die with ``parent_pid``: the kernel's parent-death signal (Linux),
    and a thread that exits the process as soon as it is re-parented (every platform)."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _exit_if_orphaned()  # the parent may have died before the signal was armed
    threading.Thread(target=_watch_parent, args=(0.5,), daemon=True, name="mis-parent").start()


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    return f"mis: warning: {message}\n"


def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    torch.set_num_threads(threads)
    warnings.formatwarning = _plain_warning
    # progress bars of a worker need no lock shared across processes; tqdm's default would be
    # a multiprocessing lock, which a worker killed with its parent leaves registered
    # (the resource tracker then warns about a "leaked semaphore")
    tqdm.set_lock(threading.RLock())
    # a signal sent to the parent's process group (Ctrl-C) is the parent's to handle: it
    # stops the pool (and kills the workers) on every exit path
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def _kill_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes now (running jobs are abandoned, unfinished)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.join(5)


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

    Notes
    -----
    The workers die with this process on every exit path: when :meth:`map` ends with an
    error or is interrupted (Ctrl-C, SIGTERM turned into an exception) or closed early, the
    workers are killed at once (their unfinished jobs wrote no ``done`` marker and re-run
    on resume); when this process is killed outright (``kill -9``, out of memory), each
    worker is killed by the kernel's parent-death signal (Linux) or exits within half a
    second, and never writes into the store after its parent is gone.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        threads_per_worker: int | None = None,
        mp_context: str = "spawn",
    ):
        cpus = os.cpu_count() or 1
        if max_workers is not None:
            integer(max_workers, "max_workers", 1)
        if threads_per_worker is not None:
            integer(threads_per_worker, "threads_per_worker", 1)
        self.max_workers = max_workers or cpus
        self.threads = threads_per_worker or max(1, cpus // self.max_workers)
        self.mp_context = mp_context

    def map(self, fn: Callable, iterable: Iterable) -> Iterable:
        pool = concurrent.futures.ProcessPoolExecutor(
            self.max_workers,
            mp_context=multiprocessing.get_context(self.mp_context),
            initializer=_init_worker,
            initargs=(self.threads, os.getpid()),
        )
        try:
            # submitted one by one (not pool.map, whose iterator cancels the pending futures
            # when it is interrupted, which races with the pool failing them itself)
            futures = [pool.submit(fn, item) for item in iterable]
            for future in futures:
                yield future.result()
        except BaseException:  # an error, an interrupt, or the generator closed early
            _kill_workers(pool)  # the pool then fails every pending job, its thread ends
            pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)


def run_jobs(
    fn: Callable, specs: Sequence[JobSpec], executor=None, *, progress: bool | None = None
) -> list[str]:
    """Run every job of ``specs`` with ``executor`` (default serial); skip finished ones.

    A finished job (see :func:`job_done`) is answered ``"skipped"`` without reaching the
    executor; one whose outputs fail verification is re-run (one warning line says so).
    Returns the status of each job (``"done"`` or ``"skipped"``), in order.
    """
    specs = list(specs)
    todo = pending_jobs(specs)
    executor = executor or SerialExecutor()
    statuses = {id(s): "skipped" for s in specs}
    if todo:
        results = executor.map(functools.partial(run_job, fn), todo)
        for spec, status in zip(
            todo,
            progress_bar(results, total=len(todo), desc="jobs", enabled=progress),
            strict=True,
        ):
            statuses[id(spec)] = status
    return [statuses[id(s)] for s in specs]


def gather(store, names: Sequence[str], key: str, out: str | None = None, **meta) -> np.ndarray:
    """Stack ``<name>/<key>`` over ``names`` (in order) along a new axis 0.

    With ``out``, the stacked array is also saved in ``store`` under that name (e.g.
    ``gather(store, names, "logits", out="logits")``).
    """
    store = store if isinstance(store, RunStore) else RunStore(store, create=False)
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise MisValueError(f"names must be a list of job names; got {names!r:.60}")
    names = list(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise MisValueError(f"names must list at least one job name (strings); got {names!r:.60}")
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
