"""AdaRound: relaxation, β schedule, hard rounding, grids, fused ReLU, calibration guard."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mis.exceptions import MisValueError
from mis.quant import adaround as adaround_mod  # registers "adaround"
from mis.quant.adaround import AdaRoundConfig
from mis.quant.api import LayerSpec, QuantConfig, plan_layers, quantize_model
from mis.quant.aubinais import sign_quantize
from mis.quant.calibration import select_calibration
from mis.quant.grids import make_grid
from mis.quant.reconstruct import (
    ReconstructionConfig,
    SoftRounding,
    analyse_structure,
    beta_at,
    inverse_rectified_sigmoid,
    rectified_sigmoid,
    rounding_regularizer,
    soft_rounding_for,
)
from mis.train.models import build_model, resnet18
from tests import naive

FAST = {"n_iter": 60, "progress": False, "record_every": 20, "num_threads": 1}


def data(n=160, seed=0, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[: n * 3 // 4] = True
    return x, y, mask


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 10)
    ).eval()


def calib_of(x, y, mask, n=96):
    return select_calibration(x, y, member_mask=mask, n_samples=n, rng=0)


# -------------------------------------------------------------------------------------------
# the relaxation
# -------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.lists(st.floats(-12, 12), min_size=1, max_size=30))
def test_rectified_sigmoid_matches_naive(vs):
    v = torch.tensor(vs, dtype=torch.float64)
    np.testing.assert_allclose(
        rectified_sigmoid(v).numpy(), naive.rectified_sigmoid_naive(vs), rtol=1e-12, atol=1e-15
    )


@settings(max_examples=40)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(1.0, 20.0))
def test_regularizer_matches_naive(hs, beta):
    h = torch.tensor(hs, dtype=torch.float64)
    assert float(rounding_regularizer(h, beta)) == pytest.approx(
        naive.rounding_regularizer_naive(hs, beta), rel=1e-12, abs=1e-12
    )


def test_regularizer_zero_exactly_at_binary():
    h = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert float(rounding_regularizer(h, 2.0)) == 0.0
    assert float(rounding_regularizer(torch.tensor([0.5]), 2.0)) == 1.0


@pytest.mark.parametrize("warmup", [0.0, 0.2, 0.5])
def test_beta_schedule_matches_reference(warmup):
    n = 1000
    for t in range(1, n + 1):
        ours, ref = beta_at(t, n, warmup=warmup), naive.beta_naive(t, n, warmup)
        assert (ours is None) == (ref is None)
        if ref is not None:
            assert ours == pytest.approx(ref)
    assert beta_at(int(0.2 * n) - 1, n) is None  # no regulariser during warm-up
    assert beta_at(int(0.2 * n), n) == pytest.approx(20.0)
    assert beta_at(n, n) == pytest.approx(2.0)


@settings(max_examples=40)
@given(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=40))
def test_inverse_gives_fractional_part(fr):
    h = torch.tensor(fr, dtype=torch.float64)
    np.testing.assert_allclose(
        rectified_sigmoid(inverse_rectified_sigmoid(h)).numpy(), fr, atol=1e-12
    )


@pytest.mark.parametrize("bits", [4, 2, 1.58])
def test_v_initialised_to_fractional_part(bits):
    torch.manual_seed(0)
    w = torch.randn(12, 5, 3, 3)
    grid = make_grid(w, bits)
    r = SoftRounding.from_grid(w, grid)
    s = grid.scale_like(w)
    frac = w / s - torch.floor(w / s)
    torch.testing.assert_close(r.h(), frac, atol=2e-6, rtol=0)
    # hence the soft weight starts at W itself wherever W lies inside the clamp range
    inside = (r.base + r.zero >= 0) & (r.base + r.zero + 1 <= grid.qmax)
    torch.testing.assert_close(r.soft_weight()[inside], w[inside], atol=2e-5, rtol=0)


def test_v_initialised_to_fractional_part_sign():
    torch.manual_seed(1)
    w = torch.randn(6, 20)
    r = SoftRounding.from_sign(w)
    alpha = w.abs().mean(1, keepdim=True)
    t = w / (2 * alpha) + 0.5
    torch.testing.assert_close(r.h(), t - torch.floor(t), atol=2e-6, rtol=0)
    # nearest rounding on {-α, +α} is α·sign(W)
    torch.testing.assert_close(r.nearest_weight(), sign_quantize(w, scale="mean"))


@settings(max_examples=30)
@given(st.integers(0, 10_000), st.sampled_from([4, 2, 1.58, 1]))
def test_hard_rounding_only_floor_or_ceil(seed, bits):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(7, 11, generator=g)
    r = soft_rounding_for(w, LayerSpec(bits))
    with torch.no_grad():
        r.v.copy_(torch.randn(r.v.shape, generator=g) * 3)
    lo, hi = r.floor_ceil()
    hw = r.hard_weight()
    assert bool(((hw == lo) | (hw == hi)).all())
    if bits != 1:
        grid = r.grid
        fl = torch.floor(w / grid.scale_like(w))
        torch.testing.assert_close(lo, grid.from_integer(fl))
        torch.testing.assert_close(hi, grid.from_integer(fl + 1))


def test_regularizer_drives_h_to_binary():
    """Optimising V under the annealed regulariser alone ends with every h(V) in {0, 1}."""
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    r = SoftRounding.from_grid(w, make_grid(w, 2))
    h0 = r.h().detach()
    assert float(((h0 > 0) & (h0 < 1)).double().mean()) > 0.9
    opt = torch.optim.Adam([r.v], lr=1e-2)
    n = 600
    for t in range(1, n + 1):
        beta = beta_at(t, n)
        if beta is None:
            continue
        loss = 0.01 * rounding_regularizer(r.h(), beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    h = r.h().detach()
    assert bool(((h == 0) | (h == 1)).all())
    # and it rounds to the nearer end (the regulariser alone keeps the starting side)
    assert bool(((h == 1) == (h0 >= 0.5)).all())


# -------------------------------------------------------------------------------------------
# the method
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 2, 1.58])
def test_adaround_weights_floor_or_ceil_and_on_grid(bits):
    x, y, mask = data()
    model = mlp()
    q = quantize_model(
        model, QuantConfig(bits=bits, method="adaround", method_options=FAST), calib_of(x, y, mask)
    )
    orig = dict(model.named_modules())
    for name, m in q.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        w0 = orig[name].weight.detach()
        grid = m.weight_grid
        torch.testing.assert_close(grid.scale, make_grid(w0, bits).scale)
        fl = torch.floor(w0 / grid.scale_like(w0))
        down, up = grid.from_integer(fl), grid.from_integer(fl + 1)
        assert bool(((m.weight == down) | (m.weight == up)).all())
        # every value is a level of its channel's grid
        lev = grid.levels()
        on = (m.weight.detach()[:, :, None] - lev[:, None, :]).abs().amin(-1)
        assert float(on.max()) <= 1e-6 * float(lev.abs().max())
        assert int(torch.unique(m.weight[0]).numel()) <= grid.n_levels


def test_adaround_one_bit_is_alpha_sign():
    x, y, mask = data()
    model = mlp(3)
    calib = calib_of(x, y, mask)
    q = quantize_model(model, QuantConfig(bits=1, method="adaround", method_options=FAST), calib)
    q_rtn = quantize_model(
        model,
        QuantConfig(bits=1, method="adaround", method_options={**FAST, "one_bit": "rtn"}),
        calib,
    )
    orig = dict(model.named_modules())
    for name, m in q.named_modules():
        if isinstance(m, nn.Linear):
            w0 = orig[name].weight.detach()
            alpha = w0.abs().mean(1, keepdim=True)
            assert bool(torch.isclose(m.weight.abs(), alpha.expand_as(w0)).all())
            # only weights with |W| < α may flip their sign
            flipped = torch.sign(m.weight) != torch.where(w0 >= 0, 1.0, -1.0)
            assert bool((w0.abs()[flipped] < alpha.expand_as(w0)[flipped]).all())
            m_rtn = dict(q_rtn.named_modules())[name]
            torch.testing.assert_close(m_rtn.weight, sign_quantize(w0, scale="mean"))


def test_adaround_decoupled_last_layer_and_float_layers():
    x, y, mask = data()
    model = mlp()
    cfg = QuantConfig(
        bits=2, last_layer_bits=8, overrides={"1": "float"}, method="adaround", method_options=FAST
    )
    q = quantize_model(model, cfg, calib_of(x, y, mask))
    torch.testing.assert_close(q[1].weight, model[1].weight)  # kept in float
    assert q[5].weight_grid.n_levels == 256
    assert q[3].weight_grid.n_levels == 4
    names = [u.name for u in q.mis_reconstruction.units]
    assert names == ["3", "5"]


def test_reconstruction_loss_falls():
    """Learned rounding ends below nearest rounding on each layer's reconstruction loss."""
    x, y, mask = data(n=200)
    model = mlp(1)
    q = quantize_model(
        model,
        QuantConfig(bits=2, method="adaround", method_options={**FAST, "n_iter": 400}),
        calib_of(x, y, mask, n=128),
    )
    for u in q.mis_reconstruction.units:
        assert u.final_loss < u.nearest_loss
        assert u.history.shape[1] == 5 and u.history[0, 0] == 0
        assert u.history[-1, 4] < u.history[0, 4]  # hard loss on the eval subset falls too
        assert np.isnan(u.history[1, 3])  # β undefined (no regulariser) in warm-up


def test_inputs_from_quantized_network_targets_from_float():
    """The second layer's cached input depends on the first layer's quantization."""
    x, y, mask = data()
    calib = calib_of(x, y, mask)
    model = mlp(2)
    logs = []
    for bits in (8, 2):
        cfg = QuantConfig(
            bits=2, overrides={"1": bits}, method="adaround", method_options={**FAST, "n_iter": 1}
        )
        logs.append(quantize_model(model, cfg, calib).mis_reconstruction["3"].nearest_loss)
    assert logs[1] > logs[0]  # a coarser first layer -> worse input to layer "3"


def test_fused_relu_and_bn_structure():
    s = analyse_structure(build_model("digits_cnn", batchnorm=True))
    assert s.relu_after == {"conv1", "conv2", "fc1"}
    assert s.bn_after == {"conv1": "bn1", "conv2": "bn2"}
    s = analyse_structure(mlp())
    assert s.relu_after == {"1", "3"}
    s = analyse_structure(resnet18())
    assert "conv1" in s.relu_after and "layer1.0.conv1" in s.relu_after
    assert "layer1.0.conv2" not in s.relu_after  # BN -> add -> ReLU: not fused
    assert s.bn_after["layer2.0.shortcut.0"] == "layer2.0.shortcut.1"


def test_adaround_keeps_batchnorm_in_the_layer_output():
    """AdaRound keeps BatchNorm (fold_bn=False) and reconstructs relu(bn(conv(x)))."""
    x, y, mask = data()
    model = build_model("digits_cnn", batchnorm=True).eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    q = quantize_model(
        model, QuantConfig(bits=8, method="adaround", method_options=FAST), calib_of(x, y, mask)
    )
    assert isinstance(q.bn1, nn.BatchNorm2d)
    with torch.no_grad():
        ref, out, out_f = model(x), q(x), None
    assert float((out - ref).norm() / ref.norm()) < 0.02
    # the folded variant quantizes the folded weights: same function up to quantization
    qf = quantize_model(
        model,
        QuantConfig(bits=8, method="adaround", method_options={**FAST, "fold_bn": True}),
        calib_of(x, y, mask),
    )
    assert isinstance(qf.bn1, nn.Identity)
    with torch.no_grad():
        out_f = qf(x)
    assert float((out_f - ref).norm() / ref.norm()) < 0.02


def test_input_model_untouched_and_flags_restored():
    x, y, mask = data()
    model = mlp()
    model.train()
    before = copy.deepcopy(model.state_dict())
    q = quantize_model(
        model, QuantConfig(bits=2, method="adaround", method_options=FAST), calib_of(x, y, mask)
    )
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert q.training and all(p.requires_grad for p in q.parameters())


def test_same_seed_same_result():
    x, y, mask = data()
    calib = calib_of(x, y, mask)
    model = mlp()
    qs = [
        quantize_model(
            model, QuantConfig(bits=2, method="adaround", seed=s, method_options=FAST), calib
        )
        for s in (5, 5)
    ]
    for a, b in zip(qs[0].parameters(), qs[1].parameters(), strict=True):
        assert torch.equal(a, b)


# -------------------------------------------------------------------------------------------
# guards and configuration
# -------------------------------------------------------------------------------------------


def test_calibration_guard():
    x, y, mask = data()
    model = mlp()
    with pytest.raises(MisValueError, match="needs calibration"):
        quantize_model(model, QuantConfig(bits=2, method="adaround"))
    with pytest.raises(MisValueError, match="Calibration"):
        quantize_model(model, QuantConfig(bits=2, method="adaround"), x[:10])
    with pytest.raises(MisValueError, match="non-members"):
        select_calibration(x, y, member_mask=mask, indices=np.flatnonzero(~mask)[:3])
    plan = plan_layers(model, QuantConfig(method="adaround"))
    with pytest.raises(MisValueError, match="Calibration"):
        adaround_mod.adaround(copy.deepcopy(model), plan, x)


@pytest.mark.parametrize(
    "bad",
    [
        {"n_iter": 0},
        {"batch_size": 1.5},
        {"lr": -1},
        {"warmup": 1.0},
        {"loss": "l1"},
        {"one_bit": "ste"},
        {"reg_weight": float("nan")},
        {"fold_bn": 1},
        {"progress": "yes"},
    ],
)
def test_config_validation(bad):
    with pytest.raises(MisValueError):
        AdaRoundConfig(**bad)


def test_method_options_forms():
    """QuantConfig turns method_options into the method's options dataclass: from a mapping
    of its fields, or an instance of it as given; anything else is refused at once."""
    opts = QuantConfig(method="adaround", method_options={"n_iter": 5}).method_options
    assert isinstance(opts, AdaRoundConfig) and opts.n_iter == 5
    assert opts == AdaRoundConfig(n_iter=5)  # the other fields at their defaults
    cfg = AdaRoundConfig(n_iter=7)
    assert QuantConfig(method="adaround", method_options=cfg).method_options is cfg
    with pytest.raises(MisValueError, match=r"unknown method_options\.iters.*'n_iter'"):
        QuantConfig(method="adaround", method_options={"iters": 5})
    with pytest.raises(MisValueError, match="AdaRoundConfig"):  # not AdaRound's options class
        QuantConfig(method="adaround", method_options=ReconstructionConfig())
    with pytest.raises(MisValueError, match="n_iter"):
        QuantConfig(method="adaround", method_options={"n_iter": 0})
    assert QuantConfig(method="adaround").method_options == AdaRoundConfig()
    assert AdaRoundConfig().n_iter == 20000 and AdaRoundConfig().reg_weight == 0.01


def test_digits_cnn_runs_and_beats_nothing_silly():
    """Smoke test on the real digits CNN shape (random weights): runs, all units logged."""
    x, y, mask = data()
    model = build_model("digits_cnn").eval()
    q = quantize_model(
        model, QuantConfig(bits=1.58, method="adaround", method_options=FAST), calib_of(x, y, mask)
    )
    assert [u.name for u in q.mis_reconstruction.units] == ["conv1", "conv2", "fc1", "fc2"]
    out = q(x)
    assert out.shape == (x.shape[0], 10) and bool(torch.isfinite(out).all())


@pytest.mark.gpu
def test_adaround_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y, mask = data()
    model = mlp().cuda()
    q = quantize_model(
        model, QuantConfig(bits=2, method="adaround", method_options=FAST), calib_of(x, y, mask)
    )
    assert q[1].weight.device.type == "cuda"
    w0 = model[1].weight.detach()
    fl = torch.floor(w0 / q[1].weight_grid.scale_like(w0))
    g = q[1].weight_grid
    assert bool(
        ((q[1].weight == g.from_integer(fl)) | (q[1].weight == g.from_integer(fl + 1))).all()
    )
    assert float(F.mse_loss(q(x.cuda()), model(x.cuda()))) < 10
