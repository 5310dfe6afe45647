#!/usr/bin/env python
"""Check an audit's results against the claims of Zhang et al. (2025), *Bits for Privacy*.

Usage::

    python paper_checks/zhang2025.py DIR [--attack lira_online] [--json]

``DIR`` is the output directory of ``mis audit`` (or its ``results.json``). Prints one row
per claim and method: **claim / paper / ours / pass**, where *paper* quotes the paper's own
numbers (``zhang2025_reference.json``, each with its table or section) and *ours* the audit's.
Exit status 0 when no check fails, 1 otherwise (``n/a`` — a variant or value missing from the
results — is not a failure).

Claims and the exact pass rules (TPR = TPR at 0.1 % FPR, pooled over the targets, with its
95 % cluster-bootstrap CI; accuracy = mean test accuracy over targets):

1. *4-bit keeps the privacy of full precision* (§IV-B, Fig. 3; AdaRound 4-bit 0.0790 vs
   0.0776 on CIFAR-10): for each method, the TPR of the 4-bit model (no decoupling) lies
   inside the CI of the full-precision TPR.
2. *Lower precision leaks less: 1.58-bit < 2-bit < full precision, LiRA online* (§IV-B,
   Fig. 1/3; AdaRound on CIFAR-100 0.0031 < 0.2196 < 0.3765): for each method, strict order
   of the point estimates; ``n/a`` when the full-precision TPR is not above chance (the lower
   end of its CI ≤ 0.001), since there is then no leak for lower precision to reduce.
3. *The decoupled 8-bit last layer recovers accuracy* (§IV-C, Fig. 4; AdaRound on
   TinyImageNet: drop 26 → 5.6 points at 1.58 bits, 11 → 1.9 at 2 bits): for each method at
   1.58 and 2 bits, the accuracy drop against full precision with the 8-bit last layer is at
   most half the drop without it. ``n/a`` when the drop without it is below 1 point (nothing
   to recover) or when both variants have the same bits per parameter (the method keeps its
   last layer at 8 bits anyway, as BRECQ's reference settings do).
4. *1.58-bit PTQ works where sign (1-bit) quantization fails* (Table I: 62–68 % vs ≈ 1 %,
   chance, on CIFAR-100): for each method, the accuracy at 1.58 bits exceeds the accuracy at
   1 bit (per-target paired differences: mean > 0 and, with ≥ 2 targets, the lower end of
   the 95 % Student-t interval > 0).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REFERENCE = Path(__file__).with_name("zhang2025_reference.json")
LOW_FPR_METRIC = "tpr@0.001fpr"
PASS, FAIL, NA = "pass", "FAIL", "n/a"


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def load_results(path) -> dict:
    """``results.json`` of an audit directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: give the output directory of `mis audit`")
    return json.loads(p.read_text())


def load_reference(path=None) -> dict:
    """The paper's numbers with provenance (``zhang2025_reference.json``)."""
    return json.loads(Path(path or REFERENCE).read_text())


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def _variant(results, method, bits, decoupled=False):
    """Key of the variant (method, bits label, decoupled?) or None; method None = FP."""
    for v in results["variants"]:
        if method is None and v["method"] is None:
            return v["key"]
        if (
            v["method"] == method
            and str(v.get("bits_label", v["bits"])) == str(bits)
            and bool(v["last_layer_bits"]) == decoupled
        ):
            return v["key"]
    return None


def _tpr(results, key, attack) -> tuple[float, float, float]:
    """(estimate, low, high) of the pooled TPR at 0.1 % FPR, NaN when missing."""
    try:
        d = results["privacy"][key][attack]["pooled"][LOW_FPR_METRIC]
    except (KeyError, TypeError):
        return math.nan, math.nan, math.nan
    return _num(d.get("estimate")), _num(d.get("low")), _num(d.get("high"))


def _acc(results, key) -> float:
    try:
        return _num(results["accuracy"][key]["mean"])
    except (KeyError, TypeError):
        return math.nan


def _acc_targets(results, key) -> list[float]:
    try:
        return [_num(a) for a in results["accuracy"][key]["per_target"]]
    except (KeyError, TypeError):
        return []


def _bpp(results, key) -> float:
    """Mean bits per parameter of a variant (NaN when not recorded)."""
    for v in results["variants"]:
        if v["key"] == key:
            return _num(v.get("bits_per_parameter"))
    return math.nan


def _methods(results) -> list[str]:
    out = []
    for v in results["variants"]:
        if v["method"] and v["method"] not in out:
            out.append(v["method"])
    return out


def _f(x, d=4) -> str:
    return f"{x:.{d}f}" if math.isfinite(x) else "n/a"


def _pct(x) -> str:
    return f"{100 * x:.2f} %" if math.isfinite(x) else "n/a"


# ------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------
def _t_lower(diffs) -> float:
    """Lower end of the 95 % Student-t interval of the mean (NaN for < 2 values)."""
    v = [d for d in diffs if math.isfinite(d)]
    n = len(v)
    if n < 2:
        return math.nan
    from scipy import stats

    mean = sum(v) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in v) / (n - 1))
    return mean - float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def check(results: dict, reference: dict | None = None, attack: str = "lira_online") -> list[dict]:
    """Rows ``{"claim", "paper", "ours", "pass"}``; see the module docstring for the rules."""
    ref = reference or load_reference()
    rows = []
    fp = _variant(results, None, None)
    names = {"rtn": "RTN", "adaround": "AdaRound", "brecq": "BRECQ", "obc": "OBC", "gptq": "GPTQ"}
    att = results.get("attack_labels", {}).get(attack, attack)
    fe, fl, fh = _tpr(results, fp, attack) if fp else (math.nan,) * 3
    acc_fp = _acc(results, fp) if fp else math.nan

    # 1. 4-bit within the CI of full precision
    r4 = ref["tpr_4bit"]
    for m in _methods(results):
        k = _variant(results, m, 4)
        e, _, _ = _tpr(results, k, attack) if k else (math.nan,) * 3
        ok = NA if not (math.isfinite(e) and math.isfinite(fl) and math.isfinite(fh)) else (
            PASS if fl <= e <= fh else FAIL
        )  # fmt: skip
        rows.append({
            "claim": f"{names.get(m, m)}: 4-bit TPR@0.1%FPR within the CI of full precision "
                     f"({att})",
            "paper": f"CIFAR-10 AdaRound 4-bit {r4['cifar10_adaround']:.4f} vs FP "
                     f"{r4['cifar10_full_precision']:.4f} (§IV-B)",
            "ours": f"4-bit {_f(e)} vs FP {_f(fe)} [{_f(fl)}, {_f(fh)}]",
            "pass": ok,
        })  # fmt: skip

    # 2. 1.58-bit < 2-bit < full precision (online)
    r2 = ref["tpr_2bit"]["cifar100_adaround_online"]
    r158 = ref["tpr_1.58"]["cifar100_adaround"]["online"]
    rfp = ref["tpr_full_precision_max"]["cifar100"]
    for m in _methods(results):
        k158, k2 = _variant(results, m, "1.58"), _variant(results, m, 2)
        a = _tpr(results, k158, "lira_online")[0] if k158 else math.nan
        b = _tpr(results, k2, "lira_online")[0] if k2 else math.nan
        c = _tpr(results, fp, "lira_online")[0] if fp else math.nan
        vals = (a, b, c)
        c_low = _tpr(results, fp, "lira_online")[1] if fp else math.nan
        chance = not (c_low > 1e-3)  # the FP leak is not above chance: nothing to reduce
        if not all(map(math.isfinite, vals)) or chance:
            ok = NA
        else:
            ok = PASS if a < b < c else FAIL
        rows.append({
            "claim": f"{names.get(m, m)}: TPR@0.1%FPR 1.58-bit < 2-bit < full precision "
                     "(LiRA online)",
            "paper": f"CIFAR-100 AdaRound {r158:.4f} < {r2:.4f} < {rfp:.4f} (§IV-B, Fig. 3)",
            "ours": f"{_f(a)} < {_f(b)} < {_f(c)}"
                    + (" (FP leak not above chance: CI reaches 0.001)" if chance else ""),
            "pass": ok,
        })  # fmt: skip

    # 3. decoupled 8-bit last layer recovers accuracy
    rd = ref["decoupled_last_layer"]
    for m in _methods(results):
        for bits in ("1.58", "2"):
            kp = _variant(results, m, bits)
            kd = _variant(results, m, bits, decoupled=True)
            dp = acc_fp - _acc(results, kp) if kp else math.nan
            dd = acc_fp - _acc(results, kd) if kd else math.nan
            same = kp and kd and _bpp(results, kp) == _bpp(results, kd)
            note = ""
            if not (math.isfinite(dp) and math.isfinite(dd)):
                ok = NA
            elif same:
                ok, note = NA, " (no-op: the method already keeps its last layer at 8 bits)"
            elif dp < 0.01:
                ok, note = NA, " (no drop to recover)"
            else:
                ok = PASS if dd <= 0.5 * dp else FAIL
            rows.append({
                "claim": f"{names.get(m, m)} {bits}-bit: 8-bit last layer recovers accuracy "
                         "(drop at most half)",
                "paper": f"TinyImageNet AdaRound drop {rd['drop_plain'][bits]:g} → "
                         f"{rd['drop_decoupled'][bits]:g} points (§IV-C, Fig. 4)",
                "ours": f"drop {_pct(dp)} → {_pct(dd)}{note}",
                "pass": ok,
            })  # fmt: skip

    # 4. 1.58-bit works where sign fails (Table I)
    t1 = ref["table1_cifar100_accuracy"]
    for m in _methods(results):
        k158, k1 = _variant(results, m, "1.58"), _variant(results, m, 1)
        a158, a1 = _acc_targets(results, k158), _acc_targets(results, k1)
        if not a158 or len(a158) != len(a1):
            ok, text = NA, "n/a"
        else:
            diffs = [x - y for x, y in zip(a158, a1, strict=True)]
            mean = sum(diffs) / len(diffs)
            low = _t_lower(diffs)
            ok = PASS if mean > 0 and (len(diffs) < 2 or low > 0) else FAIL
            text = (f"1.58-bit {_pct(_acc(results, k158))} vs 1-bit {_pct(_acc(results, k1))}; "
                    f"paired diff {_pct(mean)} (t-low {_pct(low)})")  # fmt: skip
        pm = m if m in t1["1.58"] else "adaround"
        rows.append({
            "claim": f"{names.get(m, m)}: 1.58-bit accuracy above sign (1-bit) accuracy",
            "paper": f"CIFAR-100 {names.get(pm, pm)} {t1['1.58'][pm]:.2f} % vs "
                     f"{t1['1'][pm]:.2f} % (FP {t1['full_precision']:.2f} %, Table I)",
            "ours": text,
            "pass": ok,
        })  # fmt: skip
    rows.append({
        "claim": "(context) full-precision test accuracy / TPR@0.1%FPR (LiRA online)",
        "paper": f"CIFAR-100 {t1['full_precision']:.2f} % / {rfp:.4f}",
        "ours": f"{results.get('data', {}).get('name', '?')} {_pct(acc_fp)} / "
                f"{_f(_tpr(results, fp, 'lira_online')[0]) if fp else 'n/a'}",
        "pass": NA,
    })  # fmt: skip
    return rows


def format_table(rows) -> str:
    """Markdown table claim / paper / ours / pass."""
    out = ["| claim | paper | ours | pass |", "|---|---|---|---|"]
    out += [f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['pass']} |" for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="output directory of `mis audit` (or its results.json)")
    p.add_argument("--attack", default="lira_online", help="attack of claim 1 (default online)")
    p.add_argument("--reference", default=None, help="reference JSON (default: next to this)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = p.parse_args(argv)
    try:
        results = load_results(args.dir)
    except FileNotFoundError as exc:
        print(f"zhang2025: {exc}", file=sys.stderr)
        return 2
    rows = check(results, load_reference(args.reference), attack=args.attack)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    n_fail = sum(r["pass"] == FAIL for r in rows)
    n_pass = sum(r["pass"] == PASS for r in rows)
    if not args.json:
        print(f"\n{n_pass} pass, {n_fail} fail, {len(rows) - n_pass - n_fail} n/a")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
