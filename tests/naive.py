"""Slow, obviously-correct reference implementations.

Every numba kernel of mis is tested against a function here on random
inputs. Nothing here is optimised: clarity is the point. One section per
area of the package.
"""

from __future__ import annotations

import numpy as np

# ============================================================================================
# metrics: ROC, AUC, TPR@FPR, log-AUC, bootstrap
# ============================================================================================


def auc_pairwise(scores, labels) -> float:
    """AUC by counting every (member, non-member) pair; ties count 1/2."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def roc_points(scores, labels):
    """(fpr, tpr) at every distinct threshold t (predict member iff score >= t), with (0, 0)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    n_pos = (labels == 1).sum()
    n_neg = (labels == 0).sum()
    fpr, tpr = [0.0], [0.0]
    for t in sorted(set(scores.tolist()), reverse=True):
        pred = scores >= t
        tpr.append(float((pred & (labels == 1)).sum() / n_pos))
        fpr.append(float((pred & (labels == 0)).sum() / n_neg))
    return np.array(fpr), np.array(tpr)


def tpr_at_fpr(scores, labels, alpha, strict=False) -> float:
    """Largest TPR over thresholds with FPR <= alpha (or < alpha when strict)."""
    fpr, tpr = roc_points(scores, labels)
    ok = fpr < alpha if strict else fpr <= alpha
    return float(tpr[ok].max())


def log_auc_numeric(scores, labels, fpr_min=1e-5, n_grid=200_001) -> float:
    """Normalised area under TPR against log10(FPR) on [fpr_min, 1] by brute-force quadrature.

    The ROC is interpolated linearly in (FPR, TPR) between its points (np.interp
    takes the upper TPR at a vertical segment, which has zero width).
    """
    fpr, tpr = roc_points(scores, labels)
    u = np.linspace(np.log10(fpr_min), 0.0, n_grid)
    # at an FPR with several points (vertical segment) np.interp needs increasing x: keep the last
    keep = np.append(fpr[1:] != fpr[:-1], True)
    y = np.interp(10.0**u, fpr[keep], tpr[keep])
    return float(np.trapezoid(y, u) / (-np.log10(fpr_min)))


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def splitmix_stream(seed: int, index: int, n: int, count: int) -> list[int]:
    """``count`` integers uniform in [0, n) from stream ``index`` of ``seed`` (mis._kernels.random)."""
    state = _mix64(seed ^ _mix64((index + _GOLDEN) & _MASK64))
    out = []
    for _ in range(count):
        state = (state + _GOLDEN) & _MASK64
        out.append(((_mix64(state) >> 32) * n) >> 32)
    return out


def bootstrap_replicates(scores, labels, fprs, seed, n_resamples, strict=False, fpr_min=1e-5):
    """Python-loop stratified bootstrap with the same random streams as the kernel.

    Resample b: non-members first, then members, each drawn with replacement to
    its own size; every metric recomputed from scratch on the resampled data.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    neg = np.flatnonzero(labels == 0)
    pos = np.flatnonzero(labels == 1)
    reps = []
    for b in range(n_resamples):
        state_draws = _stratified_draws(seed, b, len(neg), len(pos))
        idx = np.concatenate([neg[state_draws[: len(neg)]], pos[state_draws[len(neg) :]]])
        s, y = scores[idx], labels[idx]
        row = [tpr_at_fpr(s, y, a, strict) for a in fprs]
        row += [auc_pairwise(s, y), log_auc_numeric(s, y, fpr_min, n_grid=20_001)]
        reps.append(row)
    return np.array(reps)


def _stratified_draws(seed, b, n_neg, n_pos):
    """One stream serves both classes in turn, as in the kernel."""
    state = _mix64(seed ^ _mix64((b + _GOLDEN) & _MASK64))
    out = []
    for size in (n_neg, n_pos):
        for _ in range(size):
            state = (state + _GOLDEN) & _MASK64
            out.append(((_mix64(state) >> 32) * size) >> 32)
    return np.array(out, dtype=np.int64)
