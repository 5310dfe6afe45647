"""paper_checks/aubinais2025_molecular.py on fabricated results (the checker, not the paper)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "aubinais2025_molecular_check", ROOT / "paper_checks" / "aubinais2025_molecular.py"
)
checker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checker)
REFERENCE = json.loads(checker.REFERENCE.read_text())
QUANTIZERS = ["sign", "ternary-33", "ternary-50", "ternary-90", "2bit", "3bit", "4bit", "5bit"]
ORDER = ["ternary-90", "ternary-50", "ternary-33", "sign", "2bit", "3bit", "4bit", "5bit"]


def _metric(values: dict) -> dict:
    base = values["original"]
    return {q: {"mean": v, "relative": v / base} for q, v in values.items()}


def fabricated() -> dict:
    r2 = dict(zip(QUANTIZERS, [-50.0, -20.0, -10.0, -5.0, -0.4, 0.4, 0.65, 0.7], strict=True))
    sp = dict(zip(QUANTIZERS, [0.88, 0.9, 0.9, 0.85, 0.9, 0.91, 0.91, 0.92], strict=True))
    auc = dict(zip(QUANTIZERS, [0.8, 0.8, 0.81, 0.82, 0.9, 0.91, 0.92, 0.92], strict=True))
    reg = lambda name: {  # noqa: E731
        "task": name,
        "kind": "regression",
        "rq": {"order": list(ORDER)},
        "metrics": {
            "r2": _metric({**r2, "original": 0.72}),
            "spearman": _metric({**sp, "original": 0.92}),
        },
    }
    cls = {
        "task": "solubility-low",
        "kind": "classification",
        "rq": {"order": list(ORDER)},
        "metrics": {"auroc": _metric({**auc, "original": 0.93})},
    }
    return {
        "quantizers": QUANTIZERS,
        "labels": {},
        "tasks": [reg("freesolv"), reg("solubility"), cls],
    }


def _verdicts(results):
    return {
        r["claim"]: r["pass"] for r in checker.check(results, REFERENCE) if r["pass"] is not None
    }


def test_paper_like_results_pass_every_claim():
    verdicts = _verdicts(fabricated())
    assert len(verdicts) == 7 and all(verdicts.values())
    info = [r for r in checker.check(fabricated(), REFERENCE) if r["pass"] is None]
    assert len(info) == 4  # R2 and Spearman next to Tables 4-5 for both tasks
    assert info[0]["paper"].startswith("< -1 / ")


def test_each_claim_can_fail():
    res = fabricated()
    res["tasks"][0]["metrics"]["r2"]["2bit"]["mean"] = 0.3  # 2 bits no longer negative
    assert not _verdicts(res)["R² of Sign, 1.58b and 2 bits negative (regression)"]

    res = fabricated()
    res["tasks"][1]["metrics"]["r2"]["5bit"]["relative"] = 0.5
    assert not _verdicts(res)["5 bits keeps >= 85% of the original R²"]

    res = fabricated()
    res["tasks"][1]["metrics"]["spearman"]["sign"]["relative"] = 0.6
    v = _verdicts(res)
    assert not next(ok for claim, ok in v.items() if claim.startswith("Spearman"))

    res = fabricated()
    res["tasks"][2]["rq"]["order"] = list(reversed(ORDER))
    v = _verdicts(res)
    assert not v["a sparse ternary quantizer ranked most private by r_Q"]
    assert not v["one of 2-5 bits ranked least private by r_Q"]

    res = copy.deepcopy(fabricated())
    res["tasks"][2]["metrics"]["auroc"]["sign"]["relative"] = 5.0
    assert not _verdicts(res)[
        "mean relative AUROC of 2-5 bits above Sign and 1.58b (classification)"
    ]


def test_missing_kinds_are_not_a_pass():
    res = fabricated()
    res["tasks"] = [t for t in res["tasks"] if t["kind"] == "regression"]
    assert not _verdicts(res)[
        "mean relative AUROC of 2-5 bits above Sign and 1.58b (classification)"
    ]
