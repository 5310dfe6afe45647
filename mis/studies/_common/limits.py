"""Size ceilings of the studies: what a configuration asks for, checked before anything is
allocated or written.

A study configuration can ask for more than any machine has (``[study] runs = 1e11``,
``[data] dim = 1e9``); without a check it grows until the kernel kills it, or fails deep
inside with a raw allocation error. :func:`check_resources` compares an estimate with

* :data:`MAX_JOBS` jobs per study (a documented ceiling: beyond it the run store's manifest,
  rewritten after every array, makes the bookkeeping itself the bottleneck);
* the memory available to this process (``MemAvailable``, or ``ulimit -v``), for the
  largest job times the workers that run at once;
* the free space of the file system of the output directory, for the run store.

and raises :class:`~mis.exceptions.ResourceLimitError` saying what would be needed. The
estimates (:func:`synthetic_footprint`, :func:`audit_footprint`,
:func:`molecular_footprint`) count the dominant arrays of each study's jobs, with a factor
of 2 for temporaries; they are meant to catch requests that cannot fit, not to predict the
peak to the byte.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from mis._validation import available_memory, format_bytes
from mis.exceptions import ResourceLimitError

__all__ = [
    "MAX_JOBS",
    "WORKER_BASE",
    "audit_footprint",
    "check_resources",
    "molecular_footprint",
    "synthetic_footprint",
]

#: Ceiling on the jobs of one study.
MAX_JOBS = 100_000
#: Memory of a worker process before its job allocates anything (Python, numpy, torch).
WORKER_BASE = 300 * 2**20
_SLACK = 2.0  # temporaries on top of the counted arrays


def _free_disk(out) -> int | None:
    """Free bytes on the file system that holds ``out`` (its first existing ancestor)."""
    p = Path(out).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_resources(
    what: str,
    *,
    jobs: int = 0,
    memory: float = 0,
    workers: int = 1,
    disk: float = 0,
    out=None,
    details: str = "",
) -> None:
    """Raise :class:`~mis.exceptions.ResourceLimitError` when ``what`` cannot fit.

    Parameters
    ----------
    what : str
        Names the study in the message.
    jobs : int
        Jobs the study runs; at most :data:`MAX_JOBS`.
    memory : float
        Bytes one job needs; ``memory × workers`` must fit in the available memory (plus
        :data:`WORKER_BASE` per worker process when there are several).
    workers : int
        Jobs that run at once.
    disk : float
        Bytes the run store will hold; must fit in the free space of ``out``'s file system.
    out : path-like, optional
        The output directory (for the disk check).
    details : str
        Appended to the message (e.g. which configuration keys drive the estimate).
    """
    extra = f" ({details})" if details else ""
    if jobs > MAX_JOBS:
        raise ResourceLimitError(
            f"{what} would run {jobs:,} jobs; the ceiling is {MAX_JOBS:,} "
            f"(mis.studies._common.limits.MAX_JOBS){extra}"
        )
    workers = max(int(workers), 1)
    per_worker = memory + (WORKER_BASE if workers > 1 else 0)
    need = per_worker * workers
    have = available_memory()
    if need > have:
        per = f" ({format_bytes(per_worker)} per worker × {workers} workers)" if workers > 1 else ""
        raise ResourceLimitError(
            f"{what} would need about {format_bytes(need)} of memory{per}; this machine has "
            f"{format_bytes(have)} available{extra}"
        )
    if disk and out is not None:
        free = _free_disk(out)
        if free is not None and disk > free:
            raise ResourceLimitError(
                f"{what} would write about {format_bytes(disk)} to {out}; its file system has "
                f"{format_bytes(free)} free{extra}"
            )


def synthetic_footprint(config) -> dict:
    """Jobs, memory per job, workers and store size of the synthetic study
    (:class:`mis.studies.synthetic.Config`), for :func:`check_resources`.

    The training job streams r_Q (:class:`~mis.studies.synthetic.streaming.StreamingRecorder`):
    its memory is bounded by one int8 code per parameter of every distinct quantized point,
    at worst one per checkpoint; the store keeps a few (runs × quantizers) arrays.
    """
    st, data, tr, tj, mis = config.study, config.data, config.train, config.trajectory, config.mis
    settings = len(data.k_modes) * len(data.sigmas)
    chunk = min(st.chunk_size, st.runs)
    q = len(tj.quantizers)
    checkpoints = max(tr.epochs // tj.every, 1)
    two_d = 2 * data.dim
    p = config.model.n_outputs * (two_d + 1)  # the single layer on [x, x²] with its bias
    k = max(data.k_modes)
    train_job = (
        8 * (k * data.dim + (data.n_val + data.n_test) * two_d + chunk * data.n_train * two_d)
        + 8 * 2 * chunk * q * data.n_val  # losses of the current checkpoint, and their sums
        + chunk * q * checkpoints * (p + 24)  # int8 codes, mean and hash of every distinct point
    )
    # members and non-members of every run, as lists and stacked (the discriminator's input)
    mis_job = 8 * st.runs * (p + 4 * mis.n_members * data.dim) if mis.enabled else 0
    jobs = settings * math.ceil(st.runs / chunk)
    if mis.enabled:
        jobs += settings * (q + int(mis.include_original)) * mis.repeats
    per_run = 8 * q * 12 + 4 * p + 16 * (1 + q)  # r_Q and diagnostics, final weights, accuracies
    disk = settings * st.runs * (per_run + 16 * (q + 1) * mis.repeats)
    return {
        "jobs": jobs,
        "memory": _SLACK * max(train_job, mis_job),
        "workers": st.workers,
        "disk": disk,
        "details": "study.runs, study.chunk_size, data.dim, data.n_train/n_val/n_test, "
        "train.epochs / trajectory.every, mis.n_members",
    }


def audit_footprint(config, n_examples: int | None = None) -> dict:
    """Jobs, memory per job and store size of the audit (:class:`mis.studies.audit.Config`);
    ``n_examples`` is the size of the audit pool when known (else the configuration's)."""
    st, data, quant, att = config.study, config.data, config.quant, config.attack
    n_models = st.shadows + st.targets
    if n_examples is None:
        n_examples = data.n_examples or (data.synthetic_n if data.source == "synthetic" else 0)
    sample = math.prod(data.synthetic_shape) if data.source == "synthetic" else 3 * 64 * 64
    classes = data.synthetic_classes if data.source == "synthetic" else 200
    chunk = min(st.chunk_size, n_models)
    variants = len(quant.methods) * len(quant.bits) * (2 if quant.decoupled_last_layer_bits else 1)
    quantized = n_models if att.quantize_shadows else st.targets
    jobs = math.ceil(n_models / max(chunk, 1)) + variants * quantized
    pool = n_examples * sample * 4  # the data as float32
    per_model = n_examples * att.n_aug * (classes + 3) * 4  # logits and the derived signals
    keep = n_models * n_examples
    return {
        "jobs": jobs,
        "memory": _SLACK * (pool + chunk * per_model + keep),
        "workers": 1,
        "disk": n_models * per_model + variants * quantized * per_model + keep,
        "details": "study.shadows, study.targets, data.n_examples, attack.n_aug, "
        "quant.methods × quant.bits",
    }


def molecular_footprint(config) -> dict:
    """Jobs and memory per job of the molecular study (:class:`mis.studies.molecular.Config`);
    the data set sizes are not known before the molecules are read, so the model (weights,
    gradients, Adam's moments) and the kept trajectories are counted for 1,000 validation
    samples."""
    s = config.sections
    q = len(s.trajectory.quantizers)
    keep = s.trajectory.keep_best or max(s.train.epochs // s.trajectory.every, 1)
    features = s.features.n_bits + 256
    params = s.train.hidden * (features + 2) + s.train.hidden
    runs = s.study.runs
    memory = 4 * runs * (4 * params + q * keep * 1000)  # weights, Adam; losses kept per sample
    return {
        "jobs": len(config.tasks),
        "memory": _SLACK * memory,
        "workers": 1,
        "details": "study.runs, train.hidden, features.n_bits, trajectory.keep_best",
    }
