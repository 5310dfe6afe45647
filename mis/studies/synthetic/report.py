"""Report of the synthetic study (:func:`mis.studies.synthetic.run_synthetic`).

:func:`write_report` turns the results dictionary into files a person reads first
(``report.md``), files programs read (``results.json``, CSV tables) and plots:

* ``fig1_stability.png`` — mean Spearman ρ between the r_Q ranking of random subsets of
  k runs and the all-runs ranking, against k (top panel of Aubinais et al., Fig. 1);
* ``fig1_rank_frequency_<setting>.png`` — for each subset size, the share of subsets placing
  each quantizer at each rank (the pie charts / confusion matrices of Fig. 1);
* ``fig2_rq_vs_mis.png`` — mean r_Q against the MIS baseline per setting, with intervals and
  the Spearman ρ (Fig. 2);
* ``accuracy.csv`` / the accuracy table — original and quantized accuracies (Table 2).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from mis.report.plots import colormap, subplots
from mis.report.plots import save_figure as _save
from mis.report.tables import markdown_table, write_report_files

__all__ = ["summary_markdown", "write_report"]


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


# ------------------------------------------------------------------------------------------
# CSV rows
# ------------------------------------------------------------------------------------------
def _rq_rows(results) -> list[dict]:
    rows = []
    for s in results["settings"]:
        for q in results["quantizers"]:
            r = s["rq"]["per_quantizer"][q]
            m = (s.get("mis") or {}).get(q)
            rows.append(
                {
                    "setting": s["key"],
                    "k_modes": s["k_modes"],
                    "sigma": s["sigma"],
                    "quantizer": q,
                    "label": _label(results, q),
                    "rank_rq": r["rank"],
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
                    "mean_changes": s["rq_diagnostics"]["mean_changes"][q],
                    "share_min_at_last_kept": s["rq_diagnostics"]["share_min_at_last_kept"][q],
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
            row = {"setting": s["key"], "k_runs": k, "spearman_mean": st["spearman_mean"][i]}
            for q in results["quantizers"]:
                row[f"at_rank_{q}"] = st["at_reference_rank"][q][i]
            rows.append(row)
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


def plot_stability(results, path: Path) -> Path:
    fig, ax = subplots(figsize=(5.2, 3.6), dpi=120)
    for s in results["settings"]:
        st = s.get("stability")
        if st:
            ax.plot(st["k_runs"], st["spearman_mean"], marker="o", ms=3, lw=1.2, label=s["key"])
    ax.axhline(0.95, ls=":", color="grey", lw=1)
    ax.set(
        xscale="log",
        xlabel="runs per subset (k_run)",
        ylabel="mean Spearman ρ vs all runs",
        title="Fig. 1 (top): stability of the r_Q ranking",
    )
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.legend(fontsize=6, ncol=2)
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
    ks, sigmas = _grid(results)
    fig, axes = subplots(
        len(sigmas), len(ks), figsize=(3.0 * len(ks), 2.6 * len(sigmas)), dpi=110, squeeze=False
    )
    by = {(s["k_modes"], s["sigma"]): s for s in results["settings"]}
    cmap = colormap("tab10")
    for i, sg in enumerate(sigmas):
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
                    fmt="o",
                    ms=4,
                    color=cmap(c % 10),
                    label=_label(results, q),
                    lw=0.8,
                )
            a = s["agreement"]
            ax.set_title(f"k={k}, σ={sg:g}: ρsp={_f(a['spearman']['estimate'], 2)}", fontsize=8)
            ax.set_yscale("log")
            ax.tick_params(which="both", labelsize=6)
            if i == len(sigmas) - 1:
                ax.set_xlabel("MIS (baseline)", fontsize=7)
            if j == 0:
                ax.set_ylabel("mean r_Q", fontsize=7)
            ax.grid(True, lw=0.3, alpha=0.5)
    proxies = [
        Line2D([], [], marker="o", ls="", ms=4, color=cmap(c % 10), label=_label(results, q))
        for c, q in enumerate(results["quantizers"])
    ]
    axes[0][0].legend(handles=proxies, fontsize=5, loc="best", framealpha=0.6)
    fig.suptitle("Fig. 2: r_Q against the MIS baseline", fontsize=9)
    _save(fig, path)
    return path


# ------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------
def summary_markdown(results) -> str:
    """The opening of ``report.md``: what was run, how long it took, and the headline table."""
    return "\n".join(_summary_lines(results))


def _summary_lines(results) -> list[str]:
    cfg = results["config"]
    st, d, tr = (cfg[k] for k in ("study", "data", "train"))
    qs = results["quantizers"]
    settings = results["settings"]
    t = results["timing"]
    lines = [
        f"# {results['study']}",
        "",
        f"Synthetic validation study of {results['paper']}.",
        f"{len(settings)} mixture setting(s) (k_modes ∈ {d['k_modes']}, σ ∈ {d['sigmas']}, "
        f"dimension {d['dim']}), {st['runs']} runs per setting, {d['n_train']} training points "
        f"per run, single layer on [x, x²], {tr['epochs']} epochs of full-batch Adam "
        f"(lr {tr['lr']:g}); quantizers: {', '.join(_label(results, q) for q in qs)}.",
        "",
        f"Wall time of this invocation: {t['total_s']:.0f} s (training + trajectories "
        f"{t['train_s']:.0f} s, r_Q {t['rq_s']:.1f} s, MIS baseline {t['mis_s']:.0f} s, "
        f"analysis {t['analysis_s']:.0f} s; {t['workers']} worker(s); jobs run / skipped: "
        f"train {t['jobs']['train']['run']}/{t['jobs']['train']['skipped']}, MIS "
        f"{t['jobs']['mis']['run']}/{t['jobs']['mis']['skipped']}).",
    ]
    cpu = t.get("cpu_s")
    if cpu and (cpu["train_jobs"] or cpu["mis_jobs"]):
        lines += [
            f"Process CPU time of the jobs (independent of other load on the machine): "
            f"training + trajectories {cpu['train']:.0f} s over {cpu['train_jobs']} jobs, "
            f"MIS baseline {cpu['mis']:.0f} s over {cpu['mis_jobs']} jobs.",
        ]
    h = results.get("timing_history")
    if h and len(h["invocations"]) > 1:
        lines += [
            f"Over all {len(h['invocations'])} invocations of this output directory (see "
            f"`timing.json`): training + trajectories {h['train_s']:.0f} s for "
            f"{h['train_jobs_run']} jobs, MIS baseline {h['mis_s']:.0f} s for "
            f"{h['mis_jobs_run']} jobs (stages interrupted before their end are not counted).",
        ]
    lines += [""]
    # -- headline
    lines += ["## Headline", ""]
    head = ["setting", "most private (r_Q)", "least private (r_Q)"]
    has_mis = any(s.get("agreement") for s in settings)
    if has_mis:
        head += ["Spearman ρ(r_Q, MIS) [95% CI], p", "Kendall τ [95% CI], p"]
    rows = []
    for s in settings:
        order = s["rq"]["order"]
        row = [s["key"], _label(results, order[0]), _label(results, order[-1])]
        if has_mis:
            a = s["agreement"]
            row += [
                f"{_iv(a['spearman'], lambda x: _f(x, 2))}, p={_p(a['spearman_pvalue'])}",
                f"{_iv(a['kendall'], lambda x: _f(x, 2))}, p={_p(a['kendall_pvalue'])}",
            ]
        rows.append(row)
    lines += markdown_table(head, rows)
    summ = results["summary"]
    if "mean_spearman" in summ:
        lines += [
            f"Mean Spearman ρ over the settings: **{_f(summ['mean_spearman'])}** (paper: 0.86); "
            f"mean Kendall τ: {_f(summ['mean_kendall'])}. Intervals: bootstrap over runs; "
            "p-values: exact permutation test over the quantizer pairings.",
            "",
        ]
    elif not has_mis:
        lines += ["The MIS baseline was not run (config `mis.enabled = false`).", ""]
    return lines


def _markdown(results, figures) -> str:
    cfg = results["config"]
    d, tr, tj, mc = (cfg[k] for k in ("data", "train", "trajectory", "mis"))
    st = cfg["study"]
    qs = results["quantizers"]
    settings = results["settings"]
    has_mis = any(s.get("agreement") for s in settings)
    lines = _summary_lines(results)
    # -- ranking by r_Q
    lines += [
        "## Privacy ranking by r_Q (rank 1 = most private)",
        "",
        "Cell: rank, mean r_Q over runs [95 % bootstrap CI over runs].",
        "",
    ]
    head = ["quantizer"] + [s["key"] for s in settings]
    rows = []
    for q in qs:
        row = [_label(results, q)]
        for s in settings:
            r = s["rq"]["per_quantizer"][q]
            row.append(f"{r['rank']:g}: {_iv(r['mean'], _g)}")
        rows.append(row)
    lines += markdown_table(head, rows)
    # -- MIS baseline
    if has_mis:
        lines += [
            "## MIS baseline (discriminator, §4.2)",
            "",
            "Cell: MIS = clip(2(1 − test accuracy), 0, 1) [Clopper–Pearson 95 % CI]; test runs "
            f"held out by run ({mc['test_fraction']:.0%}).",
            "",
        ]
        variants = list(settings[0]["mis"])
        head = ["variant"] + [s["key"] for s in settings]
        rows = [
            [_label(results, v)] + [_iv(s["mis"][v]["mis"]) for s in settings] for v in variants
        ]
        lines += markdown_table(head, rows)
    # -- stability
    stabs = [s for s in settings if s.get("stability")]
    if stabs:
        ks = stabs[0]["stability"]["k_runs"]
        lines += [
            "## Stability of the r_Q ranking (Fig. 1)",
            "",
            f"Mean Spearman ρ between the ranking from k random runs and from all runs "
            f"({stabs[0]['stability']['n_subsets']} subsets per k).",
            "",
        ]
        head = ["setting"] + [f"k={k}" for k in ks]
        rows = [
            [s["key"]] + [_f(v) for v in s["stability"]["spearman_mean"]]
            for s in stabs
            if s["stability"]["k_runs"] == ks
        ]
        lines += markdown_table(head, rows)
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
    lines += [
        "## Trajectory diagnostics",
        "",
        "Mean over runs of the number of checkpoints whose quantized weights changed (an upper "
        f"bound on the distinct quantized points among {tr['epochs'] // tj['every']} "
        "checkpoints), and the share of runs whose r_Q minimum fell on the last of the "
        f"`keep_best = {tj['keep_best']}` kept points while all were filled (a high share would "
        "mean that keeping more points could lower r_Q).",
        "",
    ]
    head = ["quantizer"] + [s["key"] for s in settings]
    rows = []
    for q in qs:
        rows.append(
            [_label(results, q)]
            + [
                f"{s['rq_diagnostics']['mean_changes'][q]:.0f} / "
                f"{s['rq_diagnostics']['share_min_at_last_kept'][q]:.0%}"
                for s in settings
            ]
        )
    lines += markdown_table(head, rows)
    degenerate = [w for s in settings for w in s["rq_diagnostics"]["degenerate_warnings"]]
    if degenerate:
        lines += ["Degenerate r_Q blocks: " + "; ".join(degenerate), ""]
    # -- figures
    lines += ["## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures] + [""]
    # -- method
    lines += [
        "## Method and choices",
        "",
        f"* Checkpoints: after every {tj['every']} epoch(s) (the paper evaluates the quantized "
        "validation loss at each validation step); per run and quantizer the "
        f"{tj['keep_best'] or 'all'} distinct lowest-mean quantized checkpoints are kept "
        "(Appendix F.3: the maximum of Λ_kk is reached at low-loss points) and r_Q is "
        "min_k δ_k²/(2σ_k²) over them (Algorithm 1, stable form, duplicates removed by hash).",
        f"* Validation set: {d['n_val']} points per setting, shared by its runs; test set "
        f"{d['n_test']} points; cluster centres ~ N(0, {d['centre_scale']:g}² I), labels "
        "alternate over clusters (the paper does not say how centres are drawn).",
        f"* Quantized parameters: {tj['params']} (each tensor quantized on its own).",
        f"* MIS baseline: discriminator MLP {mc['hidden']} on [θ̄_flat, x, one-hot y, loss], "
        f"Adam lr {mc['lr']:g}, batch {mc['batch_size']}, at most {mc['epochs']} epochs with "
        f"early stopping (patience {mc['patience']}); {mc['n_members']} members and as many "
        "fresh non-members per run; the same train/test split of runs for every quantizer.",
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
        "agreement.csv": _agreement_rows(results),
        "stability.csv": _stability_rows(results),
        "accuracy.csv": _accuracy_rows(results),
    }
    return write_report_files(out, results, _markdown(results, figures), tables, figures)
