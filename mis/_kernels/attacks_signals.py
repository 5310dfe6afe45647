"""Per-row logit transforms for the attacks (private; no validation).

Both transforms work in float64 whatever the logits' dtype and subtract the
running maximum before exponentiating (log-sum-exp), so they never overflow.
"""

import math

import numpy as np

from mis._kernels._config import parallel_jit, prange

SIGNAL = 0  # LiRA's scaled logit  l_y - log sum_{c != y} exp(l_c)
LOG_PROB = 1  # log softmax of the true class  l_y - log sum_c exp(l_c)


@parallel_jit
def logit_transform(logits, labels, start, stop, kind, out):
    """Transform logits of examples ``start:stop`` into ``out[:, start:stop, :]``.

    Parameters
    ----------
    logits : float32 or float64, shape (n_models, n_examples, n_queries, n_classes)
    labels : int64, shape (n_examples,)
        True classes, already checked to lie in ``[0, n_classes)``.
    start, stop : int
        Example range (axis 1) to process.
    kind : int
        ``SIGNAL``: ``l_y - logsumexp_{c != y}(l_c) = log p_y - log(1 - p_y)``
        (Carlini et al. 2022, §4.2); ``LOG_PROB``: ``l_y - logsumexp_c(l_c)``.
    out : float64, shape (n_models, n_examples, n_queries)

    Returns
    -------
    int
        Number of non-finite logits met (the caller raises if > 0).
    """
    n_models = logits.shape[0]
    n_queries = logits.shape[2]
    n_classes = logits.shape[3]
    n_rows = stop - start
    bad = 0
    for r in prange(n_models * n_rows):
        m = r // n_rows
        j = start + r - m * n_rows
        y = labels[j]
        for q in range(n_queries):
            mx = -np.inf
            for c in range(n_classes):
                v = np.float64(logits[m, j, q, c])
                if not math.isfinite(v):
                    bad += 1
                if (kind == LOG_PROB or c != y) and v > mx:
                    mx = v
            acc = 0.0
            for c in range(n_classes):
                if kind == LOG_PROB or c != y:
                    acc += math.exp(np.float64(logits[m, j, q, c]) - mx)
            out[m, j, q] = np.float64(logits[m, j, q, y]) - mx - math.log(acc)
    return bad
