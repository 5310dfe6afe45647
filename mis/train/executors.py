"""Executors for study jobs: serial, a process pool, or a Dask distributed cluster.

Every study runs its independent jobs (shadow models, trajectory runs) through
:func:`mis.train.jobs.run_jobs` with an *executor*, an object with one method
``map(fn, iterable)`` that yields ``fn(item)`` for each item, in order. This module adds
:class:`DaskExecutor`, which submits the jobs to a `Dask distributed
<https://distributed.dask.org>`_ cluster — a :class:`distributed.LocalCluster` on this
machine, or a scheduler whose workers were started on an HPC system by dask-jobqueue
(SLURM, PBS, …) or by hand — plus :func:`make_executor`, which turns an executor's name and
options (what the study command lines' ``--executor serial|process|dask``,
``--scheduler ADDRESS``, … select) into an executor.

Failure model (see ``docs/scaleout.md``)
----------------------------------------
* Outputs go to the run store directly from the worker that ran the job, so the store must
  be on a file system that the client and every worker see under the same path (checked
  before the jobs are submitted). Finished jobs (``<name>/done`` present) are skipped by
  :func:`~mis.train.jobs.run_job` on the worker.
* A worker that dies (killed, out of memory, node lost) loses no finished output: each job
  wrote its arrays atomically and then its ``done`` marker, and the result kept by Dask is
  only a status string. The scheduler re-runs the jobs that were running on the dead worker
  elsewhere (up to ``allowed_failures`` worker deaths per job, then
  :class:`distributed.KilledWorker`). A job killed after writing some of its arrays but
  before its marker is not finished, so its re-run redoes (and overwrites) all of them.
* A job that raises is retried ``retries`` times (Dask ``retries=``); if it still fails,
  the study stops with that error: the pending jobs are cancelled, finished outputs stay,
  and re-running the study resumes.

Dask is optional (``pip install 'mis[dask]'``): it is imported only when a
:class:`DaskExecutor` connects.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mis._validation import boolean, integer, real, string
from mis.exceptions import MisValueError, StoreCorruptError
from mis.train.jobs import JobSpec, ProcessExecutor, SerialExecutor, pending_jobs, run_job

__all__ = ["EXECUTORS", "DaskExecutor", "make_executor"]

EXECUTORS = ("serial", "process", "dask")
_INSTALL_HINT = (
    "the dask executor needs dask.distributed; install it with "
    "`pip install 'mis[dask]'` (or `pip install \"dask[distributed]\"`)"
)
_PENDING = object()


def _import_distributed():
    try:  # dask.distributed is the optional extra mis[dask]: imported only when it is used
        import distributed
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return distributed


def _job_label(fn: Callable) -> str:
    """Name of the job function (``run_job`` partials are unwrapped) for task keys."""
    while isinstance(fn, functools.partial):
        inner = next((a for a in fn.args if callable(a)), None)
        fn = inner if inner is not None else fn.func
    return getattr(fn, "__name__", "job").replace("-", "_")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_scheduler(sched) -> None:
    """A scheduler is an address ``scheme://host[:port]`` or a (JSON) scheduler file."""
    text = str(sched)
    if text == "":
        raise MisValueError("scheduler must be an address (tcp://host:8786) or a scheduler file")
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if not scheme or not rest or any(c.isspace() for c in text):
            raise MisValueError(
                f"scheduler must be an address like tcp://host:8786 or a scheduler file; "
                f"got {text!r}"
            )
        host, _, port = rest.rpartition(":")
        if port and host and not port.isdigit():
            raise MisValueError(f"scheduler port must be a number; got {text!r}")
        if port.isdigit() and not 0 < int(port) < 65536:
            raise MisValueError(f"scheduler port must be in [1, 65535]; got {text!r}")
        return
    path = Path(text)
    if path.exists() and not path.is_file():
        raise MisValueError(f"scheduler file {text!r} is a directory")
    if not path.exists() and not text.endswith(".json"):
        raise MisValueError(
            f"scheduler must be an address like tcp://host:8786 or an existing scheduler file; "
            f"got {text!r}"
        )


def _probe_tcp(address: str, timeout: float) -> None:
    """Fail at once (``ConnectionRefusedError``) when nothing listens at a ``tcp://`` address,
    instead of Dask's retries until the timeout."""
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or not port.isdigit() or not host:
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def _call_with_torch_threads(threads: int, fn: Callable, item):
    """Run ``fn(item)`` with ``torch.set_num_threads(threads)`` (runs on the worker)."""
    torch.set_num_threads(threads)
    return fn(item)


def _sees(path: str) -> bool:  # runs on each worker
    return os.path.exists(path)


def _finished_jobs(fn: Callable, items: list) -> list[int]:
    """Positions of the items that ``fn`` would skip: ``fn`` is ``partial(run_job, job)``,
    the item a JobSpec that is finished in its store (:func:`~mis.train.jobs.pending_jobs`:
    marker, identity and verified outputs; one manifest read per store).
    """
    if not (isinstance(fn, functools.partial) and fn.func is run_job):
        return []
    if not all(isinstance(spec, JobSpec) for spec in items):
        return []
    try:
        todo = {id(s) for s in pending_jobs(items)}
    except (FileNotFoundError, StoreCorruptError):
        return []  # the jobs themselves will create the store / report the damage
    return [i for i, spec in enumerate(items) if id(spec) not in todo]


class DaskExecutor:
    """Run jobs as tasks on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : str, path-like or Cluster, optional
        Where the jobs go: a scheduler address (``"tcp://10.0.0.5:8786"``), the path of a
        scheduler file (JSON written by ``dask scheduler --scheduler-file``), or a cluster
        object (``LocalCluster``, dask-jobqueue's ``SLURMCluster``/``PBSCluster``, …).
        Default: a :class:`distributed.LocalCluster` of ``n_workers`` processes on this
        machine, started when the jobs are submitted and closed afterwards.
    client : distributed.Client, optional
        An existing client to use instead (neither closed nor modified here).
    n_workers : int, optional
        Workers of the local cluster (default: the number of CPUs). Only without
        ``scheduler``/``client``; a remote cluster has the workers it was given.
    threads_per_worker : int, optional
        Threads of each local-cluster worker, i.e. jobs running at once per worker
        (default 1).
    gpu : bool, default False
        Each job asks for one unit of the worker resource ``GPU`` (``resources={"GPU": 1}``
        unless ``resources`` names another amount),
        so it only runs on workers started with ``--resources GPU=1`` (or more), one job per
        declared unit at a time. The job itself picks the device from its config.
    resources : mapping, optional
        Further abstract resources each job asks for (e.g. ``{"MEMORY": 16e9}``).
    retries : int, default 2
        Re-runs of a job that *raised* (Dask ``retries``). Worker deaths are counted
        separately, see ``allowed_failures``.
    allowed_failures : int, default 3
        Worker deaths a job may be involved in before it is declared failed
        (:class:`distributed.KilledWorker`). Applied to a local cluster started here; a
        remote scheduler has its own setting (``distributed.scheduler.allowed-failures``).
    torch_threads : int, optional
        ``torch.set_num_threads`` on the worker before each job. By default, workers
        started by a Dask nanny have ``OMP_NUM_THREADS=1`` (one torch thread).
    check_shared : bool, default True
        Before submitting :class:`~mis.train.jobs.JobSpec` items, check that every current
        worker sees the run store (a probe file written here), and raise if one does not.
    shared_timeout : float, default 60
        How long a worker may take to see the probe (NFS attribute caching).
    connect_timeout : float, default 10
        Seconds to wait for a scheduler (address or scheduler file) to answer; then a
        :class:`ConnectionError` names the address.
    cluster_kwargs
        Passed to :class:`distributed.LocalCluster` (e.g. ``memory_limit="8GiB"``).

    Notes
    -----
    :meth:`map` connects (or starts the local cluster) when iterated and disconnects when
    done; used as a context manager (``with DaskExecutor(...) as ex:``) it connects once
    for several ``map`` calls.
    """

    def __init__(
        self,
        scheduler: Any = None,
        *,
        client: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        gpu: bool = False,
        resources: Mapping[str, float] | None = None,
        retries: int = 2,
        allowed_failures: int = 3,
        torch_threads: int | None = None,
        check_shared: bool = True,
        shared_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        **cluster_kwargs: Any,
    ):
        if scheduler is not None and client is not None:
            raise MisValueError("give scheduler or client, not both")
        remote = scheduler is not None or client is not None
        local_only = dict(cluster_kwargs, n_workers=n_workers)
        local_only["threads_per_worker"] = threads_per_worker
        local_only = sorted(k for k, v in local_only.items() if v is not None)
        if remote and local_only:
            raise MisValueError(
                f"{local_only} apply to a local cluster only; a remote scheduler has the "
                f"workers it was given (got scheduler={scheduler!r})"
            )
        for pname, value, low in (
            ("n_workers", n_workers, 1),
            ("threads_per_worker", threads_per_worker, 1),
            ("retries", retries, 0),
            ("allowed_failures", allowed_failures, 0),
            ("torch_threads", torch_threads, 1),
        ):
            if value is not None:
                integer(value, pname, low)
        real(shared_timeout, "shared_timeout", 0.0)
        real(connect_timeout, "connect_timeout", 0.0, open_lo=True)
        if isinstance(scheduler, (str, os.PathLike)):
            _check_scheduler(scheduler)
        if resources is not None and not isinstance(resources, Mapping):
            raise MisValueError(f"resources must be a mapping name -> amount; got {resources!r}")
        res = {}
        for k, v in (resources or {}).items():
            res[str(k)] = real(v, f"resources[{k!r}]", 0.0, open_lo=True)
        if gpu:
            res.setdefault("GPU", 1.0)
        if gpu and not remote:
            raise MisValueError(
                "gpu=True needs workers that declare a GPU resource: start them with "
                "`dask worker SCHEDULER --resources GPU=1` (one per GPU, see "
                "docs/scaleout.md) and pass scheduler=ADDRESS; on one machine with one GPU, "
                "the serial executor with device 'cuda' does the same job"
            )
        self.scheduler = scheduler
        self.n_workers = n_workers or (os.cpu_count() or 1)
        self.threads_per_worker = threads_per_worker
        self.gpu = bool(gpu)
        self.resources = res
        self.retries = retries
        self.allowed_failures = allowed_failures
        self.torch_threads = torch_threads
        self.check_shared = check_shared
        self.shared_timeout = float(shared_timeout)
        self.connect_timeout = float(connect_timeout)
        self.cluster_kwargs = cluster_kwargs
        self._client = client
        self._owned: list = []  # (client, cluster) started by __enter__, closed by close()

    # -- connection -------------------------------------------------------------------------
    def _connect(self, local_dir: Path | None = None):
        """A fresh ``(client, cluster_or_None)``; the cluster is None unless started here.

        ``local_dir``: where a local cluster's scheduler and workers keep their scratch files
        (default Dask's, the system's temporary directory).
        """
        distributed = _import_distributed()
        if self.scheduler is None:
            kwargs = {"dashboard_address": ":0", "processes": True, **self.cluster_kwargs}
            where = contextlib.nullcontext()
            if local_dir is not None and "local_directory" not in kwargs:
                local_dir.mkdir(parents=True, exist_ok=True)
                kwargs["local_directory"] = str(local_dir)
                import dask  # installed with dask.distributed (the optional extra mis[dask])

                where = dask.config.set({"temporary-directory": str(local_dir)})
            with where:
                cluster = distributed.LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=self.threads_per_worker or 1,
                    scheduler_kwargs={"allowed_failures": self.allowed_failures},
                    **kwargs,
                )
            try:
                return distributed.Client(cluster, set_as_default=False), cluster
            except BaseException:
                cluster.close()
                raise
        sched = self.scheduler
        timeout = self.connect_timeout
        try:
            if isinstance(sched, (str, os.PathLike)):
                path = Path(sched)
                if str(sched).endswith(".json") or path.is_file():
                    if not path.is_file():
                        raise MisValueError(f"scheduler file {str(path)!r} does not exist")
                    client = distributed.Client(
                        scheduler_file=str(path), set_as_default=False, timeout=timeout
                    )
                    return client, None
                _probe_tcp(str(sched), timeout)
                return distributed.Client(str(sched), set_as_default=False, timeout=timeout), None
            return distributed.Client(sched, set_as_default=False, timeout=timeout), None
        except (OSError, TimeoutError, ValueError) as exc:
            if isinstance(exc, MisValueError):
                raise
            waited = f" within {timeout:g} s" if "time" in str(exc).lower() else ""
            raise ConnectionError(
                f"could not connect to the Dask scheduler {str(sched)!r}{waited} "
                f"({type(exc).__name__}: {_one_line(exc)}); is it running, and is the address "
                "right (tcp://host:port, or the scheduler file)?"
            ) from None

    @contextlib.contextmanager
    def _session(self, local_dir: Path | None = None) -> Iterator[Any]:
        if self._client is not None:
            yield self._client
            return
        client, cluster = self._connect(local_dir)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
                if local_dir is not None:
                    shutil.rmtree(local_dir, ignore_errors=True)

    @property
    def client(self):
        """The client while connected (inside ``with``, or when one was given), else None."""
        return self._client

    def __enter__(self) -> DaskExecutor:
        if self._client is None:
            client, cluster = self._connect()
            self._client = client
            self._owned = [client, cluster]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and the local cluster that ``__enter__`` started (if any)."""
        if self._owned:
            client, cluster = self._owned
            self._owned = []
            self._client = None
            client.close()
            if cluster is not None:
                cluster.close()

    # -- checks -----------------------------------------------------------------------------
    def _check_resources(self, client) -> None:
        if not self.resources:
            return
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        for name, amount in self.resources.items():
            if not any(w.get("resources", {}).get(name, 0) >= amount for w in workers.values()):
                warnings.warn(
                    f"no worker of the cluster ({len(workers)} now) declares resource "
                    f"{name}={amount:g}; the jobs wait until one joins (start workers with "
                    f"`dask worker ... --resources {name}={amount:g}`)",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _check_shared_store(self, client, items: list) -> None:
        """Raise unless every current worker sees each run store of ``items`` (JobSpecs).

        The client writes a probe file into the store directory and asks the workers whether
        it exists at the same path (a relative path is resolved in each worker's working
        directory, as the job will resolve it). Workers that do not see it yet are asked
        again for ``shared_timeout`` seconds: NFS clients may cache a directory listing for
        up to ~30 s (``acdirmin``/``acdirmax``).
        """
        stores = sorted({str(s.store) for s in items if hasattr(s, "store")})
        if not stores or not self.check_shared:
            return
        for store in stores:
            Path(store).mkdir(parents=True, exist_ok=True)
            probe = Path(store) / f".mis-probe-{uuid.uuid4().hex}"
            probe.touch()
            try:
                deadline = time.monotonic() + self.shared_timeout
                blind = None
                while True:
                    seen = client.run(_sees, str(probe), workers=blind)
                    blind = sorted(w for w, ok in seen.items() if not ok)
                    if not blind or time.monotonic() >= deadline:
                        break
                    time.sleep(1.0)
            finally:
                probe.unlink(missing_ok=True)
            if blind:
                raise MisValueError(
                    f"the run store {store!r} is not visible from worker(s) {blind[:3]} "
                    f"after {self.shared_timeout:g} s: the store must be on a file system "
                    "shared by this machine and every worker, under the same path (a "
                    "relative path is resolved in each worker's working directory: use an "
                    "absolute one)"
                )

    # -- the executor interface -------------------------------------------------------------
    def map(self, fn: Callable, iterable: Iterable) -> Iterator:
        """Submit ``fn(item)`` for every item; yield the results in order.

        For :func:`~mis.train.jobs.run_jobs` (``fn`` a ``run_job`` partial, items
        :class:`~mis.train.jobs.JobSpec`), jobs already finished in their store are answered
        ``"skipped"`` here without being submitted; when all are, no cluster is contacted.
        Results are collected as they complete (and released from the cluster at once, so a
        worker that dies later holds nothing that must be recomputed); each is yielded as
        soon as all earlier ones are in.

        Raises
        ------
        Exception
            The first job's error after its ``retries`` (pending jobs are cancelled), or
            :class:`distributed.KilledWorker` for a job that killed ``allowed_failures``
            workers; a note names the job.
        """
        items = list(iterable)
        results: list = [_PENDING] * len(items)
        for i in _finished_jobs(fn, items):
            results[i] = "skipped"
        todo = [i for i, r in enumerate(results) if r is _PENDING]
        if not todo:
            yield from results
            return
        distributed = _import_distributed()
        call = fn
        if self.torch_threads is not None:
            call = functools.partial(_call_with_torch_threads, self.torch_threads, fn)
        label = _job_label(fn)
        token = uuid.uuid4().hex[:8]
        nxt = 0
        stores = [Path(items[i].store) for i in todo if isinstance(items[i], JobSpec)]
        # a local cluster started for these jobs keeps its scratch files in the run store
        local_dir = stores[0] / ".scratch" / f"dask-{token}" if stores else None
        with self._session(local_dir) as client:
            self._check_resources(client)
            self._check_shared_store(client, [items[i] for i in todo])
            futures = client.map(
                call,
                [items[i] for i in todo],
                key=[f"{label}-{i:06d}-{token}" for i in todo],
                retries=self.retries,
                resources=self.resources or None,
                pure=False,
            )
            position = {f.key: i for i, f in zip(todo, futures, strict=True)}
            pending = {f.key: f for f in futures}
            try:
                done = distributed.as_completed(
                    futures, loop=client.loop, with_results=True, raise_errors=False
                )  # results are fetched in the background as tasks finish
                for fut, result in done:
                    i = position[fut.key]
                    try:
                        results[i] = fut.result() if fut.status != "finished" else result
                    except BaseException as exc:
                        name = getattr(items[i], "name", f"item {i}")
                        exc.add_note(
                            f"mis: job {name!r} (task {fut.key}) failed; finished jobs kept "
                            "their outputs, re-run the study to resume"
                        )
                        raise
                    del pending[fut.key]
                    fut.release()
                    while nxt < len(items) and results[nxt] is not _PENDING:
                        yield results[nxt]
                        results[nxt] = None
                        nxt += 1
            finally:
                if pending:
                    client.cancel(list(pending.values()))
        yield from results[nxt:]  # (only trailing pre-skipped ones can be left)

    def __repr__(self) -> str:
        where = self.scheduler if self.scheduler is not None else f"local x{self.n_workers}"
        if self._client is not None and self.scheduler is None and not self._owned:
            where = "client"
        return f"DaskExecutor({where!r}, resources={self.resources}, retries={self.retries})"


def make_executor(
    kind: str = "serial",
    *,
    scheduler: Any = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    gpu: bool = False,
    retries: int = 2,
    torch_threads: int | None = None,
    allowed_failures: int = 3,
    **dask_kwargs: Any,
):
    """The executor named by ``kind``: the one entry point from a name and options.

    Every option has the default that leaves it unset, so a command line can pass all of
    its execution options through as they were parsed.

    Parameters
    ----------
    kind : {"serial", "process", "dask"}
        ``serial``: this process (:class:`~mis.train.jobs.SerialExecutor`); ``process``:
        a pool of ``n_workers`` spawned processes with ``threads_per_worker`` torch threads
        each (:class:`~mis.train.jobs.ProcessExecutor`); ``dask``: :class:`DaskExecutor`.
    scheduler : str, path-like or Cluster, optional
        Dask only: scheduler address (``tcp://host:8786``) or scheduler file (``.json``);
        default a local cluster.
    n_workers, threads_per_worker : int, optional
        Process pool size (default: the number of CPUs) and torch threads per worker
        (default: CPUs / workers), or local Dask cluster size and threads (default 1).
    gpu : bool, default False
        Dask: each job asks for one unit of the worker resource ``GPU`` (workers started
        with ``--resources GPU=1``, see :class:`DaskExecutor`). Ignored by the serial and
        process executors (the job config chooses the device).
    retries : int, default 2
        Dask: re-runs of a job that raised; ignored by the serial and process executors.
    torch_threads : int, optional
        Dask only: ``torch.set_num_threads`` on the worker before each job (default: one
        thread under a Dask nanny).
    allowed_failures : int, default 3
        Dask: worker deaths a job may survive.
    **dask_kwargs
        Further :class:`DaskExecutor` options (``resources``, ``check_shared``, local-cluster
        options).

    Raises
    ------
    MisValueError
        For an unknown ``kind``, or Dask-only options (``scheduler``, ``torch_threads``,
        ``dask_kwargs``) with another kind.
    ImportError
        For ``kind="dask"`` when dask.distributed is not installed.
    """
    string(kind, "executor", EXECUTORS)
    gpu = boolean(gpu, "gpu")
    if kind != "dask":
        given = dict(dask_kwargs, scheduler=scheduler, torch_threads=torch_threads)
        extra = sorted(k for k, v in given.items() if v is not None)
        if extra:
            raise MisValueError(
                f"option(s) {extra} apply to the dask executor only; got executor {kind!r}"
            )
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        for pname, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None:
                integer(value, pname, 1)
        return ProcessExecutor(n_workers, threads_per_worker=threads_per_worker)
    _import_distributed()
    return DaskExecutor(
        scheduler,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        gpu=gpu,
        retries=retries,
        allowed_failures=allowed_failures,
        torch_threads=torch_threads,
        **dask_kwargs,
    )
