"""BRECQ: BatchNorm folding, blocks, 8-bit stem/head, Fisher-diagonal loss, grids."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mis.exceptions import MisValueError
from mis.quant import brecq as brecq_mod  # noqa: F401  registers "brecq"
from mis.quant.api import QuantConfig, plan_layers, quantization_report, quantize_model
from mis.quant.brecq import BRECQConfig, find_blocks
from mis.quant.calibration import select_calibration
from mis.quant.fold import fold_batchnorm, fold_pair
from mis.quant.reconstruct import (
    Unit,
    _output_gradients,
    analyse_structure,
    build_units,
)
from mis.train.models import DenseNet, _BasicBlock, build_model, densenet121, resnet18
from tests import naive

FAST = {"n_iter": 40, "progress": False, "record_every": 20, "num_threads": 1}


class TinyResNet(nn.Module):
    """Stem conv-BN-ReLU, two residual BasicBlocks (one with a 1x1 shortcut), linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer = nn.Sequential(_BasicBlock(8, 8), _BasicBlock(8, 12, stride=2))
        self.linear = nn.Linear(12, 10)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def head(self, h):
        return self.linear(F.adaptive_avg_pool2d(h, 1).flatten(1))

    def forward(self, x):
        return self.head(self.layer(self.stem(x)))


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return randomize_bn(TinyResNet(), seed)


def data(n=128, seed=0, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[: n * 3 // 4] = True
    return x, y, mask, select_calibration(x, y, member_mask=mask, n_samples=64, rng=0)


# -------------------------------------------------------------------------------------------
# folding
# -------------------------------------------------------------------------------------------


def test_fold_pair_matches_naive():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=True)
    bn = randomize_bn(nn.BatchNorm2d(5), 3)
    ref = naive.fold_bn_naive(
        conv.weight.detach().numpy(),
        conv.bias.detach().numpy(),
        bn.weight.detach().numpy(),
        bn.bias.detach().numpy(),
        bn.running_mean.numpy(),
        bn.running_var.numpy(),
        bn.eps,
    )
    fold_pair(conv, bn)
    np.testing.assert_allclose(conv.weight.detach().numpy(), ref[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(conv.bias.detach().numpy(), ref[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: randomize_bn(build_model("digits_cnn", batchnorm=True)),
        tiny_resnet,
        lambda: randomize_bn(
            nn.Sequential(
                nn.Flatten(), nn.Linear(64, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 10)
            )
        ),
    ],
)
def test_fold_batchnorm_preserves_function(make):
    model = make()
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        pairs = fold_batchnorm(model)
        out = model(x)
    assert pairs
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fold_leaves_preactivation_bn():
    model = randomize_bn(DenseNet((2, 2), growth=4, n_classes=10, in_channels=1))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        pairs = dict(fold_batchnorm(model))
        out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert pairs == {
        "features.0.0.conv1": "features.0.0.bn2",
        "features.0.1.conv1": "features.0.1.bn2",
        "features.2.0.conv1": "features.2.0.bn2",
        "features.2.1.conv1": "features.2.1.bn2",
    }
    assert isinstance(model.features[0][0].bn1, nn.BatchNorm2d)  # BN -> ReLU -> conv: stays


# -------------------------------------------------------------------------------------------
# blocks and units
# -------------------------------------------------------------------------------------------


def test_find_blocks():
    names = find_blocks(resnet18())
    assert names == tuple(f"layer{i}.{j}" for i in (1, 2, 3, 4) for j in (0, 1))
    dn = find_blocks(densenet121())
    assert len(dn) == 6 + 12 + 24 + 16 + 3
    assert "features.1" in dn and "features.0.0" in dn
    assert find_blocks(build_model("digits_cnn")) == ()


def test_units_of_resnet():
    model = tiny_resnet()
    fold_batchnorm(model)
    cfg = QuantConfig(bits=2)
    units = build_units(
        model, plan_layers(model, cfg), analyse_structure(model), find_blocks(model)
    )
    assert [(u.name, u.kind) for u in units] == [
        ("conv1", "layer"),
        ("layer.0", "block"),
        ("layer.1", "block"),
        ("linear", "layer"),
    ]
    assert units[0].relu and not units[3].relu
    assert set(units[2].layers) == {"conv1.weight", "conv2.weight", "shortcut.0.weight"}


@pytest.mark.parametrize("bits", [2, 1.58, 1])
def test_brecq_resnet_folded_head_stem_8bit_and_on_grid(bits):
    _x, _y, _mask, calib = data()
    model = tiny_resnet()
    q = quantize_model(model, QuantConfig(bits=bits, method="brecq", method_options=FAST), calib)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in q.modules())
    folded = copy.deepcopy(model)
    fold_batchnorm(folded)
    ref = dict(folded.named_modules())
    rep = quantization_report(q)
    assert rep["conv1"].bits == 8 and rep["linear"].bits == 8
    assert rep["layer.0.conv1"].bits == bits
    for name, m in q.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w0 = ref[name].weight.detach()
        if bits == 1 and name not in ("conv1", "linear"):
            alpha = w0.flatten(1).abs().mean(1).reshape(-1, 1, 1, 1)
            assert bool(torch.isclose(m.weight.abs(), alpha.expand_as(w0)).all())
            continue
        g = m.weight_grid
        assert g.n_levels == (
            256 if name in ("conv1", "linear") else 2**bits if bits != 1.58 else 3
        )
        fl = torch.floor(w0 / g.scale_like(w0))
        assert bool(((m.weight == g.from_integer(fl)) | (m.weight == g.from_integer(fl + 1))).all())
    log = q.mis_reconstruction
    assert [u.kind for u in log.units] == ["layer", "block", "block", "layer"]
    assert log["layer.1"].layers == ("layer.1.conv1", "layer.1.conv2", "layer.1.shortcut.0")


def test_head_stem_switchable():
    _x, _y, _mask, calib = data()
    model = tiny_resnet()
    q = quantize_model(
        model,
        QuantConfig(bits=2, method="brecq", method_options={**FAST, "head_stem_bits": None}),
        calib,
    )
    rep = quantization_report(q)
    assert rep["conv1"].bits == 2 and rep["linear"].bits == 2
    assert q.conv1.weight_grid.n_levels == 4
    q = quantize_model(
        model,
        QuantConfig(bits=2, last_layer_bits=4, method="brecq", method_options=FAST),
        calib,
    )
    rep = quantization_report(q)
    assert rep["conv1"].bits == 8 and rep["linear"].bits == 4  # explicit setting wins


def test_brecq_block_loss_falls():
    _x, _y, _mask, calib = data(n=200)
    model = tiny_resnet(1)
    q = quantize_model(
        model,
        QuantConfig(
            bits=2, method="brecq", method_options={**FAST, "n_iter": 300, "head_stem_bits": None}
        ),
        calib,
    )
    for u in q.mis_reconstruction.units:
        assert u.final_loss <= u.nearest_loss


def test_brecq_densenet_blocks():
    x, _y, _mask, calib = data()
    model = randomize_bn(DenseNet((2, 2), growth=4, n_classes=10, in_channels=1))
    q = quantize_model(model, QuantConfig(bits=2, method="brecq", method_options=FAST), calib)
    names = [(u.name, u.kind) for u in q.mis_reconstruction.units]
    assert names == [
        ("conv1", "layer"),
        ("features.0.0", "block"),
        ("features.0.1", "block"),
        ("features.1", "block"),
        ("features.2.0", "block"),
        ("features.2.1", "block"),
        ("linear", "layer"),
    ]
    with torch.no_grad():
        assert bool(torch.isfinite(q(x)).all())


def test_explicit_blocks_and_bad_names():
    _x, _y, _mask, calib = data()
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU()),
        nn.Linear(16, 10),
    ).eval()
    q = quantize_model(
        model,
        QuantConfig(bits=2, method="brecq", method_options={**FAST, "blocks": ("1",)}),
        calib,
    )
    assert [(u.name, u.kind) for u in q.mis_reconstruction.units] == [
        ("1", "block"),
        ("2", "layer"),
    ]
    with pytest.raises(MisValueError, match="lacks"):
        quantize_model(
            model,
            QuantConfig(bits=2, method="brecq", method_options={**FAST, "blocks": ("nope",)}),
            calib,
        )


# -------------------------------------------------------------------------------------------
# Fisher-diagonal loss
# -------------------------------------------------------------------------------------------


def test_output_gradients_fused_relu_layer():
    """∂CE/∂relu(conv1(x)) of the digits CNN, by the probe, equals a hand-written forward."""
    torch.manual_seed(0)
    model = build_model("digits_cnn").eval()
    x = torch.rand(20, 1, 8, 8)
    y = torch.randint(0, 10, (20,))
    unit = Unit("conv1", "layer", {}, None, True)
    g = _output_gradients(model, model, unit, x, y, "ce", 8)
    a = F.relu(model.conv1(x)).detach().requires_grad_(True)
    h = F.max_pool2d(F.relu(model.conv2(a)), 2)
    out = model.fc2(F.relu(model.fc1(h.flatten(1))))
    (ref,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), a)
    torch.testing.assert_close(g, ref)
    assert float(ref.abs().max()) > 0


def test_output_gradients_block():
    model = tiny_resnet()
    x = torch.rand(10, 1, 8, 8)
    y = torch.randint(0, 10, (10,))
    unit = Unit("layer.0", "block")
    g = _output_gradients(model, model, unit, x, y, "ce", 4)
    with torch.no_grad():
        h0 = model.layer[0](model.stem(x))
    h0.requires_grad_(True)
    out = model.head(model.layer[1](h0))
    (ref,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), h0)
    torch.testing.assert_close(g, ref)
    # KL against itself: the full-precision network is its own optimum, gradient 0
    g_kl = _output_gradients(model, model, unit, x, y, "kl", 4)
    assert float(g_kl.abs().max()) < 1e-6


@pytest.mark.parametrize("grad", ["ce", "kl"])
def test_brecq_fisher_runs(grad):
    _x, _y, _mask, calib = data()
    model = tiny_resnet()
    q = quantize_model(
        model,
        QuantConfig(
            bits=2,
            method="brecq",
            method_options={**FAST, "loss": "fisher_diag", "fisher_grad": grad},
        ),
        calib,
    )
    assert all(np.isfinite(u.final_loss) for u in q.mis_reconstruction.units)


def test_fisher_ce_needs_labels():
    x, _y, mask, _ = data()
    calib = select_calibration(x, member_mask=mask, n_samples=32, rng=0)
    cfg = QuantConfig(
        bits=2, method="brecq", method_options={**FAST, "loss": "fisher_diag", "fisher_grad": "ce"}
    )
    with pytest.raises(MisValueError, match="labels"):
        quantize_model(tiny_resnet(), cfg, calib)


@pytest.mark.parametrize(
    "bad", [{"head_stem_bits": 3.3}, {"head_stem_bits": True}, {"blocks": "layer1"}, {"loss": "kl"}]
)
def test_config_validation(bad):
    with pytest.raises(MisValueError):
        BRECQConfig(**bad)


def test_calibration_guard():
    x, y, _mask, _calib = data()
    with pytest.raises(MisValueError, match="needs calibration"):
        quantize_model(tiny_resnet(), QuantConfig(bits=2, method="brecq"))
    with pytest.raises(MisValueError, match="Calibration"):
        quantize_model(tiny_resnet(), QuantConfig(bits=2, method="brecq"), (x, y))


@pytest.mark.gpu
def test_brecq_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, _y, _mask, calib = data()
    model = tiny_resnet().cuda()
    q = quantize_model(model, QuantConfig(bits=2, method="brecq", method_options=FAST), calib)
    assert q.conv1.weight.device.type == "cuda"
    with torch.no_grad():
        assert bool(torch.isfinite(q(x.cuda())).all())
