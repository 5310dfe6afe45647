"""Quantizer rankings (mis.security._ranking): bootstrap over runs, Fig. 1 stability, agreement."""

from __future__ import annotations

import math
import warnings

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mis.exceptions import MisValueError, UndefinedMetricWarning
from mis.security import _ranking as ranking_module
from mis.security import rank_agreement, rank_quantizers, rank_stability


def separated(n_runs=60, n_q=6, gap=1.0, seed=0):
    """Per-run values whose true means are gap * (0, 1, ..., n_q - 1), plus unit noise."""
    rng = np.random.default_rng(seed)
    return rng.gamma(4.0, 0.25, size=(n_runs, n_q)) + gap * np.arange(n_q)


# --------------------------------------------------------------------------------------------
# helpers against scipy
# --------------------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**32 - 1), q=st.integers(3, 9), ties=st.booleans())
def test_row_correlations_match_scipy(seed, q, ties):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(4, q))
    b = rng.normal(size=(4, q))
    if ties:
        a = np.round(a)
        b[:, 0] = np.inf
        b[:, 1] = np.inf
    rho = ranking_module._spearman_rows(a, b)
    tau = ranking_module._kendall_rows(a, b)
    for i in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want_rho = stats.spearmanr(a[i], b[i]).statistic
            want_tau = stats.kendalltau(a[i], b[i]).statistic
        np.testing.assert_allclose(rho[i], want_rho, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(tau[i], want_tau, rtol=1e-12, atol=1e-12)


def test_percentile_with_infinite_replicates():
    lo, hi = ranking_module._percentile(np.array([1.0, 2.0, np.inf, np.inf, np.inf]), 0.5)
    assert lo == 2.0 and hi == math.inf  # positions 1 and 3 exactly
    lo, hi = ranking_module._percentile(np.array([1.0, 2.0, np.inf, np.inf, np.inf]), 0.6)
    assert math.isfinite(lo) and hi == math.inf
    lo, hi = ranking_module._percentile(np.full(10, np.inf), 0.9)
    assert lo == hi == math.inf


# --------------------------------------------------------------------------------------------
# rank_quantizers
# --------------------------------------------------------------------------------------------
def test_rank_quantizers_orders_by_mean_and_finds_clear_gaps():
    v = separated(gap=1.0)
    names = [f"Q{j}" for j in range(v.shape[1])]
    r = rank_quantizers(v, names, rng=1)
    assert r.order == tuple(range(5, -1, -1))
    assert r.ranked_names() == names[::-1]
    assert r.ranks == (6.0, 5.0, 4.0, 3.0, 2.0, 1.0)
    for j, m in enumerate(r.mean):
        assert m.estimate == pytest.approx(v[:, j].mean())
        assert m.low <= m.estimate <= m.high
        assert r.median[j].estimate == pytest.approx(np.median(v[:, j]))
    assert all(a.significant for a in r.adjacent)
    assert all(a.difference.pvalue < 0.01 for a in r.adjacent)
    assert r.adjacent[0].higher == "Q5" and r.adjacent[0].lower == "Q4"
    assert r.replicates.shape == (2000, 6)
    assert [row["name"] for row in r.table()] == names[::-1]


def test_rank_quantizers_no_gap_is_not_significant():
    v = separated(n_runs=40, gap=0.0, seed=3)
    r = rank_quantizers(v, rng=0)
    assert sum(a.significant for a in r.adjacent) <= 1
    assert all(a.difference.low <= a.difference.estimate <= a.difference.high for a in r.adjacent)


def test_rank_quantizers_is_reproducible_and_by_median():
    v = separated(seed=5)
    a = rank_quantizers(v, rng=7, statistic="median", n_resamples=300)
    b = rank_quantizers(v, rng=7, statistic="median", n_resamples=300)
    assert a == b
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert a.statistic == "median"
    assert a.order == tuple(int(j) for j in np.argsort(-np.median(v, axis=0), kind="stable"))


def test_rank_quantizers_bootstrap_matches_a_python_loop():
    v = separated(n_runs=12, n_q=4, seed=2)
    r = rank_quantizers(v, rng=11, n_resamples=50)
    idx = np.random.default_rng(11).integers(0, 12, size=(50, 12))
    want = np.array([v[i].mean(axis=0) for i in idx])
    np.testing.assert_allclose(r.replicates, want, rtol=1e-12)


def test_inf_policies():
    v = separated(n_runs=20, n_q=4, seed=1)
    v[3, 0] = np.inf  # the least private quantizer has one degenerate run
    prop = rank_quantizers(v, rng=0, n_resamples=200)
    assert prop.mean[0].estimate == math.inf
    assert prop.order[0] == 0  # +inf ranks first under "propagate"
    assert prop.n_inf == (1, 0, 0, 0)
    assert prop.mean[0].high == math.inf
    assert not math.isnan(prop.mean[0].low)
    omit = rank_quantizers(v, rng=0, n_resamples=200, inf_policy="omit")
    assert omit.mean[0].estimate == pytest.approx(np.delete(v[:, 0], 3).mean())
    assert omit.order == (3, 2, 1, 0)
    # a quantizer that is +inf in every run stays +inf under "omit"
    w = v.copy()
    w[:, 1] = np.inf
    allinf = rank_quantizers(w, rng=0, n_resamples=100, inf_policy="omit")
    assert allinf.mean[1].estimate == math.inf and allinf.order[0] == 1


def test_inf_ties_give_zero_difference():
    v = separated(n_runs=10, n_q=3)
    v[:, 1] = np.inf
    v[:, 2] = np.inf
    r = rank_quantizers(v, rng=0, n_resamples=100)
    assert r.ranks[1] == r.ranks[2] == 1.5
    assert r.adjacent[0].difference.estimate == 0.0
    assert not r.adjacent[0].significant


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        (np.array([[1.0, np.nan], [1.0, 2.0]]), {}, "NaN"),
        (np.array([[1.0, -np.inf], [1.0, 2.0]]), {}, "-inf"),
        (np.ones(4), {}, "shape"),
        (np.ones((1, 4)), {}, "at least 2 runs"),
        (np.ones((3, 4)), {"names": ["a", "b"]}, "names"),
        (np.ones((3, 4)), {"statistic": "max"}, "statistic"),
        (np.ones((3, 4)), {"inf_policy": "drop"}, "inf_policy"),
        (np.ones((3, 4)), {"confidence_level": 1.0}, "confidence_level"),
        (np.ones((3, 4)), {"n_resamples": 0}, "n_resamples"),
    ],
)
def test_rank_quantizers_bad_input(values, kwargs, match):
    with pytest.raises(MisValueError, match=match):
        rank_quantizers(values, **kwargs)


# --------------------------------------------------------------------------------------------
# rank_stability
# --------------------------------------------------------------------------------------------
def test_rank_stability_frequencies_are_doubly_stochastic():
    v = separated(n_runs=80, n_q=5, gap=0.3, seed=4)
    s = rank_stability(v, k_runs=(2, 5, 20, 80), n_subsets=60, rng=3)
    assert s.frequencies.shape == (4, 5, 5)
    np.testing.assert_allclose(s.frequencies.sum(axis=2), 1.0)
    np.testing.assert_allclose(s.frequencies.sum(axis=1), 1.0)
    assert s.spearman.shape == (4, 60)
    assert np.all(np.abs(s.spearman) <= 1 + 1e-12)
    # stability grows with the number of runs; all runs reproduce the reference
    means = s.spearman_mean
    assert means[0] < means[2] <= means[3]
    np.testing.assert_allclose(s.spearman[3], 1.0)
    np.testing.assert_allclose(s.at_reference_rank[3], 1.0)
    np.testing.assert_allclose(np.diag(s.confusion(80)), 1.0)
    assert list(s.reference_order) == [4, 3, 2, 1, 0]
    with pytest.raises(MisValueError, match="k must be one of"):
        s.confusion(7)


def test_rank_stability_matches_a_python_loop():
    v = separated(n_runs=15, n_q=4, gap=0.2, seed=9)
    s = rank_stability(v, k_runs=(3,), n_subsets=25, rng=12)
    gen = np.random.default_rng(12)
    subs = [gen.permutation(15)[:3] for _ in range(25)]
    keys = gen.random((25, 4))
    ref = v.mean(axis=0)
    freq = np.zeros((4, 4))
    for i, sub in enumerate(subs):
        m = v[sub].mean(axis=0)
        assert s.spearman[0, i] == pytest.approx(stats.spearmanr(m, ref).statistic)
        order = sorted(range(4), key=lambda j: (-m[j], keys[i, j]))
        for rank, j in enumerate(order):
            freq[j, rank] += 1 / 25
    np.testing.assert_allclose(s.frequencies[0], freq)


def test_rank_stability_bad_input():
    v = separated(n_runs=10, n_q=3)
    with pytest.raises(MisValueError, match="at most n_runs"):
        rank_stability(v, k_runs=(5, 20))
    with pytest.raises(MisValueError, match="k_runs"):
        rank_stability(v, k_runs=(0,))
    with pytest.raises(MisValueError, match="n_subsets"):
        rank_stability(v, k_runs=(5,), n_subsets=0)


# --------------------------------------------------------------------------------------------
# rank_agreement
# --------------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), q=st.integers(3, 6), ties=st.booleans())
def test_exact_pvalues_match_itertools(seed, q, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=q)
    y = x + rng.normal(scale=1.0, size=q)
    if ties:
        x = np.round(x)
        y = np.round(y * 2) / 2
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return
    got = ranking_module._permutation_pvalues(x, y, None, None)
    want = naive.permutation_pvalues(x, y)
    assert got[2] == "exact"
    assert got[0] == pytest.approx(want[0], abs=1e-12)
    assert got[1] == pytest.approx(want[1], abs=1e-12)


@pytest.mark.filterwarnings("ignore:x and y are both fixed summaries")
def test_exact_pvalues_match_scipy_for_nine_quantizers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=9)
    y = x + rng.normal(size=9)
    a = rank_agreement(x, y)  # 1-D: fixed summaries
    assert a.permutation == "exact"
    tau = stats.kendalltau(x, y, method="exact")
    assert a.kendall.estimate == pytest.approx(tau.statistic)
    assert a.kendall_pvalue == pytest.approx(tau.pvalue, rel=1e-9)
    x7, y7 = x[:7], y[:7]
    a7 = rank_agreement(x7, y7)

    def spearman(u, axis):  # one sample: "pairings" enumerates its 7! orders against y7
        ru = stats.rankdata(u, axis=axis)
        rv = np.broadcast_to(stats.rankdata(y7), ru.shape)
        return stats.pearsonr(ru, rv, axis=axis).statistic

    perm = stats.permutation_test(
        (x7,), spearman, permutation_type="pairings", n_resamples=np.inf, vectorized=True
    )
    assert perm.null_distribution.size == math.factorial(7)
    assert a7.spearman.estimate == pytest.approx(stats.spearmanr(x7, y7).statistic)
    assert a7.spearman_pvalue == pytest.approx(perm.pvalue, rel=1e-9)


@pytest.mark.filterwarnings("ignore:x and y are both fixed summaries")
def test_monte_carlo_pvalues_approach_exact():
    rng = np.random.default_rng(1)
    x = rng.normal(size=8)
    y = x + rng.normal(scale=1.5, size=8)
    exact = rank_agreement(x, y)
    mc = rank_agreement(x, y, n_permutations=40_000, rng=2)
    assert mc.permutation == "monte-carlo (40000)"
    assert mc.spearman_pvalue == pytest.approx(exact.spearman_pvalue, abs=0.01)
    assert mc.kendall_pvalue == pytest.approx(exact.kendall_pvalue, abs=0.01)
    again = rank_agreement(x, y, n_permutations=40_000, rng=2)
    assert again.spearman_pvalue == mc.spearman_pvalue


def test_perfect_agreement():
    x = separated(n_runs=50, n_q=9, gap=1.0, seed=1)
    y = 0.5 * separated(n_runs=30, n_q=9, gap=1.0, seed=2)  # other runs, same order
    a = rank_agreement(x, y, rng=0, n_resamples=500)
    assert a.spearman.estimate == 1.0 and a.kendall.estimate == 1.0
    assert a.spearman_pvalue == pytest.approx(2 / math.factorial(9))
    assert a.kendall_pvalue == pytest.approx(2 / math.factorial(9))
    assert a.spearman.low > 0.9 and a.spearman.high == 1.0
    assert a.n_valid == 500
    r = rank_agreement(x, -y, rng=0, n_resamples=100)
    assert r.spearman.estimate == -1.0


def test_agreement_bootstrap_paired_and_one_sided_inputs():
    rng = np.random.default_rng(4)
    x = separated(n_runs=30, n_q=5, gap=0.2, seed=4)
    y = x + rng.normal(scale=0.5, size=x.shape)
    p = rank_agreement(x, y, paired=True, rng=3, n_resamples=300)
    assert p.paired and p.spearman.low <= p.spearman.estimate <= p.spearman.high
    # paired resampling: same run indices for x and y, as a python loop
    idx = np.random.default_rng(3).integers(0, 30, size=(300, 30))
    rho = [stats.spearmanr(x[i].mean(0), y[i].mean(0)).statistic for i in idx]
    lo, hi = np.quantile(rho, [0.025, 0.975])
    assert (p.spearman.low, p.spearman.high) == pytest.approx((lo, hi))
    fixed = rank_agreement(x, y.mean(axis=0), rng=3, n_resamples=300)
    assert fixed.spearman.estimate == p.spearman.estimate
    with pytest.warns(UndefinedMetricWarning, match="no runs to resample"):
        both = rank_agreement(x.mean(0), y.mean(0))
    assert math.isnan(both.spearman.low)


def test_agreement_constant_summary_is_nan_with_warning():
    x = separated(n_runs=10, n_q=4)
    with pytest.warns(UndefinedMetricWarning):
        a = rank_agreement(x, np.ones(4), n_resamples=50, rng=0)
    assert math.isnan(a.spearman.estimate) and math.isnan(a.spearman_pvalue)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (np.ones((5, 4)), np.ones((5, 3)), {}, "same number of quantizers"),
        (np.ones((5, 2)), np.ones((5, 2)), {}, "at least 3 quantizers"),
        (np.ones((5, 4)), np.ones((6, 4)), {"paired": True}, "paired=True"),
        (np.ones((5, 4, 2)), np.ones((5, 4)), {}, "shape"),
        (np.ones((5, 4)), np.full((5, 4), np.nan), {}, "NaN"),
        (np.ones((5, 4)), np.ones((5, 4)), {"n_permutations": 0}, "n_permutations"),
    ],
)
def test_rank_agreement_bad_input(x, y, kwargs, match):
    with pytest.raises(MisValueError, match=match):
        rank_agreement(x, y, **kwargs)


@given(
    values=st.lists(st.floats(0, 1e6), min_size=1, max_size=30),
    level=st.floats(0.05, 0.99),
)
def test_percentile_matches_numpy_when_finite(values, level):
    r = np.array(values)
    a = (1 - level) / 2
    want = np.quantile(r, [a, 1 - a])
    got = ranking_module._percentile(r, level)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"confidence_level": None}, "confidence_level must be a number"),
        ({"confidence_level": 1.5}, "confidence_level"),
        ({"paired": np.ones(3)}, "paired must be true or false"),
        ({"paired": "yes"}, "paired must be true or false"),
        ({"n_resamples": 10**12}, "n_resamples must be at most"),
        ({"n_permutations": 10**12}, "n_permutations must be at most"),
        ({"n_permutations": 0}, "n_permutations must be an integer >= 1"),
    ],
)
def test_rank_agreement_refuses_bad_arguments(kw, match):
    x = np.random.default_rng(0).random((10, 5))
    with pytest.raises(ValueError, match=match):
        rank_agreement(x, x, **kw)
