"""The run store: named ``.npy`` arrays plus a ``manifest.json`` (re-exported by :mod:`mis.store`).

A run directory holds one ``.npy`` file per array (opened memory-mapped, so
arrays larger than RAM stream) and ``manifest.json``::

    {"schema": 1, "created": "...", "provenance": {...}, "identity": {...} (optional),
     "arrays": {"logits": {"file": "logits.npy", "shape": [...], "dtype": "float32",
                           "nbytes": 123, "sha256": "...", "created": "...",
                           "meta": {...}}}}

Guarantees
----------
* Writes are atomic: an array is written to a temporary file in the same
  directory, fsync-ed and renamed into place, and only then entered in the
  manifest (itself replaced atomically under a lock). A crash leaves either
  the old state or the new one, never a half-written array that the manifest
  vouches for; if the manifest cannot be updated (disk full, ...) the new file
  is removed again, so no unlisted array is left behind. Files are created with
  the permissions the umask allows (as ``open`` would), not private ones.
* Containment: opening a store checks the manifest's structure and that every
  entry's file is ``<name>.npy`` and resolves (symbolic links included) inside
  the store; otherwise the store refuses to open, naming the entry. Writes and
  deletions check the same before they touch a path, so nothing outside the
  store is ever written or removed.
* Integrity: :meth:`RunStore.has` and :meth:`RunStore.load` (by default)
  check each file's size and sha256 (once per file version per ``RunStore``
  object); :meth:`RunStore.verify` and :meth:`RunStore.inspect` check all of
  them. A failure raises :class:`~mis.exceptions.StoreCorruptError` naming the
  file (``has`` answers False: a damaged array counts as absent, so a resumed
  study recomputes it). :meth:`RunStore.repair` drops damaged entries and
  removes orphan files (``mis verify OUT --repair``).
* No pickle: arrays are written and read with ``allow_pickle=False``; object
  and masked arrays are refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import numbers
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mis import __version__
from mis.exceptions import MisValueError, StoreCorruptError

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "RunStore",
    "StoreReport",
    "atomic_write",
    "atomic_write_text",
    "drop_invalid_entries",
    "invalid_entries",
    "read_only_outputs",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_LOCK = ".manifest.lock"
_SCRATCH = ".scratch"
_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 22
_REPAIR_HINT = "run `mis verify <out> --repair` to drop damaged entries, then re-run to recompute"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _provenance() -> dict[str, Any]:
    return {
        "mis": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
    }


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``), else by a set-and-restore."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # durability of the rename only; the data itself was fsync-ed
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


#: Directories whose files are not rewritten (see :func:`read_only_outputs`).
_READ_ONLY: contextvars.ContextVar[tuple] = contextvars.ContextVar("mis_read_only", default=())


@contextlib.contextmanager
def read_only_outputs(directory):
    """Treat ``directory`` as read-only for the duration: :func:`atomic_write` to a file under
    it is skipped (the path is appended to the list this yields) and
    :meth:`RunStore.save` there raises ``OSError(EROFS)``.

    For re-reporting a finished run from a read-only directory: what would have been
    rewritten (the report, the timing log) is computed but left as it is on disk.
    """
    root = Path(directory).resolve()
    skipped: list[Path] = []
    token = _READ_ONLY.set((*_READ_ONLY.get(), (root, skipped)))
    try:
        yield skipped
    finally:
        _READ_ONLY.reset(token)


def _read_only(path: Path) -> list | None:
    """The skip list of the read-only directory holding ``path``, or None."""
    if not _READ_ONLY.get():
        return None
    real = Path(path).resolve()
    for root, skipped in _READ_ONLY.get():
        if real == root or real.is_relative_to(root):
            return skipped
    return None


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a file atomically: ``write(fileobj)`` on a temp file beside it, fsync, rename.

    Readers see the old file or the new one, never a partial one; on error (disk full,
    interrupt) the temporary file is removed and the exception propagates. The file gets
    the permissions a plain ``open`` would give it (``0o666`` less the umask). Under
    :func:`read_only_outputs` the write is skipped.
    """
    path = Path(path)
    skipped = _read_only(path)
    if skipped is not None:
        skipped.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write`)."""
    data = text.encode()
    atomic_write(path, lambda f: f.write(data))


def _json_safe(meta: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(meta, allow_nan=True, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise MisValueError(
            f"metadata for {name!r} must be JSON-serialisable "
            f"(numbers, strings, lists, dicts); {exc}"
        ) from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.size <= 1024:
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _valid_name(name) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name.split("/")


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclasses.dataclass(frozen=True)
class StoreReport:
    """What :meth:`RunStore.inspect` found.

    Attributes
    ----------
    path : pathlib.Path
        The store.
    n_arrays : int
        Entries listed in the manifest.
    damaged : dict of str to str
        Name → what is wrong (missing, truncated, checksum mismatch, unreadable).
    orphans : tuple of pathlib.Path
        Files the manifest does not list: ``.npy`` arrays, temporary files of interrupted
        writes, leftovers of an interrupted import.
    """

    path: Path
    n_arrays: int
    damaged: dict[str, str]
    orphans: tuple[Path, ...]

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.orphans


class RunStore:
    """A directory of named arrays with a checksummed manifest.

    Parameters
    ----------
    path : str or path-like
        The run directory. Created (with an empty manifest) if it does not exist
        and ``create`` is true.
    create : bool, default True
        Create the directory when it is missing; otherwise raise.
    config : dict, optional
        Recorded once in the manifest (``"config"``) when the store is created.

    Raises
    ------
    StoreCorruptError
        If the manifest is unreadable, malformed, names a file that is not
        ``<name>.npy`` inside the store, or is missing while the directory holds
        ``.npy`` files.
    FileNotFoundError
        If there is no store and ``create`` is false.

    Notes
    -----
    Opening a store does not read the arrays: a missing, truncated or altered file is
    reported by :meth:`has` (False), :meth:`load` (an error naming it), :meth:`check_files`,
    :meth:`verify` and :meth:`inspect`.

    Examples
    --------
    >>> store = RunStore(tmp_path / "run")                      # doctest: +SKIP
    >>> store.save("labels", np.arange(10), source="digits")   # doctest: +SKIP
    >>> store.load("labels")[:3]                               # doctest: +SKIP
    memmap([0, 1, 2])
    """

    def __init__(self, path, *, create: bool = True, config: dict | None = None):
        if not isinstance(path, (str, os.PathLike)) or str(path) == "" or "\x00" in str(path):
            raise MisValueError(f"path must be a non-empty path to a run store; got {path!r}")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise MisValueError(f"run store {self.path} exists and is not a directory")
        manifest = self.path / MANIFEST
        if not os.path.lexists(manifest):
            stray = next(self.path.rglob("*.npy"), None) if self.path.is_dir() else None
            if stray is not None:
                raise StoreCorruptError(
                    f"{manifest} is missing but {self.path} holds .npy files (e.g. "
                    f"{stray.relative_to(self.path)}): it is not a run store or its manifest "
                    "was deleted; move the directory away (or delete it) to start fresh"
                )
            if not create:
                raise FileNotFoundError(f"no run store at {self.path} (no {MANIFEST})")
            self.path.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not os.path.lexists(manifest):
                    init = {
                        "schema": SCHEMA_VERSION,
                        "created": _now(),
                        "provenance": _provenance(),
                        "config": _json_safe(config or {}, "config"),
                        "arrays": {},
                    }
                    self._write_manifest(init)
        self._root = self.path.resolve()
        self._verified: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        manifest_data = self._read_manifest()
        for name, entry in manifest_data["arrays"].items():
            try:
                self._file(name, entry)
            except StoreCorruptError as exc:
                raise StoreCorruptError(
                    f"{exc}; the store refuses to open (`mis verify <out> --repair` drops "
                    "such entries)"
                ) from None

    # -- manifest ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        """Exclusive lock for read-modify-write of the manifest (safe across processes)."""
        self.path.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path / _LOCK, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreCorruptError(
                    f"{self.path / _LOCK} is a symbolic link; refusing to follow it"
                ) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StoreCorruptError(f"{path} is missing") from None
        except UnicodeDecodeError:
            raise StoreCorruptError(f"{path} is not a UTF-8 JSON file") from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreCorruptError(f"{path} is not valid JSON (truncated?): {exc}") from None
        except RecursionError:
            raise StoreCorruptError(f"{path} is nested too deeply to be a manifest") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("arrays"), dict):
            raise StoreCorruptError(f"{path} has no 'arrays' table")
        schema = manifest.get("schema")
        if schema != SCHEMA_VERSION:
            raise StoreCorruptError(
                f"{path} has schema version {schema!r}; this mis reads version {SCHEMA_VERSION}"
            )
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        # no indent: the C encoder is several times faster, and every save rewrites this file
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        atomic_write(self.path / MANIFEST, lambda f: f.write(data))

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (a fresh read from disk)."""
        return self._read_manifest()

    # -- containment ------------------------------------------------------------------------
    def _inside(self, p: Path, what: str) -> Path:
        """``p`` if it resolves (symbolic links followed) inside the store, else raise."""
        real = p.resolve()
        if real != self._root and not real.is_relative_to(self._root):
            raise StoreCorruptError(
                f"{what}: {p} resolves to {real}, outside the store {self._root}; refusing "
                "to touch it"
            )
        return p

    def _make_parent(self, path: Path, what: str) -> None:
        """Create the directory of ``path`` after checking that its deepest existing ancestor
        (symbolic links followed) is inside the store; nothing is created elsewhere."""
        existing = path.parent
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        self._inside(existing, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._inside(path.parent, what)

    def _file(self, name, entry) -> Path:
        """The checked path of a manifest entry (structure, ``<name>.npy``, inside the store)."""
        where = f"{self.path / MANIFEST}, entry {name!r}"
        if not _valid_name(name):
            raise StoreCorruptError(f"{where}: not a valid array name")
        if not isinstance(entry, dict):
            raise StoreCorruptError(f"{where}: not a table")
        file = entry.get("file")
        if file != f"{name}.npy":
            raise StoreCorruptError(
                f"{where}: names the file {file!r}; an entry's file must be {name + '.npy'!r} "
                "inside the store"
            )
        nbytes = entry.get("nbytes")
        if not isinstance(nbytes, numbers.Integral) or isinstance(nbytes, bool) or nbytes < 0:
            raise StoreCorruptError(f"{where}: 'nbytes' must be a non-negative integer")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise StoreCorruptError(f"{where}: 'sha256' must be 64 hex digits")
        if not isinstance(entry.get("meta", {}), dict):
            raise StoreCorruptError(f"{where}: 'meta' must be a table")
        return self._inside(self.path / file, where)

    # -- integrity --------------------------------------------------------------------------
    def _entry(self, name: str, manifest: dict | None = None) -> dict[str, Any]:
        if not isinstance(name, str):
            raise MisValueError(f"name must be a string; got {name!r:.60}")
        arrays = (manifest or self._read_manifest())["arrays"]
        entry = arrays.get(name)
        if entry is None:
            raise KeyError(f"no array named {name!r} in {self.path / MANIFEST}")
        return entry

    def _check_size(self, name: str, entry: dict[str, Any]) -> Path:
        path = self._file(name, entry)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoreCorruptError(
                f"{path} is listed in the manifest but missing; {_REPAIR_HINT}"
            ) from None
        if size != entry["nbytes"]:
            raise StoreCorruptError(
                f"{path} has {size} bytes but the manifest records {entry['nbytes']} "
                f"(truncated?); {_REPAIR_HINT}"
            )
        return path

    def _check_hash(self, name: str, entry: dict[str, Any]) -> Path:
        path = self._check_size(name, entry)
        key = (name, entry["sha256"])
        stamp = _stamp(path.stat())
        if self._verified.get(key) != stamp:
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise StoreCorruptError(f"{path} cannot be read: {exc.strerror or exc}") from None
            if digest != entry["sha256"]:
                raise StoreCorruptError(
                    f"{path} does not match its sha256 in the manifest "
                    f"(file {digest[:12]}…, manifest {entry['sha256'][:12]}…); {_REPAIR_HINT}"
                )
            self._verified[key] = stamp
        return path

    def check_files(self) -> None:
        """Check every listed file exists with its recorded size (cheap; no hashing)."""
        for name, entry in self._read_manifest()["arrays"].items():
            self._check_size(name, entry)

    def verify(self) -> None:
        """Check the sha256 of every listed array; raise ``StoreCorruptError`` naming a bad file."""
        for name, entry in self._read_manifest()["arrays"].items():
            self._check_hash(name, entry)

    def check(self, names: Iterable[str], *, verify: bool = True, manifest=None) -> dict:
        """What is wrong with each of ``names`` (one manifest read): name → message, or None.

        ``verify`` checks the sha256 (else only presence and size); an unlisted name is
        reported as such.
        """
        manifest = manifest or self._read_manifest()
        out = {}
        for name in names:
            try:
                entry = self._entry(name, manifest)
                (self._check_hash if verify else self._check_size)(name, entry)
            except KeyError:
                out[name] = f"{name!r} is not listed in {self.path / MANIFEST}"
            except StoreCorruptError as exc:
                out[name] = str(exc).replace(f"; {_REPAIR_HINT}", "")
            else:
                out[name] = None
        return out

    def orphans(self) -> list[Path]:
        """Files the manifest does not list: ``.npy`` arrays, temporary files of interrupted
        writes (``.*.tmp``) and directories left by an interrupted import (``.import-*``).

        Job scratch space (``.scratch/``, checkpoints of unfinished jobs) is not an orphan.
        """
        listed = {self.path / e["file"] for e in self._read_manifest()["arrays"].values()}
        found = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            here = Path(dirpath)
            if here == self.path:
                dirnames[:] = [d for d in dirnames if d != _SCRATCH]
            for d in list(dirnames):
                if d.startswith(".import-"):
                    found.append(here / d)
                    dirnames.remove(d)
            for f in filenames:
                p = here / f
                stale_tmp = f.startswith(".") and f.endswith(".tmp")
                if (
                    (f.endswith(".npy") and p not in listed)
                    or stale_tmp
                    or f.startswith(".mis-probe-")
                ):
                    found.append(p)
        return sorted(found)

    def inspect(self, *, verify: bool = True) -> StoreReport:
        """Check every listed array (sha256 unless ``verify=False``) and look for orphans."""
        manifest = self._read_manifest()
        problems = self.check(manifest["arrays"], verify=verify, manifest=manifest)
        return StoreReport(
            path=self.path,
            n_arrays=len(manifest["arrays"]),
            damaged={k: v for k, v in problems.items() if v is not None},
            orphans=tuple(self.orphans()),
        )

    def repair(self, *, verify: bool = True) -> StoreReport:
        """Drop the damaged entries (and their files) and remove orphan files.

        A study re-run on the repaired store recomputes whatever was dropped (a job whose
        output is gone is not finished). Returns the report of what was found (and fixed).
        Do not run it while another process writes to the store: its temporary files look
        like orphans.
        """
        report = self.inspect(verify=verify)
        if report.damaged:
            self.drop(report.damaged)
        self.remove_orphans(report.orphans)
        return report

    def remove_orphans(self, paths: Iterable[Path] | None = None) -> list[Path]:
        """Remove the orphan files (default: :meth:`orphans`); return what was removed.

        Only paths inside the store are touched. Not while another process writes here.
        """
        paths = self.orphans() if paths is None else list(paths)
        for p in paths:
            self._inside(p.parent, "orphan")  # a link itself is removed, never its target
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return paths

    # -- public API -------------------------------------------------------------------------
    def save(self, name: str, array, **meta) -> Path:
        """Write ``array`` as ``<name>.npy`` atomically and record it in the manifest.

        Parameters
        ----------
        name : str
            Letters, digits, ``_ . -``; ``/`` makes sub-directories (e.g. ``"logits/model_003"``).
        array : array_like
            Any non-object numpy array (masked arrays are refused: save the data and the
            mask as two arrays).
        **meta
            JSON-serialisable provenance recorded with the array (seed, config, producer…).

        Returns
        -------
        pathlib.Path
            The array file.
        """
        if not _valid_name(name):
            raise MisValueError(
                f"name must be letters, digits, '_', '.', '-' with '/' between parts; got {name!r}"
            )
        if isinstance(array, np.ma.MaskedArray):
            raise MisValueError(
                f"array {name!r} is a masked array; its mask would be lost: save "
                "array.filled(...) (or array.data) and array.mask as two arrays"
            )
        arr = np.asanyarray(array)
        if arr.dtype.hasobject:
            raise MisValueError(f"array {name!r} has dtype {arr.dtype}; object arrays are refused")
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        meta = _json_safe(meta, name)
        rel = f"{name}.npy"
        path = self.path / rel
        if _read_only(path) is not None:
            raise OSError(
                errno.EROFS, f"the run store is read-only; cannot save {name!r}", str(path)
            )
        self._make_parent(path, f"array {name!r}")
        digest = hashlib.sha256()

        def write(f):
            f = _HashingWriter(f, digest)
            np.lib.format.write_array(f, arr, allow_pickle=False)

        atomic_write(path, write)
        entry = {
            "file": rel,
            "shape": list(arr.shape),
            "dtype": arr.dtype.str,
            "nbytes": path.stat().st_size,
            "sha256": digest.hexdigest(),
            "created": _now(),
            "meta": meta,
        }
        try:
            with self._locked():
                manifest = self._read_manifest()
                manifest["arrays"][name] = entry
                self._write_manifest(manifest)
        except BaseException:
            # no unlisted array left behind (an older entry of this name now reads as missing)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._verified[(name, entry["sha256"])] = _stamp(path.stat())
        return path

    def load(self, name: str, mmap: bool = True, verify: bool = True) -> np.ndarray:
        """Open array ``name``.

        Parameters
        ----------
        name : str
            As given to :meth:`save`.
        mmap : bool, default True
            Memory-map read-only (``mmap_mode="r"``) instead of reading into RAM.
        verify : bool, default True
            Check the sha256 first (once per file version per ``RunStore`` object).

        Raises
        ------
        KeyError
            If no such array is listed.
        StoreCorruptError
            If the file is missing, truncated or does not match its checksum.
        """
        entry = self._entry(name)
        path = self._check_hash(name, entry) if verify else self._check_size(name, entry)
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise StoreCorruptError(f"{path} could not be read as .npy: {exc}") from None
        shape, dtype = entry.get("shape"), entry.get("dtype")
        if (shape is not None and list(arr.shape) != list(shape)) or (
            dtype is not None and arr.dtype.str != dtype
        ):
            raise StoreCorruptError(
                f"{path} holds an array of shape {list(arr.shape)} and dtype {arr.dtype.str}; "
                f"the manifest records {shape} and {dtype}"
            )
        return arr

    def has(self, name: str, verify: bool = True) -> bool:
        """True if ``name`` is listed and its file is intact.

        ``verify=True`` (default) checks the size and the sha256 (once per file version per
        ``RunStore`` object); ``verify=False`` only the presence and size. A damaged file
        counts as absent.
        """
        try:
            entry = self._entry(name)
            if verify:
                self._check_hash(name, entry)
            else:
                self._check_size(name, entry)
        except (KeyError, StoreCorruptError):
            return False
        return True

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata recorded with ``name``."""
        return self._entry(name).get("meta", {})

    def names(self) -> list[str]:
        """Sorted names of the listed arrays."""
        return sorted(self._read_manifest()["arrays"])

    @property
    def identity(self) -> dict[str, Any] | None:
        """The identity recorded by :meth:`claim_identity` (None if none was)."""
        return self._read_manifest().get("identity")

    def claim_identity(self, record: dict[str, Any]) -> dict[str, Any]:
        """Record ``record`` (a JSON-able dict with a ``"hash"``) as the identity of what this
        store holds, unless one is recorded already; return the recorded one (the caller
        compares it with its own).
        """
        record = _json_safe(record, "identity")
        with self._locked():
            manifest = self._read_manifest()
            if manifest.get("identity") is None:
                manifest["identity"] = record
                self._write_manifest(manifest)
            return manifest["identity"]

    def drop(self, names: Iterable[str]) -> None:
        """Remove the entries ``names`` from the manifest (one write), then their files.

        Unlisted names are ignored. Files are removed only inside the store.
        """
        names = list(names)
        with self._locked():
            manifest = self._read_manifest()
            gone = {n: manifest["arrays"].pop(n) for n in names if n in manifest["arrays"]}
            if gone:
                self._write_manifest(manifest)
        for name, entry in gone.items():
            self._verified = {k: v for k, v in self._verified.items() if k[0] != name}
            try:
                path = self._file(name, entry)
            except StoreCorruptError:
                continue  # an entry pointing outside the store: never touch its file
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()

    def delete(self, name: str) -> None:
        """Remove ``name`` from the manifest, then its file (never a file outside the store)."""
        entry = self._entry(name)
        path = self._file(name, entry)  # raises before anything changes if it escapes
        with self._locked():
            manifest = self._read_manifest()
            entry = manifest["arrays"].pop(name, None)
            if entry is None:
                raise KeyError(f"no array named {name!r} in {self.path / MANIFEST}")
            self._write_manifest(manifest)
        with contextlib.suppress(FileNotFoundError):
            self._inside(path, f"array {name!r}").unlink()
        self._verified = {k: v for k, v in self._verified.items() if k[0] != name}

    def __contains__(self, name: str) -> bool:
        return self.has(name)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, arrays={len(self.names())})"


def _unopened(path) -> RunStore:
    store = RunStore.__new__(RunStore)
    store.path = Path(path)
    store._root = store.path.resolve()
    store._verified = {}
    return store


def _invalid(store: RunStore, manifest) -> list[tuple[str, str]]:
    bad = []
    for name, entry in manifest["arrays"].items():
        try:
            store._file(name, entry)
        except StoreCorruptError as exc:
            bad.append((name, str(exc)))
    return bad


def invalid_entries(path) -> list[tuple[str, str]]:
    """``(name, why)`` of every entry of the manifest of the store at ``path`` that makes the
    store refuse to open (malformed, a file other than ``<name>.npy``, a path leaving the
    store). Reads only."""
    store = _unopened(path)
    return _invalid(store, store._read_manifest())


def drop_invalid_entries(path) -> list[tuple[str, str]]:
    """Remove the :func:`invalid_entries` from the manifest of the store at ``path``; return
    them. Their files are not touched. For ``mis verify --repair``.
    """
    store = _unopened(path)
    with store._locked():
        manifest = store._read_manifest()
        dropped = _invalid(store, manifest)
        for name, _ in dropped:
            del manifest["arrays"][name]
        if dropped:
            store._write_manifest(manifest)
    return dropped


class _HashingWriter:
    """File wrapper that feeds every written byte to a hash."""

    def __init__(self, f, digest):
        self._f = f
        self._digest = digest

    def write(self, data):
        self._digest.update(data)
        return self._f.write(data)

    def flush(self):
        self._f.flush()
