"""The synthetic study: stacked quantizers and recorder against the references, config,
a tiny study end to end, resuming bit for bit, the CLI."""

from __future__ import annotations

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
from mis.studies._common import derive_seed
from mis.studies.synthetic import (
    Config,
    default_config,
    demo_config,
    load_config,
    model,
    pipeline,
)
from mis.studies.synthetic.streaming import StreamingRecorder, quadratic_features
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
        "train": {"epochs": 40, "lr": 1e-2, "batch_size": 4},
        "trajectory": {"quantizers": list(TINY_QUANTIZERS)},
        "mis": {"n_members": 12, "hidden": [8], "epochs": 2, "patience": 1, "folds": 3},
        "analysis": {
            "k_runs": [2, 4, 8],
            "n_subsets": 10,
            "n_resamples": 50,
            "stability_resamples": 10,
        },
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
# the one-logit model and the streaming recorder against Algorithm 1 written literally
# ------------------------------------------------------------------------------------------
def test_binary_head_is_one_logit_with_bce():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    y = rng.integers(0, 2, 30)
    flat = rng.normal(size=(3, 1 + 10)).astype(np.float32)
    z = model.logits(flat, x, 1)
    assert z.shape == (3, 30, 1)
    lin = torch.nn.Linear(10, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(flat[1, 1:].astype(np.float64))[None])
        lin.bias.copy_(torch.from_numpy(flat[1, :1].astype(np.float64)))
    ref = lin(torch.from_numpy(quadratic_features(x)))
    np.testing.assert_allclose(z[1], ref.detach().numpy(), rtol=1e-12)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        ref[:, 0], torch.from_numpy(y).double(), reduction="none"
    )
    np.testing.assert_allclose(model.losses(z[1], y), bce.detach().numpy(), rtol=1e-10)
    np.testing.assert_array_equal(model.predictions(z[1]), (ref[:, 0] > 0).numpy())
    z2 = model.logits(rng.normal(size=(1, 2 + 20)).astype(np.float32), x, 2)[0]
    ce = torch.nn.functional.cross_entropy(
        torch.from_numpy(z2), torch.from_numpy(y), reduction="none"
    )
    np.testing.assert_allclose(model.losses(z2, y), ce.numpy(), rtol=1e-10)
    for name in ("sign", "ternary-50", "3bit"):
        q = model.quantize_flat(name, flat, 1)
        wq = weight_quantizer(name)
        for r in range(3):
            t = torch.from_numpy(flat[r])
            assert torch.equal(torch.from_numpy(q[r, :1]), wq(t[:1]))
            assert torch.equal(torch.from_numpy(q[r, 1:]), wq(t[1:].reshape(1, -1)).reshape(-1))
        kept = model.quantize_flat(name, flat, 1, params="weights")
        np.testing.assert_array_equal(kept[:, :1], flat[:, :1])


def _literal_rq(traj_w, traj_b, xv, yv, name, k, params, keep=None):
    """Algorithm 1 as written over every checkpoint of run k, after removing repeated
    quantized points (their first occurrence is kept): the distinct points' losses are
    computed with torch in float64 (two logits: the cross-entropy as BCE of z₁ − z₀, the same
    function); ``keep``: only the ``keep`` lowest-mean points."""
    q = weight_quantizer(name)
    phi = torch.from_numpy(quadratic_features(xv))
    y = torch.from_numpy(np.asarray(yv))
    seen, rows = set(), []
    for w_all, b_all in zip(traj_w, traj_b, strict=True):
        w = torch.from_numpy(np.asarray(w_all[k], np.float32))
        b = torch.from_numpy(np.asarray(b_all[k], np.float32))
        wq, bq = q(w), q(b) if params == "all" else b
        key = (bq.numpy().tobytes(), wq.numpy().tobytes())
        if key in seen:
            continue
        seen.add(key)
        wq, bq = wq.double(), bq.double()
        if wq.shape[0] == 1:
            z = phi @ wq[0] + bq[0]
        else:  # two classes: the cross-entropy is a function of z₁ − z₀ alone
            z = phi @ (wq[1] - wq[0]) + (bq[1] - bq[0])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y.double(), reduction="none")
        rows.append(loss.numpy())
    L = np.array(rows)
    if keep is not None:
        L = L[np.argsort(L.mean(axis=1), kind="stable")[:keep]]
    if len(L) == 1:
        return np.inf, 1
    m = np.sort(L.mean(axis=1))
    if (m[1:] == m[0]).any():
        return 0.0, len(rows)  # two distinct points with the same mean loss
    return naive.rq_algorithm1(L), len(rows)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.sampled_from([1, 2]),
    params=st.sampled_from(["all", "weights"]),
    epochs=st.integers(2, 40),
    step=st.floats(0.01, 0.5),
    revisit=st.floats(0, 0.4),
)
def test_streaming_rq_equals_algorithm_1_on_random_trajectories(
    seed, c, params, epochs, step, revisit
):
    rng = np.random.default_rng(seed)
    k, d, nv = 3, 4, 17
    xv = rng.normal(size=(nv, d)).astype(np.float32)
    yv = rng.integers(0, 2, nv)
    names = list(STACKED_QUANTIZERS)
    rec = StreamingRecorder(names, xv, yv, n_checkpoints=epochs, params=params, keep_best=3)
    w = rng.normal(size=(k, c, 2 * d))
    b = rng.normal(size=(k, c))
    traj_w, traj_b = [], []
    for e in range(1, epochs + 1):
        w = w + step * rng.normal(size=w.shape) * (rng.random(w.shape) < 0.4)
        b = b + step * rng.normal(size=b.shape)
        if traj_w and rng.random() < revisit:  # back to an earlier checkpoint
            j = rng.integers(len(traj_w))
            w, b = traj_w[j].copy(), traj_b[j].copy()
        traj_w.append(w.copy())
        traj_b.append(b.copy())
        rec(e, w, b)
    res = rec.result()
    for i in range(k):
        for j, name in enumerate(names):
            want, n_distinct = _literal_rq(traj_w, traj_b, xv, yv, name, i, params)
            assert res["n_distinct"][i, j] == n_distinct
            got = res["rq"][i, j]
            assert got == want or np.isclose(got, want, rtol=1e-6, atol=0), (name, got, want)
            kept, _ = _literal_rq(traj_w, traj_b, xv, yv, name, i, params, keep=3)
            got = res["rq_kept"][i, j]
            assert got == kept or np.isclose(got, kept, rtol=1e-6, atol=0), (name, got, kept)
    assert (res["n_changes"] >= res["n_distinct"]).all()


def test_streaming_recorder_memory_is_the_distinct_points_and_bad_arguments():
    rng = np.random.default_rng(1)
    xv, yv = rng.normal(size=(9, 3)), rng.integers(0, 2, 9)
    rec = StreamingRecorder(["sign", "5bit"], xv, yv, n_checkpoints=2, every=2)
    w, b = rng.normal(size=(2, 1, 6)), rng.normal(size=(2, 1))
    rec(1, w, b)  # not a multiple of every: ignored
    with pytest.raises(MisValueError, match="nothing recorded"):
        rec.result()
    rec(2, w, b)
    rec(4, w + 1.0, b)
    assert rec.n_distinct.tolist() == [[2, 2], [2, 2]]
    assert rec._state["n_pool"][0] == 8  # one pool row of int8 codes per distinct point
    pts = rec.points(0, 1)
    np.testing.assert_array_equal(pts["epochs"], [2, 4])
    flat, _ = rec.quantize(w + 1.0, b)
    np.testing.assert_array_equal(pts["weights"][1].reshape(-1), flat[0, 1, 1:])
    with pytest.raises(MisValueError, match="n_checkpoints"):
        rec(6, w + 2.0, b)  # a third distinct point in a table of 2
    with pytest.raises(MisValueError, match="every"):
        StreamingRecorder(["sign"], xv, yv, n_checkpoints=2, every=0)
    with pytest.raises(MisValueError, match="params"):
        StreamingRecorder(["sign"], xv, yv, n_checkpoints=2, params="bias")
    with pytest.raises(MisValueError, match="y_val"):
        StreamingRecorder(["sign"], xv, yv[:-1], n_checkpoints=2)
    with pytest.raises(MisValueError, match="quantizers"):
        StreamingRecorder(["uaq-4"], xv, yv, n_checkpoints=2)


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
        ("[mis]\nfolds = 1\n", "mis.folds"),
        ("[mis]\nfolds = 400\n", "mis.folds"),
        ("[model]\nhead = 'softmax'\n", "model.head"),
        ("[train]\nbatch_size = -1\n", "train.batch_size"),
        ("[train]\nbatch_size = 129\n", "train.batch_size"),
        ("[analysis]\nstability_resamples = -1\n", "analysis.stability_resamples"),
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
def _strip(results: dict) -> str:
    """The results without timings, as JSON text (NaN == NaN there, unlike in a dict)."""
    r = dict(results)
    r.pop("timing")
    r.pop("timing_history")
    r["config"] = {**r["config"], "study": {**r["config"]["study"], "workers": None}}
    return json.dumps(r, sort_keys=True, default=float)


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
        "adjacent.csv",
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
        assert [q for g in s["rq"]["tie_groups"] for q in g] == s["rq"]["order"]
        for q in TINY_QUANTIZERS:
            m = s["rq"]["per_quantizer"][q]["mean"]
            assert m["low"] <= m["estimate"] <= m["high"]
            mis = s["mis"][q]["mis"]
            assert 0 <= mis["low"] <= mis["estimate"] <= mis["high"] <= 1
            assert s["mis"][q]["n_test"] == 8 * 2 * 12  # every run is a test run
        assert "original" in s["mis"]
        a = s["agreement"]
        assert -1 <= a["spearman"]["estimate"] <= 1 and 0 < a["spearman_pvalue"] <= 1
        assert a["permutation"] == "exact"
        st_ = s["stability"]
        assert st_["k_runs"] == [2, 4, 8]
        assert st_["spearman_mean"][-1] == pytest.approx(1.0)  # all runs
        assert np.isnan(st_["spearman_disjoint_mean"][-1])  # no other runs left
        assert all(lo <= hi for lo, hi in st_["spearman_ci"])
        acc = s["accuracy"]["test"]
        assert set(acc) == {"original", *TINY_QUANTIZERS}
        assert all(0 <= v <= 1 for v in acc.values())
        d = s["rq_diagnostics"]
        assert all(v >= 1 for v in d["mean_distinct"].values())
    text = (out / "report.md").read_text()
    assert text.index("## Verdict") < text.index("## Privacy ranking")
    assert "Does r_Q agree with the MIS baseline?" in text and "tie group" in text
    assert "Table 2" in text and "| 1.58b 90% |" in text
    summ = results["summary"]
    assert "mean_spearman" in summ and summ["mean_spearman_ci"]["low"] is not None
    assert summ["stability_pooled"]["k_runs"] == [2, 4, 8]
    assert summ["keep_best"]["run_quantizer_pairs"] == 2 * 8 * len(TINY_QUANTIZERS)


def test_rq_in_the_store_is_algorithm_1_over_every_checkpoint(tiny_study):
    """Retrain two runs exactly as the study does, record every checkpoint, and compute r_Q
    with Algorithm 1 written literally: it equals what the study stored."""
    from mis.store import RunStore
    from mis.studies.synthetic.data import setting_data
    from mis.studies.synthetic.jobs import train_runs

    out, results = tiny_study
    cfg = tiny_config()
    store = RunStore(out / "store", create=False)
    rq = np.asarray(store.load("k4-s2/train/chunk0000/rq"))
    rq_all = np.asarray(store.load("k4-s2/train/chunk0000/rq_all"))
    np.testing.assert_array_equal(rq, rq_all)  # keep_best = 0: every distinct point
    mixture, (xv, yv), _ = setting_data(cfg, 4, 2.0)
    traj_w, traj_b = [], []

    def record(epoch, w, b):
        traj_w.append(w.copy())
        traj_b.append(b.copy())

    train_runs(cfg, mixture, 4, 2.0, np.arange(2), callbacks=[record])
    for i in range(2):
        for j, name in enumerate(TINY_QUANTIZERS):
            want, _ = _literal_rq(traj_w, traj_b, xv, yv, name, i, "all")
            assert rq[i, j] == pytest.approx(want, rel=1e-9), name
    mean = results["settings"][1]["rq"]["per_quantizer"]["sign"]["mean"]["estimate"]
    all_rq = np.concatenate([store.load(f"k4-s2/train/chunk{i:04d}/rq") for i in range(3)])
    assert mean == pytest.approx(all_rq[:, 0].mean())


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
        if name.endswith(("/cpu_seconds", "/peak_rss_mb")):  # measurements, not results
            continue
        x, y = np.asarray(a.load(name)), np.asarray(b.load(name))
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    for name in ("rq.csv", "adjacent.csv", "accuracy.csv", "agreement.csv", "stability.csv"):
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


def test_second_discriminator_seed_is_added_to_a_finished_study(tmp_path):
    cfg = tiny_config(study={"runs": 6, "chunk_size": 6}, data={"sigmas": [1.0]},
                      analysis={"k_runs": [2, 6]})  # fmt: skip
    first = synthetic.run_synthetic(cfg, tmp_path / "r", progress=False)
    more = tiny_config(study={"runs": 6, "chunk_size": 6}, data={"sigmas": [1.0]},
                       analysis={"k_runs": [2, 6]}, mis={"repeats": 2})  # fmt: skip
    res = synthetic.run_synthetic(more, tmp_path / "r", progress=False)  # mis.repeats may grow
    assert res["timing"]["jobs"]["train"] == {"run": 0, "skipped": 1}
    assert res["timing"]["jobs"]["mis"] == {"run": 5, "skipped": 5}
    m0, m1 = first["settings"][0]["mis"], res["settings"][0]["mis"]
    assert all(m1[q]["repeats"][0] == m0[q]["mis"]["estimate"] for q in m0)  # seed 0 kept
    sp = res["summary"]["mis_seed_spread"]
    assert sp["max"] >= sp["mean"] >= 0 and sp["bootstrap_sd"] > 0
    assert "discriminator seeds" in (tmp_path / "r" / "report.md").read_text()


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
    assert "## Verdict" in capsys.readouterr().out
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
