"""r_Q (mis.security._rq): Algorithm 1 identity, invariances, dedup, edge cases, bad input."""

from __future__ import annotations

import subprocess
import sys
import warnings

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mis.exceptions import DegenerateStatisticWarning, MisValueError
from mis.security import _rq as rq_module
from mis.security import rq, rq_batch


def trajectory(seed, k, n, n_dup=0, scale=1.0):
    """Random per-sample losses of k checkpoints (plus n_dup exact duplicate rows), shuffled."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.5, size=(1, n))
    L = base + rng.normal(0.0, 0.3, size=(k, n)) + rng.normal(0.0, 0.2, size=(k, 1))
    L = np.abs(L) * scale
    if n_dup:
        L = np.concatenate([L, L[rng.integers(0, k, n_dup)]])
    return L[rng.permutation(L.shape[0])]


# --------------------------------------------------------------------------------------------
# the identity with Algorithm 1 as written
# --------------------------------------------------------------------------------------------
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(2, 12),
    n=st.integers(3, 60),
    n_dup=st.integers(0, 4),
    ddof=st.sampled_from([0, 1]),
)
def test_rq_equals_algorithm1(seed, k, n, n_dup, ddof):
    L = trajectory(seed, k, n, n_dup)
    got = rq(L, ddof=ddof)
    want = naive.rq_algorithm1(naive.dedup_checkpoints(L), ddof=ddof)
    assert got.n_distinct == k
    assert got.rq == pytest.approx(want, rel=1e-9)


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 10), n=st.integers(3, 40))
def test_rq_with_hash_equals_algorithm1(seed, k, n):
    rng = np.random.default_rng(seed)
    L = trajectory(seed, k, n)
    # several checkpoints quantize to the same point: repeat rows and their hashes
    reps = rng.integers(1, 4, size=k)
    Lr = np.repeat(L, reps, axis=0)
    h = np.repeat(rng.choice(2**62, size=k, replace=False).astype(np.uint64) * np.uint64(3), reps)
    perm = rng.permutation(Lr.shape[0])
    got = rq(Lr[perm], h[perm])
    assert got.n_distinct == k
    assert got.rq == pytest.approx(naive.rq_algorithm1(L), rel=1e-9)


def test_diagnostics_are_consistent():
    L = trajectory(3, 8, 50)
    r = rq(L)
    means = L.mean(axis=1)
    assert r.best_checkpoint == int(np.argmin(means))
    np.testing.assert_allclose(r.means, np.sort(means), rtol=1e-12)
    np.testing.assert_allclose(r.deltas, r.means - r.means[0], rtol=1e-12, atol=1e-15)
    assert r.delta2 == pytest.approx(r.deltas[1])
    var = [np.var(L[c] - L[r.best_checkpoint], ddof=1) for c in r.checkpoints[1:]]
    np.testing.assert_allclose(r.variances[1:], var, rtol=1e-9)
    assert r.ratios.min() == r.rq
    assert r.checkpoints[r.argmin_position] == r.argmin_checkpoint
    assert r.ratios[r.argmin_position] == r.rq
    # the argmin maximises λ_k = σ_k² (δ_2/δ_k)² of Algorithm 1
    lam = r.variances[1:] * (r.delta2 / r.deltas[1:]) ** 2
    assert int(np.argmax(lam)) + 1 == r.argmin_position


# --------------------------------------------------------------------------------------------
# invariances
# --------------------------------------------------------------------------------------------
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(-50, 50),
    scale=st.floats(1e-3, 1e3),
)
def test_invariant_to_shift_scale_and_order(seed, shift, scale):
    L = trajectory(seed, 7, 40)
    base = rq(L).rq
    assert rq(L + shift).rq == pytest.approx(base, rel=1e-6)
    assert rq(L * scale).rq == pytest.approx(base, rel=1e-9)
    perm = np.random.default_rng(seed).permutation(L.shape[0])
    assert rq(L[perm]).rq == base  # same rows, same sums: bit-identical


# --------------------------------------------------------------------------------------------
# dedup and edge cases
# --------------------------------------------------------------------------------------------
def test_identical_rows_are_one_point_without_hash():
    L = trajectory(1, 5, 30)
    dup = np.concatenate([L, L[[0, 0, 3]]])
    assert rq(dup).n_distinct == 5
    assert rq(dup).rq == rq(L).rq


def test_hash_dedup_trusts_the_hash():
    L = trajectory(2, 4, 30)
    h = np.array([10, 20, 30, 40])
    # two checkpoints share hash 20 although their losses differ: the lower-loss one stands
    r = rq(np.concatenate([L, L[[1]] + 5.0]), np.array([10, 20, 30, 40, 20]))
    assert r.n_distinct == 4
    assert r.rq == rq(L, h).rq


def test_distinct_points_with_identical_losses_give_zero():
    L = trajectory(4, 3, 20)
    best = int(np.argmin(L.mean(axis=1)))
    L2 = np.concatenate([L, L[[best]]])  # the best point twice, under two hashes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = rq(L2, np.arange(4))
    assert r.rq == 0.0
    assert r.n_distinct == 4


def test_equal_mean_distinct_points_give_zero():
    L = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 3.0, 4.0]])
    r = rq(L)
    assert r.rq == 0.0
    assert r.delta2 == 0.0


def test_one_distinct_point_is_inf_with_warning():
    L = np.tile(np.array([0.5, 0.7, 0.1, 0.2]), (6, 1))
    with pytest.warns(DegenerateStatisticWarning, match="single distinct"):
        r = rq(L)
    assert r.rq == np.inf
    assert r.n_distinct == 1
    assert np.isnan(r.delta2)
    assert r.argmin_checkpoint == -1
    with pytest.warns(DegenerateStatisticWarning):
        assert rq(trajectory(0, 4, 10), qhash=np.ones(4, dtype=np.uint64)).rq == np.inf


def test_constant_gap_is_excluded_from_the_min():
    # L_2 = L_1 + 1 exactly (zero variance), L_3 has a positive variance
    L1 = np.array([1.0, 2.0, 3.0, 4.0])
    L = np.stack([L1, L1 + 1.0, L1 + np.array([3.0, 1.0, 2.0, 2.0])])
    r = rq(L)
    assert r.ratios[1] == np.inf
    d3 = 2.0
    var3 = np.var([3.0, 1.0, 2.0, 2.0], ddof=1)
    assert r.rq == pytest.approx(d3**2 / (2 * var3))
    assert r.argmin_checkpoint == 2
    assert r.rq == pytest.approx(naive.rq_algorithm1(L))


def test_all_constant_gaps_give_inf_with_warning():
    L1 = np.array([1.0, 2.0, 3.0, 4.0])
    L = np.stack([L1, L1 + 1.0, L1 + 2.0])
    with pytest.warns(DegenerateStatisticWarning, match="zero variance"):
        r = rq(L)
    assert r.rq == np.inf
    assert r.n_distinct == 3
    with pytest.raises(ZeroDivisionError):  # the paper's form: 0.5 / max_k λ_k with every λ_k = 0
        naive.rq_algorithm1(L)


def test_no_warning_in_the_regular_case():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rq(trajectory(5, 6, 30))


# --------------------------------------------------------------------------------------------
# rq_batch
# --------------------------------------------------------------------------------------------
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(2, 8), st.integers(3, 30)),
    dtype=st.sampled_from([np.float32, np.float64]),
    hashed=st.booleans(),
)
def test_rq_batch_equals_rq_per_block(seed, shape, dtype, hashed):
    rng = np.random.default_rng(seed)
    R, Q, K, _N = shape
    L = rng.gamma(2.0, 1.0, size=shape).astype(dtype)
    # some duplicate checkpoints
    L[..., -1, :] = L[..., 0, :]
    h = rng.integers(0, 3 * K, size=(R, Q, K)).astype(np.uint64) if hashed else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateStatisticWarning)
        got = rq_batch(L, h, details=True)
        for r in range(R):
            for q in range(Q):
                one = rq(L[r, q], None if h is None else h[r, q])
                assert got.rq[r, q] == one.rq or (np.isnan(got.rq[r, q]) and np.isnan(one.rq))
                assert got.n_distinct[r, q] == one.n_distinct
                assert got.best_checkpoint[r, q] == one.best_checkpoint
                assert got.argmin_checkpoint[r, q] == one.argmin_checkpoint
                np.testing.assert_equal(got.delta2[r, q], one.delta2)


def test_rq_batch_streams_a_memmap_in_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    L = rng.gamma(2.0, 1.0, size=(7, 3, 6, 25)).astype(np.float32)
    path = tmp_path / "val_losses.npy"
    np.save(path, L)
    mm = np.load(path, mmap_mode="r")
    want = rq_batch(L)
    monkeypatch.setattr(rq_module, "_CHUNK_BYTES", 2 * 3 * 6 * 25 * 4)  # 2 runs per chunk
    got = rq_batch(mm, progress=False)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (7, 3) and got.dtype == np.float64


def test_rq_batch_warns_once_with_counts():
    L = np.random.default_rng(0).random((2, 2, 3, 5))
    L[0, 1] = L[0, 1, 0]  # one point
    L[1, 0] = L[1, 0, 0]
    with pytest.warns(DegenerateStatisticWarning, match="^2 block") as rec:
        out = rq_batch(L)
    assert len(rec) == 1
    assert np.isinf(out[0, 1]) and np.isinf(out[1, 0]) and np.isfinite(out[0, 0])


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("losses", "match"),
    [
        (np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]]), "finite.*checkpoint 0, sample 1"),
        (np.array([[1.0, np.inf, 2.0], [1.0, 2.0, 3.0]]), "finite"),
        (np.ones((1, 5)), "at least 2 checkpoints"),
        (np.ones(5), "shape"),
        (np.ones((2, 3, 4)), "shape"),
        (np.ones((3, 1)), "validation samples"),
        (np.ones((0, 4)), "empty"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_rq_bad_input(losses, match):
    with pytest.raises(MisValueError, match=match):
        rq(losses)


def test_rq_bad_hash_and_ddof():
    L = trajectory(0, 3, 5)
    with pytest.raises(MisValueError, match="qhash must have shape"):
        rq(L, np.arange(4))
    with pytest.raises(MisValueError, match="ddof"):
        rq(L, ddof=-1)
    with pytest.raises(MisValueError, match="validation samples"):
        rq(L[:, :2], ddof=2)
    with pytest.raises(ValueError):  # MisValueError is a ValueError
        rq(L[:1])


def test_rq_batch_bad_input():
    L = np.random.default_rng(0).random((3, 2, 4, 6))
    bad = L.copy()
    bad[2, 1, 3, 5] = np.nan
    with pytest.raises(MisValueError, match="run 2, quantizer 1"):
        rq_batch(bad)
    with pytest.raises(MisValueError, match="n_runs, n_quantizers"):
        rq_batch(L[0])
    with pytest.raises(MisValueError, match="at least 2 checkpoints"):
        rq_batch(L[:, :, :1])
    with pytest.raises(MisValueError, match="qhash must have shape"):
        rq_batch(L, np.zeros((3, 2, 5), dtype=np.uint64))


def test_security_does_not_import_torch():
    code = (
        "import sys, numpy as np, mis.security as s; "
        "s.rq(np.random.default_rng(0).random((3, 4))); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_string_hashes_and_thread_count_independence():
    import numba

    L = trajectory(8, 4, 30)
    Ld = np.concatenate([L, L[[2]]])
    assert rq(Ld, ["a", "b", "c", "d", "c"]).rq == rq(L).rq
    B = np.random.default_rng(1).gamma(2.0, 1.0, size=(5, 3, 6, 40)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = rq_batch(B)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, rq_batch(B))
