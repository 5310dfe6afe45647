"""paper_checks/aubinais2025.py on fabricated results (the checker, not the paper)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "aubinais2025_check", ROOT / "paper_checks" / "aubinais2025.py"
)
checker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checker)

REFERENCE = json.loads((ROOT / "paper_checks" / "aubinais2025_reference.json").read_text())
QUANTIZERS = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit", "4bit", "5bit"]
ORDER = ["ternary-90", "ternary-50", "ternary-33", "sign", "2bit", "3bit", "4bit", "5bit"]


GROUPS = [["ternary-90"], ["ternary-50", "ternary-33", "sign"], ["2bit"], ["3bit", "4bit", "5bit"]]


def fabricated(rho=0.9, stab20=0.97, acc_shift=0.0, pooled20=0.97) -> dict:
    settings = []
    originals = REFERENCE["claims"]["original_accuracy"]["values"]
    for sigma in (1.5, 2.0, 3.0):
        for k in (6, 8, 16):
            key = f"k{k}-s{sigma:g}"
            settings.append(
                {
                    "key": key,
                    "k_modes": k,
                    "sigma": sigma,
                    "n_runs": 300,
                    "rq": {"order": list(ORDER), "tie_groups": copy.deepcopy(GROUPS)},
                    "agreement": {
                        "spearman": {"estimate": rho, "low": rho - 0.1, "high": 1.0},
                        "spearman_pvalue": 0.001,
                    },
                    "stability": {
                        "k_runs": [5, 20, 100],
                        "spearman_mean": [0.8, stab20, 0.99],
                        "spearman_disjoint_mean": [0.7, stab20 - 0.05, 0.9],
                    },
                    "accuracy": {"test": {"original": originals[key] + acc_shift}},
                }
            )
    summary = {
        "mean_spearman_ci": {"low": rho - 0.1, "high": min(1.0, rho + 0.05)},
        "stability_pooled": {
            "k_runs": [5, 20, 100],
            "spearman_mean": [0.9, pooled20, 0.99],
            "spearman_ci": [[0.85, 0.95], [pooled20 - 0.02, 0.99], [0.98, 1.0]],
            "spearman_disjoint_mean": [0.8, 0.9, 0.95],
        },
    }
    return {
        "settings": settings,
        "summary": summary,
        "labels": {"5bit": "5 bits", "ternary-90": "1.58b 90%"},
    }


def run_main(tmp_path, results, capsys, *extra):
    (tmp_path / "results.json").write_text(json.dumps(results))
    code = checker.main([str(tmp_path), *extra])
    return code, capsys.readouterr().out


def _top_rows(rows):
    return [r for r in rows if not r["claim"].startswith(" ")]


def test_reference_numbers_are_table2_originals():
    v = REFERENCE["claims"]["original_accuracy"]["values"]
    assert v == {
        "k6-s1.5": 0.996, "k8-s1.5": 0.981, "k16-s1.5": 0.925,
        "k6-s2": 0.950, "k8-s2": 0.897, "k16-s2": 0.798,
        "k6-s3": 0.767, "k8-s3": 0.706, "k16-s3": 0.628,
    }  # fmt: skip
    rows = REFERENCE["table2_quantized"]["rows"]
    assert all(rows[k][-1] == v[k] for k in v)  # last column = original
    per = REFERENCE["claims"]["mean_spearman_rq_mis"]["per_setting"]
    assert sum(per.values()) / len(per) == pytest.approx(0.86, abs=0.005)


def test_all_claims_pass(tmp_path, capsys):
    code, out = run_main(tmp_path, fabricated(), capsys)
    assert code == 0
    assert out.startswith("| claim | paper | ours | pass |")
    assert "NO" not in out
    rows = checker.check(fabricated(), REFERENCE)
    assert all(r["pass"] for r in _top_rows(rows))
    assert len(_top_rows(rows)) == 9  # 2 x 2 ranking claims, 2 Spearman, 2 stability, accuracy
    assert sum("(tie-aware)" in r["claim"] for r in rows) == 2


def test_each_claim_can_fail(tmp_path, capsys):
    base = fabricated()
    cases = {}
    r = copy.deepcopy(base)  # 4 bits last, but 5 bits still in the least-private group
    r["settings"][4]["rq"]["order"] = [*ORDER[:-2], "5bit", "4bit"]
    cases["5 bits ranked least private by r_Q in every setting (strict)"] = r
    r = copy.deepcopy(r)  # and now 5 bits separated from the least-private group
    r["settings"][4]["rq"]["tie_groups"] = [*GROUPS[:-1], ["3bit", "5bit"], ["4bit"]]
    cases["5 bits in the least-private tie group"] = r
    r = copy.deepcopy(base)
    r["settings"][0]["rq"]["order"] = ["ternary-50", "ternary-90", *ORDER[2:]]
    r["settings"][0]["rq"]["tie_groups"][:2] = [["ternary-90", "ternary-50"], GROUPS[1][1:]]
    cases["1.58b 90% ranked most private by r_Q in every setting (strict)"] = r
    cases["mean Spearman(r_Q, MIS) over the settings >= 0.8"] = fabricated(rho=0.79)
    cases["the paper's mean Spearman is in our interval"] = fabricated(rho=0.7)
    cases["mean Spearman vs all runs >= 0.95 (per setting"] = fabricated(stab20=0.94)
    cases["(pooled over settings)"] = fabricated(pooled20=0.94)
    cases["original-model accuracies"] = fabricated(acc_shift=-0.031)
    for claim, results in cases.items():
        rows = _top_rows(checker.check(results, REFERENCE))
        failed = [row["claim"] for row in rows if not row["pass"]]
        assert any(claim in f for f in failed), (claim, failed)
        code, out = run_main(tmp_path, results, capsys)
        assert code == 1 and "NO" in out
    # the strict miss alone leaves the tie-aware claim passing, and vice versa for the group
    rows = _top_rows(
        checker.check(
            cases["5 bits ranked least private by r_Q in every setting (strict)"], REFERENCE
        )
    )
    assert [r["claim"] for r in rows if not r["pass"]] == [
        "5 bits ranked least private by r_Q in every setting (strict)"
    ]
    # Spearman 0.7: fails strict; interval [0.6, 0.75] excludes 0.86: fails with CI
    rows = _top_rows(checker.check(fabricated(rho=0.7), REFERENCE))
    assert sum(not r["pass"] for r in rows) == 2


def test_failure_details_are_shown():
    r = fabricated(acc_shift=0.05)
    r["settings"][4]["rq"]["order"] = [*ORDER[:-2], "5bit", "4bit"]
    rows = checker.check(r, REFERENCE)
    least = rows[0]
    assert least["ours"] == "8/9 settings (k8-s2: 4bit)"
    assert rows[1]["ours"].startswith("9/9 settings (group sizes 3)") and rows[1]["pass"]
    acc = next(x for x in rows if x["claim"] == "  original accuracy k8-s2")
    assert acc["ours"] == "0.947 (diff +0.050)" and acc["pass"] is False


def test_missing_inputs_do_not_pass(tmp_path, capsys):
    r = fabricated()
    for s in r["settings"]:
        s["agreement"] = None
        s["stability"] = None
    r["settings"] = r["settings"][:1]  # a one-setting study (like `mis demo`)
    r["summary"] = {}
    rows = _top_rows(checker.check(r, REFERENCE))
    by = {row["claim"].split(" ")[0]: row for row in rows}
    assert by["mean"]["ours"].startswith("n/a") and by["mean"]["pass"] is False
    assert by["the"]["ours"].startswith("n/a") and by["the"]["pass"] is False
    assert by["rankings"]["pass"] is False
    assert by["original-model"]["pass"] is False  # 8 settings missing
    code, _ = run_main(tmp_path, r, capsys)
    assert code == 1


def test_unreadable_input(tmp_path, capsys):
    assert checker.main([str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_json_output(tmp_path, capsys):
    code, out = run_main(tmp_path, fabricated(), capsys, "--json")
    rows = json.loads(out)
    assert code == 0 and {"claim", "paper", "ours", "pass"} <= set(rows[0])
