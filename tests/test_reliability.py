"""Reliability (issue 19): workers that die with their parent, results tied to the
configuration that made them, a run store that stays inside itself and verifies what it
skips, one-line CLI errors, size ceilings, and the silent-wrong-number fixes.

Nothing here mounts a file system: a full disk and a read-only directory are simulated with
a fake ``OSError``; orphans are checked on a subprocess killed with SIGKILL.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve as sk_roc_curve

import mis.quant as Q
from mis import _validation, cli, metrics
from mis.exceptions import (
    ConfigMismatchError,
    DegenerateStatisticWarning,
    MisValueError,
    OutputLockedError,
    ResourceLimitError,
    StoreCorruptError,
)
from mis.security import rank_quantizers, rank_stability, rq, rq_batch
from mis.store import RunStore, atomic_write_text, read_only_outputs, sha256_file
from mis.store import _run_store as store_impl
from mis.studies import audit, molecular, synthetic
from mis.studies._common import (
    TimingLog,
    check_out_config,
    check_resources,
    limits,
    locked_output,
    stages,
    synthetic_footprint,
    verify_output,
)
from mis.train import data as train_data
from mis.train import jobs
from mis.train.executors import make_executor
from mis.train.jobs import JobSpec, ProcessExecutor, job_done, run_jobs
from tests import reliability_helpers as helpers

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------
# helpers (module level: picklable for worker processes)
# ------------------------------------------------------------------------------------------
def _numpy_job(config, index, seed, scratch):
    if config.get("log"):
        Path(config["log"]).mkdir(parents=True, exist_ok=True)
        (Path(config["log"]) / f"{index}-{os.getpid()}-{time.monotonic_ns()}").touch()
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((3, 4)), "b": np.arange(5) * (index + 1)}


def _specs(store, n=3, config=None):
    return [JobSpec(str(store), f"jobs/{i:03d}", i, 100 + i, config or {}) for i in range(n)]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def _subprocess(code: str, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, **kw)


# ------------------------------------------------------------------------------------------
# 1. workers die with their parent, and never write after it is gone
# ------------------------------------------------------------------------------------------
def test_pool_workers_die_with_a_sigkilled_parent_and_write_nothing(tmp_path):
    store, log = tmp_path / "store", tmp_path / "log"
    log.mkdir()
    code = (
        f"import tests.reliability_helpers as h; h.pool_parent({str(store)!r}, {str(log)!r}, 4.0)"
    )
    parent = _subprocess(code)
    deadline = time.monotonic() + 120
    while len(list(log.glob("start-*"))) < 2:
        assert parent.poll() is None, "the parent ended early"
        assert time.monotonic() < deadline, "the workers never started their jobs"
        time.sleep(0.1)
    workers = [int(p.name.split("-")[2]) for p in log.glob("start-*")]
    before = RunStore(store).names()
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    t0 = time.monotonic()
    while any(_alive(w) for w in workers) and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "pool workers outlived their parent"
    time.sleep(5.0)  # longer than the jobs would have taken
    after = RunStore(store)
    assert after.names() == before  # nothing was written after the parent died
    assert not any(job_done(s) for s in [JobSpec(str(store), f"j/{i}", i, i) for i in range(2)])


def test_a_failing_job_stops_the_pool_and_kills_the_busy_workers(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    specs = [JobSpec(str(tmp_path / "s"), f"j/{i}", i, i, {"log": str(log)}) for i in range(2)]
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="job 0 fails"):
        run_jobs(helpers.fail_or_sleep_job, specs, ProcessExecutor(2, threads_per_worker=1))
    assert time.monotonic() - t0 < 55  # job 1 (a minute) was not waited for
    busy = [int(p.name.split("-")[2]) for p in log.glob("start-1-*")]
    assert busy and not any(_alive(w) for w in busy)


def test_an_orphaned_worker_exits_before_writing(monkeypatch):
    monkeypatch.setattr(jobs, "_PARENT_PID", os.getppid() + 10_000_000)

    def fake_exit(code):
        raise SystemExit(code)

    monkeypatch.setattr(jobs.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        jobs._exit_if_orphaned()
    monkeypatch.setattr(jobs, "_PARENT_PID", None)
    jobs._exit_if_orphaned()  # in the parent itself: nothing happens


# ------------------------------------------------------------------------------------------
# 2. results tied to the content of the configuration
# ------------------------------------------------------------------------------------------
def test_a_changed_config_is_refused_even_without_config_json(tmp_path):
    out = tmp_path / "out"
    check_out_config(out, {"study": {"seed": 3, "runs": 5}}, "study")
    RunStore(out / "store").save("x", np.zeros(2))
    (out / "config.json").unlink()
    with pytest.raises(ConfigMismatchError, match=r"study\.seed \(3 -> 4\).*start fresh"):
        check_out_config(out, {"study": {"seed": 4, "runs": 5}}, "study")
    # the same configuration resumes (and config.json is written again)
    path = check_out_config(out, {"study": {"seed": 3, "runs": 5}}, "study")
    assert json.loads(Path(path).read_text()) == {"study": {"seed": 3, "runs": 5}}
    # ignored keys do not change the identity
    check_out_config(
        out, {"study": {"seed": 3, "runs": 5, "workers": 8}}, ignore=("study.workers",)
    )


def test_results_of_another_version_are_not_mixed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    check_out_config(out, {"a": {"b": 1}})
    monkeypatch.setattr(stages, "__version__", "99.0")
    with pytest.raises(ConfigMismatchError, match=r"mis 0\.1\.0 .*this is mis 99\.0"):
        check_out_config(out, {"a": {"b": 1}})


def test_corrupt_config_json_is_named_and_repaired(tmp_path):
    out = tmp_path / "out"
    check_out_config(out, {"a": {"b": 1}})
    (out / "config.json").write_text('{"a": {')
    with pytest.raises(StoreCorruptError, match=r"config\.json is not valid JSON.*--repair"):
        check_out_config(out, {"a": {"b": 1}})
    report = verify_output(out, repair=True)
    assert any("rewrote" in line for line in report.lines)
    assert check_out_config(out, {"a": {"b": 1}})


def test_job_identity_changed_spec_config_is_refused(tmp_path):
    specs = _specs(tmp_path / "s", 2, {"alpha": 1})
    assert run_jobs(_numpy_job, specs) == ["done", "done"]
    assert run_jobs(_numpy_job, specs) == ["skipped", "skipped"]
    with pytest.raises(ConfigMismatchError, match="another configuration"):
        run_jobs(_numpy_job, _specs(tmp_path / "s", 2, {"alpha": 2}))
    marker = RunStore(tmp_path / "s").meta("jobs/000/done")
    assert marker["outputs"] == ["a", "b"] and len(marker["identity"]) == 64


def test_job_spec_names_stay_inside_the_store(tmp_path):
    for bad in ("../x", "a/../../b", "/abs", ""):
        with pytest.raises(MisValueError, match="name must be"):
            JobSpec(str(tmp_path), bad, 0, 0)
    with pytest.raises(MisValueError, match="store"):
        JobSpec("", "a", 0, 0)


# ------------------------------------------------------------------------------------------
# 3. the manifest is not trusted
# ------------------------------------------------------------------------------------------
def _plant(store: RunStore, name: str, file: str) -> None:
    m = json.loads((store.path / "manifest.json").read_text())
    entry = dict(next(iter(m["arrays"].values())), file=file)
    m["arrays"][name] = entry
    (store.path / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("file", ["../../victim.txt", "/tmp/victim.txt", "x/../../victim.txt"])
def test_a_manifest_path_outside_the_store_is_refused(tmp_path, file):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    store = RunStore(tmp_path / "a" / "run")
    store.save("ok", np.zeros(3))
    _plant(store, "evil", file)
    with pytest.raises(StoreCorruptError, match=r"entry 'evil'.*refuses to open"):
        RunStore(store.path)
    assert victim.read_text() == "keep me"
    assert not verify_output(store.path).ok  # reported, not an error
    verify_output(store.path, repair=True)
    again = RunStore(store.path)
    assert again.names() == ["ok"] and victim.read_text() == "keep me"


def test_a_symlink_out_of_the_store_is_refused_and_never_followed(tmp_path):
    victim = tmp_path / "victim.npy"
    np.save(victim, np.zeros(3))
    store = RunStore(tmp_path / "run")
    store.save("ok", np.zeros(3))
    (store.path / "evil.npy").symlink_to(victim)
    _plant(store, "evil", "evil.npy")
    with pytest.raises(StoreCorruptError, match="outside the store"):
        RunStore(store.path)
    with pytest.raises(StoreCorruptError, match="outside the store"):
        store.delete("evil")  # an object opened before the entry was planted
    assert victim.exists()
    verify_output(store.path, repair=True)  # drops the entry, removes the link itself
    assert victim.exists() and not (store.path / "evil.npy").is_symlink()
    # a symlinked sub-directory cannot carry a save outside either
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.path / "sub").symlink_to(outside)
    with pytest.raises(StoreCorruptError, match="outside the store"):
        store.save("sub/x", np.zeros(2))
    with pytest.raises(StoreCorruptError, match="outside the store"):
        store.save("sub/deeper/x", np.zeros(2))
    assert list(outside.iterdir()) == []


def test_a_symlinked_manifest_lock_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    (store.path / ".manifest.lock").unlink()
    (store.path / ".manifest.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreCorruptError, match="symbolic link"):
        store.save("x", np.zeros(1))
    assert not (tmp_path / "elsewhere").exists()


def test_malformed_entries_are_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save("ok", np.zeros(3))
    m = json.loads((store.path / "manifest.json").read_text())
    m["arrays"]["ok"]["nbytes"] = "many"
    (store.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match="'nbytes' must be"):
        RunStore(store.path)


# ------------------------------------------------------------------------------------------
# 6. resume verifies and repairs
# ------------------------------------------------------------------------------------------
def test_a_flipped_byte_is_found_and_its_job_re_run(tmp_path, caplog):
    specs = _specs(tmp_path / "s", 3)
    run_jobs(_numpy_job, specs)
    ref = RunStore(tmp_path / "s").load("jobs/001/a").copy()
    _flip_last_byte(tmp_path / "s" / "jobs" / "001" / "a.npy")  # same size
    assert not job_done(specs[1]) and job_done(specs[0])
    with caplog.at_level(logging.WARNING, logger="mis"):
        assert run_jobs(_numpy_job, specs) == ["skipped", "done", "skipped"]
    lines = [r.getMessage() for r in caplog.records if "re-running" in r.getMessage()]
    assert len(lines) == 1 and "jobs/001" in lines[0] and "sha256" in lines[0]
    np.testing.assert_array_equal(RunStore(tmp_path / "s").load("jobs/001/a"), ref)


def test_a_done_marker_whose_outputs_are_gone_is_re_run(tmp_path):
    specs = _specs(tmp_path / "s", 2)
    run_jobs(_numpy_job, specs)
    store = RunStore(tmp_path / "s")
    store.drop(["jobs/000/b"])  # listed outputs removed: no KeyError, the job re-runs
    (tmp_path / "s" / "jobs" / "001" / "a.npy").unlink()  # a listed file removed
    assert run_jobs(_numpy_job, specs) == ["done", "done"]
    assert all(job_done(s) for s in specs)


def test_verify_and_repair_an_output_directory(tmp_path):
    out = tmp_path / "out"
    check_out_config(out, {"a": {"b": 1}})
    specs = _specs(out / "store", 3)
    run_jobs(_numpy_job, specs)
    assert verify_output(out).ok
    _flip_last_byte(out / "store" / "jobs" / "002" / "b.npy")
    (out / "store" / "orphan.npy").write_bytes(b"x")
    (out / "store" / "jobs" / ".a.npy.k3j2.tmp").write_bytes(b"partial")
    report = verify_output(out)
    assert not report.ok and "--repair" in report.summary
    assert any("jobs/002 " in line for line in report.lines)
    assert sum(line.startswith("orphan") for line in report.lines) == 2
    verify_output(out, repair=True)
    assert verify_output(out).ok
    assert run_jobs(_numpy_job, specs) == ["skipped", "skipped", "done"]


def test_a_failed_manifest_write_leaves_no_orphan(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    store.save("old", np.zeros(3))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunStore, "_write_manifest", full)
    with pytest.raises(OSError, match="No space"):
        store.save("new", np.ones(3))
    with pytest.raises(OSError, match="No space"):
        store.save("old", np.ones(3))  # an overwrite: the old entry now reads as missing
    monkeypatch.undo()
    assert store.orphans() == []
    assert not (store.path / "new.npy").exists()
    assert store.names() == ["old"] and not store.has("old")


def test_a_full_disk_during_a_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")

    def write(f):
        f.write(b"new, partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        store_impl.atomic_write(target, write)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_deleting_the_manifest_of_a_nested_store_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save("a/b/c", np.zeros(2))
    (store.path / "manifest.json").unlink()
    with pytest.raises(StoreCorruptError, match=r"holds \.npy files"):
        RunStore(store.path)


def test_unreadable_timing_log_starts_afresh(tmp_path, caplog):
    (tmp_path / "timing.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="mis"):
        history = TimingLog(tmp_path).record("train", 1.0, 1, 0)
    assert len(history) == 1 and "starting a new timing log" in caplog.text


# ------------------------------------------------------------------------------------------
# 7, 8. one run per output directory; no empty --out
# ------------------------------------------------------------------------------------------
def test_a_second_run_on_a_locked_output_is_refused_naming_the_pid(tmp_path):
    out, ready = tmp_path / "out", tmp_path / "ready"
    code = f"import tests.reliability_helpers as h; h.hold_output({str(out)!r}, 60, {str(ready)!r})"
    holder = _subprocess(code)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        match = rf"in use by another mis run \(pid {holder.pid}"
        with pytest.raises(OutputLockedError, match=match):
            helpers.hold_output(out, 0, tmp_path / "r2")
    finally:
        holder.kill()
        holder.wait()
    helpers.hold_output(out, 0, tmp_path / "r3")  # the lock went with its holder


@pytest.mark.parametrize("run", [synthetic.run_synthetic, audit.run_audit, molecular.run_molecular])
def test_every_study_holds_its_output_lock_until_it_returns(run):
    """Each run_<study> is the locked_output wrapper (an edit once moved the decorator onto
    a helper, and the audit ran unlocked)."""
    assert run.__code__ is locked_output(lambda: None).__code__


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    @locked_output
    def outer():
        check_out_config(tmp_path / "o", {"s": {"k": 1}})
        helpers.hold_output(tmp_path / "o", 0, tmp_path / "r")  # the same lock, held again

    outer()


@pytest.mark.parametrize("out", ["", "file"])
def test_an_empty_or_file_output_is_refused(tmp_path, out):
    if out:
        out = tmp_path / "file"
        out.write_text("x")
    with pytest.raises(MisValueError, match="out must be"):
        check_out_config(out, {"a": {"b": 1}})
    assert _status(["synth", "--out", str(out), "-q"]) == 2


# ------------------------------------------------------------------------------------------
# read-only directories, simulated
# ------------------------------------------------------------------------------------------
def _read_only_open(monkeypatch, root: Path):
    real = os.open

    def fake(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and str(Path(path).absolute()).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)


TINY = {
    "study": {"runs": 4, "chunk_size": 2, "workers": 1, "seed": 3},
    "data": {"k_modes": [4], "sigmas": [1.0], "dim": 4, "n_train": 10, "n_val": 12, "n_test": 20},
    "train": {"epochs": 15, "lr": 1e-2, "batch_size": 5},
    "trajectory": {"keep_best": 4, "quantizers": ["sign", "2bit", "5bit"]},
    "mis": {"enabled": False},
    "analysis": {"k_runs": [2], "n_subsets": 4, "n_resamples": 20},
}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    cfg = synthetic.Config.from_dict(TINY)
    results = synthetic.run_synthetic(cfg, out, progress=False)
    return cfg, out, results


def test_a_finished_study_is_re_reported_from_a_read_only_directory(
    finished_study, monkeypatch, caplog
):
    cfg, out, results = finished_study
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    _read_only_open(monkeypatch, out.absolute())
    with caplog.at_level(logging.WARNING, logger="mis"):
        again = synthetic.run_synthetic(cfg, out, progress=False)
    assert again["summary"] == results["summary"]
    assert "is read-only" in caplog.text and "not rewritten" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_an_unfinished_study_in_a_read_only_directory_is_a_clean_error(
    finished_study, monkeypatch, tmp_path
):
    cfg, out, _ = finished_study
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    RunStore(copy / "store").drop(["k4-s1/train/chunk0001/done"])
    _read_only_open(monkeypatch, copy.absolute())
    with pytest.raises(OSError, match=r"read-only.*unfinished"):
        synthetic.run_synthetic(cfg, copy, progress=False)


def test_read_only_outputs_skip_writes_and_refuse_saves(tmp_path):
    store = RunStore(tmp_path / "run")
    with read_only_outputs(tmp_path) as skipped:
        atomic_write_text(tmp_path / "report.md", "x")
        with pytest.raises(OSError, match="read-only"):
            store.save("a", np.zeros(1))
    assert skipped == [tmp_path / "report.md"] and not (tmp_path / "report.md").exists()


# ------------------------------------------------------------------------------------------
# 4. ceilings before allocation
# ------------------------------------------------------------------------------------------
def test_study_ceilings_are_checked_before_anything_is_written(tmp_path):
    huge = synthetic.Config.from_dict({"study": {"runs": 100_000_000_000}})
    with pytest.raises(ResourceLimitError, match="jobs; the ceiling is"):
        synthetic.run_synthetic(huge, tmp_path / "a")
    wide = synthetic.Config.from_dict({"data": {"dim": 1_000_000_000}})
    with pytest.raises(ResourceLimitError, match=r"would need about .* of memory"):
        synthetic.run_synthetic(wide, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    # the paper's study fits
    check_resources("the paper's study", **synthetic_footprint(synthetic.default_config()))


def test_check_resources_memory_and_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 30)
    monkeypatch.setattr(limits, "WORKER_BASE", 1 << 30)
    with pytest.raises(ResourceLimitError, match=r"6\.0 GiB of memory \(3\.0 GiB per worker × 2"):
        check_resources("x", memory=2 << 30, workers=2)
    check_resources("x", memory=1 << 29, workers=1)  # in this process: no worker overhead
    monkeypatch.setattr(limits, "_free_disk", lambda out: 1 << 20)
    with pytest.raises(ResourceLimitError, match=r"1\.0 MiB free"):
        check_resources("x", disk=1 << 30, out=tmp_path)


def test_bootstrap_and_ranking_ceilings():
    s = np.r_[np.zeros(50), np.ones(50)] + np.linspace(0, 0.5, 100)
    y = np.r_[np.zeros(50), np.ones(50)]
    for n in (10**15, 2**63):
        with pytest.raises(ResourceLimitError, match="n_resamples must be at most"):
            metrics.bootstrap_roc(s, y, fprs=(0.1,), n_resamples=n)
    with pytest.raises(ResourceLimitError, match="n_subsets must be at most"):
        rank_stability(np.ones((10, 3)), k_runs=(5,), n_subsets=10**8)
    with pytest.raises(ResourceLimitError, match="n_resamples must be at most"):
        rank_quantizers(np.ones((10, 3)), n_resamples=10**12)


def test_memory_checked_against_the_machine(monkeypatch):
    monkeypatch.setattr(_validation, "available_memory", lambda: 1000)
    s = np.r_[np.zeros(50), np.ones(50)] + np.linspace(0, 0.5, 100)
    y = np.r_[np.zeros(50), np.ones(50)]
    with pytest.raises(ResourceLimitError, match="of memory; this machine has"):
        metrics.bootstrap_roc(s, y, fprs=(0.1,), n_resamples=1000)


# ------------------------------------------------------------------------------------------
# 5. the command line: one line, exit status 2 (usage) or 1 (runtime)
# ------------------------------------------------------------------------------------------
@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    np.save(tmp_path / "s.npy", rng.normal(size=400) + y)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "content, match",
    [
        (b"hello\n", "not a .npy file"),
        (b"", "is empty"),
        (b"PK\x03\x04rest", "a .npz archive"),
        (None, "is a directory"),
        ("truncated", "truncated"),
        ("object", "Python objects"),
        ("missing", "does not exist"),
    ],
)
def test_roc_bad_files_are_one_line_usage_errors(arrays, capsys, content, match):
    bad = arrays / "bad.npy"
    if content is None:
        bad.mkdir()
    elif content == "truncated":
        bad.write_bytes((arrays / "s.npy").read_bytes()[:300])
    elif content == "object":
        np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content != "missing":
        bad.write_bytes(content)
    assert cli.main(["roc", str(bad), str(arrays / "y.npy")]) == 2
    line = _err(capsys)
    assert line.startswith("mis roc: error: scores:") and match in line


def _status(argv) -> int:
    """The exit status of ``mis <argv>`` (argparse exits, commands return)."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--seed", "-1"], "--seed: must be an integer >= 0"),
        (["--resamples", "1e15"], "n_resamples must be at most"),
        (["--resamples", "0"], "--resamples: must be an integer >= 1"),
        (["--fprs", "0"], "--fprs: must be a number in"),
        (["--confidence", "1"], "--confidence: must be a number in"),
    ],
)
def test_roc_bad_options_are_one_line_usage_errors(arrays, capsys, argv, match):
    assert _status(["roc", str(arrays / "s.npy"), str(arrays / "y.npy"), *argv]) == 2
    assert match in _err(capsys)


def test_study_options_are_checked(tmp_path, capsys):
    for argv, match in [
        (["audit", "--device", "tpu"], "--device: must be auto, cpu"),
        (["synth", "--out", str(tmp_path / "o"), "--workers", "0"], "--workers: must be"),
    ]:
        assert _status(argv) == 2 and match in _err(capsys)
    assert cli.main(["synth", "--out", str(tmp_path / "o"), "--scheduler", "tcp://h:1"]) == 2
    assert "--scheduler needs --executor dask" in _err(capsys)
    assert not (tmp_path / "o").exists()


def _square(x):
    return x * x


def test_an_unreachable_scheduler_fails_fast_in_one_line(tmp_path, capsys):
    pytest.importorskip("distributed")
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=r"could not connect to the Dask scheduler"):
        list(make_executor("dask", scheduler="tcp://127.0.0.1:1").map(_square, [1]))
    assert time.monotonic() - t0 < 10
    for bad in ("foo bar", "tcp://host:port", "tcp://h:70000", str(tmp_path)):
        with pytest.raises(MisValueError, match="scheduler"):
            make_executor("dask", scheduler=bad)


def test_runtime_errors_exit_1_in_one_line(monkeypatch, capsys, tmp_path):
    def raises(exc):
        def cmd(args):
            raise exc

        return cmd

    cases = [
        (OSError(errno.ENOSPC, "No space left on device"), 1, "No space left on device: writing"),
        (StoreCorruptError("x.npy does not match its sha256"), 1, "does not match"),
        (OutputLockedError("in use by another mis run (pid 1)"), 1, "pid 1"),
        (RuntimeError("boom\nsecond line"), 1, "RuntimeError: boom second line (run with --debug"),
        (MisValueError("bad value"), 2, "bad value"),
        (
            FileNotFoundError("data_batch_1 not found under x.\n  a\n  b"),
            2,
            "not found under x. a b",
        ),
    ]
    for exc, code, match in cases:
        monkeypatch.setattr(cli, "cmd_synth", raises(exc))
        assert cli.main(["synth", "--out", str(tmp_path / "o"), "-q"]) == code
        assert match in _err(capsys)
    monkeypatch.setattr(cli, "cmd_synth", raises(KeyboardInterrupt()))
    assert cli.main(["synth", "--out", str(tmp_path / "o"), "-q"]) == 130
    assert "interrupted" in _err(capsys)


def test_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    def cmd(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_synth", cmd)
    assert cli.main(["synth", "--out", str(tmp_path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("MIS_DEBUG", "1")
    assert cli.main(["synth", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("mis synth: error: RuntimeError: boom")


def test_warnings_print_as_one_line(arrays, capsys):
    argv = ["roc", str(arrays / "s.npy"), str(arrays / "y.npy"), "--fprs", "1e-4"]
    assert cli.main([*argv, "--resamples", "20"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("mis: warning: fpr=[0.0001]") for line in lines)


def test_verify_command(tmp_path, capsys):
    out = tmp_path / "out"
    check_out_config(out, {"a": {"b": 1}})
    run_jobs(_numpy_job, _specs(out / "store", 2))
    assert cli.main(["verify", str(out)]) == 0
    assert "all intact" in capsys.readouterr().out
    (out / "store" / "jobs" / "001" / "a.npy").unlink()
    assert cli.main(["verify", str(out)]) == 1
    assert "unfinished job: jobs/001" in capsys.readouterr().out
    assert cli.main(["verify", str(out), "--repair"]) == 0
    assert cli.main(["verify", str(out)]) == 0
    assert cli.main(["verify", str(tmp_path / "nothing")]) == 2


# ------------------------------------------------------------------------------------------
# 9. silent wrong numbers in the API
# ------------------------------------------------------------------------------------------
def test_rq_is_scale_invariant_at_any_magnitude():
    L = 0.5 + np.random.default_rng(0).random((6, 40))
    base = rq(L).rq
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateStatisticWarning)
        # (scaled values stay normal floats: subnormal inputs would have lost digits already)
        for scale in (1e300, 1e-300, 1e-305, 1e250):
            assert rq(L * scale).rq == pytest.approx(base, rel=1e-9)
        assert rq(L * 2.0**600).rq == base  # a power of two: bit for bit
    blocks = np.random.default_rng(1).random((3, 2, 5, 30))
    blocks[1, 0] *= 1e300
    blocks[2, 1] *= 1e-300
    got = rq_batch(blocks)
    want = [[rq(blocks[r, q]).rq for q in range(2)] for r in range(3)]
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all()


def test_estimator_arguments_fail_with_the_parameter_named():
    s = np.linspace(0, 1, 100)
    y = (np.arange(100) % 2).astype(int)
    cases = [
        (lambda: metrics.log_roc_auc(s, y, fpr_min=[1e-3, 1e-2]), "fpr_min must be a number"),
        (lambda: metrics.roc_auc(s + 1j, y), "scores must be real numbers; got dtype complex"),
        (lambda: metrics.roc_auc(s, y + 0j), "labels must be 0/1"),
        (lambda: metrics.tpr_at_fpr(s, y, "0.01"), "fpr must be a number"),
        (
            lambda: metrics.bootstrap_roc(s, y, fprs=(0.1,), confidence_level="0.9"),
            "confidence_level must be",
        ),
        (
            lambda: metrics.bootstrap_roc(s, y, fprs=(0.1,), rng=-1),
            "rng must be a non-negative int seed",
        ),
        (lambda: metrics.bootstrap_roc(s, y, fprs=(0.1,), rng=True), "rng must be None"),
        (lambda: rank_quantizers(-np.ones((4, 3)), rng=0), "rq_values must be >= 0"),
        (lambda: rank_quantizers(np.ones((4, 3)), ["a", "a", "b"]), "names must be distinct"),
        (lambda: rank_stability(np.ones((4, 3)), (2,), names=["a", "b", "b"]), "distinct"),
        (lambda: Q.QuantConfig(method="nope"), "unknown quantization method 'nope'"),
        (
            lambda: Q.QuantConfig(method="adaround", method_options={"bogus": 1}),
            "unknown method_options.bogus",
        ),
    ]
    for call, match in cases:
        with pytest.raises(MisValueError, match=match):
            call()


def test_more_bad_arguments_name_the_parameter(tmp_path):
    s = np.linspace(0, 1, 40)
    y = (np.arange(40) % 2).astype(int)
    store = RunStore(tmp_path / "run")
    store.save("ok", np.zeros(2))
    cases = [
        (lambda: metrics.tpr_at_fpr(s, y, 0.1, compat=np.array([1, 2])), "compat must be one of"),
        (lambda: metrics.bootstrap_roc(s, y, method=[]), "method must be one of"),
        (lambda: metrics.roc_auc([[1.0, 2.0], [3.0]], [0, 1]), "scores must be an array"),
        (lambda: metrics.holm("x", 0.05), "pvalues must be real numbers"),
        (lambda: metrics.holm([0.1, 1.5], 0.05), r"pvalues must lie in \[0, 1\]"),
        (lambda: metrics.t_interval({}), "values must be real numbers"),
        (lambda: rq([[1.0, 2.0], [3.0]]), "val_losses must be an array"),
        (lambda: rank_quantizers(np.ones((4, 3)), names=-1), "names must be a sequence"),
        (lambda: rank_quantizers(np.ones((4, 3)), confidence_level=None), "confidence_level"),
        (lambda: store.load(["ok"]), "name must be a string"),
        (lambda: jobs.gather(store, 3, "x"), "names must be a list"),
        (lambda: RunStore("a\x00b"), "path must be a non-empty path"),
    ]
    for call, match in cases:
        with pytest.raises(MisValueError, match=match):
            call()


def test_a_file_that_does_not_hold_its_recorded_shape_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save("a", np.zeros((2, 3)))
    m = json.loads((store.path / "manifest.json").read_text())
    m["arrays"]["a"]["shape"] = [3, 2]
    (store.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreCorruptError, match=r"shape \[2, 3\].*records \[3, 2\]"):
        RunStore(store.path).load("a")


def test_temporary_files_of_a_killed_run_are_removed_on_resume(tmp_path):
    out = tmp_path / "out"
    check_out_config(out, {"a": {"b": 1}})
    (out / ".report.md.x1y2.tmp").write_text("partial")
    (out / "analysis").mkdir()
    (out / "analysis" / ".fp.json.a1.tmp").write_text("partial")
    (out / "store" / ".manifest.json.zz.tmp").write_text("partial")
    (out / "store" / "stray.npy").write_bytes(b"x")

    @locked_output
    def resume():
        check_out_config(out, {"a": {"b": 1}})

    resume()
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert left == [".manifest.lock", ".mis.lock", "config.json", "manifest.json"]


def test_masked_arrays_are_refused_by_the_store(tmp_path):
    store = RunStore(tmp_path / "run")
    with pytest.raises(MisValueError, match="masked array"):
        store.save("m", np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]))
    assert store.names() == []


def test_calibration_rows_must_be_the_members_rows():
    x = torch.randn(20, 3)
    keep = np.zeros(20, bool)
    keep[:10] = True
    members, non = np.arange(10), np.arange(10, 20)
    with pytest.raises(MisValueError, match="cannot check"):
        Q.Calibration((x[non[:3]],), members[:3], keep)  # non-members under member ids
    with pytest.raises(MisValueError, match="may hold non-members"):
        Q.Calibration((x[non[:3]],), members[:3], keep, dataset=x)
    ok = Q.Calibration((x[members[:3]],), members[:3], keep, dataset=x)
    assert ok.dataset is None and torch.equal(ok.to("cpu").x, x[:3])


# ------------------------------------------------------------------------------------------
# 10. compat mode as the reference code
# ------------------------------------------------------------------------------------------
def test_compat_tpr_below_one_over_n_negatives_is_the_reference_value():
    rng = np.random.default_rng(7)
    s = np.r_[rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 1.0, 995)]
    y = np.r_[np.ones(1000), np.zeros(995)]
    fpr, tpr, _ = sk_roc_curve(y, s)  # the reference: tpr[np.where(fpr < alpha)[0][-1]]
    want = tpr[np.where(fpr < 1e-3)[0][-1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = metrics.tpr_at_fpr(s, y, 1e-3, compat="carlini2022")
        boot = metrics.bootstrap_roc(s, y, fprs=(1e-3,), n_resamples=50, compat="carlini2022")
    assert got == want and 0 < got < 1
    assert boot.tpr[0].estimate == want and np.isfinite(boot.tpr[0].low)
    with pytest.warns(Warning, match="below the resolvable floor"):
        assert np.isnan(metrics.tpr_at_fpr(s, y, 1e-3))  # our convention: undefined


# ------------------------------------------------------------------------------------------
# 11. output files follow the umask
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = RunStore(tmp_path / "run")
        store.save("a", np.zeros(2))
        atomic_write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    for p in (
        tmp_path / "run" / "a.npy",
        tmp_path / "report.md",
        tmp_path / "run" / "manifest.json",
    ):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


# ------------------------------------------------------------------------------------------
# 12. the restricted unpickler: memory bounded by the file size
# ------------------------------------------------------------------------------------------
class _Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _codec_chain(levels: int) -> bytes:
    x = b"c_codecs\nencode\n(Vaaaa\nVlatin1\ntR"
    for _ in range(levels):
        x = b"c_codecs\nencode\n(" + x + b"Vhex\ntR"
    return x + b"."


@pytest.mark.parametrize(
    "blob",
    [
        b"c__builtin__\nbytearray\n(L1000000000000\ntR.",  # 42 bytes -> 1 TB
        b"c__builtin__\nbytearray\n(L3000000000\ntR.",  # 3 GB: would succeed unmetered
        pickle.dumps(_Call(np.ndarray, ((10**11,),)), protocol=2),
        pickle.dumps(_Call(np.ndarray, ((10**11,),)), protocol=0),
        _codec_chain(30),  # each level doubles: 600 bytes -> 4 GB
    ],
)
def test_a_small_pickle_cannot_allocate_much(blob):
    assert len(blob) < 1000
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        train_data.restricted_load(io.BytesIO(blob))


def test_the_budget_admits_real_cifar_batches(tmp_path):
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": list(np.arange(2000) % 10),
        b"data": np.random.default_rng(0).integers(0, 256, (2000, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(2000)],
    }
    for protocol in (2, 4, 5):
        path = tmp_path / f"b{protocol}"
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        back = train_data.restricted_load(path)
        np.testing.assert_array_equal(back[b"data"], batch[b"data"])
    bad = tmp_path / "truncated"
    bad.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(pickle.UnpicklingError):  # a clean refusal, whatever the opcode
        train_data.restricted_load(bad)


def test_sha256_helper_is_unchanged(tmp_path):  # the store's checksum is the file's sha256
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
