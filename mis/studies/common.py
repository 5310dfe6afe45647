"""Pieces shared by the studies (synthetic r_Q study, PTQ audit): seeds, torch threads, versions."""

from __future__ import annotations

import contextlib
import platform
import sys
import zlib

import numpy as np


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from the master seed and keys (ints, or strings hashed with CRC-32).

    ``numpy.random.SeedSequence([seed, *keys])``: independent streams for every purpose and
    index, whatever order the jobs run in.
    """
    ints = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


@contextlib.contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` for the duration (0: leave as is); restored after.

    Tiny models want one thread: two stall on a busy 2-core machine.
    """
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def versions() -> dict[str, str]:
    """Versions of mis and its numerical stack, for results.json."""
    import numba
    import scipy
    import torch

    from mis import __version__

    return {
        "mis": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


# ------------------------------------------------------------------------------------------
# resumable stages (jobs through an executor) and the output directory
# ------------------------------------------------------------------------------------------
def check_out_config(out, config: dict, what: str = "study", ignore=()) -> str:
    """Write ``<out>/config.json``, or check that the one there is the same configuration.

    ``config`` is the study's plain dict (sections of keys); ``ignore`` lists ``"section.key"``
    entries that do not change results (e.g. the number of workers). A different
    configuration raises ``ValueError`` naming the keys that differ. Returns the absolute
    path of ``config.json`` (jobs read their configuration from it).
    """
    import json
    from pathlib import Path

    from mis.exceptions import MisValueError
    from mis.store import atomic_write_text

    out = Path(out)
    path = out / "config.json"
    new = json.loads(json.dumps(config))  # tuples -> lists, as read back
    for item in ignore:
        section, key = item.split(".")
        new.get(section, {}).pop(key, None)
    if path.exists():
        old = json.loads(path.read_text())
        if old != new:

            def keys(d, s):
                v = d.get(s, {})
                return v if isinstance(v, dict) else {"": v}

            diff = sorted(
                f"{s}.{k}".rstrip(".")
                for s in set(old) | set(new)
                for k in set(keys(old, s)) | set(keys(new, s))
                if keys(old, s).get(k) != keys(new, s).get(k)
            )
            raise MisValueError(
                f"{out} holds a {what} with a different configuration (differs in {diff}); "
                "use another output directory, or the same configuration to resume"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True) + "\n")
    return str(path.resolve())


def job_spec(store, name: str, index: int, config: dict, seed: int = 0):
    """A :class:`~mis.train.jobs.JobSpec` writing under ``name`` in the run store ``store``."""
    from mis.train.jobs import JobSpec

    return JobSpec(store=str(store), name=name, index=index, seed=seed, config=config)


def run_stage(fn, specs, executor, desc: str, progress, log=None) -> tuple[int, int, float]:
    """Run the unfinished ``specs`` through ``executor``.

    No worker is started for a finished job (its ``done`` marker exists). ``desc`` labels the
    progress bar and, when ``log`` is given, the line ``[desc] done in … s`` it receives.
    Returns (jobs run, jobs skipped, seconds).
    """
    import functools
    import time

    from mis.train import progress_bar
    from mis.train.jobs import job_done, run_job

    t0 = time.perf_counter()
    todo = [s for s in specs if not job_done(s)]
    ran, skipped = 0, len(specs) - len(todo)
    if todo:
        results = executor.map(functools.partial(run_job, fn), todo)
        statuses = list(progress_bar(results, total=len(todo), desc=desc, enabled=progress))
        ran = sum(s == "done" for s in statuses)
        skipped += len(statuses) - ran
    seconds = time.perf_counter() - t0
    if log is not None:
        log(f"[{desc}] done in {seconds:.1f} s ({ran} run, {skipped} already done)")
    return ran, skipped, seconds


def make_executor(workers: int):
    """Serial for one worker, else that many spawned processes with one torch thread each."""
    from mis.train.jobs import ProcessExecutor, SerialExecutor

    if workers <= 1:
        return SerialExecutor()
    return ProcessExecutor(max_workers=workers, threads_per_worker=1)


def fill_keep_best_padding(val_losses, qhash, val_epochs):
    """Replace the padding rows of keep-best trajectories (fewer distinct points than B:
    ``val_epochs < 0``) by copies of the best point; they share its hash, so
    :func:`~mis.security.rq_batch` deduplicates them away.

    Shapes: ``val_losses`` (R, Q, B, n_val), ``qhash`` and ``val_epochs`` (R, Q, B).
    """
    pad = val_epochs < 0
    if not pad.any():
        return val_losses, qhash
    vl = np.where(pad[..., None], val_losses[:, :, :1], val_losses)
    qh = np.where(pad, qhash[:, :, :1], qhash)
    return vl, qh


def interval_dict(iv) -> dict:
    """An :class:`~mis.metrics.Interval` as a plain dict (``estimate``, ``low``, ``high``)."""
    return {"estimate": float(iv.estimate), "low": float(iv.low), "high": float(iv.high)}


def ranking_summary(ranking) -> dict:
    """A :class:`~mis.security.QuantizerRanking` as plain data for ``results.json``."""
    import dataclasses

    return {
        "per_quantizer": {
            q: {
                "mean": interval_dict(ranking.mean[j]),
                "median": interval_dict(ranking.median[j]),
                "rank": float(ranking.ranks[j]),
                "n_inf": int(ranking.n_inf[j]),
            }
            for j, q in enumerate(ranking.names)
        },
        "order": ranking.ranked_names(),
        "adjacent": [
            {
                "higher": a.higher,
                "lower": a.lower,
                "difference": dataclasses.asdict(a.difference),
                "significant": bool(a.significant),
            }
            for a in ranking.adjacent
        ],
        "confidence_level": ranking.confidence_level,
        "n_resamples": ranking.n_resamples,
    }
