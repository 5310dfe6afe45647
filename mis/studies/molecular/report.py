"""Report of the molecular study (:func:`mis.studies.molecular.run_molecular`).

* ``report.md`` — per task: r_Q per quantizer with its interval and rank, and the
  performance of the quantized models relative to the original (Tables 3–5 of Aubinais
  et al., 2025);
* ``results.json`` — everything, per run included;
* ``molecular.csv`` — one row per task and model variant;
* ``fig_privacy_performance.png`` — mean r_Q against relative performance per task
  (Fig. 3/4).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from mis.report.plots import save_figure, subplots
from mis.report.tables import markdown_table, write_report_files

__all__ = ["summary_markdown", "write_report"]

#: Metric name → (column title, the paper's table).
METRICS = {
    "r2": ("R²", "Table 4"),
    "spearman": ("Spearman vs labels", "Table 5"),
    "spearman_original": ("Spearman vs original predictions", "§5.2.2"),
    "r2_original": ("R² vs original predictions", "§5.2.2"),
    "auroc": ("AUROC", "Table 3"),
}


def _num(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == math.inf:
        return "inf"
    if abs(x) >= 1e4:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def _rel(m: dict) -> str:
    """Mean with its interval and the ratio to the original, e.g. ``0.61 [0.58, 0.64] (84%)``."""
    text = f"{_num(m['mean'])} [{_num(m['low'])}, {_num(m['high'])}]"
    rel = m.get("relative")
    if rel is not None and math.isfinite(rel):
        text += f" ({100 * rel:.0f}%)" if rel >= -1 else " (< -100%)"
    return text


def _rows(results) -> list[dict]:
    rows = []
    for t in results["tasks"]:
        per_q = t["rq"]["per_quantizer"]
        for v in ["original", *results["quantizers"]]:
            row = {"task": t["task"], "kind": t["kind"], "variant": v}
            q = per_q.get(v)
            row.update(
                rq_mean=q["mean"]["estimate"] if q else None,
                rq_low=q["mean"]["low"] if q else None,
                rq_high=q["mean"]["high"] if q else None,
                rq_rank=q["rank"] if q else None,
            )
            for m, s in t["metrics"].items():
                row.update(
                    {
                        f"{m}_mean": s[v]["mean"],
                        f"{m}_low": s[v]["low"],
                        f"{m}_high": s[v]["high"],
                        f"{m}_relative": s[v]["relative"],
                    }
                )
            rows.append(row)
    return rows


def plot_privacy_performance(results, path: Path) -> Path:
    """Mean r_Q (log axis) against relative performance, one panel per task and metric.

    Relative values below −1 (R² far below the mean predictor's) are drawn at −1 with a
    downward marker, as the paper prints them as −inf.
    """
    panels = [
        (t, m) for t in results["tasks"] for m in ("r2", "spearman", "auroc") if m in t["metrics"]
    ]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(4.8 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (t, m) in zip(axes.flat, panels, strict=False):
        for q in results["quantizers"]:
            r = t["rq"]["per_quantizer"][q]["mean"]
            rel = t["metrics"][m][q]["relative"]
            if not (math.isfinite(r["estimate"]) and r["estimate"] > 0 and math.isfinite(rel)):
                continue
            y, marker = (rel, "o") if rel >= -1 else (-1.0, "v")
            lo, hi = r["low"], r["high"]
            xerr = None
            if math.isfinite(lo) and math.isfinite(hi) and lo > 0:
                xerr = [[r["estimate"] - lo], [hi - r["estimate"]]]
            ax.errorbar(r["estimate"], y, xerr=xerr, fmt=marker, capsize=3)
            ax.annotate(
                results["labels"].get(q, q), (r["estimate"], y), fontsize=7, rotation=30,
                xytext=(3, 3), textcoords="offset points",
            )  # fmt: skip
        ax.set_xscale("log")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("mean r_Q over runs (higher = more private)")
        ax.set_ylabel(f"{METRICS[m][0]} relative to original")
        ax.set_title(f"{t['task']} ({t['kind']})")
    return save_figure(fig, path)


def summary_markdown(results) -> str:
    """``report.md`` without its figures and timing: the setting and one table per task."""
    return "\n".join(_task_lines(results))


def _task_lines(results) -> list[str]:
    cfg = results["config"]
    tr, sp, ft = cfg["train"], cfg["split"], cfg["features"]
    label = results["labels"]
    lines = [
        f"# {results['study']}",
        "",
        f"Molecular study of {results['paper']}.",
        f"{cfg['study']['runs']} runs per task, each on a random {100 * sp['subsample']:.0f} % "
        f"of the training part; {100 * sp['val_fraction']:.0f} % of each data set held out "
        f"as the validation part (r_Q and all metrics below). Two-layer MLP (hidden "
        f"{tr['hidden']}), Adam lr {tr['lr']}, batch {tr['batch_size']}, {tr['epochs']} epochs.",
        f"Features: {' + '.join(ft['kinds'])} (Morgan radius {ft['radius']}, {ft['n_bits']} "
        "bits; RDKit 2-D descriptors), standardised on the training part — a stand-in for the "
        "paper's pretrained embedders (GraphMVP, 3D-Infomax, MolR, ChemBERTa-MTR), which cannot "
        "be fetched here.",
        "",
        "r_Q: mean over runs with a bootstrap-over-runs interval; higher = more private; rank 1 "
        "= most private. Metrics: mean over runs [Student-t interval] (ratio of the mean to the "
        "original model's mean, the paper's r^val_m).",
        "",
    ]
    for t in results["tasks"]:
        lines += [
            f"## {t['task']} ({t['kind']}, {t['source']})",
            "",
            f"{t['n_val']} validation molecules, {t['n_features']} features, {t['n_runs']} runs.",
            "",
        ]
        metrics = [m for m in METRICS if m in t["metrics"]]
        head = ["model", "r_Q mean [CI]", "rank", *[METRICS[m][0] for m in metrics]]
        rows = []
        for v in ["original", *results["quantizers"]]:
            q = t["rq"]["per_quantizer"].get(v)
            rq = (
                f"{_num(q['mean']['estimate'])} [{_num(q['mean']['low'])}, "
                f"{_num(q['mean']['high'])}]"
                if q
                else "—"
            )
            rank = f"{q['rank']:g}" if q else "—"
            rows.append([label.get(v, v), rq, rank, *[_rel(t["metrics"][m][v]) for m in metrics]])
        lines += markdown_table(head, rows)
        order = t["rq"]["order"]
        sig = {(a["higher"], a["lower"]): a["significant"] for a in t["rq"]["adjacent"]}
        chain = label.get(order[0], order[0])
        for a, b in itertools.pairwise(order):
            chain += (" ≫ " if sig.get((a, b)) else " > ") + label.get(b, b)
        lines += [
            f"Ranking by r_Q, most private first (≫: the adjacent difference's interval "
            f"excludes 0): {chain}.",
            "",
        ]
        diag = t.get("rq_diagnostics")
        if diag:
            kept = ", ".join(
                f"{label.get(q, q)} {diag['mean_distinct_kept'][q]:.1f}"
                for q in results["quantizers"]
            )
            lines += [f"Distinct quantized checkpoints behind r_Q (mean over runs): {kept}.", ""]
            cut = [q for q in results["quantizers"] if diag["share_min_at_last_kept"][q] > 0]
            if cut:
                lines += [
                    "The minimum of r_Q sat at the last kept checkpoint in some runs of "
                    + ", ".join(
                        f"{label.get(q, q)} ({100 * diag['share_min_at_last_kept'][q]:.0f} %)"
                        for q in cut
                    )
                    + ": raise trajectory.keep_best to check it.",
                    "",
                ]
        if t["degenerate"]:
            lines += ["Warnings: " + "; ".join(t["degenerate"]), ""]
    return lines


def _markdown(results, figures) -> str:
    lines = _task_lines(results)
    for f in figures:
        lines += [f"![{f}]({f})", ""]
    tm = results["timing"]
    lines += [
        "## Timing",
        "",
        f"Training and trajectories {tm['train_s']:.1f} s in this call ({tm['jobs_run']} job(s) "
        f"run, {tm['jobs_skipped']} already done; CPU time of all jobs "
        f"{tm['cpu_seconds_jobs']:.1f} s); analysis {tm['analysis_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def write_report(results: dict, out) -> list[str]:
    """Write ``report.md``, ``results.json``, ``molecular.csv`` and the plot into ``out``.

    Returns the names of the files written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    if any(np.isfinite(t["rq"]["per_quantizer"][q]["mean"]["estimate"])
           for t in results["tasks"] for q in results["quantizers"]):  # fmt: skip
        plot_privacy_performance(results, out / "fig_privacy_performance.png")
        figures.append("fig_privacy_performance.png")
    tables = {"molecular.csv": _rows(results)}
    return write_report_files(out, results, _markdown(results, figures), tables, figures)
