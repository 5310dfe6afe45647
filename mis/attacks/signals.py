"""Per-example attack signals from stored logits, and the input checks the attacks share.

* :func:`lira_signal` — LiRA's scaled logit (Carlini et al. 2022, §4.2, "logit
  scaling"): ``φ(p_y) = log p_y − log Σ_{c≠y} p_c``.
* :func:`true_class_log_prob` / :func:`true_class_probability` — ``log p_y`` /
  ``p_y``, the inputs of the loss-threshold attack (Yeom et al. 2018) and RMIA
  (Zarifzadeh et al. 2024).

All work in float64 and in chunks of examples, so memory-mapped logits larger
than RAM stream; ``out`` may itself be a memory-mapped array.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

from mis._kernels import attacks_signals as _k
from mis._validation import choice
from mis.exceptions import MisValueError

__all__ = ["lira_signal", "true_class_log_prob", "true_class_probability"]

COMPAT_MODES = (None, "carlini2022")
#: bytes of input read per chunk of examples
CHUNK_BYTES = 1 << 27


# --------------------------------------------------------------------------------------------
# shared input checks (used by lira, rmia, threshold)
# --------------------------------------------------------------------------------------------
def _progress(iterable, total, desc):
    """tqdm progress bar over chunks, silent when stderr is not a terminal or for one chunk."""
    from tqdm.auto import tqdm

    quiet = total <= 1 or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=quiet, leave=False)


def _chunk_size(chunk_size, n_examples: int, bytes_per_example: int) -> int:
    """Examples per chunk: given, or about ``CHUNK_BYTES`` of input."""
    if chunk_size is None:
        return max(64, min(n_examples, CHUNK_BYTES // max(1, bytes_per_example)))
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, numbers.Integral)
        or chunk_size < 1
    ):
        raise MisValueError(f"chunk_size must be a positive integer or None; got {chunk_size!r}")
    return int(chunk_size)


def _chunks(n: int, size: int):
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _float_array(x, name: str, ndim: int, dims: str) -> np.ndarray:
    """An ndarray (memmaps kept as they are) of a real floating or integer dtype and given ndim."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim != ndim:
        raise MisValueError(f"{name} must have shape {dims}; got an array of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise MisValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    if min(arr.shape) == 0:
        raise MisValueError(f"{name} must not be empty; got shape {arr.shape}")
    return arr


def _kernel_view(arr: np.ndarray, dtypes=(np.float64,)) -> np.ndarray | None:
    """``arr`` itself if a kernel can read it in place (C-contiguous, allowed dtype), else None."""
    if arr.dtype in dtypes and arr.flags.c_contiguous:
        return arr
    return None


def _nonfinite_error(arr: np.ndarray, name: str, count: int) -> MisValueError:
    """Error naming the first non-finite entry (slow path, only on bad input)."""
    where = None
    for a, b in _chunks(arr.shape[1], 4096):
        bad = ~np.isfinite(np.asarray(arr[:, a:b], dtype=np.float64))
        if bad.any():
            idx = [int(v) for v in np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)]
            where = (idx[0], idx[1] + a, *idx[2:])
            break
    return MisValueError(
        f"{name} must be finite; found {count} non-finite values (first at index {where})"
    )


def _labels(labels, n_examples: int, n_classes: int) -> np.ndarray:
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


def _keep(keep, n_models: int, n_examples: int) -> np.ndarray:
    """Membership matrix as C-contiguous bool ``(n_models, n_examples)``."""
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


def _target(target, n_models: int) -> int:
    """Target model index; negative values count from the end (``-1``: the last model)."""
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise MisValueError(f"target must be an integer model index; got {target!r}")
    t = int(target)
    if not -n_models <= t < n_models:
        raise MisValueError(f"target must be in [-{n_models}, {n_models}); got {t}")
    return t % n_models


# --------------------------------------------------------------------------------------------
# logit transforms
# --------------------------------------------------------------------------------------------
def _logits(logits) -> np.ndarray:
    arr = _float_array(logits, "logits", 4, "(n_models, n_examples, n_queries, n_classes)")
    if arr.shape[3] < 2:
        raise MisValueError(f"logits must have at least 2 classes; got n_classes = {arr.shape[3]}")
    return arr


def _out(out, shape) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float64)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float64:
        raise MisValueError(
            f"out must be a float64 array of shape {shape}; got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise MisValueError("out must be C-contiguous and writeable")
    return out


def _transform(logits, labels, kind, out, chunk_size) -> np.ndarray:
    arr = _logits(logits)
    n_models, n_examples, n_queries, n_classes = arr.shape
    y = _labels(labels, n_examples, n_classes)
    res = _out(out, (n_models, n_examples, n_queries))
    direct = _kernel_view(arr, (np.float32, np.float64))
    size = _chunk_size(chunk_size, n_examples, n_models * n_queries * n_classes * arr.itemsize)
    spans = _chunks(n_examples, size)
    bad = 0
    for a, b in _progress(spans, len(spans), "signals"):
        if direct is not None:
            bad += _k.logit_transform(direct, y, a, b, kind, res)
        else:
            block = np.ascontiguousarray(arr[:, a:b], dtype=np.float64)
            view = res[:, a:b]
            tmp = np.empty(view.shape)
            bad += _k.logit_transform(block, y[a:b], 0, b - a, kind, tmp)
            view[...] = tmp
        if bad:
            raise _nonfinite_error(arr, "logits", bad)
    return res


def _signal_carlini2022(arr, y, out, size) -> np.ndarray:
    """The reference ``score.py`` transform, operation for operation (see lira_signal)."""
    for m in range(arr.shape[0]):
        for a, b in _chunks(arr.shape[1], size):
            logits = np.asarray(arr[m, a:b], dtype=np.float32)  # (n, Q, C) float32, as saved
            if not np.isfinite(logits).all():
                raise _nonfinite_error(arr, "logits", int((~np.isfinite(logits)).sum()))
            shifted = logits - np.max(logits, axis=2, keepdims=True)  # float32
            p = np.array(np.exp(shifted), dtype=np.float64)  # exp in float32, then cast
            p = p / np.sum(p, axis=2, keepdims=True)
            rows = np.arange(b - a)
            labels = y[a:b]
            p_true = p[rows, :, labels]  # (n, Q)
            p[rows, :, labels] = 0
            p_wrong = np.sum(p, axis=2)
            # the reference averages over a singleton model axis here: the identity
            out[m, a:b] = np.log(p_true + 1e-45) - np.log(p_wrong + 1e-45)
    return out


def lira_signal(logits, labels, *, compat=None, out=None, chunk_size=None) -> np.ndarray:
    """LiRA's per-query signal, the scaled logit of the true class.

    ``s = log p_y − log Σ_{c≠y} p_c`` with ``p = softmax(ℓ)`` (Carlini et al.
    2022, §4.2), computed as ``ℓ_y − logsumexp_{c≠y} ℓ_c`` in float64, which is
    exact to rounding for any logits (no ``log(0)``, no overflow).

    Parameters
    ----------
    logits : array_like, shape (n_models, n_examples, n_queries, n_classes)
        Raw logits (float32 as stored, or float64); may be a memory map.
    labels : array_like of int, shape (n_examples,)
        True classes in ``[0, n_classes)``.
    compat : {None, "carlini2022"}
        ``"carlini2022"`` reproduces tensorflow/privacy
        ``research/mi_lira_2021/score.py`` bit for bit: logits cast to float32
        (the dtype that code saves; a no-op for stored logits), max subtracted
        and ``exp`` taken in float32, then cast to float64, normalised, and
        ``log(p_y + 1e-45) − log(Σ_{c≠y} p_c + 1e-45)``. Saturated
        probabilities then give the capped value ``±103.28…`` instead of the
        exact log-odds.
    out : ndarray, optional
        float64 C-contiguous array of shape (n_models, n_examples, n_queries) to
        write into (e.g. a ``numpy.lib.format.open_memmap``).
    chunk_size : int, optional
        Examples per chunk (default: about 128 MiB of logits).

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples, n_queries)

    Raises
    ------
    MisValueError
        Non-finite logits, labels out of range, fewer than 2 classes, or
        shapes that do not match.
    """
    choice(compat, "compat", COMPAT_MODES)
    if compat is None:
        return _transform(logits, labels, _k.SIGNAL, out, chunk_size)
    arr = _logits(logits)
    n_models, n_examples, n_queries, n_classes = arr.shape
    y = _labels(labels, n_examples, n_classes)
    res = _out(out, (n_models, n_examples, n_queries))
    size = _chunk_size(chunk_size, n_examples, n_queries * n_classes * 8)
    return _signal_carlini2022(arr, y, res, size)


def true_class_log_prob(logits, labels, *, out=None, chunk_size=None) -> np.ndarray:
    """``log p_y = ℓ_y − logsumexp_c ℓ_c`` per model, example and query (float64).

    Parameters and errors as :func:`lira_signal`; the cross-entropy loss is the negative.

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples, n_queries)
    """
    return _transform(logits, labels, _k.LOG_PROB, out, chunk_size)


def true_class_probability(logits, labels, *, chunk_size=None) -> np.ndarray:
    """``p_y = softmax(ℓ)_y`` per model, example and query (float64).

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples, n_queries)
    """
    out = true_class_log_prob(logits, labels, chunk_size=chunk_size)
    np.exp(out, out=out)
    return out
