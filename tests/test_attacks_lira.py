"""LiRA (default mode): against the naive per-example version, leave-one-out, properties."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mis import metrics
from mis.attacks import lira, lira_all_targets
from mis.exceptions import DegenerateStatisticWarning, MisValueError
from tests import naive

VARIANTS = [
    (mode, fixed, center)
    for mode in ("online", "offline")
    for fixed in (False, True)
    for center in ("mean", "median")
]


def _data(seed, m, n, q, p=0.5):
    """Signals with every example IN and OUT in at least three models."""
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < p
    keep[:3] = True
    keep[3:6] = False
    keep = keep[rng.permutation(m)]
    sig = rng.normal(size=(1, n, 1)) + rng.normal(size=(m, n, q)) + 1.5 * keep[:, :, None]
    return sig, keep


def _close(a, b, rtol=1e-8):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(7, 12),
    n=st.integers(1, 40),
    q=st.integers(1, 3),
    variant=st.sampled_from(VARIANTS),
    chunk=st.sampled_from([None, 1, 7]),
)
def test_matches_naive(seed, m, n, q, variant, chunk):
    mode, fixed, center = variant
    sig, keep = _data(seed, m, n, q)
    t = seed % m
    got = lira(sig, keep, t, mode=mode, fixed_variance=fixed, center=center, chunk_size=chunk)
    want = naive.lira_naive(sig, keep, t, mode=mode, fixed_variance=fixed, center=center)
    _close(got, want)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(7, 12),
    n=st.integers(1, 40),
    q=st.integers(1, 3),
    variant=st.sampled_from(VARIANTS),
    chunk=st.sampled_from([None, 1, 9]),
)
def test_leave_one_out_equals_per_target(seed, m, n, q, variant, chunk):
    mode, fixed, center = variant
    sig, keep = _data(seed, m, n, q)
    kw = dict(mode=mode, fixed_variance=fixed, center=center)
    loo = lira_all_targets(sig, keep, chunk_size=chunk, **kw)
    per = np.stack([lira(sig, keep, t, **kw) for t in range(m)])
    assert loo.shape == (m, n)
    _close(loo, per)


def test_leave_one_out_median_is_exact():
    """Medians are read off the same order statistics: LOO centres equal per-target ones."""
    sig, keep = _data(5, 9, 200, 2)
    sig = np.round(sig, 1)  # many ties
    loo = lira_all_targets(sig, keep, center="median", fixed_variance=True, mode="offline")
    per = np.stack(
        [lira(sig, keep, t, center="median", fixed_variance=True, mode="offline") for t in range(9)]
    )
    _close(loo, per, rtol=1e-12)


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("center", ["mean", "median"])
def test_invariant_to_order_of_shadows(mode, center):
    sig, keep = _data(11, 16, 300, 2)
    target = 5
    base = lira(sig, keep, target, mode=mode, center=center)
    rng = np.random.default_rng(0)
    for _ in range(3):
        perm = rng.permutation(16)
        new_t = int(np.flatnonzero(perm == target)[0])
        got = lira(sig[perm], keep[perm], new_t, mode=mode, center=center)
        np.testing.assert_allclose(got, base, rtol=1e-11, atol=1e-11)
    loo = lira_all_targets(sig, keep, mode=mode, center=center)
    perm = rng.permutation(16)
    np.testing.assert_allclose(
        lira_all_targets(sig[perm], keep[perm], mode=mode, center=center),
        loo[perm],
        rtol=1e-10,
        atol=1e-10,
    )


def test_online_auc_close_to_neyman_pearson():
    """Per-example Gaussians with known parameters: LiRA's AUC ≈ the exact likelihood ratio's."""
    rng = np.random.default_rng(2024)
    m, n = 65, 20_000
    mu_out = rng.normal(0, 2, n)
    mu_in = mu_out + rng.gamma(2.0, 0.5, n)
    sd_in = rng.uniform(0.3, 1.5, n)
    sd_out = rng.uniform(0.3, 1.5, n)
    keep = rng.random((m, n)) < 0.5
    z = rng.normal(size=(m, n))
    sig = np.where(keep, mu_in + sd_in * z, mu_out + sd_out * z)[:, :, None]
    target = m - 1
    s = sig[target, :, 0]
    exact = stats.norm.logpdf(s, mu_in, sd_in) - stats.norm.logpdf(s, mu_out, sd_out)
    auc_exact = metrics.roc_auc(exact, keep[target])
    auc_lira = metrics.roc_auc(lira(sig, keep, target), keep[target])
    assert 0.75 < auc_exact < 0.99
    assert abs(auc_lira - auc_exact) < 0.01, (auc_lira, auc_exact)
    # pooled over every target (leave-one-out)
    loo = lira_all_targets(sig, keep)
    s_all = sig[:, :, 0]
    ex_all = stats.norm.logpdf(s_all, mu_in, sd_in) - stats.norm.logpdf(s_all, mu_out, sd_out)
    auc_loo = metrics.roc_auc(loo.ravel(), keep.ravel())
    assert abs(auc_loo - metrics.roc_auc(ex_all.ravel(), keep.ravel())) < 0.01


def test_offline_is_one_sided():
    sig, keep = _data(3, 10, 50, 1)
    s_hi = sig.copy()
    s_hi[0] += 100.0  # far above every OUT mean: most member-like offline
    s_lo = sig.copy()
    s_lo[0] -= 100.0
    assert (lira(s_hi, keep, 0, mode="offline") > lira(s_lo, keep, 0, mode="offline")).all()
    assert (lira(s_hi, keep, 0, mode="offline") <= 0).all()


def test_zero_variance_rule():
    sig, keep = _data(4, 8, 30, 2)
    sig[:, 3, :] = 1.25  # constant across every model: zero IN and OUT variance
    with pytest.warns(DegenerateStatisticWarning, match="var_floor"):
        s = lira(sig, keep, 0)
    assert np.isfinite(s).all() and s[3] == 0.0
    with pytest.warns(DegenerateStatisticWarning):
        loo = lira_all_targets(sig, keep)
    assert np.isfinite(loo).all()
    with pytest.warns(DegenerateStatisticWarning):
        off = lira(sig, keep, 0, mode="offline", var_floor=1e-6)
    assert np.isfinite(off).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lira(*_data(4, 8, 30, 2), 0)  # no warning without degeneracy


def test_memmap_and_float32_inputs(tmp_path):
    sig, keep = _data(6, 9, 333, 2)
    want = lira_all_targets(sig, keep)
    np.save(tmp_path / "s.npy", sig)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    np.testing.assert_array_equal(lira_all_targets(mm, keep, chunk_size=50), want)
    np.testing.assert_array_equal(lira(mm, keep, 2, chunk_size=64), lira(sig, keep, 2))
    s32 = sig.astype(np.float32)
    np.testing.assert_array_equal(
        lira(s32, keep, 1, chunk_size=100), lira(s32.astype(np.float64), keep, 1)
    )
    np.testing.assert_array_equal(lira(sig, keep.astype(int), -1), lira(sig, keep, 8))


def test_bad_input():
    sig, keep = _data(7, 8, 20, 2)
    k = keep.copy()
    k[:, 4] = True
    k[0, 4] = False  # OUT only in the target
    with pytest.raises(MisValueError, match="keep: example 4 is never OUT"):
        lira(sig, k, 0)
    k = keep.copy()
    k[:, 9] = False
    with pytest.raises(MisValueError, match="keep: example 9 is never IN"):
        lira(sig, k, 0)
    lira(sig, k, 0, mode="offline")  # offline needs no IN shadow
    k = keep.copy()
    k[:, 2] = False
    k[3, 2] = True  # IN in one model: fine for other targets, not when it is the target
    with pytest.warns(DegenerateStatisticWarning):  # a single IN shadow: zero variance
        lira(sig, k, 0)
    with pytest.raises(MisValueError, match="never IN"):
        lira_all_targets(sig, k)
    bad = sig.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(MisValueError, match=r"signals must be finite.*\(2, 7, 1\)"):
        lira(bad, keep, 0)
    with pytest.raises(MisValueError, match="signals must be finite"):
        lira_all_targets(bad, keep)
    with pytest.raises(MisValueError, match="signals must be finite"):
        lira(bad, keep, 0, compat="carlini2022")
    with pytest.raises(MisValueError, match="keep must have shape"):
        lira(sig, keep[:, :-1], 0)
    with pytest.raises(MisValueError, match="signals must have shape"):
        lira(sig[0], keep, 0)
    with pytest.raises(MisValueError, match="at least 2 models"):
        lira(sig[:1], keep[:1], 0)
    with pytest.raises(MisValueError, match="target must be in"):
        lira(sig, keep, 8)
    with pytest.raises(MisValueError, match="mode"):
        lira(sig, keep, 0, mode="both")
    with pytest.raises(MisValueError, match="center"):
        lira(sig, keep, 0, center="mode")
    with pytest.raises(MisValueError, match="center must be 'median'"):
        lira(sig, keep, 0, center="mean", compat="carlini2022")
    with pytest.raises(MisValueError, match="var_floor"):
        lira(sig, keep, 0, var_floor=0.0)
    with pytest.raises(MisValueError, match="keep must be boolean"):
        lira(sig, keep * 2, 0)
