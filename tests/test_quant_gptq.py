"""GPTQ: the blocked Cholesky form equals OBS in a fixed order (the ``"gptq"`` method is the
reference algorithm); refinement sweeps (``"gptq-refine"``, our extension) against their plain
loop; options; quantize_model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mis.exceptions import MisValueError
from mis.quant import (
    GPTQOptions,
    GPTQRefineOptions,
    QuantConfig,
    get_method,
    quantization_report,
    quantize_model,
)
from mis.quant.api import LayerSpec
from mis.quant.gptq import gptq_quantize, refine_quantized
from mis.quant.obc import layer_grid, obc_quantize, on_grid, prepare_hessian
from tests import naive
from tests.test_quant_obc import calib_for, levels_of, output_error, random_layer, small_net

# the solvers run thousands of small ops: one torch thread (conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    Hd, _, _ = prepare_hessian(H, W.double(), 0.01)
    grid = layer_grid(spec, W)  # from the original weight, as the reference's find_params(W)
    if act_order:
        order = torch.argsort(torch.diagonal(Hd), descending=True, stable=True).tolist()
    else:
        order = list(range(K))
    Q = gptq_quantize(W, H, spec, block_size=block, act_order=act_order)
    Qn = naive.ordered_obs_naive(W.numpy(), H.numpy(), levels_of(grid), order, percdamp=0.01)
    np.testing.assert_allclose(Q.numpy(), Qn.astype(np.float32), rtol=1e-6, atol=0)
    assert bool(on_grid(grid, Q).all())


def test_grid_comes_from_the_original_weight_as_in_the_reference():
    """A dead column (an input always 0) holding a row's largest weight: the reference fixes
    the grid with find_params(W) before zeroing dead columns, so the grid keeps that range."""
    W, _, H = random_layer(3, 2, 6, 40, dead=1)
    W[0, 0] = 1.0  # the largest weight of row 0 sits in the dead column
    spec = LayerSpec(2)
    Q = gptq_quantize(W, H, spec)
    original, zeroed = layer_grid(spec, W), layer_grid(spec, torch.cat([0 * W[:, :1], W[:, 1:]], 1))
    assert bool(on_grid(original, Q).all())
    assert not bool(on_grid(zeroed, Q)[0].all())  # a different grid for row 0
    assert float(Q[0, 0]) == 0.0  # the dead weight itself is 0 (0 is a level)
    # refine_quantized finds that grid from the spec too (OBC's is the zeroed one)
    R = refine_quantized(W, Q, H, spec, sweeps=2, block=2)
    assert bool(on_grid(original, R).all())
    assert bool(on_grid(zeroed, refine_quantized(W, obc_quantize(W, H, spec), H, spec)).all())
    order = list(range(6))
    Qn = naive.ordered_obs_naive(W.numpy(), H.numpy(), levels_of(original), order, percdamp=0.01)
    np.testing.assert_allclose(Q.numpy(), Qn.astype(np.float32), rtol=1e-6, atol=0)


# -------------------------------------------------------------------------------------------
# refinement sweeps (block coordinate descent after GPTQ; our extension)
# -------------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 10_000),
    C=st.integers(1, 3),
    K=st.integers(1, 14),
    bits=st.sampled_from([4, 2, 1.58, 1]),
    rblock=st.sampled_from([1, 2, 3, 5, 32]),
    sweeps=st.sampled_from([1, 2, 5]),
    act_order=st.booleans(),
    dead=st.integers(0, 2),
)
def test_refinement_equals_plain_loop(seed, C, K, bits, rblock, sweeps, act_order, dead):
    dead = min(dead, K - 1)
    W, _, H = random_layer(seed, C, K, 3 * K + 4, dead=dead)
    spec = LayerSpec(bits)
    Hd, _, _ = prepare_hessian(H, W.double(), 0.01)
    grid = layer_grid(spec, W)
    if act_order:
        order = torch.argsort(torch.diagonal(Hd), descending=True, stable=True).tolist()
    else:
        order = list(range(K))
    levels = levels_of(grid)
    Q0 = naive.ordered_obs_naive(W.numpy(), H.numpy(), levels, order, percdamp=0.01)
    Qn = naive.block_refine_naive(W.numpy(), H.numpy(), Q0, levels, sweeps, rblock)
    Q = gptq_quantize(W, H, spec, act_order=act_order, refine_sweeps=sweeps, refine_block=rblock)
    np.testing.assert_allclose(Q.numpy(), Qn.astype(np.float32), rtol=1e-6, atol=0)
    assert bool(on_grid(grid, Q).all())


@given(
    seed=st.integers(0, 10_000),
    C=st.integers(1, 5),
    K=st.integers(2, 40),
    bits=st.sampled_from([4, 2, 1.58, 1]),
    rblock=st.sampled_from([1, 4, 8, 32]),
)
def test_refinement_never_increases_any_rows_loss(seed, C, K, bits, rblock):
    W, _, H = random_layer(seed, C, K, 2 * K + 3)
    spec = LayerSpec(bits)
    _, Wz, _ = prepare_hessian(H, W.double(), 0.01)
    grid = layer_grid(spec, Wz.float())
    # each solver's own grid: GPTQ's from the original weight (as its reference), OBC's and
    # this RTN's from the dead-column-zeroed one (the same when no input column is dead)
    for q0, g0 in (
        (gptq_quantize(W, H, spec), layer_grid(spec, W)),
        (obc_quantize(W, H, spec), grid),
        (grid.fake_quant(Wz.float()), grid),  # RTN
    ):
        q = refine_quantized(W, q0, H, spec, sweeps=3, block=rblock)
        before = naive.damped_loss_naive(W.numpy(), H.numpy(), q0.numpy())
        after = naive.damped_loss_naive(W.numpy(), H.numpy(), q.numpy())
        assert np.all(after <= before * (1 + 1e-9)), (before, after)
        assert bool(on_grid(g0, q).all())


def test_refinement_lowers_gptq_error_on_a_correlated_layer():
    W, X, H = random_layer(21, 24, 144, 600)
    for bits in (4, 2):
        e0 = output_error(W, gptq_quantize(W, H, LayerSpec(bits), act_order=True), X)
        e1 = output_error(
            W, gptq_quantize(W, H, LayerSpec(bits), act_order=True, refine_sweeps=8), X
        )
        assert e1 < 0.97 * e0, (bits, e0, e1)


def test_refinement_stops_at_a_fixed_point():
    W, _, H = random_layer(4, 6, 40, 160)
    a = gptq_quantize(W, H, LayerSpec(2), refine_sweeps=200, refine_block=8)
    b = refine_quantized(W, a, H, LayerSpec(2), sweeps=8, block=8)
    assert torch.equal(a, b)  # 200 sweeps ran to a fixed point: more change nothing
    assert torch.equal(refine_quantized(W, a, H, LayerSpec(2), sweeps=0), a)


def test_refine_bad_inputs_raise():
    W, _, H = random_layer(0, 3, 5, 20)
    with pytest.raises(MisValueError, match="refine_sweeps"):
        gptq_quantize(W, H, LayerSpec(4), refine_sweeps=-1)
    with pytest.raises(MisValueError, match="refine_block"):
        gptq_quantize(W, H, LayerSpec(4), refine_block=0)
    q = gptq_quantize(W, H, LayerSpec(4))
    with pytest.raises(MisValueError, match="q must lie on grid"):
        refine_quantized(W, q + 1e-3, H, LayerSpec(4))
    with pytest.raises(MisValueError, match="q must be a tensor with the shape"):
        refine_quantized(W, q[:2], H, LayerSpec(4))
    with pytest.raises(MisValueError, match="sweeps"):
        refine_quantized(W, q, H, LayerSpec(4), sweeps=1.5)
    with pytest.raises(MisValueError, match="block"):
        refine_quantized(W, q, H, LayerSpec(4), block=0)


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
    "method, options",
    [
        ("gptq", {}),
        ("gptq", {"act_order": True}),
        ("gptq", {"sequential": False}),
        ("gptq", {"block_size": 4, "dtype": "float32"}),
        ("gptq-refine", {}),
        ("gptq-refine", {"refine_sweeps": 0}),
        ("gptq-refine", {"refine_sweeps": 2, "refine_block": 5, "act_order": False}),
    ],
)
def test_quantize_model_gptq(method, options):
    net = small_net()
    calib, _ = calib_for()
    cfg = QuantConfig(bits=2, method=method, last_layer_bits=8, method_options=options)
    q = quantize_model(net, cfg, calib)
    rep = quantization_report(q)
    assert rep["0"].max_levels <= 4 and rep["3"].max_levels <= 4
    assert 4 < rep["5"].max_levels <= 256
    w0 = net[0].weight.detach()
    assert bool(on_grid(layer_grid(LayerSpec(2), w0), q[0].weight.reshape(4, -1)).all())


def _params(net, calib, bits, method, **opts):
    cfg = QuantConfig(bits=bits, method=method, method_options=opts)
    return [p.detach() for p in quantize_model(net, cfg, calib).parameters()]


def test_gptq_method_is_plain_gptq_in_natural_order():
    """The "gptq" method is the reference: natural column order, no refinement (= gptq-refine
    with its extension switched off and act-order off); it differs from the refined default."""
    net = small_net()
    calib, _ = calib_for()
    for bits in (4, 2, 1.58, 1):
        plain = _params(net, calib, bits, "gptq")
        off = _params(net, calib, bits, "gptq-refine", refine_sweeps=0, act_order=False)
        for a, b in zip(plain, off, strict=True):
            assert torch.equal(a, b)
    refined = _params(net, calib, 2, "gptq-refine")
    assert any(not torch.equal(a, b) for a, b in zip(_params(net, calib, 2, "gptq"), refined,
                                                         strict=True))  # fmt: skip
    assert get_method("gptq").label == "GPTQ"
    assert "our extension" in get_method("gptq-refine").description
    assert GPTQOptions().act_order is False and GPTQRefineOptions().act_order is True


def test_method_default_refines_multi_level_layers_only():
    """gptq-refine's refine_sweeps=None (default): 8 sweeps on layers with >= 3 levels, none on
    1-bit layers (where the sweeps lowered the layer error but hurt digits accuracy)."""
    net = small_net()
    calib, _ = calib_for()

    def run(bits, **opts):
        return _params(net, calib, bits, "gptq-refine", **opts)

    for a, b in zip(run(1), run(1, refine_sweeps=0), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(run(2), run(2, refine_sweeps=8), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(run(2), run(2, refine_sweeps=0), strict=True))


def test_quantize_model_gptq_bad_options():
    net = small_net()
    calib, _ = calib_for()
    for method, opts, match in (
        ("gptq", {"block_size": 0}, "block_size"),
        ("gptq", {"act_order": "yes"}, "act_order"),
        ("gptq", {"refine_sweeps": 2}, "unknown method_options.refine_sweeps"),
        ("gptq-refine", {"refine_sweeps": -1}, "refine_sweeps"),
        ("gptq-refine", {"refine_block": 0}, "refine_block"),
        ("gptq", {"lazy_block": 4}, "unknown method_options"),
        ("gptq-refine", {"dtype": "float16"}, "dtype"),
        ("gptq", {"bn_batches": 0}, "bn_batches"),
    ):
        with pytest.raises(MisValueError, match=match):
            quantize_model(net, QuantConfig(method=method, method_options=opts), calib)


def test_sequential_first_layer_identical():
    net = small_net()
    calib, _ = calib_for()
    a = quantize_model(net, QuantConfig(bits=2, method="gptq"), calib)
    b = quantize_model(
        net, QuantConfig(bits=2, method="gptq", method_options={"sequential": False}), calib
    )
    assert torch.equal(a[0].weight, b[0].weight)
