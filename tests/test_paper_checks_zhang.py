"""paper_checks/zhang2025.py on fabricated results: pass, fail and inconclusive cases of every
claim, strict and with CIs."""

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


def _results(tpr: dict, acc: dict, fp_ci=(0.05, 0.11), rel=0.2, reject=None) -> dict:
    """Fabricated results: ``tpr[key]`` pooled TPR@0.1% (both LiRA attacks), CI ± ``rel``;
    ``acc[key]`` per-target accuracies; the paired Δ of every quantized variant is
    ``tpr − tpr_fp`` with a CI ± 0.01, significant when the CI excludes 0 (or ``reject``)."""
    variants = [_variant(None, None)]
    for bits in (4, 2, 1.58, 1):
        for last in (None, 8):
            variants.append(_variant("adaround", bits, last))
    privacy, accuracy = {}, {}
    for v in variants:
        k = v["key"]
        e = tpr[k]
        low, high = fp_ci if k == "fp" else (e * (1 - rel), e * (1 + rel))
        r = {"pooled": {"tpr@0.001fpr": {"estimate": e, "low": low, "high": high}}}
        if k != "fp":
            d = e - tpr["fp"]
            rej = (abs(d) > 0.01) if reject is None else reject.get(k, abs(d) > 0.01)
            r["vs_fp"] = {"pooled": {"tpr@0.001fpr": {
                "estimate": d, "low": d - 0.01, "high": d + 0.01,
                "pvalue_holm": 0.001 if rej else 0.5, "reject": rej}}}  # fmt: skip
        privacy[k] = {"lira_online": r, "lira_offline": copy.deepcopy(r)}
        a = acc[k]
        m = sum(a) / len(a)
        accuracy[k] = {"per_target": a, "mean": m, "low": min(a) - 0.005, "high": max(a) + 0.005}
    return {
        "variants": variants,
        "privacy": privacy,
        "accuracy": accuracy,
        "attacks": ["lira_online", "lira_offline"],
        "attack_labels": {"lira_online": "LiRA online", "lira_offline": "LiRA offline"},
        "data": {"name": "fabricated", "n_classes": 10},
    }


GOOD_TPR = {
    "fp": 0.08, "adaround_4b": 0.06, "adaround_4b_last8": 0.075,
    "adaround_2b": 0.03, "adaround_2b_last8": 0.04,
    "adaround_1.58b": 0.004, "adaround_1.58b_last8": 0.01,
    "adaround_1b": 0.001, "adaround_1b_last8": 0.002,
}  # fmt: skip
GOOD_ACC = {
    "fp": [0.70, 0.71, 0.69], "adaround_4b": [0.70, 0.70, 0.69],
    "adaround_4b_last8": [0.70, 0.71, 0.69],
    "adaround_2b": [0.60, 0.59, 0.61], "adaround_2b_last8": [0.68, 0.69, 0.68],
    "adaround_1.58b": [0.45, 0.44, 0.46], "adaround_1.58b_last8": [0.64, 0.65, 0.66],
    "adaround_1b": [0.10, 0.11, 0.10], "adaround_1b_last8": [0.15, 0.16, 0.14],
}  # fmt: skip


def _status(rows, text, col="strict"):
    hits = [r[col] for r in rows if text in r["claim"]]
    assert hits, f"no row matches {text!r}"
    return hits


def _online(rows, text, col="strict"):
    return _status([r for r in rows if "offline" not in r["claim"]], text, col)


def test_row_shape_and_count(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    for r in rows:
        assert set(r) == {"claim", "paper", "ours", "strict", "ci"}
    # 1 method: 4-bit, 1.58 cut (online, offline), order, 2 x (recover, keep) x 2 bits,
    # 1-bit at chance, 1.58 > 1, context
    assert len(rows) == 1 + 2 + 1 + 4 + 1 + 1 + 1
    assert rows[-1]["strict"] == rows[-1]["ci"] == "n/a"


def test_paper_column_quotes_the_reference(zc):
    ref = zc.load_reference()
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC), ref)
    text = " ".join(r["paper"] for r in rows)
    assert "0.0790" in text and "0.0776" in text  # §IV-B, 4-bit vs FP on CIFAR-10
    assert "0.0031 < 0.2196 < FP 0.3765" in text  # §IV-B, CIFAR-100 AdaRound online
    assert "-99.2 %" in text and "-99.4 %" in text and "0.0013" in text
    assert "26 → 5.6" in text and "11 → 1.9" in text  # §IV-C decoupling
    assert "62.35" in text and "70.22" in text and "1.00 % (chance 1.00 %" in text  # Table I
    for key, entry in ref.items():
        if isinstance(entry, dict):
            assert "provenance" in entry, key


def test_four_bit(zc):
    # 0.06 lies in the FP CI [0.05, 0.11] but the paired Δ -0.02 is significant
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    assert _status(rows, "4-bit keeps") == ["pass"]
    assert _status(rows, "4-bit keeps", "ci") == ["FAIL"]
    tpr = dict(GOOD_TPR, adaround_4b=0.081)
    rows = zc.check(_results(tpr, GOOD_ACC))
    assert _status(rows, "4-bit keeps") == ["pass"] and _status(rows, "4-bit keeps", "ci") == [
        "pass"
    ]
    assert _status(zc.check(_results(dict(GOOD_TPR, adaround_4b=0.2), GOOD_ACC)),
                   "4-bit keeps") == ["FAIL"]  # fmt: skip


def test_ninety_percent_cut(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))  # 0.004 vs 0.08: -95 %
    assert _status(rows, "cuts TPR") == ["pass", "pass"]  # online, offline
    # CI: upper 0.0048 <= 0.1 x 0.05 = 0.005
    assert _status(rows, "cuts TPR", "ci") == ["pass", "pass"]
    tpr = dict(GOOD_TPR, **{"adaround_1.58b": 0.007})  # -91 %, CI up to 0.0084 > 0.005
    rows = zc.check(_results(tpr, GOOD_ACC))
    assert _status(rows, "cuts TPR") == ["pass", "pass"]
    assert _status(rows, "cuts TPR", "ci") == ["inconclusive", "inconclusive"]
    tpr = dict(GOOD_TPR, **{"adaround_1.58b": 0.03})  # -62 %, CI from 0.024 > 0.011
    rows = zc.check(_results(tpr, GOOD_ACC))
    assert _status(rows, "cuts TPR") == ["FAIL", "FAIL"]
    assert _status(rows, "cuts TPR", "ci") == ["FAIL", "FAIL"]


def test_order(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    assert _status(rows, "1.58-bit < 2-bit < 4-bit") == ["pass"]
    assert _status(rows, "1.58-bit < 2-bit < 4-bit", "ci") == ["pass"]
    # 4-bit at the FP leak (Δ not significant): strict fails (0.081 > 0.08), CIs inconclusive
    rows = zc.check(_results(dict(GOOD_TPR, adaround_4b=0.081), GOOD_ACC))
    assert _status(rows, "1.58-bit < 2-bit < 4-bit") == ["FAIL"]
    assert _status(rows, "1.58-bit < 2-bit < 4-bit", "ci") == ["inconclusive"]
    # 1.58-bit clearly above 2-bit: a separated reversed step
    rows = zc.check(_results(dict(GOOD_TPR, **{"adaround_1.58b": 0.05}), GOOD_ACC))
    assert _status(rows, "1.58-bit < 2-bit < 4-bit") == ["FAIL"]
    assert _status(rows, "1.58-bit < 2-bit < 4-bit", "ci") == ["FAIL"]


def test_order_and_cut_are_na_without_a_leak(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC, fp_ci=(0.0, 0.004)))
    assert _status(rows, "1.58-bit < 2-bit") == ["n/a"]
    assert _status(rows, "cuts TPR") == ["n/a", "n/a"]
    assert _status(rows, "keeps at least half") == ["n/a", "n/a"]
    assert all("not above chance" in r["ours"] for r in rows if "cuts TPR" in r["claim"])


def test_decoupled_accuracy(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    assert _status(rows, "recovers accuracy") == ["pass", "pass"]
    assert _status(rows, "recovers accuracy", "ci") == ["pass", "pass"]
    acc = dict(GOOD_ACC, **{"adaround_1.58b_last8": [0.46, 0.45, 0.47]})
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "1.58-bit: 8-bit last layer recovers") == ["FAIL"]
    assert _status(rows, "1.58-bit: 8-bit last layer recovers", "ci") == ["FAIL"]
    assert _status(rows, "2-bit: 8-bit last layer recovers") == ["pass"]
    # recovered just half on average but noisy across targets: inconclusive with CIs
    acc = dict(GOOD_ACC, **{"adaround_1.58b_last8": [0.50, 0.62, 0.60]})
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "1.58-bit: 8-bit last layer recovers", "ci") == ["inconclusive"]


def test_decoupled_accuracy_na_cases(zc):
    acc = dict(GOOD_ACC, adaround_2b=[0.70, 0.71, 0.69], adaround_2b_last8=[0.70, 0.71, 0.69])
    assert _status(zc.check(_results(GOOD_TPR, acc)), "2-bit: 8-bit last layer recovers") == ["n/a"]
    res = _results(GOOD_TPR, dict(GOOD_ACC, adaround_2b_last8=GOOD_ACC["adaround_2b"]))
    for v in res["variants"]:
        v["bits_per_parameter"] = 2.12 if v["key"].startswith("adaround_2b") else 4.0
    rows = zc.check(res)
    assert _status(rows, "2-bit: 8-bit last layer recovers") == ["n/a"]
    assert any("no-op" in r["ours"] for r in rows)


def test_decoupled_privacy_gain_kept(zc):
    # 1.58: gain 0.076 plain, 0.07 decoupled (Δ -0.07 ± 0.01 < -0.038): pass both ways
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))
    assert _status(rows, "keeps at least half") == ["pass", "pass"]
    assert _status(rows, "keeps at least half", "ci") == ["pass", "pass"]
    # decoupled 1.58 back at 0.07: gain 0.01 < half of 0.076; Δ -0.01 ± 0.01 above -0.038
    rows = zc.check(_results(dict(GOOD_TPR, **{"adaround_1.58b_last8": 0.07}), GOOD_ACC))
    assert _status(rows, "1.58-bit: 8-bit last layer keeps") == ["FAIL"]
    assert _status(rows, "1.58-bit: 8-bit last layer keeps", "ci") == ["FAIL"]
    # 2-bit: gain 0.05 plain; decoupled gain 0.026 >= 0.025, but its Δ CI [-0.036, -0.016]
    # straddles -0.025: inconclusive
    rows = zc.check(_results(dict(GOOD_TPR, adaround_2b_last8=0.054), GOOD_ACC))
    assert _status(rows, "2-bit: 8-bit last layer keeps") == ["pass"]
    assert _status(rows, "2-bit: 8-bit last layer keeps", "ci") == ["inconclusive"]
    # a plain variant that gains nothing: n/a
    rows = zc.check(_results(dict(GOOD_TPR, adaround_2b=0.09), GOOD_ACC))
    assert _status(rows, "2-bit: 8-bit last layer keeps") == ["n/a"]


def test_one_bit_at_chance(zc):
    rows = zc.check(_results(GOOD_TPR, GOOD_ACC))  # 10.3 % vs chance 10 % (+5 points)
    assert _status(rows, "near chance") == ["pass"]
    assert _status(rows, "near chance", "ci") == ["pass"]
    acc = dict(GOOD_ACC, adaround_1b=[0.40, 0.42, 0.41])
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "near chance") == ["FAIL"] and _status(rows, "near chance", "ci") == [
        "FAIL"
    ]
    acc = dict(GOOD_ACC, adaround_1b=[0.14, 0.15, 0.16])  # mean 15 % = the limit; CI straddles
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "near chance", "ci") == ["inconclusive"]


def test_sign_beating_ternary_fails(zc):
    assert _status(zc.check(_results(GOOD_TPR, GOOD_ACC)), "above sign", "ci") == ["pass"]
    acc = dict(GOOD_ACC, adaround_1b=[0.50, 0.40, 0.48])  # not consistently below 1.58-bit
    rows = zc.check(_results(GOOD_TPR, acc))
    assert _status(rows, "above sign") == ["FAIL"]
    assert _status(rows, "above sign", "ci") == ["inconclusive"]


def test_missing_values_are_na(zc):
    res = copy.deepcopy(_results(GOOD_TPR, GOOD_ACC))
    res["privacy"]["adaround_4b"]["lira_online"]["pooled"]["tpr@0.001fpr"]["estimate"] = None
    del res["privacy"]["adaround_4b"]["lira_online"]["vs_fp"]
    res["variants"] = [v for v in res["variants"] if v["key"] != "adaround_2b"]
    rows = zc.check(res)
    assert _status(rows, "4-bit keeps") == ["n/a"] and _status(rows, "4-bit keeps", "ci") == ["n/a"]
    assert _status(rows, "1.58-bit < 2-bit") == ["n/a"]
    assert _status(rows, "2-bit: 8-bit last layer recovers") == ["n/a"]


def test_main_prints_table_and_exit_status(zc, tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    res = _results(dict(GOOD_TPR, adaround_4b=0.081), GOOD_ACC)
    (good / "results.json").write_text(json.dumps(res))
    assert zc.main([str(good)]) == 1  # the order claim fails strictly (0.081 > 0.08)
    out = capsys.readouterr().out
    assert "| claim | paper | ours | strict | with CIs |" in out
    assert "strict: " in out and "with CIs: " in out and "inconclusive" in out
    ok = tmp_path / "ok"
    ok.mkdir()
    rows_ok = _results(GOOD_TPR, GOOD_ACC, reject={"adaround_4b": False})
    (ok / "results.json").write_text(json.dumps(rows_ok))
    assert zc.main([str(ok)]) == 0
    assert "0 FAIL" in capsys.readouterr().out
    assert zc.main([str(tmp_path / "nothing")]) == 2
    assert zc.main([str(ok), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 11
