"""Statistics that agree with themselves: an interval and the p-value beside it come from one
bootstrap distribution (metrics.bootstrap_test, compare_roc, rank_quantizers), Holm over the
adjacent comparisons of a ranking, tie groups."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mis import metrics
from mis.security import rank_quantizers


def _excludes_zero(d) -> bool:
    return d.low > 0 or d.high < 0


replicate_values = st.one_of(
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from([0.0, 0.0, -0.5, 0.5, math.inf, -math.inf]),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    reps=st.lists(replicate_values, min_size=1, max_size=300),
    shift=st.floats(-2, 2),
    level=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
    method=st.sampled_from(["percentile", "bca"]),
    accel=st.floats(-0.3, 0.3),
)
def test_interval_excludes_zero_iff_p_below_level(reps, shift, level, method, accel):
    r = np.asarray(reps) + shift
    est = float(np.median(r[np.isfinite(r)])) if np.isfinite(r).any() else 0.0
    d = metrics.bootstrap_test(est, r, level, method=method, acceleration=accel)
    assert _excludes_zero(d) == (d.pvalue < 1 - level)
    assert 0 < d.pvalue <= 1
    assert d.low <= d.high


def test_percentile_p_value_and_bounds_by_hand():
    r = np.arange(-20, 180) / 10.0  # 200 replicates, 21 of them <= 0
    d = metrics.bootstrap_test(8.0, r, 0.95)
    assert d.pvalue == pytest.approx(2 * (1 + 21) / 201)
    # j = #{n : 2 (1 + n) / 201 < 0.05} = 5: the 5th smallest and the 5th largest
    assert d.low == r[4] and d.high == r[-5]
    assert d.low < 0 < d.high and d.pvalue >= 0.05
    d = metrics.bootstrap_test(8.0, r + 2.05, 0.95)  # every replicate > 0
    assert d.pvalue == pytest.approx(2 / 201) and d.low > 0
    none = metrics.bootstrap_test(1.0, [np.nan, np.nan], 0.95)
    assert math.isnan(none.pvalue) and math.isnan(none.low)


def test_too_few_replicates_give_an_unbounded_interval():
    d = metrics.bootstrap_test(1.0, [1.0, 2.0, 3.0], 0.95)  # min p = 2/4 = 0.5
    assert d.low == -math.inf and d.high == math.inf and d.pvalue == 0.5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(20, 120),
    shift=st.floats(0, 1.5),
    method=st.sampled_from(["percentile", "bca"]),
    level=st.sampled_from([0.9, 0.95]),
)
def test_compare_roc_is_consistent_on_random_data(seed, n, shift, method, level):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n)
    base = rng.normal(size=2 * n) + shift * y
    a = base + rng.normal(size=2 * n)
    b = base + rng.normal(size=2 * n) * rng.uniform(0.2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples drawing one class
        cmp = metrics.compare_roc(a, b, y, fprs=(0.1, 0.3), n_resamples=120, rng=rng,
                                  method=method, confidence_level=level)  # fmt: skip
    for d in (*cmp.tpr, cmp.auc, cmp.log_auc):
        if math.isnan(d.pvalue):
            continue
        assert _excludes_zero(d) == (d.pvalue < 1 - level)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_runs=st.integers(3, 40),
    n_q=st.integers(2, 8),
    spread=st.floats(0, 3),
    level=st.sampled_from([0.9, 0.95]),
)
def test_rank_quantizers_is_consistent_on_random_data(seed, n_runs, n_q, spread, level):
    rng = np.random.default_rng(seed)
    v = rng.exponential(1.0, (n_runs, n_q)) + spread * rng.random(n_q)
    if rng.random() < 0.2:
        v[rng.integers(n_runs), rng.integers(n_q)] = np.inf  # an r_Q with one distinct point
    r = rank_quantizers(v, n_resamples=150, confidence_level=level, rng=rng)
    alpha = 1 - level
    for a in r.adjacent:
        assert a.significant == _excludes_zero(a.difference) == (a.difference.pvalue < alpha)
        assert a.pvalue_holm >= a.difference.pvalue - 1e-15
        assert a.significant_holm == (a.pvalue_holm < alpha)
        assert not a.significant_holm or a.significant
    # tie groups: the ranking, cut exactly after the Holm-significant adjacent comparisons
    flat = [q for g in r.tie_groups for q in g]
    assert flat == r.ranked_names()
    cuts = [i for i, a in enumerate(r.adjacent) if a.significant_holm]
    assert len(r.tie_groups) == len(cuts) + 1
    ends = np.cumsum([len(g) for g in r.tie_groups])[:-1] - 1
    assert list(ends) == cuts


def test_holm_over_adjacent_comparisons_matches_metrics_holm():
    rng = np.random.default_rng(3)
    # r_Q is never negative: a constant shift keeps every difference and p-value
    v = rng.normal(0, 1, (30, 6)) + np.array([3.0, 2.5, 2.4, 1.0, 0.9, 0.0]) + 10.0
    r = rank_quantizers(v, n_resamples=500, rng=1)
    raw = [a.difference.pvalue for a in r.adjacent]
    adj, _ = metrics.holm(raw, 0.05)
    np.testing.assert_allclose([a.pvalue_holm for a in r.adjacent], adj)


def test_tie_groups_on_constructed_data():
    """Three well separated levels of two, three and three quantizers, tiny noise."""
    rng = np.random.default_rng(0)
    levels = np.array([10.0, 10.0, 5.0, 5.0, 5.0, 1.0, 1.0, 1.0])
    names = [f"q{i}" for i in range(8)]
    v = levels + rng.normal(0, 0.05, (60, 8))
    r = rank_quantizers(v, names, n_resamples=1000, rng=2)
    assert [set(g) for g in r.tie_groups] == [{"q0", "q1"}, {"q2", "q3", "q4"}, {"q5", "q6", "q7"}]
    assert r.group_of("q3") == 1 and r.group_of("q7") == 2
    # identical quantizers: one group; a single clear gap: two groups
    same = rank_quantizers(np.tile(rng.normal(10, 1, (40, 1)), (1, 4)), n_resamples=300, rng=0)
    assert len(same.tie_groups) == 1
    two = rank_quantizers(
        np.column_stack([rng.normal(15, 0.1, 40), rng.normal(10, 0.1, 40)]), n_resamples=300, rng=0
    )
    assert two.tie_groups == (("q0",), ("q1",))
    with pytest.raises(ValueError, match="name"):
        r.group_of("nope")
