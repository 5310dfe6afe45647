"""Input checks and chunking shared by the attacks (private; used by every ``_*.py`` here).

The attacks read arrays that may be memory-mapped and larger than RAM, so they work in
chunks of examples (axis 1) and check values chunk by chunk; an array a kernel can read in
place (C-contiguous, an allowed dtype) is never copied.
"""

from __future__ import annotations

import numpy as np

from mis._progress import progress_bar
from mis._validation import integer, positive_int
from mis.exceptions import MisValueError

#: ``compat`` values of the attacks: ``"carlini2022"`` reproduces the reference LiRA code
COMPAT_MODES = (None, "carlini2022")
#: bytes of input read per chunk of examples
CHUNK_BYTES = 1 << 27


def chunk_progress(spans, desc: str):
    """Progress bar over ``spans`` on stderr, quiet when stderr is not a terminal or for one."""
    quiet = len(spans) <= 1
    return progress_bar(spans, total=len(spans), desc=desc, enabled=False if quiet else None)


def examples_per_chunk(chunk_size, n_examples: int, bytes_per_example: int) -> int:
    """Examples per chunk: ``chunk_size`` as given, or about ``CHUNK_BYTES`` of input if None."""
    if chunk_size is None:
        return max(64, min(n_examples, CHUNK_BYTES // max(1, bytes_per_example)))
    return positive_int(chunk_size, "chunk_size")


def chunk_spans(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``size`` covering ``range(n)``."""
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def float_array(x, name: str, ndim: int, dims: str) -> np.ndarray:
    """An ndarray (memmaps kept as they are) of a real floating or integer dtype and given ndim.

    ``dims`` spells the expected shape for the message, e.g. ``"(n_models, n_examples)"``.
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim != ndim:
        raise MisValueError(f"{name} must have shape {dims}; got an array of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MisValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    if min(arr.shape) == 0:
        raise MisValueError(f"{name} must not be empty; got shape {arr.shape}")
    return arr


def kernel_view(arr: np.ndarray, dtypes=(np.float64,)) -> np.ndarray | None:
    """``arr`` itself if a kernel can read it in place (C-contiguous, allowed dtype), else None."""
    if arr.dtype in dtypes and arr.flags.c_contiguous:
        return arr
    return None


def nonfinite_error(arr: np.ndarray, name: str, count: int) -> MisValueError:
    """Error naming the first non-finite entry of ``arr`` (slow path, only on bad input)."""
    where = None
    for a, b in chunk_spans(arr.shape[1], 4096):
        bad = ~np.isfinite(np.asarray(arr[:, a:b], dtype=np.float64))
        if bad.any():
            idx = [int(v) for v in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)]
            where = (idx[0], idx[1] + a, *idx[2:])
            break
    return MisValueError(
        f"{name} must be finite; found {count} non-finite values (first at index {where})"
    )


def class_labels(labels, n_examples: int, n_classes: int) -> np.ndarray:
    """True classes as int64 ``(n_examples,)`` in ``[0, n_classes)``."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n_examples:
        raise MisValueError(
            f"labels must have shape (n_examples,) = ({n_examples},); got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if (
            np.issubdtype(y.dtype, np.floating)
            and np.all(np.isfinite(y))
            and np.all(y == np.round(y))
        ):
            y = y.astype(np.int64)
        else:
            raise MisValueError(f"labels must be integer class indices; got dtype {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MisValueError(
            f"labels must lie in [0, n_classes) = [0, {n_classes}); got {y[i]} at index {i} "
            f"({int(bad.sum())} out of range)"
        )
    return np.ascontiguousarray(y, dtype=np.int64)


def membership(keep, n_models: int, n_examples: int) -> np.ndarray:
    """Membership matrix ``keep`` as C-contiguous bool ``(n_models, n_examples)``."""
    k = np.asarray(keep)
    if k.shape != (n_models, n_examples):
        raise MisValueError(
            f"keep must have shape (n_models, n_examples) = ({n_models}, {n_examples}) to match "
            f"the scores/signals; got shape {k.shape}"
        )
    if k.dtype != np.bool_:
        if not np.issubdtype(k.dtype, np.number):
            raise MisValueError(f"keep must be boolean or 0/1; got dtype {k.dtype}")
        if not np.isin(k, (0, 1)).all():
            raise MisValueError("keep must be boolean or 0/1; found other values")
        k = k.astype(np.bool_)
    return np.ascontiguousarray(k)


def target_index(target, n_models: int) -> int:
    """Target model index in ``[0, n_models)``; negative values count from the end."""
    t = integer(target, "target")
    if not -n_models <= t < n_models:
        raise MisValueError(f"target must be in [-{n_models}, {n_models}); got {t}")
    return t % n_models


def logits_array(logits) -> np.ndarray:
    """Logits ``(n_models, n_examples, n_queries, n_classes)`` with at least 2 classes."""
    arr = float_array(logits, "logits", 4, "(n_models, n_examples, n_queries, n_classes)")
    if arr.shape[3] < 2:
        raise MisValueError(f"logits must have at least 2 classes; got n_classes = {arr.shape[3]}")
    return arr
