"""Scale-out: studies on a Dask distributed cluster, worker deaths, partial outputs.

The Dask tests share one real ``distributed.LocalCluster`` (2 worker processes, one thread
each, each declaring the abstract resource ``GPU=1`` — a label, no GPU is used). They are
skipped when dask.distributed is not installed (the ``dask`` extra). The job functions below
are pickled by reference: the local workers import this module through the ``sys.path``
they inherit from pytest (spawned processes), as real workers import ``mis``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from mis.exceptions import MisValueError
from mis.store import RunStore
from mis.train.executors import DaskExecutor, make_executor
from mis.train.jobs import (
    JobSpec,
    ProcessExecutor,
    SerialExecutor,
    gather,
    job_done,
    run_jobs,
    trajectory_job,
)

KEYS = ("a", "b", "c")


# ------------------------------------------------------------------------------------------
# jobs
# ------------------------------------------------------------------------------------------
class _Outputs(Mapping):
    """A job's outputs. ``run_job`` saves them in order a, b, c; fetching "b" (after "a" was
    saved, before "done") can crash the job once: ``crash={"index", "marker", "how"}`` with
    how = "kill" (SIGKILL this process) or "raise". The marker file records the store state
    at that moment and makes the crash happen on the first attempt only."""

    def __init__(self, arrays, index, scratch, crash):
        self._arrays, self._index, self._scratch, self._crash = arrays, index, scratch, crash

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __getitem__(self, key):
        crash = self._crash
        if key == "b" and crash and crash["index"] == self._index:
            try:
                fd = os.open(crash["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return self._arrays[key]  # second attempt: no crash
            store = RunStore(Path(self._scratch).parents[2])  # <store>/.scratch/jobs/NNN
            name = f"jobs/{self._index:03d}"
            state = f"a={store.has(f'{name}/a')} done={store.has(f'{name}/done')} {os.getpid()}"
            os.write(fd, state.encode())
            os.close(fd)
            if crash["how"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("simulated crash after a partial output")
        return self._arrays[key]


def _numpy_job(config, index, seed, scratch):
    """A small pure job: arrays from (index, seed) only; logs each attempt in config['log']."""
    if config.get("log"):
        Path(config["log"]).mkdir(parents=True, exist_ok=True)
        (Path(config["log"]) / f"{index}-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
    flag = config.get("fail_while")  # fails while this file exists (or always, without one)
    if config.get("fail") == index and (flag is None or Path(flag).exists()):
        raise ValueError(f"job {index} always fails")
    time.sleep(config.get("sleep", 0.0))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((4, 25))
    arrays = {
        "a": a,
        "b": (np.cumsum(a, axis=1) * (index + 1)).astype(np.float32),
        "c": np.array([index, seed], dtype=np.int64),
    }
    return _Outputs(arrays, index, scratch, config.get("crash"))


def _resource_job(config, index, seed, scratch):
    """Records the GPU units left on its worker while it runs (0 when it holds the one)."""
    from distributed import get_worker  # dask is the optional extra mis[dask]

    free = get_worker().state.available_resources.get("GPU", -1.0)
    return {"gpu_free": np.array([free])}


def _square(x):
    return x * x


def _sign(w):
    return torch.where(w >= 0, 1.0, -1.0)


def _specs(store, n, config):
    return [JobSpec(str(store), f"jobs/{i:03d}", i, 500 + 7 * i, config) for i in range(n)]


def _attempts(log_dir) -> Counter:
    return Counter(int(p.name.split("-")[0]) for p in Path(log_dir).iterdir())


def _assert_same_outputs(store_dir, ref_dir, n, keys=KEYS):
    """Every output present once (manifest and files), verified, equal bit for bit."""
    store, ref = RunStore(store_dir), RunStore(ref_dir)
    store.verify()
    expected = {f"jobs/{i:03d}/{k}" for i in range(n) for k in (*keys, "done")}
    assert set(store.names()) == expected
    files = sorted(p.relative_to(store_dir) for p in Path(store_dir).rglob("*.npy"))
    assert [str(f)[: -len(".npy")] for f in files] == sorted(expected)  # no strays, no dupes
    assert not [p for p in Path(store_dir).rglob("*.tmp")]
    for name in expected:
        a, b = store.load(name), ref.load(name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, strict=True)


# ------------------------------------------------------------------------------------------
# without dask
# ------------------------------------------------------------------------------------------
def test_make_executor_kinds_and_bad_input():
    assert isinstance(make_executor("serial"), SerialExecutor)
    ex = make_executor("process", n_workers=2, threads_per_worker=1)
    assert isinstance(ex, ProcessExecutor) and ex.max_workers == 2 and ex.threads == 1
    with pytest.raises(MisValueError, match=r"executor must be one of .*'dask'.*got 'ray'"):
        make_executor("ray")
    with pytest.raises(MisValueError, match=r"\['scheduler'\].*dask executor only"):
        make_executor("serial", scheduler="tcp://localhost:8786")
    with pytest.raises(MisValueError, match="n_workers must be an integer >= 1; got 0"):
        make_executor("process", n_workers=0)


# every execution option as a command line passes it through, unset (the defaults)
UNSET = dict(scheduler=None, n_workers=None, threads_per_worker=None, gpu=False, retries=2,
             torch_threads=None)  # fmt: skip


def test_make_executor_takes_every_option_as_parsed():
    """make_executor alone serves a command line: all options passed through, unset ones
    at their defaults, Dask-only ones refused for another executor."""
    assert isinstance(make_executor(), SerialExecutor)  # the default executor
    assert isinstance(make_executor("serial", **UNSET), SerialExecutor)
    ex = make_executor("process", **{**UNSET, "n_workers": 3, "gpu": True})
    assert isinstance(ex, ProcessExecutor) and ex.max_workers == 3  # gpu: ignored by a pool
    with pytest.raises(MisValueError, match="dask executor only"):
        make_executor("serial", **{**UNSET, "scheduler": "tcp://h:1"})
    with pytest.raises(MisValueError, match=r"\['torch_threads'\].*dask executor only"):
        make_executor("process", **{**UNSET, "torch_threads": 4})
    with pytest.raises(MisValueError, match=r"executor must be one of .*got 'slurm'"):
        make_executor("slurm", **UNSET)


def test_dask_executor_rejects_inconsistent_options():
    with pytest.raises(MisValueError, match="scheduler or client"):
        DaskExecutor("tcp://h:1", client=object())
    with pytest.raises(MisValueError, match=r"\['n_workers'\] apply to a local cluster"):
        DaskExecutor("tcp://h:1", n_workers=4)
    with pytest.raises(MisValueError, match="retries must be an integer >= 0; got -1"):
        DaskExecutor(retries=-1)
    with pytest.raises(MisValueError, match="--resources GPU=1"):
        DaskExecutor(gpu=True)  # a local cluster has no GPU resource to ask for


def test_mis_works_without_dask():
    code = (
        "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
        "from mis.train.executors import make_executor\n"
        "print(type(make_executor('serial')).__name__)\n"
        "try:\n    make_executor('dask')\n"
        "except ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.splitlines()[0] == "SerialExecutor"
    assert "pip install 'mis[dask]'" in out.splitlines()[1]


def test_job_crashed_between_outputs_and_marker_is_redone(tmp_path):
    """A partial output (some arrays, no ``done``) is never taken for a finished job."""
    n = 3
    run_jobs(_numpy_job, _specs(tmp_path / "ref", n, {}))
    cfg = {
        "crash": {"index": 1, "marker": str(tmp_path / "crash.txt"), "how": "raise"},
        "log": str(tmp_path / "log"),
    }
    specs = _specs(tmp_path / "run", n, cfg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_jobs(_numpy_job, specs)
    assert (tmp_path / "crash.txt").read_text().startswith("a=True done=False")
    store = RunStore(tmp_path / "run")
    assert store.has("jobs/001/a") and not store.has("jobs/001/b")
    assert not job_done(specs[1]) and job_done(specs[0])
    assert run_jobs(_numpy_job, specs) == ["skipped", "done", "done"]
    assert _attempts(tmp_path / "log") == {0: 1, 1: 2, 2: 1}
    _assert_same_outputs(tmp_path / "run", tmp_path / "ref", n)


class _FakeClient:
    """Stands in for distributed.Client in the pre-submission checks."""

    def __init__(self, workers, sees):
        self._workers, self._sees = workers, sees

    def scheduler_info(self, n_workers=-1):
        return {"workers": self._workers}

    def run(self, fn, *args, workers=None):
        return {w: ok for w, ok in self._sees.items() if workers is None or w in workers}


def test_pre_submission_checks(tmp_path):
    workers = {"tcp://a:1": {"resources": {}}, "tcp://b:1": {"resources": {"GPU": 1}}}
    ex = DaskExecutor(client=object(), gpu=True, resources={"TPU": 2})
    assert ex.resources == {"GPU": 1.0, "TPU": 2.0}
    with pytest.warns(RuntimeWarning, match="declares resource TPU=2"):
        ex._check_resources(_FakeClient(workers, {}))
    ex = DaskExecutor(client=object(), shared_timeout=0)
    specs = _specs(tmp_path / "run", 2, {})
    ex._check_shared_store(_FakeClient(workers, {"tcp://a:1": True, "tcp://b:1": True}), specs)
    with pytest.raises(MisValueError, match=r"not visible from worker\(s\) \['tcp://b:1'\]"):
        ex._check_shared_store(_FakeClient(workers, {"tcp://a:1": True, "tcp://b:1": False}), specs)
    assert not list((tmp_path / "run").glob(".mis-probe-*"))  # probe removed


# ------------------------------------------------------------------------------------------
# on a real LocalCluster
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={"GPU": 1},
        dashboard_address=":0",
        scheduler_kwargs={"allowed_failures": 3},
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)  # a killed worker is restarted by its nanny
        yield client


@pytest.mark.usefixtures("one_torch_thread")
def test_dask_study_matches_serial(client, tmp_path):
    """The synthetic r_Q study (4 trajectory runs) on 2 workers = the serial run, bit for bit."""
    cfg = {
        "mixture": {"dim": 8, "k_modes": 6, "sigma": 1.5, "seed": 0},
        "n": 32,
        "n_val": 40,
        "train": {"epochs": 12, "lr": 1e-2},
        "quantizers": {"sign": _sign, "fp": torch.clone},
        "every": 2,
        "keep_best": 3,
        "device": "cpu",
    }
    keys = ("val_losses", "qhash", "val_epochs", "x", "y")
    serial = _specs(tmp_path / "serial", 4, cfg)
    assert run_jobs(trajectory_job, serial) == ["done"] * 4
    dask = _specs(tmp_path / "dask", 4, cfg)
    ex = DaskExecutor(client=client, torch_threads=1)
    assert run_jobs(trajectory_job, dask, ex) == ["done"] * 4
    _assert_same_outputs(tmp_path / "dask", tmp_path / "serial", 4, keys)
    names = [s.name for s in dask]
    np.testing.assert_array_equal(
        gather(tmp_path / "dask", names, "val_losses"),
        gather(tmp_path / "serial", names, "val_losses"),
    )
    assert run_jobs(trajectory_job, dask, ex) == ["skipped"] * 4  # finished jobs are skipped


def test_worker_killed_mid_study(client, tmp_path):
    """Job 3's first attempt SIGKILLs its worker after saving output "a" but before "b" and the
    marker. The study completes; the job ran again on a live worker; every output is present
    once and equal to the serial run; nothing finished was lost or redone needlessly."""
    n = 8
    run_jobs(_numpy_job, _specs(tmp_path / "ref", n, {}))
    marker = tmp_path / "killed.txt"
    cfg = {
        "crash": {"index": 3, "marker": str(marker), "how": "kill"},
        "log": str(tmp_path / "log"),
        "sleep": 0.2,
    }
    specs = _specs(tmp_path / "run", n, cfg)
    statuses = run_jobs(_numpy_job, specs, DaskExecutor(client=client, retries=0))
    # ("skipped" only if Dask re-ran a finished job whose status string died with the worker)
    assert set(statuses) <= {"done", "skipped"} and statuses[3] == "done"
    state, pid = marker.read_text().rsplit(" ", 1)
    assert state == "a=True done=False"  # the dead attempt had left a partial output
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # ... and its worker process is gone
    # job 3 ran twice; every other job's body ran exactly once (its marker stops a re-run)
    assert _attempts(tmp_path / "log") == {i: 1 + (i == 3) for i in range(n)}
    pids = {p.name.split("-")[1] for p in (tmp_path / "log").glob("3-*")}
    assert pid in pids and len(pids) == 2  # retried in another process
    _assert_same_outputs(tmp_path / "run", tmp_path / "ref", n)
    # a finished study is answered from the store: no scheduler is contacted (none there)
    assert run_jobs(_numpy_job, specs, DaskExecutor("tcp://127.0.0.1:9")) == ["skipped"] * n


def test_finished_jobs_are_not_submitted(client, tmp_path):
    cfg = {"log": str(tmp_path / "log")}
    specs = _specs(tmp_path / "run", 5, cfg)
    run_jobs(_numpy_job, [specs[1], specs[4]])  # serially, before the cluster run
    statuses = run_jobs(_numpy_job, specs, DaskExecutor(client=client))
    assert statuses == ["done", "skipped", "done", "done", "skipped"]
    assert _attempts(tmp_path / "log") == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}
    # other callables and items are passed through untouched
    assert list(DaskExecutor(client=client).map(_square, [2, 3])) == [4, 9]


def test_gpu_resource_is_requested(client, tmp_path):
    """With gpu=True each job holds the worker's GPU unit while it runs."""
    options = {"scheduler": client.scheduler.address, "gpu": True, "torch_threads": 1}
    ex = make_executor("dask", **{**UNSET, **options})
    assert isinstance(ex, DaskExecutor) and ex.resources == {"GPU": 1.0}
    assert ex.torch_threads == 1
    specs = _specs(tmp_path / "gpu", 3, {})
    assert run_jobs(_resource_job, specs, ex) == ["done"] * 3
    free = gather(tmp_path / "gpu", [s.name for s in specs], "gpu_free")
    np.testing.assert_array_equal(free, 0.0)  # the GPU unit was taken by the job
    specs = _specs(tmp_path / "cpu", 2, {})
    run_jobs(_resource_job, specs, DaskExecutor(client=client))
    np.testing.assert_array_equal(gather(tmp_path / "cpu", [s.name for s in specs], "gpu_free"), 1)


def test_failing_job_is_retried_then_reported(client, tmp_path):
    flag = tmp_path / "broken"
    flag.touch()
    cfg = {"fail": 2, "log": str(tmp_path / "log"), "fail_while": str(flag)}
    specs = _specs(tmp_path / "run", 4, cfg)
    with pytest.raises(ValueError, match="job 2 always fails") as info:
        run_jobs(_numpy_job, specs, DaskExecutor(client=client, retries=1))
    assert any("jobs/002" in note for note in info.value.__notes__)
    assert _attempts(tmp_path / "log")[2] == 2  # first try + 1 retry
    # the other jobs' outputs are kept or resumable; fixing the job finishes the study (the
    # same configuration: another one would be refused, its outputs are not these)
    flag.unlink()
    fixed = _specs(tmp_path / "run", 4, cfg)
    assert run_jobs(_numpy_job, fixed, DaskExecutor(client=client)).count("done") >= 1
    assert all(job_done(s) for s in fixed)


def test_connect_by_address_and_scheduler_file(client, tmp_path):
    address = client.scheduler.address
    with DaskExecutor(address) as ex:  # one connection for several maps
        assert list(ex.map(_square, range(5))) == [0, 1, 4, 9, 16]
        assert list(ex.map(_square, [])) == []
        assert ex.client is not None
    assert ex.client is None
    # what `dask scheduler --scheduler-file` writes (Client reads its "address")
    (tmp_path / "scheduler.json").write_text(json.dumps({"type": "Scheduler", "address": address}))
    ex = make_executor("dask", scheduler=str(tmp_path / "scheduler.json"))
    assert list(ex.map(_square, [3, 2, 1])) == [9, 4, 1]
    with pytest.raises(MisValueError, match="does not exist"):
        list(DaskExecutor(str(tmp_path / "missing.json")).map(_square, [1]))


def test_make_executor_starts_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    n = 3
    run_jobs(_numpy_job, _specs(tmp_path / "ref", n, {}))
    ex = make_executor("dask", n_workers=1)
    specs = _specs(tmp_path / "run", n, {})
    assert run_jobs(_numpy_job, specs, ex) == ["done"] * n
    _assert_same_outputs(tmp_path / "run", tmp_path / "ref", n)


def test_command_line_scheduler_and_gpu_worker(tmp_path):
    """The documented HPC set-up, on this machine: ``dask scheduler --scheduler-file`` and
    ``dask worker --resources GPU=1``; the study connects with the scheduler file."""
    distributed = pytest.importorskip("distributed")
    sched_file = tmp_path / "scheduler.json"
    dask_cli = [sys.executable, "-m", "dask"]
    log = open(tmp_path / "dask.log", "w")
    scheduler = ["scheduler", "--scheduler-file", str(sched_file), "--port", "0"]
    scheduler += ["--dashboard-address", ":0"]
    # job functions must be importable where the graph is unpickled (scheduler and workers)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    procs = [subprocess.Popen([*dask_cli, *scheduler], stdout=log, stderr=log, env=env)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = ["worker", "--scheduler-file", str(sched_file), "--nworkers", "1"]
        worker += ["--nthreads", "1", "--resources", "GPU=1"]
        procs.append(subprocess.Popen([*dask_cli, *worker], stdout=log, stderr=log, env=env))
        with distributed.Client(scheduler_file=str(sched_file), set_as_default=False) as c:
            c.wait_for_workers(1, timeout=60)
        ex = make_executor("dask", **{**UNSET, "scheduler": str(sched_file), "gpu": True})
        specs = _specs(tmp_path / "run", 3, {})
        assert run_jobs(_resource_job, specs, ex) == ["done"] * 3
        free = gather(tmp_path / "run", [s.name for s in specs], "gpu_free")
        np.testing.assert_array_equal(free, 0.0)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def test_workers_alone_means_a_process_pool_for_the_audit():
    """``mis audit --workers 2`` runs a pool (it used to be ignored, serially); the studies
    whose config holds the workers keep deciding themselves; serial with workers is refused."""
    from mis import cli

    parser = cli.build_parser()
    ex = cli._executor(parser.parse_args(["audit", "--workers", "2"]))
    assert isinstance(ex, ProcessExecutor) and ex.max_workers == 2
    assert cli._executor(parser.parse_args(["audit"])) is None  # run_audit's default: serial
    assert cli._executor(parser.parse_args(["synth", "--out", "x", "--workers", "2"])) is None
    with pytest.raises(MisValueError, match="--workers 2 needs --executor process or dask"):
        cli._executor(parser.parse_args(["audit", "--executor", "serial", "--workers", "2"]))
