"""The fused minibatch Adam trainer (mis.train.fused) against torch.optim.Adam on one model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mis.exceptions import MisValueError
from mis.train.fused import batch_order, train_linear_ensemble

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _torch_reference(phi, y, w0, b0, *, epochs, lr, batch, seed, weight_decay=0.0, dtype):
    """One torch.nn.Linear trained with torch.optim.Adam on batches in ``batch_order``."""
    n, f = phi.shape
    c = w0.shape[0]
    lin = torch.nn.Linear(f, c).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0))
        lin.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    x = torch.from_numpy(phi).to(dtype)
    t = torch.from_numpy(y)
    for e in range(epochs):
        order = torch.from_numpy(batch_order(seed, e, n))
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            opt.zero_grad()
            z = lin(x[idx])
            if c == 1:
                loss = F.binary_cross_entropy_with_logits(z[:, 0], t[idx].to(dtype))
            else:
                loss = F.cross_entropy(z, t[idx])
            loss.backward()
            opt.step()
    return lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()


@pytest.mark.parametrize(
    "c, batch, weight_decay", [(1, 8, 0.0), (1, 5, 0.0), (1, None, 0.0), (3, 6, 1e-3)]
)
def test_one_model_matches_torch_adam(c, batch, weight_decay):
    """Float64 torch: the same weights to 1e-6 after hundreds of steps (here ~1e-15)."""
    rng = np.random.default_rng(c + (batch or 0))
    n, f = 40, 24
    phi = rng.normal(size=(n, f))
    y = rng.integers(0, 2 if c == 1 else c, n)
    w0 = rng.uniform(-0.2, 0.2, (c, f))
    b0 = rng.uniform(-0.2, 0.2, c)
    epochs, lr, seed = 60, 1e-2, 1234
    ens = train_linear_ensemble(
        phi[None], y[None], w0[None], b0[None], epochs=epochs, lr=lr, seeds=[seed],
        batch_size=batch, weight_decay=weight_decay,
    )  # fmt: skip
    w, b = _torch_reference(phi, y, w0, b0, epochs=epochs, lr=lr, batch=batch or n, seed=seed,
                            weight_decay=weight_decay, dtype=torch.float64)  # fmt: skip
    assert ens.steps == epochs * -(-n // (batch or n))
    assert np.abs(ens.weight[0] - w0).max() > 0.05  # it moved
    np.testing.assert_allclose(ens.weight[0], w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ens.bias[0], b, rtol=0, atol=1e-6)
    assert np.abs(ens.weight[0] - w).max() < 1e-12  # in fact to rounding


def test_float32_torch_agrees_to_its_precision():
    rng = np.random.default_rng(5)
    n, f = 128, 32
    phi = rng.normal(size=(n, f)).astype(np.float32).astype(np.float64)
    y = rng.integers(0, 2, n)
    w0 = rng.uniform(-0.1, 0.1, (1, f)).astype(np.float32).astype(np.float64)
    b0 = np.zeros(1)
    ens = train_linear_ensemble(phi[None], y[None], w0[None], b0[None], epochs=30, lr=1e-3,
                                seeds=[3], batch_size=8)  # fmt: skip
    w, _ = _torch_reference(phi.astype(np.float32), y, w0.astype(np.float32),
                            b0.astype(np.float32), epochs=30, lr=1e-3, batch=8, seed=3,
                            dtype=torch.float32)  # fmt: skip
    np.testing.assert_allclose(ens.weight[0], w, atol=1e-5)


def test_models_of_an_ensemble_are_independent():
    rng = np.random.default_rng(2)
    k, n, f = 4, 16, 6
    phi = rng.normal(size=(k, n, f))
    y = rng.integers(0, 2, (k, n))
    w0 = rng.normal(size=(k, 1, f))
    b0 = rng.normal(size=(k, 1))
    seeds = [11, 12, 13, 14]
    w_before = w0.copy()
    all_ = train_linear_ensemble(phi, y, w0, b0, epochs=7, lr=0.05, seeds=seeds, batch_size=3)
    np.testing.assert_array_equal(w0, w_before)  # the initial weights are not modified
    for i in range(k):
        one = train_linear_ensemble(phi[i : i + 1], y[i : i + 1], w0[i : i + 1], b0[i : i + 1],
                                    epochs=7, lr=0.05, seeds=[seeds[i]], batch_size=3)  # fmt: skip
        np.testing.assert_array_equal(all_.weight[i], one.weight[0])
        np.testing.assert_array_equal(all_.bias[i], one.bias[0])


def test_batch_order_is_a_seeded_permutation_and_callbacks_see_every_epoch():
    a = batch_order(5, 0, 50)
    assert sorted(a.tolist()) == list(range(50))
    np.testing.assert_array_equal(a, batch_order(5, 0, 50))
    assert not np.array_equal(a, batch_order(5, 1, 50))
    assert not np.array_equal(a, batch_order(6, 0, 50))
    seen = []
    phi = np.ones((1, 4, 2))
    cb = lambda e, w, b: seen.append((e, w.shape, b.shape))  # noqa: E731
    train_linear_ensemble(phi, np.zeros((1, 4), int), np.zeros((1, 1, 2)), np.zeros((1, 1)),
                          epochs=3, lr=0.1, seeds=[0], callbacks=[cb])  # fmt: skip
    assert seen == [(1, (1, 1, 2), (1, 1)), (2, (1, 1, 2), (1, 1)), (3, (1, 1, 2), (1, 1))]


def test_bad_input():
    phi = np.ones((2, 4, 3))
    y = np.zeros((2, 4), int)
    w, b = np.zeros((2, 1, 3)), np.zeros((2, 1))
    kw = dict(epochs=1, lr=0.1, seeds=[0, 1])
    with pytest.raises(MisValueError, match="features must have shape"):
        train_linear_ensemble(phi[0], y, w, b, **kw)
    with pytest.raises(MisValueError, match="weight must have shape"):
        train_linear_ensemble(phi, y, w[:, :, :2], b, **kw)
    with pytest.raises(MisValueError, match="labels must lie"):
        train_linear_ensemble(phi, y + 2, w, b, **kw)
    with pytest.raises(MisValueError, match="seeds must have one entry"):
        train_linear_ensemble(phi, y, w, b, epochs=1, lr=0.1, seeds=[0])
    with pytest.raises(MisValueError, match="batch_size"):
        train_linear_ensemble(phi, y, w, b, batch_size=5, **kw)
    with pytest.raises(MisValueError, match="lr"):
        train_linear_ensemble(phi, y, w, b, epochs=1, lr=0.0, seeds=[0, 1])
    bad = phi.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(MisValueError, match="finite"):
        train_linear_ensemble(bad, y, w, b, **kw)
