#!/usr/bin/env python
"""Check an audit's results against the claims of Zhang et al. (2025), *Bits for Privacy*.

Usage::

    python paper_checks/zhang2025.py DIR [--attack lira_online] [--json]

``DIR`` is the output directory of ``mis audit`` (or its ``results.json``). Prints one row
per claim and method: **claim / paper / ours / strict / with CIs**, where *paper* quotes the
paper's own numbers (``zhang2025_reference.json``, each with its table or section), *ours*
the audit's, *strict* judges the point estimates and *with CIs* the same claim with the
audit's intervals: ``pass`` when the intervals support the claim, ``FAIL`` when they
contradict it, ``inconclusive`` when they do neither. ``n/a``: a variant or value is missing,
or the claim has nothing to act on (no full-precision leak to reduce, no accuracy drop to
recover). Exit status 0 when no check fails (strict or with CIs), 1 otherwise, 2 when the
results are missing. Nothing here is tuned to make a claim pass: the thresholds below are the
paper's words made precise, fixed before any Fashion-MNIST run.

Definitions: TPR = TPR at 0.1 % FPR pooled over the targets with its 95 % cluster-bootstrap
CI; Δ = the paired difference quantized − full precision on the same resampled examples, with
its CI and Holm-adjusted p-value (significant when Holm rejects at the audit's α); accuracy =
mean test accuracy over targets, with per-target values and the Student-t 95 % interval;
*leak present* = the lower end of the full-precision TPR's CI above 0.001 (chance).

1. *4-bit keeps the leak of full precision* (§IV-B; AdaRound 4-bit 0.0790 vs 0.0776 on
   CIFAR-10), per method, ``--attack`` (LiRA online): strict — the 4-bit TPR lies in the
   full-precision CI; with CIs — the paired Δ is not significant (FAIL when it is).
2. *1.58-bit cuts TPR@0.1 % FPR by ≥ 90 %* (§IV-B; AdaRound on CIFAR-100: 0.0031 online,
   0.0013 offline, −99.2 % / −99.4 %), per method, LiRA online and offline: strict —
   ``1 − TPR₁.₅₈ / TPR_FP ≥ 0.9``; with CIs — pass when the 1.58-bit CI's upper end is at most
   0.1 × the lower end of the full-precision CI, FAIL when its lower end exceeds 0.1 × the
   upper end of the full-precision CI. n/a without a full-precision leak.
3. *The leak falls with the bit width: 1.58 < 2 < 4 bits < full precision* (§IV-B, Fig. 1/3,
   LiRA online; the paper's own 4-bit CIFAR-10 value is above full precision), per method:
   strict — the point estimates in that order; with CIs — pass when every step is separated
   (1.58 vs 2 and 2 vs 4: disjoint CIs; 4-bit vs full precision: the paired Δ significantly
   negative), FAIL when a step is separated the wrong way. n/a without a full-precision leak.
4. *The decoupled 8-bit last layer restores accuracy* (§IV-C, Fig. 4; AdaRound on
   TinyImageNet: drop 26 → 5.6 points at 1.58 bits, 11 → 1.9 at 2 bits), per method at 1.58
   and 2 bits: strict — the drop with the 8-bit last layer is at most half the drop without;
   with CIs — the per-target values ``acc_dec − acc_plain − ½(acc_FP − acc_plain)`` have a
   Student-t interval above 0 (pass) or below 0 (FAIL). n/a when the drop without it is below
   1 point (nothing to recover) or both variants have the same bits per parameter (the method
   keeps its last layer at 8 bits anyway).
5. *… while keeping most of the privacy gain* (§IV-C, Fig. 4b: the decoupled 1.58/2-bit
   models "still mitigate MIA"), per method at 1.58 and 2 bits: the gain ``TPR_FP − TPR`` of
   the decoupled variant is at least half that of the plain one; with CIs — the decoupled
   variant's paired Δ lies entirely below ``−½ × gain_plain`` (pass) or entirely above it
   (FAIL). n/a without a full-precision leak or when the plain variant gains nothing.
6. *Sign (1-bit) quantization falls to chance accuracy* (Table I: 1.00 / 0.99 / 1.04 % on
   CIFAR-100, chance 1 %), per method: strict — mean accuracy at most chance + 5 points
   (chance = 1 / n_classes); with CIs — the Student-t interval's upper end at most chance +
   5 points (pass), its lower end above (FAIL).
7. *1.58-bit PTQ works where sign fails* (Table I: 62–68 % vs ≈ 1 %), per method: strict —
   the mean per-target accuracy difference 1.58-bit − 1-bit is positive; with CIs — its
   Student-t interval lies above 0 (pass) or below 0 (FAIL).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from scipy import stats

REFERENCE = Path(__file__).with_name("zhang2025_reference.json")
LOW_FPR_METRIC = "tpr@0.001fpr"
CHANCE_TPR = 1e-3
PASS, FAIL, NA, INC = "pass", "FAIL", "n/a", "inconclusive"
NAMES = {"rtn": "RTN", "adaround": "AdaRound", "brecq": "BRECQ", "obc": "OBC", "gptq": "GPTQ",
         "gptq-refine": "GPTQ-refine"}  # fmt: skip
#: "near chance" accuracy: within this many accuracy points (fraction) above 1 / n_classes
NEAR_CHANCE = 0.05


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


def _fin(*xs) -> bool:
    return all(math.isfinite(x) for x in xs)


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


def _delta(results, key, attack) -> dict | None:
    """The paired Δ vs full precision (estimate, low, high, pvalue_holm, reject) or None."""
    try:
        d = results["privacy"][key][attack]["vs_fp"]["pooled"][LOW_FPR_METRIC]
    except (KeyError, TypeError):
        return None
    out = {k: _num(d.get(k)) for k in ("estimate", "low", "high", "pvalue_holm")}
    out["reject"] = bool(d.get("reject"))
    return out if math.isfinite(out["estimate"]) else None


def _acc(results, key) -> tuple[float, float, float]:
    """(mean, low, high) test accuracy over targets."""
    try:
        a = results["accuracy"][key]
    except (KeyError, TypeError):
        return math.nan, math.nan, math.nan
    return _num(a.get("mean")), _num(a.get("low")), _num(a.get("high"))


def _acc_targets(results, key) -> list[float]:
    try:
        return [_num(a) for a in results["accuracy"][key]["per_target"]]
    except (KeyError, TypeError):
        return []


def _bpp(results, key) -> float:
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


def _points(x) -> str:
    return f"{100 * x:.2f}" if math.isfinite(x) else "n/a"


def _ci(e, lo, hi) -> str:
    return f"{_f(e)} [{_f(lo)}, {_f(hi)}]"


def t_interval(values) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of the finite values (NaN ends for < 2 values)."""
    v = [d for d in values if math.isfinite(d)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(v) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in v) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _by_interval(low, high, threshold=0.0) -> str:
    """pass when [low, high] lies above ``threshold``, FAIL below, else inconclusive."""
    if not _fin(low, high):
        return NA
    if low > threshold:
        return PASS
    if high < threshold:
        return FAIL
    return INC


def _row(claim, paper, ours, strict, ci) -> dict:
    return {"claim": claim, "paper": paper, "ours": ours, "strict": strict, "ci": ci}


# ------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------
def check(results: dict, reference: dict | None = None, attack: str = "lira_online") -> list[dict]:
    """Rows ``{"claim", "paper", "ours", "strict", "ci"}``; the rules are in the module
    docstring."""
    ref = reference or load_reference()
    rows = []
    fp = _variant(results, None, None)
    methods = _methods(results)
    labels = results.get("attack_labels", {})
    att = labels.get(attack, attack)
    acc_fp = _acc(results, fp)[0] if fp else math.nan

    def leak(a):
        return _tpr(results, fp, a)[1] > CHANCE_TPR if fp else False

    # 1. 4-bit keeps the full-precision leak
    r4 = ref["tpr_4bit"]
    fe, fl, fh = _tpr(results, fp, attack) if fp else (math.nan,) * 3
    for m in methods:
        k = _variant(results, m, 4)
        e = _tpr(results, k, attack)[0] if k else math.nan
        d = _delta(results, k, attack) if k else None
        strict = PASS if fl <= e <= fh else FAIL if _fin(e, fl, fh) else NA
        ci = NA if d is None else (FAIL if d["reject"] else PASS)
        rows.append(_row(
            f"{NAMES.get(m, m)}: 4-bit keeps the full-precision leak ({att})",
            f"CIFAR-10 AdaRound 4-bit {r4['cifar10_adaround']:.4f} vs FP "
            f"{r4['cifar10_full_precision']:.4f} (§IV-B)",
            f"4-bit {_f(e)} vs FP {_ci(fe, fl, fh)}"
            + (f"; Δ {_ci(d['estimate'], d['low'], d['high'])}, Holm p {_f(d['pvalue_holm'], 3)}"
               if d else ""),
            strict, ci,
        ))  # fmt: skip

    # 2. 1.58-bit cuts the TPR by >= 90 %
    r158 = ref["tpr_1.58"]["cifar100_adaround"]
    for a, name in (("lira_online", "online"), ("lira_offline", "offline")):
        if a not in results.get("attacks", []):
            continue
        fe2, fl2, fh2 = _tpr(results, fp, a) if fp else (math.nan,) * 3
        for m in methods:
            k = _variant(results, m, "1.58")
            q, ql, qh = _tpr(results, k, a) if k else (math.nan,) * 3
            red = 1 - q / fe2 if _fin(q, fe2) and fe2 > 0 else math.nan
            if not leak(a) or not _fin(q, ql, qh, fl2, fh2):
                strict = ci = NA
            else:
                strict = PASS if red >= 0.9 else FAIL
                ci = PASS if qh <= 0.1 * fl2 else FAIL if ql > 0.1 * fh2 else INC
            rows.append(_row(
                f"{NAMES.get(m, m)}: 1.58-bit cuts TPR@0.1%FPR by >= 90 % "
                f"({labels.get(a, a)})",
                f"CIFAR-100 AdaRound {r158[name]:.4f}, -{100 * r158['reduction_' + name]:.1f} %"
                " (§IV-B)",
                f"1.58-bit {_ci(q, ql, qh)} vs FP {_ci(fe2, fl2, fh2)}: "
                + (f"-{100 * red:.1f} %" if math.isfinite(red) else "n/a")
                + ("" if leak(a) else " (FP leak not above chance)"),
                strict, ci,
            ))  # fmt: skip

    # 3. 1.58 < 2 < 4 < full precision (online)
    r2 = ref["tpr_2bit"]["cifar100_adaround_online"]
    rfp = ref["tpr_full_precision_max"]["cifar100"]
    online = "lira_online"
    for m in methods:
        keys = [_variant(results, m, b) for b in ("1.58", "2", "4")]
        vals = [_tpr(results, k, online) if k else (math.nan,) * 3 for k in keys]
        vals.append(_tpr(results, fp, online) if fp else (math.nan,) * 3)
        d4 = _delta(results, keys[2], online) if keys[2] else None
        pts = [v[0] for v in vals]
        if not leak(online) or not all(map(math.isfinite, pts)):
            strict = ci = NA
        else:
            strict = PASS if pts[0] < pts[1] < pts[2] < pts[3] else FAIL
            steps = []
            for lo_v, hi_v in ((vals[0], vals[1]), (vals[1], vals[2])):
                if lo_v[2] < hi_v[1]:
                    steps.append("ok")
                elif lo_v[1] > hi_v[2]:
                    steps.append("reversed")
                else:
                    steps.append("overlap")
            if d4 is None:
                steps.append("overlap")
            elif d4["reject"]:
                steps.append("ok" if d4["estimate"] < 0 else "reversed")
            else:
                steps.append("overlap")
            ci = FAIL if "reversed" in steps else PASS if all(s == "ok" for s in steps) else INC
        rows.append(_row(
            f"{NAMES.get(m, m)}: TPR@0.1%FPR 1.58-bit < 2-bit < 4-bit < full precision "
            "(LiRA online)",
            f"CIFAR-100 AdaRound {r158['online']:.4f} < {r2:.4f} < FP {rfp:.4f}; 4-bit ≈ FP "
            f"({r4['cifar10_adaround']:.4f} vs {r4['cifar10_full_precision']:.4f}, CIFAR-10) "
            "(§IV-B, Fig. 3)",
            " < ".join(_f(p) for p in pts)
            + ("" if leak(online) else " (FP leak not above chance)"),
            strict, ci,
        ))  # fmt: skip

    # 4. + 5. the decoupled 8-bit last layer: accuracy back, privacy gain kept
    rd = ref["decoupled_last_layer"]
    for m in methods:
        for bits in ("1.58", "2"):
            kp = _variant(results, m, bits)
            kd = _variant(results, m, bits, decoupled=True)
            ap, ad = (_acc(results, kp)[0] if kp else math.nan), (
                _acc(results, kd)[0] if kd else math.nan)  # fmt: skip
            dp, dd = acc_fp - ap, acc_fp - ad
            same = bool(kp and kd) and _bpp(results, kp) == _bpp(results, kd)
            note = ""
            if not _fin(dp, dd):
                strict = ci = NA
            elif same:
                strict = ci = NA
                note = " (no-op: the method already keeps its last layer at 8 bits)"
            elif dp < 0.01:
                strict = ci = NA
                note = " (no drop to recover)"
            else:
                strict = PASS if dd <= 0.5 * dp else FAIL
                a_fp, a_p, a_d = (_acc_targets(results, k) for k in (fp, kp, kd))
                if len(a_fp) == len(a_p) == len(a_d) and a_fp:
                    trio = zip(a_fp, a_p, a_d, strict=True)
                    r = [d_ - p_ - 0.5 * (f_ - p_) for f_, p_, d_ in trio]
                    _, lo, hi = t_interval(r)
                    ci = _by_interval(lo, hi)
                else:
                    ci = NA
            rows.append(_row(
                f"{NAMES.get(m, m)} {bits}-bit: 8-bit last layer recovers accuracy "
                "(drop at most half)",
                f"TinyImageNet AdaRound drop {rd['drop_plain'][bits]:g} → "
                f"{rd['drop_decoupled'][bits]:g} points (§IV-C, Fig. 4)",
                f"drop {_points(dp)} → {_points(dd)} points{note}",
                strict, ci,
            ))  # fmt: skip
            # privacy gain kept
            tp = _tpr(results, kp, online)[0] if kp else math.nan
            td = _tpr(results, kd, online)[0] if kd else math.nan
            f0 = _tpr(results, fp, online)[0] if fp else math.nan
            dd_ = _delta(results, kd, online) if kd else None
            gp, gd = f0 - tp, f0 - td
            if not leak(online) or not _fin(gp, gd) or same:
                strict2 = ci2 = NA
            elif gp <= 0:
                strict2 = ci2 = NA
            else:
                strict2 = PASS if gd >= 0.5 * gp else FAIL
                ci2 = NA if dd_ is None else (
                    PASS if dd_["high"] <= -0.5 * gp else FAIL if dd_["low"] > -0.5 * gp else INC
                )  # fmt: skip
            rows.append(_row(
                f"{NAMES.get(m, m)} {bits}-bit: 8-bit last layer keeps at least half the "
                "privacy gain (LiRA online)",
                "decoupled 1.58/2-bit models still mitigate MIA (§IV-C, Fig. 4b)",
                f"TPR FP {_f(f0)} → {bits}-bit {_f(tp)}, with 8-bit last layer {_f(td)} "
                f"(gain {_f(gp)} → {_f(gd)})"
                + ("" if leak(online) else " (FP leak not above chance)")
                + (" (no gain to keep)" if leak(online) and _fin(gp) and gp <= 0 else ""),
                strict2, ci2,
            ))  # fmt: skip

    # 6. 1-bit at chance accuracy
    t1 = ref["table1_cifar100_accuracy"]
    n_classes = results.get("data", {}).get("n_classes")
    chance = 1.0 / n_classes if n_classes else math.nan
    for m in methods:
        k = _variant(results, m, 1)
        a, lo, hi = _acc(results, k) if k else (math.nan,) * 3
        lim = chance + NEAR_CHANCE
        strict = NA if not _fin(a, lim) else (PASS if a <= lim else FAIL)
        ci = NA if not _fin(lo, hi, lim) else (PASS if hi <= lim else FAIL if lo > lim else INC)
        pm = m if m in t1["1"] else "adaround"
        rows.append(_row(
            f"{NAMES.get(m, m)}: 1-bit (sign) accuracy near chance (<= chance + 5 points)",
            f"CIFAR-100 {NAMES.get(pm, pm)} {t1['1'][pm]:.2f} % (chance {t1['chance']:.2f} %, "
            "Table I)",
            f"1-bit {_pct(a)} [{_pct(lo)}, {_pct(hi)}], chance {_pct(chance)}",
            strict, ci,
        ))  # fmt: skip

    # 7. 1.58-bit above 1-bit
    for m in methods:
        k158, k1 = _variant(results, m, "1.58"), _variant(results, m, 1)
        a158, a1 = _acc_targets(results, k158), _acc_targets(results, k1)
        if not a158 or len(a158) != len(a1):
            strict = ci = NA
            text = "n/a"
        else:
            mean, lo, hi = t_interval([x - y for x, y in zip(a158, a1, strict=True)])
            strict = PASS if mean > 0 else FAIL
            ci = _by_interval(lo, hi)
            text = (f"1.58-bit {_pct(_acc(results, k158)[0])} vs 1-bit "
                    f"{_pct(_acc(results, k1)[0])}; paired diff {_points(mean)} "
                    f"[{_points(lo)}, {_points(hi)}] points")  # fmt: skip
        pm = m if m in t1["1.58"] else "adaround"
        rows.append(_row(
            f"{NAMES.get(m, m)}: 1.58-bit accuracy above sign (1-bit) accuracy",
            f"CIFAR-100 {NAMES.get(pm, pm)} {t1['1.58'][pm]:.2f} % vs {t1['1'][pm]:.2f} % "
            f"(FP {t1['full_precision']:.2f} %, Table I)",
            text, strict, ci,
        ))  # fmt: skip
    rows.append(_row(
        "(context) full-precision test accuracy / TPR@0.1%FPR (LiRA online)",
        f"CIFAR-100 {t1['full_precision']:.2f} % / {rfp:.4f}",
        f"{results.get('data', {}).get('name', '?')} {_pct(acc_fp)} / "
        + (_ci(*_tpr(results, fp, online)) if fp else "n/a"),
        NA, NA,
    ))  # fmt: skip
    return rows


def format_table(rows) -> str:
    """Markdown table claim / paper / ours / strict / with CIs."""
    out = ["| claim | paper | ours | strict | with CIs |", "|---|---|---|---|---|"]
    out += [
        f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['strict']} | {r['ci']} |" for r in rows
    ]
    return "\n".join(out)


def tally(rows) -> str:
    """``strict: a pass, b FAIL, c n/a; with CIs: ...``"""
    parts = []
    for col, name in (("strict", "strict"), ("ci", "with CIs")):
        vals = [r[col] for r in rows]
        counts = [f"{vals.count(s)} {s}" for s in (PASS, FAIL, INC, NA) if s in vals or s != INC]
        parts.append(f"{name}: " + ", ".join(counts))
    return "; ".join(parts)


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
    if not args.json:
        print(f"\n{tally(rows)}")
    return 1 if any(FAIL in (r["strict"], r["ci"]) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
