"""ROC metrics against scikit-learn, the slow references, and their defining properties."""

import math

import naive
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from mis import metrics
from mis.exceptions import MisValueError, UndefinedMetricWarning


def _data(rng, n, ties, shift=1.0):
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + shift * y
    if ties:
        s = np.round(s, 1)
    return s, y


@st.composite
def scored(draw, min_size=2, max_size=60, integer=True):
    """Integer scores (ties are common, transforms exact) and labels with both classes."""
    n = draw(st.integers(min_size, max_size))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[0], y[-1] = 0, 1
    s = draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n))
    return np.array(s, dtype=float), np.array(y)


# ------------------------------------------------------------------------------------------
# against scikit-learn and the slow references
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed, ties):
    s, y = _data(np.random.default_rng(seed), 500, ties)
    fpr, tpr, thr = metrics.roc_curve(s, y)
    fpr_sk, tpr_sk, thr_sk = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, tpr_sk, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thr, thr_sk)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn(seed, ties):
    s, y = _data(np.random.default_rng(seed), 800, ties)
    assert metrics.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-13)


@given(scored())
def test_auc_equals_pairwise_count(data):
    s, y = data
    assert metrics.roc_auc(s, y) == pytest.approx(naive.auc_pairwise(s, y), abs=1e-12)


@given(scored())
def test_auc_is_mann_whitney_u(data):
    s, y = data
    u = stats.mannwhitneyu(s[y == 1], s[y == 0], alternative="two-sided").statistic
    assert metrics.roc_auc(s, y) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


@given(scored(), st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9]), st.booleans())
def test_tpr_at_fpr_matches_reference(data, alpha, strict):
    s, y = data
    compat = "carlini2022" if strict else None
    if alpha < 1 / (y == 0).sum() and not strict:  # (FPR < alpha always has FPR 0: defined)
        with pytest.warns(UndefinedMetricWarning):
            assert np.isnan(metrics.tpr_at_fpr(s, y, alpha, compat=compat))
    else:
        assert metrics.tpr_at_fpr(s, y, alpha, compat=compat) == naive.tpr_at_fpr(
            s, y, alpha, strict
        )


def test_tpr_at_fpr_strict_differs_exactly_at_attained_fpr():
    # 10 non-members, FPR 0.1 is attained exactly: <= includes it, < does not.
    s = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -2.0])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert metrics.tpr_at_fpr(s, y, 0.1) == 1.0
    assert metrics.tpr_at_fpr(s, y, 0.1, compat="carlini2022") == pytest.approx(2 / 3)


def test_tpr_at_fpr_scalar_and_sequence():
    s, y = _data(np.random.default_rng(0), 2000, False)
    one = metrics.tpr_at_fpr(s, y, 0.01)
    many = metrics.tpr_at_fpr(s, y, [0.01, 0.1])
    assert isinstance(one, float)
    assert isinstance(many, np.ndarray) and many.shape == (2,)
    assert many[0] == one and many[1] >= one


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("fpr_min", [1e-5, 1e-3, 0.05])
def test_log_auc_matches_numerical_integration(ties, fpr_min):
    s, y = _data(np.random.default_rng(3), 400, ties)
    assert metrics.log_roc_auc(s, y, fpr_min=fpr_min) == pytest.approx(
        naive.log_auc_numeric(s, y, fpr_min), abs=2e-5
    )


def test_log_auc_of_perfect_and_random_attacks():
    y = np.repeat([0, 1], 5000)
    assert metrics.log_roc_auc(np.arange(10_000.0), y) == pytest.approx(1.0)
    # identical scores: the ROC is the diagonal TPR = FPR
    fpr_min = 1e-5
    chance = (1 - fpr_min) / np.log(1 / fpr_min)
    assert metrics.log_roc_auc(np.zeros(10_000), y, fpr_min=fpr_min) == pytest.approx(chance)


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::mis.exceptions.UndefinedMetricWarning")
@given(scored(), st.sampled_from(["affine", "cube", "exp"]))
def test_metrics_invariant_under_increasing_transforms(data, transform):
    s, y = data
    t = {"affine": 3 * s + 7, "cube": s**3 + s, "exp": np.exp(s / 4)}[transform]
    assert metrics.roc_auc(t, y) == metrics.roc_auc(s, y)
    assert metrics.log_roc_auc(t, y) == metrics.log_roc_auc(s, y)
    alphas = [0.1, 0.25, 0.5]
    assert np.array_equal(
        metrics.tpr_at_fpr(t, y, alphas), metrics.tpr_at_fpr(s, y, alphas), equal_nan=True
    )


@given(scored())
def test_auc_of_negated_scores(data):
    s, y = data
    assert metrics.roc_auc(-s, y) == pytest.approx(1 - metrics.roc_auc(s, y), abs=1e-12)


@given(scored(min_size=40, max_size=200), st.sampled_from(["percentile", "bca"]))
def test_auc_interval_contains_point_estimate(data, method):
    s, y = data
    res = metrics.bootstrap_roc(s, y, fprs=0.5, n_resamples=200, method=method, rng=0)
    for iv in (res.auc, res.log_auc):
        assert iv.low <= iv.estimate <= iv.high


# ------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------
def _kernel_replicates(p, seed, n_resamples):
    return metrics._replicates_from_seed(p, seed, n_resamples)[:, 0, :]


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_replicates_match_python_loop(ties):
    """Same random streams ⇒ the kernel's replicates equal a from-scratch Python loop."""
    rng = np.random.default_rng(11)
    s, y = _data(rng, 60, ties)
    seed = 123456789
    fprs = np.array([0.2, 0.05])  # not increasing: the kernel sorts them and back
    p = metrics._prepare([s], y, fprs, None, None, 1e-3)
    got = _kernel_replicates(p, seed, 25)
    want = naive.bootstrap_replicates(s, y, fprs, seed, 25, fpr_min=1e-3)
    np.testing.assert_array_equal(got[:, :2], want[:, :2])
    np.testing.assert_allclose(got[:, 2], want[:, 2], atol=1e-12)
    np.testing.assert_allclose(got[:, 3], want[:, 3], atol=1e-4)


@st.composite
def weighted(draw, max_size=40):
    """Scores (tied integers or distinct floats), labels and integer weights, some zero."""
    s, y = draw(scored(min_size=2, max_size=max_size))
    if draw(st.booleans()):  # tie-free: the kernel's fast path
        s = s + np.arange(s.size) * 1e-3
    w = np.array(draw(st.lists(st.integers(0, 3), min_size=s.size, max_size=s.size)))
    w[0], w[-1] = max(w[0], 1), max(w[-1], 1)  # both classes keep some weight
    return s, y, w


def _weighted_kernel(p, w, fprs, simple=None, log_table=None):
    """Kernel metrics of the data weighted by ``w`` (original order), TPRs in ``fprs`` order."""
    cn = np.concatenate([[0], np.cumsum(w[p.neg_obs])]).astype(np.int32)
    cp = np.concatenate([[0], np.cumsum(w[p.pos_obs])]).astype(np.int32)
    out = np.empty(len(fprs) + 2)
    metrics._roc.roc_metrics(
        cn,
        cp,
        p.neg_end[0],
        p.pos_lo[0],
        p.pos_hi[0],
        p.n_groups[0],
        p.simple[0] if simple is None else simple,
        p.kernel_fprs,
        p.strict,
        p.fpr_min,
        p.log_table if log_table is None else log_table,
        out,
    )
    return p.unsort(out)


@pytest.mark.filterwarnings("ignore::mis.exceptions.UndefinedMetricWarning")
@given(weighted(), st.booleans())
def test_weighted_kernel_matches_replicated_data(data, strict):
    """Counts as weights = the data with each observation repeated that often."""
    s, y, w = data
    fprs = [0.3, 0.1, 0.5]
    p = metrics._prepare([s], y, fprs, None, "carlini2022" if strict else None, 1e-3)
    got = _weighted_kernel(p, w, fprs)
    rs, ry = np.repeat(s, w), np.repeat(y, w)
    for j, a in enumerate(fprs):
        assert got[j] == naive.tpr_at_fpr(rs, ry, a, strict)
    assert got[3] == pytest.approx(naive.auc_pairwise(rs, ry), abs=1e-12)
    assert got[4] == pytest.approx(naive.log_auc_numeric(rs, ry, 1e-3), abs=2e-5)


@pytest.mark.filterwarnings("ignore::mis.exceptions.UndefinedMetricWarning")
@given(weighted())
def test_fast_and_general_paths_agree(data):
    """The tie-free fast path, the general path and its np.log fallback give the same numbers."""
    s, y, w = data
    s = s + np.arange(s.size) * 1e-3  # tie-free
    fprs = [0.1, 0.5]
    p = metrics._prepare([s], y, fprs, None, None, 1e-3)
    assert p.simple[0] and p.n_groups[0] == (y == 0).sum()
    fast = _weighted_kernel(p, w, fprs)
    general = _weighted_kernel(p, w, fprs, simple=False)
    no_table = _weighted_kernel(p, w, fprs, simple=False, log_table=np.zeros(1))
    assert np.array_equal(fast, general)
    np.testing.assert_allclose(no_table, fast, rtol=1e-13, atol=0)


def test_layout_marks_ties_between_the_classes():
    y = np.array([1, 0, 0, 1, 0, 1])
    p = metrics._prepare([np.array([5.0, 4, 3, 2, 1, 0])], y, [0.5], None, None, 1e-3)
    assert p.simple[0]
    np.testing.assert_array_equal(p.pos_lo[0], [1, 1, 2])
    # a member tied with a non-member, and two tied non-members: the general path
    p = metrics._prepare([np.array([5.0, 4, 4, 2, 1, 1])], y, [0.5], None, None, 1e-3)
    assert not p.simple[0] and p.n_groups[0] == 2
    np.testing.assert_array_equal(p.neg_end[0, :2], [2, 3])
    np.testing.assert_array_equal(p.pos_lo[0, :2], [1, 2])
    np.testing.assert_array_equal(p.pos_hi[0, :2], [1, 3])


def _stream_draws(seed: int, index: int, n: int, count: int) -> list[int]:
    """``count`` draws in [0, n) of stream ``index`` of ``seed`` (the naive splitmix64 twins)."""
    state = naive.stream_state(seed, index)
    out = []
    for _ in range(count):
        state, r = naive.next_below(state, n)
        out.append(r)
    return out


def test_splitmix_stream_matches_python():
    from mis._kernels.random import next_below, stream_state

    seed, index, n = np.uint64(2**63 - 25), 7, 1000
    state = stream_state(seed, index)
    got = []
    for _ in range(50):
        state, r = next_below(np.uint64(state), n)
        got.append(int(r))
    assert got == _stream_draws(int(seed), index, n, 50)


def test_cluster_bootstrap_matches_python_loop():
    rng = np.random.default_rng(5)
    s, y = _data(rng, 90, True)
    groups = np.repeat(np.arange(9), 10)
    p = metrics._prepare([s], y, [0.1], groups, None, 1e-3)
    seed = 99
    got = _kernel_replicates(p, seed, 20)
    for b in range(20):
        draws = _stream_draws(seed, b, 9, 9)
        idx = np.concatenate([np.flatnonzero(groups == g) for g in draws])
        ss, yy = s[idx], y[idx]
        if yy.min() == yy.max():
            assert np.isnan(got[b]).all()
            continue
        assert got[b, 0] == naive.tpr_at_fpr(ss, yy, 0.1)
        assert got[b, 1] == pytest.approx(naive.auc_pairwise(ss, yy), abs=1e-12)


def test_cluster_bootstrap_with_heavy_resamples_matches_python_loop():
    """Unequal clusters: a resample can weigh more than n (past the log table's end)."""
    rng = np.random.default_rng(6)
    y = np.concatenate([np.zeros(30, int), np.ones(4, int), rng.integers(0, 2, 16)])
    y[-1] = 0
    s = rng.normal(size=y.size) + y
    groups = np.concatenate([np.zeros(30, int), np.ones(4, int), 2 + np.arange(16)])
    p = metrics._prepare([s], y, [0.2], groups, None, 1e-3)
    seed = 31
    got = _kernel_replicates(p, seed, 30)
    heavy = 0
    for b in range(30):
        draws = _stream_draws(seed, b, p.n_clusters, p.n_clusters)
        idx = np.concatenate([np.flatnonzero(groups == g) for g in draws])
        ss, yy = s[idx], y[idx]
        if yy.min() == yy.max():
            assert np.isnan(got[b]).all()
            continue
        heavy += (yy == 0).sum() > y.size
        assert got[b, 0] == naive.tpr_at_fpr(ss, yy, 0.2)
        assert got[b, 1] == pytest.approx(naive.auc_pairwise(ss, yy), abs=1e-12)
        assert got[b, 2] == pytest.approx(naive.log_auc_numeric(ss, yy, 1e-3), abs=2e-5)
    assert heavy > 0  # the np.log fallback was exercised


def test_bootstrap_is_reproducible_and_thread_independent():
    s, y = _data(np.random.default_rng(0), 3000, False)
    a = metrics.bootstrap_roc(s, y, n_resamples=300, rng=42)
    b = metrics.bootstrap_roc(s, y, n_resamples=300, rng=np.random.default_rng(42))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = metrics.bootstrap_roc(s, y, n_resamples=300, rng=42)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(a.replicates, b.replicates)
    assert np.array_equal(a.replicates, c.replicates)
    assert a == c
    d = metrics.bootstrap_roc(s, y, n_resamples=300, rng=43)
    assert not np.array_equal(a.replicates, d.replicates)


def test_bootstrap_result_fields():
    s, y = _data(np.random.default_rng(1), 4000, False)
    res = metrics.bootstrap_roc(s, y, fprs=(1e-3, 1e-2), n_resamples=200, rng=0)
    assert res.names() == ["tpr@0.001fpr", "tpr@0.01fpr", "auc", "log_auc"]
    assert res.replicates.shape == (200, 4) and not res.replicates.flags.writeable
    assert res.auc.estimate == metrics.roc_auc(s, y)
    assert res.tpr[1].estimate == metrics.tpr_at_fpr(s, y, 1e-2)
    assert set(res.as_dict()["auc"]) == {"estimate", "low", "high"}
    with pytest.raises(AttributeError):
        res.auc = None  # frozen


def test_bca_acceleration_matches_delete_one_jackknife():
    """Blocks of one observation: the kernel's jackknife is the exact delete-one jackknife."""
    s, y = _data(np.random.default_rng(8), 80, True)
    p = metrics._prepare([s], y, [0.1], None, None, 1e-3)
    accel = metrics._jackknife_acceleration(p, lambda t: t[:, 0, :])
    assert accel[1] == pytest.approx(naive.auc_jackknife_acceleration(s, y), rel=1e-9)


def test_compare_replicates_match_python_loop():
    """Both scorings are evaluated on the same resampled observations."""
    rng = np.random.default_rng(2)
    s, y = _data(rng, 60, True)
    s2 = s + rng.normal(size=s.size)
    cmp = metrics.compare_roc(s, s2, y, fprs=0.2, n_resamples=20, rng=7, fpr_min=1e-3)
    seed = int(np.random.default_rng(7).integers(0, 2**63, dtype=np.int64))
    ra = naive.bootstrap_replicates(s, y, [0.2], seed, 20, fpr_min=1e-3)
    rb = naive.bootstrap_replicates(s2, y, [0.2], seed, 20, fpr_min=1e-3, order_scores=s)
    np.testing.assert_allclose(cmp.replicates[:, :2], (ra - rb)[:, :2], atol=1e-12)
    np.testing.assert_allclose(cmp.replicates[:, 2], (ra - rb)[:, 2], atol=2e-4)


def test_compare_detects_a_real_difference():
    rng = np.random.default_rng(2)
    s, y = _data(rng, 3000, False)
    s2 = s + rng.normal(size=s.size)
    cmp = metrics.compare_roc(s, s2, y, n_resamples=200, rng=7)
    a = metrics.roc_auc(s, y)
    b = metrics.roc_auc(s2, y)
    assert cmp.auc.estimate == pytest.approx(a - b)
    assert cmp.auc.low < cmp.auc.estimate < cmp.auc.high
    assert cmp.auc.estimate > 0 and cmp.auc.pvalue < 0.01  # noise lowers the AUC clearly


def test_compare_identical_scorings():
    s, y = _data(np.random.default_rng(4), 1000, True)
    cmp = metrics.compare_roc(s, s, y, fprs=0.05, n_resamples=100, rng=0)
    assert cmp.auc == metrics.Difference(0.0, 0.0, 0.0, 1.0)


def test_compare_p_values_are_uniform_under_the_null():
    """Two exchangeable noisy copies of one signal: p-values of the AUC difference ~ U(0, 1)."""
    rng = np.random.default_rng(10)
    pvals = []
    for _ in range(60):
        y = np.repeat([0, 1], 150)
        base = rng.normal(size=300) + 0.8 * y
        a = base + rng.normal(size=300)
        b = base + rng.normal(size=300)
        pvals.append(metrics.compare_roc(a, b, y, fprs=0.1, n_resamples=200, rng=rng).auc.pvalue)
    pvals = np.array(pvals)
    assert 0.02 <= (pvals < 0.1).mean() <= 0.25
    assert stats.kstest(pvals, "uniform").pvalue > 0.001


def _coverage(n_sets, n, n_resamples, method, seed):
    """Share of data sets whose 95 % interval covers the population TPR@1%FPR and AUC."""
    mu = 1.5  # members ~ N(mu, 1), non-members ~ N(0, 1)
    true_auc = stats.norm.cdf(mu / np.sqrt(2))
    true_tpr = stats.norm.sf(stats.norm.isf(0.01) - mu)
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n)
    hits = np.zeros(2)
    for _ in range(n_sets):
        s = rng.normal(size=2 * n) + mu * y
        res = metrics.bootstrap_roc(
            s, y, fprs=0.01, n_resamples=n_resamples, method=method, rng=rng
        )
        hits += [
            res.tpr[0].low <= true_tpr <= res.tpr[0].high,
            res.auc.low <= true_auc <= res.auc.high,
        ]
    return hits / n_sets


def test_bootstrap_coverage_quick():
    cov = _coverage(n_sets=80, n=2000, n_resamples=400, method="percentile", seed=0)
    # 80 sets: a true 95 % coverage lands in [0.85, 1] with probability > 0.99
    assert (cov >= 0.85).all(), cov


@pytest.mark.slow
@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_coverage_nominal(method):
    cov = _coverage(n_sets=400, n=2000, n_resamples=1000, method=method, seed=1)
    assert ((cov >= 0.92) & (cov <= 0.98)).all(), cov


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
GOOD_S = np.array([0.1, 0.4, 0.35, 0.8])
GOOD_Y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [0.1, np.nan, 0.3, 0.4]}, "scores must be finite"),
        ({"scores": [0.1, np.inf, 0.3, 0.4]}, "scores must be finite"),
        ({"labels": [0, 2, 1, 1]}, "labels must contain only 0"),
        ({"labels": [1, 1, 1, 1]}, "labels must contain both"),
        ({"labels": [0, 1, 1]}, "labels must have the same length"),
        ({"scores": [[0.1, 0.2]], "labels": [0, 1]}, "scores must be 1-D"),
        ({"fpr": 0.0}, "fpr must be in the open interval"),
        ({"fpr": 1.5}, "fpr must be in the open interval"),
        ({"compat": "sklearn"}, "compat must be one of"),
    ],
)
def test_tpr_at_fpr_bad_input(kwargs, match):
    args = {"scores": GOOD_S, "labels": GOOD_Y, "fpr": 0.5, **kwargs}
    with pytest.raises(MisValueError, match=match):
        metrics.tpr_at_fpr(args.pop("scores"), args.pop("labels"), **args)


def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="scores"):
        metrics.roc_auc([np.nan, 1.0], [0, 1])


def test_fpr_below_floor_is_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="resolvable floor"):
        out = metrics.tpr_at_fpr(GOOD_S, GOOD_Y, [0.1, 0.5])
    assert np.isnan(out[0]) and out[1] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_resamples": 0}, "n_resamples"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"method": "basic"}, "method"),
        ({"groups": [0, 0, 1]}, "groups"),
        ({"groups": [0, 0, 0, 0]}, "groups"),
        ({"fprs": [0.1, -0.1]}, "fprs"),
        ({"fpr_min": 0}, "fpr_min"),
        ({"rng": "seed"}, "rng"),
    ],
)
def test_bootstrap_bad_input(kwargs, match):
    with pytest.raises(MisValueError, match=match):
        metrics.bootstrap_roc(GOOD_S, GOOD_Y, **{"fprs": 0.5, **kwargs})


def test_compare_bad_input_names_the_scoring():
    with pytest.raises(MisValueError, match="scores_b"):
        metrics.compare_roc(GOOD_S, [0, 1, np.nan, 2], GOOD_Y, fprs=0.5)


def test_cluster_weights_that_could_overflow_are_refused():
    """n_groups * largest group >= 2**31 could overflow the int32 counts: refused up front."""
    n = 100_000
    y = np.tile([0, 1], n // 2)
    s = np.arange(n, dtype=float)
    groups = np.concatenate([np.zeros(n // 2, int), 1 + np.arange(n // 2)])
    with pytest.raises(MisValueError, match="groups must satisfy"):
        metrics.bootstrap_roc(s, y, fprs=0.5, n_resamples=2, groups=groups)


# -- summaries over replicates and multiple testing (t_interval, holm) ----------------------------
def test_holm_matches_statsmodels(monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    monkeypatch.setattr(gc, "collect", lambda *a: 0)  # statsmodels collects on every call
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 15))
        p[rng.random(p.size) < 0.2] = np.nan
        adj, rej = metrics.holm(p, 0.05)
        ok = np.isfinite(p)
        assert np.isnan(adj[~ok]).all() and not rej[~ok].any()
        if ok.any():
            r, a, _, _ = multipletests(p[ok], alpha=0.05, method="holm")
            np.testing.assert_allclose(adj[ok], a, rtol=1e-12)
            np.testing.assert_array_equal(rej[ok], r)
            assert (adj[ok] >= p[ok]).all()


def test_t_interval():
    v = np.array([0.1, 0.3, 0.2, np.nan, 0.25])
    d = metrics.t_interval(v, 0.9)
    f = v[np.isfinite(v)]
    lo, hi = stats.t.interval(0.9, f.size - 1, loc=f.mean(), scale=stats.sem(f))
    assert d["n"] == 4 and math.isclose(d["mean"], f.mean())
    assert math.isclose(d["low"], lo) and math.isclose(d["high"], hi)
    assert math.isnan(metrics.t_interval([0.5])["sd"]) and metrics.t_interval([])["n"] == 0


def test_t_interval_and_holm_bad_input():
    with pytest.raises(MisValueError, match="confidence_level"):
        metrics.t_interval([1.0, 2.0], 1.0)
    with pytest.raises(MisValueError, match="alpha"):
        metrics.holm([0.01, 0.02], 0.0)
