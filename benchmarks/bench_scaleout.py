"""Benchmark: overhead per job of the Dask executor on a local cluster, against serial.

Three measurements, each with the serial executor (the baseline) and a
``distributed.LocalCluster`` of ``--workers`` processes (one thread each) in the same run:

1. a no-op ``map`` (no run store): the round trip of one task through the scheduler, with
   Dask's own ``client.map`` + ``client.gather`` as the floor;
2. ``run_jobs`` of a trivial job writing two small arrays and its ``done`` marker into a run
   store (atomic writes, fsync, manifest lock): the full per-job cost of a study, where
   the store work runs on the workers in parallel;
3. ``run_jobs`` of jobs that sleep ``--sleep`` s (stand-ins for training): wall time and
   speed-up against serial; the time per job beyond its work is wall / n_jobs − sleep for
   serial and workers × wall / n_jobs − sleep for Dask, and their difference is the
   overhead per job of running on the cluster.

Cluster start-up (once per study) is timed separately. The process-pool executor is shown
for comparison in (2) (its time includes starting the spawned pool, which imports torch).

There is no numeric target in the issue; the figure to compare with is the length of one
real job (a shadow ResNet trains for minutes): a per-job overhead of tens of milliseconds
is negligible. Timings on a shared machine are noisy: re-run when a figure looks contended.

Run: ``.venv/bin/python benchmarks/bench_scaleout.py [--quick] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mis.train.executors import DaskExecutor
from mis.train.jobs import JobSpec, ProcessExecutor, SerialExecutor, run_jobs

TARGET_MS = 50.0  # ours: per-job overhead well below one training job (minutes)


def _noop(x):
    return x


def _tiny_job(config, index, seed, scratch):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal(256), "i": np.array([index])}


def _sleep_job(config, index, seed, scratch):
    time.sleep(config["sleep"])
    return {"i": np.array([index])}


def _specs(store, n, config=None):
    return [JobSpec(str(store), f"jobs/{i:05d}", i, i, config or {}) for i in range(n)]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer jobs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sleep", type=float, default=0.5, help="seconds per job in part 3")
    args = ap.parse_args(argv)
    n_noop = 200 if args.quick else 1000
    n_tiny = 40 if args.quick else 200
    n_sleep = 8 if args.quick else 20
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaleout_"))

    import distributed  # dask is the optional extra mis[dask]

    print(f"dask {distributed.__version__}; {args.workers} worker processes x 1 thread")
    t_start, cluster = _timed(
        lambda: distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    )
    t_conn, client = _timed(lambda: distributed.Client(cluster, set_as_default=False))
    print(f"cluster start-up {t_start:.2f} s, client connect {t_conn * 1e3:.0f} ms (once a study)")
    dask_ex = DaskExecutor(client=client)
    try:
        list(dask_ex.map(_noop, range(2 * args.workers)))  # warm the workers

        # 1. no-op map
        t_s, _ = _timed(lambda: list(SerialExecutor().map(_noop, range(n_noop))))
        t_d, _ = _timed(lambda: list(dask_ex.map(_noop, range(n_noop))))
        t_r, _ = _timed(
            lambda: client.gather(client.map(_noop, range(n_noop), pure=False, batch_size=None))
        )
        print(f"\n[1] no-op map, {n_noop} items")
        print(f"    serial                          {t_s / n_noop * 1e6:8.1f} us/item")
        print(f"    DaskExecutor.map                {t_d / n_noop * 1e3:8.2f} ms/item")
        print(f"    plain client.map + gather (ref) {t_r / n_noop * 1e3:8.2f} ms/item")

        # 2. trivial jobs into a run store
        t_s, _ = _timed(lambda: run_jobs(_tiny_job, _specs(tmp / "s", n_tiny), progress=False))
        t_d, st = _timed(
            lambda: run_jobs(_tiny_job, _specs(tmp / "d", n_tiny), dask_ex, progress=False)
        )
        assert st == ["done"] * n_tiny
        t_p, _ = _timed(
            lambda: run_jobs(
                _tiny_job,
                _specs(tmp / "p", n_tiny),
                ProcessExecutor(args.workers, threads_per_worker=1),
                progress=False,
            )
        )
        t_k, st = _timed(
            lambda: run_jobs(_tiny_job, _specs(tmp / "d", n_tiny), dask_ex, progress=False)
        )
        assert st == ["skipped"] * n_tiny
        per_s, per_d = t_s / n_tiny * 1e3, t_d / n_tiny * 1e3
        print(f"\n[2] run_jobs, {n_tiny} trivial jobs (2 arrays + marker each) into a run store")
        print(f"    serial        {per_s:7.2f} ms/job (baseline)")
        print(f"    dask          {per_d:7.2f} ms/job   ratio dask/serial {per_d / per_s:5.2f}")
        print(f"    process pool  {t_p / n_tiny * 1e3:7.2f} ms/job (incl. pool start-up)")
        print(f"    dask, all skipped (resume) {t_k / n_tiny * 1e3:7.2f} ms/job")
        print(
            f"    dask overhead per job over serial: {per_d - per_s:+.2f} ms "
            f"(target, ours: < {TARGET_MS:.0f} ms)"
        )

        # 3. jobs with real work (sleep) - the speed-up a study sees
        cfg = {"sleep": args.sleep}
        t_s, _ = _timed(lambda: run_jobs(_sleep_job, _specs(tmp / "s3", n_sleep, cfg)))
        t_d, _ = _timed(lambda: run_jobs(_sleep_job, _specs(tmp / "d3", n_sleep, cfg), dask_ex))
        extra_s = (t_s / n_sleep - args.sleep) * 1e3
        extra_d = (args.workers * t_d / n_sleep - args.sleep) * 1e3
        print(f"\n[3] run_jobs, {n_sleep} jobs of {args.sleep} s each")
        print(f"    serial {t_s:6.2f} s (baseline)")
        print(f"    dask   {t_d:6.2f} s   speed-up {t_s / t_d:4.2f}x (ideal {args.workers}x)")
        print(
            f"    time per job beyond its {args.sleep} s of work (store writes included): "
            f"serial {extra_s:.1f} ms, dask {extra_d:.1f} ms (x {args.workers} workers)"
        )
        print(
            f"    dask overhead per job over serial: {extra_d - extra_s:+.1f} ms "
            f"(target, ours: < {TARGET_MS:.0f} ms)"
        )
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
