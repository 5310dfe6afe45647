"""The audit with the user's own parts: model factory, data loader, training function and
quantizer, from Python (mis.audit_model) and from a TOML file naming importable callables."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import mis
from mis import cli
from mis.exceptions import MisValueError
from mis.quant import quantization_report
from mis.studies.audit import load_config
from mis.studies.audit.config import Config
from mis.studies.audit.data import load_data
from mis.train import load_digits
from tests.test_train_idx import fake_release

#: Small and fast: 4 shadows, 2 targets, a few seconds per audit.
SMALL = {
    "study": {"device": "cpu", "torch_threads": 1, "name": "own"},
    "metrics": {"fprs": [0.01], "n_resamples": 40, "band_resamples": 10, "band_points": 4},
    "quant": {"calibration_samples": 64, "decoupled_last_layer_bits": 0},
    "attack": {"n_aug": 1, "attacks": ["lira_online", "loss"]},
}

#: The user's module, written to disk for the TOML route.
PARTS = """
import numpy as np
import torch
from torch import nn

CALLS = {"factory": 0, "fit": 0, "quantizer": 0}


def make_model(n_classes, input_shape, hidden=16):
    CALLS["factory"] += 1
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))


def fit(model, x, y, config, seed):
    CALLS["fit"] += 1
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(config.epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def sign_quantizer(model, *, bits, calibration):
    CALLS["quantizer"] += 1
    assert len(calibration.data[0]) > 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.copy_(m.weight.sign() * m.weight.abs().mean(1, keepdim=True))
    return model


def load():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 1, 4, 4)).astype(np.float32)
    y = (x[:, 0, 0, 0] > 0).astype(np.int64)
    return x[:200], y[:200], x[200:], y[200:]


def bad_fit(model):
    return model


NOT_CALLABLE = 3
"""


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """The user's module ``own_parts`` importable from the working directory."""
    (tmp_path / "own_parts.py").write_text(PARTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("own_parts", None)
    import own_parts

    yield own_parts
    sys.modules.pop("own_parts", None)


def _digits(n=400):
    d = load_digits()
    x, y = d.x[:n], d.y[:n]
    return x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :]


def _mlp(n_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 32), nn.ReLU(),
                         nn.Linear(32, n_classes))  # fmt: skip


def _fit(model, x, y, config, seed):
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _halve(model, *, bits, calibration):
    """Not a real quantizer: halves the weights (a test can see it happened)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.mul_(0.5)
    return model


# ------------------------------------------------------------------------------------------
# Python route
# ------------------------------------------------------------------------------------------
def test_audit_model_with_objects(tmp_path):
    out = tmp_path / "audit"
    res = mis.audit_model(
        _mlp, _digits(), out=out, train=_fit, quantizers={"halve": _halve, "rtn": "rtn"},
        bits=[2], shadows=4, targets=2, config=SMALL,
    )  # fmt: skip
    keys = [v["key"] for v in res["variants"]]
    assert keys == ["fp", "halve_2b", "rtn_2b"]
    assert res["verdict"]["status"] in ("no_leak", "reduction", "no_reduction")
    assert {r["key"] for r in res["verdict"]["rows"]} == {"halve_2b", "rtn_2b"}
    report = (out / "report.md").read_text()
    assert report.startswith("# PTQ privacy audit") and "## Verdict" in report
    assert "trained by your function" in report and "_fit" in report
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["factory"].endswith("test_audit_own._mlp")
    assert cfg["data"]["source"] == "callable" and cfg["train"]["fn"].endswith("_fit")
    # the same call again resumes: nothing retrained
    again = mis.audit_model(
        _mlp, _digits(), out=out, train=_fit, quantizers={"halve": _halve, "rtn": "rtn"},
        bits=[2], shadows=4, targets=2, config=SMALL,
    )  # fmt: skip
    assert again["accuracy"] == res["accuracy"]
    assert all(r["jobs_run"] == 0 for r in json.loads((out / "timing.json").read_text())[-4:-2])


def test_user_quantizer_changes_the_model_and_keeps_the_decoupled_last_layer():
    from mis.quant import QuantConfig, quantize_model, register_quantizer, select_calibration

    register_quantizer("halve-test", _halve)
    torch.manual_seed(0)
    model = _mlp(3, (1, 2, 2))
    x, y = torch.randn(20, 1, 2, 2), torch.randint(0, 3, (20,))
    cal = select_calibration(x, y, member_mask=np.ones(20, bool), n_samples=8, rng=0)
    q = quantize_model(model, QuantConfig(bits=2, method="halve-test", last_layer_bits=8), cal)
    assert torch.allclose(q[1].weight, 0.5 * model[1].weight)
    # the last layer: 8-bit RTN of its full-precision weight, not halved
    last = q[3].weight
    assert not torch.allclose(last, 0.5 * model[3].weight)
    assert torch.allclose(last, model[3].weight, atol=0.02)
    assert quantization_report(q).layers[-1].levels_per_channel.max() <= 256
    with pytest.raises(MisValueError, match="built-in method"):
        register_quantizer("rtn", _halve)


def test_audit_model_refuses_a_model_instance(tmp_path):
    with pytest.raises(MisValueError, match="fresh, untrained model"):
        mis.audit_model(_mlp(2, (4,)), _digits(), out=tmp_path / "x")


def test_zero_argument_factory_and_dataset(tmp_path):
    from mis.train import dataset_from_arrays

    ds = dataset_from_arrays(*_digits(200))

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    res = mis.audit_model(
        make, ds, out=tmp_path / "a", quantizers=["rtn"], bits=[4], shadows=4, targets=2,
        config={**SMALL, "train": {"epochs": 2, "augment": False, "batch_size": 32}},
    )  # fmt: skip
    assert res["data"]["n_pool"] == 100 and res["data"]["name"] == "user"


# ------------------------------------------------------------------------------------------
# TOML route
# ------------------------------------------------------------------------------------------
def _toml(**over) -> str:
    model = over.get("model", 'factory = "own_parts:make_model"\noptions = {hidden = 8}')
    train = over.get("train", 'fn = "own_parts:fit"\nepochs = 20')
    data = over.get("data", 'source = "callable"\nloader = "own_parts:load"')
    methods = over.get("methods", '["own_parts:sign_quantizer", "rtn"]')
    return textwrap.dedent(
        f"""
        [study]
        name = "own"
        shadows = 4
        targets = 2
        device = "cpu"
        torch_threads = 1
        [data]
        {data}
        [model]
        {model}
        [train]
        {train}
        [quant]
        methods = {methods}
        bits = [2]
        calibration_samples = 32
        [attack]
        n_aug = 1
        attacks = ["lira_online"]
        [metrics]
        fprs = [0.01]
        n_resamples = 40
        band_resamples = 10
        band_points = 4
        """
    ).replace("\n        ", "\n")


def test_toml_route_runs_the_users_parts(parts, tmp_path):
    path = tmp_path / "own.toml"
    path.write_text(_toml())
    out = tmp_path / "out"
    assert cli.main(["audit", "--config", str(path), "--out", str(out), "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    keys = [v["key"] for v in res["variants"]]
    assert "own_parts-sign_quantizer_2b" in keys and "own_parts-sign_quantizer_2b_last8" in keys
    labels = {v["key"]: v["label"] for v in res["variants"]}
    assert labels["own_parts-sign_quantizer_2b"] == "sign_quantizer 2-bit"
    assert parts.CALLS["fit"] == 6 and parts.CALLS["quantizer"] == 4  # 2 targets × 2 variants
    assert "own_parts:make_model" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "over, message",
    [
        ({"model": 'factory = "nomodule_xyz:make"'}, r"model\.factory.*cannot import module"),
        ({"model": 'factory = "own_parts:missing"'}, r"model\.factory.*no attribute 'missing'"),
        ({"model": 'factory = "own_parts:NOT_CALLABLE"'}, r"model\.factory.*not callable"),
        ({"model": 'factory = "own_parts"'}, r"model\.factory must name a callable"),
        ({"train": 'fn = "own_parts:bad_fit"'}, r"train\.fn.*wrong signature.*fit\(model, x, y"),
        ({"train": 'fn = "own_parts:nothing"'}, r"train\.fn.*no attribute"),
        ({"data": 'source = "callable"'}, r"data\.loader must name your loader"),
        ({"data": 'source = "callable"\nloader = "own_parts:bad_fit"'}, r"data\.loader.*wrong"),
        ({"data": 'source = "npz"\nloader = "own_parts:load"'}, r"data\.loader is read only"),
        ({"methods": '["own_parts:bad_fit"]'}, r"quant\.methods\[0\].*wrong signature"),
        ({"methods": '["nomodule_xyz:q"]'}, r"quant\.methods\[0\].*cannot import"),
    ],
)
def test_bad_callables_are_refused_naming_the_key(parts, tmp_path, over, message):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(**over))
    with pytest.raises(MisValueError, match=message):
        load_config(path)


def test_cli_prints_one_line_for_a_bad_import(parts, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(model='factory = "own_parts:missing"'))
    assert cli.main(["audit", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.factory" in err[0] and "Traceback" not in err[0]


def test_former_key_data_name_still_reads(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[data]\nname = "digits"\ntest_size = 297\n')
    assert load_config(path).data.source == "digits"
    path.write_text('[data]\nname = "digits"\nsource = "digits"\n')
    with pytest.raises(MisValueError, match="not both"):
        load_config(path)


def test_idx_source_reads_any_idx_release(tmp_path):
    _, y, _, yt = fake_release(tmp_path, n=30, n_test=10)
    cfg = Config().replace(data={"source": "idx", "root": str(tmp_path)})
    data = load_data(cfg)
    assert data.x.shape == (30, 1, 6, 6) and data.x_test.shape == (10, 1, 6, 6)
    assert data.n_classes == max(y.max(), yt.max()) + 1


def test_object_spec_from_another_process_is_explained():
    from mis._callables import resolve_callable

    with pytest.raises(MisValueError, match="another process"):
        resolve_callable("object:somewhere.else", "model.factory")


def test_toml_route_in_worker_processes(parts, tmp_path):
    """Worker processes import the user's module by name too (from the working directory)."""
    path = tmp_path / "own.toml"
    path.write_text(_toml(methods='["own_parts:sign_quantizer"]'))
    out = tmp_path / "out"
    argv = ["audit", "--config", str(path), "--out", str(out), "-q", "--executor", "process",
            "--workers", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert [v["key"] for v in res["variants"]][1] == "own_parts-sign_quantizer_2b"
    assert parts.CALLS["fit"] == 0  # the training ran in the workers, not here


def test_none_means_changed_in_place():
    from mis.quant import QuantConfig, quantize_model, register_quantizer, select_calibration

    def in_place(model, *, bits, calibration):
        _halve(model, bits=bits, calibration=calibration)  # returns nothing

    register_quantizer("in-place-test", in_place)
    model = _mlp(3, (4,))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    cal = select_calibration(x, y, member_mask=np.ones(10, bool), n_samples=4, rng=0)
    q = quantize_model(model, QuantConfig(bits=4, method="in-place-test"), cal)
    assert torch.allclose(q[1].weight, 0.5 * model[1].weight)


def test_inputs_that_are_not_images_ask_for_no_flips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def make(n_classes, input_shape):
        return nn.Linear(input_shape[0], n_classes)

    args = dict(out=tmp_path / "t", quantizers=["rtn"], bits=[4], shadows=4, targets=2)
    with pytest.raises(MisValueError, match=r"train\.augment = false and attack\.n_aug = 1"):
        mis.audit_model(make, (x[:80], y[:80], x[80:], y[80:]), **args)
    assert not (tmp_path / "t").exists()  # refused before anything is written
    cfg = {**SMALL, "train": {"epochs": 2, "augment": False}}
    res = mis.audit_model(make, (x[:80], y[:80], x[80:], y[80:]), config=cfg, **args)
    assert res["data"]["input_shape"] == [6]
