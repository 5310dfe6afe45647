"""Global-threshold baselines: one threshold for all examples, no shadow models.

* :func:`loss_threshold` — Yeom, Giacomelli, Fredrikson & Jha (2018), *Privacy
  risk in machine learning: analyzing the connection to overfitting* (CSF),
  §3.2: an example is a member when its loss is below a threshold. Scores are
  ``−loss``, so sweeping the ROC over thresholds is the attack.
* :func:`signal_threshold` — the "global threshold" of the reference LiRA
  code (tensorflow/privacy ``research/mi_lira_2021/plot.py``,
  ``generate_global``): the same rule on LiRA's scaled logit.
"""

from __future__ import annotations

import numpy as np

from mis._kernels import attacks_signals as _k
from mis.attacks._inputs import (
    chunk_progress,
    chunk_spans,
    class_labels,
    examples_per_chunk,
    float_array,
    logits_array,
    nonfinite_error,
)

__all__ = ["loss_threshold", "signal_threshold"]


def loss_threshold(logits, labels, *, chunk_size=None) -> np.ndarray:
    """Loss-threshold membership scores ``−mean_q CE = mean_q log p_y`` (Yeom et al. 2018).

    Parameters
    ----------
    logits : array_like, shape (n_models, n_examples, n_queries, n_classes)
        May be a memory map (read in chunks).
    labels : array_like of int, shape (n_examples,)
    chunk_size : int, optional
        Examples per chunk.

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples)
        Row ``m``: scores of every example against model ``m``; higher = lower
        cross-entropy loss = more likely a member.

    Raises
    ------
    MisValueError
        As :func:`~mis.attacks.lira_signal`.
    """
    arr = logits_array(logits)
    n_models, n_examples, n_queries, n_classes = arr.shape
    y = class_labels(labels, n_examples, n_classes)
    bytes_per_example = n_models * n_queries * n_classes * arr.itemsize
    size = examples_per_chunk(chunk_size, n_examples, bytes_per_example)
    out = np.empty((n_models, n_examples))
    spans = chunk_spans(n_examples, size)
    for a, b in chunk_progress(spans, "loss threshold"):
        block = np.ascontiguousarray(arr[:, a:b])
        if block.dtype not in (np.float32, np.float64):
            block = block.astype(np.float64)
        tmp = np.empty((n_models, b - a, n_queries))
        bad = _k.logit_transform(block, y[a:b], 0, b - a, _k.LOG_PROB, tmp)
        if bad:
            raise nonfinite_error(arr, "logits", bad)
        out[:, a:b] = tmp.mean(axis=2)
    return out


def signal_threshold(signals, *, chunk_size=None) -> np.ndarray:
    """Global threshold on the LiRA signal: ``mean_q s`` per model and example.

    Bit for bit the ranking of the reference code's ``generate_global`` (it
    returns ``−sc.mean(1)`` and ranks by its negative, which is this array).

    Parameters
    ----------
    signals : array_like, shape (n_models, n_examples, n_queries)
    chunk_size : int, optional

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples)
    """
    sig = float_array(signals, "signals", 3, "(n_models, n_examples, n_queries)")
    n_models, n_examples, n_queries = sig.shape
    size = examples_per_chunk(chunk_size, n_examples, n_models * n_queries * 8)
    out = np.empty((n_models, n_examples))
    for a, b in chunk_spans(n_examples, size):
        for m in range(n_models):
            sc = np.asarray(sig[m, a:b], dtype=np.float64)
            if not np.isfinite(sc).all():
                raise nonfinite_error(sig, "signals", int((~np.isfinite(sc)).sum()))
            out[m, a:b] = sc.mean(1)
    return out
