"""The run store: named ``.npy`` arrays (memory-mapped) plus a checksummed ``manifest.json``.

* :class:`RunStore` — a directory of named arrays with atomic writes and sha256 checks
  (format and guarantees: :mod:`mis.store._run_store`);
* :func:`atomic_write`, :func:`atomic_write_text` — write any file atomically
  (temporary file, fsync, rename); :func:`sha256_file`;
* :func:`import_lira_reference` — read the directory layout of the reference LiRA code
  (tensorflow/privacy ``research/mi_lira_2021``) into a store.
"""

from mis.store._lira_reference import import_lira_reference
from mis.store._run_store import (
    MANIFEST,
    SCHEMA_VERSION,
    RunStore,
    atomic_write,
    atomic_write_text,
    sha256_file,
)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "RunStore",
    "atomic_write",
    "atomic_write_text",
    "import_lira_reference",
    "sha256_file",
]
