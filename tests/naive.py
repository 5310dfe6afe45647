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

    The ROC is interpolated linearly in (FPR, TPR) between its points: an FPR x
    between two distinct ROC abscissae lies on the segment from the last point
    with FPR < x (top of a vertical run) to the first point with FPR >= x.
    """
    fpr, tpr = roc_points(scores, labels)
    u = np.linspace(np.log10(fpr_min), 0.0, n_grid)
    x = 10.0**u
    j = np.searchsorted(fpr, x, side="left")
    i = j - 1
    y = tpr[i] + (tpr[j] - tpr[i]) * (x - fpr[i]) / (fpr[j] - fpr[i])
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


def bootstrap_replicates(
    scores, labels, fprs, seed, n_resamples, strict=False, fpr_min=1e-5, order_scores=None
):
    """Python-loop stratified bootstrap with the same random streams as the kernel.

    Resample b: non-members first, then members, each drawn with replacement to
    its own size, the k-th of a class being its k-th in decreasing order of
    score (stable); every metric recomputed from scratch on the resampled data.
    In a paired comparison the draws follow the order of the first scoring:
    pass it as ``order_scores``.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    order = np.argsort(-np.asarray(scores if order_scores is None else order_scores), kind="stable")
    neg = order[labels[order] == 0]
    pos = order[labels[order] == 1]
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


def auc_jackknife_acceleration(scores, labels) -> float:
    """BCa acceleration of the AUC from the delete-one jackknife, one sample per class.

    a = sum_j sum_i U_ji^3 / n_j^3 / (6 (sum_j sum_i U_ji^2 / n_j^2)^(3/2)),
    U_ji = (n_j - 1)(mean_i theta_(ji) - theta_(ji)), as in scipy.stats.bootstrap.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    num = den = 0.0
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        theta = []
        for i in idx:
            keep = np.ones(len(scores), dtype=bool)
            keep[i] = False
            theta.append(auc_pairwise(scores[keep], labels[keep]))
        theta = np.array(theta)
        n = len(idx)
        u = (n - 1) * (theta.mean() - theta)
        num += (u**3).sum() / n**3
        den += (u**2).sum() / n**2
    return num / (6 * den**1.5)


# ============================================================================================
# security: r_Q (Aubinais et al. 2025, Algorithm 1) and rank-agreement permutation tests
# ============================================================================================


def dedup_checkpoints(val_losses, qhash=None):
    """Keep one row per quantized point: first of each hash, or of each identical loss row."""
    L = np.asarray(val_losses, dtype=float)
    keep = []
    for k in range(L.shape[0]):
        if qhash is not None:
            dup = any(qhash[j] == qhash[k] for j in keep)
        else:
            dup = any(np.array_equal(L[j], L[k]) for j in keep)
        if not dup:
            keep.append(k)
    return L[keep]


def rq_algorithm1(val_losses, ddof=1):
    """Algorithm 1 of Aubinais et al. (2025) as written (lines 11-18), no deduplication.

    Lval[k] are the per-sample losses of checkpoint k; mval[k] their means.
    """
    Lval = [np.asarray(row, dtype=float) for row in val_losses]
    mval = [float(np.mean(row)) for row in Lval]
    K = len(Lval)
    idx = np.argsort(mval, kind="stable")  # line 11
    mval = [mval[i] for i in idx]  # line 12
    Lval = [Lval[i] for i in idx]  # line 13
    sigma2 = {}
    for k in range(1, K):  # lines 14-16 (k = 2..K, 0-based here)
        sigma2[k] = float(np.var(Lval[k] - Lval[0], ddof=ddof))
    inner = max(  # line 17
        sigma2[k] * ((mval[1] - mval[0]) / (mval[k] - mval[0])) ** 2 for k in range(1, K)
    )
    r = 0.5 / inner
    return r * (mval[1] - mval[0]) ** 2  # line 18


def permutation_pvalues(x, y):
    """Exact two-sided permutation p-values of Spearman ρ and Kendall τ_b, by itertools.

    Each statistic is recomputed from scratch (scipy) for every pairing of y's
    values with x's; p = share of pairings with |T| >= |t_obs|.
    """
    import itertools

    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    rho_obs = stats.spearmanr(x, y).statistic
    tau_obs = stats.kendalltau(x, y).statistic
    n_rho = n_tau = total = 0
    for perm in itertools.permutations(range(len(y))):
        yp = y[list(perm)]
        n_rho += abs(stats.spearmanr(x, yp).statistic) >= abs(rho_obs) - 1e-9
        n_tau += abs(stats.kendalltau(x, yp).statistic) >= abs(tau_obs) - 1e-9
        total += 1
    return n_rho / total, n_tau / total


# ============================================================================================
# train: augmentations, keep masks, keep-best selection of quantized checkpoints
# ============================================================================================


def shift_image(x, dy, dx, mode):
    """Translate NCHW images pixel by pixel: out[i, j] = x[i - dy, j - dx], borders padded."""
    n, c, h, w = x.shape
    p = max(abs(dy), abs(dx))
    pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect" if mode == "reflect" else "constant")
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = pad[:, :, i - dy + p, j - dx + p]
    return out


def flip_crop(x, flip, offsets, padding):
    """Per image: mirror if flip[i], zero-pad by `padding`, crop at offsets[i] = (oy, ox)."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        img = x[i, :, :, ::-1] if flip[i] else x[i]
        padded = np.zeros((c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
        padded[:, padding : padding + h, padding : padding + w] = img
        oy, ox = offsets[i]
        out[i] = padded[:, oy : oy + h, ox : ox + w]
    return out


def keep_best(losses, hashes, epochs, b):
    """The b lowest-mean distinct (by hash) checkpoints of one run and quantizer.

    losses: (n_ckpt, n_val); hashes, epochs: (n_ckpt,). Among equal hashes the first
    checkpoint counts; ties in the mean keep the earlier checkpoint. Returns (losses,
    hashes, epochs) sorted by mean, padded with NaN / 0 / -1 up to b rows.
    """
    seen = {}
    for i in range(len(hashes)):
        if int(hashes[i]) not in seen:
            seen[int(hashes[i])] = i
    firsts = sorted(seen.values(), key=lambda i: (float(np.mean(losses[i].astype(np.float64))), i))
    chosen = firsts[:b]
    out_l = np.full((b, losses.shape[1]), np.nan, dtype=np.float32)
    out_h = np.zeros(b, dtype=np.uint64)
    out_e = np.full(b, -1, dtype=np.int64)
    for r, i in enumerate(chosen):
        out_l[r], out_h[r], out_e[r] = losses[i], hashes[i], epochs[i]
    return out_l, out_h, out_e
