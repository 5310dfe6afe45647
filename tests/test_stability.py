"""Stability of a ranking over subsets of runs (Fig. 1): against all runs, against the other
runs, per setting and pooled over settings, with bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mis.exceptions import MisValueError
from mis.security import pooled_rank_stability, rank_stability


def test_disjoint_spearman_matches_a_python_loop():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 5)) + np.arange(5) * 0.3 + 10.0  # r_Q is never negative
    ks, n_sub = (3, 10, 30), 20
    res = rank_stability(v, ks, n_sub, rng=7)
    gen = np.random.default_rng(7)
    for i, k in enumerate(ks):
        subs = [gen.permutation(30)[:k] for _ in range(n_sub)]
        gen.random((n_sub, 5))  # the tie-breaking keys of the frequencies
        for j, sub in enumerate(subs):
            rest = np.setdiff1d(np.arange(30), sub)
            a = v[sub].mean(axis=0)
            want_all = stats.spearmanr(a, v.mean(axis=0)).statistic
            assert res.spearman[i, j] == pytest.approx(want_all)
            if rest.size:
                want = stats.spearmanr(a, v[rest].mean(axis=0)).statistic
                assert res.spearman_disjoint[i, j] == pytest.approx(want)
            else:
                assert np.isnan(res.spearman_disjoint[i, j])
    assert np.isnan(res.spearman_ci).all()  # no resamples asked for
    # all runs against all runs: 1; disjoint halves are never better than all runs here
    assert res.spearman_mean[-1] == pytest.approx(1.0)
    assert res.spearman_disjoint_mean[1] <= res.spearman_mean[1]


def test_pooled_stability_matches_a_python_loop():
    rng = np.random.default_rng(1)
    blocks = [rng.normal(size=(n, 4)) + s * 2 for s, n in enumerate((12, 15, 20))]
    res = pooled_rank_stability(blocks, (2, 6), 8, rng=3)
    gen = np.random.default_rng(3)
    ref = np.concatenate([b.mean(axis=0) for b in blocks])
    for i, k in enumerate((2, 6)):
        parts, rests = [], []
        for b in blocks:
            subs = np.argsort(gen.random((8, b.shape[0])), axis=1)[:, :k]
            parts.append(b[subs].mean(axis=1))
            rests.append(np.stack([np.delete(b, s, axis=0).mean(axis=0) for s in subs]))
        s = np.concatenate(parts, axis=1)
        r = np.concatenate(rests, axis=1)
        for j in range(8):
            assert res.spearman[i, j] == pytest.approx(stats.spearmanr(s[j], ref).statistic)
            assert res.spearman_disjoint[i, j] == pytest.approx(
                stats.spearmanr(s[j], r[j]).statistic
            )
    assert res.n_blocks == 3 and res.spearman.shape == (2, 8)
    # differences between settings dominate the pooled ranks: pooled ρ is high even at k = 2
    assert res.spearman_mean[0] > 0.8
    with pytest.raises(MisValueError, match="k_runs"):
        pooled_rank_stability(blocks, (13,), 4)
    with pytest.raises(MisValueError, match="same number of quantizers"):
        pooled_rank_stability([blocks[0], blocks[1][:, :3]], (2,), 4)


def test_bootstrap_intervals_of_the_stability():
    rng = np.random.default_rng(2)
    clear = np.arange(6) * 10.0 + 1.0 + rng.normal(0, 0.01, (40, 6))  # every subset ranks alike
    res = rank_stability(clear, (5, 20), 20, n_resamples=30, rng=0)
    np.testing.assert_allclose(res.spearman_ci, 1.0)
    np.testing.assert_allclose(res.spearman_disjoint_ci, 1.0)
    noisy = rng.normal(size=(40, 6)) + np.arange(6) * 0.2 + 10.0
    res = rank_stability(noisy, (5, 20), 30, n_resamples=60, rng=0)
    for mean, (lo, hi) in zip(res.spearman_mean, res.spearman_ci, strict=True):
        assert -1 <= lo < hi <= 1 and hi - lo > 0.01
        assert lo - 0.2 < mean < hi + 0.2  # a basic interval sits around its estimate
    pooled = pooled_rank_stability([noisy, noisy + 1], (5,), 10, n_resamples=20, rng=0)
    assert (
        pooled.spearman_ci.shape == (1, 2) and pooled.spearman_ci[0, 0] < pooled.spearman_ci[0, 1]
    )
