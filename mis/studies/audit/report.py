"""Report of the PTQ privacy audit (:func:`mis.studies.audit.run_audit`).

:func:`write_report` turns the results dictionary into files a person reads first
(``report.md``), files programs read (``results.json``, CSV tables) and plots:

* ``roc_<attack>.png`` — log-log ROC curves pooled over targets with pointwise bootstrap
  bands, one panel per method: full precision and every bit width (dashed: decoupled last
  layer);
* ``tpr_by_bits.png`` — TPR@FPR (lowest level) against the bit width for every method, one
  panel per LiRA attack (Zhang et al. 2025, Fig. 3);
* ``accuracy_by_bits.png`` — test accuracy against the bit width (Fig. 2);
* ``privacy_utility.png`` — TPR@FPR against test accuracy for every variant, hollow markers
  for the decoupled last layer (Fig. 4/5);
* ``metrics.csv``, ``accuracy.csv``, ``per_target.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mis.quant import method_label
from mis.report.plots import colormap, subplots
from mis.report.plots import save_figure as _save
from mis.report.tables import markdown_table, write_report_files

__all__ = ["summary_markdown", "write_report"]

_COLORS = {
    "rtn": "tab:gray",
    "adaround": "tab:blue",
    "brecq": "tab:green",
    "obc": "tab:orange",
    "gptq": "tab:purple",
}
_MARKERS = {"4": "o", "2": "s", "1.58": "^", "1": "v"}


def _ok(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _f(x, digits=4) -> str:
    return f"{x:.{digits}f}" if _ok(x) else "n/a"


def _iv(d, digits=4) -> str:
    if not _ok(d.get("estimate")):
        return "n/a"
    if not (_ok(d.get("low")) and _ok(d.get("high"))):
        return _f(d["estimate"], digits)
    return f"{d['estimate']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def _msd(d, digits=4, pct=False) -> str:
    if not _ok(d.get("mean")):
        return "n/a"
    k = 100.0 if pct else 1.0
    s = f"{k * d['mean']:.{digits}f}"
    if _ok(d.get("sd")):
        s += f" ± {k * d['sd']:.{digits}f}"
    return s


def _p(p) -> str:
    if not _ok(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _variants(results, fp=True):
    return [v for v in results["variants"] if fp or v["method"] is not None]


def _low_metric(results) -> str:
    return results["metric_names"][0]


def _fpr_label(f) -> str:
    return f"{100 * f:g} %"


# ------------------------------------------------------------------------------------------
# CSV rows
# ------------------------------------------------------------------------------------------
def _metric_rows(results) -> list[dict]:
    rows = []
    for v in results["variants"]:
        for a in results["attacks"]:
            r = results["privacy"][v["key"]][a]
            for name in results["metric_names"]:
                pooled, ot = r["pooled"][name], r["over_targets"][name]
                row = {
                    "variant": v["key"],
                    "method": v["method"] or "fp",
                    "bits": v["bits_label"],
                    "last_layer_bits": v["last_layer_bits"] or "",
                    "attack": a,
                    "metric": name,
                    "pooled": pooled["estimate"],
                    "pooled_low": pooled["low"],
                    "pooled_high": pooled["high"],
                    "mean_over_targets": ot["mean"],
                    "sd_over_targets": ot["sd"],
                    "t_low": ot["low"],
                    "t_high": ot["high"],
                    "n_targets": ot["n"],
                }
                cmp = (r.get("vs_fp") or {}).get("pooled", {}).get(name)
                row.update(
                    {
                        "diff_vs_fp": cmp["estimate"] if cmp else None,
                        "diff_low": cmp["low"] if cmp else None,
                        "diff_high": cmp["high"] if cmp else None,
                        "pvalue": cmp["pvalue"] if cmp else None,
                        "pvalue_holm": cmp.get("pvalue_holm") if cmp else None,
                        "reject": cmp.get("reject") if cmp else None,
                        "n_reject_per_target": (
                            r["vs_fp"]["n_reject_per_target"][name] if cmp else None
                        ),
                    }
                )
                rows.append(row)
    return rows


def _accuracy_rows(results) -> list[dict]:
    rows = []
    for v in results["variants"]:
        a = results["accuracy"][v["key"]]
        rows.append(
            {
                "variant": v["key"],
                "label": v["label"],
                "method": v["method"] or "fp",
                "bits": v["bits_label"],
                "last_layer_bits": v["last_layer_bits"] or "",
                "bits_per_parameter": v["bits_per_parameter"],
                "accuracy_mean": a["mean"],
                "accuracy_sd": a["sd"],
                "accuracy_low": a["low"],
                "accuracy_high": a["high"],
                "drop_mean": a["drop"]["mean"],
                "drop_low": a["drop"]["low"],
                "drop_high": a["drop"]["high"],
            }
        )
    return rows


def _per_target_rows(results) -> list[dict]:
    rows = []
    targets = results["models"]["target_indices"]
    for v in results["variants"]:
        for a in results["attacks"]:
            r = results["privacy"][v["key"]][a]
            for t, model in enumerate(targets):
                row = {"variant": v["key"], "attack": a, "target": t, "model_index": model,
                       "test_accuracy": results["accuracy"][v["key"]]["per_target"][t]}  # fmt: skip
                for name in results["metric_names"]:
                    d = r["per_target"][t][name]
                    row[name] = d["estimate"]
                    row[f"{name}_low"] = d["low"]
                    row[f"{name}_high"] = d["high"]
                    c = r["vs_fp"]["per_target"][t][name] if r.get("vs_fp") else {}
                    row[f"{name}_diff"] = c.get("estimate")
                    row[f"{name}_pvalue_holm"] = c.get("pvalue_holm")
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------


def _methods(results) -> list[str]:
    seen = []
    for v in results["variants"]:
        if v["method"] and v["method"] not in seen:
            seen.append(v["method"])
    return seen


def _bits_order(results) -> list[str]:
    seen = []
    for v in results["variants"]:
        if v["method"] and v["bits_label"] not in seen:
            seen.append(v["bits_label"])
    return seen


def plot_roc(results, attack: str, path: Path) -> Path:
    """Log-log ROC curves with CI bands, one panel per method."""
    methods = _methods(results) or [None]
    n = len(methods)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), dpi=110, squeeze=False)
    fpr_min = results["config"]["metrics"]["fpr_min"]
    bits = _bits_order(results)
    cmap = colormap("viridis")
    for ax, method in zip(axes.flat, methods, strict=False):
        grid = np.logspace(math.log10(fpr_min), 0, 50)
        ax.plot(grid, grid, ls=":", color="grey", lw=0.8)
        chosen = [v for v in results["variants"] if v["method"] in (None, method)]
        lowest = min(results["privacy"][v["key"]][attack]["roc_band"]["fpr"][0] for v in chosen)
        for v in chosen:
            band = results["privacy"][v["key"]][attack]["roc_band"]
            f = np.asarray(band["fpr"], dtype=float)
            t = np.asarray([x if _ok(x) else np.nan for x in band["tpr"]], dtype=float)
            lo = np.asarray([x if _ok(x) else np.nan for x in band["low"]], dtype=float)
            hi = np.asarray([x if _ok(x) else np.nan for x in band["high"]], dtype=float)
            if v["method"] is None:
                color, ls, label = "black", "-", "full precision"
            else:
                i = bits.index(v["bits_label"])
                color = cmap(i / max(1, len(bits) - 1) * 0.85)
                ls = "--" if v["last_layer_bits"] else "-"
                label = f"{v['bits_label']}-bit" + (
                    f" (last {v['last_layer_bits']:g})" if v["last_layer_bits"] else ""
                )
            floor = max(fpr_min, lowest / 1.5)
            ax.plot(f, np.maximum(t, floor), color=color, ls=ls, lw=1.3, label=label)
            ax.fill_between(
                f, np.maximum(lo, floor), np.maximum(hi, floor), color=color, alpha=0.12, lw=0
            )
        left = max(fpr_min, lowest / 1.5)
        ax.set(xscale="log", yscale="log", xlim=(left, 1), ylim=(left, 1.05),
               xlabel="false-positive rate", ylabel="true-positive rate",
               title=method_label(method) if method else "full precision")  # fmt: skip
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{results['attack_labels'][attack]}: ROC pooled over targets (95 % bands)",
                 fontsize=9)  # fmt: skip
    _save(fig, path)
    return path


def _err(y, bound, lower: bool) -> list[float]:
    """Error-bar lengths from point estimates to interval ends (0 where undefined)."""
    out = []
    for a, b in zip(y, bound, strict=True):
        ok = _ok(a) and _ok(b)
        out.append(max(0.0, (a - b) if lower else (b - a)) if ok else 0.0)
    return out


def _by_bits(results, value, path: Path, ylabel: str, title: str, panels, chance=None) -> Path:
    """Lines of ``value(variant, panel) -> (est, low, high)`` against the bit width.

    With ``chance`` (a TPR plot): log y axis, a dotted line at TPR = FPR = ``chance``, and
    estimates or lower ends of 0 drawn at ``chance / 4`` (marked in the axis label).
    """
    floor = None if chance is None else chance / 4

    def clip(vals):
        if floor is None:
            return vals
        return [max(v, floor) if _ok(v) else v for v in vals]

    bits = _bits_order(results)
    xs = ["FP", *bits]
    fig, axes = subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=110,
                             squeeze=False)  # fmt: skip
    fp = next(v for v in results["variants"] if v["method"] is None)
    for ax, panel in zip(axes.flat, panels, strict=True):
        fe, fl, fh = value(fp, panel)
        for j, method in enumerate(_methods(results)):
            for dec in (False, True):
                vs = [
                    v
                    for v in results["variants"]
                    if v["method"] == method and bool(v["last_layer_bits"]) == dec
                ]
                if not vs:
                    continue
                pts = {v["bits_label"]: value(v, panel) for v in vs}
                x = [0] + [1 + bits.index(b) for b in pts]
                y = clip([fe] + [p[0] for p in pts.values()])
                lo = clip([fl] + [p[1] for p in pts.values()])
                hi = clip([fh] + [p[2] for p in pts.values()])
                yerr = [_err(y, lo, lower=True), _err(y, hi, lower=False)]
                off = (j - len(_methods(results)) / 2) * 0.05 + (0.02 if dec else 0)
                ax.errorbar(
                    [xi + off for xi in x],
                    [v if _ok(v) else float("nan") for v in y],
                    yerr=yerr,
                    color=_COLORS.get(method, f"C{j}"),
                    ls="--" if dec else "-",
                    marker="o" if not dec else "D",
                    mfc="none" if dec else None,
                    ms=4,
                    lw=1.2,
                    capsize=2,
                    label=method_label(method) + (" (last 8-bit)" if dec else ""),
                )
        ax.set_xticks(range(len(xs)), xs)
        ax.set(xlabel="weight bits", ylabel=ylabel, title=panel[1])
        if chance is not None:
            ax.axhline(chance, ls=":", color="grey", lw=0.8, label="chance (TPR = FPR)")
            ax.set_yscale("log")
            ax.set_ylim(bottom=floor / 1.5)
        ax.grid(True, lw=0.3, alpha=0.5)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
    return path


def plot_tpr_by_bits(results, path: Path) -> Path:
    """Fig. 3 style: pooled TPR at the lowest FPR level (95 % CI) against the bit width."""
    name = _low_metric(results)
    lira = [a for a in ("lira_online", "lira_offline") if a in results["attacks"]]
    panels = [(a, results["attack_labels"][a]) for a in (lira or results["attacks"][:1])]

    def value(v, panel):
        d = results["privacy"][v["key"]][panel[0]]["pooled"][name]
        return d["estimate"], d["low"], d["high"]

    return _by_bits(
        results, value, path,
        f"TPR @ {_fpr_label(results['fprs'][0])} FPR (pooled, 95 % CI)",
        "Privacy leakage by bit width (cf. Zhang et al. 2025, Fig. 3); "
        "a TPR of 0 is drawn at the bottom edge", panels,
        chance=results["fprs"][0],
    )  # fmt: skip


def plot_accuracy_by_bits(results, path: Path) -> Path:
    """Fig. 2 style: test accuracy (mean over targets, t-interval) against the bit width."""

    def value(v, panel):
        a = results["accuracy"][v["key"]]
        return a["mean"], a["low"], a["high"]

    return _by_bits(
        results, value, path, "test accuracy (mean over targets)",
        "Utility by bit width (cf. Zhang et al. 2025, Fig. 2)", [(None, "test accuracy")],
    )  # fmt: skip


def plot_privacy_utility(results, path: Path, attack: str | None = None) -> Path:
    """Fig. 4/5 style: TPR at the lowest FPR against test accuracy, every variant."""
    attack = attack or ("lira_online" if "lira_online" in results["attacks"] else
                        results["attacks"][0])  # fmt: skip
    name = _low_metric(results)
    chance = results["fprs"][0]
    floor = chance / 4
    fig, ax = subplots(figsize=(5.6, 4.2), dpi=110)
    ax.axhline(chance, ls=":", color="grey", lw=0.8)
    for v in results["variants"]:
        a = results["accuracy"][v["key"]]
        raw = results["privacy"][v["key"]][attack]["pooled"][name]
        d = {k: max(raw[k], floor) if _ok(raw[k]) else raw[k] for k in ("estimate", "low", "high")}
        if not (_ok(a["mean"]) and _ok(d["estimate"])):
            continue
        if v["method"] is None:
            color, marker, mfc, label = "black", "*", "black", "full precision"
        else:
            color = _COLORS.get(v["method"], "tab:red")
            marker = _MARKERS.get(v["bits_label"], "o")
            mfc = "none" if v["last_layer_bits"] else color
            label = v["label"]
        xerr = a["sd"] if _ok(a["sd"]) else None
        lo, hi = d["low"], d["high"]
        yerr = (
            [[max(0.0, d["estimate"] - lo)], [max(0.0, hi - d["estimate"])]]
            if _ok(lo) and _ok(hi)
            else None
        )
        ax.errorbar([a["mean"]], [d["estimate"]], xerr=xerr, yerr=yerr, color=color,
                    marker=marker, mfc=mfc, ms=7 if v["method"] is None else 5, ls="none",
                    capsize=2, lw=0.8, label=label)  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 1.5)
    ax.set(
        xlabel="test accuracy (mean ± sd over targets)",
        ylabel=f"TPR @ {_fpr_label(chance)} FPR (pooled, 95 % CI; dotted: chance)",
        title=f"Privacy–utility ({results['attack_labels'][attack]}; hollow = last layer 8-bit)",
    )
    ax.grid(True, lw=0.3, alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=5, ncol=2, loc="best")
    _save(fig, path)
    return path


# ------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------
def summary_markdown(results) -> str:
    """The main table: accuracy and pooled TPR at the lowest FPR of every attack, with the
    Holm-adjusted p-value of the paired test against full precision (first attack)."""
    name = _low_metric(results)
    attacks = results["attacks"]
    head = ["variant", "bits/param", "test acc. % (mean ± sd)"]
    head += [f"{results['attack_labels'][a]} TPR@{_fpr_label(results['fprs'][0])}" for a in attacks]
    head += [f"Δ {results['attack_labels'][attacks[0]]} (Holm p)"]
    rows = []
    for v in results["variants"]:
        acc = results["accuracy"][v["key"]]
        row = [v["label"], f"{v['bits_per_parameter']:.2f}", _msd(acc, 2, pct=True)]
        row += [_iv(results["privacy"][v["key"]][a]["pooled"][name]) for a in attacks]
        cmp = results["privacy"][v["key"]][attacks[0]].get("vs_fp")
        if cmp:
            c = cmp["pooled"][name]
            row.append(f"{_f(c['estimate'])} ({_p(c.get('pvalue_holm'))})")
        else:
            row.append("—")
        rows.append(row)
    lines = [
        f"TPR at {_fpr_label(results['fprs'][0])} FPR pooled over "
        f"{results['models']['targets']} target(s) with 95 % cluster-bootstrap CIs; "
        "Δ = quantized − full precision.",
        "",
        *markdown_table(head, rows),
    ]
    return "\n".join(lines)


def _attack_table(results, attack) -> list[str]:
    names = results["metric_names"]
    head = ["variant"]
    for n in names:
        head += [f"{n} pooled [CI]", f"{n} over targets"]
    head += [f"Δ{names[0]} (Holm p)", "ΔAUC (Holm p)", "targets rejected (TPR / AUC)"]
    rows = []
    for v in results["variants"]:
        r = results["privacy"][v["key"]][attack]
        row = [v["label"]]
        for n in names:
            row += [_iv(r["pooled"][n]), _msd(r["over_targets"][n])]
        cmp = r.get("vs_fp")
        if cmp:
            c0, ca = cmp["pooled"][names[0]], cmp["pooled"]["auc"]
            row += [
                f"{_f(c0['estimate'])} ({_p(c0.get('pvalue_holm'))})",
                f"{_f(ca['estimate'])} ({_p(ca.get('pvalue_holm'))})",
                f"{cmp['n_reject_per_target'][names[0]]} / {cmp['n_reject_per_target']['auc']}"
                f" of {len(cmp['per_target'])}",
            ]
        else:
            row += ["—", "—", "—"]
        rows.append(row)
    return markdown_table(head, rows)


def _markdown(results, figures) -> str:
    c = results["config"]
    d = results["data"]
    mo = results["models"]
    st, tr, q, at, me = c["study"], c["train"], c["quant"], c["attack"], c["metrics"]
    lines = [
        f"# PTQ privacy audit: {results['study']}",
        "",
        f"Reproduction setting of {results['paper']}.",
        "",
        "## Setup",
        "",
        f"* Data: {d['name']}, audit pool of {d['n_pool']} examples (each model trains on its "
        f"keep-mask row: {min(d['members_per_target'])}–{max(d['members_per_target'])} members "
        f"per target), {d['n_test']} test examples, {d['n_classes']} classes, input "
        f"{'×'.join(map(str, d['input_shape']))}.",
        f"* Models: {c['model']['name']} {c['model']['options'] or ''}; {mo['shadows']} shadow "
        f"and {mo['targets']} target models, pkeep = {st['pkeep']}; {tr['epochs']} epochs, "
        f"{tr['optimizer']} lr {tr['lr']} ({tr['schedule']}), batch {tr['batch_size'] or 'full'}, "
        f"weight decay {tr['weight_decay']}, augmentation {'on' if tr['augment'] else 'off'} "
        f"({results['trainer']} trainer).",
        f"* Quantization (weights only, per-channel asymmetric): methods "
        f"{', '.join(q['methods']) or 'none'} × bits {', '.join(map(str, q['bits']))}"
        + (
            f", each also with the last layer at {q['decoupled_last_layer_bits']} bits"
            if q["decoupled_last_layer_bits"]
            else ""
        )
        + f"; {q['calibration_samples']} calibration examples drawn from each target's own "
        "members (the same draw for every method).",
        f"* Attacks: {', '.join(results['attack_labels'][a] for a in results['attacks'])}; "
        f"{at['n_aug']} queries per example; LiRA online "
        f"{'with' if at['online_fixed_variance'] else 'without'} fixed variance, offline "
        f"{'with' if at['offline_fixed_variance'] else 'without'}; RMIA {at['rmia_mode']} "
        f"(a = {at['rmia_a']}, γ = {at['rmia_gamma']}). Threat model: "
        + (
            "shadows quantized like the target."
            if at["quantize_shadows"]
            else "full-precision shadows, quantized target (as the paper)."
        ),
        "* bits/param: parameter-weighted mean of the nominal bit widths of the quantized "
        "model's layers (float layers count 32), as the method left them — a method may keep "
        "some layers wider (BRECQ's reference settings keep the stem and head at 8 bits, so its "
        "decoupled variant can equal the plain one).",
        f"* Statistics: {me['n_resamples']} bootstrap resamples, "
        f"{round(100 * me['confidence_level'])} % {me['method']} intervals; log-AUC on "
        f"[{me['fpr_min']:g}, 1]; Holm at α = {me['alpha']}.",
        "",
        "## Utility and privacy",
        "",
        summary_markdown(results),
    ]
    for a in results["attacks"]:
        lines += [
            f"## {results['attack_labels'][a]}",
            "",
            "Pooled: all targets' scores in one ROC, 95 % cluster-bootstrap CI (examples "
            "resampled with all their target rows). Over targets: mean ± sd of the per-target "
            "values (NaN when a target has too few non-members for the FPR level). Δ: paired "
            "bootstrap difference quantized − full precision on the same resampled examples, "
            "Holm-adjusted p-value over the quantized variants; last column: targets whose own "
            "paired test rejects after Holm over all (variant, target) pairs.",
            "",
            *_attack_table(results, a),
        ]
    lines += [
        "## Accuracy",
        "",
        "Test accuracy (%) over targets: mean ± sd, Student-t 95 % interval, and the paired drop "
        "against the same targets at full precision.",
        "",
    ]
    rows = []
    for v in results["variants"]:
        a = results["accuracy"][v["key"]]
        rows.append(
            [v["label"], f"{v['bits_per_parameter']:.2f}", _msd(a, 2, pct=True),
             f"[{_f(100 * a['low'], 2) if _ok(a['low']) else 'n/a'}, "
             f"{_f(100 * a['high'], 2) if _ok(a['high']) else 'n/a'}]",
             _msd(a["drop"], 2, pct=True)]
        )  # fmt: skip
    lines += markdown_table(["variant", "bits/param", "accuracy", "95 % t-interval", "drop"], rows)
    lines += ["## Figures", "", *[f"![{f}]({f})" for f in figures], ""]
    if results.get("warnings"):
        lines += ["## Notes and warnings", "", *[f"* {w}" for w in results["warnings"]], ""]
    t = results.get("timing", {})
    lines += [
        "## Timing",
        "",
        f"train {t.get('train_s', 0):.1f} s, quantize {t.get('quantize_s', 0):.1f} s, "
        f"attack {t.get('attack_s', 0):.1f} s, metrics {t.get('analysis_s', 0):.1f} s, total "
        f"{t.get('total_s', 0):.1f} s (this invocation; earlier ones in timing.json).",
        "",
    ]
    return "\n".join(lines)


def write_report(results: dict, out) -> list[str]:
    """Write ``report.md``, ``results.json``, CSV tables and PNG plots into ``out``.

    Returns the names of the files written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for a in results["attacks"]:
        plot_roc(results, a, out / f"roc_{a}.png")
        figures.append(f"roc_{a}.png")
    if _methods(results):
        plot_tpr_by_bits(results, out / "tpr_by_bits.png")
        plot_accuracy_by_bits(results, out / "accuracy_by_bits.png")
        figures += ["tpr_by_bits.png", "accuracy_by_bits.png"]
    plot_privacy_utility(results, out / "privacy_utility.png")
    figures.append("privacy_utility.png")
    tables = {
        "metrics.csv": _metric_rows(results),
        "accuracy.csv": _accuracy_rows(results),
        "per_target.csv": _per_target_rows(results),
    }
    return write_report_files(out, results, _markdown(results, figures), tables, figures)
