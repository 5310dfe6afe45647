"""Private kernels of the fused trainer (:mod:`mis.train.fused`): minibatch Adam for many
linear classifiers at once, one epoch per call.

Model k is ``z = W_k φ + b_k`` on fixed features φ (its own ``n`` training rows), with
``C = 1`` output and the binary cross-entropy with logits, or ``C ≥ 2`` outputs and the
softmax cross-entropy. One epoch visits the rows in the order of a Fisher–Yates shuffle
driven by stream ``epoch`` of the model's seed (:mod:`mis._kernels.random`), in batches of
``batch_size`` (the last one smaller when ``batch_size`` does not divide ``n``); the loss of a
step is the mean over its batch; the update is ``torch.optim.Adam``'s (single-tensor form:
``m ← m + (1 − β₁)(g − m)``, ``v ← β₂ v + ((1 − β₂) g) g``, ``p ← p − (lr / (1 − β₁ᵗ)) m /
(√v / √(1 − β₂ᵗ) + ε)``, L2 ``weight_decay`` added to the gradient).

Serial on purpose (float64 throughout, fixed summation order, no fastmath): the trainer runs
in worker processes, one chunk of models each, and the same seed gives the same weights bit
for bit on a given machine.
"""

from __future__ import annotations

import numpy as np

from mis._kernels._config import jit
from mis._kernels.random import next_below, stream_state


@jit
def epoch_permutation(seed, epoch, out):
    """The visiting order of one epoch: ``out`` (n,) int64 ← a uniform permutation of 0..n-1.

    Fisher–Yates from the last position down, draw ``j`` uniform in [0, i] from stream
    ``epoch`` of ``seed`` (both uint64-convertible).
    """
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    state = stream_state(np.uint64(seed), np.uint64(epoch))
    for i in range(n - 1, 0, -1):
        state, j = next_below(state, i + 1)
        t = out[j]
        out[j] = out[i]
        out[i] = t


@jit
def _dot(x, w):
    """Σ x_f w_f in float64 with eight interleaved accumulators (fixed order)."""
    n = x.shape[0]
    m = n // 8
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    a6 = 0.0
    a7 = 0.0
    for j in range(m):
        f = 8 * j
        a0 += x[f] * w[f]
        a1 += x[f + 1] * w[f + 1]
        a2 += x[f + 2] * w[f + 2]
        a3 += x[f + 3] * w[f + 3]
        a4 += x[f + 4] * w[f + 4]
        a5 += x[f + 5] * w[f + 5]
        a6 += x[f + 6] * w[f + 6]
        a7 += x[f + 7] * w[f + 7]
    for f in range(8 * m, n):
        a0 += x[f] * w[f]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@jit
def _adam(p, g, m, v, step_size, bc2_sqrt, beta1, beta2, eps, weight_decay):
    """One Adam update of the 1-D arrays ``p`` (in place), with moments ``m``, ``v``."""
    c1 = 1.0 - beta1
    c2 = 1.0 - beta2
    for f in range(p.shape[0]):
        gf = g[f]
        if weight_decay != 0.0:
            gf = gf + weight_decay * p[f]
        mf = m[f] + c1 * (gf - m[f])
        vf = v[f] * beta2 + (c2 * gf) * gf
        m[f] = mf
        v[f] = vf
        p[f] = p[f] + (-step_size * mf) / (np.sqrt(vf) / bc2_sqrt + eps)


@jit
def linear_adam_epoch(
    phi, y, w, b, m_w, v_w, m_b, v_b, seeds, epoch, step, batch_size, lr, beta1, beta2, eps,
    weight_decay,
):  # fmt: skip
    """One epoch of minibatch Adam for every model; returns the step count after it.

    Parameters
    ----------
    phi : float64 (K, n, F) — features of each model's training rows.
    y : int64 (K, n) — labels (0/1 when C = 1, else class indices in [0, C)).
    w, m_w, v_w : float64 (K, C, F) — weights and their Adam moments (updated in place).
    b, m_b, v_b : float64 (K, C) — biases and their moments (updated in place).
    seeds : uint64 (K,) — batch-order seed of each model; ``epoch`` (int) picks the stream.
    step : int — Adam steps taken before this epoch (the same for every model).
    batch_size : int in [1, n]; lr, beta1, beta2, eps, weight_decay : float.
    """
    k_models = phi.shape[0]
    n = phi.shape[1]
    c_out = w.shape[1]
    perm = np.empty(n, dtype=np.int64)
    gw = np.empty((c_out, w.shape[2]))
    gb = np.empty(c_out)
    z = np.empty(c_out)
    t = step
    for k in range(k_models):
        epoch_permutation(seeds[k], epoch, perm)
        t = step
        for s0 in range(0, n, batch_size):
            s1 = min(s0 + batch_size, n)
            nb = s1 - s0
            gw[:] = 0.0
            gb[:] = 0.0
            for s in range(s0, s1):
                i = perm[s]
                x = phi[k, i]
                for c in range(c_out):
                    z[c] = _dot(x, w[k, c]) + b[k, c]
                if c_out == 1:
                    d = (1.0 / (1.0 + np.exp(-z[0])) - y[k, i]) / nb
                    gb[0] += d
                    g0 = gw[0]
                    for f in range(x.shape[0]):
                        g0[f] += d * x[f]
                else:
                    zmax = z[0]
                    for c in range(1, c_out):
                        zmax = max(zmax, z[c])
                    tot = 0.0
                    for c in range(c_out):
                        z[c] = np.exp(z[c] - zmax)
                        tot += z[c]
                    for c in range(c_out):
                        d = (z[c] / tot - (1.0 if c == y[k, i] else 0.0)) / nb
                        gb[c] += d
                        gc = gw[c]
                        for f in range(x.shape[0]):
                            gc[f] += d * x[f]
            t += 1
            tf = np.float64(t)  # torch keeps the step as a float: pow(β, t), not a product
            step_size = lr / (1.0 - beta1**tf)
            bc2_sqrt = np.sqrt(1.0 - beta2**tf)
            for c in range(c_out):
                _adam(w[k, c], gw[c], m_w[k, c], v_w[k, c], step_size, bc2_sqrt, beta1, beta2,
                      eps, weight_decay)  # fmt: skip
            _adam(b[k], gb, m_b[k], v_b[k], step_size, bc2_sqrt, beta1, beta2, eps, weight_decay)
    return t
