"""Report of the PTQ privacy audit (:func:`mis.studies.audit.run_audit`).

:func:`write_report` turns the results dictionary into files a person reads first
(``report.md``, which opens with the verdict of :func:`mis.studies.audit.analysis.verdict`:
the full-precision leak, the accuracy cost and the change in leak of every quantizer with
Holm-adjusted p-values, the Pareto front, which quantizer to ship, and what the data can and
cannot show), files programs read (``results.json``, CSV tables) and plots:

* ``privacy_utility.png`` — TPR at the lowest FPR against test accuracy with both CIs, one
  panel per method (full precision in every panel; colour = bit width, hollow = decoupled
  last layer), so no legend covers the data;
* ``roc_<attack>.png`` — log-log ROC curves pooled over targets with pointwise bootstrap
  bands, one panel per bit width (top row plain, bottom row with the decoupled last layer),
  one curve per method plus full precision;
* ``tpr_by_bits.png`` — TPR@FPR (lowest level) against the bit width for every method, one
  panel per LiRA attack (Zhang et al. 2025, Fig. 3);
* ``accuracy_by_bits.png`` — test accuracy against the bit width (Fig. 2);
* ``metrics.csv``, ``accuracy.csv``, ``per_target.csv``, ``verdict.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mis._callables import spec_label
from mis.quant import method_label
from mis.report.plots import colormap, subplots
from mis.report.plots import save_figure as _save
from mis.report.tables import markdown_table, write_report_files
from mis.studies.audit.analysis import verdict as _verdict

__all__ = ["summary_markdown", "verdict_markdown", "write_report"]

_COLORS = {
    "rtn": "tab:gray",
    "adaround": "tab:blue",
    "brecq": "tab:green",
    "obc": "tab:orange",
    "gptq": "tab:purple",
    "gptq-refine": "tab:pink",
}
_MARKERS = {"4": "o", "2": "s", "1.58": "^", "1": "v"}


def _training(tr: dict, trainer: str) -> str:
    """How the models were trained: the user's ``train.fn`` or our trainer's settings."""
    if tr.get("fn"):
        return f"trained by your function {spec_label(tr['fn'])} (train.fn)."
    return (
        f"{tr['epochs']} epochs, {tr['optimizer']} lr {tr['lr']} ({tr['schedule']}), batch "
        f"{tr['batch_size'] or 'full'}, weight decay {tr['weight_decay']}, augmentation "
        f"{'on' if tr['augment'] else 'off'} ({trainer} trainer)."
    )


def _architecture(model: dict) -> str:
    """The architecture of a configuration's ``[model]`` table: a built-in or a factory."""
    factory = model.get("factory") or ""
    return spec_label(factory) if factory else model.get("name", "?")


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


def _method_color(method, methods) -> str:
    return _COLORS.get(method, f"C{methods.index(method) % 10}")


def _legend_axis(ax, handles, labels, title=None) -> None:
    """Use ``ax`` (a spare panel) for a figure's one legend."""
    ax.axis("off")
    if handles:
        ax.legend(
            handles,
            labels,
            loc="center left",
            fontsize=7,
            frameon=False,
            title=title,
            title_fontsize=7,
        )


def _band(results, key, attack):
    band = results["privacy"][key][attack]["roc_band"]
    arr = [
        np.asarray([x if _ok(x) else np.nan for x in band[k]], dtype=float)
        for k in ("tpr", "low", "high")
    ]
    return np.asarray(band["fpr"], dtype=float), *arr


def plot_roc(results, attack: str, path: Path) -> Path:
    """Log-log ROC curves with CI bands: one panel per bit width (second row: decoupled last
    layer), one curve per method, full precision in every panel."""
    methods = _methods(results)
    bits = _bits_order(results) or [None]
    decoupled = any(v["last_layer_bits"] for v in results["variants"] if v["method"])
    rows = 2 if decoupled else 1
    cols = len(bits)
    fig, axes = subplots(
        rows,
        cols + 1,
        figsize=(3.3 * cols + 1.6, 3.2 * rows),
        dpi=110,
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * cols + [0.5]},
    )
    fpr_min = results["config"]["metrics"]["fpr_min"]
    fp = next(v for v in results["variants"] if v["method"] is None)
    lowest = min(
        b
        for v in results["variants"]
        for b in [results["privacy"][v["key"]][attack]["roc_band"]["fpr"][0]]
    )
    floor = max(fpr_min, lowest / 1.5)
    handles = {}
    for r in range(rows):
        for c, b in enumerate(bits):
            ax = axes[r][c]
            grid = np.logspace(math.log10(floor), 0, 50)
            ax.plot(grid, grid, ls=":", color="grey", lw=0.8)
            chosen = [fp] + [
                v
                for v in results["variants"]
                if v["method"] and v["bits_label"] == b and bool(v["last_layer_bits"]) == (r == 1)
            ]
            for v in chosen:
                f, t, lo, hi = _band(results, v["key"], attack)
                if v["method"] is None:
                    color, label, lw = "black", "full precision", 1.6
                else:
                    color, label, lw = (
                        _method_color(v["method"], methods),
                        method_label(v["method"]),
                        1.1,
                    )
                (h,) = ax.plot(f, np.maximum(t, floor), color=color, lw=lw)
                ax.fill_between(
                    f, np.maximum(lo, floor), np.maximum(hi, floor), color=color, alpha=0.12, lw=0
                )
                handles.setdefault(label, h)
            title = "full precision" if b is None else f"{b}-bit"
            if r == 1:
                title += f" (last layer {results['config']['quant']['decoupled_last_layer_bits']}"
                title += "-bit)"
            ax.set(
                xscale="log",
                yscale="log",
                xlim=(floor, 1),
                ylim=(floor, 1.05),
                title=title,
                xlabel="false-positive rate",
                ylabel="true-positive rate" if c == 0 else None,
            )
            ax.title.set_fontsize(8)
            ax.grid(True, which="major", lw=0.3, alpha=0.5)
        if r == 0:
            _legend_axis(axes[r][cols], list(handles.values()), list(handles))
        else:
            axes[r][cols].axis("off")
    fig.suptitle(
        f"{results['attack_labels'][attack]}: ROC pooled over targets, 95 % bands (dotted: chance)",
        fontsize=9,
    )
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
    fig, axes = subplots(1, len(panels) + 1, figsize=(4.4 * len(panels) + 1.8, 3.6), dpi=110,
                         squeeze=False,
                         gridspec_kw={"width_ratios": [1] * len(panels) + [0.45]})  # fmt: skip
    fp = next(v for v in results["variants"] if v["method"] is None)
    for ax, panel in zip(axes.flat, panels, strict=False):
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
                    color=_method_color(method, _methods(results)),
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
    _legend_axis(axes[0][-1], *axes[0][0].get_legend_handles_labels())
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
    """Fig. 4/5 style, faceted by method: TPR at the lowest FPR (pooled, 95 % CI) against the
    test accuracy (mean over targets, Student-t 95 % interval) of every variant; full
    precision (black star) in every panel, colour = bit width, hollow = decoupled last
    layer, dotted line = chance (TPR = FPR); a TPR of 0 is drawn at the bottom edge."""
    attack = attack or _verdict(results)["attack"]
    name = _low_metric(results)
    chance = results["fprs"][0]
    floor = chance / 4
    methods = _methods(results) or [None]
    bits = _bits_order(results)
    cmap = colormap("viridis")
    cols = min(len(methods), 3)
    rows = math.ceil(len(methods) / cols)
    spare = rows * cols > len(methods)
    extra = 0 if spare else 1
    fig, axes = subplots(
        rows,
        cols + extra,
        figsize=(3.6 * cols + 1.7 * extra, 3.2 * rows),
        dpi=110,
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * cols + [0.5] * extra},
    )
    fp = next(v for v in results["variants"] if v["method"] is None)

    def point(v):
        a = results["accuracy"][v["key"]]
        raw = results["privacy"][v["key"]][attack]["pooled"][name]
        d = {k: max(raw[k], floor) if _ok(raw[k]) else raw[k] for k in ("estimate", "low", "high")}
        return a, d

    def draw(ax, v, color, marker, mfc, ms):
        a, d = point(v)
        if not (_ok(a["mean"]) and _ok(d["estimate"])):
            return None
        xerr = None
        if _ok(a["low"]) and _ok(a["high"]):
            xerr = [[max(0.0, a["mean"] - a["low"])], [max(0.0, a["high"] - a["mean"])]]
        yerr = None
        if _ok(d["low"]) and _ok(d["high"]):
            yerr = [[max(0.0, d["estimate"] - d["low"])], [max(0.0, d["high"] - d["estimate"])]]
        h = ax.errorbar(
            [100 * a["mean"]],
            [d["estimate"]],
            xerr=None if xerr is None else [[100 * x[0]] for x in xerr],
            yerr=yerr,
            color=color,
            marker=marker,
            mfc=mfc,
            ms=ms,
            ls="none",
            capsize=2,
            lw=0.8,
        )
        return h

    handles = {}
    ax_list = [axes[i // cols][i % cols] for i in range(len(methods))]
    for ax, method in zip(ax_list, methods, strict=True):
        ax.axhline(chance, ls=":", color="grey", lw=0.8)
        h = draw(ax, fp, "black", "*", "black", 9)
        if h is not None:
            handles.setdefault("full precision", h)
        for v in results["variants"]:
            if v["method"] != method or method is None:
                continue
            i = bits.index(v["bits_label"])
            color = cmap(i / max(1, len(bits) - 1) * 0.85)
            dec = bool(v["last_layer_bits"])
            h = draw(ax, v, color, "o" if not dec else "D", "none" if dec else color, 5)
            if h is not None:
                handles.setdefault(f"{v['bits_label']}-bit" + (" (last 8-bit)" if dec else ""), h)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor / 1.5)
        ax.set(
            title=method_label(method) if method else "full precision",
            xlabel="test accuracy % (mean, 95 % t-interval)",
            ylabel=f"TPR @ {_fpr_label(chance)} FPR (95 % CI)",
        )
        ax.title.set_fontsize(9)
        ax.grid(True, lw=0.3, alpha=0.5)
    leg_ax = axes[rows - 1][cols - 1] if spare else axes[0][cols]
    for i in range(len(methods), rows * cols):
        axes[i // cols][i % cols].axis("off")
    if not spare:
        for r in range(1, rows):
            axes[r][cols].axis("off")
    order = sorted(
        handles,
        key=lambda k: (
            k != "full precision",
            "last" in k,
            bits.index(k.split("-bit")[0]) if k.split("-bit")[0] in bits else 0,
        ),
    )
    _legend_axis(leg_ax, [handles[k] for k in order], order)
    fig.suptitle(
        f"Privacy–utility by method ({results['attack_labels'][attack]}; dotted: chance)",
        fontsize=9,
    )
    _save(fig, path)
    return path


# ------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------
def _pts(x, digits=2) -> str:
    """A fraction as percentage points with sign (no "-0.00")."""
    if not _ok(x):
        return "n/a"
    v = round(100 * x, digits) + 0.0
    return f"{v:+.{digits}f}"


def _get_verdict(results) -> dict:
    return results.get("verdict") or _verdict(results)


def _fp_sentence(results, v) -> str:
    fp = v["fp"]
    n_t = results["models"]["targets"]
    txt = (
        f"{v['attack_label']} TPR at {_fpr_label(v['fpr'])} FPR = {_iv(fp)} (95 % CI, pooled "
        f"over {n_t} target{'s' if n_t != 1 else ''}; a TPR of {_fpr_label(v['fpr'])} is "
        "chance)"
    )
    if _ok(fp["ratio_to_chance"]) and v["leak"] == "present":
        txt += f", {fp['ratio_to_chance']:.0f}× chance"
    if _ok(fp.get("auc")):
        txt += f"; AUC {fp['auc']:.3f}"
    if _ok(fp.get("accuracy")):
        txt += f"; test accuracy {100 * fp['accuracy']:.2f} %"
    return txt + "."


def _row_text(r, v) -> str:
    return (
        f"accuracy {_pts(-r['drop'])} points [{_pts(-r['drop_high'])}, {_pts(-r['drop_low'])}], "
        f"TPR {_f(r['tpr'])}, Δ TPR = {_f(r['delta'])} [{_f(r['delta_low'])}, "
        f"{_f(r['delta_high'])}], Holm p = {_p(r['pvalue_holm'])}"
    )


def verdict_markdown(results) -> list[str]:
    """The ``## Verdict`` section that opens ``report.md`` (see
    :func:`mis.studies.audit.analysis.verdict` for the rules)."""
    v = _get_verdict(results)
    rows = {r["key"]: r for r in v["rows"]}
    budget = 100 * v["max_accuracy_drop"]
    lines = ["## Verdict", ""]
    if v["leak"] == "none":
        lines += [
            "**The full-precision model's leak is not distinguishable from chance, so no "
            "privacy conclusion follows from this audit.** " + _fp_sentence(results, v) + " The "
            "interval reaches chance: the attack does not tell members from non-members at this "
            "FPR, so there is no leak for quantization to reduce. Differences between the "
            "quantizers below are noise around zero leak and must not be read as one being more "
            "private than another; choose a quantizer on accuracy and size alone.",
            "",
        ]
    else:
        lines += [f"**Full-precision leak.** {_fp_sentence(results, v)}", ""]
        if v["recommended"]:
            r = rows[v["recommended"]]
            others = [
                x
                for x in sorted(v["rows"], key=lambda x: x["tpr"])
                if x["significance"] == "lower"
                and _ok(x["drop_high"] if _ok(x["drop_high"]) else x["drop"])
                and (x["drop_high"] if _ok(x["drop_high"]) else x["drop"]) <= v["max_accuracy_drop"]
                and x["key"] != r["key"]
            ]
            txt = (
                f"**Ship {r['label']}.** Of the quantizers whose accuracy cost stays within "
                f"{budget:g} point(s) (report.max_accuracy_drop; the upper end of its 95 % "
                "interval) and that lower the leak significantly (Holm-adjusted paired test), it "
                f"leaks least: {_row_text(r, v)}."
            )
            if others:
                txt += (
                    " Next within the budget: "
                    + ", ".join(f"{x['label']} (TPR {_f(x['tpr'])})" for x in others[:3])
                    + (f" and {len(others) - 3} more (table below)" if len(others) > 3 else "")
                    + "; the audit tests each quantizer against full precision, not against the "
                    "others, so compare their TPR intervals before preferring one."
                )
            for k in v.get("borderline", []):
                b = rows[k]
                txt += (
                    f" {b['label']} leaks less still (TPR {_f(b['tpr'])}) at a mean cost within "
                    f"the budget, but its interval reaches past it: accuracy "
                    f"{_pts(-b['drop'])} points [{_pts(-b['drop_high'])}, {_pts(-b['drop_low'])}]."
                )
            lines += [txt, ""]
        else:
            txt = (
                f"**No quantizer within the accuracy budget ({budget:g} point(s), "
                "report.max_accuracy_drop) lowers the leak significantly:** shipping any of "
                "them keeps about the full-precision leak."
            )
            if v["best_beyond_budget"]:
                r = rows[v["best_beyond_budget"]]
                txt += f" The cheapest significant reduction is {r['label']}: {_row_text(r, v)}."
            else:
                txt += " None of the quantizers lowers it significantly at any accuracy cost."
            lines += [txt, ""]
    head = [
        "quantizer",
        "bits/param",
        "accuracy Δ (points, 95 % CI)",
        f"TPR@{_fpr_label(v['fpr'])}",
        "Δ TPR (95 % CI)",
        "Holm p",
        "leak vs FP",
        "Pareto",
    ]
    table = []
    for r in v["rows"]:
        mark = {"lower": "lower", "higher": "HIGHER", "n.s.": "n.s."}
        table.append(
            [
                ("**" + r["label"] + "**") if r["key"] == v["recommended"] else r["label"],
                _f(r["bits_per_parameter"], 2),
                f"{_pts(-r['drop'])} [{_pts(-r['drop_high'])}, {_pts(-r['drop_low'])}]"
                + (" *" if r["drop_significant"] else ""),
                _iv({"estimate": r["tpr"], "low": r["tpr_low"], "high": r["tpr_high"]}),
                f"{_f(r['delta'])} [{_f(r['delta_low'])}, {_f(r['delta_high'])}]",
                _p(r["pvalue_holm"]),
                mark[r["significance"]],
                "yes" if r["pareto"] else "",
            ]
        )
    lines += [
        f"Every quantizer against the same targets at full precision ({v['attack_label']}; "
        "accuracy Δ: mean paired change of test accuracy over targets, Student-t interval, * = "
        "interval excludes 0; Δ TPR: paired cluster-bootstrap difference quantized − full "
        "precision, p-value Holm-adjusted over all quantizers; *lower*/*HIGHER*: significant at "
        f"α = {results.get('tests', {}).get('alpha', 0.05)}).",
        "",
        *markdown_table(head, table),
    ]
    names = {r["key"]: r for r in v["rows"]}
    fp_acc = v["fp"]["accuracy"]
    parts = []
    for k in v["pareto"]:
        if k in names:
            r = names[k]
            if not r["drop_significant"]:
                sig = ["accuracy change n.s."]
            else:
                sig = [
                    "accuracy cost significant" if r["drop"] > 0 else "accuracy gain significant"
                ]
            sig.append(
                {
                    "lower": "leak significantly lower",
                    "higher": "leak significantly HIGHER",
                    "n.s.": "leak change n.s.",
                }[r["significance"]]
            )
            parts.append(
                f"{r['label']} ({100 * r['accuracy']:.2f} %, TPR {_f(r['tpr'])}; {', '.join(sig)})"
            )
        else:
            parts.append(f"full precision ({100 * fp_acc:.2f} %, TPR {_f(v['fp']['estimate'])})")
    lines += [
        "**Accuracy–leak Pareto front** (point estimates; no other variant is both at least as "
        "accurate and at most as leaky): " + "; ".join(parts) + ".",
        "",
    ]
    res = v["resolution"]
    d = results.get("data", {})
    c = results.get("config", {})
    can = (
        f"**What this data can and cannot show.** The {res['n_targets']} targets' "
        f"{res['n_nonmembers_pooled']:,} non-members resolve FPRs down to "
        f"{_f(res['smallest_fpr'], 6) if res['smallest_fpr'] else 'n/a'}"
    )
    if _ok(res.get("median_delta_halfwidth")):
        can += (
            f", and changes of the TPR at {_fpr_label(v['fpr'])} FPR smaller than about "
            f"±{res['median_delta_halfwidth']:.4f} (the median half-width of the paired 95 % "
            "intervals) cannot be told from zero: a non-significant Δ is not evidence that two "
            "quantizers leak alike"
        )
    can += (
        f". The audit measures one architecture ({_architecture(c.get('model', {}))}) trained "
        f"on a pool of {d.get('n_pool', '?'):,} {d.get('name', '?')} examples against this attack "
        "(shadows at full precision); it does not show how larger models, other data or "
        "stronger attacks behave, and its intervals treat the targets as exchangeable."
        if isinstance(d.get("n_pool"), int)
        else "."
    )
    if v["leak"] == "none":
        can += (
            " With no measurable full-precision leak it cannot rank the quantizers by privacy "
            "at all."
        )
    lines += [can, ""]
    return lines


def _summary_table(results) -> list[str]:
    """The main table: accuracy and pooled TPR at the lowest FPR of every attack, with the
    Holm-adjusted p-value of the paired test against full precision (the verdict's attack)."""
    v = _get_verdict(results)
    name = _low_metric(results)
    attacks = results["attacks"]
    head = ["variant", "bits/param", "test acc. % (mean ± sd)"]
    head += [f"{results['attack_labels'][a]} TPR@{_fpr_label(results['fprs'][0])}" for a in attacks]
    head += [f"Δ {results['attack_labels'][v['attack']]} (Holm p)"]
    rows = []
    for var in results["variants"]:
        acc = results["accuracy"][var["key"]]
        row = [var["label"], f"{var['bits_per_parameter']:.2f}", _msd(acc, 2, pct=True)]
        row += [_iv(results["privacy"][var["key"]][a]["pooled"][name]) for a in attacks]
        cmp = results["privacy"][var["key"]][v["attack"]].get("vs_fp")
        if cmp:
            c = cmp["pooled"][name]
            row.append(f"{_f(c['estimate'])} ({_p(c.get('pvalue_holm'))})")
        else:
            row.append("—")
        rows.append(row)
    return [
        f"TPR at {_fpr_label(results['fprs'][0])} FPR pooled over "
        f"{results['models']['targets']} target(s) with 95 % cluster-bootstrap CIs; "
        "Δ = quantized − full precision.",
        "",
        *markdown_table(head, rows),
    ]


def summary_markdown(results) -> str:
    """The verdict's headline, then the main table (:func:`_summary_table`): what ``mis audit``
    prints."""
    v = _get_verdict(results)
    if v["leak"] == "none":
        head_line = (
            "Verdict: the full-precision leak is not distinguishable from chance; no "
            "privacy conclusion follows."
        )
    elif v["recommended"]:
        r = next(x for x in v["rows"] if x["key"] == v["recommended"])
        head_line = (
            f"Verdict: ship {r['label']} (accuracy {_pts(-r['drop'])} points, Δ TPR "
            f"{_f(r['delta'])}, Holm p {_p(r['pvalue_holm'])})."
        )
    else:
        head_line = (
            "Verdict: no quantizer within the accuracy budget lowers the leak significantly."
        )
    return "\n".join([head_line, "", *_summary_table(results)])


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
        *verdict_markdown(results),
        f"Audit protocol of {results['paper']}.",
        "",
        "## Setup",
        "",
        f"* Data: {d['name']}, audit pool of {d['n_pool']} examples (each model trains on its "
        f"keep-mask row: {min(d['members_per_target'])}–{max(d['members_per_target'])} members "
        f"per target), {d['n_test']} test examples, {d['n_classes']} classes, input "
        f"{'×'.join(map(str, d['input_shape']))}.",
        f"* Models: {_architecture(c['model'])} {c['model']['options'] or ''}; {mo['shadows']} "
        f"shadow and {mo['targets']} target models, pkeep = {st['pkeep']}; "
        + _training(tr, results["trainer"]),
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
        *_summary_table(results),
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
    every = t.get("all_invocations") or []
    if len(every) > 1:  # a resumed audit: what each invocation did (timing.json)
        names = ["train", "quantize", "attack", "analysis"]
        rows = [
            [e["invocation"], str(e["jobs_run"])]
            + [f"{e['stages_s'][k]:.1f}" if k in e["stages_s"] else "—" for k in names]
            + [f"{sum(e['stages_s'].values()):.1f}"]
            for e in every
        ]
        lines += [
            "Every invocation of this audit (timing.json, seconds; an invocation that resumes "
            "skips the finished jobs):",
            "",
            *markdown_table(["invocation", "jobs run", *names, "sum"], rows),
        ]
    by = t.get("quantize_by_method") or {}
    if by:
        n = t.get("quantize_jobs_per_method", 0)
        parts = [
            f"{method_label(m)} {sec:.1f} s" + (f" ({sec / n:.2f} s per job)" if n else "")
            for m, sec in sorted(by.items(), key=lambda kv: -kv[1])
        ]
        lines += [
            "Inside the quantize stage, time spent in the quantizer itself (summed over "
            "targets; the rest is loading, calibration draws, logits and the run store): "
            + ", ".join(parts)
            + ".",
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
        "verdict.csv": [
            {k: v for k, v in r.items() if k != "label"} | {"label": r["label"]}
            for r in _get_verdict(results)["rows"]
        ],
        "metrics.csv": _metric_rows(results),
        "accuracy.csv": _accuracy_rows(results),
        "per_target.csv": _per_target_rows(results),
    }
    return write_report_files(out, results, _markdown(results, figures), tables, figures)
