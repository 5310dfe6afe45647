"""compat="carlini2022": bit-for-bit equality with a transcription of the reference code."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mis import metrics
from mis.attacks import lira, lira_all_targets, lira_signal, signal_threshold
from tests import naive


def _data(seed, m, n, q):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < rng.uniform(0.3, 0.7)
    keep[:2] = True  # every target leaves an IN and an OUT shadow
    keep[2:4] = False
    keep = keep[rng.permutation(m)]
    sig = rng.normal(size=(1, n, q)) * 3 + rng.normal(size=(m, n, q)) + keep[:, :, None]
    return sig, keep


def _reference(sig, keep, target, offline, fixed):
    """The reference's do_plot(…, ntest=1) with model ``target`` moved last; member score."""
    order = [m for m in range(sig.shape[0]) if m != target] + [target]
    s, k = sig[order], keep[order]
    pred, ans = naive.carlini_generate(k[:-1], s[:-1], k[-1:], s[-1:], offline, fixed)
    np.testing.assert_array_equal(np.array(ans, dtype=bool), keep[target])
    return -np.array(pred)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(4, 10),
    n=st.integers(1, 30),
    q=st.integers(1, 3),
    offline=st.booleans(),
    fixed=st.booleans(),
    chunk=st.sampled_from([None, 1, 4]),
)
def test_lira_equals_reference_exactly(seed, m, n, q, offline, fixed, chunk):
    sig, keep = _data(seed, m, n, q)
    mode = "offline" if offline else "online"
    for target in (m - 1, seed % m):
        k_t = keep.copy()
        got = lira(
            sig,
            k_t,
            target,
            mode=mode,
            fixed_variance=fixed,
            compat="carlini2022",
            chunk_size=chunk,
        )
        want = _reference(sig, keep, target, offline, fixed)
        np.testing.assert_array_equal(got, want)


def test_end_to_end_from_logits_exactly():
    """score.py → plot.py on float32 logits, and the reference TPR@0.1%FPR convention."""
    rng = np.random.default_rng(7)
    m, n, q, c = 9, 400, 2, 10
    labels = rng.integers(0, c, n)
    keep = rng.random((m, n)) < 0.5
    keep[:2] = True
    keep[2:4] = False
    logits = rng.normal(size=(m, n, q, c)).astype(np.float32) * 2
    logits[np.arange(m)[:, None], np.arange(n)[None, :], :, labels[None, :]] += (
        2.0 + 2.0 * keep[:, :, None]
    )
    sig = lira_signal(logits, labels, compat="carlini2022", chunk_size=64)
    ref_sig = np.stack([naive.carlini_score_py(logits[i][:, None], labels) for i in range(m)])
    np.testing.assert_array_equal(sig, ref_sig)
    for offline in (False, True):
        for fixed in (False, True):
            got = lira(
                sig,
                keep,
                -1,
                mode="offline" if offline else "online",
                fixed_variance=fixed,
                compat="carlini2022",
            )
            np.testing.assert_array_equal(got, _reference(ref_sig, keep, m - 1, offline, fixed))
    # global threshold
    pred, _ = naive.carlini_global(keep[-1:], ref_sig[-1:])
    np.testing.assert_array_equal(signal_threshold(sig)[-1], -np.array(pred))
    # TPR at FPR < 0.1 (reference: tpr[np.where(fpr < .1)[0][-1]] on roc_curve(ans, -pred))
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(keep[-1], got)
    want = tpr[np.where(fpr < 0.1)[0][-1]]
    assert metrics.tpr_at_fpr(got, keep[-1], 0.1, compat="carlini2022") == want


def test_all_targets_loops_per_target():
    sig, keep = _data(3, 7, 25, 2)
    loo = lira_all_targets(sig, keep, compat="carlini2022", fixed_variance=True)
    for t in range(7):
        np.testing.assert_array_equal(loo[t], _reference(sig, keep, t, False, True))


def test_zero_std_follows_the_reference_rule():
    """std + 1e-30: a constant IN/OUT set gives the reference's huge (finite) scores, exactly."""
    sig, keep = _data(4, 6, 10, 1)
    sig[:, 2, :] = np.where(keep[:, 2:3], 0.5, 0.3)
    sig[-1, 2, :] = 0.9
    got = lira(sig, keep, -1, compat="carlini2022")
    np.testing.assert_array_equal(got, _reference(sig, keep, 5, False, False))
    assert abs(got[2]) > 1e50
