"""Per-example attack signals from stored logits.

* :func:`lira_signal` — LiRA's scaled logit (Carlini et al. 2022, §4.2, "logit
  scaling"): ``φ(p_y) = log p_y − log Σ_{c≠y} p_c``.
* :func:`true_class_log_prob` / :func:`true_class_probability` — ``log p_y`` /
  ``p_y``, the inputs of the loss-threshold attack (Yeom et al. 2018) and RMIA
  (Zarifzadeh et al. 2024).

All work in float64 and in chunks of examples, so memory-mapped logits larger
than RAM stream; ``out`` may itself be a memory-mapped array.
"""

from __future__ import annotations

import numpy as np

from mis._kernels import attacks_signals as _k
from mis._validation import choice
from mis.attacks._inputs import (
    COMPAT_MODES,
    chunk_progress,
    chunk_spans,
    class_labels,
    examples_per_chunk,
    kernel_view,
    logits_array,
    nonfinite_error,
)
from mis.exceptions import MisValueError

__all__ = ["lira_signal", "true_class_log_prob", "true_class_probability"]


# --------------------------------------------------------------------------------------------
# logit transforms
# --------------------------------------------------------------------------------------------
def _out(out, shape) -> np.ndarray:
    """``out`` checked (float64, C-contiguous, writeable, of ``shape``), or a new array."""
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
    """The kernel transform ``kind`` of every logit row, chunk by chunk, into ``out``."""
    arr = logits_array(logits)
    n_models, n_examples, n_queries, n_classes = arr.shape
    y = class_labels(labels, n_examples, n_classes)
    res = _out(out, (n_models, n_examples, n_queries))
    direct = kernel_view(arr, (np.float32, np.float64))
    bytes_per_example = n_models * n_queries * n_classes * arr.itemsize
    size = examples_per_chunk(chunk_size, n_examples, bytes_per_example)
    spans = chunk_spans(n_examples, size)
    bad = 0
    for a, b in chunk_progress(spans, "signals"):
        if direct is not None:
            bad += _k.logit_transform(direct, y, a, b, kind, res)
        else:
            block = np.ascontiguousarray(arr[:, a:b], dtype=np.float64)
            view = res[:, a:b]
            tmp = np.empty(view.shape)
            bad += _k.logit_transform(block, y[a:b], 0, b - a, kind, tmp)
            view[...] = tmp
        if bad:
            raise nonfinite_error(arr, "logits", bad)
    return res


def _signal_carlini2022(arr, y, out, size) -> np.ndarray:
    """The reference ``score.py`` transform, operation for operation (see lira_signal)."""
    for m in range(arr.shape[0]):
        for a, b in chunk_spans(arr.shape[1], size):
            logits = np.asarray(arr[m, a:b], dtype=np.float32)  # (n, Q, C) float32, as saved
            if not np.isfinite(logits).all():
                raise nonfinite_error(arr, "logits", int((~np.isfinite(logits)).sum()))
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
    arr = logits_array(logits)
    n_models, n_examples, n_queries, n_classes = arr.shape
    y = class_labels(labels, n_examples, n_classes)
    res = _out(out, (n_models, n_examples, n_queries))
    size = examples_per_chunk(chunk_size, n_examples, n_queries * n_classes * 8)
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
