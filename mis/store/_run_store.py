"""The run store: named ``.npy`` arrays plus a ``manifest.json`` (re-exported by :mod:`mis.store`).

A run directory holds one ``.npy`` file per array (opened memory-mapped, so
arrays larger than RAM stream) and ``manifest.json``::

    {"schema": 1, "created": "...", "provenance": {...},
     "arrays": {"logits": {"file": "logits.npy", "shape": [...], "dtype": "float32",
                           "nbytes": 123, "sha256": "...", "created": "...",
                           "meta": {...}}}}

Guarantees
----------
* Writes are atomic: an array is written to a temporary file in the same
  directory, fsync-ed and renamed into place, and only then entered in the
  manifest (itself replaced atomically under a lock). A crash leaves either
  the old state or the new one, never a half-written array that the manifest
  vouches for; a stage whose outputs are listed and verify can be skipped.
* Integrity: opening a store checks that every listed file exists and has its
  recorded size; :meth:`RunStore.load` (by default) and :meth:`RunStore.verify`
  check the sha256. A failure raises :class:`~mis.exceptions.StoreCorruptError`
  naming the file.
* No pickle: arrays are written and read with ``allow_pickle=False``; object
  arrays are refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mis import __version__
from mis.exceptions import MisValueError, StoreCorruptError

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "RunStore",
    "atomic_write",
    "atomic_write_text",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_LOCK = ".manifest.lock"
_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_CHUNK = 1 << 22


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a file atomically: ``write(fileobj)`` on a temp file beside it, fsync, rename.

    Readers see the old file or the new one, never a partial one; on error the
    temporary file is removed and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
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
    except TypeError as exc:
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
        If the manifest is unreadable or a listed file is missing or truncated.

    Examples
    --------
    >>> store = RunStore(tmp_path / "run")                      # doctest: +SKIP
    >>> store.save("labels", np.arange(10), source="digits")   # doctest: +SKIP
    >>> store.load("labels")[:3]                               # doctest: +SKIP
    memmap([0, 1, 2])
    """

    def __init__(self, path, *, create: bool = True, config: dict | None = None):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.exists():
            if self.path.exists() and any(self.path.glob("*.npy")):
                raise StoreCorruptError(
                    f"{manifest} is missing but {self.path} holds .npy files; "
                    "it is not a run store or its manifest was deleted"
                )
            if not create:
                raise FileNotFoundError(f"no run store at {self.path} (no {MANIFEST})")
            self.path.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not manifest.exists():
                    init = {
                        "schema": SCHEMA_VERSION,
                        "created": _now(),
                        "provenance": _provenance(),
                        "config": _json_safe(config or {}, "config"),
                        "arrays": {},
                    }
                    self._write_manifest(init)
        self._verified: dict[str, tuple[int, int]] = {}
        self.check_files()

    # -- manifest ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        """Exclusive lock for read-modify-write of the manifest (safe across processes)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / _LOCK, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StoreCorruptError(f"{path} is missing") from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreCorruptError(f"{path} is not valid JSON (truncated?): {exc}") from None
        if not isinstance(manifest, dict) or "arrays" not in manifest:
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

    # -- integrity --------------------------------------------------------------------------
    def _entry(self, name: str) -> dict[str, Any]:
        entry = self._read_manifest()["arrays"].get(name)
        if entry is None:
            raise KeyError(f"no array named {name!r} in {self.path / MANIFEST}")
        return entry

    def _check_size(self, entry: dict[str, Any]) -> Path:
        path = self.path / entry["file"]
        if not path.exists():
            raise StoreCorruptError(f"{path} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry["nbytes"]:
            raise StoreCorruptError(
                f"{path} has {size} bytes but the manifest records {entry['nbytes']} (truncated?)"
            )
        return path

    def _check_hash(self, name: str, entry: dict[str, Any]) -> Path:
        path = self._check_size(entry)
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._verified.get(name) != stamp:
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise StoreCorruptError(
                    f"{path} does not match its sha256 in the manifest "
                    f"(file {digest[:12]}…, manifest {entry['sha256'][:12]}…)"
                )
            self._verified[name] = stamp
        return path

    def check_files(self) -> None:
        """Check every listed file exists with its recorded size (cheap; no hashing)."""
        for entry in self._read_manifest()["arrays"].values():
            self._check_size(entry)

    def verify(self) -> None:
        """Check the sha256 of every listed array; raise ``StoreCorruptError`` naming a bad file."""
        for name, entry in self._read_manifest()["arrays"].items():
            self._check_hash(name, entry)

    # -- public API -------------------------------------------------------------------------
    def save(self, name: str, array, **meta) -> Path:
        """Write ``array`` as ``<name>.npy`` atomically and record it in the manifest.

        Parameters
        ----------
        name : str
            Letters, digits, ``_ . -``; ``/`` makes sub-directories (e.g. ``"logits/model_003"``).
        array : array_like
            Any non-object numpy array.
        **meta
            JSON-serialisable provenance recorded with the array (seed, config, producer…).

        Returns
        -------
        pathlib.Path
            The array file.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name.split("/"):
            raise MisValueError(
                f"name must be letters, digits, '_', '.', '-' with '/' between parts; got {name!r}"
            )
        arr = np.asanyarray(array)
        if arr.dtype.hasobject:
            raise MisValueError(f"array {name!r} has dtype {arr.dtype}; object arrays are refused")
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        meta = _json_safe(meta, name)
        rel = f"{name}.npy"
        path = self.path / rel
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
        with self._locked():
            manifest = self._read_manifest()
            manifest["arrays"][name] = entry
            self._write_manifest(manifest)
        stat = path.stat()
        self._verified[name] = (stat.st_mtime_ns, stat.st_size)
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
        path = self._check_hash(name, entry) if verify else self._check_size(entry)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StoreCorruptError(f"{path} could not be read as .npy: {exc}") from None

    def has(self, name: str, verify: bool = False) -> bool:
        """True if ``name`` is listed and its file is present with the right size.

        With ``verify=True`` the sha256 is checked too; a corrupt file then counts as absent.
        """
        try:
            entry = self._entry(name)
            if verify:
                self._check_hash(name, entry)
            else:
                self._check_size(entry)
        except (KeyError, StoreCorruptError):
            return False
        return True

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata recorded with ``name``."""
        return self._entry(name)["meta"]

    def names(self) -> list[str]:
        """Sorted names of the listed arrays."""
        return sorted(self._read_manifest()["arrays"])

    def delete(self, name: str) -> None:
        """Remove ``name`` from the manifest, then its file."""
        with self._locked():
            manifest = self._read_manifest()
            entry = manifest["arrays"].pop(name, None)
            if entry is None:
                raise KeyError(f"no array named {name!r} in {self.path / MANIFEST}")
            self._write_manifest(manifest)
        with contextlib.suppress(FileNotFoundError):
            (self.path / entry["file"]).unlink()
        self._verified.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return self.has(name)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, arrays={len(self.names())})"


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
