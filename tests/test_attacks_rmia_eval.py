"""RMIA against the naive double loop; evaluate(); the reference-layout importer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mis import metrics
from mis.attacks import evaluate, lira_all_targets, lira_signal, rmia, rmia_all_targets
from mis.exceptions import MisValueError
from mis.store import RunStore, import_lira_reference
from tests import naive


def _probs(seed, m, n, q=1):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    keep[:2] = True
    keep[2:4] = False
    keep = keep[rng.permutation(m)]
    logit = rng.normal(size=(m, n, q)) + 1.5 * keep[:, :, None]
    return 1.0 / (1.0 + np.exp(-logit)), keep


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(4, 8),
    n=st.integers(2, 25),
    q=st.integers(1, 2),
    mode=st.sampled_from(["online", "offline"]),
    a=st.sampled_from([0.0, 0.3, 1.0]),
    gamma=st.sampled_from([0.5, 1.0, 2.0]),
    with_pop=st.booleans(),
)
def test_rmia_matches_naive(seed, m, n, q, mode, a, gamma, with_pop):
    p, keep = _probs(seed, m, n, q)
    pop = np.arange(0, n, 2) if with_pop and n >= 4 else None
    t = seed % m
    got = rmia(p, keep, t, mode=mode, a=a, gamma=gamma, population=pop)
    want = naive.rmia_naive(p, keep, t, mode=mode, a=a, gamma=gamma, population=pop)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert ((got >= 0) & (got <= 1)).all()


def test_rmia_all_targets_rows_equal_single_target():
    p, keep = _probs(1, 6, 200, 2)
    for mode in ("online", "offline"):
        allt = rmia_all_targets(p, keep, mode=mode)
        for t in range(6):
            np.testing.assert_array_equal(allt[t], rmia(p, keep, t, mode=mode))
    # a real signal is detected on the targets with both members and non-members
    mixed = [t for t in range(6) if 0 < keep[t].sum() < 200]
    allt = rmia_all_targets(p, keep, gamma=1.0)
    assert min(metrics.roc_auc(allt[t], keep[t]) for t in mixed) > 0.6


def test_rmia_bad_input():
    p, keep = _probs(2, 5, 10)
    with pytest.raises(MisValueError, match="probs must be probabilities"):
        rmia(p * 2, keep, 0)
    bad = p.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(MisValueError, match="probs must be probabilities"):
        rmia(bad, keep, 0)
    with pytest.raises(MisValueError, match="keep must have shape"):
        rmia(p, keep[:3], 0)
    k = keep.copy()
    k[:, 3] = True
    with pytest.raises(MisValueError, match="never OUT"):
        rmia(p, k, 0)
    rmia(p, k, 0, mode="online")
    with pytest.raises(MisValueError, match="population"):
        rmia(p, keep, 0, population=[3])
    with pytest.raises(MisValueError, match="population indices"):
        rmia(p, keep, 0, population=[3, 10])
    with pytest.raises(MisValueError, match="gamma"):
        rmia(p, keep, 0, gamma=0)
    with pytest.raises(MisValueError, match="a must be"):
        rmia(p, keep, 0, a=1.5)


def _scores(seed=0, m=6, n=400):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    for j in range(n):  # every example IN and OUT in at least 3 models; targets mixed
        pick = rng.permutation(m)
        keep[pick[:3], j] = True
        keep[pick[3:], j] = False
    sig = rng.normal(size=(m, n, 2)) + keep[:, :, None]
    return lira_all_targets(sig, keep), keep


def test_evaluate_per_target_pooled_and_spread():
    scores, keep = _scores()
    ev = evaluate(scores, keep, fprs=(0.01, 0.1), n_resamples=200, rng=0)
    assert len(ev.per_target) == 6
    aucs = [metrics.roc_auc(scores[t], keep[t]) for t in range(6)]
    assert [r.auc.estimate for r in ev.per_target] == pytest.approx(aucs, abs=1e-15)
    assert ev.pooled.auc.estimate == pytest.approx(metrics.roc_auc(scores.ravel(), keep.ravel()))
    assert ev.spread["auc"].mean == pytest.approx(np.mean(aucs))
    assert ev.spread["auc"].std == pytest.approx(np.std(aucs, ddof=1))
    assert ev.spread["auc"].min == pytest.approx(min(aucs)) and ev.spread["auc"].n == 6
    assert ev.pooled.auc.low <= ev.pooled.auc.estimate <= ev.pooled.auc.high
    fpr, tpr, _ = metrics.roc_curve(scores[0], keep[0])
    assert ev.per_target_accuracy[0] == pytest.approx(np.max(1 - (fpr + 1 - tpr) / 2))
    assert ev.per_target_table().shape == (6, 5) and ev.names()[-1] == "accuracy"
    d = ev.as_dict()
    assert set(d) == {"pooled", "spread", "per_target"}
    # same seed, same result; one target
    ev2 = evaluate(scores, keep, fprs=(0.01, 0.1), n_resamples=200, rng=0)
    assert ev2.pooled.as_dict() == ev.pooled.as_dict()
    one = evaluate(scores[2], keep[2], fprs=(0.01,), n_resamples=50, rng=1)
    assert one.pooled is one.per_target[0] and np.isnan(one.spread["auc"].std)


def test_evaluate_bad_input():
    scores, keep = _scores()
    with pytest.raises(MisValueError, match="keep must have the same shape"):
        evaluate(scores, keep[:, :-1])
    s = scores.copy()
    s[1, 3] = np.nan
    with pytest.raises(MisValueError, match="target 1"):
        evaluate(s, keep, n_resamples=10)
    k = keep.copy()
    k[2] = True
    with pytest.raises(MisValueError, match="target 2"):
        evaluate(scores, k, n_resamples=10)


def _write_reference(root, m=5, n=30, a=2, c=4, seed=0, with_labels=True):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n + 5)) < 0.5
    logits = rng.normal(size=(m, n, a, c)).astype(np.float32)
    labels = rng.integers(0, c, n + 5)
    if with_labels:
        np.save(root / "y_train.npy", labels)
    for i in range(m):
        d = root / f"experiment-{i}_{m}"
        (d / "logits").mkdir(parents=True)
        np.save(d / "keep.npy", keep[i])
        np.save(d / "logits" / "0000000010.npy", np.zeros((n, 1, a, c), np.float32))
        np.save(d / "logits" / "0000000100.npy", logits[i][:, None])
    return keep[:, :n], logits, labels[:n]


def test_import_reference_layout(tmp_path):
    src = tmp_path / "exp" / "cifar10"
    src.mkdir(parents=True)
    keep, logits, labels = _write_reference(src, m=12)
    store = import_lira_reference(src, tmp_path / "run")
    assert isinstance(store, RunStore)
    np.testing.assert_array_equal(store.load("keep"), keep)  # natural order: 2 before 10
    np.testing.assert_array_equal(store.load("logits"), logits)
    np.testing.assert_array_equal(store.load("labels"), labels)
    assert store.load("logits").dtype == np.float32 and store.load("labels").dtype == np.int64
    assert store.meta("keep")["experiments"][:3] == [
        "experiment-0_12",
        "experiment-1_12",
        "experiment-2_12",
    ]
    store.verify()
    sig = lira_signal(store.load("logits"), store.load("labels"), compat="carlini2022")
    assert sig.shape == (12, 30, 2)
    # an earlier epoch, labels passed explicitly
    other = import_lira_reference(src, RunStore(tmp_path / "run2"), epoch=10, labels=labels)
    assert (other.load("logits") == 0).all()


def test_import_bad_input(tmp_path):
    with pytest.raises(MisValueError, match="no experiment"):
        import_lira_reference(tmp_path, tmp_path / "run")
    src = tmp_path / "src"
    src.mkdir()
    _write_reference(src, with_labels=False)
    with pytest.raises(MisValueError, match="labels"):
        import_lira_reference(src, tmp_path / "run")
    with pytest.raises(MisValueError, match="labels must lie"):
        import_lira_reference(src, tmp_path / "run", labels=np.full(40, 9))
    with pytest.raises(MisValueError, match="epoch"):
        import_lira_reference(src, tmp_path / "run", labels=np.zeros(40, int), epoch=3)
