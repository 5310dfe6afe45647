"""The run store: named ``.npy`` arrays (memory-mapped) plus a checksummed ``manifest.json``.

* :class:`RunStore` — a directory of named arrays with atomic writes and sha256 checks
  (format and guarantees: :mod:`mis.store._run_store`); :class:`StoreReport`, what
  :meth:`RunStore.inspect` and :meth:`RunStore.repair` found;
* :func:`atomic_write`, :func:`atomic_write_text` — write any file atomically
  (temporary file, fsync, rename); :func:`read_only_outputs` (skip them under a
  read-only directory); :func:`sha256_file`; :func:`invalid_entries` and
  :func:`drop_invalid_entries` (find, repair what makes a store refuse to open);
* :func:`import_lira_reference` — read the directory layout of the reference LiRA code
  (tensorflow/privacy ``research/mi_lira_2021``) into a store.
"""

from mis.store._lira_reference import import_lira_reference
from mis.store._run_store import (
    MANIFEST,
    SCHEMA_VERSION,
    RunStore,
    StoreReport,
    atomic_write,
    atomic_write_text,
    drop_invalid_entries,
    invalid_entries,
    read_only_outputs,
    sha256_file,
)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "RunStore",
    "StoreReport",
    "atomic_write",
    "atomic_write_text",
    "drop_invalid_entries",
    "import_lira_reference",
    "invalid_entries",
    "read_only_outputs",
    "sha256_file",
]
