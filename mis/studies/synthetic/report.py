"""Report of the synthetic study (:func:`mis.studies.synthetic.run_synthetic`).

:func:`write_report` turns the results dictionary into files a person reads first
(``report.md``, which opens with a verdict in plain words), files programs read
(``results.json``, CSV tables) and plots:

* ``fig1_stability.png`` — mean Spearman ρ between the r_Q ranking of random subsets of
  k runs and the ranking of all runs (solid) or of the other runs (dashed), per setting
  and pooled over settings, with bootstrap-over-runs intervals (top panel of Fig. 1);
* ``fig1_rank_frequency_<setting>.png`` — for each subset size, the share of subsets placing
  each quantizer at each rank (the pie charts / confusion matrices of Fig. 1);
* ``fig2_rq_vs_mis.png`` — mean r_Q against the cross-fitted MIS per setting, with intervals
  and the Spearman ρ (Fig. 2);
* ``accuracy.csv`` / the accuracy table — original and quantized accuracies (Table 2).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from mis.report.plots import colormap, subplots
from mis.report.plots import save_figure as _save
from mis.report.tables import markdown_table, write_report_files

__all__ = ["summary_markdown", "verdict_lines", "write_report"]

#: Spearman ρ of the paper (§5.1.2), shown beside ours for context.
PAPER_MEAN_SPEARMAN = 0.86


def _f(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "inf" if x == math.inf else "n/a"
    return f"{x:.{digits}f}"


def _g(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == math.inf:
        return "inf"
    return f"{x:.3g}"


def _iv(d, fmt=_f) -> str:
    return f"{fmt(d['estimate'])} [{fmt(d['low'])}, {fmt(d['high'])}]"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _label(results, q) -> str:
    return results["labels"].get(q, q)


def _labels(results, qs) -> str:
    return ", ".join(_label(results, q) for q in qs)


def _level(results) -> float:
    return results["config"]["analysis"]["confidence_level"]


# ------------------------------------------------------------------------------------------
# CSV rows
# ------------------------------------------------------------------------------------------
def _group_index(s) -> dict:
    return {q: i + 1 for i, g in enumerate(s["rq"]["tie_groups"]) for q in g}


def _rq_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        groups = _group_index(s)
        for q in results["quantizers"]:
            r = s["rq"]["per_quantizer"][q]
            m = (s.get("mis") or {}).get(q)
            d = s["rq_diagnostics"]
            rows.append(
                {
                    "setting": s["key"],
                    "k_modes": s["k_modes"],
                    "sigma": s["sigma"],
                    "quantizer": q,
                    "label": _label(results, q),
                    "rank_rq": r["rank"],
                    "tie_group": groups[q],
                    "rq_mean": r["mean"]["estimate"],
                    "rq_mean_low": r["mean"]["low"],
                    "rq_mean_high": r["mean"]["high"],
                    "rq_median": r["median"]["estimate"],
                    "rq_n_inf": r["n_inf"],
                    "mis": m["mis"]["estimate"] if m else None,
                    "mis_low": m["mis"]["low"] if m else None,
                    "mis_high": m["mis"]["high"] if m else None,
                    "acc_test": s["accuracy"]["test"][q],
                    "acc_train": s["accuracy"]["train"][q],
                    "mean_distinct": d["mean_distinct"][q],
                    "mean_argmin_rank": d["mean_argmin_rank"][q],
                    "runs_changed_by_keep_best": d["runs_changed_by_kept"][q],
                }
            )
    return rows


def _adjacent_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        for a in s["rq"]["adjacent"]:
            d = a["difference"]
            rows.append(
                {
                    "setting": s["key"],
                    "higher": a["higher"],
                    "lower": a["lower"],
                    "difference": d["estimate"],
                    "low": d["low"],
                    "high": d["high"],
                    "pvalue": d["pvalue"],
                    "pvalue_holm": a["pvalue_holm"],
                    "significant_holm": a["significant_holm"],
                }
            )
    return rows


def _agreement_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        a = s.get("agreement")
        if not a:
            continue
        rows.append(
            {
                "setting": s["key"],
                "k_modes": s["k_modes"],
                "sigma": s["sigma"],
                "spearman": a["spearman"]["estimate"],
                "spearman_low": a["spearman"]["low"],
                "spearman_high": a["spearman"]["high"],
                "spearman_pvalue": a["spearman_pvalue"],
                "kendall": a["kendall"]["estimate"],
                "kendall_low": a["kendall"]["low"],
                "kendall_high": a["kendall"]["high"],
                "kendall_pvalue": a["kendall_pvalue"],
                "permutation": a["permutation"],
            }
        )
    return rows


def _stability_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        st = s.get("stability")
        if not st:
            continue
        for i, k in enumerate(st["k_runs"]):
            row = {
                "setting": s["key"],
                "k_runs": k,
                "spearman_mean": st["spearman_mean"][i],
                "spearman_low": st["spearman_ci"][i][0],
                "spearman_high": st["spearman_ci"][i][1],
                "spearman_disjoint_mean": st["spearman_disjoint_mean"][i],
                "spearman_disjoint_low": st["spearman_disjoint_ci"][i][0],
                "spearman_disjoint_high": st["spearman_disjoint_ci"][i][1],
            }
            for q in results["quantizers"]:
                row[f"at_rank_{q}"] = st["at_reference_rank"][q][i]
            rows.append(row)
    pooled = results["summary"].get("stability_pooled")
    if pooled:
        for i, k in enumerate(pooled["k_runs"]):
            rows.append(
                {
                    "setting": "pooled",
                    "k_runs": k,
                    "spearman_mean": pooled["spearman_mean"][i],
                    "spearman_low": pooled["spearman_ci"][i][0],
                    "spearman_high": pooled["spearman_ci"][i][1],
                    "spearman_disjoint_mean": pooled["spearman_disjoint_mean"][i],
                    "spearman_disjoint_low": pooled["spearman_disjoint_ci"][i][0],
                    "spearman_disjoint_high": pooled["spearman_disjoint_ci"][i][1],
                }
            )
    return rows


def _accuracy_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        acc = s["accuracy"]
        orig = acc["test"]["original"]
        for v in [*results["quantizers"], "original"]:
            rows.append(
                {
                    "setting": s["key"],
                    "k_modes": s["k_modes"],
                    "sigma": s["sigma"],
                    "variant": v,
                    "label": _label(results, v),
                    "acc_test": acc["test"][v],
                    "acc_test_sd_over_runs": acc["test_sd"][v],
                    "relative_to_original": acc["test"][v] / orig if orig else None,
                    "acc_train": acc["train"][v],
                }
            )
    return rows


# ------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------
def _grid(results):
    ks = sorted({s["k_modes"] for s in results["settings"]})
    sigmas = sorted({s["sigma"] for s in results["settings"]})
    return ks, sigmas


def _band(ax, ks, ci, color, alpha=0.15):
    lo = [c[0] for c in ci]
    hi = [c[1] for c in ci]
    if all(v is not None and math.isfinite(v) for v in lo + hi):
        ax.fill_between(ks, lo, hi, color=color, alpha=alpha, lw=0)


def plot_stability(results, path: Path) -> Path:
    """Two panels (against all runs; against the other runs), a curve per setting and the
    pooled curve, with bootstrap-over-runs bands."""
    fig, axes = subplots(1, 3, figsize=(12.0, 4.0), dpi=100, width_ratios=[1, 1, 0.45])
    cmap = colormap("tab10")
    pooled = results["summary"].get("stability_pooled")
    handles = []
    n_set = sum(1 for s in results["settings"] if s.get("stability"))
    light = 0.15 if n_set <= 3 else 0.05  # many settings: faint bands, the pooled one on top
    for c, s in enumerate(s for s in results["settings"] if s.get("stability")):
        st = s["stability"]
        col = cmap(c % 10)
        for ax, mean, ci in (
            (axes[0], st["spearman_mean"], st["spearman_ci"]),
            (axes[1], st["spearman_disjoint_mean"], st["spearman_disjoint_ci"]),
        ):
            ax.plot(st["k_runs"], mean, marker="o", ms=3, lw=1.2, color=col)
            _band(ax, st["k_runs"], ci, col, light)
        handles.append(Line2D([], [], marker="o", ms=3, lw=1.2, color=col, label=s["key"]))
    if pooled:
        for ax, mean, ci in (
            (axes[0], pooled["spearman_mean"], pooled["spearman_ci"]),
            (axes[1], pooled["spearman_disjoint_mean"], pooled["spearman_disjoint_ci"]),
        ):
            ax.plot(pooled["k_runs"], mean, color="black", lw=2.2, ls="--")
            _band(ax, pooled["k_runs"], ci, "black", 0.25)
        handles.append(Line2D([], [], color="black", lw=2.2, ls="--", label="pooled (all cells)"))
    titles = ("against all runs (Fig. 1's reading)", "against the other runs (disjoint)")
    ks = sorted(
        {k for s in results["settings"] if s.get("stability") for k in s["stability"]["k_runs"]}
    )
    for ax, title in zip(axes[:2], titles, strict=True):
        ax.axhline(0.95, ls=":", color="grey", lw=1)
        ax.set(xscale="log", xlabel="runs per subset (k_run)", title=title)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylabel("mean Spearman ρ of the r_Q ranking")
        ax.grid(True, lw=0.3, alpha=0.5)
    axes[2].set_axis_off()
    axes[2].legend(handles=handles, loc="center left", fontsize=8, frameon=False)
    level = _level(results)
    fig.suptitle(
        f"Fig. 1: stability of the r_Q ranking (bands: {level:.0%} basic bootstrap intervals, "
        "runs resampled)",
        fontsize=10,
    )
    _save(fig, path)
    return path


def plot_rank_frequency(results, setting, path: Path) -> Path:
    """Heatmaps: row = quantizer (all-runs order), column = rank, colour = share of subsets."""
    st = setting["stability"]
    names = results["quantizers"]
    order = [names.index(q) for q in st["reference_order"]]
    freq = np.asarray(st["frequencies"])  # (n_k, Q, Q)
    n_k = len(st["k_runs"])
    fig, axes = subplots(1, n_k, figsize=(2.3 * n_k + 0.8, 3.1), dpi=110, squeeze=False)
    for i, ax in enumerate(axes[0]):
        m = freq[i][order]
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(f"{st['k_runs'][i]} runs", fontsize=8)
        ax.set_xticks(range(len(names)), [str(r + 1) for r in range(len(names))], fontsize=6)
        labels = [_label(results, q) for q in st["reference_order"]] if i == 0 else []
        ax.set_yticks(range(len(names)) if i == 0 else [], labels, fontsize=6)
        ax.set_xlabel("rank (1 = most private)", fontsize=6)
        for a in range(len(names)):
            for b in range(len(names)):
                if m[a, b] >= 0.05:
                    ax.text(
                        b,
                        a,
                        f"{m[a, b]:.2f}"[1:] if m[a, b] < 1 else "1",
                        ha="center",
                        va="center",
                        fontsize=4.5,
                        color="white" if m[a, b] > 0.6 else "black",
                    )
    fig.suptitle(
        f"Fig. 1: rank frequencies over {st['n_subsets']} subsets — {setting['key']}", fontsize=9
    )
    _save(fig, path)
    return path


def _finite_interval(d):
    """The interval with non-finite bounds collapsed onto a finite estimate (None if not)."""
    est = d["estimate"]
    if est is None or not math.isfinite(est):
        return None
    fin = lambda v: v if v is not None and math.isfinite(v) else est  # noqa: E731
    return {"estimate": est, "low": fin(d["low"]), "high": fin(d["high"])}


def plot_rq_vs_mis(results, path: Path) -> Path:
    """One panel per setting (rows σ, columns k_modes) and a legend panel on the right."""
    ks, sigmas = _grid(results)
    ncol = len(ks) + 1
    fig, axes = subplots(
        len(sigmas),
        ncol,
        figsize=(max(8.0, 3.6 * len(ks) + 1.8), max(3.6, 3.1 * len(sigmas))),
        dpi=110,
        squeeze=False,
        width_ratios=[1] * len(ks) + [0.55],
    )
    by = {(s["k_modes"], s["sigma"]): s for s in results["settings"]}
    cmap = colormap("tab10")
    markers = "osD^v<>pP*X"
    for i, sg in enumerate(sigmas):
        axes[i][-1].set_axis_off()
        for j, k in enumerate(ks):
            ax = axes[i][j]
            s = by.get((k, sg))
            if s is None or not s.get("mis"):
                ax.set_axis_off()
                continue
            for c, q in enumerate(results["quantizers"]):
                r = _finite_interval(s["rq"]["per_quantizer"][q]["mean"])
                m = _finite_interval(s["mis"][q]["mis"])
                if r is None or m is None:
                    continue  # e.g. a mean r_Q of +inf (a run with one distinct point)
                ax.errorbar(
                    m["estimate"],
                    r["estimate"],
                    xerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
                    yerr=[[max(r["estimate"] - r["low"], 0)], [max(r["high"] - r["estimate"], 0)]],
                    fmt=markers[c % len(markers)],
                    ms=5,
                    color=cmap(c % 10),
                    lw=0.9,
                    capsize=1.5,
                )
            a = s["agreement"]
            ax.set_title(
                f"k={k}, σ={sg:g}: ρ={_f(a['spearman']['estimate'], 2)} "
                f"[{_f(a['spearman']['low'], 2)}, {_f(a['spearman']['high'], 2)}], "
                f"p={_p(a['spearman_pvalue'])}",
                fontsize=9,
            )
            ax.set_yscale("log")
            ax.tick_params(which="both", labelsize=7)
            ax.set_xlabel("MIS (cross-fitted discriminator)", fontsize=8)
            if j == 0:
                ax.set_ylabel("mean r_Q", fontsize=8)
            ax.grid(True, lw=0.3, alpha=0.5)
    proxies = [
        Line2D(
            [],
            [],
            marker=markers[c % len(markers)],
            ls="",
            ms=6,
            color=cmap(c % 10),
            label=_label(results, q),
        )
        for c, q in enumerate(results["quantizers"])
    ]
    axes[0][-1].legend(handles=proxies, loc="upper left", fontsize=9, frameon=False)
    fig.suptitle(
        f"Fig. 2: r_Q against the MIS baseline ({_level(results):.0%} intervals over runs)",
        fontsize=10,
    )
    _save(fig, path)
    return path


# ------------------------------------------------------------------------------------------
# verdict
# ------------------------------------------------------------------------------------------
def _strength(rho: float) -> str:
    a = abs(rho)
    return "strong" if a >= 0.8 else "moderate" if a >= 0.5 else "weak"


def _agreement_verdict(results) -> list[str]:
    settings = [s for s in results["settings"] if s.get("agreement")]
    if not settings:
        return ["* The MIS baseline was not run (`mis.enabled = false`): no agreement to report."]
    level = _level(results)
    alpha = 1 - level
    if len(settings) == 1:
        a = settings[0]["agreement"]
        rho, lo, hi, p = (
            a["spearman"]["estimate"],
            a["spearman"]["low"],
            a["spearman"]["high"],
            a["spearman_pvalue"],
        )
        head = f"Spearman ρ(r_Q, MIS) = {_f(rho, 2)} [{_f(lo, 2)}, {_f(hi, 2)}], p = {_p(p)}"
        if p < alpha and lo is not None and lo > 0:
            words = (
                f"yes, {_strength(rho)}ly: {head} (paper: {PAPER_MEAN_SPEARMAN}); the ranking "
                "by r_Q and the discriminator's ranking agree beyond chance"
            )
        elif p < alpha:
            words = (
                f"the rank correlation is significant ({head}) but its interval over runs "
                "reaches 0 or below, so the agreement is not stable across runs"
            )
        else:
            nq = len(results["quantizers"])
            words = (
                f"not clearly: {head}; a rank correlation at least this strong arises in "
                f"{p:.0%} of the random pairings of the {nq} quantizers (exact permutation "
                f"test), so the agreement is not distinguishable from chance at the "
                f"{level:.0%} level"
            )
            if lo is not None and lo > 0:
                words += (
                    " (the interval, from resampled runs, only says that ρ stays positive "
                    "when the runs change, not that it is larger than chance)"
                )
        return [f"* **Does r_Q agree with the MIS baseline?** {words}."]
    summ = results["summary"]
    m, ci = summ.get("mean_spearman"), summ.get("mean_spearman_ci", {})
    n_sig = summ.get("n_settings_spearman_significant", 0)
    n = len(settings)
    lo, hi = ci.get("low"), ci.get("high")
    head = (
        f"mean Spearman ρ over {n} settings = {_f(m, 2)} [{_f(lo, 2)}, {_f(hi, 2)}] "
        f"(paper: {PAPER_MEAN_SPEARMAN}); ρ is significant (permutation p < {alpha:g}) in "
        f"{n_sig} of {n} settings"
    )
    if lo is not None and lo > 0 and n_sig * 2 >= n:
        words = f"yes, {_strength(m)}ly on average: {head}"
    elif lo is not None and lo > 0:
        words = (
            f"on average yes ({_strength(m)}), but not setting by setting: {head}; with "
            f"{len(results['quantizers'])} quantizers one setting alone rarely shows it"
        )
    else:
        words = f"not clearly: {head}"
    return [f"* **Does r_Q agree with the MIS baseline?** {words}."]


def _ranking_verdict(results) -> list[str]:
    settings = results["settings"]
    level = _level(results)
    n = len(settings)
    lines = []
    if n == 1:
        s = settings[0]
        g = s["rq"]["tie_groups"]
        top, bottom = g[0], g[-1]
        adj = s["rq"]["adjacent"]
        first_p = (
            adj[len(top) - 1]["pvalue_holm"] if len(top) < len(results["quantizers"]) else None
        )
        last_p = (
            adj[-len(bottom)]["pvalue_holm"] if len(bottom) < len(results["quantizers"]) else None
        )
        if len(g) == 1:
            lines.append(
                "* **Most and least private (r_Q):** no adjacent pair of the ranking is "
                f"separable at the {level:.0%} level after Holm's correction: the "
                f"{len(results['quantizers'])} quantizers form one tie group, and this study "
                "cannot tell them apart."
            )
            return lines
        lines.append(
            f"* **Most private (r_Q):** {_labels(results, top)}"
            + (f", separated from the next by Holm-adjusted p = {_p(first_p)}" if first_p else "")
            + f". **Least private:** {_labels(results, bottom)}"
            + (" (one tie group: not separable from each other)" if len(bottom) > 1 else "")
            + (f", separated from the rest by Holm-adjusted p = {_p(last_p)}" if last_p else "")
            + f". The ranking splits into {len(g)} tie groups at the {level:.0%} level: "
            + " > ".join("{" + _labels(results, gr) + "}" for gr in g)
            + "."
        )
        return lines
    most = Counter(q for s in settings for q in s["rq"]["tie_groups"][0])
    least = Counter(q for s in settings for q in s["rq"]["tie_groups"][-1])
    strict_most = Counter(s["rq"]["order"][0] for s in settings)
    strict_least = Counter(s["rq"]["order"][-1] for s in settings)

    def counts(c):
        return ", ".join(f"{_label(results, q)} {v}/{n}" for q, v in c.most_common())

    n_groups = [len(s["rq"]["tie_groups"]) for s in settings]
    lines.append(
        f"* **Most private (r_Q):** ranked first — {counts(strict_most)}; in the most-private "
        f"tie group ({level:.0%}, Holm) — {counts(most)}."
    )
    lines.append(
        f"* **Least private (r_Q):** ranked last — {counts(strict_least)}; in the "
        f"least-private tie group — {counts(least)}. Tie groups per setting: "
        f"{min(n_groups)}–{max(n_groups)} ({len(results['quantizers'])} would be a fully "
        "resolved ranking)."
    )
    return lines


def _choice_verdict(results) -> list[str]:
    settings = results["settings"]
    qs = results["quantizers"]
    lines = []
    acc = {q: float(np.mean([s["accuracy"]["test"][q] / s["accuracy"]["test"]["original"]
                             for s in settings])) for q in qs}  # fmt: skip
    split = [s for s in settings if len(s["rq"]["tie_groups"]) > 1]
    least = Counter(q for s in split for q in s["rq"]["tie_groups"][-1])
    most = Counter(q for s in split for q in s["rq"]["tie_groups"][0])
    n = len(settings)
    safe = [q for q in qs if most.get(q, 0) == n]
    risky = [q for q in qs if least.get(q, 0) == n]
    best_acc = max(qs, key=acc.get)
    worst_acc = min(qs, key=acc.get)
    text = (
        "* **For choosing a quantizer:** quantizers in one tie group are equally private on "
        "this evidence, so choose among them by accuracy. Accuracy relative to the original"
        f"{' (mean over settings)' if len(settings) > 1 else ''}: highest "
        f"{_label(results, best_acc)} {acc[best_acc]:.0%}, "
        f"lowest {_label(results, worst_acc)} {acc[worst_acc]:.0%}."
    )
    if safe:
        text += (
            f" {_labels(results, safe)} {'is' if len(safe) == 1 else 'are'} in the most-private "
            f"group of every setting, at {', '.join(f'{acc[q]:.0%}' for q in safe)} of the "
            "original's accuracy."
        )
    if risky:
        text += (
            f" {_labels(results, risky)} {'is' if len(risky) == 1 else 'are'} in the "
            "least-private group of every setting."
        )
    if n == 1:
        runs = results["config"]["study"]["runs"]
        text += f" One setting and {runs} runs: a check of the method, not a recommendation."
    lines.append(text)
    return lines


def verdict_lines(results) -> list[str]:
    """The verdict that opens ``report.md``: agreement, extremes, what it means; every claim
    is read off the numbers below it."""
    return [
        "## Verdict",
        "",
        *_agreement_verdict(results),
        *_ranking_verdict(results),
        *_choice_verdict(results),
        "",
    ]


# ------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------
def summary_markdown(results) -> str:
    """The opening of ``report.md``: what was run, how long it took, and the verdict."""
    return "\n".join(_summary_lines(results))


def _summary_lines(results) -> list[str]:
    cfg = results["config"]
    st, d, tr = (cfg[k] for k in ("study", "data", "train"))
    head = cfg["model"]["head"]
    qs = results["quantizers"]
    settings = results["settings"]
    t = results["timing"]
    model = "one logit, binary cross-entropy" if head == "binary" else "two logits, cross-entropy"
    batch = f"batch {tr['batch_size']}" if tr["batch_size"] else "full batch"
    lines = [
        f"# {results['study']}",
        "",
        f"Synthetic validation study of {results['paper']}.",
        f"{len(settings)} mixture setting(s) (k_modes ∈ {d['k_modes']}, σ ∈ {d['sigmas']}, "
        f"dimension {d['dim']}), {st['runs']} runs per setting, {d['n_train']} training points "
        f"per run, single layer on [x, x²] ({model}), {tr['epochs']} epochs of Adam "
        f"(lr {tr['lr']:g}, {batch}); quantizers: {_labels(results, qs)}.",
        "",
        f"Wall time of this invocation: {t['total_s']:.0f} s — training + r_Q "
        f"{t['train_s']:.0f} s, MIS baseline {t['mis_s']:.0f} s, analysis "
        f"{t['analysis_s']:.0f} s; {t['workers']} worker(s); jobs run / skipped: "
        f"train {t['jobs']['train']['run']}/{t['jobs']['train']['skipped']}, MIS "
        f"{t['jobs']['mis']['run']}/{t['jobs']['mis']['skipped']}.",
    ]
    cpu = t.get("cpu_s")
    if cpu and (cpu["train_jobs"] or cpu["mis_jobs"]):
        lines += [
            f"Process CPU time of the jobs (independent of other load on the machine): "
            f"training + r_Q {cpu['train']:.0f} s over {cpu['train_jobs']} jobs, "
            f"MIS baseline {cpu['mis']:.0f} s over {cpu['mis_jobs']} jobs.",
        ]
    h = results.get("timing_history")
    if h and len(h["invocations"]) > 1:
        lines += [
            f"Over all {len(h['invocations'])} invocations of this output directory (see "
            f"`timing.json`): training + r_Q {h['train_s']:.0f} s for "
            f"{h['train_jobs_run']} jobs, MIS baseline {h['mis_s']:.0f} s for "
            f"{h['mis_jobs_run']} jobs (stages interrupted before their end are not counted).",
        ]
    lines += ["", *verdict_lines(results)]
    return lines


def _markdown(results, figures) -> str:
    cfg = results["config"]
    d, tr, tj, mc, an = (cfg[k] for k in ("data", "train", "trajectory", "mis", "analysis"))
    st = cfg["study"]
    qs = results["quantizers"]
    settings = results["settings"]
    level = an["confidence_level"]
    has_mis = any(s.get("agreement") for s in settings)
    summ = results["summary"]
    lines = _summary_lines(results)
    # -- ranking by r_Q
    lines += [
        "## Privacy ranking by r_Q (rank 1 = most private)",
        "",
        f"Cell: rank, mean r_Q over runs [{level:.0%} bootstrap CI over runs], (tie group). "
        f"Tie groups: the ranking is cut where an adjacent difference is significant at the "
        f"{level:.0%} level after Holm's correction over the {len(qs) - 1} adjacent "
        "comparisons of that setting; quantizers in one group cannot be told apart.",
        "",
    ]
    head = ["quantizer"] + [s["key"] for s in settings]
    rows = []
    groups = [_group_index(s) for s in settings]
    for q in qs:
        row = [_label(results, q)]
        for s, g in zip(settings, groups, strict=True):
            r = s["rq"]["per_quantizer"][q]
            row.append(f"{r['rank']:g}: {_iv(r['mean'], _g)} ({g[q]})")
        rows.append(row)
    lines += markdown_table(head, rows)
    lines += [
        "Adjacent comparisons (higher − lower mean r_Q, paired bootstrap over runs; the "
        f"interval excludes 0 exactly when p < {1 - level:g}; `*` = significant after Holm):",
        "",
    ]
    head = ["setting", "tie groups (most private first)", "adjacent p (Holm)"]
    rows = []
    for s in settings:
        tg = " > ".join("{" + _labels(results, g) + "}" for g in s["rq"]["tie_groups"])
        ps = ", ".join(
            f"{_label(results, a['higher'])}/{_label(results, a['lower'])} "
            f"{_p(a['pvalue_holm'])}{'*' if a['significant_holm'] else ''}"
            for a in s["rq"]["adjacent"]
        )
        rows.append([s["key"], tg, ps])
    lines += markdown_table(head, rows)
    # -- MIS baseline
    if has_mis:
        lines += [
            "## MIS baseline (cross-fitted discriminator, §4.2)",
            "",
            f"Cell: MIS = clip(2(1 − accuracy), 0, 1) over the out-of-fold decisions of every run "
            f"[{level:.0%} cluster-bootstrap CI over runs]. {mc['folds']} folds by run: each "
            "run is scored by a discriminator trained on the other folds (the same folds for "
            "every quantizer of a setting).",
            "",
        ]
        variants = list(settings[0]["mis"])
        head = ["variant"] + [s["key"] for s in settings]
        rows = [
            [_label(results, v)] + [_iv(s["mis"][v]["mis"]) for s in settings] for v in variants
        ]
        lines += markdown_table(head, rows)
        w = summ.get("mis_interval_width")
        if w:
            lines += [
                f"Mean width of the MIS intervals: {_f(w['cluster_bootstrap_mean'])} "
                "(cluster bootstrap over runs, above) against "
                f"{_f(w['clopper_pearson_mean'])} for a Clopper–Pearson interval over the same "
                "decisions, which treats the decisions of one run as independent.",
            ]
        sp = summ.get("mis_seed_spread")
        if sp:
            lines += [
                f"Spread of the MIS over {mc['repeats']} discriminator seeds (max − min per "
                f"variant): mean {_f(sp['mean'])}, largest {_f(sp['max'])}. The seed moves the "
                f"MIS by about {_f(sp['seed_sd'], 4)} (SD), against {_f(sp['bootstrap_sd'], 4)} "
                "for the bootstrap over runs: the intervals above, which hold the seed fixed, "
                f"are about {math.sqrt(1 + (sp['seed_sd'] / sp['bootstrap_sd']) ** 2):.1f}× too "
                "narrow for the seed-to-seed variation of the baseline.",
            ]
        lines += [""]
        lines += [
            "## Agreement of r_Q with the MIS baseline (Fig. 2)",
            "",
            f"Spearman ρ and Kendall τ between mean r_Q and mean MIS over the {len(qs)} "
            "quantizers, "
            f"[{level:.0%} paired bootstrap CI over runs], exact permutation p-value.",
            "",
        ]
        head = ["setting", "Spearman ρ [CI], p", "Kendall τ [CI], p"]
        rows = [
            [
                s["key"],
                f"{_iv(s['agreement']['spearman'], lambda x: _f(x, 2))}, "
                f"p={_p(s['agreement']['spearman_pvalue'])}",
                f"{_iv(s['agreement']['kendall'], lambda x: _f(x, 2))}, "
                f"p={_p(s['agreement']['kendall_pvalue'])}",
            ]
            for s in settings
            if s.get("agreement")
        ]
        lines += markdown_table(head, rows)
        if "mean_spearman" in summ and len(rows) > 1:
            ci = summ["mean_spearman_ci"]
            lines += [
                f"Mean over settings: Spearman {_f(summ['mean_spearman'])} "
                f"[{_f(ci['low'])}, {_f(ci['high'])}] (settings resampled independently), "
                f"Kendall {_f(summ['mean_kendall'])}; paper: {PAPER_MEAN_SPEARMAN}.",
                "",
            ]
    # -- stability
    stabs = [s for s in settings if s.get("stability")]
    if stabs:
        ks = stabs[0]["stability"]["k_runs"]
        lines += [
            "## Stability of the r_Q ranking (Fig. 1)",
            "",
            f"Mean Spearman ρ between the ranking from k random runs and the ranking from all "
            f"runs (as Fig. 1 reads; the paper does not state its protocol) / from the other "
            f"runs (disjoint, not optimistic), over {stabs[0]['stability']['n_subsets']} "
            f"subsets per k; [{level:.0%} basic bootstrap interval of the mean, runs "
            "resampled: copies of a run in both a subset and the rest bias the percentile "
            "interval upwards, the basic interval corrects that shift].",
            "",
        ]
        head = ["setting"] + [f"k={k}" for k in ks]

        def cell(mean, ci):
            return f"{_f(mean, 2)} [{_f(ci[0], 2)}, {_f(ci[1], 2)}]"

        rows = []
        for s in stabs:
            t = s["stability"]
            if t["k_runs"] != ks:
                continue
            rows.append(
                [f"{s['key']} vs all"]
                + [cell(m, c) for m, c in zip(t["spearman_mean"], t["spearman_ci"], strict=True)]
            )
            rows.append(
                [f"{s['key']} vs rest"]
                + [
                    cell(m, c)
                    for m, c in zip(
                        t["spearman_disjoint_mean"], t["spearman_disjoint_ci"], strict=True
                    )
                ]
            )
        if len(stabs) > 1:
            for name, label in (("spearman_mean", "vs all"), ("spearman_disjoint_mean", "vs rest")):
                per = summ.get(f"stability_{name}", {})
                rows.append([f"mean of settings {label}"] + [_f(per.get(str(k)), 2) for k in ks])
        pooled = summ.get("stability_pooled")
        if pooled and pooled["k_runs"] == ks:
            rows.append(
                ["pooled vs all"]
                + [
                    cell(m, c)
                    for m, c in zip(pooled["spearman_mean"], pooled["spearman_ci"], strict=True)
                ]
            )
            rows.append(
                ["pooled vs rest"]
                + [
                    cell(m, c)
                    for m, c in zip(
                        pooled["spearman_disjoint_mean"],
                        pooled["spearman_disjoint_ci"],
                        strict=True,
                    )
                ]
            )
        lines += markdown_table(head, rows)
        if pooled:
            lines += [
                "Pooled: one ρ over all (setting, quantizer) cells at once, the subsets drawn in "
                "every setting; differences between settings enter the ranks as well.",
                "",
            ]
    # -- accuracy (Table 2)
    lines += [
        "## Accuracy of the original and quantized final models (Table 2)",
        "",
        f"Mean over runs of the accuracy on {d['n_test']} held-out test points shared by the "
        "runs of a setting (ratio to the original in parentheses). Training-set accuracies are "
        "in `accuracy.csv`.",
        "",
    ]
    head = ["σ", "k_modes"] + [_label(results, v) for v in [*qs, "original"]]
    rows = []
    for s in settings:
        acc = s["accuracy"]["test"]
        o = acc["original"]
        rows.append(
            [f"{s['sigma']:g}", s["k_modes"]]
            + [f"{acc[v]:.3f} ({acc[v] / o:.0%})" for v in qs]
            + [f"{o:.3f}"]
        )
    lines += markdown_table(head, rows)
    # -- diagnostics
    kb = summ.get("keep_best", {})
    lines += [
        "## Trajectory diagnostics",
        "",
        f"Per run and quantizer, the mean number of distinct quantized points among the "
        f"{tr['epochs'] // tj['every']} checkpoints, and the mean position (by mean loss) of "
        "the point attaining r_Q's minimum (1 = the second-best point).",
        "",
    ]
    head = ["quantizer"] + [s["key"] for s in settings]
    rows = []
    for q in qs:
        rows.append(
            [_label(results, q)]
            + [
                f"{s['rq_diagnostics']['mean_distinct'][q]:.0f} / "
                f"{s['rq_diagnostics']['mean_argmin_rank'][q]:.1f}"
                for s in settings
            ]
        )
    lines += markdown_table(head, rows)
    if kb:
        r_q = "r_Q" if not tj["keep_best"] else f"r_Q over the {tj['keep_best']} kept points"
        lines += [
            f"{r_q.capitalize() if tj['keep_best'] else 'r_Q'} uses "
            + ("every distinct quantized checkpoint. " if not tj["keep_best"] else ". ")
            + f"Keeping only the {kb['kept']} lowest-loss distinct points would have changed "
            f"r_Q in {kb['runs_changed']} of {kb['run_quantizer_pairs']} (run, quantizer) "
            f"pairs; the most distinct points in one pair: {kb['max_distinct']}; the minimum "
            f"sat at most at position {kb['max_argmin_rank']}. Peak memory of a training "
            f"worker: {_f(results['timing'].get('cpu_s', {}).get('train_peak_rss_mb'), 0)} MB "
            "(the streaming recorder keeps the int8 quantized weights of each distinct point, "
            "not its losses).",
            "",
        ]
    status = Counter()
    for s in settings:
        status.update(s["rq_diagnostics"]["status"])
    odd = {k: v for k, v in status.items() if k != "ok"}
    if odd:
        lines += [
            "Degenerate r_Q values (count of run × quantizer pairs): "
            + ", ".join(f"{k}: {v}" for k, v in odd.items())
            + ".",
            "",
        ]
    # -- figures
    lines += ["## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures] + [""]
    # -- method
    batch = f"minibatch Adam, batch {tr['batch_size']}" if tr["batch_size"] else "full-batch Adam"
    lines += [
        "## Method and choices",
        "",
        "* Model (§4.2, §5.1.1): one linear layer on [x, x²], "
        + (
            "one logit and the binary cross-entropy with logits (the paper's binary classifier)"
            if cfg["model"]["head"] == "binary"
            else "two logits and the softmax cross-entropy (the earlier variant)"
        )
        + f"; {batch} (rows reshuffled every epoch in a seeded order), lr {tr['lr']:g}, "
        f"{tr['epochs']} epochs, float64 arithmetic; the parameters are cast to float32 before "
        "quantization. Training runs in a fused numba kernel, checked against "
        "`torch.optim.Adam` on one model.",
        f"* Calibration: the batch size ({tr['batch_size'] or 'full'}) and the centre scale "
        f"({d['centre_scale']:g}; cluster centres ~ N(0, {d['centre_scale']:g}² I)) are not in "
        "the paper; they were chosen by comparing only the original models' held-out "
        "accuracies with Table 2, on other master seeds, over a grid of batch sizes "
        "{4, 8, 16, 32, full} × centre scales {0.9, …, 1.3}, before any ranking was looked "
        "at (`docs/synthetic_calibration.md`).",
        f"* Checkpoints: after every {tj['every']} epoch(s) (the paper evaluates the quantized "
        "validation loss at each validation step); r_Q is min_k δ_k²/(2σ_k²) over "
        + (
            "every distinct quantized checkpoint"
            if not tj["keep_best"]
            else f"the {tj['keep_best']} lowest-loss distinct quantized checkpoints"
        )
        + " (Algorithm 1, stable form, duplicates removed), streamed: only the quantized "
        "weights of each distinct point are kept, and losses are recomputed at the end for "
        "the points that can still attain the minimum.",
        f"* Validation set: {d['n_val']} points per setting, shared by its runs; test set "
        f"{d['n_test']} points; labels alternate over clusters (the paper does not say how "
        "centres are drawn or labelled).",
        f"* Quantized parameters: {tj['params']} (each tensor quantized on its own).",
        f"* MIS baseline: discriminator MLP {mc['hidden']} on [θ̄_flat, x, y, loss], Adam lr "
        f"{mc['lr']:g}, batch {mc['batch_size']}, at most {mc['epochs']} epochs with early "
        f"stopping (patience {mc['patience']}, {mc['val_fraction']:.0%} of a fold's training "
        f"runs); {mc['n_members']} members and as many fresh non-members per run; "
        f"cross-fitted over {mc['folds']} folds by run; interval: cluster bootstrap over runs "
        "(it does not include the randomness of the discriminator's own training: see the "
        "seed spread).",
        f"* Significance: every p-value comes from the same bootstrap distribution as the "
        f"interval beside it, so an interval excludes 0 exactly when p < {1 - level:g}; the "
        "adjacent comparisons of one ranking are Holm-corrected; 'least/most private' claims "
        "are made for tie groups, not single quantizers, where the data cannot separate them.",
        "* Stability: the paper averages Fig. 1 over settings without saying how; both "
        "readings are shown (mean of per-setting ρ, and ρ pooled over all cells), against all "
        "runs and against the other runs.",
        f"* Seeds: everything derives from study.seed = {st['seed']} (results.json → seeds).",
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
    if any(s.get("stability") for s in results["settings"]):
        plot_stability(results, out / "fig1_stability.png")
        figures.append("fig1_stability.png")
        for s in results["settings"]:
            if s.get("stability"):
                name = f"fig1_rank_frequency_{s['key']}.png"
                plot_rank_frequency(results, s, out / name)
                figures.append(name)
    if any(s.get("mis") for s in results["settings"]):
        plot_rq_vs_mis(results, out / "fig2_rq_vs_mis.png")
        figures.append("fig2_rq_vs_mis.png")
    tables = {
        "rq.csv": _rq_rows(results),
        "adjacent.csv": _adjacent_rows(results),
        "agreement.csv": _agreement_rows(results),
        "stability.csv": _stability_rows(results),
        "accuracy.csv": _accuracy_rows(results),
    }
    return write_report_files(out, results, _markdown(results, figures), tables, figures)
