"""The closed-form MLP gradient of the ensemble trainer (mis.train.ensemble._mlp_grads)
against autograd through vmap, and the trainer's fast MLP path against the generic one and
against the plain one-model trainer."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mis.train import TrainConfig, build_model, train_ensemble, train_model
from mis.train.ensemble import Ensemble, _generic_grads, _mlp_grads, _mlp_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 4),
    b=st.integers(1, 9),
    hidden=st.sampled_from([(), (5,), (6, 4)]),
    shared=st.booleans(),
)
def test_mlp_grads_equal_autograd(seed, k, b, hidden, shared):
    g = torch.Generator().manual_seed(seed)
    fn = functools.partial(build_model, "mlp", in_features=12, hidden=hidden, n_classes=3)
    models = []
    for i in range(k):
        torch.manual_seed(seed + i)
        models.append(fn())
    ens = Ensemble.from_modules(models)
    xs = torch.randn((b, 1, 3, 4) if shared else (k, b, 1, 3, 4), generator=g)
    ys = torch.randint(0, 3, (b,) if shared else (k, b), generator=g)
    w = (torch.rand(k, b, generator=g) < 0.8).float()
    ref, ref_loss = _generic_grads(ens.base, ens.params, ens.buffers, xs, ys, w, shared)
    xk = xs.expand(k, *xs.shape) if shared else xs
    got, loss = _mlp_grads(_mlp_layers(ens.base), ens.params, xk, ys.expand(k, -1), w)
    assert set(got) == set(ref)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)


def _data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :3].argmax(1) + (torch.rand(n, generator=g) < 0.2)) % 3
    keep = np.random.default_rng(seed).random((3, n)) < 0.5
    return x, y, keep


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(epochs=3, lr=0.05, batch_size=16, momentum=0.9, weight_decay=5e-4),
        TrainConfig(epochs=2, lr=1e-3, optimizer="adam", batch_size=None, weight_decay=0.0),
        TrainConfig(epochs=2, lr=0.05, batch_size=32, augment=True, padding=1),
    ],
)
def test_fast_mlp_path_trains_like_the_generic_and_the_plain_trainer(cfg):
    x, y, keep = _data()
    fn = functools.partial(build_model, "mlp", in_features=16, hidden=(8,), n_classes=3)
    fast = train_ensemble(fn, x, y, cfg, [0, 1, 2], subsets=keep, device="cpu")
    slow = train_ensemble(fn, x, y, cfg, [0, 1, 2], subsets=keep, device="cpu", fast=False)
    for name in fast.params:
        torch.testing.assert_close(fast.params[name], slow.params[name], rtol=1e-4, atol=1e-5)
    plain = train_model(fn, x, y, cfg, 1, subset=keep[1], device="cpu", progress=False)
    for name, t in plain.state_dict().items():
        torch.testing.assert_close(fast.params[name][1], t, rtol=1e-4, atol=1e-5)


def test_full_batch_shared_inputs():
    x, y, _ = _data(60)
    fn = functools.partial(build_model, "mlp", in_features=16, hidden=(8, 8), n_classes=3)
    cfg = TrainConfig(epochs=4, lr=0.1, batch_size=None, momentum=0.0, weight_decay=0.0)
    fast = train_ensemble(fn, x, y, cfg, [3, 4], device="cpu")  # subsets=None: x shared
    slow = train_ensemble(fn, x, y, cfg, [3, 4], device="cpu", fast=False)
    for name in fast.params:
        torch.testing.assert_close(fast.params[name], slow.params[name], rtol=1e-5, atol=1e-6)
