"""GPTQ: the blocked Cholesky form equals OBS in a fixed order; options; quantize_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mis.exceptions import MisValueError
from mis.quant import QuantConfig, quantization_report, quantize_model
from mis.quant.api import LayerSpec
from mis.quant.gptq import gptq_quantize
from mis.quant.obc import layer_grid, on_grid, prepare_hessian
from tests import naive
from tests.test_quant_obc import calib_for, levels_of, output_error, random_layer, small_net


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The solvers run thousands of small ops: on the shared 2-core machine intra-op
    threads only add synchronisation waits, so the tests use one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@given(
    seed=st.integers(0, 10_000),
    C=st.integers(1, 4),
    K=st.integers(1, 14),
    bits=st.sampled_from([4, 2, 1.58, 1]),
    block=st.sampled_from([1, 2, 5, 128]),
    act_order=st.booleans(),
    dead=st.integers(0, 2),
)
def test_gptq_equals_fixed_order_obs(seed, C, K, bits, block, act_order, dead):
    dead = min(dead, K - 1)
    W, _, H = random_layer(seed, C, K, 3 * K + 4, dead=dead)
    spec = LayerSpec(bits)
    Hd, Wz, _ = prepare_hessian(H, W.double(), 0.01)
    grid = layer_grid(spec, Wz.float())
    if act_order:
        order = torch.argsort(torch.diagonal(Hd), descending=True, stable=True).tolist()
    else:
        order = list(range(K))
    Q = gptq_quantize(W, H, spec, block_size=block, act_order=act_order)
    Qn = naive.ordered_obs_naive(W.numpy(), H.numpy(), levels_of(grid), order, percdamp=0.01)
    np.testing.assert_allclose(Q.numpy(), Qn.astype(np.float32), rtol=1e-6, atol=0)
    assert bool(on_grid(grid, Q).all())


def test_block_size_does_not_change_result():
    W, _, H = random_layer(7, 6, 300, 900)
    ref = gptq_quantize(W, H, LayerSpec(2), block_size=1)
    for bs in (7, 128, 1000):
        torch.testing.assert_close(gptq_quantize(W, H, LayerSpec(2), block_size=bs), ref)


def test_gptq_float32_solver_close_to_float64():
    W, X, H = random_layer(8, 8, 64, 400)
    e64 = output_error(W, gptq_quantize(W, H, LayerSpec(4)), X)
    e32 = output_error(W, gptq_quantize(W, H, LayerSpec(4), dtype=torch.float32), X)
    assert abs(e32 - e64) <= 0.02 * e64


def test_gptq_bad_inputs_raise():
    W, _, H = random_layer(0, 3, 5, 20)
    with pytest.raises(MisValueError, match="block_size"):
        gptq_quantize(W, H, LayerSpec(4), block_size=0)
    with pytest.raises(MisValueError, match="act_order"):
        gptq_quantize(W, H, LayerSpec(4), act_order=1)
    with pytest.raises(MisValueError, match="dtype"):
        gptq_quantize(W, H, LayerSpec(4), dtype=torch.float16)
    with pytest.raises(MisValueError, match="H must be a tensor of shape"):
        gptq_quantize(W, H.T[:3], LayerSpec(4))
    with pytest.raises(MisValueError, match="not positive definite"):
        gptq_quantize(W, torch.ones(5, 5, dtype=torch.float64), LayerSpec(4), percdamp=0.0)


@pytest.mark.parametrize(
    "options",
    [{}, {"act_order": False}, {"sequential": False}, {"block_size": 4, "dtype": "float32"}],
)
def test_quantize_model_gptq(options):
    net = small_net()
    calib, _ = calib_for()
    cfg = QuantConfig(bits=2, method="gptq", last_layer_bits=8, method_options=options)
    q = quantize_model(net, cfg, calib)
    rep = quantization_report(q)
    assert rep["0"].max_levels <= 4 and rep["3"].max_levels <= 4
    assert 4 < rep["5"].max_levels <= 256
    w0 = net[0].weight.detach()
    assert bool(on_grid(layer_grid(LayerSpec(2), w0), q[0].weight.reshape(4, -1)).all())


def test_quantize_model_gptq_bad_options():
    net = small_net()
    calib, _ = calib_for()
    for opts, match in (
        ({"block_size": 0}, "block_size"),
        ({"act_order": "yes"}, "act_order"),
        ({"lazy_block": 4}, "unknown method_options"),
        ({"dtype": "float16"}, "dtype"),
        ({"bn_batches": 0}, "bn_batches"),
    ):
        with pytest.raises(MisValueError, match=match):
            quantize_model(net, QuantConfig(method="gptq", method_options=opts), calib)


def test_sequential_first_layer_identical():
    net = small_net()
    calib, _ = calib_for()
    a = quantize_model(net, QuantConfig(bits=2, method="gptq"), calib)
    b = quantize_model(
        net, QuantConfig(bits=2, method="gptq", method_options={"sequential": False}), calib
    )
    assert torch.equal(a[0].weight, b[0].weight)
