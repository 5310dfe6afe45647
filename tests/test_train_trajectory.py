"""Trajectory recorder: quantized validation losses, weight hashes, keep_best."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mis.exceptions import MisValueError
from mis.quant import StackedQuantizer, weight_quantizer
from mis.store import RunStore
from mis.train import data
from mis.train.config import TrainConfig
from mis.train.ensemble import Ensemble, train_ensemble
from mis.train.models import QuadraticLinear, build_model
from mis.train.trainer import train_model
from mis.train.trajectory import TrajectoryRecorder, weights_hash
from tests import naive

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sign(w):
    return torch.where(w >= 0, 1.0, -1.0)


def half_grid(w):
    return torch.round(w * 2) / 2


def identity(w):
    return w


def _ensemble(k, dim, seed):
    g = torch.Generator().manual_seed(seed)
    mods = []
    for _ in range(k):
        m = QuadraticLinear(dim=dim)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        mods.append(m)
    return Ensemble.from_modules(mods)


def test_losses_and_hashes_match_direct_computation():
    ens = _ensemble(3, 4, 0)
    xv = torch.randn(9, 4)
    yv = torch.randint(0, 2, (9,))
    rec = TrajectoryRecorder({"sign": sign, "fp": identity}, xv, yv, params="weights")
    rec(1, ens)
    res = rec.result()
    assert res["val_losses"].shape == (3, 2, 1, 9) and res["val_losses"].dtype == np.float32
    assert res["qhash"].shape == (3, 2, 1) and res["qhash"].dtype == np.uint64
    for k in range(3):
        m = ens.model(k)
        for j, q in enumerate((sign, identity)):
            w = q(m.fc.weight.detach())
            logits = QuadraticLinear.features(xv) @ w.T + m.fc.bias.detach()  # bias unquantized
            want = F.cross_entropy(logits, yv, reduction="none").numpy()
            np.testing.assert_allclose(res["val_losses"][k, j, 0], want, rtol=1e-5, atol=1e-6)
            h = weights_hash([m.fc.bias.detach(), w])  # sorted names: fc.bias, fc.weight
            assert res["qhash"][k, j, 0] == h


def test_identical_quantized_weights_share_a_hash():
    ens = _ensemble(2, 3, 1)
    xv, yv = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    rec = TrajectoryRecorder([sign], xv, yv)
    rec(1, ens)
    with torch.no_grad():  # a small move keeps every sign: same quantized point
        for p in ens.params.values():
            p.add_(1e-3 * torch.sign(p))
    rec(2, ens)
    with torch.no_grad():
        ens.params["fc.weight"][0, 0, 0].neg_()
    rec(3, ens)
    h = rec.result()["qhash"][:, 0]
    assert h[0, 0] == h[0, 1] != h[0, 2]
    assert h[1, 0] == h[1, 1] == h[1, 2]
    assert h[0, 0] != h[1, 0]
    np.testing.assert_array_equal(rec.result()["val_epochs"][0, 0], [1, 2, 3])


@given(st.integers(1, 6), st.integers(0, 10_000), st.integers(1, 3))
def test_keep_best_matches_naive(b, seed, every):
    k, dim, n_ckpt = 2, 2, 12
    g = torch.Generator().manual_seed(seed)
    ens = _ensemble(k, dim, seed)
    xv, yv = torch.randn(6, dim, generator=g), torch.randint(0, 2, (6,), generator=g)
    full = TrajectoryRecorder([half_grid, sign], xv, yv, every=every)
    best = TrajectoryRecorder([half_grid, sign], xv, yv, every=every, keep_best=b)
    for epoch in range(1, n_ckpt + 1):
        with torch.no_grad():  # a random walk: quantized points repeat now and then
            for p in ens.params.values():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        full(epoch, ens)
        best(epoch, ens)
    f, r = full.result(), best.result()
    assert r["val_losses"].shape[:3] == (k, 2, b)
    for run in range(k):
        for j in range(2):
            want_l, want_h, want_e = naive.keep_best(
                f["val_losses"][run, j], f["qhash"][run, j], f["val_epochs"][run, j], b
            )
            np.testing.assert_array_equal(r["qhash"][run, j], want_h)
            np.testing.assert_array_equal(r["val_epochs"][run, j], want_e)
            np.testing.assert_array_equal(r["val_losses"][run, j], want_l)


def test_recorder_with_both_trainers_and_store(tmp_path):
    mix = data.GaussianMixture.random(dim=8, k_modes=6, sigma=1.5, rng=0)
    parts = [mix.sample(30, 10 + i) for i in range(3)]
    x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    y = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    xv, yv = (torch.as_tensor(a) for a in mix.sample(50, 99))
    subsets = np.arange(90).reshape(3, 30)
    fn = functools.partial(build_model, "quadratic_linear", dim=8)
    cfg = TrainConfig.aubinais2025(epochs=12, lr=1e-2)
    qs = {"fp": identity, "sign": sign, "half": half_grid}
    rec = TrajectoryRecorder(qs, xv, yv, every=3)
    train_ensemble(fn, x, y, cfg, [0, 1, 2], subsets=subsets, callbacks=[rec])
    res = rec.result()
    assert res["val_losses"].shape == (3, 3, 4, 50)
    np.testing.assert_array_equal(res["val_epochs"][0, 0], [3, 6, 9, 12])
    single = TrajectoryRecorder(qs, xv, yv, every=3)
    train_model(fn, x, y, cfg, 2, subset=subsets[2], callbacks=[single])
    one = single.result()
    np.testing.assert_allclose(one["val_losses"][0], res["val_losses"][2], rtol=1e-4, atol=1e-5)
    # the sign-quantized model hardly moves: its hashes agree between the two trainers
    np.testing.assert_array_equal(one["qhash"][0, 1], res["qhash"][2, 1])
    store = RunStore(tmp_path / "run")
    rec.save(store, prefix="gmm/", note="test")
    assert store.load("gmm/val_losses").shape == (3, 3, 4, 50)
    assert store.load("gmm/qhash").dtype == np.uint64
    assert store.meta("gmm/qhash")["quantizers"] == ["fp", "sign", "half"]


def test_recorder_bad_inputs():
    xv, yv = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(MisValueError, match="callable"):
        TrajectoryRecorder([1], xv, yv)
    with pytest.raises(MisValueError, match="every"):
        TrajectoryRecorder([sign], xv, yv, every=0)
    with pytest.raises(MisValueError, match="y_val"):
        TrajectoryRecorder([sign], xv, yv[:3])
    rec = TrajectoryRecorder([lambda w: w[:1]], xv, yv)
    with pytest.raises(MisValueError, match="shape"):
        rec(1, _ensemble(2, 2, 0))
    with pytest.raises(MisValueError, match="nothing recorded"):
        TrajectoryRecorder([sign], xv, yv, keep_best=2).result()


def test_mse_losses_of_a_regression_mlp_with_a_stacked_quantizer():
    """loss="mse": the recorded loss is (f_Q(x) − y)² of the quantized MLP, with weights and
    biases quantized (StackedQuantizer equals weight_quantizer per model)."""
    g = torch.Generator().manual_seed(1)
    mods = [build_model("mlp", in_features=5, hidden=(7,), n_classes=1) for _ in range(3)]
    for m in mods:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    ens = Ensemble.from_modules(mods)
    xv, yv = torch.randn(11, 5, generator=g), torch.randn(11, generator=g)
    rec = TrajectoryRecorder({"t50": StackedQuantizer("ternary-50")}, xv, yv, loss="mse")
    rec(1, ens)
    got = rec.result()["val_losses"][:, 0, 0]
    q = weight_quantizer("ternary-50")
    for k, m in enumerate(mods):
        qm = build_model("mlp", in_features=5, hidden=(7,), n_classes=1)
        qm.load_state_dict({n: q(p.detach()) for n, p in m.state_dict().items()})
        want = ((qm(xv)[:, 0] - yv) ** 2).detach().numpy()
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(MisValueError, match="loss must be one of"):
        TrajectoryRecorder({"t50": StackedQuantizer("ternary-50")}, xv, yv, loss="l1")
