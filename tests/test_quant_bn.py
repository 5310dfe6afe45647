"""Batch-norm tuning: statistics re-estimated on members, weights untouched, modes restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mis.exceptions import MisValueError
from mis.quant import QuantConfig, quantize_model, select_calibration
from mis.quant.bn import batchnorm_layers, bn_tune
from tests import naive
from tests.test_quant_obc import digits_run

# the solvers run thousands of small ops: one torch thread (conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bn_net(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Conv2d(4, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 2),
    ).eval()


def make_calib(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 10, 2, 5, 5, generator=g) * 2 + 0.5
    mask = np.zeros(n + 10, dtype=bool)
    mask[:n] = True
    return select_calibration(x, member_mask=mask, n_samples=n, rng=seed)


@pytest.mark.parametrize(("momentum", "n_batches", "batch_size"), [(None, 4, 12), (0.1, 7, 10)])
def test_first_bn_statistics_match_naive(momentum, n_batches, batch_size):
    net = bn_net()
    calib = make_calib()
    bn_tune(net, calib, n_batches=n_batches, batch_size=batch_size, momentum=momentum)
    n = len(calib)
    with torch.no_grad():
        batches = [
            net[0](calib.x[torch.arange(i * batch_size, (i + 1) * batch_size) % n]).numpy()
            for i in range(n_batches)
        ]
    mean, var = naive.bn_running_stats_naive(batches, momentum)
    np.testing.assert_allclose(net[1].running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net[1].running_var.numpy(), var, rtol=1e-5, atol=1e-6)
    assert int(net[1].num_batches_tracked) == n_batches


def test_weights_fixed_modes_and_momentum_restored():
    net = bn_net(dropout=0.5)
    net[1].momentum = 0.3
    params = {k: v.clone() for k, v in net.named_parameters()}
    before = net[5].running_mean.clone()
    calib = make_calib()
    bn_tune(net, calib, n_batches=5, batch_size=16)
    for k, v in net.named_parameters():
        assert torch.equal(v, params[k]), k
    assert not any(m.training for m in net.modules())
    assert net[1].momentum == 0.3 and net[5].momentum == 0.1
    assert not torch.equal(net[5].running_mean, before)
    # dropout stayed off: a second run gives the very same statistics
    stats = net[5].running_var.clone()
    bn_tune(net, calib, n_batches=5, batch_size=16)
    assert torch.equal(net[5].running_var, stats)


def test_train_mode_model_stays_in_train_mode():
    net = bn_net().train()
    bn_tune(net, make_calib(), n_batches=2, batch_size=8)
    assert all(m.training for m in net.modules())


def test_no_batchnorm_warns_and_returns_model():
    net = nn.Sequential(nn.Flatten(), nn.Linear(50, 2))
    w = net[1].weight.clone()
    with pytest.warns(UserWarning, match="no BatchNorm"):
        out = bn_tune(net, make_calib(), n_batches=2)
    assert out is net and torch.equal(net[1].weight, w)
    assert batchnorm_layers(net) == []


def test_bad_inputs_raise():
    net = bn_net()
    calib = make_calib()
    with pytest.raises(MisValueError, match="calib must be"):
        bn_tune(net, calib.x)
    with pytest.raises(MisValueError, match="batch_size must be >= 2"):
        bn_tune(net, calib, batch_size=1)
    with pytest.raises(MisValueError, match="n_batches"):
        bn_tune(net, calib, n_batches=0)
    with pytest.raises(MisValueError, match="momentum"):
        bn_tune(net, calib, momentum=1.5)
    with pytest.raises(MisValueError, match="model must be"):
        bn_tune("net", calib)


@pytest.mark.parametrize("method", ["obc", "gptq"])
def test_bn_tuning_option_of_the_methods(method):
    net = bn_net()
    calib = make_calib()
    plain = quantize_model(net, QuantConfig(bits=2, method=method), calib)
    opts = {"bn_tuning": True, "bn_batches": 6, "bn_batch_size": 16}
    tuned = quantize_model(net, QuantConfig(bits=2, method=method, method_options=opts), calib)
    for a, b in zip(plain.parameters(), tuned.parameters(), strict=True):
        assert torch.equal(a, b)  # BN tuning changes no weight
    bn_tune(plain, calib, n_batches=6, batch_size=16)
    for name in ("1", "5"):
        ta, pa = dict(tuned.named_modules())[name], dict(plain.named_modules())[name]
        torch.testing.assert_close(ta.running_mean, pa.running_mean)
        torch.testing.assert_close(ta.running_var, pa.running_var)
    assert not torch.equal(tuned[1].running_var, net[1].running_var)


def test_digits_bn_tuning_keeps_accuracy_quick():
    torch.manual_seed(0)
    model, calib, acc = digits_run(seed=1, epochs=10, batchnorm=True, width=8)
    cfg = dict(bits=2, method="obc")
    plain = acc(quantize_model(model, QuantConfig(**cfg), calib))
    tuned = acc(
        quantize_model(model, QuantConfig(**cfg, method_options={"bn_tuning": True}), calib)
    )
    assert tuned >= plain - 0.01, (plain, tuned)
    rtn = quantize_model(model, QuantConfig(bits=2), calib)
    a_rtn = acc(rtn)
    assert acc(bn_tune(rtn, calib)) >= a_rtn - 0.01


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_digits_bn_tuning_keeps_or_improves(seed):
    model, calib, acc = digits_run(seed=seed, epochs=30, batchnorm=True)
    for bits in (2, 1.58):
        for method in ("obc", "gptq"):
            cfg = dict(bits=bits, method=method)
            plain = acc(quantize_model(model, QuantConfig(**cfg), calib))
            opts = {"bn_tuning": True}
            tuned = acc(quantize_model(model, QuantConfig(**cfg, method_options=opts), calib))
            assert tuned >= plain - 0.01, (bits, method, plain, tuned)
