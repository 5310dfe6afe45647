"""Ensemble trainer: K models at once give the weights of K separate runs."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mis.exceptions import MisValueError
from mis.train import data
from mis.train.config import TrainConfig, init_model
from mis.train.ensemble import Ensemble, train_ensemble
from mis.train.masks import keep_masks
from mis.train.models import build_model
from mis.train.trainer import train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _max_diff(ens: Ensemble, k: int, model: torch.nn.Module) -> float:
    sd = ens.state_dict(k)
    return max((sd[n] - p).abs().max().item() for n, p in model.state_dict().items())


def _digits(n=240):
    ds = data.load_digits()
    return ds.tensor(ds.x[:n]), torch.as_tensor(ds.y[:n])


MLP = functools.partial(build_model, "mlp", in_features=64, hidden=(32,), n_classes=10)
CNN = functools.partial(build_model, "digits_cnn", width=4)


@pytest.mark.parametrize(
    "model_fn, config, use_keep",
    [
        # SGD, mini-batch, unequal subsets (inactive steps), cosine, weight decay
        (MLP, TrainConfig(epochs=4, lr=0.05, batch_size=32, weight_decay=5e-4), True),
        # SGD nesterov, no momentum buffer differences, all data
        (MLP, TrainConfig(epochs=3, lr=0.05, batch_size=50, nesterov=True), False),
        # plain SGD without momentum, full batch
        (MLP, TrainConfig(epochs=5, lr=0.1, momentum=0.0, batch_size=None), True),
        # Adam full batch with L2
        (
            MLP,
            TrainConfig(
                epochs=5,
                lr=1e-2,
                optimizer="adam",
                batch_size=None,
                weight_decay=1e-3,
                schedule="constant",
            ),
            True,
        ),
        # Adam mini-batch with flip + crop augmentation on images (CNN)
        (
            CNN,
            TrainConfig(
                epochs=2, lr=1e-2, optimizer="adam", batch_size=40, augment=True, padding=2
            ),
            True,
        ),
    ],
)
def test_ensemble_equals_one_by_one(model_fn, config, use_keep):
    x, y = _digits()
    seeds = [3, 17, 29, 101]
    keep = keep_masks(4, len(y), 0.5, rng=0) if use_keep else None
    ens = train_ensemble(model_fn, x, y, config, seeds, subsets=keep, device="cpu")
    assert len(ens) == 4
    for k, s in enumerate(seeds):
        single = train_model(
            model_fn, x, y, config, s, device="cpu", subset=None if keep is None else keep[k]
        )
        assert _max_diff(ens, k, single) < 2e-5, k
    # the models really differ from each other
    p = ens.params["net.1.weight" if "net.1.weight" in ens.params else "conv1.weight"]
    assert (p[0] - p[1]).abs().max() > 1e-3


def test_quadratic_fast_path_equals_generic_and_one_by_one():
    mix = data.GaussianMixture.random(dim=16, k_modes=6, sigma=2.0, rng=0)
    k, n = 5, 40
    parts = [mix.sample(n, 100 + i) for i in range(k)]
    x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    y = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    subsets = np.arange(k * n).reshape(k, n)  # one independent training set per run
    fn = functools.partial(build_model, "quadratic_linear", dim=16)
    cfg = TrainConfig.aubinais2025(epochs=60, lr=1e-2)
    fast = train_ensemble(fn, x, y, cfg, range(k), subsets=subsets, fast=True)
    slow = train_ensemble(fn, x, y, cfg, range(k), subsets=subsets, fast=False)
    for name in fast.params:
        torch.testing.assert_close(fast.params[name], slow.params[name], rtol=0, atol=1e-5)
    for i in (0, 3):
        single = train_model(fn, x, y, cfg, i, subset=subsets[i])
        assert _max_diff(fast, i, single) < 1e-5
    # fast path with unequal subsets in mini-batches too
    keep = keep_masks(4, k * n, 0.5, rng=1)
    cfg2 = TrainConfig(epochs=3, lr=1e-2, optimizer="adam", batch_size=16, weight_decay=0.0)
    f2 = train_ensemble(fn, x, y, cfg2, range(4), subsets=keep, fast=True)
    s2 = train_ensemble(fn, x, y, cfg2, range(4), subsets=keep, fast=False)
    for name in f2.params:
        torch.testing.assert_close(f2.params[name], s2.params[name], rtol=0, atol=1e-5)


def test_ensemble_deterministic_for_a_seed():
    x, y = _digits(120)
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, augment=False)
    a = train_ensemble(MLP, x, y, cfg, [1, 2])
    b = train_ensemble(MLP, x, y, cfg, [1, 2])
    c = train_ensemble(MLP, x, y, cfg, [1, 3])
    for n in a.params:
        assert torch.equal(a.params[n], b.params[n])
    assert torch.equal(a.params["net.1.weight"][0], c.params["net.1.weight"][0])
    assert not torch.equal(a.params["net.1.weight"][1], c.params["net.1.weight"][1])


def test_ensemble_callbacks_model_and_forward():
    x, y = _digits(100)
    seen = []
    ens = train_ensemble(
        MLP,
        x,
        y,
        TrainConfig(epochs=3, lr=0.05, batch_size=None),
        [5, 6],
        callbacks=[lambda e, view: seen.append((e, len(view)))],
    )
    assert seen == [(1, 2), (2, 2), (3, 2)]
    logits = ens.forward(x, batch_size=33)
    assert logits.shape == (2, 100, 10)
    m1 = ens.model(1)
    with torch.no_grad():
        torch.testing.assert_close(logits[1], m1(x), rtol=1e-5, atol=1e-5)


def test_ensemble_rejects_batchnorm_and_bad_subsets():
    x = torch.randn(4, 3, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(MisValueError, match="BatchNorm"):
        train_ensemble(
            functools.partial(build_model, "resnet18"), x, y, TrainConfig(epochs=1), [0, 1]
        )
    xs, ys = _digits(20)
    with pytest.raises(MisValueError, match="one row per seed"):
        train_ensemble(
            MLP, xs, ys, TrainConfig(epochs=1), [0, 1], subsets=keep_masks(4, 20, 0.5, 0)
        )
    with pytest.raises(MisValueError, match="float"):
        train_ensemble(MLP, torch.zeros(20, 64, dtype=torch.long), ys, TrainConfig(epochs=1), [0])


def test_mse_ensemble_equals_plain_adam_loop_per_model():
    """loss="mse": each model of the ensemble ends where a plain torch.optim.Adam loop on
    the mean squared error of its own subset ends (full batch)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(40, generator=g)
    subsets = [np.arange(0, 30), np.arange(10, 40), np.arange(5, 35)]
    model_fn = functools.partial(build_model, "mlp", in_features=6, hidden=(8,), n_classes=1)
    cfg = TrainConfig(
        epochs=15, lr=0.01, optimizer="adam", weight_decay=0.0, schedule="constant",
        batch_size=None, amp=False,
    )  # fmt: skip
    seeds = [3, 4, 5]
    ens = train_ensemble(model_fn, x, y, cfg, seeds, subsets=subsets, loss="mse", device="cpu")
    for k, (seed, sub) in enumerate(zip(seeds, subsets, strict=True)):
        model = init_model(model_fn, seed)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            ((model(x[sub])[:, 0] - y[sub]) ** 2).mean().backward()
            opt.step()
        assert _max_diff(ens, k, model) < 1e-5


def test_loss_argument_is_checked():
    x, y = torch.randn(10, 3), torch.randn(10)
    model_fn = functools.partial(build_model, "mlp", in_features=3, hidden=(4,), n_classes=1)
    with pytest.raises(MisValueError, match="loss must be one of"):
        train_ensemble(model_fn, x, y, TrainConfig(epochs=1), [0], loss="huber")
    y_bad = y.clone()
    y_bad[0] = float("nan")
    with pytest.raises(MisValueError, match="finite regression targets"):
        train_ensemble(model_fn, x, y_bad, TrainConfig(epochs=1), [0], loss="mse")
    two = functools.partial(build_model, "mlp", in_features=3, hidden=(4,), n_classes=2)
    with pytest.raises(MisValueError, match="one output per example"):
        train_ensemble(two, x, y, TrainConfig(epochs=1, batch_size=None), [0], loss="mse")
