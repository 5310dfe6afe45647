"""paper_checks/zhang2025.py on fabricated results (pass and fail cases of every claim)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zc():
    spec = importlib.util.spec_from_file_location("zhang2025", ROOT / "paper_checks/zhang2025.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _variant(method, bits, last=None):
    if method is None:
        return {"key": "fp", "method": None, "bits": None, "last_layer_bits": None,
                "bits_label": "32", "label": "full precision"}  # fmt: skip
    b = "1.58" if bits == 1.58 else str(bits)
    key = f"{method}_{b}b" + ("_last8" if last else "")
    return {"key": key, "method": method, "bits": bits, "last_layer_bits": last,
            "bits_label": b, "label": key}  # fmt: skip


def _results(tpr: dict, acc: dict, fp_ci=(0.05, 0.11)) -> dict:
    """Fabricated results: ``tpr[key]`` pooled online TPR@0.1%, ``acc[key]`` per-target accs."""
    variants = [_variant(None, None)]
    for bits in (4, 2, 1.58, 1):
        for last in (None, 8):
            variants.append(_variant("adaround", bits, last))
    privacy, accuracy = {}, {}
    for v in variants:
        k = v["key"]
        e = tpr[k]
        low, high = fp_ci if k == "fp" else (e * 0.8, e * 1.2)
        pooled = {"tpr@0.001fpr": {"estimate": e, "low": low, "high": high}}
        privacy[k] = {"lira_online": {"pooled": pooled}, "lira_offline": {"pooled": pooled}}
        a = acc[k]
        accuracy[k] = {"per_target": a, "mean": sum(a) / len(a)}
    return {
        "variants": variants,
        "privacy": privacy,
        "accuracy": accuracy,
        "attacks": ["lira_online", "lira_offline"],
        "attack_labels": {"lira_online": "LiRA online", "lira_offline": "LiRA offline"},
        "data": {"name": "fabricated"},
    }


GOOD_TPR = {
    "fp": 0.08, "adaround_4b": 0.079, "adaround_4b_last8": 0.08,
    "adaround_2b": 0.03, "adaround_2b_last8": 0.05,
    "adaround_1.58b": 0.004, "adaround_1.58b_last8": 0.01,
    "adaround_1b": 0.001, "adaround_1b_last8": 0.002,
}  # fmt: skip
GOOD_ACC = {
    "fp": [0.70, 0.71, 0.69], "adaround_4b": [0.70, 0.70, 0.69],
    "adaround_4b_last8": [0.70, 0.71, 0.69],
    "adaround_2b": [0.60, 0.59, 0.61], "adaround_2b_last8": [0.68, 0.69, 0.68],
    "adaround_1.58b": [0.45, 0.44, 0.46], "adaround_1.58b_last8": [0.64, 0.65, 0.66],
    "adaround_1b": [0.01, 0.01, 0.01], "adaround_1b_last8": [0.05, 0.06, 0.04],
}  # fmt: skip


def _status(rows, text):
    hits = [r["pass"] for r in rows if text in r["claim"]]
    assert hits, f"no row matches {text!r}"
    return hits


def test_all_claims_pass(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    assert [r["pass"] for r in rows[:-1]] == ["pass"] * 5
    assert rows[-1]["pass"] == "n/a"  # the context row
    for r in rows:
        assert set(r) == {"claim", "paper", "ours", "pass"}


def test_paper_column_quotes_the_reference(zc):
    ref = zc.load_reference()
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC), ref)
    text = " ".join(r["paper"] for r in rows)
    assert "0.0790" in text and "0.0776" in text  # §IV-B, 4-bit vs FP on CIFAR-10
    assert "0.0031 < 0.2196 < 0.3765" in text  # §IV-B, CIFAR-100 AdaRound online
    assert "26 → 5.6" in text and "11 → 1.9" in text  # §IV-C decoupling
    assert "62.35" in text and "70.22" in text  # Table I
    assert ref["table1_cifar100_accuracy"]["1"]["brecq"] == 0.99
    for key, entry in ref.items():
        if isinstance(entry, dict):
            assert "provenance" in entry, key


def test_four_bit_outside_ci_fails(zc):
    tpr = dict(GOOD_TPR, adaround_4b=0.2)  # far above the FP CI [0.05, 0.11]
    assert _status(zc.check(_results(tpr, GOOD_ACC)), "4-bit TPR") == ["FAIL"]


def test_order_violation_fails(zc):
    tpr = dict(GOOD_TPR, **{"adaround_1.58b": 0.05})  # 1.58-bit above 2-bit
    assert _status(zc.check(_results(tpr, GOOD_ACC)), "1.58-bit < 2-bit") == ["FAIL"]
    tpr = dict(GOOD_TPR, adaround_2b=0.09)  # 2-bit above full precision
    assert _status(zc.check(_results(tpr, GOOD_ACC)), "1.58-bit < 2-bit") == ["FAIL"]


def test_order_is_na_without_a_leak(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC, fp_ci=(0.0, 0.004)))
    assert _status(rows, "1.58-bit < 2-bit") == ["n/a"]


def test_decoupling_that_does_not_recover_fails(zc):
    acc = dict(GOOD_ACC, **{"adaround_1.58b_last8": [0.46, 0.45, 0.47]})
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "1.58-bit: 8-bit last layer") == ["FAIL"]
    assert _status(rows, "2-bit: 8-bit last layer") == ["pass"]


def test_decoupling_is_na_without_a_drop(zc):
    acc = dict(GOOD_ACC, adaround_2b=[0.70, 0.71, 0.69], adaround_2b_last8=[0.70, 0.71, 0.69])
    assert _status(zc.check(_results(GOOD_TPR, acc)), "2-bit: 8-bit last layer") == ["n/a"]


def test_sign_beating_ternary_fails(zc):
    acc = dict(GOOD_ACC, adaround_1b=[0.50, 0.40, 0.48])  # not consistently below 1.58-bit
    assert _status(zc.check(_results(GOOD_TPR, acc)), "above sign") == ["FAIL"]


def test_missing_values_are_na(zc):
    res = _results(GOOD_TPR, GOOD_ACC)
    res = copy.deepcopy(res)
    res["privacy"]["adaround_4b"]["lira_online"]["pooled"]["tpr@0.001fpr"]["estimate"] = None
    res["variants"] = [v for v in res["variants"] if v["key"] != "adaround_2b"]
    rows = zc.check(res)
    assert _status(rows, "4-bit TPR") == ["n/a"]
    assert _status(rows, "1.58-bit < 2-bit") == ["n/a"]
    assert _status(rows, "2-bit: 8-bit last layer") == ["n/a"]


def test_main_prints_table_and_exit_status(zc, tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    (good / "results.json").write_text(json.dumps(_results(GOOD_TPR, GOOD_ACC)))
    assert zc.main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "| claim | paper | ours | pass |" in out and "5 pass, 0 fail" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    res = _results(dict(GOOD_TPR, adaround_4b=0.5), GOOD_ACC)
    (bad / "results.json").write_text(json.dumps(res))
    assert zc.main([str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert zc.main([str(tmp_path / "nothing")]) == 2
    assert zc.main([str(good), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6


def test_decoupling_that_changes_nothing_is_na(zc):
    res = _results(GOOD_TPR, dict(GOOD_ACC, adaround_2b_last8=GOOD_ACC["adaround_2b"]))
    for v in res["variants"]:
        v["bits_per_parameter"] = 2.12 if v["key"].startswith("adaround_2b") else 4.0
    rows = zc.check(res)
    assert _status(rows, "2-bit: 8-bit last layer") == ["n/a"]
    assert any("no-op" in r["ours"] for r in rows)
