"""The scripts of examples/ run at tiny sizes, so that they never rot (README, "Audit your
own model")."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--tiny", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, cwd=out.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_rq_own_loop(tmp_path):
    out = tmp_path / "rq"
    stdout = _run("rq_own_loop.py", out)
    for name in ("sign", "ternary-50", "4bit"):
        assert name in stdout
    assert "tie groups" in stdout and (out / "ranking.png").stat().st_size > 0
    assert _run("rq_own_loop.py", out) == stdout  # resumes: the saved runs are reused


def test_audit_own_model(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "audit"
    stdout = _run("audit_own_model.py", out)
    assert "full precision: TPR@1% FPR" in stdout and "GPTQ 2-bit: TPR" in stdout
    assert "Holm p" in stdout and (out / "accuracy_vs_leak.png").stat().st_size > 0
    assert (out / "report.md").read_text().startswith("# PTQ privacy audit")


def test_lightning_rq(tmp_path):
    pytest.importorskip("lightning")
    out = tmp_path / "lightning"
    stdout = _run("lightning_rq.py", out)
    assert stdout.count("r_Q {") == 3 and "most private first" in stdout
