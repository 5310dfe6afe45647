"""The command line: `mis demo` writes its report; `mis roc` scores stored arrays."""

import json

import numpy as np
import pytest

from mis import cli


def test_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--n", "4000", "--resamples", "100"]) == 0
    for name in ("report.md", "results.json", "metrics.csv", "roc.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    leaky = results["metrics"]["leaky model"]["auc"]
    less = results["metrics"]["less leaky model"]["auc"]
    assert leaky["low"] <= leaky["estimate"] <= leaky["high"]
    assert leaky["estimate"] > less["estimate"]  # the simulation makes the first model leakier
    assert "| leaky model |" in (out / "report.md").read_text()
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    assert "demo" in text and "roc" in text
