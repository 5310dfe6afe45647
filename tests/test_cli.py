"""The command line: `mis demo` writes its report; `mis roc` scores stored arrays."""

import json

import numpy as np
import pytest

from mis import cli


def test_demo_writes_report(tmp_path, capsys, monkeypatch):
    """`mis demo` runs the embedded synthetic study (shrunk here to a tiny one)."""
    from mis.studies import synthetic

    tiny = synthetic.Config.from_dict(
        {
            "study": {"runs": 6, "chunk_size": 3, "workers": 1},
            "data": {"k_modes": [4], "sigmas": [1.0], "dim": 6, "n_train": 12, "n_val": 20,
                     "n_test": 40},
            "train": {"epochs": 30, "lr": 1e-2, "batch_size": 4},
            "trajectory": {"keep_best": 5},
            "mis": {"n_members": 12, "hidden": [8], "epochs": 2, "patience": 1},
            "analysis": {"k_runs": [2, 6], "n_subsets": 5, "n_resamples": 20},
        }
    )  # fmt: skip
    monkeypatch.setattr(synthetic, "demo_config", lambda: tiny)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quiet"]) == 0
    for name in ("report.md", "results.json", "rq.csv", "accuracy.csv", "fig2_rq_vs_mis.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"][0]["key"] == "k4-s1"
    assert results["settings"][0]["agreement"]["permutation"] == "exact"
    assert "## Verdict" in capsys.readouterr().out
    assert (out / "fig2_rq_vs_mis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_roc_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 500)
    np.save(tmp_path / "s.npy", rng.normal(size=1000) + labels)
    np.save(tmp_path / "y.npy", labels)
    argv = ["roc", str(tmp_path / "s.npy"), str(tmp_path / "y.npy"), "--json", "--resamples", "50"]
    assert cli.main([*argv, "--fprs", "0.01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tpr@0.01fpr", "auc", "log_auc"}
    assert 0.7 < out["auc"]["estimate"] < 0.8


def test_roc_command_bad_input_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.array([0.1, np.nan]))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    assert cli.main(["roc", str(tmp_path / "s.npy"), str(tmp_path / "y.npy")]) == 2
    assert "scores must be finite" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "synth", "audit", "roc"):
        assert command in text
