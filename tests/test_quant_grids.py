"""Uniform affine grids and the vectorized L_p range search (mis.quant.grids)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

from mis._kernels.quant import (
    _LANES,
    POW_REL_ERR,
    _interior_terms,
    exact_error,
    interior_poly,
    lp_brackets,
    lp_search_rows,
    pow_approx,
)
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


# -- the screened search (mis._kernels.quant) -----------------------------------------------------


def _prepared(w, symmetric, include_zero):
    """(x, lo, hi) as mse_grid hands them to the search."""
    x = rows(w).contiguous()
    lo, hi = x.amin(1), x.amax(1)
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    if symmetric:
        lo, hi = G._symmetrize(lo, hi)
    lo, hi = G._fix_degenerate(lo, hi)
    return x, lo, hi


@st.composite
def search_rows(draw):
    """float32 rows for the search: Gaussian, heavy-tailed, snapped to a grid (exact zero
    errors, many near-ties), constant, or arbitrary values; lengths across block edges."""
    c = draw(st.integers(1, 4))
    k = draw(st.sampled_from([1, 2, 3, 15, 16, 17, 63, 64, 65, 130, 257]))
    seed = draw(st.integers(0, 2**31))
    kind = draw(st.sampled_from(["gauss", "cauchy", "snapped", "const", "values"]))
    g = np.random.default_rng(seed)
    if kind == "gauss":
        a = g.normal(0, 0.05, (c, k)) + draw(st.sampled_from([0.0, 0.03]))
    elif kind == "cauchy":
        a = g.standard_cauchy((c, k)) * 0.01
    elif kind == "snapped":
        a = g.integers(-8, 8, (c, k)) * draw(st.sampled_from([0.1, 0.0625, 3.0]))
    elif kind == "const":
        a = np.full((c, k), draw(st.sampled_from([0.0, 0.3, -2.0])))
    else:
        a = np.array(draw(st.lists(values, min_size=c * k, max_size=c * k))).reshape(c, k)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _search(x, lo, hi, L, f, symmetric, norm):
    coef, bound = interior_poly(norm)
    best = np.empty(x.shape[0], np.int64)
    n_exact = np.empty(x.shape[0], np.int64)
    lp_search_rows(
        x.numpy(), lo.numpy(), hi.numpy(), f.numpy(), L, symmetric, norm, coef, bound, best, n_exact
    )
    return best, n_exact


def test_pow_approx_relative_error():
    @njit
    def apply(x, p):
        out = np.empty_like(x)
        for k in range(x.size):
            out[k] = pow_approx(x[k], p)
        return out

    rng = np.random.default_rng(0)
    # every 13th float32 mantissa in [1, 2) at a few scales, plus random magnitudes
    mant = (np.arange(0, 1 << 23, 13, dtype=np.int32) | 0x3F800000).view(np.float32)
    x = np.concatenate(
        [mant * np.float32(2.0**e) for e in (-40, -7, 0, 6)]
        + [(rng.random(100_000) * 10.0 ** rng.uniform(-30, 3, 100_000)).astype(np.float32)]
        + [np.array([0.0, 1.0, 2.0, 1e-45, 1e-39], np.float32)]
    )
    for p in (1.0, 2.0, 2.4, 3.5):
        got = apply(x, np.float32(p)).astype(np.float64)
        ref = x.astype(np.float64) ** p
        big = got > 0
        assert np.all(np.abs(got[big] - ref[big]) <= POW_REL_ERR / 2 * ref[big])
        assert np.all(ref[~big] <= 2.0**-125)  # flushed to 0 only below 2^-125
    assert np.isinf(apply(np.array([3e38], np.float32), np.float32(2.0))[0])


@pytest.mark.parametrize("p", [1.0, 2.0, 2.4, 3.5])
def test_interior_polynomial_bound(p):
    # The kernel's own float32 evaluation of P(fl(4e - 1)) against (2e)^p in float64.
    coef, bound = interior_poly(p)

    @njit
    def terms(e, c):
        out = np.empty(e.size)
        acc = np.zeros(_LANES, np.float32)
        for k in range(e.size):
            acc[0] = 0.0
            one = np.float32(1.0)  # t = e: the term of e
            _interior_terms(e, k, 1, acc, one, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])
            out[k] = acc[0]
        return out

    rng = np.random.default_rng(1)
    e = np.concatenate(
        [
            np.linspace(0, 0.5, 1 << 20, dtype=np.float32),
            (0.5 * 10.0 ** rng.uniform(-12, 0, 100_000)).astype(np.float32),
            np.array([0.0, 0.5, 0.25, 1e-45], np.float32),
        ]
    )
    got = terms(e, coef)
    dev = np.abs(got - (2.0 * e.astype(np.float64)) ** p)
    assert dev.max() <= bound
    assert bound < 1e-4  # and the bound is useful: ~1e-4 of a typical term (≈ 1/(p+1))


@given(
    search_rows(),
    st.sampled_from([*BITS, 8]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([2.0, 2.4, 3.0]),
)
def test_brackets_contain_the_float64_error(w, bits, symmetric, include_zero, norm):
    L = G.bits_to_levels(bits)
    x, lo, hi = _prepared(w, symmetric, include_zero)
    f = G.shrink_factors(20, 0.04)
    coef, bound = interior_poly(norm)
    low = np.empty((x.shape[0], 20))
    high = np.empty((x.shape[0], 20))
    lp_brackets(
        x.numpy(), lo.numpy(), hi.numpy(), f.numpy(), L, symmetric, norm, coef, bound, low, high
    )
    ref, _ = naive.lp_search_loop(
        w.numpy(),
        L,
        symmetric=symmetric,
        include_zero=include_zero,
        norm=norm,
        n_candidates=20,
        shrink_step=0.04,
        dtype=np.float32,
    )
    assert np.all(low <= ref) and np.all(ref <= high)
    # ... and not wider than the documented bounds: 2e-4 relative (pow_approx), plus per
    # interior weight (s/2)^p·(polynomial bound + 2pη(1 + 2η)^(p-1)), η <= u·(7.001·128 + 1.01)
    s = G._scale_zero(lo[:, None] * f, hi[:, None] * f, L, symmetric)[0].double().numpy()
    per_weight = (s / 2) ** norm * (bound + 2.01 * norm * 2.0**-24 * (7.001 * 128 + 1.01))
    assert np.all(high - low <= 2.05 * (2e-4 * ref + x.shape[1] * per_weight) + 1e-30)


@given(
    search_rows(),
    st.sampled_from([*BITS, 8]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1.0, 2.0, 2.4]),
)
def test_search_picks_the_first_float64_minimum(w, bits, symmetric, include_zero, norm):
    # The winner is naive.lp_search_loop's: float32 grid arithmetic, float64 powers and sums,
    # first minimum (the float64 sums are computed in the same order, so ties are ties).
    L = G.bits_to_levels(bits)
    x, lo, hi = _prepared(w, symmetric, include_zero)
    f = G.shrink_factors(20, 0.04)
    best, n_exact = _search(x, lo, hi, L, f, symmetric, norm)
    _, ref_best = naive.lp_search_loop(
        w.numpy(),
        L,
        symmetric=symmetric,
        include_zero=include_zero,
        norm=norm,
        n_candidates=20,
        shrink_step=0.04,
        dtype=np.float32,
    )
    np.testing.assert_array_equal(best, ref_best)
    assert np.all((n_exact == 0) | (n_exact >= 2))


def test_exact_error_is_the_naive_float64_error():
    w = gaussian(4, (3, 77)).numpy()
    f = G.shrink_factors(10, 0.05)
    ref, _ = naive.lp_search_loop(
        w, 16, include_zero=False, n_candidates=10, shrink_step=0.05, dtype=np.float32
    )
    for c in range(3):
        lo, hi = torch.tensor(w[c].min()), torch.tensor(w[c].max())
        for i in range(10):
            s, z = G._scale_zero(lo * f[i], hi * f[i], 16, False)
            got = exact_error(w[c], np.float32(s), np.float32(z), np.float32(15), 2.4)
            assert got == pytest.approx(ref[c, i], rel=1e-14)


@pytest.mark.parametrize(
    ("k", "bits", "symmetric", "laplace"),
    [
        (576, 4, False, False),
        (2304, 2, False, True),
        (4608, 4, True, False),
        (1152, 8, False, True),
    ],
)
def test_search_on_layer_sized_rows(k, bits, symmetric, laplace):
    # Rows as long as ResNet-18's, 80 candidates: the screen (with its early stops) picks
    # the torch path's winner, and decides most rows without an exact evaluation.
    g = torch.Generator().manual_seed(k + bits)
    w = torch.randn((24, k), generator=g) * 0.05
    if laplace:
        w = torch.sign(w) * w.abs() ** 2 * 20
    L = G.bits_to_levels(bits)
    x, lo, hi = _prepared(w, symmetric, False)
    f = G.shrink_factors()
    best, n_exact = _search(x, lo, hi, L, f, symmetric, 2.4)
    err = G.candidate_errors(x, lo, hi, L, f, symmetric=symmetric)
    ref = G._refine(err, x, lo, hi, L, f, symmetric, 2.4)
    np.testing.assert_array_equal(best, ref.numpy())
    assert np.mean(n_exact > 0) < 0.5
    if bits <= 4:
        assert np.all(best > 0)  # Gaussian / Laplace ranges do shrink at low bit widths


def test_search_does_not_depend_on_the_thread_count():
    w = gaussian(9, (37, 300))
    x, lo, hi = _prepared(w, False, True)
    f = G.shrink_factors()
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = G._screened_best(x, lo, hi, 16, f, False, 2.4)
        torch.set_num_threads(2)
        two, _ = G._screened_best(x, lo, hi, 16, f, False, 2.4)
    finally:
        torch.set_num_threads(n0)
    assert torch.equal(one, two)
    # rows are independent: a row alone gets the same winner as in the batch
    alone, _ = G._screened_best(x[5:6], lo[5:6], hi[5:6], 16, f, False, 2.4)
    assert int(alone[0]) == int(one[5])


@given(
    st.integers(0, 2**31),
    st.integers(1, 8),
    st.integers(2, 300),
    st.sampled_from(BITS),
    st.booleans(),
)
def test_screened_search_picks_the_exact_winner(seed, c, k, bits, symmetric):
    # the numba path and the torch path (all candidates, near-ties in float64) agree
    w = gaussian(seed, (c, k))
    L = G.bits_to_levels(bits)
    x, lo, hi = _prepared(w, symmetric, True)
    f = G.shrink_factors()
    fast, _ = G._screened_best(x, lo, hi, L, f, symmetric, 2.4)
    err = G.candidate_errors(x, lo, hi, L, f, symmetric=symmetric)
    slow = G._refine(err, x, lo, hi, L, f, symmetric, 2.4)
    assert torch.equal(fast, slow)
    grid = G.mse_grid(w, L, symmetric=symmetric)
    assert torch.equal(grid.scale, G._scale_zero(lo * f[fast], hi * f[fast], L, symmetric)[0])


def test_small_norm_and_float64_take_the_torch_path():
    w = gaussian(2, (4, 50))
    for norm in (0.5, 2.4):
        g32 = G.mse_grid(w, 4, norm=norm)
        e = G.candidate_errors(*_prepared(w, False, True), 4, G.shrink_factors(), norm=norm)
        assert torch.all(g32.error(w, norm) <= e.double().amin(1) * (1 + 1e-4))
    g64 = G.mse_grid(w.double(), 4)
    assert g64.scale.dtype == torch.float64


def test_non_finite_weights_are_rejected_by_mse_grid():
    for bad in (float("nan"), float("inf"), -float("inf")):
        w = gaussian(0, (3, 40))
        w[1, 7] = bad
        with pytest.raises(MisValueError, match="finite"):
            G.mse_grid(w, 16)
