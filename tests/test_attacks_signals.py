"""Signals from logits: LiRA's scaled logit, log p_y, the reference score.py transform."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mis.attacks import lira_signal, loss_threshold, true_class_log_prob, true_class_probability
from mis.exceptions import MisValueError
from tests import naive


def _logits(seed, m, n, q, c, scale=3.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(m, n, q, c)) * scale).astype(dtype), rng.integers(0, c, n)


@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 3),
    n=st.integers(1, 7),
    q=st.integers(1, 3),
    c=st.integers(2, 6),
    scale=st.sampled_from([0.1, 3.0, 40.0]),
)
def test_signal_matches_naive(seed, m, n, q, c, scale):
    logits, labels = _logits(seed, m, n, q, c, scale)
    got = lira_signal(logits, labels, chunk_size=3)
    np.testing.assert_allclose(got, naive.lira_signal_naive(logits, labels), rtol=1e-12, atol=1e-12)
    assert got.dtype == np.float64 and got.shape == (m, n, q)


def test_signal_is_stable_for_extreme_logits():
    logits = np.array([[[[1000.0, -1000.0, 0.0]], [[-800.0, 800.0, 0.0]]]])  # (1, 2, 1, 3)
    s = lira_signal(logits, np.array([0, 0]))
    np.testing.assert_allclose(s[0, :, 0], [1000.0, -1600.0])
    assert np.isfinite(s).all()


def test_log_prob_and_probability():
    logits, labels = _logits(1, 2, 9, 2, 5, dtype=np.float64)
    from scipy.special import log_softmax

    want = np.take_along_axis(log_softmax(logits, axis=3), labels[None, :, None, None], 3)[..., 0]
    np.testing.assert_allclose(true_class_log_prob(logits, labels), want, rtol=1e-13)
    np.testing.assert_allclose(true_class_probability(logits, labels), np.exp(want), rtol=1e-13)
    np.testing.assert_allclose(loss_threshold(logits, labels, chunk_size=4), want.mean(axis=2))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9), q=st.integers(1, 3))
def test_compat_signal_equals_reference_transcription_exactly(seed, n, q):
    logits, labels = _logits(seed, 3, n, q, 10, scale=8.0)
    logits[0, 0, 0, :] = 0.0  # ties
    logits[0, -1, -1, labels[-1]] = 200.0  # saturated: p_wrong underflows in float32
    got = lira_signal(logits, labels, compat="carlini2022", chunk_size=2)
    for m in range(3):
        want = naive.carlini_score_py(logits[m][:, None], labels)
        np.testing.assert_array_equal(got[m], want)


def test_float32_and_float64_logits_and_memmap_out(tmp_path):
    logits, labels = _logits(2, 2, 50, 2, 4)
    out = np.lib.format.open_memmap(
        tmp_path / "s.npy", mode="w+", dtype=np.float64, shape=(2, 50, 2)
    )
    res = lira_signal(logits, labels, out=out, chunk_size=7)
    assert res is out
    np.testing.assert_allclose(out, lira_signal(logits.astype(np.float64), labels), rtol=1e-13)
    # a non-contiguous view goes through the copying path
    view = np.asfortranarray(logits)
    np.testing.assert_array_equal(lira_signal(view, labels), lira_signal(logits, labels))


@pytest.mark.parametrize("compat", [None, "carlini2022"])
def test_bad_input(compat):
    logits, labels = _logits(3, 2, 5, 1, 3)
    bad = logits.copy()
    bad[1, 3, 0, 2] = np.nan
    with pytest.raises(MisValueError, match=r"logits must be finite.*\(1, 3, 0, 2\)"):
        lira_signal(bad, labels, compat=compat)
    with pytest.raises(MisValueError, match="labels must lie in"):
        lira_signal(logits, np.array([0, 1, 2, 3, 0]), compat=compat)
    with pytest.raises(MisValueError, match="labels must have shape"):
        lira_signal(logits, labels[:4], compat=compat)
    with pytest.raises(MisValueError, match="logits must have shape"):
        lira_signal(logits[0], labels, compat=compat)
    with pytest.raises(MisValueError, match="at least 2 classes"):
        lira_signal(logits[..., :1], labels, compat=compat)
    with pytest.raises(MisValueError, match="compat"):
        lira_signal(logits, labels, compat="nope")
