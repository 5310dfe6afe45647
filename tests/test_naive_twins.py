"""Every public numba kernel of ``mis/_kernels`` has a naive twin of the same name, and they agree.

A kernel is a numba dispatcher defined in a module of :mod:`mis._kernels` whose name has no
leading underscore (the ``_config`` decorators ``jit`` / ``parallel_jit`` are plain
functions, and a dispatcher imported from a sibling module counts only where it is defined).
:func:`test_every_kernel_has_a_naive_twin` checks that ``naive.<name>`` exists with the same
parameters; :func:`test_every_kernel_is_compared_with_its_twin` that a test below compares
the pair (each test names the kernels it covers with ``@twin``). Inputs are seeded random
draws; floating-point results that the two compute in a different order are compared to
rounding, everything else exactly.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import naive
import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher
from scipy import stats

import mis._kernels
from mis import metrics
from mis._kernels import attacks_signals, fused, lira, quant, roc, rq, stacked, streaming
from mis._kernels import random as krandom

# metrics._prepare warns about FPR levels below 1/n_negatives: irrelevant to the kernels
pytestmark = pytest.mark.filterwarnings("ignore::mis.exceptions.UndefinedMetricWarning")


def _public_kernels() -> dict[str, Dispatcher]:
    """``{name: dispatcher}`` of every public numba kernel, keyed by ``module.name``."""
    found = {}
    for info in pkgutil.iter_modules(mis._kernels.__path__):
        module = importlib.import_module(f"mis._kernels.{info.name}")
        for name, obj in vars(module).items():
            if (
                isinstance(obj, Dispatcher)
                and not name.startswith("_")
                and obj.py_func.__module__ == module.__name__
            ):
                found[f"{info.name}.{name}"] = obj
    return found


KERNELS = _public_kernels()
COMPARED: set[str] = set()


def twin(*names):
    """Mark a test as the comparison of the kernels ``names`` (``module.name``) with their twins."""
    COMPARED.update(names)
    return lambda test: test


def test_every_kernel_has_a_naive_twin():
    assert len(KERNELS) >= 20  # the rule found the kernels (not an empty package walk)
    for key, kernel in KERNELS.items():
        name = key.split(".")[1]
        ref = getattr(naive, name, None)
        assert callable(ref), f"tests/naive.py has no twin of mis._kernels.{key}"
        want = list(inspect.signature(kernel.py_func).parameters)
        assert list(inspect.signature(ref).parameters) == want, f"naive.{name} parameters"


def test_every_kernel_is_compared_with_its_twin():
    assert set(KERNELS) == COMPARED


def test_config_decorators_are_not_kernels():
    assert not any(key.startswith("_config.") for key in KERNELS)


def _close(got, want, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# ------------------------------------------------------------------------------------------
# mis._kernels.random
# ------------------------------------------------------------------------------------------
@twin("random.stream_state", "random.next_below", "random.two_below")
def test_random_streams():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seed, index = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**40))
        n = int(rng.integers(1, 2**24))
        got = krandom.stream_state(np.uint64(seed), index)
        want = naive.stream_state(seed, index)
        assert int(got) == want
        for _ in range(5):
            got, r = krandom.next_below(np.uint64(got), n)
            want, r_want = naive.next_below(want, n)
            assert (int(got), int(r)) == (want, r_want)
            got, r1, r2 = krandom.two_below(np.uint64(got), n)
            want, r1_want, r2_want = naive.two_below(want, n)
            assert (int(got), int(r1), int(r2)) == (want, r1_want, r2_want)


# ------------------------------------------------------------------------------------------
# mis._kernels.roc
# ------------------------------------------------------------------------------------------
def _scores(rng, n, ties):
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + y
    return (np.round(s, 1) if ties else s), y


def _compare_metrics(got, want, k):
    """TPR columns exactly, AUC and log-AUC to rounding (NaN in the same places)."""
    np.testing.assert_array_equal(got[..., :k], want[..., :k])
    _close(got[..., k:], want[..., k:])


@twin("roc.roc_points")
def test_roc_points():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 40):
        s, y = np.round(rng.normal(size=n), 1), rng.integers(0, 2, n)
        order = np.argsort(-s, kind="stable")
        is_end = np.append(s[order][:-1] != s[order][1:], True)
        got = roc.roc_points(y[order].astype(np.int64), is_end)
        for g, w in zip(got, naive.roc_points(y[order], is_end), strict=True):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype


@twin("roc.roc_metrics")
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("strict", [False, True])
def test_roc_metrics(ties, strict):
    rng = np.random.default_rng(2 + ties + 2 * strict)
    fprs = [0.01, 0.1, 0.25, 0.5]
    for _ in range(12):
        s, y = _scores(rng, int(rng.integers(2, 60)), ties)
        p = metrics._prepare([s], y, fprs, None, "carlini2022" if strict else None, 1e-2)
        n_neg, n_pos = p.neg_perm.shape[1], p.pos_perm.shape[1]
        for weights in ("ones", "counts", "heavy"):
            if weights == "ones":
                w_neg, w_pos = np.ones(n_neg, np.int32), np.ones(n_pos, np.int32)
            else:
                hi = 3 if weights == "counts" else 4 * (n_neg + n_pos)  # past the log table
                w_neg = rng.integers(0, hi, n_neg).astype(np.int32)
                w_pos = rng.integers(0, hi, n_pos).astype(np.int32)
            cn = np.concatenate([[0], np.cumsum(w_neg)]).astype(np.int32)
            cp = np.concatenate([[0], np.cumsum(w_pos)]).astype(np.int32)
            args = (cn, cp, p.neg_end[0], p.pos_lo[0], p.pos_hi[0], p.n_groups[0], p.simple[0])
            got = np.empty(len(fprs) + 2)
            want = np.empty(len(fprs) + 2)
            roc.roc_metrics(*args, *p.kernel_args(), got)
            naive.roc_metrics(*args, *p.kernel_args(), want)
            _compare_metrics(got, want, len(fprs))


@twin("roc.bootstrap_metrics")
@pytest.mark.parametrize("clusters", [False, True])
def test_bootstrap_metrics(clusters):
    rng = np.random.default_rng(3 + clusters)
    fprs = [0.05, 0.2]
    for ties in (False, True):
        s, y = _scores(rng, 41, ties)
        s2 = s + rng.normal(scale=0.7, size=s.size)
        groups = rng.integers(0, 9, s.size) if clusters else None
        p = metrics._prepare([s, s2], y, fprs, groups, None, 1e-2)
        args = (*p.layout(), p.neg_clusters, p.pos_clusters, p.n_clusters, *p.kernel_args())
        got = roc.bootstrap_metrics(*args, np.uint64(12345), 15)
        want = naive.bootstrap_metrics(*args, 12345, 15)
        assert got.shape == want.shape == (15, 2, len(fprs) + 2)
        _compare_metrics(got, want, len(fprs))


@twin("roc.jackknife_metrics")
def test_jackknife_metrics():
    rng = np.random.default_rng(5)
    fprs = [0.05, 0.2]
    for ties in (False, True):
        s, y = _scores(rng, 37, ties)
        p = metrics._prepare([s, -s + rng.normal(size=s.size)], y, fprs, None, None, 1e-2)
        n_blocks = 6
        neg_blocks = rng.integers(-1, n_blocks, p.neg_perm.shape[1]).astype(np.int32)
        pos_blocks = rng.integers(-1, n_blocks, p.pos_perm.shape[1]).astype(np.int32)
        args = (*p.layout(), neg_blocks, pos_blocks, n_blocks, *p.kernel_args())
        _compare_metrics(roc.jackknife_metrics(*args), naive.jackknife_metrics(*args), len(fprs))


# ------------------------------------------------------------------------------------------
# mis._kernels.attacks_signals
# ------------------------------------------------------------------------------------------
@twin("attacks_signals.logit_transform")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logit_transform(dtype):
    rng = np.random.default_rng(6)
    logits = (rng.normal(size=(3, 20, 2, 5)) * 8).astype(dtype)
    logits[1, 4, 0] = [60.0, -60.0, 0.0, 1.0, 59.0]  # far apart: no overflow, no log(0)
    labels = rng.integers(0, 5, 20)
    for kind in (attacks_signals.SIGNAL, attacks_signals.LOG_PROB):
        got, want = np.zeros((3, 20, 2)), np.zeros((3, 20, 2))
        assert attacks_signals.logit_transform(logits, labels, 3, 17, kind, got) == 0
        assert naive.logit_transform(logits, labels, 3, 17, kind, want) == 0
        _close(got, want, rtol=1e-12, atol=1e-12)
    bad = logits.copy()
    bad[0, 5, 1, 2] = np.nan
    bad[2, 9, 0, 0] = np.inf
    bad[2, 18, 0, 0] = np.inf  # outside 3:17: not counted
    out = np.zeros((3, 20, 2))
    assert attacks_signals.logit_transform(bad, labels, 3, 17, 0, out) == 2
    assert naive.logit_transform(bad, labels, 3, 17, 0, out) == 2


# ------------------------------------------------------------------------------------------
# mis._kernels.lira
# ------------------------------------------------------------------------------------------
def _lira_data(rng, n_models=7, n_examples=30, n_queries=2):
    signals = rng.normal(size=(n_models, n_examples, n_queries)) * 2 + 1
    signals[:, 3] += 1e6  # far from 0: the shifted sums must not lose digits
    keep = rng.random((n_models, n_examples)) < 0.5
    keep[:, 0] = True  # never OUT
    keep[:, 1] = False  # never IN
    keep[:, 2] = False
    keep[0, 2] = True  # a single IN model
    signals[:, 5, 1] = 0.25  # a constant signal: ss = 0
    return signals, keep


def _stats_outputs(shape):
    return [np.full(shape, -7.0) for _ in range(4)]


@twin("lira.shadow_stats")
@pytest.mark.parametrize("median", [False, True])
def test_shadow_stats(median):
    rng = np.random.default_rng(7 + median)
    signals, keep = _lira_data(rng)
    for target, start, stop in ((0, 0, 30), (3, 2, 21), (6, 10, 30)):
        got, want = _stats_outputs((stop - start, 2)), _stats_outputs((stop - start, 2))
        n_got, n_want = np.empty(stop - start, np.int64), np.empty(stop - start, np.int64)
        b_got = lira.shadow_stats(signals, keep, target, start, stop, median, *got, n_got)
        b_want = naive.shadow_stats(signals, keep, target, start, stop, median, *want, n_want)
        assert b_got == b_want == 0
        np.testing.assert_array_equal(n_got, n_want)
        for g, w in zip(got, want, strict=True):
            _close(g, w, rtol=1e-9, atol=1e-9)
    # a non-finite signal is counted (the caller raises); the other pairs are unaffected
    signals[4, 7, 1] = np.nan
    signals[2, 9, 0] = np.inf
    got, want = _stats_outputs((30, 2)), _stats_outputs((30, 2))
    n_in = np.empty(30, np.int64)
    assert lira.shadow_stats(signals, keep, 1, 0, 30, median, *got, n_in) == 2
    assert naive.shadow_stats(signals, keep, 1, 0, 30, median, *want, n_in) == 2
    finite = np.isfinite(signals).all(axis=0)
    for g, w in zip(got, want, strict=True):
        _close(g[finite], w[finite], rtol=1e-9, atol=1e-9)


@twin("lira.loo_stats")
@pytest.mark.parametrize("median", [False, True])
def test_loo_stats(median):
    rng = np.random.default_rng(9 + median)
    signals, keep = _lira_data(rng)
    for start, stop in ((0, 30), (4, 19)):
        got, want = _stats_outputs((7, stop - start, 2)), _stats_outputs((7, stop - start, 2))
        assert lira.loo_stats(signals, keep, start, stop, median, *got) == 0
        assert naive.loo_stats(signals, keep, start, stop, median, *want) == 0
        for g, w in zip(got, want, strict=True):
            _close(g, w, rtol=1e-9, atol=1e-9)
    signals[4, 7, 1] = np.nan
    got, want = _stats_outputs((7, 30, 2)), _stats_outputs((7, 30, 2))
    assert lira.loo_stats(signals, keep, 0, 30, median, *got) == 1
    assert naive.loo_stats(signals, keep, 0, 30, median, *want) == 1
    finite = np.isfinite(signals).all(axis=0)
    for g, w in zip(got, want, strict=True):
        _close(g[:, finite], w[:, finite], rtol=1e-9, atol=1e-9)


@twin("lira.online_scores")
def test_online_scores():
    rng = np.random.default_rng(11)
    n, q = 25, 3
    s, mu_in, mu_out = (rng.normal(size=(n, q)) for _ in range(3))
    n_in, n_out = rng.integers(1, 9, n), rng.integers(1, 9, n)
    ss_in = rng.gamma(2.0, 1.0, (n, q)) * n_in[:, None]
    ss_out = rng.gamma(2.0, 1.0, (n, q)) * n_out[:, None]
    ss_in[::4] = 0.0  # raised to the floor
    ss_out[1::5, 0] = 1e-9
    got, want = np.empty(n), np.empty(n)
    raised = lira.online_scores(s, mu_in, ss_in, n_in, mu_out, ss_out, n_out, 1e-3, got)
    assert raised == naive.online_scores(s, mu_in, ss_in, n_in, mu_out, ss_out, n_out, 1e-3, want)
    assert raised > 0
    _close(got, want, rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------------------------------
# mis._kernels.rq
# ------------------------------------------------------------------------------------------
def _rq_blocks():
    """(L, h) blocks: random, with duplicate rows / hashes, and each degenerate case."""
    rng = np.random.default_rng(12)
    out = []
    for dtype in (np.float64, np.float32):
        for _ in range(6):
            k, n = int(rng.integers(2, 8)), int(rng.integers(3, 40))
            L = rng.gamma(2.0, 0.5, (k, n)).astype(dtype)
            if k > 2:
                L[-1] = L[0]  # an identical row
            out.append((L, rng.integers(0, max(2, k - 1), k)))
    base = rng.integers(0, 8, 16).astype(np.float64) / 4  # dyadic: exact arithmetic
    out.append((np.stack([base, base, base]), np.zeros(3, np.int64)))  # one point
    out.append((np.stack([base, base + 0.5, base + 1.0]), np.arange(3)))  # zero variance
    out.append((np.stack([[1.0, 2, 3, 4], [2.0, 1, 3, 4], [3.0, 2, 1, 4]]), np.arange(3)))  # δ = 0
    nan = rng.random((3, 5))
    nan[1, 2] = np.nan
    out.append((nan, np.arange(3)))
    return out


@twin("rq.rq_block")
@pytest.mark.parametrize("ddof", [0, 1])
def test_rq_block(ddof):
    for L, h in _rq_blocks():
        for use_hash in (False, True):
            k, n = L.shape
            res = {}
            for who, fn in (("kernel", rq.rq_block), ("naive", naive.rq_block)):
                diag = [np.empty(k), np.empty(k, np.int64), np.empty(k), np.empty(k), np.empty(k)]
                ret = fn(L, h.astype(np.int64), use_hash, ddof, *diag, np.empty(n))
                res[who] = (ret, diag)
            (st, v, d2, nd, best, am), (means, kept, deltas, variances, ratios) = res["kernel"]
            want, (w_means, w_kept, w_deltas, w_variances, w_ratios) = res["naive"]
            assert (st, nd, best, am) == (want[0], want[3], want[4], want[5])
            _close([v, d2], [want[1], want[2]])
            if st == rq.NON_FINITE:
                continue
            np.testing.assert_array_equal(kept[:nd], w_kept[:nd])
            _close(means, w_means, rtol=1e-14)
            for g, w in ((deltas, w_deltas), (variances, w_variances), (ratios, w_ratios)):
                _close(g[:nd], w[:nd])


@twin("rq.rq_many")
def test_rq_many():
    rng = np.random.default_rng(13)
    L = rng.gamma(2.0, 0.5, (3, 2, 5, 20)).astype(np.float32)
    L[1, 0, 3] = L[1, 0, 1]
    L[2, 1] = L[2, 1, 0]  # one distinct point
    L[0, 1, 2, 4] = np.inf
    H = rng.integers(0, 4, (3, 2, 5))
    for use_hash in (False, True):
        outs = {}
        for who, fn in (("kernel", rq.rq_many), ("naive", naive.rq_many)):
            o = [np.empty((3, 2)), np.empty((3, 2))]
            o += [np.empty((3, 2), np.int64) for _ in range(3)]
            status = np.empty((3, 2), np.int8)
            fn(L, H, use_hash, 1, *o, status)
            outs[who] = (o, status)
        (got, st), (want, st_want) = outs["kernel"], outs["naive"]
        np.testing.assert_array_equal(st, st_want)
        _close(got[0], want[0])
        _close(got[1], want[1])
        for g, w in zip(got[2:], want[2:], strict=True):
            np.testing.assert_array_equal(g, w)


def _rank_inputs(x, y):
    rx = stats.rankdata(x) - (len(x) + 1) / 2
    ry = stats.rankdata(y) - (len(y) + 1) / 2
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    rho = float(rx @ ry)
    tau = float(np.triu(sx * sy, 1).sum())
    return rx, ry, sx, sy, rho, tau


@twin("rq.exact_permutation_counts")
def test_exact_permutation_counts():
    rng = np.random.default_rng(14)
    for q in (3, 5, 6):
        x = rng.integers(0, 4, q).astype(float)  # ties
        y = x + rng.normal(size=q)
        args = (*_rank_inputs(x, y), 1e-9)
        got = rq.exact_permutation_counts(*args)
        assert tuple(int(v) for v in got) == naive.exact_permutation_counts(*args)


@twin("rq.random_permutation_counts")
def test_random_permutation_counts():
    rng = np.random.default_rng(15)
    x = rng.normal(size=7)
    args = (*_rank_inputs(x, x + rng.normal(size=7)), 1e-9)
    got = rq.random_permutation_counts(*args, np.uint64(777), 300)
    assert tuple(int(v) for v in got) == naive.random_permutation_counts(*args, 777, 300)


# ------------------------------------------------------------------------------------------
# mis._kernels.quant
# ------------------------------------------------------------------------------------------
@twin("quant.pow_approx")
def test_pow_approx():
    rng = np.random.default_rng(16)
    x = (rng.random(300) * 10.0 ** rng.uniform(-30, 3, 300)).astype(np.float32)
    for p in (1.0, 2.0, 2.4, 3.5):
        for v in [*x, np.float32(0.0), np.float32(1.0)]:
            got = float(quant.pow_approx(v, np.float32(p)))
            want = naive.pow_approx(v, p)
            if want >= 2.0**-125:
                assert abs(got - want) <= quant.POW_REL_ERR * want
            else:
                assert got in (0.0, pytest.approx(want, rel=quant.POW_REL_ERR))


def _search_inputs(rng, symmetric, rows=3, k=70):
    x = (rng.normal(0, 0.05, (rows, k)) + rng.choice([0.0, 0.03])).astype(np.float32)
    lo = np.minimum(x.min(1), 0).astype(np.float32)
    hi = np.maximum(x.max(1), 0).astype(np.float32)
    if symmetric:
        hi = np.maximum(-lo, hi)
        lo = -hi
    factors = (1.0 - 0.04 * np.arange(20)).astype(np.float32)
    return x, lo, hi, factors


@twin("quant.exact_error")
def test_exact_error():
    rng = np.random.default_rng(17)
    for symmetric in (False, True):
        x, lo, hi, factors = _search_inputs(rng, symmetric)
        for n_levels in (3, 16):
            for f in factors[::5]:
                s, z = naive._grid_of(lo[0], hi[0], f, n_levels, symmetric)
                for p in (2.0, 2.4):
                    got = quant.exact_error(x[0], s, z, np.float32(n_levels - 1), p)
                    assert got == naive.exact_error(x[0], s, z, np.float32(n_levels - 1), p)


@twin("quant.lp_brackets")
def test_lp_brackets_contain_the_naive_error():
    rng = np.random.default_rng(18)
    for symmetric in (False, True):
        x, lo, hi, factors = _search_inputs(rng, symmetric)
        for n_levels, p in ((3, 2.4), (16, 2.0), (4, 3.0)):
            coef, bound = quant.interior_poly(p)
            low, high = np.empty((3, 20)), np.empty((3, 20))
            exact_low, exact_high = np.empty((3, 20)), np.empty((3, 20))
            args = (x, lo, hi, factors, n_levels, symmetric, p, coef, bound)
            quant.lp_brackets(*args, low, high)
            naive.lp_brackets(*args, exact_low, exact_high)
            np.testing.assert_array_equal(exact_low, exact_high)
            assert np.all(low <= exact_low) and np.all(exact_high <= high)


@twin("quant.lp_search_rows")
def test_lp_search_rows():
    # the kernel evaluates few candidates exactly (n_exact); the winner is the same
    rng = np.random.default_rng(19)
    for symmetric in (False, True):
        x, lo, hi, factors = _search_inputs(rng, symmetric, rows=4)
        for n_levels, p in ((3, 2.4), (16, 2.0), (8, 1.0)):
            coef, bound = quant.interior_poly(p)
            best, n_exact = np.empty(4, np.int64), np.empty(4, np.int64)
            want, want_exact = np.empty(4, np.int64), np.empty(4, np.int64)
            args = (x, lo, hi, factors, n_levels, symmetric, p, coef, bound)
            quant.lp_search_rows(*args, best, n_exact)
            naive.lp_search_rows(*args, want, want_exact)
            np.testing.assert_array_equal(best, want)
            assert np.all(n_exact <= want_exact)


# ------------------------------------------------------------------------------------------
# mis._kernels.stacked
# ------------------------------------------------------------------------------------------
@twin("stacked.smallest_mask")
def test_smallest_mask():
    rng = np.random.default_rng(20)
    for n in (1, 5, 40):
        a = (rng.integers(0, 6, n) / 2).astype(np.float32)  # many ties
        for kz in (-1, 0, 1, n // 2, n - 1, n, n + 3):
            got, want = np.empty(n, bool), np.empty(n, bool)
            stacked.smallest_mask(a, kz, got)
            naive.smallest_mask(a, kz, want)
            np.testing.assert_array_equal(got, want)


@twin("stacked.quantize_rows")
def test_quantize_rows():
    rng = np.random.default_rng(21)
    w = (rng.normal(size=(3, 60)) * [[0.01], [1.0], [300.0]]).astype(np.float32)
    w[0, :5] = 0.0
    w[1, 5:9] = w[1, 9]  # ties in |w|
    w[2, 9] = -w[2, 10]
    mag = np.abs(w).max(1)
    alpha = (2.0 ** np.round(np.log2(mag))).astype(np.float32)
    kinds = np.array([stacked.SIGN, stacked.TERNARY, stacked.TERNARY, stacked.BBIT, stacked.BBIT,
                      stacked.BBIT], np.int64)  # fmt: skip
    params = np.array([0.0, 0.3, 0.5, 2.0, 3.0, 5.0])
    got = np.empty((3, 6, 60), np.float32)
    want = np.empty((3, 6, 60), np.float32)
    stacked.quantize_rows(w, alpha, kinds, params, got)
    naive.quantize_rows(w, alpha, kinds, params, want)
    np.testing.assert_array_equal(got, want)


# -- mis._kernels.fused ----------------------------------------------------------------------
@twin("fused.epoch_permutation")
def test_epoch_permutation():
    for seed, epoch, n in [(0, 0, 1), (7, 3, 10), (2**63 - 5, 2999, 128)]:
        got = np.empty(n, np.int64)
        want = np.empty(n, np.int64)
        fused.epoch_permutation(np.uint64(seed), np.uint64(epoch), got)
        naive.epoch_permutation(seed, epoch, want)
        np.testing.assert_array_equal(got, want)
        assert sorted(got.tolist()) == list(range(n))


@twin("fused.linear_adam_epoch")
@pytest.mark.parametrize("c_out, batch, wd", [(1, 4, 0.0), (1, 7, 0.01), (3, 5, 0.0)])
def test_linear_adam_epoch(c_out, batch, wd):
    rng = np.random.default_rng(c_out + batch)
    k, n, f = 3, 18, 11
    phi = rng.normal(size=(k, n, f))
    y = rng.integers(0, 2 if c_out == 1 else c_out, (k, n))
    state = [rng.normal(size=(k, c_out, f)), rng.normal(size=(k, c_out))]
    state += [np.zeros((k, c_out, f)), np.zeros((k, c_out, f)), np.zeros((k, c_out)),
              np.zeros((k, c_out))]  # fmt: skip
    got = [a.copy() for a in state]
    want = [a.copy() for a in state]
    seeds = np.array([3, 4, 5], np.uint64)
    step_got = step_want = 0
    for epoch in range(4):
        w, b, mw, vw, mb, vb = got
        step_got = fused.linear_adam_epoch(phi, y, w, b, mw, vw, mb, vb, seeds, epoch, step_got,
                                           batch, 1e-2, 0.9, 0.999, 1e-8, wd)  # fmt: skip
        w, b, mw, vw, mb, vb = want
        step_want = naive.linear_adam_epoch(phi, y, w, b, mw, vw, mb, vb, seeds, epoch, step_want,
                                            batch, 1e-2, 0.9, 0.999, 1e-8, wd)  # fmt: skip
    assert step_got == step_want == 4 * -(-n // batch)
    for g, w_ in zip(got, want, strict=True):
        _close(g, w_, rtol=1e-9, atol=1e-12)


# -- mis._kernels.streaming ------------------------------------------------------------------
def _stream_inputs(c_out, seed=0, n_val=13, f=6, rows=4, epochs=30):
    """A random walk of quantized points per row (with revisits), as flat float32 with scales."""
    rng = np.random.default_rng(seed)
    phi_t = rng.normal(size=(f, n_val))
    y = rng.integers(0, 2 if c_out == 1 else c_out, n_val)
    scale = np.float32(2.0) ** rng.integers(-3, 2, rows).astype(np.float32)
    codes = rng.integers(-4, 5, (rows, c_out * f))
    bias = rng.normal(size=(rows, c_out)).astype(np.float32)
    seen, traj = [], []
    for _ in range(epochs):
        move = rng.random(rows) < 0.6
        codes = codes + move[:, None] * rng.integers(-1, 2, codes.shape) * (
            rng.random(codes.shape) < 0.3
        )
        codes = np.clip(codes, -8, 8)
        if seen and rng.random() < 0.25:
            codes = seen[rng.integers(len(seen))].copy()
        seen.append(codes.copy())
        flat = np.concatenate(
            [bias, (codes.astype(np.float32) * scale[:, None]).astype(np.float32)], 1
        )
        traj.append(np.ascontiguousarray(flat, dtype=np.float32))
    return phi_t, y, scale, traj


def _stream_state(rows, cap, c_out, f, n_val):
    return {
        "n_changes": np.zeros(rows, np.int64),
        "count": np.zeros(rows, np.int64),
        "fp": np.zeros((rows, cap), np.uint64),
        "table": np.full((rows, 2 * 64), -1, np.int64),
        "pid": np.zeros((rows, cap), np.int64),
        "pool": np.zeros((rows * cap, c_out * f), np.int8),
        "n_pool": np.zeros(1, np.int64),
        "scales": np.zeros((rows, cap), np.float32),
        "biases": np.zeros((rows, cap, c_out), np.float32),
        "means": np.zeros((rows, cap)),
        "m2": np.zeros((rows, cap)),
        "epochs": np.zeros((rows, cap), np.int64),
        "zrow": np.zeros((rows, c_out, n_val)),
        "n_incr": np.zeros(rows, np.int64),
        "losses": np.zeros(n_val),
    }


def _run_stream(module, c_out, traj, phi_t, y, scale, state, mult):
    prev = np.full_like(traj[0], np.nan)
    for epoch, flat in enumerate(traj, start=1):
        s = state
        status = module.stream_update(
            flat, scale, prev, mult, epoch, phi_t, y, s["n_changes"], s["count"], s["fp"],
            s["table"], s["pid"], s["pool"], s["n_pool"], s["scales"], s["biases"], s["means"],
            s["m2"], s["epochs"], s["zrow"], s["n_incr"], s["losses"],
        )  # fmt: skip
        assert status == 0


@twin("streaming.point_losses")
@pytest.mark.parametrize("c_out", [1, 2])
def test_point_losses(c_out):
    phi_t, y, _, traj = _stream_inputs(c_out, seed=4)
    for flat in traj[:5]:
        got = [np.zeros((c_out, y.size)), np.empty(y.size)]
        want = [np.zeros((c_out, y.size)), np.empty(y.size)]
        streaming.point_losses(flat[1], c_out, phi_t, y, *got)
        naive.point_losses(flat[1], c_out, phi_t, y, *want)
        for g, w in zip(got, want, strict=True):
            _close(g, w, rtol=1e-12, atol=1e-13)


@twin("streaming.stream_update", "streaming.stream_finalize")
@pytest.mark.parametrize("c_out", [1, 2])
def test_stream_update_and_finalize(c_out):
    phi_t, y, scale, traj = _stream_inputs(c_out, seed=c_out)
    rows, f, cap = traj[0].shape[0], phi_t.shape[0], len(traj)
    mult = np.random.default_rng(9).integers(0, 2**63, traj[0].shape[1], dtype=np.uint64) * 2 + 1
    got = _stream_state(rows, cap, c_out, f, y.size)
    want = _stream_state(rows, cap, c_out, f, y.size)
    _run_stream(streaming, c_out, traj, phi_t, y, scale, got, mult)
    _run_stream(naive, c_out, traj, phi_t, y, scale, want, mult)
    for name in ("n_changes", "count", "fp", "table", "pid", "pool", "n_pool", "scales", "biases",
                 "epochs", "n_incr"):  # fmt: skip
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in ("means", "m2", "zrow"):  # incremental logits vs fresh ones: rounding
        _close(got[name], want[name], rtol=1e-10, atol=1e-10)
    assert (got["count"] < got["n_changes"]).any()  # revisits were recognised
    outs = {}
    for module, st in (("kernel", got), ("naive", want)):
        o = [np.empty(rows) for _ in range(3)] + [np.empty(rows, np.int64) for _ in range(3)]
        o.append(np.empty(rows, np.int8))
        mod = streaming if module == "kernel" else naive
        mod.stream_finalize(st["count"], st["pid"], st["pool"], st["scales"], st["biases"],
                            st["means"], st["m2"], st["epochs"], phi_t, y, 1, 4, *o)  # fmt: skip
        outs[module] = o
    for i, (g, w) in enumerate(zip(outs["kernel"], outs["naive"], strict=True)):
        if i == 5:  # n_recomputed: the kernel skips points that cannot attain the minimum
            assert (g <= w).all() and (g >= 1).all()
        else:
            _close(g, w, rtol=1e-8, atol=1e-12)
