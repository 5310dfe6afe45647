"""Sign, 1.58b x % and b-bit quantizers of Aubinais et al. (mis.quant.aubinais)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mis.exceptions import MisValueError
from mis.quant import aubinais as A
from mis.quant.grids import as_channels
from tests import naive

values = st.floats(-3, 3, allow_nan=False, width=32)
shapes = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=40),
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=4),
)
weights = shapes.flatmap(lambda s: hnp.arrays(np.float32, s, elements=values)).map(torch.from_numpy)
SPARSITIES = [0.0, 0.33, 0.5, 0.9, 1.0]


# -- sign ----------------------------------------------------------------------------------------


@given(weights)
def test_sign_values(w):
    q = A.sign_quantize(w)
    assert set(torch.unique(q).tolist()) <= {-1.0, 1.0}
    assert torch.equal(q, torch.where(w >= 0, 1.0, -1.0))
    assert torch.equal(A.sign_quantize(q), q)


def test_sign_of_zero_is_plus_one():
    q = A.sign_quantize(torch.tensor([0.0, -0.0, -1e-30, 1e-30]))
    assert q.tolist() == [1.0, 1.0, -1.0, 1.0]


@given(weights)
def test_sign_mean_scale(w):
    q = A.sign_quantize(w, scale="mean")
    wc, qc = as_channels(w).double(), as_channels(q).double()
    assert (naive.distinct_per_row(qc.numpy()) <= 2).all()
    alpha = wc.abs().mean(1, keepdim=True)
    np.testing.assert_allclose(qc.abs().numpy(), alpha.expand_as(qc).numpy(), rtol=1e-6, atol=1e-40)
    assert torch.equal(A.sign_quantize(q, scale="mean"), q)  # exactly idempotent


# -- 1.58b x % -------------------------------------------------------------------------------------


@given(weights, st.sampled_from(SPARSITIES))
def test_ternary_exact_sparsity_and_reference(w, sparsity):
    q = A.ternary_quantize(w, sparsity)
    k = A.n_zeros(w.numel(), sparsity)
    assert int((q == 0).sum()) == k
    assert set(torch.unique(q).tolist()) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(q.numpy(), naive.ternary_naive(w.numpy(), sparsity))
    # the zeros are the smallest magnitudes
    zero = q == 0
    if 0 < k < w.numel():
        assert w.abs()[zero].max() <= w.abs()[~zero].min()
    assert torch.equal(A.ternary_quantize(q, sparsity), q)  # idempotent


@given(st.integers(0, 2**31), st.integers(1, 500), st.sampled_from([0.33, 0.5, 0.9]))
def test_ternary_mean_scale(seed, n, sparsity):
    w = torch.randn((n, 3), generator=torch.Generator().manual_seed(seed))
    q = A.ternary_quantize(w, sparsity, scale="mean")
    assert int((q == 0).sum()) == A.n_zeros(w.numel(), sparsity)
    assert (naive.distinct_per_row(q.numpy()) <= 3).all()
    assert torch.equal(A.ternary_quantize(q, sparsity, scale="mean"), q)


def test_ternary_paper_fractions():
    w = torch.randn(64, 100, generator=torch.Generator().manual_seed(0))
    for s, frac in ((0.33, 0.33), (0.5, 0.5), (0.9, 0.9)):
        assert float((A.ternary_quantize(w, s) == 0).double().mean()) == frac


# -- b bits ----------------------------------------------------------------------------------------


@given(weights, st.sampled_from([2, 3, 4, 5]))
def test_bbit_reference_levels_and_idempotence(w, bits):
    q = A.bbit_quantize(w, bits)
    np.testing.assert_array_equal(q.numpy(), naive.bbit_naive(w.numpy(), bits).astype(np.float32))
    assert len(torch.unique(q)) <= 2**bits  # layer-wise grid: at most 2^b values in the layer
    assert torch.equal(A.bbit_quantize(q, bits), q)


@given(weights, st.sampled_from([2, 3, 4, 5]), st.sampled_from(["pow2max", "max", "none"]))
def test_bbit_alpha_options_idempotent(w, bits, alpha):
    q = A.bbit_quantize(w, bits, alpha=alpha)
    assert len(torch.unique(q)) <= 2**bits
    assert torch.equal(A.bbit_quantize(q, bits, alpha=alpha), q)


def test_bbit_grid_on_unit_interval():
    # Fig. 5 of the paper: the 2-bit quantizer on [-1, 1] has levels ±1/2, ±1.
    x = torch.linspace(-1, 1, 2001)
    q = A.bbit_quantize(x, 2)
    assert sorted(set(q.tolist())) == [-1.0, -0.5, 0.5, 1.0]
    assert float(A.bbit_quantize(torch.tensor([0.3, 1.0]), 2)[0]) == 0.5  # ceil: 0.3 -> 0.5


def test_error_decreases_with_bits():
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    errs = [float(((A.bbit_quantize(w, b) - w) ** 2).mean()) for b in (2, 3, 4, 5)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < errs[0] / 10


# -- common behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        A.sign_quantize,
        lambda w: A.sign_quantize(w, scale="mean"),
        lambda w: A.ternary_quantize(w, 0.5),
        lambda w: A.bbit_quantize(w, 3),
    ],
)
def test_dtype_shape_and_input_untouched(fn):
    w64 = torch.randn(5, 7, dtype=torch.float64)
    before = w64.clone()
    out = fn(w64)
    assert out.dtype == torch.float64 and out.shape == w64.shape and torch.equal(w64, before)
    out_np = fn(w64.numpy())
    assert torch.equal(torch.as_tensor(out_np), out)
    w16 = torch.randn(5, 7).half()
    assert fn(w16).dtype == torch.float16


def test_bad_inputs():
    with pytest.raises(MisValueError, match="sparsity"):
        A.ternary_quantize(torch.ones(3), 1.5)
    with pytest.raises(MisValueError, match="scale"):
        A.sign_quantize(torch.ones(3), scale="max")
    with pytest.raises(MisValueError, match="bits"):
        A.bbit_quantize(torch.ones(3), 1)
    with pytest.raises(MisValueError, match="alpha"):
        A.bbit_quantize(torch.ones(3), 2, alpha="median")
    with pytest.raises(MisValueError, match="finite"):
        A.sign_quantize(torch.tensor([1.0, float("inf")]))
