"""The synthetic study: stacked quantizers and recorder against the references, config,
a tiny study end to end, resuming bit for bit, the CLI."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mis.exceptions import MisValueError
from mis.quant import STACKED_QUANTIZERS, stacked_quantize, weight_quantizer
from mis.studies import synthetic
from mis.studies._common import derive_seed, fill_keep_best_padding
from mis.studies.synthetic import (
    Config,
    default_config,
    demo_config,
    load_config,
    pipeline,
)
from mis.studies.synthetic.stacked import KeepBestRecorder
from mis.train import GaussianMixture, QuadraticLinear, TrainConfig, train_ensemble
from mis.train.trajectory import TrajectoryRecorder
from tests import naive

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY_QUANTIZERS = ("sign", "ternary-90", "2bit", "5bit")


def tiny_config(**over) -> Config:
    d = {
        "study": {"runs": 8, "chunk_size": 3, "workers": 1, "seed": 3},
        "data": {
            "k_modes": [4],
            "sigmas": [1.0, 2.0],
            "dim": 6,
            "n_train": 12,
            "n_val": 20,
            "n_test": 50,
        },
        "train": {"epochs": 40, "lr": 1e-2},
        "trajectory": {"keep_best": 6, "quantizers": list(TINY_QUANTIZERS)},
        "mis": {"n_members": 12, "hidden": [8], "epochs": 2, "patience": 1},
        "analysis": {"k_runs": [2, 4, 8], "n_subsets": 10, "n_resamples": 50},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return Config.from_dict(d)


# ------------------------------------------------------------------------------------------
# stacked quantizers
# ------------------------------------------------------------------------------------------
def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@settings(max_examples=40)
@given(
    k=st.integers(1, 5),
    shape=st.sampled_from([(1,), (2,), (3, 7), (2, 16), (1, 40)]),
    log_scale=st.floats(-3, 3),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_stacked_quantize_equals_reference_bit_for_bit(k, shape, log_scale, seed, ties):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn((k, *shape), generator=g) * 10.0**log_scale
    if ties:  # repeated magnitudes, exact zeros and exact powers of two
        w = torch.round(w * 4 / 10.0**log_scale) / 4
        w.view(k, -1)[:, 0] = 0.0
    out = stacked_quantize(list(STACKED_QUANTIZERS), w)
    assert out.shape == (k, len(STACKED_QUANTIZERS), *shape) and out.dtype == torch.float32
    for j, name in enumerate(STACKED_QUANTIZERS):
        ref = torch.stack([weight_quantizer(name)(w[i]) for i in range(k)])
        assert torch.equal(_bits(out[:, j]), _bits(ref)), name
        assert torch.equal(_bits(stacked_quantize(name, w)), _bits(ref)), name


def test_stacked_quantize_all_zero_rows_and_bad_input():
    w = torch.zeros(2, 5)
    w[1, 2] = -3.0
    for name in STACKED_QUANTIZERS:
        ref = torch.stack([weight_quantizer(name)(w[i]) for i in range(2)])
        assert torch.equal(_bits(stacked_quantize(name, w)), _bits(ref))
    with pytest.raises(MisValueError, match="stacked implementation"):
        stacked_quantize("uaq-4", w)
    with pytest.raises(MisValueError, match="float32"):
        stacked_quantize("sign", w.double())
    with pytest.raises(MisValueError, match="finite"):
        stacked_quantize("sign", torch.full((2, 3), float("nan")))


# ------------------------------------------------------------------------------------------
# keep-best recorder against TrajectoryRecorder
# ------------------------------------------------------------------------------------------
def _train_with(recorders, epochs=60, k=3, dim=6, seed=0):
    mix = GaussianMixture.random(dim=dim, k_modes=4, sigma=1.0, rng=seed)
    x, y = mix.sample(15 * k, seed + 1)
    subsets = [np.arange(15 * i, 15 * (i + 1)) for i in range(k)]
    cfg = TrainConfig.aubinais2025(epochs=epochs, lr=1e-2)
    train_ensemble(
        functools.partial(QuadraticLinear, dim),
        torch.from_numpy(x),
        y,
        cfg,
        list(range(10, 10 + k)),
        subsets=subsets,
        device="cpu",
        callbacks=recorders,
        progress=False,
    )


def _validation(dim=6, n=25, seed=0):
    mix = GaussianMixture.random(dim=dim, k_modes=4, sigma=1.0, rng=seed)
    xv, yv = mix.sample(n, 99)
    return torch.from_numpy(xv), yv


@pytest.mark.parametrize("params", ["all", "weights"])
@pytest.mark.parametrize("every", [1, 3])
def test_keep_best_recorder_equals_trajectory_recorder(params, every):
    xv, yv = _validation()
    names = list(STACKED_QUANTIZERS)
    ref = TrajectoryRecorder(
        {n: weight_quantizer(n) for n in names},
        xv,
        torch.from_numpy(yv),
        keep_best=5,
        every=every,
        params=params,
    )
    fast = KeepBestRecorder(names, xv, yv, keep_best=5, every=every, params=params)
    _train_with([ref, fast])
    a, b = ref.result(), fast.result()
    assert np.array_equal(a["qhash"], b["qhash"])
    assert np.array_equal(a["val_epochs"], b["val_epochs"])
    np.testing.assert_allclose(b["val_losses"], a["val_losses"], rtol=1e-5, atol=1e-6)
    assert fast.n_changes.shape == (3, len(names))
    assert (fast.n_changes >= 1).all() and (fast.n_changes <= 60 // every).all()


def test_keep_best_recorder_pads_like_the_reference():
    # sign of a slowly trained model changes rarely: fewer distinct points than keep_best
    xv, yv = _validation()
    ref = TrajectoryRecorder(
        {"sign": weight_quantizer("sign")}, xv, torch.from_numpy(yv), keep_best=50
    )
    fast = KeepBestRecorder(["sign"], xv, yv, keep_best=50)
    _train_with([ref, fast], epochs=20)
    a, b = ref.result(), fast.result()
    assert (b["val_epochs"] == -1).any()
    assert np.array_equal(a["val_epochs"], b["val_epochs"])
    assert np.array_equal(a["qhash"], b["qhash"])
    assert np.array_equal(np.isnan(a["val_losses"]), np.isnan(b["val_losses"]))


def test_keeping_every_point_gives_algorithm_1():
    """keep_best >= #checkpoints: r_Q from the kept points equals r_Q from all checkpoints."""
    from mis.security import rq_batch

    xv, yv = _validation()
    names = ["sign", "ternary-50", "3bit", "5bit"]
    full = TrajectoryRecorder({n: weight_quantizer(n) for n in names}, xv, torch.from_numpy(yv))
    fast = KeepBestRecorder(names, xv, yv, keep_best=40)
    _train_with([full, fast], epochs=40)
    a, b = full.result(), fast.result()
    vl, qh = fill_keep_best_padding(b["val_losses"], b["qhash"], b["val_epochs"])
    np.testing.assert_allclose(rq_batch(vl, qh), rq_batch(a["val_losses"], a["qhash"]), rtol=1e-4)


def test_recorder_bad_arguments():
    xv, yv = _validation()
    with pytest.raises(MisValueError, match="keep_best"):
        KeepBestRecorder(["sign"], xv, yv, keep_best=0)
    with pytest.raises(MisValueError, match="every"):
        KeepBestRecorder(["sign"], xv, yv, keep_best=2, every=0)
    with pytest.raises(MisValueError, match="params"):
        KeepBestRecorder(["sign"], xv, yv, keep_best=2, params="bias")
    with pytest.raises(MisValueError, match="y_val"):
        KeepBestRecorder(["sign"], xv, yv[:-1], keep_best=2)
    with pytest.raises(MisValueError, match="nothing recorded"):
        KeepBestRecorder(["sign"], xv, yv, keep_best=2).result()


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
def test_shipped_toml_is_the_full_study_and_demo_is_valid():
    full = load_config(ROOT / "experiments" / "synthetic.toml")
    assert full == default_config()
    assert full.study.runs == 300 and full.train.epochs == 3000 and full.train.lr == 1e-4
    assert full.data.k_modes == (6, 8, 16) and full.data.sigmas == (1.5, 2.0, 3.0)
    assert len(full.settings()) == 9 and len(full.trajectory.quantizers) == 8
    demo = demo_config()
    assert len(demo.settings()) == 1 and demo.study.runs >= 40
    assert Config.from_dict(demo.as_dict()) == demo  # JSON round trip


@pytest.mark.parametrize(
    "text, key",
    [
        ("[data]\nn_vall = 3\n", "data.n_vall"),
        ("[dta]\nn_val = 3\n", "dta"),
        ("[data]\nn_val = 1\n", "data.n_val"),
        ("[data]\nsigmas = [1.5, -2]\n", r"data.sigmas\[1\]"),
        ("[data]\nk_modes = 8\n", "data.k_modes"),
        ("[train]\nlr = 0\n", "train.lr"),
        ("[trajectory]\nquantizers = ['sign', 'ternary-90', '7bit']\n", r"trajectory.quantizers"),
        ("[trajectory]\nkeep_best = -1\n", "trajectory.keep_best"),
        ("[mis]\nenabled = 1\n", "mis.enabled"),
        ("[mis]\nhidden = [64, 0]\n", r"mis.hidden\[1\]"),
        ("[mis]\nn_members = 500\n", "mis.n_members"),
        ("[analysis]\nconfidence_level = 1.0\n", "analysis.confidence_level"),
        ("[study]\nruns = 1\n", "study.runs"),
        ("study = 3\n", "study"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(MisValueError, match=key):
        load_config(p)


def test_config_file_errors(tmp_path):
    with pytest.raises(MisValueError, match="not found"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[study\n")
    with pytest.raises(MisValueError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_partial_toml_keeps_defaults(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[study]\nruns = 20\n[data]\nk_modes = [8]\nsigmas = [2.0]\n")
    cfg = load_config(p)
    assert cfg.study.runs == 20 and cfg.settings() == [(8, 2.0)]
    assert cfg.train == default_config().train and cfg.mis == default_config().mis


def test_derive_seed_is_deterministic_and_distinct():
    a = derive_seed(0, 4, 8, 2000, 7)
    assert a == derive_seed(0, 4, 8, 2000, 7)
    others = {derive_seed(s, p, 8, 2000, r) for s in (0, 1) for p in (4, 5) for r in (7, 8)}
    assert len(others) == 8 and 0 <= a < 2**63


# ------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------
def _strip(results: dict) -> dict:
    r = dict(results)
    r.pop("timing")
    r.pop("timing_history")
    r["config"] = {**r["config"], "study": {**r["config"]["study"], "workers": None}}
    return r


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "run"
    results = synthetic.run_synthetic(tiny_config(), out, progress=False)
    return out, results


def test_tiny_study_end_to_end(tiny_study):
    out, results = tiny_study
    for name in (
        "report.md",
        "results.json",
        "rq.csv",
        "agreement.csv",
        "stability.csv",
        "accuracy.csv",
        "fig1_stability.png",
        "fig2_rq_vs_mis.png",
        "timing.json",
        "fig1_rank_frequency_k4-s1.png",
        "fig1_rank_frequency_k4-s2.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "fig2_rq_vs_mis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["settings"][0]["key"] == "k4-s1"
    assert results["quantizers"] == list(TINY_QUANTIZERS)
    assert [s["key"] for s in results["settings"]] == ["k4-s1", "k4-s2"]
    for s in results["settings"]:
        assert s["n_runs"] == 8
        assert sorted(s["rq"]["order"]) == sorted(TINY_QUANTIZERS)
        for q in TINY_QUANTIZERS:
            m = s["rq"]["per_quantizer"][q]["mean"]
            assert 0 <= m["low"] <= m["estimate"] <= m["high"]
            mis = s["mis"][q]["mis"]
            assert 0 <= mis["low"] <= mis["estimate"] <= mis["high"] <= 1
        assert "original" in s["mis"]
        a = s["agreement"]
        assert -1 <= a["spearman"]["estimate"] <= 1 and 0 < a["spearman_pvalue"] <= 1
        assert a["permutation"] == "exact"
        assert s["stability"]["k_runs"] == [2, 4, 8]
        assert s["stability"]["spearman_mean"][-1] == pytest.approx(1.0)  # all runs
        acc = s["accuracy"]["test"]
        assert set(acc) == {"original", *TINY_QUANTIZERS}
        assert all(0 <= v <= 1 for v in acc.values())
    text = (out / "report.md").read_text()
    assert "## Headline" in text and "Table 2" in text and "| 1.58b 90% |" in text
    assert "mean_spearman" in results["summary"]


def test_rq_matches_recomputation_from_the_store(tiny_study):
    from mis.security import rq_batch
    from mis.store import RunStore

    out, results = tiny_study
    store = RunStore(out / "store", create=False)
    rq = np.asarray(store.load("k4-s2/rq"))
    assert rq.shape == (8, len(TINY_QUANTIZERS)) and np.isfinite(rq).all()
    names = [f"k4-s2/train/chunk{i:04d}" for i in range(3)]
    vl = np.concatenate([store.load(f"{n}/val_losses") for n in names])
    qh = np.concatenate([store.load(f"{n}/qhash") for n in names])
    ep = np.concatenate([store.load(f"{n}/val_epochs") for n in names])
    # padding rows (fewer distinct points than keep_best) dropped one block at a time
    for r in range(8):
        for q in range(len(TINY_QUANTIZERS)):
            ok = ep[r, q] >= 0
            want = rq_batch(vl[r : r + 1, q : q + 1, ok], qh[r : r + 1, q : q + 1, ok])
            assert rq[r, q] == want[0, 0]
    mean = results["settings"][1]["rq"]["per_quantizer"]["sign"]["mean"]["estimate"]
    assert mean == pytest.approx(rq[:, 0].mean())


def test_interrupted_study_resumes_bit_for_bit(tiny_study, tmp_path, monkeypatch):
    ref_out, ref_results = tiny_study
    out = tmp_path / "run"
    cfg = tiny_config()
    real_train, real_mis = pipeline.train_chunk_job, pipeline.discriminator_job
    calls = {"train": 0, "mis": 0}

    def flaky(kind, real, stop_at):
        def job(*args):
            calls[kind] += 1
            if calls[kind] == stop_at:
                raise KeyboardInterrupt(f"simulated interruption in {kind}")
            return real(*args)

        return job

    monkeypatch.setattr(pipeline, "train_chunk_job", flaky("train", real_train, 3))
    with pytest.raises(KeyboardInterrupt):
        synthetic.run_synthetic(cfg, out, progress=False)
    monkeypatch.setattr(pipeline, "train_chunk_job", real_train)
    monkeypatch.setattr(pipeline, "discriminator_job", flaky("mis", real_mis, 4))
    with pytest.raises(KeyboardInterrupt):
        synthetic.run_synthetic(cfg, out, progress=False)
    monkeypatch.setattr(pipeline, "discriminator_job", real_mis)
    results = synthetic.run_synthetic(cfg, out, progress=False)
    assert results["timing"]["jobs"]["train"] == {"run": 0, "skipped": 6}
    assert results["timing"]["jobs"]["mis"] == {"run": 7, "skipped": 3}
    assert _strip(results) == _strip(ref_results)
    from mis.store import RunStore

    a, b = RunStore(ref_out / "store", create=False), RunStore(out / "store", create=False)
    assert a.names() == b.names()
    for name in a.names():
        if name.endswith("/cpu_seconds"):  # timing, not a result
            continue
        x, y = np.asarray(a.load(name)), np.asarray(b.load(name))
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    for name in ("rq.csv", "accuracy.csv", "agreement.csv", "stability.csv"):
        assert (ref_out / name).read_text() == (out / name).read_text()
    history = json.loads((out / "timing.json").read_text())
    # finished stages only: the train stage of the 1st invocation and the MIS stage of the 2nd
    # were interrupted (2 train jobs and 3 MIS jobs finished there)
    assert [(h["stage"], h["jobs_run"]) for h in history] == [
        ("train", 4),
        ("train", 0),
        ("mis", 7),
        ("analysis", 0),
    ]


def test_other_config_in_same_directory_is_refused(tiny_study):
    out, _ = tiny_study
    cfg = tiny_config(train={"epochs": 41})
    with pytest.raises(MisValueError, match=r"train\.epochs"):
        synthetic.run_synthetic(cfg, out, progress=False)


def test_study_without_mis(tmp_path):
    cfg = tiny_config(
        study={"runs": 4, "chunk_size": 4},
        data={"sigmas": [1.0]},
        mis={"enabled": False},
        analysis={"k_runs": [2, 4]},
    )
    res = synthetic.run_synthetic(cfg, tmp_path / "r", progress=False)
    assert res["settings"][0]["mis"] is None and res["settings"][0]["agreement"] is None
    assert "not run" in (tmp_path / "r" / "report.md").read_text()
    assert not (tmp_path / "r" / "fig2_rq_vs_mis.png").exists()


def test_run_synthetic_bad_arguments(tmp_path):
    with pytest.raises(MisValueError, match=r"synthetic\.Config"):
        synthetic.run_synthetic({"study": {}}, tmp_path)
    with pytest.raises(MisValueError, match="stop_after"):
        synthetic.run_synthetic(tiny_config(), tmp_path, stop_after="report")


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def test_cli_synth_with_config_and_bad_config(tmp_path, capsys):
    from mis import cli

    cfg = tiny_config(
        study={"runs": 4, "chunk_size": 4}, data={"sigmas": [1.0]}, analysis={"k_runs": [2, 4]}
    )
    lines = []
    for section, values in cfg.as_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v)}")
    (tmp_path / "c.toml").write_text("\n".join(lines) + "\n")
    argv = ["synth", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--quiet"]
    assert cli.main(argv) == 0
    assert "## Headline" in capsys.readouterr().out
    assert (tmp_path / "o" / "report.md").exists()
    (tmp_path / "bad.toml").write_text("[trajectory]\nevery = 0\n")
    assert cli.main(["synth", "--config", str(tmp_path / "bad.toml"), "--out", "x"]) == 2
    assert "trajectory.every" in capsys.readouterr().err


@pytest.mark.parametrize("executor", ["serial", pytest.param("process", marks=pytest.mark.slow)])
def test_cli_executor_option(tmp_path, capsys, executor):
    from mis import cli

    cfg = tiny_config(
        study={"runs": 4, "chunk_size": 2},
        data={"sigmas": [1.0]},
        mis={"enabled": False},
        analysis={"k_runs": [2, 4]},
    )
    lines = []
    for section, values in cfg.as_dict().items():
        lines += [f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (tmp_path / "c.toml").write_text("\n".join(lines) + "\n")
    argv = ["synth", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]
    assert cli.main([*argv, "--quiet", "--executor", executor, "--workers", "2"]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["timing"]["jobs"]["train"] == {"run": 2, "skipped": 0}


def test_help_lists_every_command(capsys):
    from mis import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "synth", "roc"):
        assert command in text


@settings(max_examples=80)
@given(
    st.lists(st.integers(-4, 4), min_size=1, max_size=40),
    st.integers(-1, 45),
)
def test_smallest_mask_kernel_equals_a_stable_sort(values, kz):
    """The O(n) ternary zero selection equals the first kz of a stable sort (ties included)."""
    from mis._kernels.stacked import smallest_mask

    a = np.abs(np.asarray(values, dtype=np.float32) / 2)
    got = np.empty(a.size, dtype=bool)
    smallest_mask(a, kz, got)
    np.testing.assert_array_equal(got, naive.smallest_mask(a, kz))
