"""The PTQ privacy audit (mis.studies.audit): configuration, stages, resuming, CLI, report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from mis import cli
from mis.exceptions import MisValueError
from mis.studies import audit as A
from mis.studies._common import derive_seed
from mis.studies.audit import Config, default_config, load_config, pipeline
from mis.studies.audit.data import load_data
from mis.studies.audit.models import model_factory, pack_state, unpack_state

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def tiny_config(**over) -> Config:
    """A few shadows and epochs, RTN only: the whole audit in seconds."""
    base = {
        "study": {"name": "tiny", "shadows": 6, "targets": 2, "chunk_size": 8,
                  "torch_threads": 1, "device": "cpu"},
        "data": {"name": "digits", "test_size": 297, "n_examples": 600},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "augment": False},
        "quant": {"methods": ["rtn"], "bits": [4, 1.58], "calibration_samples": 128},
        # a target has ~300 non-members, the two pooled ~600: TPR@0.2% FPR is defined pooled only
        "metrics": {"fprs": [0.002, 0.01], "n_resamples": 60, "band_resamples": 20,
                    "band_points": 8},
    }  # fmt: skip
    for section, values in over.items():
        base.setdefault(section, {}).update(values)
    return default_config().replace(**base)


def _core(results: dict) -> dict:
    """results without what legitimately differs between invocations."""
    return {k: v for k, v in results.items() if k not in ("timing", "versions", "warnings")}


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
def test_digits_toml_is_the_embedded_default():
    from_file = load_config(EXPERIMENTS / "digits.toml").as_dict()
    embedded = default_config().as_dict()
    # the methods line lists what is registered when the file was last edited; the embedded
    # default takes rtn plus whatever of the paper's methods is available now
    assert from_file["quant"].pop("methods")[0] == "rtn"
    assert embedded["quant"].pop("methods")[0] == "rtn"
    assert from_file == embedded


@pytest.mark.parametrize(
    "name",
    ["cifar10_resnet18", "cifar100_resnet18", "tinyimagenet_resnet18", "cifar10_resnet50",
     "cifar10_densenet121"],
)  # fmt: skip
def test_paper_configs_have_the_paper_settings(name):
    cfg = load_config(EXPERIMENTS / f"{name}.toml")
    assert cfg.study.shadows == 64 and cfg.study.targets == 10
    assert cfg.train.epochs == 100 and cfg.train.lr == 0.1 and cfg.train.momentum == 0.9
    assert cfg.train.weight_decay == 5e-4 and cfg.train.schedule == "cosine"
    assert cfg.train.augment and cfg.quant.calibration_samples == 1024
    assert cfg.data.root  # reads a local data directory
    assert {1.58, 2, 4} <= set(cfg.quant.bits)
    assert cfg.quant.options.get("obc", {}).get("bn_tuning") is True
    assert not cfg.attack.quantize_shadows
    assert cfg.attack.offline_fixed_variance
    if "resnet18" in name:
        assert set(cfg.quant.methods) == {"rtn", "adaround", "brecq", "obc", "gptq"}
        assert cfg.quant.bits == (4, 2, 1.58, 1) and cfg.quant.decoupled_last_layer_bits == 8
        assert len(cfg.variants()) == 1 + 5 * 4 * 2


def test_variants_and_targets():
    cfg = tiny_config(quant={"methods": ["rtn"], "bits": [2, 1.58],
                             "decoupled_last_layer_bits": 8})  # fmt: skip
    keys = [v.key for v in cfg.variants()]
    assert keys == ["fp", "rtn_2b", "rtn_2b_last8", "rtn_1.58b", "rtn_1.58b_last8"]
    assert cfg.target_models() == [6, 7]
    assert cfg.variants()[2].last_layer_bits == 8 and cfg.variants()[3].bits == 1.58
    assert "last 8-bit" in cfg.variants()[2].label
    no_dec = tiny_config(quant={"decoupled_last_layer_bits": 0})
    assert [v.key for v in no_dec.variants()] == ["fp", "rtn_4b", "rtn_1.58b"]


@pytest.mark.parametrize(
    "over, match",
    [
        ({"study": {"shadoes": 3}}, "study.shadoes"),
        ({"nonsense": {}}, "nonsense"),
        ({"quant": {"bits": [3.5]}}, r"quant.bits\[0\]"),
        ({"study": {"shadows": 2, "targets": 2}}, "too small"),
        ({"study": {"shadows": 6, "targets": 1}}, "must be an integer"),  # 0.5 * 7
        ({"attack": {"attacks": ["lira"]}}, "attack.attacks"),
        ({"attack": {"n_aug": 3}}, "attack.n_aug"),
        ({"metrics": {"fprs": [0.0]}}, r"metrics.fprs\[0\]"),
        ({"train": {"lr": -1.0}}, "lr"),
        ({"model": {"name": "vgg"}}, "model.name"),
        ({"quant": {"grid": {"bogus": 1}}}, "quant.grid.bogus"),
    ],
)
def test_bad_config_names_the_key(over, match):
    with pytest.raises(MisValueError, match=match):
        default_config().replace(**over)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(MisValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(MisValueError, match="not found"):
        load_config(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def test_unknown_method_is_refused_when_the_config_loads():
    default_config().replace(quant={"methods": ["rtn"]})
    with pytest.raises(MisValueError, match=r"'nosuch'.*available methods"):
        default_config().replace(quant={"methods": ["nosuch"]})


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, 1, "rtn_4b") == derive_seed(0, 1, "rtn_4b")
    seeds = {derive_seed(0, p, k) for p in range(1, 5) for k in ("a", "b", 3)}
    assert len(seeds) == 12
    assert 0 <= derive_seed(5, 2) < 2**63


def test_pack_unpack_state_roundtrip_with_batchnorm():
    import torch

    from mis.train.models import build_model

    torch.manual_seed(0)
    a = build_model("digits_cnn", batchnorm=True)
    a.train()
    a(torch.randn(16, 1, 8, 8))  # running stats and num_batches_tracked move
    flat, ints = pack_state(a)
    assert flat.dtype == np.float32 and ints.dtype == np.int64 and ints.sum() > 0
    b = unpack_state(build_model("digits_cnn", batchnorm=True), flat, ints)
    for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(ta, tb)
    with pytest.raises(MisValueError, match="do not fit"):
        unpack_state(build_model("digits_cnn"), flat, ints)


def test_missing_data_directory_says_what_is_expected(tmp_path):
    cfg = default_config().replace(data={"name": "cifar10", "root": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError) as e:
        A.run_audit(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "data.root" in msg and "cifar-10-batches-py" in msg and "data_batch_1" in msg
    assert not (tmp_path / "out").exists()  # nothing started
    cfg = default_config().replace(data={"name": "tinyimagenet", "root": ""})
    with pytest.raises(FileNotFoundError, match=r"wnids.txt.*--data-root"):
        A.run_audit(cfg, tmp_path / "out")
    cfg = default_config().replace(data={"name": "cifar100", "root": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        A.run_audit(cfg, tmp_path / "out")


def test_npz_and_synthetic_data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(50, 1, 4, 4)).astype(np.float32),
             y=rng.integers(0, 3, 50))  # fmt: skip
    cfg = default_config().replace(data={"name": "npz", "path": str(tmp_path / "d.npz"),
                                         "test_size": 10})  # fmt: skip
    d = load_data(cfg)
    assert len(d) == 40 and d.x_test.shape == (10, 1, 4, 4) and d.n_classes == 3
    cfg = default_config().replace(data={"name": "npz", "path": str(tmp_path / "d.npz")})
    with pytest.raises(MisValueError, match=r"data\.test_size"):
        load_data(cfg)
    cfg = default_config().replace(
        data={"name": "synthetic", "synthetic_n": 64, "synthetic_n_test": 16,
              "synthetic_shape": [3, 32, 32], "synthetic_classes": 4}
    )  # fmt: skip
    d = load_data(cfg)
    assert d.x.shape == (64, 3, 32, 32) and d.y_test.shape == (16,) and d.n_classes == 4
    fn = model_factory(cfg.replace(model={"name": "resnet18", "options": {}}), d)
    assert fn.keywords == {"n_classes": 4, "in_channels": 3}


# ------------------------------------------------------------------------------------------
# the audit end to end
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One complete tiny audit; records every calibration set handed to quantize_model."""
    from mis.studies.audit import jobs

    out = tmp_path_factory.mktemp("audit") / "ref"
    seen = []
    real = jobs.quantize_model

    def spy(model, config=None, calib=None, **kw):
        seen.append((config.method, config.bits, config.last_layer_bits, calib))
        return real(model, config, calib, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jobs, "quantize_model", spy)
        results = A.run_audit(tiny_config(), out, progress=False)
    return out, results, seen


def test_audit_writes_the_report(reference_run):
    out, _, _ = reference_run
    for name in ("report.md", "results.json", "metrics.csv", "accuracy.csv", "per_target.csv",
                 "tpr_by_bits.png", "accuracy_by_bits.png", "privacy_utility.png",
                 "roc_lira_online.png", "roc_lira_offline.png", "roc_rmia.png", "roc_loss.png",
                 "config.json", "timing.json"):  # fmt: skip
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "| full precision |" in report and "RTN 1.58-bit (last 8-bit)" in report
    on_disk = json.loads((out / "results.json").read_text())
    assert [v["key"] for v in on_disk["variants"]] == [v.key for v in tiny_config().variants()]
    assert on_disk["attacks"] == ["lira_online", "lira_offline", "rmia", "loss"]


def test_audit_results_are_consistent(reference_run):
    out, results, _ = reference_run
    from mis.store import RunStore

    store = RunStore(out / "store", create=False)
    keep = np.asarray(store.load("keep"))
    assert keep.shape == (8, 600) and (keep.sum(0) == 4).all()
    cfg = tiny_config()
    for v in cfg.variants():
        acc = results["accuracy"][v.key]
        assert len(acc["per_target"]) == 2 and all(0 <= a <= 1 for a in acc["per_target"])
        for a in cfg.attack.attacks:
            scores = np.asarray(store.load(f"scores/{v.key}/{a}"))
            assert scores.shape == (2, 600) and np.isfinite(scores).all()
            r = results["privacy"][v.key][a]
            pooled = r["pooled"]
            assert results["metric_names"] == ["tpr@0.002fpr", "tpr@0.01fpr", "auc", "log_auc"]
            for name in results["metric_names"]:
                d = pooled[name]
                assert d["low"] - 1e-12 <= d["high"]
            # a target has < 500 non-members: TPR@0.2% FPR is undefined per target,
            # defined once the targets are pooled
            assert math.isnan(r["per_target"][0]["tpr@0.002fpr"]["estimate"])
            assert math.isfinite(pooled["tpr@0.002fpr"]["estimate"])
            assert 0.0 <= pooled["auc"]["estimate"] <= 1.0
            if v.is_fp:
                assert "vs_fp" not in r
            else:
                c = r["vs_fp"]["pooled"]["auc"]
                assert c["pvalue_holm"] >= c["pvalue"] - 1e-15
                assert isinstance(c["reject"], bool)
                assert len(r["vs_fp"]["per_target"]) == 2
    # the full-precision row of the loss attack equals the loss-threshold attack on the logits
    from mis.attacks import loss_threshold

    logits = np.asarray(store.load("train/chunk0000/logits"))
    labels = np.asarray(store.load("labels"))
    np.testing.assert_allclose(
        np.asarray(store.load("scores/fp/loss")), loss_threshold(logits[6:8], labels)
    )
    assert results["variants"][1]["bits_per_parameter"] == pytest.approx(4.0)


def test_calibration_only_from_each_targets_members(reference_run):
    out, _, seen = reference_run
    from mis.store import RunStore

    keep = np.asarray(RunStore(out / "store", create=False).load("keep"))
    assert len(seen) == 2 * 4  # 2 targets × (2 bit widths × 2 last-layer settings)
    by_target = {}
    for _method, _bits, _last, calib in seen:
        assert len(calib) == 128 and calib.member_mask.sum() > 128
        t = int(np.flatnonzero((keep == calib.member_mask).all(1))[0])
        assert t in (6, 7)
        assert keep[t, calib.indices].all()  # members only
        by_target.setdefault(t, []).append(tuple(calib.indices))
    for sets in by_target.values():  # the same draw for every method / bit width
        assert len(set(sets)) == 1


def test_interrupted_audit_resumes_with_identical_results(
    reference_run, tmp_path, monkeypatch, caplog
):
    _, ref, _ = reference_run
    out = tmp_path / "run"
    real = pipeline.quant_job
    calls = {"n": 0}

    def flaky(config, index, seed, scratch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(config, index, seed, scratch)

    monkeypatch.setattr(pipeline, "quant_job", flaky)
    with pytest.raises(KeyboardInterrupt):
        A.run_audit(tiny_config(), out, progress=False)
    monkeypatch.setattr(pipeline, "quant_job", real)
    from mis.store import RunStore

    names = RunStore(out / "store", create=False).names()
    assert sum(n.endswith("/done") and n.startswith("quant/") for n in names) == 2
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mis"):
        resumed = A.run_audit(tiny_config(), out, progress=False, report=False)
    lines = [r.getMessage() for r in caplog.records]
    assert any("[train] done" in s and "1 already done" in s for s in lines)
    assert any("[quantize] done" in s and "6 run, 2 already done" in s for s in lines)
    assert json.dumps(_core(resumed), sort_keys=True) == json.dumps(_core(ref), sort_keys=True)
    # and a third call recomputes nothing
    again = A.run_audit(tiny_config(), out, progress=False, report=False)
    assert again["timing"]["jobs"]["quantize"] == {"run": 0, "skipped": 8}
    assert again["timing"]["jobs"]["attack"]["run"] == 0
    # timing.json over the invocations: 1 training job, the 6 quantization jobs of the second
    # invocation (the interrupted stage is not recorded), 5 variants scored
    every = again["timing"]["all_invocations"]
    assert sum(e["jobs_run"] for e in every) == 1 + 6 + 5
    assert all(set(e["stages_s"]) <= {"train", "quantize", "attack", "analysis"} for e in every)
    assert json.dumps(_core(again), sort_keys=True) == json.dumps(_core(ref), sort_keys=True)


def test_other_configuration_in_same_directory_is_refused(reference_run):
    out, _, _ = reference_run
    with pytest.raises(MisValueError, match=r"different configuration.*train.epochs"):
        A.run_audit(tiny_config(train={"epochs": 4}), out)


def test_stop_after_and_quantized_shadows(tmp_path):
    """The option that quantizes the shadows too, on CIFAR-shaped synthetic images."""
    cfg = tiny_config(
        study={"shadows": 4, "targets": 2, "chunk_size": 3},
        data={"name": "synthetic", "n_examples": 0, "synthetic_n": 200, "synthetic_n_test": 50,
              "synthetic_shape": [3, 16, 16], "synthetic_classes": 4, "synthetic_noise": 2.0},
        quant={"bits": [2], "decoupled_last_layer_bits": 0},
        attack={"quantize_shadows": True, "attacks": ["lira_online", "rmia"]},
    )  # fmt: skip
    out = tmp_path / "qs"
    assert A.run_audit(cfg, out, progress=False, stop_after="quantize") == {}
    from mis.store import RunStore

    store = RunStore(out / "store", create=False)
    assert all(store.has(f"quant/rtn_2b/m{m:04d}/done") for m in range(6))  # shadows too
    assert not store.has("scores/fp/rmia")
    assert store.has("train/chunk0001/state_float")  # two training jobs of 3 models
    res = A.run_audit(cfg, out, progress=False)
    assert res["config"]["attack"]["quantize_shadows"] is True
    assert "shadows quantized like the target" in (out / "report.md").read_text()
    assert len(res["privacy"]["rtn_2b"]["rmia"]["per_target"]) == 2


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def _parser():
    return cli.build_parser()


def test_cli_parses_audit():
    args = _parser().parse_args(
        ["audit", "--config", "experiments/digits.toml", "--out", "x", "--methods", "rtn", "obc",
         "--data-root", "/data", "--stop-after", "train"]
    )  # fmt: skip
    assert args.func is cli.cmd_audit
    assert args.config == "experiments/digits.toml" and args.out == "x"
    assert args.methods == ["rtn", "obc"] and args.stop_after == "train"
    cfg = cli.audit_config_from_args(args)
    assert cfg.quant.methods == ("rtn", "obc") and cfg.data.root == "/data"
    default = _parser().parse_args(["audit"])
    assert default.config is None and cli.audit_config_from_args(default).data.source == "digits"


def test_cli_runs_a_stage(tmp_path, capsys):
    toml = tmp_path / "t.toml"
    toml.write_text(
        '[study]\nshadows = 2\ntargets = 2\nchunk_size = 4\ntorch_threads = 1\ndevice = "cpu"\n'
        '[data]\nname = "digits"\ntest_size = 297\nn_examples = 200\n'
        '[model]\nname = "digits_cnn"\n'
        "[train]\nepochs = 1\nbatch_size = 64\naugment = false\n"
        '[quant]\nmethods = ["rtn"]\nbits = [4]\n'
    )
    # shadows = 2 < targets + 2: refused with the reason
    args = _parser().parse_args(["audit", "--config", str(toml), "--out", str(tmp_path / "o")])
    with pytest.raises(MisValueError, match="too small"):
        args.func(args)
    toml.write_text(toml.read_text().replace("shadows = 2", "shadows = 4"))
    args = _parser().parse_args(
        ["audit", "--config", str(toml), "--out", str(tmp_path / "o"), "--stop-after", "train",
         "--quiet"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert "mis audit:" in capsys.readouterr().out
    assert (tmp_path / "o" / "store" / "train" / "chunk0000" / "done.npy").is_file()
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["model"]["name"] == "digits_cnn" and cfg["train"]["trainer"] == "auto"
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["momentum"] == 0.9  # paper default


# ------------------------------------------------------------------------------------------
# Fashion-MNIST (issue 17): the configurations, the quick pipeline at tiny sizes on IDX files
# the test writes, the message when the data set is missing
# ------------------------------------------------------------------------------------------
def test_fashion_mnist_configs():
    full = load_config(EXPERIMENTS / "fashion_mnist.toml")
    quick = load_config(EXPERIMENTS / "fashion_mnist_quick.toml")
    for cfg in (full, quick):
        assert cfg.data.source == "fashion_mnist" and cfg.data.root == ""
        assert cfg.data.n_examples == 5000 and cfg.model.name == "mlp"
        assert cfg.quant.bits == (4, 2, 1.58, 1) and cfg.quant.decoupled_last_layer_bits == 8
        assert cfg.quant.calibration_samples == 1024 and not cfg.attack.quantize_shadows
        assert cfg.attack.offline_fixed_variance and cfg.verdict_attack == "lira_online"
        assert {"lira_online", "lira_offline", "rmia", "loss"} == set(cfg.attack.attacks)
        assert cfg.train.train_config().epochs == 50
    assert full.study.shadows == 64 and full.study.targets == 10
    assert set(full.quant.methods) == {"rtn", "adaround", "brecq", "obc", "gptq", "gptq-refine"}
    assert len(full.variants()) == 1 + 6 * 4 * 2
    brecq = full.variant("brecq_2b").quant.method_options
    assert brecq.head_stem_bits is None and brecq.blocks == ("net",)  # "none" in the TOML
    assert full.variant("obc_2b").quant.method_options.dtype == "float32"
    assert quick.study.shadows == 32 and quick.study.targets == 4
    assert set(quick.quant.methods) == {"rtn", "gptq", "adaround"}


def test_fashion_mnist_quick_pipeline_at_tiny_sizes(tmp_path):
    """experiments/fashion_mnist_quick.toml end to end, shrunk, on IDX files written here."""
    from tests.test_train_idx import fake_release

    fake_release(tmp_path / "fm", n=240, n_test=60, size=8, seed=4)
    cfg = load_config(EXPERIMENTS / "fashion_mnist_quick.toml").replace(
        study={"shadows": 6, "targets": 2, "chunk_size": 8, "device": "cpu"},
        data={"root": str(tmp_path / "fm"), "n_examples": 200},
        model={"options": {"hidden": [16]}},
        train={"epochs": 2},
        quant={"bits": [4, 1.58], "calibration_samples": 64,
               "options": {"adaround": {"n_iter": 5}}},
        metrics={"fprs": [0.01, 0.05], "n_resamples": 40, "band_resamples": 20,
                 "band_points": 6},
    )  # fmt: skip
    out = tmp_path / "run"
    res = A.run_audit(cfg, out, progress=False)
    assert res["data"]["name"] == "fashion_mnist" and res["data"]["input_shape"] == [1, 8, 8]
    assert [v["key"] for v in res["variants"]][:3] == ["fp", "rtn_4b", "rtn_4b_last8"]
    assert len(res["variants"]) == 1 + 3 * 2 * 2
    v = res["verdict"]
    assert v["status"] in ("no_leak", "reduction", "no_reduction")
    assert len(v["rows"]) == 12 and v["metric"] == "tpr@0.01fpr"
    report = (out / "report.md").read_text()
    assert report.startswith("# PTQ privacy audit: fashion_mnist_quick\n\n## Verdict\n")
    assert (out / "verdict.csv").is_file() and (out / "privacy_utility.png").is_file()
    # the paper check reads the run
    import importlib.util

    spec = importlib.util.spec_from_file_location("zc", ROOT / "paper_checks/zhang2025.py")
    zc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zc)
    rows = zc.check(zc.load_results(out))
    assert rows and all(r["strict"] in ("pass", "FAIL", "n/a") for r in rows)


def test_missing_fashion_mnist_says_what_to_install(tmp_path):
    cfg = load_config(EXPERIMENTS / "fashion_mnist_quick.toml").replace(
        data={"root": str(tmp_path / "nowhere")}
    )
    with pytest.raises(FileNotFoundError) as e:
        A.run_audit(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    assert "train-images-idx3-ubyte" in msg and not (tmp_path / "out").exists()


def test_digits_report_opens_with_the_verdict(reference_run):
    out, results, _ = reference_run
    report = (out / "report.md").read_text()
    assert report.index("## Verdict") < report.index("## Setup")
    v = results["verdict"]
    if v["leak"] == "none":  # the tiny digits audit: no leak to speak of
        assert "not distinguishable from chance, so no privacy conclusion follows" in report
    else:
        assert "**Full-precision leak.**" in report
