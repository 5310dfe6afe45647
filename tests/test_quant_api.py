"""quantize_model, configs, the registry, reports, named quantizers and the calibration guard."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mis.quant as Q
from mis.exceptions import MisValueError
from mis.quant import api
from tests import naive


def small_cnn(seed=0, n_out=10, fc_in=None):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 300),
        nn.ReLU(),
        nn.Linear(300, n_out),
    )


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- quantize_model ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 1.58, 2, 4, 8])
def test_new_model_input_untouched_levels_per_channel(bits):
    model = small_cnn()
    before = state(model)
    qm = Q.quantize_model(model, Q.QuantConfig(bits=bits))
    assert qm is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    rep = Q.quantization_report(qm)
    L = Q.bits_to_levels(bits)
    for lr in rep.layers:
        assert lr.bits == bits and lr.max_levels <= L
        w = dict(qm.named_modules())[lr.name].weight.detach()
        np.testing.assert_array_equal(
            lr.levels_per_channel, naive.distinct_per_row(w.reshape(w.shape[0], -1).numpy())
        )
    assert rep.bits_per_parameter == pytest.approx(np.log2(L))
    # biases and BatchNorm stay float
    assert torch.equal(qm[0].bias, model[0].bias)
    assert torch.equal(qm[1].weight, model[1].weight)
    # activations float: same module structure (no activation quantizers inserted), and the
    # output is the float network's output with the quantized weights loaded
    assert [type(m) for m in qm.modules()] == [type(m) for m in model.modules()]
    ref = small_cnn()
    ref.load_state_dict(qm.state_dict())
    x = torch.randn(4, 3, 8, 8)
    qm.eval()
    ref.eval()
    assert torch.equal(qm(x), ref(x))


def test_rtn_equals_grid_fake_quant():
    model = small_cnn(1)
    qm = Q.quantize_model(model, bits=2, range_method="minmax")
    for name in ("0", "3", "7", "9"):
        w = dict(model.named_modules())[name].weight.detach()
        expect = Q.make_grid(w, 2, range_method="minmax").fake_quant(w)
        assert torch.equal(dict(qm.named_modules())[name].weight, expect)


def test_one_bit_is_mean_scaled_sign():
    model = small_cnn(2)
    qm = Q.quantize_model(model, Q.QuantConfig(bits=1))
    w = model[7].weight.detach()
    assert torch.equal(qm[7].weight, Q.sign_quantize(w, scale="mean"))


@settings(max_examples=20)
@given(st.sampled_from([1, 1.58, 2]), st.integers(0, 1000))
def test_decoupled_last_layer_has_8_bits(bits, seed):
    model = small_cnn(seed)
    low = Q.quantization_report(Q.quantize_model(model, Q.QuantConfig(bits=bits)))
    dec = Q.quantization_report(
        Q.quantize_model(model, Q.QuantConfig(bits=bits, last_layer_bits=8, range_method="minmax"))
    )
    last = dec["9"]
    assert last.bits == 8 and last.max_levels <= 256
    assert last.levels_per_channel.min() > Q.bits_to_levels(bits)  # really more than low-bit
    assert last.levels_per_channel.min() > 100  # 300 Gaussian weights per channel on 256 levels
    assert low["9"].max_levels <= Q.bits_to_levels(bits)
    for name in ("0", "3", "7"):
        assert dec[name].bits == bits and dec[name].max_levels <= Q.bits_to_levels(bits)
    assert dec.bits_per_parameter > low.bits_per_parameter


def test_first_layer_and_overrides():
    model = small_cnn(3)
    cfg = Q.QuantConfig(
        bits=2,
        first_layer_bits="float",
        overrides={"7": 4, "3": {"bits": 1.58, "range_method": "minmax"}},
    )
    qm = Q.quantize_model(model, cfg)
    assert torch.equal(qm[0].weight, model[0].weight)
    rep = Q.quantization_report(qm)
    assert rep["0"].bits is None and rep["0"].bits_per_parameter == 32
    assert rep["3"].bits == 1.58 and rep["3"].max_levels <= 3
    assert rep["7"].bits == 4 and 4 < rep["7"].max_levels <= 16
    assert rep["9"].bits == 2
    plan = Q.plan_layers(model, cfg)
    assert [p.name for p in plan.layers] == ["0", "3", "7", "9"]
    assert plan.layers[1].spec.range_method == "minmax"


def test_report_of_float_model():
    rep = Q.quantization_report(small_cnn())
    assert rep.method is None and all(lr.bits is None for lr in rep.layers)
    assert rep.bits_per_parameter == 32.0
    d = rep.as_dict()
    assert d["layers"][0]["name"] == "0"


# -- supported layers ------------------------------------------------------------------------------


class WithConv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv1d(x)).mean(-1))


def test_unsupported_layers():
    with pytest.raises(MisValueError, match=r"nn\.Linear, nn\.Conv2d") as e:
        Q.quantize_model(WithConv1d(), bits=4)
    assert "conv1d" in str(e.value) and "float" in str(e.value)
    qm = Q.quantize_model(WithConv1d(), bits=4, overrides={"conv1d": "float"})
    assert Q.quantization_report(qm)["fc"].max_levels <= 16
    with pytest.raises(MisValueError, match=r"cannot quantize 'bn'.*nn\.Linear, nn\.Conv2d"):
        Q.quantize_model(WithConv1d(), bits=4, overrides={"conv1d": "float", "bn": 8})
    with pytest.raises(MisValueError, match="not a module"):
        Q.quantize_model(small_cnn(), bits=4, overrides={"head": 8})
    with pytest.raises(MisValueError, match="no layer to quantize"):
        Q.quantize_model(nn.Sequential(nn.ReLU()), bits=4)
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.raises(MisValueError, match="Embedding"):
        Q.quantize_model(emb, bits=4)


# -- config validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bits=3.3), "bits"),
        (dict(bits=4, last_layer_bits=0), "last_layer_bits"),
        (dict(first_layer_bits="half"), "first_layer_bits"),
        (dict(range_method="percentile"), "range_method"),
        (dict(symmetric=1), "symmetric"),
        (dict(norm=-1), "norm"),
        (dict(n_candidates=0), "n_candidates"),
        (dict(overrides={"fc": 33}), "overrides"),
        (dict(overrides={"fc": {"bitz": 4}}), "unknown fields"),
        (dict(overrides=[("fc", 4)]), "overrides"),
        (dict(seed=-1), "seed"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(MisValueError, match=match):
        Q.QuantConfig(**kwargs)


def test_unknown_method_and_config_type():
    with pytest.raises(MisValueError, match=r"unknown quantization method.*rtn"):
        Q.quantize_model(small_cnn(), Q.QuantConfig(method="no-such-method"))
    with pytest.raises(MisValueError, match="QuantConfig"):
        Q.quantize_model(small_cnn(), {"bits": 4})
    with pytest.raises(MisValueError, match=r"nn\.Module"):
        Q.quantize_model(torch.ones(3), bits=4)


# -- registry and calibration --------------------------------------------------------------------


@pytest.fixture
def dummy_method():
    seen = {}

    def fn(model, plan, calib):
        seen["plan"], seen["calib"] = plan, calib
        return None

    Q.register_method("dummy-test", fn, needs_calibration=True, description="test")
    yield seen
    api._METHODS.pop("dummy-test")


def toy_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    keep = np.random.default_rng(seed).random(n) < 0.5
    return x, y, keep


def test_registry_and_method_interface(dummy_method):
    assert "dummy-test" in Q.available_methods() and "rtn" in Q.available_methods()
    with pytest.raises(MisValueError, match="already registered"):
        Q.register_method("dummy-test", lambda m, p, c: m)
    model = small_cnn()
    with pytest.raises(MisValueError, match="needs calibration"):
        Q.quantize_model(model, Q.QuantConfig(method="dummy-test"))
    x, y, keep = toy_data()
    calib = Q.select_calibration(x, y, member_mask=keep, n_samples=32, rng=1)
    qm = Q.quantize_model(model, Q.QuantConfig(method="dummy-test", bits=2), calib)
    plan = dummy_method["plan"]
    assert dummy_method["calib"] is calib
    assert [p.name for p in plan.layers] == ["0", "3", "7", "9"]
    assert all(p.module is dict(qm.named_modules())[p.name] for p in plan.layers)
    assert qm.mis_quant_info.method == "dummy-test"


def test_calibration_guard():
    x, y, keep = toy_data()
    members, non = np.flatnonzero(keep), np.flatnonzero(~keep)
    calib = Q.select_calibration(x, y, member_mask=keep, n_samples=50, rng=3)
    assert len(calib) == 50 and keep[calib.indices].all()
    assert torch.equal(calib.x, x[torch.as_tensor(calib.indices)])
    again = Q.select_calibration(x, y, member_mask=keep, n_samples=50, rng=3)
    assert np.array_equal(calib.indices, again.indices)  # same seed, same set
    # explicit indices: members pass, one non-member is refused
    ok = Q.select_calibration(x, y, member_mask=keep, indices=members[:10])
    assert np.array_equal(ok.indices, members[:10])
    with pytest.raises(MisValueError, match="non-members"):
        Q.select_calibration(x, y, member_mask=keep, indices=np.r_[members[:10], non[:1]])
    with pytest.raises(MisValueError, match="non-members"):
        Q.Calibration((x[:3],), np.r_[members[:2], non[:1]], keep)
    pos = Q.select_calibration(x, member_mask=keep, member_positions=[0, 2])
    assert np.array_equal(pos.indices, members[[0, 2]]) and pos.y is None
    with pytest.raises(MisValueError, match="member_positions"):
        Q.select_calibration(x, member_mask=keep, member_positions=[members.size])
    # all members when fewer than n_samples
    assert len(Q.select_calibration(x, member_mask=keep, n_samples=10_000)) == members.size
    # raw tensors are refused by quantize_model
    with pytest.raises(MisValueError, match="Calibration"):
        Q.quantize_model(small_cnn(), Q.QuantConfig(bits=4), x[:10])
    # batches cover the set in order
    got = torch.cat([b[0] for b in calib.batches(16)])
    assert torch.equal(got, calib.x)


def test_calibration_bad_inputs():
    x, _y, keep = toy_data()
    members = np.flatnonzero(keep)
    with pytest.raises(MisValueError, match="member_mask"):
        Q.select_calibration(x, member_mask=keep[:-1])
    with pytest.raises(MisValueError, match="member_mask"):
        Q.select_calibration(x, member_mask=keep.astype(float) * 2)
    with pytest.raises(MisValueError, match="distinct"):
        Q.Calibration((x[:2],), members[[0, 0]], keep)
    with pytest.raises(MisValueError, match="one row per index"):
        Q.Calibration((x[:3],), members[:2], keep)
    with pytest.raises(MisValueError, match=r"lie in \[0"):
        Q.select_calibration(x, member_mask=keep, indices=[len(keep)])
    with pytest.raises(MisValueError, match="not both"):
        Q.select_calibration(x, member_mask=keep, indices=members[:2], member_positions=[0])
    with pytest.raises(MisValueError, match="no members"):
        Q.select_calibration(x, member_mask=np.zeros(len(keep), bool))


# -- named weight quantizers -----------------------------------------------------------------------

REQUIRED = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit", "4bit", "5bit",
            "uaq-4", "uaq-2", "uaq-1.58"]  # fmt: skip
MAX_LEVELS = {"sign": 2, "ternary-33": 3, "ternary-50": 3, "ternary-90": 3, "2bit": 4, "3bit": 8,
              "4bit": 16, "5bit": 32}  # fmt: skip


@pytest.mark.parametrize("name", REQUIRED)
def test_weight_quantizers(name):
    assert name in Q.available_weight_quantizers()
    q = Q.weight_quantizer(name)
    for shape in [(6, 5, 3, 3), (10, 20), (7,)]:
        w = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
        before = w.clone()
        out = q(w)
        assert out.shape == w.shape and out.dtype == w.dtype and torch.equal(w, before)
        if name in MAX_LEVELS:  # layer-wise quantizers
            assert len(torch.unique(out)) <= MAX_LEVELS[name]
        else:  # per-channel grids
            L = Q.bits_to_levels(float(name.split("-")[1]))
            rows = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(1, -1)
            assert (naive.distinct_per_row(rows.numpy()) <= L).all()
        assert isinstance(q(w.numpy()), np.ndarray)
        assert np.array_equal(q(w.numpy()), out.numpy())
    stacked = Q.weight_quantizer(name, stacked=True)
    ws = torch.randn(3, 4, 5)
    assert stacked.stacked
    assert torch.equal(stacked(ws), torch.stack([q(ws[k]) for k in range(3)]))


def test_weight_quantizer_unknown_name():
    with pytest.raises(MisValueError, match="ternary-33"):
        Q.weight_quantizer("ternary-42")


def test_with_seed_changes_only_the_seed():
    cfg = Q.QuantConfig(bits=1.58, method="rtn", last_layer_bits=8)
    other = cfg.with_seed(7)
    assert other.seed == 7 and cfg.seed == 0
    assert dataclasses.replace(other, seed=0) == cfg
    with pytest.raises(MisValueError, match="seed"):
        cfg.with_seed(-1)
