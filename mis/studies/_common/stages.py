"""The output directory of a study and its resumable stages: seeds, the configuration written
beside the results, jobs run through an executor, the timing log, versions."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
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
from mis._validation import output_dir
from mis._validation import path as path_arg
from mis.exceptions import (
    ConfigMismatchError,
    MisValueError,
    OutputLockedError,
    StoreCorruptError,
)
from mis.store import (
    MANIFEST,
    RunStore,
    atomic_write_text,
    drop_invalid_entries,
    invalid_entries,
    read_only_outputs,
)
from mis.train.executors import make_executor
from mis.train.jobs import DONE, JobSpec, pending_jobs, run_job

__all__ = [
    "LOCK",
    "STORE",
    "OutputReport",
    "TimingLog",
    "check_out_config",
    "config_identity",
    "derive_seed",
    "job_spec",
    "local_executor",
    "locked_output",
    "read_only",
    "run_stage",
    "torch_threads",
    "verify_output",
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


# ------------------------------------------------------------------------------------------
# the output directory: one run at a time, results tied to the configuration that made them
# ------------------------------------------------------------------------------------------
#: The run store of a study, inside its output directory.
STORE = "store"
#: The lock file of an output directory (holds the PID of the run that has it).
LOCK = ".mis.lock"

_HELD: dict[str, list] = {}  # resolved output dir -> [fd, count]: locks this process holds
_SESSION: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "mis_output_session", default=None
)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    where = f" on {info['host']}" if info.get("host") else ""
    since = f", since {info['started']}" if info.get("started") else ""
    return f"pid {info['pid']}{where}{since}"


def _read_only_error(exc: OSError) -> bool:
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


@contextlib.contextmanager
def _output_lock(out: Path):
    """Hold the lock of ``out`` (re-entrant within this process); yield True, or False when
    ``out`` is read-only (nothing can be written there, so there is nothing to guard).

    Raises :class:`~mis.exceptions.OutputLockedError` naming the holder when another process
    has it.
    """
    key = str(out.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield True
        finally:
            _HELD[key][1] -= 1
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(out / LOCK, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MisValueError(f"{out / LOCK} is a symbolic link; refusing to follow it") from None
        if not _read_only_error(exc):
            raise
        yield False  # a read-only directory: no run can write there
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _holder(fd)
        os.close(fd)
        raise OutputLockedError(
            f"{out} is in use by another mis run ({who}); wait for it to finish or stop it, "
            "or use another output directory"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }
        with contextlib.suppress(OSError):  # the lock holds even if its note cannot be written
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _HELD[key] = [fd, 1]
        yield True
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


def locked_output(fn):
    """Decorator of a study's ``run_<study>(config, out, ...)``: the output directory that
    :func:`check_out_config` opens stays locked (one run at a time) until the call returns,
    and a finished study in a read-only directory is re-reported without writing there.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _SESSION.set(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _SESSION.reset(token)

    return wrapper


def read_only() -> bool:
    """Whether the output directory of the running study is read-only (set by
    :func:`check_out_config` inside a :func:`locked_output` call)."""
    stack = _SESSION.get()
    return bool(stack is not None and getattr(stack, "mis_read_only", False))


def _diff(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key} (new: {_short(new[k])})")
            elif k not in new:
                out.append(f"{key} (was {_short(old[k])}, now absent)")
            else:
                out.extend(_diff(old[k], new[k], key))
        return out
    if old != new:
        return [f"{prefix or 'the configuration'} ({_short(old)} -> {_short(new)})"]
    return []


def _short(v) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def config_identity(config: dict, what: str = "study") -> dict:
    """The identity record of a configuration: ``{"hash", "what", "mis", "config"}``, the
    hash a sha256 of the canonical JSON of the configuration and the package version."""
    body = json.dumps({"config": config, "mis": __version__}, sort_keys=True, separators=(",", ":"))
    return {
        "hash": hashlib.sha256(body.encode()).hexdigest(),
        "what": what,
        "mis": __version__,
        "config": config,
    }


def _mismatch(out: Path, what: str, old_config, old_version, new: dict, where: str) -> str:
    diff = _diff(old_config, new)
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        because = f"a different configuration ({where}; differs in {shown})"
    else:
        because = (
            f"mis {old_version} (this is mis {__version__}; results of two versions are not mixed)"
        )
    return (
        f"{out} holds a {what} made with {because}. Use another output directory, or delete "
        f"{out} to start fresh; the same configuration resumes"
    )


def check_out_config(out, config: dict, what: str = "study", ignore=()) -> str:
    """Open the output directory of a study: lock it, tie it to ``config`` and write
    ``<out>/config.json``, or check that the configuration there is the same.

    ``config`` is the study's plain dict (sections of keys); ``ignore`` lists ``"section.key"``
    entries that do not change results (e.g. the number of workers). The run store
    ``<out>/store`` records the identity of the configuration (a sha256 of its content and
    the package version, :func:`config_identity`) when it is created; jobs record it with
    their outputs. A different configuration, or results of another mis version, raise
    :class:`~mis.exceptions.ConfigMismatchError` naming the keys that differ and how to start
    fresh, whether ``config.json`` is there or was deleted. Orphan files of an interrupted
    run are removed from the store (one log line). Returns the absolute path of
    ``config.json`` (jobs read their configuration from it).

    Called inside a :func:`locked_output` function, the directory stays locked until that
    function returns (another process is refused with
    :class:`~mis.exceptions.OutputLockedError` naming its PID); outside one, the lock is only
    tested. When ``out`` is read-only, nothing is written there and the study may only be
    re-reported (:func:`read_only`).
    """
    out = output_dir(out, "out")
    path = out / "config.json"
    new = json.loads(json.dumps(config))  # tuples -> lists, as read back
    for item in ignore:
        section, key = item.split(".")
        new.get(section, {}).pop(key, None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MisValueError(f"out must be a directory; {out} is not one") from None
    except OSError as exc:
        if not (_read_only_error(exc) and out.is_dir()):
            raise
    stack = _SESSION.get()
    if stack is not None:
        writable = stack.enter_context(_output_lock(out))
    else:
        with _output_lock(out) as writable:
            pass
    if not writable and stack is not None and not getattr(stack, "mis_read_only", False):
        stack.mis_read_only = True
        skipped = stack.enter_context(read_only_outputs(out))
        stack.callback(_report_skipped, out, skipped)
    record = config_identity(new, what)

    old = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreCorruptError(
                f"{path} is not valid JSON ({exc}); it records the configuration of the "
                f"results in {out}: `mis verify {out} --repair` rewrites it from the run store; "
                f"or delete {out} to start fresh"
            ) from None
        if old != new:
            raise ConfigMismatchError(_mismatch(out, what, old, __version__, new, "config.json"))

    if writable and stack is not None:  # under the lock: temporary files of a killed run
        for tmp in [*out.glob(".*.tmp"), *out.glob("*/.*.tmp")]:
            if tmp.parent.name != STORE and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
    store_dir = out / STORE
    if writable:
        store = RunStore(store_dir)
    elif (store_dir / MANIFEST).exists():
        store = RunStore(store_dir, create=False)
    else:
        store = None
    if store is not None:
        ident = store.identity
        if ident is None:
            if old is None and store.names():
                raise ConfigMismatchError(
                    f"{store_dir} holds results of an unknown configuration ({path} is missing "
                    f"and the store records none). Use another output directory, or delete "
                    f"{out} to start fresh"
                )
            if writable:
                ident = store.claim_identity(record)
        if ident is not None and ident.get("hash") != record["hash"]:
            raise ConfigMismatchError(
                _mismatch(out, what, ident.get("config"), ident.get("mis"), new, "the run store")
            )
        if writable and stack is not None:  # under the lock: no other run writes there
            removed = store.remove_orphans()
            if removed:
                log.info(
                    "removed %d orphan file(s) of an interrupted run from %s",
                    len(removed),
                    store_dir,
                )
    if old is None:
        atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True) + "\n")
    return str(path.resolve())


def _report_skipped(out: Path, skipped: list) -> None:
    if skipped:
        names = sorted({p.name for p in skipped})
        log.warning(
            "%s is read-only: the results were recomputed from its store but %d file(s) were "
            "not rewritten (%s)",
            out,
            len(skipped),
            ", ".join(names[:4]) + (", ..." if len(names) > 4 else ""),
        )


@dataclasses.dataclass(frozen=True)
class OutputReport:
    """What :func:`verify_output` found (and, with ``repair``, fixed).

    Attributes
    ----------
    path : pathlib.Path
        The output directory (or run store) checked.
    lines : tuple of str
        One line per problem.
    ok : bool
        Nothing was wrong.
    summary : str
        One line: what was checked and found.
    """

    path: Path
    lines: tuple[str, ...]
    ok: bool
    summary: str


def verify_output(out, *, repair: bool = False, verify: bool = True) -> OutputReport:
    """Check a study's output directory (or a bare run store): ``config.json``, the run
    store's manifest, every array (sha256, or sizes only with ``verify=False``), every
    finished job's outputs, orphan files.

    With ``repair``: entries the store refuses to open and damaged arrays are dropped, the
    ``done`` markers of jobs that lost an output too, orphans are removed, and an unreadable
    ``config.json`` is rewritten from the configuration the store records. Re-running the
    study then recomputes exactly what was dropped. The directory is locked meanwhile
    (:class:`~mis.exceptions.OutputLockedError` if a run is using it).
    """
    out = path_arg(out, "out", must_exist=True, kind="dir")
    if (out / MANIFEST).exists():
        store_dir, study = out, False
    elif (out / STORE / MANIFEST).exists():
        store_dir, study = out / STORE, True
    else:
        raise MisValueError(
            f"{out} is neither a study's output directory (no {STORE}/{MANIFEST}) nor a run store"
        )
    lines: list[str] = []
    with _output_lock(out if study else store_dir) as writable:
        if repair and not writable:
            raise OSError(errno.EROFS, "cannot repair a read-only directory", str(out))
        cfg_bad = False
        cfg_path = out / "config.json"
        if study and cfg_path.exists():
            try:
                json.loads(cfg_path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                cfg_bad = True
                lines.append(f"config: {cfg_path} is not valid JSON ({exc})")
        invalid = invalid_entries(store_dir)
        if invalid and not repair:
            lines.extend(f"invalid entry: {why}" for _, why in invalid)
            summary = (
                f"{out}: the run store refuses to open ({len(invalid)} invalid manifest "
                f"entr{'y' if len(invalid) == 1 else 'ies'}); run `mis verify {out} --repair`"
            )
            return OutputReport(path=out, lines=tuple(lines), ok=False, summary=summary)
        for _name, why in drop_invalid_entries(store_dir) if invalid else ():
            lines.append(f"invalid entry (dropped): {why}")
        store = RunStore(store_dir, create=False)
        report = store.inspect(verify=verify)
        for msg in report.damaged.values():
            lines.append(f"damaged: {msg}")
        manifest = store.manifest
        arrays = manifest["arrays"]
        markers = []
        for name in sorted(arrays):
            if not name.endswith(f"/{DONE}"):
                continue
            job = name[: -len(DONE) - 1]
            outputs = (arrays[name].get("meta") or {}).get("outputs")
            keys = (
                [f"{job}/{k}" for k in outputs]
                if isinstance(outputs, list)
                else [n for n in arrays if n.startswith(f"{job}/") and n != name]
            )
            lost = [k for k in keys if k not in arrays or k in report.damaged]
            if lost or name in report.damaged:
                markers.append(name)
                lines.append(f"unfinished job: {job} ({len(lost)} output(s) damaged or missing)")
        for p in report.orphans:
            lines.append(f"orphan: {p}")
        bad_json = []  # results, timing log and analysis caches: regenerated by a re-run
        for p in sorted(out.rglob("*.json")) if study else ():
            if p == cfg_path or store_dir in p.parents:
                continue
            try:
                json.loads(p.read_text())
            except (ValueError, UnicodeDecodeError, OSError) as exc:
                bad_json.append(p)
                lines.append(f"unreadable: {p} ({exc}); a re-run writes it again")
        if repair:
            for p in bad_json:
                p.unlink(missing_ok=True)
            store.drop([*report.damaged, *markers])
            store.remove_orphans(report.orphans)
            ident = store.identity
            if cfg_bad and isinstance(ident, dict) and isinstance(ident.get("config"), dict):
                atomic_write_text(
                    cfg_path, json.dumps(ident["config"], indent=2, sort_keys=True) + "\n"
                )
                lines.append(f"config: rewrote {cfg_path} from the configuration the store records")
    how = "sha256" if verify else "sizes only"
    found = (
        f"{report.n_arrays} array(s) checked ({how}): {len(report.damaged)} damaged, "
        f"{len(markers)} job(s) to recompute, {len(report.orphans)} orphan file(s)"
    )
    ok = not lines
    if ok:
        summary = f"{out}: {found}; all intact"
    elif repair:
        summary = f"{out}: {found}; repaired: re-run the study to recompute what was dropped"
    else:
        summary = f"{out}: {found}; run `mis verify {out} --repair`, then re-run the study"
    return OutputReport(path=out, lines=tuple(lines), ok=ok, summary=summary)


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

    No worker is started for a finished job (its ``done`` marker exists, was made under the
    same configuration, and its outputs verify: :func:`~mis.train.jobs.pending_jobs`; a job
    whose outputs fail verification is re-run, with one warning line). ``desc`` labels the
    progress bar and the log line ``[desc] done in … s`` (logger ``mis.studies``, level
    INFO). Returns (jobs run, jobs skipped, seconds).

    Raises
    ------
    OSError
        (``EROFS``) when the output directory is read-only and jobs are unfinished.
    """
    t0 = time.perf_counter()
    specs = list(specs)
    todo = pending_jobs(specs)
    ran, skipped = 0, len(specs) - len(todo)
    if todo and read_only():
        raise OSError(
            errno.EROFS,
            f"the output directory is read-only and {len(todo)} job(s) of stage {desc!r} are "
            "unfinished (a finished study can be re-reported from a read-only directory; "
            "copy this one somewhere writable to resume it)",
            str(todo[0].store),
        )
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
        """The recorded entries (an unreadable log is started afresh, with a warning: it is
        informational, no result depends on it)."""
        if not self.path.exists():
            return []
        try:
            history = json.loads(self.path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("%s is not valid JSON (%s); starting a new timing log", self.path, exc)
            return []
        ok = isinstance(history, list) and all(isinstance(h, dict) for h in history)
        if not ok:
            log.warning("%s is not a list of entries; starting a new timing log", self.path)
            return []
        return history
