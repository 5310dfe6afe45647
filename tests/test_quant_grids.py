"""Uniform affine grids and the vectorized L_p range search (mis.quant.grids)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mis.exceptions import MisValueError
from mis.quant import grids as G
from tests import naive

BITS = [1.58, 2, 3, 4]
LEVELS = {1.58: 3, 2: 4, 3: 8, 4: 16, 5: 32, 8: 256}

values = st.floats(-4, 4, allow_nan=False, width=32)


@st.composite
def weights(draw, max_c=6, max_k=24, ndim=None):
    """Small weight tensors (C, ...) with arbitrary float32 values, zeros and repeats."""
    ndim = draw(st.sampled_from([1, 2, 4])) if ndim is None else ndim
    c = draw(st.integers(1, max_c))
    if ndim == 1:
        shape = (c,)
    elif ndim == 2:
        shape = (c, draw(st.integers(1, max_k)))
    else:
        shape = (c, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    a = draw(hnp.arrays(np.float32, shape, elements=values))
    return torch.from_numpy(a)


def gaussian(seed, shape, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


def rows(w):
    return G.as_channels(w)


# -- levels ------------------------------------------------------------------------------------


@given(
    weights(),
    st.sampled_from(BITS),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["minmax", "mse"]),
)
def test_at_most_L_distinct_values_per_channel(w, bits, symmetric, per_channel, method):
    grid = G.make_grid(w, bits, per_channel=per_channel, symmetric=symmetric, range_method=method)
    q = grid.fake_quant(w)
    L = G.bits_to_levels(bits)
    if per_channel:
        assert (naive.distinct_per_row(rows(q).numpy()) <= L).all()
    else:
        assert len(torch.unique(q)) <= L
    # every output is one of the grid's levels (exactly)
    lv = grid.levels()
    for c, r in enumerate(rows(q)):
        allowed = set((lv[c] if per_channel else lv).tolist())
        assert set(r.tolist()) <= allowed


@given(weights(), st.sampled_from(BITS), st.booleans(), st.booleans())
def test_fixed_grid_is_idempotent(w, bits, symmetric, include_zero):
    grid = G.make_grid(
        w, bits, symmetric=symmetric, include_zero=include_zero, range_method="minmax"
    )
    q = grid.fake_quant(w)
    assert torch.equal(grid.fake_quant(q), q)


@given(st.integers(0, 2**31), st.sampled_from([*BITS, 8]), st.integers(8, 64))
def test_uaq_twice_equals_once_up_to_rounding(seed, bits, k):
    # The re-derived min/max grid of Q(w) is the same grid (scale up to one ulp).
    w = gaussian(seed, (5, k))
    q = G.uaq(w, bits, range_method="minmax")
    qq = G.uaq(q, bits, range_method="minmax")
    width = rows(w).amax(1).clamp(min=0) - rows(w).amin(1).clamp(max=0)
    step = width / (LEVELS[bits] - 1)
    # values agree to a few ulps: far below one step, the gap between distinct codes
    assert torch.all((qq - q).abs() <= 1e-6 * width[:, None])
    assert torch.all(1e-6 * width < 0.01 * step)


@given(weights(), st.sampled_from([*BITS, 5, 8]), st.booleans())
def test_minmax_error_is_at_most_half_a_step(w, bits, include_zero):
    grid = G.make_grid(w, bits, range_method="minmax", include_zero=include_zero)
    err = (w.double() - grid.fake_quant(w).double()).abs()
    half = grid.scale.double()[:, None] / 2 if w.ndim >= 2 else grid.scale.double() / 2
    assert torch.all(rows(err) <= (half * (1 + 1e-5) + 1e-12).reshape(-1, 1))


def test_fake_quant_matches_elementwise_reference():
    w = gaussian(3, (7, 33))
    for bits in [*BITS, 8]:
        for sym in (False, True):
            grid = G.make_grid(w, bits, symmetric=sym, range_method="minmax")
            got = grid.fake_quant(w.double())
            for c in range(7):
                lo, hi = float(w[c].min()), float(w[c].max())
                s, z = naive.affine_scale_zero(min(lo, 0), max(hi, 0), LEVELS[bits], sym)
                assert float(grid.scale[c]) == pytest.approx(s, rel=1e-6)
                assert float(grid.zero_point[c]) == z
                # element by element with the grid's own (float32) step: identical rounding
                s32 = float(grid.scale[c])
                ref = naive.affine_fake_quant_row(w[c].double().numpy(), s32, z, LEVELS[bits])
                np.testing.assert_array_equal(got[c].numpy(), ref)


# -- MSE range search ----------------------------------------------------------------------------


@given(weights(), st.sampled_from(BITS), st.booleans(), st.booleans(), st.sampled_from([2.0, 2.4]))
def test_mse_search_never_worse_than_minmax(w, bits, symmetric, include_zero, norm):
    kw = dict(symmetric=symmetric, include_zero=include_zero, norm=norm)
    mm = G.make_grid(w, bits, range_method="minmax", **kw)
    ms = G.make_grid(w, bits, range_method="mse", **kw)
    assert torch.all(ms.error(w, norm) <= mm.error(w, norm))


@given(weights(max_c=3, max_k=12, ndim=2), st.sampled_from(BITS), st.booleans(), st.booleans())
def test_mse_search_matches_reference_loop(w, bits, symmetric, include_zero):
    L = G.bits_to_levels(bits)
    grid, err = G.mse_grid(
        w,
        L,
        symmetric=symmetric,
        include_zero=include_zero,
        n_candidates=20,
        shrink_step=0.04,
        return_errors=True,
    )
    ref_err, _ = naive.lp_search_loop(
        w.numpy(),
        L,
        symmetric=symmetric,
        include_zero=include_zero,
        n_candidates=20,
        shrink_step=0.04,
        dtype=np.float32,
    )
    # candidate errors agree (same float32 grid arithmetic, float32 vs float64 sums) ...
    np.testing.assert_allclose(err.double().numpy(), ref_err, rtol=2e-4, atol=1e-9)
    # ... and the chosen grid is as good as the reference's best, per channel.
    chosen = grid.error(w).numpy()
    assert np.all(chosen <= ref_err.min(1) * (1 + 2e-4) + 1e-9)


def test_mse_search_large_channels_against_reference():
    w = gaussian(11, (3, 300))
    for bits in (1.58, 2, 4):
        L = G.bits_to_levels(bits)
        grid, err = G.mse_grid(w, L, return_errors=True)
        ref_err, ref_best = naive.lp_search_loop(w.numpy(), L)
        np.testing.assert_allclose(err.double().numpy(), ref_err, rtol=1e-4)
        assert np.all(grid.error(w).numpy() <= ref_err.min(1) * (1 + 1e-5))
        assert np.all(ref_best > 0)  # the search really shrinks Gaussian ranges


def test_mse_search_per_tensor_and_chunking():
    w = gaussian(5, (40, 50))
    g1 = G.mse_grid(w, 4, per_channel=False)
    assert g1.axis is None and g1.scale.ndim == 0
    # chunking over rows does not change the candidate errors
    x = rows(w)
    lo, hi = x.amin(1).clamp(max=0), x.amax(1).clamp(min=0)
    f = G.shrink_factors()
    full = G.candidate_errors(x, lo, hi, 4, f, chunk=1 << 30)
    tiny = G.candidate_errors(x, lo, hi, 4, f, chunk=1)
    assert torch.equal(full, tiny)


# -- RTN error against bits ------------------------------------------------------------------------


@given(
    st.integers(0, 2**31),
    st.integers(1, 6),
    st.integers(64, 256),
    st.sampled_from(["minmax", "mse"]),
)
def test_rtn_error_decreases_with_bits(seed, c, k, method):
    w = gaussian(seed, (c, k))
    errs = []
    for bits in (1.58, 2, 3, 4, 5, 8):
        grid = G.make_grid(w, bits, range_method=method)
        errs.append(float(((w.double() - grid.fake_quant(w).double()) ** 2).sum()))
    assert all(a > b for a, b in itertools.pairwise(errs)), errs


@given(weights(), st.booleans())
def test_step_decreases_with_bits(w, symmetric):
    # channels whose range is below ~1e-30 have steps floored at the smallest normal float
    ok = rows(w).abs().amax(1) > 1e-30
    assume(bool(ok.any()))
    steps = [G.minmax_grid(w, L, symmetric=symmetric).scale for L in (2, 3, 4, 8, 16, 256)]
    for a, b in itertools.pairwise(steps):
        assert torch.all(b.reshape(-1)[ok] < a.reshape(-1)[ok])


# -- the grid object -----------------------------------------------------------------------------


@given(weights(ndim=2), st.sampled_from(BITS))
def test_grid_helpers_agree(w, bits):
    grid = G.make_grid(w, bits, range_method="minmax")
    s = grid.scale_like(w)
    assert torch.equal(grid.from_integer(torch.round(w / s)), grid.fake_quant(w))
    down = grid.round_down(w)
    assert torch.all(down <= w / s) and torch.all(w / s < down + 1)
    codes = grid.quantize(w)
    assert torch.all((codes >= 0) & (codes <= grid.qmax)) and torch.equal(codes, codes.round())
    sub = grid.select([0])
    assert torch.equal(sub.fake_quant(w[:1]), grid.fake_quant(w)[:1])
    assert grid.levels().shape == (w.shape[0], grid.n_levels)


def test_degenerate_channels():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.3, 0.3], [-2.0, -2.0, -2.0]])
    for method in ("minmax", "mse"):
        for include_zero in (True, False):
            grid = G.make_grid(w, 2, range_method=method, include_zero=include_zero)
            assert torch.all(grid.scale > 0)
            np.testing.assert_allclose(grid.fake_quant(w).numpy(), w.numpy(), rtol=1e-6, atol=1e-7)


def test_symmetric_zero_point_and_levels():
    w = gaussian(0, (4, 30))
    grid = G.make_grid(w, 1.58, symmetric=True, range_method="minmax")
    assert torch.all(grid.zero_point == 1)
    lv = grid.levels()
    assert torch.allclose(lv[:, 0], -lv[:, 2]) and torch.all(lv[:, 1] == 0)


def test_numpy_float64_and_input_untouched():
    w = gaussian(1, (3, 20)).double()
    before = w.clone()
    out = G.uaq(w, 2)
    assert out.dtype == torch.float64 and torch.equal(w, before)
    out_np = G.uaq(w.numpy(), 2)
    assert torch.equal(torch.as_tensor(out_np), out)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 1.5, 3.2, 17, "4", True, None])
def test_bad_bits(bits):
    with pytest.raises(MisValueError, match="bits"):
        G.bits_to_levels(bits)


def test_bad_inputs():
    with pytest.raises(MisValueError, match="finite"):
        G.uaq(torch.tensor([[1.0, float("nan")]]), 4)
    with pytest.raises(MisValueError, match="empty"):
        G.uaq(torch.zeros(0, 3), 4)
    with pytest.raises(MisValueError, match="n_levels"):
        G.minmax_grid(torch.ones(2, 2), 1)
    with pytest.raises(MisValueError, match="range_method"):
        G.make_grid(torch.ones(2, 2), 4, range_method="kl")
    with pytest.raises(MisValueError, match="shrink_step"):
        G.mse_grid(torch.ones(2, 2), 4, shrink_step=0.02, n_candidates=80)
    with pytest.raises(MisValueError, match="norm"):
        G.mse_grid(torch.ones(2, 2), 4, norm=0)
    with pytest.raises(MisValueError, match="scale must be > 0"):
        G.AffineGrid(torch.zeros(2), torch.zeros(2), 4)
    with pytest.raises(MisValueError, match="integer-valued"):
        G.AffineGrid(torch.ones(2), torch.full((2,), 0.5), 4)
    grid = G.minmax_grid(torch.ones(3, 4), 4)
    with pytest.raises(MisValueError, match="3 channels"):
        grid.fake_quant(torch.ones(2, 4))


# -- the screening kernel (mis._kernels.quant) ---------------------------------------------------


def test_pow_approx_relative_error():
    from numba import njit

    from mis._kernels.quant import POW_REL_ERR, pow_approx

    @njit
    def apply(x, p):
        out = np.empty_like(x)
        for k in range(x.size):
            out[k] = pow_approx(x[k], p)
        return out

    rng = np.random.default_rng(0)
    x = (rng.random(200_000) * 10.0 ** rng.uniform(-30, 3, 200_000)).astype(np.float32)
    x[:3] = [0.0, 1.0, 2.0]
    for p in (1.0, 2.0, 2.4, 3.5):
        got = apply(x, np.float32(p)).astype(np.float64)
        ref = x.astype(np.float64) ** p
        big = ref > 1e-37
        assert np.all(np.abs(got[big] - ref[big]) <= POW_REL_ERR / 2 * ref[big])
        assert np.all(np.abs(got[~big] - ref[~big]) <= 1e-37)


@given(weights(max_c=4, max_k=20, ndim=2), st.sampled_from(BITS), st.booleans(), st.booleans())
def test_kernel_errors_bound_reference(w, bits, symmetric, include_zero):
    from mis._kernels.quant import POW_REL_ERR, lp_errors_approx

    L = G.bits_to_levels(bits)
    x = w.numpy()
    lo, hi = w.amin(1), w.amax(1)
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if symmetric:
        lo, hi = G._symmetrize(lo, hi)
    lo, hi = G._fix_degenerate(lo, hi)
    f = G.shrink_factors(20, 0.04)
    out = np.empty((x.shape[0], 20))
    lp_errors_approx(x, lo.numpy(), hi.numpy(), f.numpy(), L, symmetric, 2.4, out)
    # against the exact float32 evaluation with the same grid arithmetic
    ref = G.candidate_errors(w, lo, hi, L, f, symmetric=symmetric).double().numpy()
    assert np.all(np.abs(out - ref) <= (POW_REL_ERR + 1e-5) * ref + x.shape[1] * 1e-37)


@given(st.integers(0, 2**31), st.integers(1, 8), st.integers(2, 300), st.sampled_from(BITS))
def test_screened_search_picks_the_exact_winner(seed, c, k, bits):
    w = gaussian(seed, (c, k))
    L = G.bits_to_levels(bits)
    fast = G.mse_grid(w, L)  # screened float32 path
    exact, _ = G.mse_grid(w, L, return_errors=True)  # every candidate exact
    assert torch.equal(fast.scale, exact.scale) and torch.equal(fast.zero_point, exact.zero_point)
