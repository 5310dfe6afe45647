"""benchmarks/device_check.py (issue 21): the ``--tiny`` run of every part, and the pieces
that decide pass or fail (the on-grid check, time limits, exit status, the table).

The ``--tiny`` run exercises on this machine's device (the CPU in CI) the code paths the
full check exercises on a GPU, at toy sizes, so the script cannot rot; it takes about a
minute on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from mis.quant import QuantConfig, make_grid, quantize_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


DC = _load()
METHODS = ("RTN", "GPTQ", "AdaRound", "BRECQ", "OBC")


def test_tiny_run_passes_every_part(tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--budget-scale", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    wall = time.perf_counter() - t0
    log = (out / "logs.txt").read_text() if (out / "logs.txt").is_file() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:] + log[-4000:]
    assert "| part | check | result | status |" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "tiny" and res["finished"] and res["exit_code"] == 0
    assert set(res["parts"]) == set(DC.PARTS)
    rows = res["rows"]
    assert not [r for r in rows if r["status"] == "FAIL"]
    for part in DC.PARTS:  # every part reported something besides its wall time
        assert [r for r in rows if r["part"] == part and r["item"] != "wall time"], part
    ptq = {r["item"].split(" ")[0]: r for r in rows if r["part"] == "4" and "2-bit" in r["item"]}
    assert set(ptq) == set(METHODS)
    for r in ptq.values():
        assert r["status"] == "ok" and r["data"]["layers"] == 21 and not r["data"]["off_grid"]
    pytest_row = next(r for r in rows if r["part"] == "1" and r["item"].startswith("pytest"))
    assert pytest_row["data"]["skipped"] or pytest_row["data"]["passed"]
    ens = [r for r in rows if r["part"] == "3" and r["item"].startswith("ensemble K")]
    assert [r["data"]["k"] for r in ens] == [1, 2, 4]
    ratio = next(r for r in rows if r["item"] == "ratio ours / plain")
    assert ratio["data"]["ratio"] > 0 and ratio["status"] in ("ok", "below goal")
    assert (out / "table.md").read_text().startswith("Device check (tiny")
    print(f"device_check --tiny: {wall:.1f} s wall")


def test_lattice_check_accepts_grids_and_rejects_float_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn((8, 27), generator=g)
    grid = make_grid(w, 2)
    q = grid.fake_quant(w)
    assert DC.lattice_ok(q, 4)
    assert not DC.lattice_ok(q, 2)  # more levels than the bit width allows
    assert not DC.lattice_ok(w, 4)  # float weights
    bad = q.clone()
    bad[3, 5] += 0.1 * float(grid.scale[3])  # one weight nudged off its grid
    assert not DC.lattice_ok(bad, 4)
    uneven = torch.tensor([[0.0, 1.0, 2.5, 3.0]])  # 4 values, not evenly spaced
    assert not DC.lattice_ok(uneven, 4)
    sparse = torch.tensor([[-1.0, 0.0, 2.0, 2.0]])  # levels 0, 1, 3 of a 4-level grid
    assert DC.lattice_ok(sparse, 4)
    assert not DC.lattice_ok(torch.tensor([[0.0, 1.0, 2.0, 4.0]]), 4)  # spans 5 levels


def test_grid_report_finds_a_weight_off_its_grid():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    q = quantize_model(model, QuantConfig(bits=2, method="rtn"))
    rep = DC.grid_report(q, model, "rtn")
    assert (rep["layers"], rep["exact"], rep["off_grid"]) == (2, 2, [])
    with torch.no_grad():
        q[2].weight[0, 0] += 0.01234
    rep = DC.grid_report(q, model, "rtn")
    assert rep["off_grid"] == ["2"]


def test_exit_code_statuses_and_table():
    rows = [
        DC.row("2", "ratio", "1.5× (goal ≥ 3×)", "below goal"),
        DC.row("1", "a | b", "x", "ok"),
        DC.row("2c", "compile", "timed out", "warn"),
        DC.row("3", "k", "Traceback:\n  line 1", "info"),
    ]
    assert DC.exit_code(rows) == 0
    assert DC.exit_code(rows, strict=True) == 1
    assert DC.exit_code([*rows, DC.row("4", "OBC", "off grid", "FAIL")]) == 1
    table = DC.format_table(rows).splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["1", "2", "2c", "3"]
    assert "a / b" in table[2]  # a cell's '|' or newline cannot break the table
    assert len(table) == 2 + len(rows) and "Traceback: line 1" in table[-1]
    with pytest.raises(ValueError, match="status"):
        DC.row("1", "x", "y", "passed")


def test_a_part_past_its_limit_fails_and_an_optional_one_warns(tmp_path):
    # --budget-scale 0.001: part 3 gets 0.05 s, far less than starting Python takes
    code = DC.main(["--tiny", "--parts", "3", "--budget-scale", "0.001", "--out", str(tmp_path)])
    assert code == 1
    res = json.loads((tmp_path / "results.json").read_text())
    assert any(r["status"] == "FAIL" and "timed out" in r["value"] for r in res["rows"])
    code = DC.main(["--tiny", "--parts", "2c", "--budget-scale", "0.001", "--out", str(tmp_path)])
    assert code == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert any(r["status"] == "warn" and "timed out" in r["value"] for r in res["rows"])


def test_run_command_kills_at_the_limit(tmp_path):
    with open(tmp_path / "log", "w") as log:
        state, rc, wall = DC.run_command(
            [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1, log=log
        )
    assert (state, rc) == ("timeout", None) and wall < 30


def test_arguments_are_checked(tmp_path):
    with pytest.raises(SystemExit):
        DC.parse_args(["--parts", "9"])
    with pytest.raises(SystemExit):
        DC.parse_args(["--data-root", str(tmp_path / "missing")])
    assert DC.parse_args(["--parts", "4,1"]).part_list == ["1", "4"]
    if not torch.cuda.is_available():  # full sizes need a GPU: refused with exit status 2
        assert DC.main(["--parts", "2", "--out", str(tmp_path)]) == 2
