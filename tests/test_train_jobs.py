"""Resumable jobs: skip finished ones, resume killed ones, identical results."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mis.exceptions import MisValueError
from mis.store import RunStore
from mis.train import jobs
from mis.train.jobs import (
    JobSpec,
    ProcessExecutor,
    SerialExecutor,
    gather,
    lira_job,
    run_job,
    run_jobs,
    trajectory_job,
)
from mis.train.masks import keep_masks

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


LIRA = {
    "dataset": {"name": "digits"},
    "n_examples": 160,
    "n_models": 4,
    "keep_seed": 3,
    "model": {"name": "mlp", "in_features": 64, "hidden": [16], "n_classes": 10},
    "train": {"epochs": 6, "lr": 0.05, "batch_size": 32},
    "n_aug": 2,
    "device": "cpu",
}


def _specs(store, n=4, config=LIRA):
    return [JobSpec(str(store), f"models/{i:03d}", i, 1000 + i, config) for i in range(n)]


def _killable_job(config, index, seed, scratch):
    """lira_job, but SIGKILLs its own process at epoch e of model i when MIS_KILL='i:e'."""
    real = jobs.train_model

    def train_model(*args, callbacks=(), **kwargs):
        def killer(epoch, view):
            if os.environ.get("MIS_KILL") == f"{index}:{epoch}":
                os.kill(os.getpid(), signal.SIGKILL)

        return real(*args, callbacks=[*callbacks, killer], **kwargs)

    jobs.train_model = train_model
    try:
        return jobs.lira_job(config, index, seed, scratch)
    finally:
        jobs.train_model = real


def _run_study(store):  # entry point of the subprocess
    torch.set_num_threads(1)
    run_jobs(_killable_job, _specs(store))


def test_lira_jobs_run_skip_and_gather(tmp_path):
    specs = _specs(tmp_path / "run")
    assert run_jobs(lira_job, specs, SerialExecutor()) == ["done"] * 4
    assert run_jobs(lira_job, specs) == ["skipped"] * 4
    names = [s.name for s in specs]
    logits = gather(tmp_path / "run", names, "logits", out="logits")
    keep = gather(tmp_path / "run", names, "keep", out="keep")
    assert logits.shape == (4, 160, 2, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(keep, keep_masks(4, 160, 0.5, rng=3))
    store = RunStore(tmp_path / "run")
    assert store.meta("models/002/logits")["seed"] == 1002
    assert not (tmp_path / "run" / ".scratch" / "models" / "000").exists()
    # members are fitted better than non-members (the models learned something)
    sig = logits[:, :, 0].max(-1)
    assert sig[keep].mean() > sig[~keep].mean()
    with pytest.raises(MisValueError, match="not finished"):
        gather(tmp_path / "run", [*names, "models/999"], "logits")


def test_killed_job_resumes_to_identical_results(tmp_path):
    ref_specs = _specs(tmp_path / "ref", n=3)
    run_jobs(_killable_job, ref_specs)

    store = tmp_path / "killed"
    env = dict(os.environ, MIS_KILL="1:3", PYTHONPATH=str(ROOT))
    code = f"import tests.test_train_jobs as t; t._run_study({str(store)!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    rs = RunStore(store)
    assert rs.has("models/000/done") and not rs.has("models/001/done")
    ckpt = store / ".scratch" / "models" / "001" / "ckpt.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2  # killed during epoch 3

    statuses = run_jobs(_killable_job, _specs(store, n=3))
    assert statuses == ["skipped", "done", "done"]
    ref = RunStore(tmp_path / "ref")
    for i in range(3):
        for key in ("logits", "keep"):
            name = f"models/{i:03d}/{key}"
            np.testing.assert_array_equal(rs.load(name), ref.load(name))


def test_process_executor_matches_serial(tmp_path):
    cfg = dict(LIRA, train={"epochs": 2, "lr": 0.05, "batch_size": 64}, n_examples=80)
    serial = _specs(tmp_path / "s", n=2, config=cfg)
    pooled = _specs(tmp_path / "p", n=2, config=cfg)
    run_jobs(lira_job, serial)
    assert run_jobs(lira_job, pooled, ProcessExecutor(max_workers=2)) == ["done", "done"]
    a = gather(tmp_path / "s", [s.name for s in serial], "logits")
    b = gather(tmp_path / "p", [s.name for s in pooled], "logits")
    np.testing.assert_array_equal(a, b)


def _sign(w):
    return torch.where(w >= 0, 1.0, -1.0)


def test_trajectory_job(tmp_path):
    cfg = {
        "mixture": {"dim": 8, "k_modes": 6, "sigma": 1.5, "seed": 0},
        "n": 32,
        "n_val": 40,
        "train": {"epochs": 20, "lr": 1e-2},
        "quantizers": {"sign": _sign, "fp": torch.clone},
        "every": 2,
        "keep_best": 4,
        "device": "cpu",
    }
    specs = [JobSpec(str(tmp_path), f"runs/{i:03d}", i, i, cfg) for i in range(2)]
    run_jobs(trajectory_job, specs)
    vl = gather(tmp_path, [s.name for s in specs], "val_losses", out="val_losses")
    qh = gather(tmp_path, [s.name for s in specs], "qhash", out="qhash")
    assert vl.shape == (2, 2, 4, 40) and qh.shape == (2, 2, 4) and qh.dtype == np.uint64
    # full precision changes every epoch: 4 distinct, sorted by mean loss
    means = vl[:, 1].astype(np.float64).mean(-1)
    assert np.all(np.diff(means, axis=1) >= 0)
    # runs draw different training sets from the same mixture
    xs = [RunStore(tmp_path).load(f"{s.name}/x") for s in specs]
    assert not np.array_equal(xs[0], xs[1])
    bad = dict(cfg, quantizers={"x": "no-such-quantizer"})
    with pytest.raises(MisValueError, match="no-such-quantizer"):
        trajectory_job(bad, 0, 0, tmp_path)


def test_job_must_return_arrays(tmp_path):
    with pytest.raises(MisValueError, match="mapping"):
        run_job(lambda c, i, s, d: None, JobSpec(str(tmp_path), "a", 0, 0, {}))
    assert functools  # imported for partial-based factories in other tests
