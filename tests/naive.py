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
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
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
    """``count`` integers in [0, n) from stream ``index`` of ``seed`` (as mis._kernels.random)."""
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
    """One stream serves both classes in turn, as in the kernel.

    Each 64-bit output gives two draws (its high, then its low 32 bits); an odd
    class size takes one more output's high half.
    """
    state = _mix64(seed ^ _mix64((b + _GOLDEN) & _MASK64))
    out = []
    for size in (n_neg, n_pos):
        for _ in range(size // 2):
            state = (state + _GOLDEN) & _MASK64
            r = _mix64(state)
            out += [((r >> 32) * size) >> 32, ((r & 0xFFFFFFFF) * size) >> 32]
        if size % 2:
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
    h, w = x.shape[2:]
    p = max(abs(dy), abs(dx))
    pad_mode = "reflect" if mode == "reflect" else "constant"
    pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=pad_mode)
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


# ============================================================================================
# quant: affine grids, L_p range search, the Aubinais et al. quantizers (element by element)
# ============================================================================================


def affine_scale_zero(lo, hi, n_levels, symmetric=False):
    """(s, z) of one range, plain Python floats (float64): the reference convention."""
    if symmetric:
        a = max(abs(lo), abs(hi))
        lo, hi = -a, a
    if hi - lo <= 0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi - lo <= 0:
            lo, hi = -1.0, 1.0
    s = (hi - lo) / (n_levels - 1)
    z = float(n_levels // 2) if symmetric else float(np.round(-lo / s))
    return s, z


def affine_fake_quant_row(row, s, z, n_levels):
    """Ŵ = s·(clamp(round(w/s) + z, 0, L-1) - z), one value at a time (half-to-even)."""
    out = []
    for v in row:
        q = min(max(float(np.round(v / s)) + z, 0.0), n_levels - 1.0)
        out.append(s * (q - z))
    return np.array(out)


def lp_search_loop(
    w2d,
    n_levels,
    *,
    include_zero=True,
    symmetric=False,
    norm=2.4,
    n_candidates=80,
    shrink_step=0.01,
    dtype=np.float64,
):
    """The reference PTQ search, channel by channel and candidate by candidate.

    Grid arithmetic in ``dtype`` (float32 mirrors the float32 library step for step),
    errors summed in float64. Returns (errors (C, n_candidates), first-minimum index).
    """
    t = np.dtype(dtype).type
    w2d = np.asarray(w2d, dtype=dtype)
    errs = np.empty((w2d.shape[0], n_candidates))
    for c, row in enumerate(w2d):
        lo, hi = row.min(), row.max()
        if include_zero:
            lo, hi = min(lo, t(0)), max(hi, t(0))
        if symmetric:
            a = max(abs(lo), abs(hi))
            lo, hi = -a, a
        if hi - lo <= 0:
            lo, hi = min(lo, t(0)), max(hi, t(0))
            if hi - lo <= 0:
                lo, hi = t(-1), t(1)
        for i in range(n_candidates):
            f = t(1.0 - i * shrink_step)
            lo_f, hi_f = lo * f, hi * f
            s = max((hi_f - lo_f) / t(n_levels - 1), t(np.finfo(dtype).tiny))
            z = t(n_levels // 2) if symmetric else np.round(-lo_f / s)
            total = 0.0
            for v in row:
                q = min(max(np.round(v / s) + z, t(0)), t(n_levels - 1))
                total += abs(float(v - s * (q - z))) ** norm
            errs[c, i] = total
    best = np.array([int(np.argmin(e)) for e in errs])
    return errs, best


def ternary_naive(w, sparsity):
    """x % smallest |w| (ties: lower flat index first) -> 0, the rest -> sign (sign(0) = +1)."""
    flat = np.asarray(w, dtype=np.float64).ravel()
    k = int(sparsity * flat.size + 0.5)
    order = sorted(range(flat.size), key=lambda i: (abs(flat[i]), i))
    out = np.array([1.0 if v >= 0 else -1.0 for v in flat])
    for i in order[:k]:
        out[i] = 0.0
    return out.reshape(np.shape(w))


def bbit_naive(w, bits):
    """Aubinais b bits: sign(θ)·(α/n)·(smallest k in 1..n with k·α/n >= |θ|, else n)."""
    flat = np.asarray(w, dtype=np.float64).ravel()
    n = 2 ** (bits - 1)
    m = max(abs(v) for v in flat)
    alpha = 2.0 ** np.round(np.log2(m)) if m > 0 else 1.0
    out = []
    for v in flat:
        k = n
        for j in range(1, n + 1):
            if j * alpha / n >= abs(v):
                k = j
                break
        out.append((1.0 if v >= 0 else -1.0) * k * alpha / n)
    return np.array(out).reshape(np.shape(w))


def distinct_per_row(w2d):
    """Number of distinct values in each row."""
    return np.array([len(set(np.asarray(r).tolist())) for r in w2d])


# ============================================================================================
# attacks: LiRA (per example, scipy), the reference code's formulas, RMIA, thresholds
# ============================================================================================


def lira_signal_naive(logits, labels):
    """log p_y − log Σ_{c≠y} p_c with scipy's logsumexp, one row at a time."""
    from scipy.special import logsumexp

    logits = np.asarray(logits, dtype=np.float64)
    n_models, n_examples, n_queries, _ = logits.shape
    out = np.empty((n_models, n_examples, n_queries))
    for m in range(n_models):
        for j in range(n_examples):
            y = labels[j]
            for q in range(n_queries):
                row = logits[m, j, q]
                lp = row - logsumexp(row)
                out[m, j, q] = lp[y] - logsumexp(np.delete(lp, y))
    return out


def lira_naive(
    signals, keep, target, mode="online", fixed_variance=False, center="mean", var_floor=1e-12
):
    """LiRA for one target, example by example with scipy.stats.norm.

    The estimator of mis.attacks.lira: ML variances, pooled variance Σ SS / Σ n,
    every variance raised to at least var_floor, online log-likelihood ratio,
    offline log Φ.
    """
    from scipy import stats

    signals = np.asarray(signals, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    n_models, n_examples, n_queries = signals.shape
    shadows = [m for m in range(n_models) if m != target]
    centre = np.median if center == "median" else np.mean
    mu = {True: np.empty((n_examples, n_queries)), False: np.empty((n_examples, n_queries))}
    var = {True: np.empty((n_examples, n_queries)), False: np.empty((n_examples, n_queries))}
    ss_tot = {True: 0.0, False: 0.0}
    n_tot = {True: 0, False: 0}
    for j in range(n_examples):
        for member in (True, False):
            if mode == "offline" and member:
                continue
            vals = signals[[m for m in shadows if keep[m, j] == member], j, :]  # (n_set, Q)
            for q in range(n_queries):
                mu[member][j, q] = centre(vals[:, q])
                var[member][j, q] = np.var(vals[:, q])
                ss_tot[member] += np.sum((vals[:, q] - vals[:, q].mean()) ** 2)
                n_tot[member] += len(vals)
    scores = np.empty(n_examples)
    for j in range(n_examples):
        total = 0.0
        for q in range(n_queries):
            s = signals[target, j, q]
            v_out = ss_tot[False] / n_tot[False] if fixed_variance else var[False][j, q]
            v_out = max(v_out, var_floor)
            if mode == "offline":
                total += stats.norm.logcdf(s, mu[False][j, q], np.sqrt(v_out))
            else:
                v_in = ss_tot[True] / n_tot[True] if fixed_variance else var[True][j, q]
                v_in = max(v_in, var_floor)
                total += stats.norm.logpdf(s, mu[True][j, q], np.sqrt(v_in))
                total -= stats.norm.logpdf(s, mu[False][j, q], np.sqrt(v_out))
        scores[j] = total / n_queries
    return scores


def carlini_score_py(opredictions, labels):
    """Transcription of the reference score.py for one model: logits (N, 1, A, C) → (N, A)."""
    predictions = opredictions - np.max(opredictions, axis=3, keepdims=True)
    predictions = np.array(np.exp(predictions), dtype=np.float64)
    predictions = predictions / np.sum(predictions, axis=3, keepdims=True)
    count = predictions.shape[0]
    y_true = predictions[np.arange(count), :, :, labels[:count]]
    predictions[np.arange(count), :, :, labels[:count]] = 0
    y_wrong = np.sum(predictions, axis=3)
    return np.log(y_true.mean(1) + 1e-45) - np.log(y_wrong.mean(1) + 1e-45)


def carlini_generate(keep, scores, check_keep, check_scores, offline=False, fix_variance=False):
    """Transcription of the reference plot.py generate_ours / generate_ours_offline.

    Python loop over examples to collect the IN/OUT values (truncated to the
    smallest count), median centre, np.std spread, std + 1e-30, two-sided
    logpdf offline; returns (prediction, answers) with lower prediction = member.
    """
    from scipy import stats

    dat_in = []
    dat_out = []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(min(map(len, dat_in)), 100000)
    out_size = min(min(map(len, dat_out)), 100000)
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    prediction = []
    answers = []
    if offline:
        std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
        for ans, sc in zip(check_keep, check_scores, strict=True):
            score = stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
            prediction.extend(score.mean(1))
            answers.extend(ans)
        return prediction, answers
    dat_in = np.array([x[:in_size] for x in dat_in])
    mean_in = np.median(dat_in, 1)
    if fix_variance:
        std_in = np.std(dat_in)
        std_out = np.std(dat_in)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    for ans, sc in zip(check_keep, check_scores, strict=True):
        pr_in = -stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        score = pr_in - pr_out
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def carlini_global(check_keep, check_scores):
    """Transcription of the reference plot.py generate_global (lower prediction = member)."""
    prediction = []
    answers = []
    for ans, sc in zip(check_keep, check_scores, strict=True):
        prediction.extend(-sc.mean(1))
        answers.extend(ans)
    return prediction, answers


def rmia_naive(probs, keep, target, mode="offline", a=0.3, gamma=2.0, population=None):
    """RMIA for one target by the double loop over (x, z) of Zarifzadeh et al. (2024), Eq. 3–4."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 3:
        p = p.mean(axis=2)
    n_models, n_examples = p.shape
    refs = [m for m in range(n_models) if m != target]
    pop = list(range(n_examples)) if population is None else list(population)

    def pr(e):
        if mode == "online":
            return float(np.mean([p[m, e] for m in refs]))
        p_out = float(np.mean([p[m, e] for m in refs if not keep[m, e]]))
        return ((1 + a) * p_out + (1 - a)) / 2

    ratio = [p[target, e] / pr(e) for e in range(n_examples)]
    scores = np.empty(n_examples)
    for x in range(n_examples):
        zs = [z for z in pop if z != x]
        scores[x] = sum(ratio[x] >= gamma * ratio[z] for z in zs) / len(zs)
    return scores


# ============================================================================================
# quant OBC / GPTQ / BN tuning: plain OBS loops, constrained least squares, BN statistics
# ============================================================================================


def damped_hessian_naive(H, percdamp):
    """Dead columns (H_jj = 0 -> H_jj = 1) and H + percdamp·mean(diag H)·I; also the dead mask."""
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) == 0
    for j in np.flatnonzero(dead):
        H[j, j] = 1.0
    return H + percdamp * np.mean(np.diag(H)) * np.eye(H.shape[0]), dead


def nearest_level_naive(v, levels):
    """The level nearest to the scalar v (levels sorted ascending; a tie takes the upper
    level, so 0 -> +α on the sign grid)."""
    d = [abs(v - lv) for lv in levels]
    return float(levels[max(i for i, di in enumerate(d) if di == min(d))])


def obc_naive(W, H, levels, percdamp=0.01):
    """ExactOBS (Frantar & Alistarh 2022) one row and one weight at a time, explicit H⁻¹.

    ``levels`` (C, L): each row's sorted grid levels (equally spaced). A weight is outside
    the clamp range when it lies more than half a step beyond the outer levels; such
    weights are fixed first (largest error first), otherwise the least (w - q)²/[H⁻¹]_jj.
    Returns (Q, order).
    """
    W = np.array(W, dtype=np.float64)
    Hd, dead = damped_hessian_naive(H, percdamp)
    W[:, dead] = 0.0
    C, K = W.shape
    Hinv0 = np.linalg.inv(Hd)
    Q = np.zeros((C, K))
    order = np.zeros((C, K), dtype=np.int64)
    for c in range(C):
        lv = np.asarray(levels[c], dtype=np.float64)
        half = (lv[1] - lv[0]) / 2
        w = W[c].copy()
        Hinv = Hinv0.copy()
        free = list(range(K))
        for t in range(K):
            best, best_score, out_best, out_err = None, np.inf, None, -1.0
            for j in free:
                q = nearest_level_naive(w[j], lv)
                e = (w[j] - q) ** 2
                if w[j] < lv[0] - half or w[j] > lv[-1] + half:
                    if e > out_err:
                        out_best, out_err = j, e
                s = e / Hinv[j, j]
                if s < best_score:
                    best, best_score = j, s
            j = out_best if out_best is not None else best
            q = nearest_level_naive(w[j], lv)
            d = Hinv[j, j]
            w = w - (w[j] - q) / d * Hinv[:, j]
            w[j] = q
            Hinv = Hinv - np.outer(Hinv[:, j], Hinv[j, :]) / d
            Q[c, j] = q
            order[c, t] = j
            free.remove(j)
    return Q, order


def ordered_obs_naive(W, H, levels, order, percdamp=0.01):
    """OBS quantization in a fixed column order for all rows (what GPTQ computes, §3):
    explicit H⁻¹, one weight at a time, downdate after each."""
    W = np.array(W, dtype=np.float64)
    Hd, dead = damped_hessian_naive(H, percdamp)
    W[:, dead] = 0.0
    C, K = W.shape
    Q = np.zeros((C, K))
    for c in range(C):
        lv = np.asarray(levels[c], dtype=np.float64)
        w = W[c].copy()
        Hinv = np.linalg.inv(Hd)
        for j in order:
            q = nearest_level_naive(w[j], lv)
            d = Hinv[j, j]
            w = w - (w[j] - q) / d * Hinv[:, j]
            w[j] = q
            Hinv = Hinv - np.outer(Hinv[:, j], Hinv[j, :]) / d
            Q[c, j] = q
    return Q


def constrained_lstsq_naive(w, X, fixed, values, percdamp=0.01):
    """The free weights v_F minimising (v - w)ᵀ H_λ (v - w) with v_S = values fixed.

    H_λ = 2XᵀX/N + λ·mean(diag)·I (X of shape (N, K), rows = inputs). Solved with numpy
    lstsq on the stacked system A = [sqrt(2/N)·X; sqrt(λ·mean diag)·I]: minimise
    ‖A_F (v_F - w_F) + A_S (values - w_S)‖². Returns the full vector v.
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, K = X.shape
    H = 2 * X.T @ X / N
    lam = percdamp * np.mean(np.diag(H))
    A = np.vstack([np.sqrt(2.0 / N) * X, np.sqrt(lam) * np.eye(K)])
    fixed = list(fixed)
    free = [j for j in range(K) if j not in set(fixed)]
    v = w.copy()
    v[fixed] = values
    if free:
        rhs = -A[:, fixed] @ (np.asarray(values) - w[fixed])
        sol, *_ = np.linalg.lstsq(A[:, free], rhs, rcond=None)
        v[free] = w[free] + sol
    return v


def block_refine_naive(W, H, Q, levels, sweeps, block, percdamp=0.01):
    """Refinement sweeps of mis.quant.gptq (block coordinate descent), one row at a time.

    Rows are independent. Per row and sweep s, block borders start at the offset
    [0, B/2, B/4, 3B/4][s mod 4] (distinct values, in that order; a first short block
    [0, offset)). Per block: g = Hd(q − w), t = q_B − inv(Hd_BB) g_B; the candidates are
    the fixed-order OBS quantization of t (Hessian Hd_BB) in forward, then backward
    order; a candidate replaces the current block when its loss (c − t)ᵀHd_BB(c − t) is
    below the best so far by a relative 1e-12; t = 0 exactly in dead columns. Running
    all sweeps equals the fast version's early stop (a row unchanged for a full cycle
    of offsets never changes).
    """
    Hd, dead = damped_hessian_naive(H, percdamp)
    W = np.array(W, dtype=np.float64)
    W[:, dead] = 0.0
    Q = np.array(Q, dtype=np.float64)
    C, K = W.shape
    offsets = []
    for o in (0, block // 2, block // 4, (3 * block) // 4):
        if o not in offsets:
            offsets.append(o)
    for c in range(C):
        q = Q[c].copy()
        for s in range(sweeps):
            off = offsets[s % len(offsets)]
            starts = ([0] if off else []) + list(range(off, K, block))
            for a, b in zip(starts, [*starts[1:], K], strict=True):
                B = list(range(a, b))
                HB = Hd[np.ix_(B, B)]
                g = Hd @ (q - W[c])
                t = q[B] - np.linalg.solve(HB, g[B])
                t[dead[B]] = 0.0  # exact value; rounding would pick a side of sign(0)
                best = q[B].copy()
                best_loss = (best - t) @ HB @ (best - t)
                n = b - a
                for order in (list(range(n)), list(range(n - 1, -1, -1))):
                    cand = ordered_obs_naive(t[None, :], HB, [levels[c]], order, percdamp=0)[0]
                    loss = (cand - t) @ HB @ (cand - t)
                    if loss < best_loss * (1 - 1e-12):
                        best, best_loss = cand, loss
                q[B] = best
        Q[c] = q
    return Q


def damped_loss_naive(W, H, Q, percdamp=0.01):
    """Per-row (q_c − w_c)ᵀ Hd (q_c − w_c), dead columns of W zeroed first (float64)."""
    Hd, dead = damped_hessian_naive(H, percdamp)
    W = np.array(W, dtype=np.float64)
    W[:, dead] = 0.0
    D = np.asarray(Q, dtype=np.float64) - W
    return np.einsum("ck,kl,cl->c", D, Hd, D)


def bn_running_stats_naive(batches, momentum):
    """BatchNorm running mean / unbiased var after reset (0, 1) and one update per batch.

    ``batches``: list of arrays (n, C, ...) — the BN layer's inputs. ``momentum`` None =
    cumulative average (1/k for the k-th batch).
    """
    mean = None
    var = None
    for k, x in enumerate(batches, start=1):
        x = np.asarray(x, dtype=np.float64)
        C = x.shape[1]
        flat = np.moveaxis(x, 1, 0).reshape(C, -1)
        if mean is None:
            mean, var = np.zeros(C), np.ones(C)
        m = 1.0 / k if momentum is None else momentum
        bm = flat.mean(1)
        bv = flat.var(1, ddof=1)
        mean = (1 - m) * mean + m * bm
        var = (1 - m) * var + m * bv
    return mean, var


# ============================================================================================
# quant: AdaRound / BRECQ (rectified sigmoid, regulariser, β schedule, BatchNorm folding)
# ============================================================================================


def rectified_sigmoid_naive(v, zeta=1.1, gamma=-0.1):
    """h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), one element at a time with math.exp."""
    import math

    v = np.asarray(v, dtype=np.float64)
    out = np.empty_like(v)
    for i, x in np.ndenumerate(v):
        s = 1.0 / (1.0 + math.exp(-x))
        out[i] = min(1.0, max(0.0, s * (zeta - gamma) + gamma))
    return out


def rounding_regularizer_naive(h, beta):
    """Σ 1 − |2h − 1|^β as a Python loop."""
    total = 0.0
    for x in np.asarray(h, dtype=np.float64).ravel():
        total += 1.0 - abs(2.0 * x - 1.0) ** beta
    return total


def beta_naive(t, t_max, warmup=0.2, start_b=20.0, end_b=2.0):
    """The reference schedule: no regulariser (None) while t < warmup·t_max, then linear decay
    from start_b to end_b (yhhhli/BRECQ LinearTempDecay with rel_start_decay = warmup)."""
    start = warmup * t_max
    if t < start:
        return None
    rel = (t - start) / (t_max - start)
    return end_b + (start_b - end_b) * max(0.0, 1.0 - rel)


def fold_bn_naive(w, b, gamma, beta, mean, var, eps):
    """BatchNorm folded into a layer, channel by channel: W'_c = a_c W_c,
    b'_c = a_c (b_c − μ_c) + β_c with a_c = γ_c / sqrt(σ²_c + ε)."""
    import math

    w = np.asarray(w, dtype=np.float64)
    w_new = np.empty_like(w)
    b_new = np.empty(w.shape[0])
    for c in range(w.shape[0]):
        a = gamma[c] / math.sqrt(var[c] + eps)
        w_new[c] = a * w[c]
        b_new[c] = a * ((0.0 if b is None else b[c]) - mean[c]) + beta[c]
    return w_new, b_new


# ============================================================================================
# studies: the stacked recorder's ternary zero selection
# ============================================================================================
def smallest_mask(a, kz):
    """The kz smallest of ``a`` in (value, index) order: the first kz of a stable sort."""
    mask = np.zeros(len(a), dtype=bool)
    mask[np.argsort(np.asarray(a), kind="stable")[: max(kz, 0)]] = True
    return mask
