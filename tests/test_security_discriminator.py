"""The discriminator MIS (mis.security.discriminator_mis, §4.2 of Aubinais et al. 2025)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mis.security as security  # noqa: E402
from mis.exceptions import MisValueError  # noqa: E402
from mis.security import discriminator_mis  # noqa: E402

TINY = dict(hidden=(8,), num_threads=1, device="cpu")
FAST = dict(hidden=(32,), epochs=30, lr=1e-2, num_threads=1)


def lookup_table(n_runs=60, n=25, d=2, seed=0):
    """Each model stores its members (params = the table): loss ~0 on members, ln 2 elsewhere."""
    rng = np.random.default_rng(seed)
    mx = rng.normal(size=(n_runs, n, d))
    my = rng.integers(0, 2, (n_runs, n))
    nx = rng.normal(size=(n_runs, n, d))
    ny = rng.integers(0, 2, (n_runs, n))
    params = np.concatenate([mx.reshape(n_runs, -1), my], axis=1)
    m_loss = 1e-3 + rng.exponential(1e-3, (n_runs, n))
    n_loss = np.full((n_runs, n), np.log(2.0))
    return params, mx, my, m_loss, nx, ny, n_loss


def data_blind(n_runs=60, n=25, d=2, seed=0):
    """Each model is a random logistic regression that never saw its 'members'."""
    rng = np.random.default_rng(seed)
    mx = rng.normal(size=(n_runs, n, d))
    my = rng.integers(0, 2, (n_runs, n))
    nx = rng.normal(size=(n_runs, n, d))
    ny = rng.integers(0, 2, (n_runs, n))
    w = rng.normal(size=(n_runs, d))

    def loss(x, y):
        z = np.einsum("rnd,rd->rn", x, w)
        return np.logaddexp(0.0, -z * (2 * y - 1))

    return w, mx, my, loss(mx, my), nx, ny, loss(nx, ny)


def test_memorising_model_has_discriminator_mis_near_zero():
    r = discriminator_mis(*lookup_table(), device="cpu", rng=0, **FAST)
    assert r.mis.high < 0.2
    assert r.mis.low <= r.mis.estimate <= r.mis.high
    assert r.accuracy.estimate > 0.95
    assert r.n_test == r.test_runs.size * 50
    assert r.device == "cpu"


def test_data_blind_model_has_discriminator_mis_near_one():
    r = discriminator_mis(*data_blind(), device="cpu", rng=0, **FAST)
    assert r.mis.low > 0.8
    assert r.mis.estimate <= 1.0
    assert abs(r.accuracy.estimate - 0.5) < 0.06


def test_interval_is_a_cluster_bootstrap_over_runs():
    from scipy import stats

    r = discriminator_mis(*data_blind(n_runs=20, n=10), rng=1, epochs=2, folds=4, **TINY)
    assert r.accuracy.estimate == pytest.approx(r.per_run_accuracy.mean())
    np.testing.assert_allclose(r.per_run_mis, 2 * (1 - r.per_run_accuracy))
    # runs resampled with replacement, percentile interval, from the seed's own stream
    idx = np.random.default_rng([1, 1]).integers(0, 20, size=(r.n_resamples, 20))
    lo, hi = np.quantile(r.per_run_accuracy[idx].mean(axis=1), [0.025, 0.975])
    assert (r.accuracy.low, r.accuracy.high) == pytest.approx((lo, hi))
    assert r.mis.low == pytest.approx(min(1, max(0, 2 * (1 - hi))))
    assert r.mis.high == pytest.approx(min(1, max(0, 2 * (1 - lo))))
    # the Clopper–Pearson interval over decisions, kept for comparison
    ci = stats.binomtest(r.n_correct, r.n_test).proportion_ci(0.95, method="exact")
    assert r.mis_clopper_pearson.low == pytest.approx(min(1, max(0, 2 * (1 - ci.high))))
    assert r.mis_clopper_pearson.high == pytest.approx(min(1, max(0, 2 * (1 - ci.low))))


def test_cross_fitting_tests_every_run_exactly_once():
    data = data_blind(n_runs=23, n=6)
    a = discriminator_mis(*data, rng=5, epochs=2, folds=5, val_fraction=0.2, **TINY)
    assert a.folds == 5 and len(a.train_runs) == len(a.val_runs) == len(a.best_epochs) == 5
    np.testing.assert_array_equal(a.test_runs, np.arange(23))
    assert np.bincount(a.fold_of_run).tolist() == [5, 5, 5, 4, 4]  # folds differ by <= 1 run
    for f in range(5):
        test = np.flatnonzero(a.fold_of_run == f)
        train, val = a.train_runs[f], a.val_runs[f]
        assert not set(test) & (set(train) | set(val))  # never trained on, never stopped on
        assert sorted([*test, *train, *val]) == list(range(23))
        assert val.size >= 1
    assert a.n_test == 23 * 12 and a.per_run_accuracy.shape == (23,)
    b = discriminator_mis(*data, rng=5, epochs=2, folds=5, val_fraction=0.2, **TINY)
    np.testing.assert_array_equal(a.fold_of_run, b.fold_of_run)  # same seed, same folds
    np.testing.assert_array_equal(a.per_run_accuracy, b.per_run_accuracy)
    c = discriminator_mis(*data, rng=6, epochs=2, folds=5, **TINY)
    assert not np.array_equal(a.fold_of_run, c.fold_of_run)
    with pytest.raises(MisValueError, match="folds"):
        discriminator_mis(*data, folds=24, **TINY)
    with pytest.raises(MisValueError, match="folds=None"):
        discriminator_mis(*data, folds=3, test_runs=[0, 1], **TINY)


def test_single_split_is_by_run_and_reproducible():
    data = data_blind(n_runs=30, n=8)
    kw = dict(folds=None, epochs=5, val_fraction=0.2, **TINY)
    a = discriminator_mis(*data, rng=5, **kw)
    b = discriminator_mis(*data, rng=5, **kw)
    runs = np.concatenate([a.train_runs[0], a.val_runs[0], a.test_runs])
    assert sorted(runs.tolist()) == list(range(30))
    assert a.test_runs.size == 9 and a.val_runs[0].size >= 1
    assert (a.fold_of_run >= 0).sum() == 9
    np.testing.assert_array_equal(a.test_runs, b.test_runs)
    np.testing.assert_array_equal(a.per_run_accuracy, b.per_run_accuracy)
    assert a.histories == b.histories
    assert a == b
    c = discriminator_mis(*data, rng=5, epochs=2, folds=None, test_runs=[0, 1, 2], **TINY)
    np.testing.assert_array_equal(c.test_runs, [0, 1, 2])
    assert not set(c.train_runs[0]) & {0, 1, 2}


def test_global_torch_state_is_untouched():
    torch.manual_seed(123)
    before = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    discriminator_mis(*data_blind(n_runs=6, n=4), device="cpu", rng=0, hidden=(4,), epochs=1,
                 num_threads=max(1, threads - 1) if threads > 1 else 2)  # fmt: skip
    np.testing.assert_array_equal(torch.rand(3).numpy(), before.numpy())
    assert torch.get_num_threads() == threads


def test_one_hot_labels():
    params, mx, my, ml, nx, ny, nl = lookup_table(n_runs=10, n=6)
    r = discriminator_mis(params, mx, my, ml, nx, ny, nl, n_classes=2, device="cpu", hidden=(4,),
                     epochs=1, num_threads=1)  # fmt: skip
    assert r.config["n_features"] == params.shape[1] + 2 + 2 + 1
    with pytest.raises(MisValueError, match="integer labels"):
        discriminator_mis(params, mx, my + 5, ml, nx, ny, nl, n_classes=2, device="cpu")


def test_bad_input():
    params, mx, my, ml, nx, ny, nl = lookup_table(n_runs=6, n=4)
    bad = ml.copy()
    bad[2, 1] = np.nan
    with pytest.raises(MisValueError, match=r"member_loss must be finite.*\(2, 1\)"):
        discriminator_mis(params, mx, my, bad, nx, ny, nl)
    with pytest.raises(MisValueError, match="balanced"):
        discriminator_mis(params, mx, my, ml, nx[:, :3], ny[:, :3], nl[:, :3])
    with pytest.raises(MisValueError, match="nonmember_loss must have shape"):
        discriminator_mis(params, mx, my, ml, nx, ny, nl[:, :3])
    with pytest.raises(MisValueError, match="member_x must have shape"):
        discriminator_mis(params, mx[:5], my, ml, nx, ny, nl)
    with pytest.raises(MisValueError, match="params must have shape"):
        discriminator_mis(params[0], mx, my, ml, nx, ny, nl)
    with pytest.raises(MisValueError, match="at least 2 runs"):
        discriminator_mis(params[:1], mx[:1], my[:1], ml[:1], nx[:1], ny[:1], nl[:1])
    with pytest.raises(MisValueError, match="test_fraction"):
        discriminator_mis(params, mx, my, ml, nx, ny, nl, folds=None, test_fraction=1.5)
    with pytest.raises(MisValueError, match="rng"):
        discriminator_mis(params, mx, my, ml, nx, ny, nl, rng=np.random.default_rng(0))
    if not torch.cuda.is_available():
        with pytest.raises(MisValueError, match="CUDA is not available"):
            discriminator_mis(params, mx, my, ml, nx, ny, nl, device="cuda")


def test_lazy_attribute_access():
    assert security.discriminator_mis is discriminator_mis
    assert security.DiscriminatorMIS.__name__ == "DiscriminatorMIS"
    assert "discriminator_mis" in dir(security)
    with pytest.raises(AttributeError):
        security.no_such_thing  # noqa: B018


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_claims():
    r0 = discriminator_mis(*lookup_table(), device="cuda", rng=0, **FAST)
    assert r0.device.startswith("cuda") and r0.mis.high < 0.2
    r1 = discriminator_mis(*data_blind(), device="cuda", rng=0, **FAST)
    assert r1.mis.low > 0.8
