"""The output directory of a study and its resumable stages: seeds, the configuration written
beside the results, jobs run through an executor, the timing log, versions."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import platform
import sys
import time
import zlib
from pathlib import Path

import numba
import numpy as np
import scipy
import torch

from mis import __version__
from mis._progress import progress_bar
from mis.exceptions import MisValueError
from mis.store import atomic_write_text
from mis.train.executors import make_executor
from mis.train.jobs import JobSpec, job_done, run_job

__all__ = [
    "TimingLog",
    "check_out_config",
    "derive_seed",
    "job_spec",
    "local_executor",
    "run_stage",
    "torch_threads",
    "versions",
]

log = logging.getLogger(__name__)


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
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def versions() -> dict[str, str]:
    """Versions of mis and its numerical stack, for results.json."""
    return {
        "mis": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def check_out_config(out, config: dict, what: str = "study", ignore=()) -> str:
    """Write ``<out>/config.json``, or check that the one there is the same configuration.

    ``config`` is the study's plain dict (sections of keys); ``ignore`` lists ``"section.key"``
    entries that do not change results (e.g. the number of workers). A different
    configuration raises ``ValueError`` naming the keys that differ. Returns the absolute
    path of ``config.json`` (jobs read their configuration from it).
    """
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


def local_executor(workers: int):
    """This process for one worker, else that many spawned processes with one torch thread
    each (tiny models: two threads per process stall on a busy 2-core machine)."""
    if workers > 1:
        return make_executor("process", n_workers=workers, threads_per_worker=1)
    return make_executor("serial")


def job_spec(store, name: str, index: int, config: dict, seed: int = 0) -> JobSpec:
    """A :class:`~mis.train.jobs.JobSpec` writing under ``name`` in the run store ``store``."""
    return JobSpec(store=str(store), name=name, index=index, seed=seed, config=config)


def run_stage(fn, specs, executor, desc: str, progress) -> tuple[int, int, float]:
    """Run the unfinished ``specs`` through ``executor``.

    No worker is started for a finished job (its ``done`` marker exists). ``desc`` labels the
    progress bar and the log line ``[desc] done in … s`` (logger ``mis.studies``, level INFO).
    Returns (jobs run, jobs skipped, seconds).
    """
    t0 = time.perf_counter()
    todo = [s for s in specs if not job_done(s)]
    ran, skipped = 0, len(specs) - len(todo)
    if todo:
        results = executor.map(functools.partial(run_job, fn), todo)
        statuses = list(progress_bar(results, total=len(todo), desc=desc, enabled=progress))
        ran = sum(s == "done" for s in statuses)
        skipped += len(statuses) - ran
    seconds = time.perf_counter() - t0
    log.info("[%s] done in %.1f s (%d run, %d already done)", desc, seconds, ran, skipped)
    return ran, skipped, seconds


class TimingLog:
    """``<out>/timing.json``: one entry per finished stage of every invocation of a study.

    An entry is ``{"invocation", "stage", "seconds", "jobs_run", "jobs_skipped"}``; a stage
    interrupted before its end is not recorded, so the log adds up the work actually done
    over the invocations of a resumed study.
    """

    def __init__(self, out):
        self.path = Path(out) / "timing.json"
        self.invocation = time.strftime("%Y-%m-%dT%H:%M:%S")

    def record(self, stage: str, seconds: float, ran: int = 0, skipped: int = 0) -> list[dict]:
        """Append one finished stage; returns the whole history."""
        history = self.history()
        history.append(
            {
                "invocation": self.invocation,
                "stage": stage,
                "seconds": round(seconds, 3),
                "jobs_run": ran,
                "jobs_skipped": skipped,
            }
        )
        atomic_write_text(self.path, json.dumps(history, indent=1) + "\n")
        return history

    def history(self) -> list[dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else []
