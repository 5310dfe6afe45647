"""Commands on arrays a user already has: mis roc (csv/txt, --compare, --groups, --plot),
mis rank (losses, r_Q tables, run stores) and mis lira (reference layout, run store)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from mis import cli
from mis.store import RunStore
from mis.train import RQRecorder, keep_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scores_csv(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    fp = rng.normal(size=n) + y
    quant = 0.4 * fp + rng.normal(size=n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fp", "quantized", "member", "target"])
        w.writerows(zip(fp, quant, y, np.arange(n) % 7, strict=True))
    return fp, quant, y


def test_roc_reads_csv_columns_and_compares(tmp_path, capsys):
    _scores_csv(tmp_path / "s.csv")
    s = str(tmp_path / "s.csv")
    argv = ["roc", f"{s}:fp", f"{s}:member", "--compare", f"{s}:quantized"]
    argv += ["--groups", f"{s}:target", "--resamples", "200"]
    argv += ["--plot", str(tmp_path / "roc.png"), "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    diff = out["difference"]["auc"]
    assert diff["estimate"] < 0 and diff["high"] < 0 and diff["pvalue"] < 0.05
    assert set(out) == {"s.csv:fp", "s.csv:quantized", "difference"}
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["roc", f"{s}:fp", f"{s}:member", "--compare", f"{s}:quantized"]) == 0
    assert "s.csv:quantized − s.csv:fp" in capsys.readouterr().out


def test_roc_text_files_and_clean_errors(tmp_path, capsys):
    fp, _, y = _scores_csv(tmp_path / "s.csv")
    np.savetxt(tmp_path / "scores.txt", fp)
    np.savetxt(tmp_path / "labels.txt", y, fmt="%d")
    assert cli.main(["roc", str(tmp_path / "scores.txt"), str(tmp_path / "labels.txt")]) == 0
    capsys.readouterr()
    cases = [
        (["roc", str(tmp_path / "s.csv"), str(tmp_path / "labels.txt")], "choose one"),
        (["roc", f"{tmp_path}/s.csv:nope", str(tmp_path / "labels.txt")], "no column 'nope'"),
        (
            [
                "roc",
                str(tmp_path / "scores.txt"),
                str(tmp_path / "labels.txt"),
                "--compare",
                str(tmp_path / "labels.txt") + "x",
            ],
            "does not exist",
        ),
    ]
    for argv, match in cases:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and err.count("\n") == 1


def _recorded_store(path, runs=4):
    xv = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    yv = (xv[:, 0] > 0).long()
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0).long()
    for run in range(runs):
        torch.manual_seed(run)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        rec = RQRecorder(["sign", "ternary-50", "4bit"], xv, yv)
        for _ in range(12):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            rec.record(model)
        rec.save(RunStore(path), run=run)


@pytest.mark.filterwarnings("ignore::mis.exceptions.DegenerateStatisticWarning")
def test_rank_from_a_run_store_losses_and_a_table(tmp_path, capsys):
    _recorded_store(tmp_path / "rq")
    assert cli.main(["rank", str(tmp_path / "rq"), "--out", str(tmp_path / "a"),
                     "--resamples", "200"]) == 0  # fmt: skip
    assert "tie groups, most private first" in capsys.readouterr().out
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["quantizers"] == ["sign", "ternary-50", "4bit"] and res["n_runs"] == 4
    for name in ("report.md", "rq.csv", "ranking.csv", "ranking.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert (
        (tmp_path / "a" / "report.md")
        .read_text()
        .startswith("# Quantizers ranked by r_Q\n\n## Verdict")
    )
    # the same values as a table of r_Q, and as validation losses with hashes
    rq = np.array(res["per_run"])
    header = ",".join(res["quantizers"])
    np.savetxt(tmp_path / "rq.csv", rq, delimiter=",", header=header, comments="")
    assert cli.main(["rank", str(tmp_path / "rq.csv"), "--out", str(tmp_path / "b"),
                     "--resamples", "200"]) == 0  # fmt: skip
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert again["rq"] == res["rq"]
    store = RunStore(tmp_path / "rq", create=False)
    vl = np.stack([np.asarray(store.load(f"rq/run{r:06d}/val_losses")) for r in range(4)])
    qh = np.stack([np.asarray(store.load(f"rq/run{r:06d}/qhash")) for r in range(4)])
    np.save(tmp_path / "vl.npy", vl)
    np.save(tmp_path / "qh.npy", qh)
    argv = ["rank", str(tmp_path / "vl.npy"), "--qhash", str(tmp_path / "qh.npy")]
    argv += ["--names", "sign", "ternary-50", "4bit", "--out", str(tmp_path / "c")]
    argv += ["--resamples", "200"]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "c" / "results.json").read_text())["rq"] == res["rq"]
    capsys.readouterr()
    assert cli.main(["rank", str(tmp_path / "vl.npy"), "--names", "a", "--out", "x"]) == 2
    assert "--names must name the 3 quantizers" in capsys.readouterr().err


def _reference_layout(root, models=12, n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    np.save(root / "y_train.npy", y)
    keep = keep_masks(models, n, 0.5, rng=seed)
    for i in range(models):
        d = root / f"experiment-{i}_{models}" / "logits"
        os.makedirs(d)
        np.save(d.parent / "keep.npy", keep[i])
        logits = rng.normal(size=(n, 1, 2, 10)).astype(np.float32)
        logits[np.arange(n), 0, :, y] += 1.0 + 3.0 * keep[i][:, None]
        np.save(d / "0000000010.npy", logits)


@pytest.mark.filterwarnings("ignore::mis.exceptions.UndefinedMetricWarning")
def test_lira_on_a_reference_layout_and_on_a_run_store(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    _reference_layout(tmp_path / "ref")
    argv = ["lira", str(tmp_path / "ref"), "--out", str(tmp_path / "out"), "--resamples", "100"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "LiRA online" in printed and "LiRA offline" in printed
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# LiRA on every model as the target\n\n## Verdict")
    assert "The models leak membership" in report
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["n_models"] == 12 and len(res["modes"]["online"]["per_target"]) == 12
    # the imported run store is itself a valid source
    argv = ["lira", str(tmp_path / "out" / "store"), "--out", str(tmp_path / "o2"),
            "--resamples", "100"]  # fmt: skip
    assert cli.main(argv) == 0
    again = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert again["modes"]["online"]["pooled"] == res["modes"]["online"]["pooled"]
    capsys.readouterr()
    assert cli.main(["lira", str(tmp_path / "o2"), "--out", str(tmp_path / "o3")]) == 2
    assert "neither a run store" in capsys.readouterr().err
    assert cli.main(["lira", str(tmp_path / "nothing"), "--out", str(tmp_path / "o4")]) == 2
    assert "is not a directory" in capsys.readouterr().err
