"""The verdict that opens an audit's report.md (mis.studies.audit.analysis.verdict), on
fabricated results: a significant reduction, no reduction, no leak at all; the Pareto front;
the report written from such results."""

from __future__ import annotations

import json

import pytest

from mis.studies.audit import default_config
from mis.studies.audit.analysis import pareto_front, verdict
from mis.studies.audit.report import summary_markdown, verdict_markdown, write_report

METRICS = ["tpr@0.001fpr", "tpr@0.01fpr", "auc", "log_auc"]
ATTACKS = ["lira_online", "lira_offline"]
N_T = 4  # targets


def _iv(e, lo=None, hi=None):
    return {"estimate": e, "low": e if lo is None else lo, "high": e if hi is None else hi}


def _t(mean, half=0.002):
    return {"mean": mean, "sd": half, "low": mean - half, "high": mean + half, "n": N_T}


def fabricate(fp_tpr, spec, fp_acc=0.85):
    """A results dict as ``run_audit`` returns it, with chosen numbers.

    ``fp_tpr`` = (estimate, low, high) of the full-precision pooled TPR@0.1% (every attack);
    ``spec[key] = (accuracy drop, tpr, (Δ, Δ low, Δ high), holm p)`` for the quantized
    variants of the config below (methods rtn, gptq; bits 4, 1.58; decoupled 8-bit).
    """
    cfg = default_config().replace(
        study={"name": "fabricated", "shadows": 8, "targets": N_T},
        quant={"methods": ["rtn", "gptq"], "bits": [4, 1.58], "decoupled_last_layer_bits": 8},
        attack={"attacks": ATTACKS},
    )
    variants, accuracy, privacy = [], {}, {}
    band = {"fpr": [1e-4, 1e-3, 1e-2, 0.1, 0.99]}
    for v in cfg.variants():
        d = v.as_dict()
        d["bits_label"] = "32" if v.is_fp else ("1.58" if v.bits == 1.58 else str(v.bits))
        d["bits_per_parameter"] = 32.0 if v.is_fp else float(v.bits)
        variants.append(d)
        if v.is_fp:
            drop, tpr, delta, p = 0.0, fp_tpr, None, None
        else:
            drop, t, delta, p = spec.get(v.key, (0.0, fp_tpr[0], (0.0, -0.01, 0.01), 1.0))
            tpr = (t, max(0.0, t - 0.01), t + 0.01)
        acc = fp_acc - drop
        accuracy[v.key] = {"per_target": [acc] * N_T, **_t(acc), "drop": _t(drop)}
        privacy[v.key] = {}
        for a in ATTACKS:
            pooled = {m: _iv(0.5) for m in METRICS}
            pooled["tpr@0.001fpr"] = _iv(*tpr)
            pooled["auc"] = _iv(0.7, 0.68, 0.72)
            r = {
                "pooled": pooled,
                "over_targets": {m: _t(0.1) for m in [*METRICS, "attack_accuracy"]},
                "per_target": [{m: _iv(0.1) for m in METRICS} for _ in range(N_T)],
                "roc_band": {**band, "tpr": [0.0, 0.05, 0.2, 0.5, 1.0],
                             "low": [0.0, 0.03, 0.15, 0.45, 1.0],
                             "high": [0.01, 0.07, 0.25, 0.55, 1.0]},
            }  # fmt: skip
            if delta is not None:
                cmp = {m: {**_iv(0.0, -0.01, 0.01), "pvalue": 1.0, "pvalue_holm": 1.0,
                           "reject": False} for m in METRICS}  # fmt: skip
                cmp["tpr@0.001fpr"] = {**_iv(*delta), "pvalue": p, "pvalue_holm": p,
                                       "reject": p <= 0.05}  # fmt: skip
                r["vs_fp"] = {
                    "pooled": cmp,
                    "per_target": [cmp] * N_T,
                    "n_reject_per_target": {m: 0 for m in METRICS},
                }
            privacy[v.key][a] = r
    return {
        "schema": 1,
        "study": "fabricated",
        "paper": "Zhang et al. (2025)",
        "config": cfg.as_dict(),
        "trainer": "ensemble",
        "data": {
            "name": "fabricated",
            "n_pool": 1000,
            "n_test": 200,
            "n_classes": 10,
            "input_shape": [1, 8, 8],
            "members_per_target": [500] * N_T,
        },
        "models": {"shadows": 8, "targets": N_T, "target_indices": list(range(8, 8 + N_T))},
        "fprs": [0.001, 0.01],
        "metric_names": METRICS,
        "attacks": ATTACKS,
        "attack_labels": {"lira_online": "LiRA online", "lira_offline": "LiRA offline"},
        "variants": variants,
        "accuracy": accuracy,
        "privacy": privacy,
        "tests": {"alpha": 0.05},
        "warnings": [],
        "timing": {},
    }


LEAK = (0.06, 0.05, 0.07)
REDUCTION = {
    "rtn_4b": (0.001, 0.059, (-0.001, -0.008, 0.006), 0.9),
    "rtn_1.58b": (0.005, 0.02, (-0.04, -0.05, -0.03), 0.001),
    "rtn_1.58b_last8": (0.002, 0.03, (-0.03, -0.04, -0.02), 0.002),
    "gptq_1.58b": (0.03, 0.01, (-0.05, -0.06, -0.04), 0.001),
}


def test_significant_reduction_recommends_the_least_leaky_within_budget():
    res = fabricate(LEAK, REDUCTION)
    v = verdict(res)
    assert v["status"] == "reduction" and v["leak"] == "present"
    assert v["attack"] == "lira_online" and v["metric"] == "tpr@0.001fpr"
    # rtn_1.58b leaks least among those within 1 point with a significant reduction;
    # gptq_1.58b leaks even less but costs 3 points
    assert v["recommended"] == "rtn_1.58b"
    assert v["best_beyond_budget"] == "gptq_1.58b"
    rows = {r["key"]: r for r in v["rows"]}
    assert rows["rtn_1.58b"]["significance"] == "lower"
    assert rows["rtn_4b"]["significance"] == "n.s."
    assert v["fp"]["ratio_to_chance"] == pytest.approx(60)
    # a bigger budget takes the 3-point quantizer; a smaller one takes the 0.2-point one
    assert verdict(res, max_accuracy_drop=0.05)["recommended"] == "gptq_1.58b"
    # the budget holds for the upper end of the drop's interval (mean ± 0.002 here):
    # rtn_1.58b (0.5 [0.3, 0.7] points) is out at 0.5 points, rtn_1.58b_last8 (0.2 [0, 0.4]) in
    assert verdict(res, max_accuracy_drop=0.005)["recommended"] == "rtn_1.58b_last8"
    assert verdict(res, max_accuracy_drop=0.005)["borderline"] == ["rtn_1.58b"]
    text = "\n".join(verdict_markdown(res))
    assert text.startswith("## Verdict")
    assert "**Full-precision leak.** LiRA online TPR at 0.1 % FPR = 0.0600 [0.0500, 0.0700]" in text
    assert "60× chance" in text
    assert "**Ship RTN 1.58-bit.**" in text and "Holm p = 0.001" in text
    assert "| **RTN 1.58-bit** |" in text  # marked in the table
    assert "Next within the budget: RTN 1.58-bit (last 8-bit) (TPR 0.0300)" in text
    low_budget = "\n".join(
        verdict_markdown(
            fabricate(LEAK, REDUCTION)
            | {"config": {**res["config"], "report": {"attack": "", "max_accuracy_drop": 0.005}}}
        )
    )
    assert "**Ship RTN 1.58-bit (last 8-bit).**" in low_budget
    assert "RTN 1.58-bit leaks less still (TPR 0.0200)" in low_budget
    assert "its interval reaches past it" in low_budget
    assert "Pareto front" in text and "What this data can and cannot show" in text
    assert summary_markdown(res).startswith("Verdict: ship RTN 1.58-bit")


def test_no_reduction_says_so_and_names_the_cheapest_significant_one():
    spec = {k: (d, LEAK[0], (0.0, -0.01, 0.01), 0.8) for k, (d, *_rest) in REDUCTION.items()}
    v = verdict(fabricate(LEAK, spec))
    assert v["status"] == "no_reduction" and v["recommended"] is None
    assert v["best_beyond_budget"] is None
    assert all(r["significance"] == "n.s." for r in v["rows"])
    text = "\n".join(verdict_markdown(fabricate(LEAK, spec)))
    assert "No quantizer within the accuracy budget (1 point(s)" in text
    assert "None of the quantizers lowers it significantly at any accuracy cost" in text
    # only a reduction that costs too much accuracy: named, not recommended
    spec["gptq_1.58b"] = REDUCTION["gptq_1.58b"]
    res = fabricate(LEAK, spec)
    v = verdict(res)
    assert v["status"] == "no_reduction" and v["best_beyond_budget"] == "gptq_1.58b"
    assert "The cheapest significant reduction is GPTQ 1.58-bit" in "\n".join(verdict_markdown(res))


def test_a_significantly_higher_leak_is_flagged_not_recommended():
    spec = dict(REDUCTION, **{"gptq_4b": (0.0, 0.09, (0.03, 0.02, 0.04), 0.001)})
    v = verdict(fabricate(LEAK, spec))
    rows = {r["key"]: r for r in v["rows"]}
    assert rows["gptq_4b"]["significance"] == "higher"
    assert v["recommended"] == "rtn_1.58b"
    assert "HIGHER" in "\n".join(verdict_markdown(fabricate(LEAK, spec)))


def test_no_leak_at_all_recommends_nothing_whatever_the_variants_show():
    res = fabricate((0.002, 0.0, 0.004), REDUCTION)  # the CI reaches chance (0.001)
    v = verdict(res)
    assert v["leak"] == "none" and v["status"] == "no_leak"
    assert v["recommended"] is None and v["best_beyond_budget"] is None
    text = "\n".join(verdict_markdown(res))
    assert "not distinguishable from chance, so no privacy conclusion follows" in text
    assert "Ship" not in text
    assert "cannot rank the quantizers by privacy" in text
    assert summary_markdown(res).startswith("Verdict: the full-precision leak is not")
    # a lower end just above chance counts as a leak
    assert verdict(fabricate((0.004, 0.0011, 0.008), REDUCTION))["leak"] == "present"


def test_pareto_front():
    pts = {"fp": (0.85, 0.06), "a": (0.85, 0.05), "b": (0.84, 0.05), "c": (0.80, 0.01),
           "d": (0.79, 0.02), "e": (float("nan"), 0.0), "f": (0.80, 0.01)}  # fmt: skip
    # fp is dominated by a (as accurate, less leaky); b by a; d by c; c and f tie (both kept)
    assert pareto_front(pts) == ["a", "c", "f"]
    assert pareto_front({}) == []
    spec = dict(REDUCTION, gptq_4b=(0.01, 0.07, (0.01, -0.01, 0.03), 0.6))
    v = verdict(fabricate(LEAK, spec))
    assert v["pareto"][0] == "fp"  # the most accurate first
    # every 1.58-bit RTN / GPTQ variant trades accuracy for less leak: on the front; GPTQ
    # 4-bit is less accurate and leakier than full precision: dominated
    assert {"rtn_4b", "rtn_1.58b", "rtn_1.58b_last8", "gptq_1.58b"} <= set(v["pareto"])
    assert "gptq_4b" not in v["pareto"]
    assert not {r["key"]: r for r in v["rows"]}["gptq_4b"]["pareto"]
    # a quantizer more accurate than full precision (significantly) and less leaky
    spec["gptq_4b_last8"] = (-0.01, 0.05, (-0.01, -0.02, -0.001), 0.01)
    res = fabricate(LEAK, spec)
    v = verdict(res)
    assert v["pareto"][0] == "gptq_4b_last8" and "fp" not in v["pareto"]
    text = "\n".join(verdict_markdown(res))
    assert "GPTQ 4-bit (last 8-bit) (86.00 %, TPR 0.0500; accuracy gain significant" in text


def test_report_opens_with_the_verdict(tmp_path):
    res = fabricate(LEAK, REDUCTION)
    res["verdict"] = verdict(res)
    files = write_report(res, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# PTQ privacy audit: fabricated\n\n## Verdict\n")
    assert report.index("## Verdict") < report.index("## Setup")
    for name in ("privacy_utility.png", "roc_lira_online.png", "verdict.csv", "report.md"):
        assert name in files and (tmp_path / name).is_file()
    csv = (tmp_path / "verdict.csv").read_text().splitlines()
    assert len(csv) == 1 + 8 and "significance" in csv[0]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["verdict"]["recommended"] == "rtn_1.58b"
