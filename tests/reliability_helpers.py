"""Jobs and entry points for the subprocess tests of tests/test_reliability.py (few imports:
worker processes and subprocesses import this module)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from mis.studies._common import check_out_config, locked_output
from mis.train.jobs import JobSpec, ProcessExecutor, run_jobs


def sleepy_job(config, index, seed, scratch):
    """Announces itself (file ``start-<index>-<pid>``), sleeps, returns an array."""
    Path(config["log"], f"start-{index}-{os.getpid()}").touch()
    time.sleep(config["sleep"])
    return {"x": np.arange(3) + index}


def fail_or_sleep_job(config, index, seed, scratch):
    """Job 0 raises once job 1 runs; job 1 sleeps a minute."""
    log = Path(config["log"])
    (log / f"start-{index}-{os.getpid()}").touch()
    if index == 0:
        deadline = time.monotonic() + 120
        while not any(log.glob("start-1-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("job 0 fails")
    time.sleep(60)
    return {"x": np.zeros(1)}


def pool_parent(store, log, sleep):
    """Entry point of the subprocess that the test kills with SIGKILL."""
    specs = [JobSpec(store, f"j/{i}", i, i, {"log": log, "sleep": sleep}) for i in range(2)]
    run_jobs(sleepy_job, specs, ProcessExecutor(2, threads_per_worker=1))


@locked_output
def hold_output(out, seconds, ready):
    """Open ``out`` as a study does, signal ``ready``, keep it for ``seconds``."""
    check_out_config(out, {"s": {"k": 1}}, "test")
    Path(ready).touch()
    time.sleep(seconds)
