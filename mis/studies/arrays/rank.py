"""``mis rank``: r_Q of quantizers you already have, ranked with significance.

From per-run r_Q values (or the validation losses they come from), :func:`run_rank` ranks
the quantizers by privacy (higher r_Q = more private; Aubinais et al. 2025), with
bootstrap-over-runs intervals, paired adjacent comparisons Holm-corrected into tie groups
(:func:`mis.security.rank_quantizers`), the stability of the ranking over subsets of runs
(:func:`mis.security.rank_stability`, Fig. 1), and writes a report that opens with its
verdict, CSV tables, ``results.json`` and the forest plot ``ranking.png``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from mis._validation import integer, output_dir, probability, sequence, string
from mis.exceptions import DegenerateStatisticWarning, MisValueError
from mis.io import TEXT_SUFFIXES, read_array, read_table
from mis.quant import quantizer_label
from mis.report.plots import plot_ranking, save_figure
from mis.report.tables import markdown_table, write_report_files
from mis.security import rank_quantizers, rank_stability, rq_batch
from mis.store import RunStore
from mis.studies._common import ranking_summary, versions
from mis.train.rq_recorder import load_rq_runs

__all__ = ["load_rq", "rq_from_losses", "run_rank"]

log = logging.getLogger(__name__)


def rq_from_losses(val_losses, qhash=None) -> np.ndarray:
    """r_Q (n_runs, n_quantizers) of validation losses (n_runs, n_quantizers, n_checkpoints,
    n_val), repeated quantized points removed by ``qhash`` (or by identical loss rows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateStatisticWarning)
        return rq_batch(val_losses, qhash, progress=False)


def load_rq(path, *, qhash=None, names=None) -> tuple[np.ndarray, list[str], str]:
    """r_Q per run and quantizer from what a user has, with the quantizer names.

    ``path`` is one of: a run store written by :meth:`mis.RQRecorder.save` (a directory);
    a ``.npy`` of validation losses (n_runs, n_quantizers, n_checkpoints, n_val), with
    ``qhash`` (n_runs, n_quantizers, n_checkpoints) to remove repeated quantized points;
    a ``.npy`` of r_Q values (n_runs, n_quantizers); or a ``.csv`` / ``.txt`` table of r_Q
    values, one row per run and one column per quantizer (the header names them).
    ``names`` (one per quantizer) overrides the names found in the input.

    Returns
    -------
    rq : ndarray, shape (n_runs, n_quantizers)
    names : list of str
    source : str
        A description of the input, for the report.
    """
    p = Path(path)
    found = None
    if p.is_dir():
        rq, found = load_rq_runs(RunStore(p, create=False))
        source = f"run store {p} ({rq.shape[0]} runs)"
    elif p.suffix.lower() in TEXT_SUFFIXES:
        header, rq = read_table(p, "input")
        found = header
        source = f"r_Q table {p}"
    else:
        arr = np.asarray(read_array(p, "input"), dtype=np.float64)
        if arr.ndim == 4:
            qh = None if qhash is None else np.asarray(read_array(qhash, "--qhash"))
            rq = rq_from_losses(arr, qh)
            source = f"validation losses {p} {arr.shape}" + (
                f" with hashes {qhash}" if qh is not None else ""
            )
        elif arr.ndim == 2:
            if qhash is not None:
                raise MisValueError(
                    "--qhash goes with validation losses (a 4-D array), not r_Q values"
                )
            rq = arr
            source = f"r_Q values {p}"
        else:
            raise MisValueError(
                f"input: {p} holds an array of shape {arr.shape}; expected validation losses "
                "(n_runs, n_quantizers, n_checkpoints, n_val) or r_Q values (n_runs, n_quantizers)"
            )
    n_q = rq.shape[1]
    if names is not None:
        names = list(sequence(names, "--names", string))
    else:
        names = list(found) if found else [f"q{j}" for j in range(n_q)]
    if len(names) != n_q:
        raise MisValueError(f"--names must name the {n_q} quantizers; got {len(names)}: {names}")
    return rq, names, source


def _default_k_runs(n_runs: int) -> tuple[int, ...]:
    sizes = [k for k in (5, 10, 20, 50, 100, 200) if k < n_runs]
    return tuple(sizes) or (max(1, n_runs // 2),)


def run_rank(
    rq,
    names,
    out,
    *,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    k_runs=None,
    n_subsets: int = 100,
    seed: int = 0,
    source: str = "",
) -> dict:
    """Rank quantizers by r_Q and write the report into ``out``.

    Parameters
    ----------
    rq : array_like, shape (n_runs, n_quantizers)
        r_Q of every run and quantizer (+inf where a quantizer had one distinct point).
    names : sequence of str
        The quantizers, in column order.
    out : path-like
        Output directory: ``report.md``, ``results.json``, ``rq.csv``, ``ranking.csv``,
        ``ranking.png``.
    n_resamples, confidence_level
        Bootstrap over runs (:func:`mis.security.rank_quantizers`).
    k_runs, n_subsets
        Stability over random subsets of runs; default sizes 5, 10, 20, … below n_runs.
    seed : int
    source : str
        What the values were read from (for the report).

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    out = output_dir(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    rq = np.asarray(rq, dtype=np.float64)
    if rq.ndim != 2 or rq.shape[0] < 2:
        raise MisValueError(
            f"rq must have shape (n_runs >= 2, n_quantizers); got {rq.shape} — r_Q needs "
            "several independent runs"
        )
    names = [str(n) for n in names]
    level = probability(confidence_level, "confidence_level")
    integer(seed, "seed", 0)
    ranking = rank_quantizers(rq, names, n_resamples=n_resamples, confidence_level=level, rng=seed)
    ks = tuple(k_runs) if k_runs else _default_k_runs(rq.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stab = rank_stability(rq, ks, n_subsets, names=names, rng=seed + 1)
    labels = {n: quantizer_label(n) for n in names}
    results = {
        "source": source,
        "n_runs": int(rq.shape[0]),
        "quantizers": names,
        "labels": labels,
        "rq": ranking_summary(ranking),
        "tie_groups": [list(g) for g in ranking.tie_groups],
        "stability": {
            "k_runs": list(stab.k_runs),
            "n_subsets": stab.n_subsets,
            "spearman_mean": [float(v) for v in stab.spearman_mean],
            "spearman_disjoint_mean": [float(v) for v in np.nanmean(stab.spearman_disjoint, 1)],
        },
        "per_run": rq.tolist(),
        "versions": versions(),
    }
    save_figure(plot_ranking(ranking, labels=labels), out / "ranking.png")
    tables = {
        "rq.csv": [
            {"run": r, **{n: float(rq[r, j]) for j, n in enumerate(names)}}
            for r in range(rq.shape[0])
        ],
        "ranking.csv": [
            {
                "quantizer": row["name"],
                "rank": row["rank"],
                "tie_group": ranking.group_of(row["name"]) + 1,
                "mean": row["mean"]["estimate"],
                "mean_low": row["mean"]["low"],
                "mean_high": row["mean"]["high"],
                "n_inf": row["n_inf"],
            }
            for row in ranking.table()
        ],
    }
    files = write_report_files(out, results, _markdown(results, ranking), tables, ["ranking.png"])
    log.info("[report] %s → %s", ", ".join(sorted(files)), out)
    return results


def _fmt(x: float) -> str:
    return "+inf" if x == np.inf else "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _markdown(results: dict, ranking) -> str:
    lab = results["labels"]
    groups = ranking.tie_groups
    level = f"{ranking.confidence_level:.0%}"
    first = ", ".join(lab[n] for n in groups[0])
    last = ", ".join(lab[n] for n in groups[-1])
    lines = [
        "# Quantizers ranked by r_Q",
        "",
        "## Verdict",
        "",
    ]
    if len(groups) == 1:
        lines += [
            f"* **No quantizer is separable from the others** at the {level} level over "
            f"{results['n_runs']} runs: they form one tie group. On this evidence they are "
            "equally private; choose by accuracy, or add runs.",
        ]
    else:
        lines += [
            f"* **Most private** (higher r_Q): {first} — the most-private tie group.",
            f"* **Least private**: {last}.",
            f"* The {len(ranking.names)} quantizers split into {len(groups)} tie groups at "
            f"the {level} level (Holm over the adjacent comparisons): "
            + " > ".join("{" + ", ".join(lab[n] for n in g) + "}" for g in groups)
            + ". Quantizers in one group cannot be told apart on this evidence: choose among "
            "them by accuracy.",
        ]
    st = results["stability"]
    if st["k_runs"]:
        k, rho = st["k_runs"][-1], st["spearman_mean"][-1]
        lines += [
            f"* Stability: rankings from {k} random runs agree with the all-runs ranking at "
            f"mean Spearman ρ = {rho:.2f} ({st['n_subsets']} subsets).",
        ]
    lines += [
        "",
        "## Ranking",
        "",
        f"r_Q (Aubinais et al. 2025, Algorithm 1) per quantizer: {ranking.statistic} over "
        f"{results['n_runs']} runs with its {level} bootstrap interval over runs; rank 1 = "
        "most private.",
        "",
    ]
    rows = []
    for row in ranking.table():
        m = row["mean"]
        rows.append(
            [
                lab[row["name"]],
                f"{row['rank']:g}",
                ranking.group_of(row["name"]) + 1,
                f"{_fmt(m['estimate'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]",
                row["n_inf"],
            ]
        )
    lines += markdown_table(["quantizer", "rank", "tie group", "mean r_Q [CI]", "runs +inf"], rows)
    lines += [
        "Adjacent comparisons (higher − lower, paired bootstrap over runs; the interval "
        "excludes 0 exactly when p < 1 − level; Holm-adjusted over the adjacent pairs):",
        "",
    ]
    rows = [
        [
            f"{lab[a.higher]} vs {lab[a.lower]}",
            f"{_fmt(a.difference.estimate)} [{_fmt(a.difference.low)}, {_fmt(a.difference.high)}]",
            f"{a.difference.pvalue:.2g}",
            f"{a.pvalue_holm:.2g}" + (" *" if a.significant_holm else ""),
        ]
        for a in ranking.adjacent
    ]
    lines += markdown_table(["pair", "Δ mean r_Q [CI]", "p", "Holm p"], rows)
    st = results["stability"]
    lines += [
        "## Stability over subsets of runs (Fig. 1 of Aubinais et al.)",
        "",
        "Mean Spearman ρ between the ranking from k random runs and the all-runs ranking "
        "(and against the other runs only, which is not optimistic).",
        "",
    ]
    lines += markdown_table(
        ["k runs", "ρ vs all runs", "ρ vs the other runs"],
        [
            [k, f"{a:.3f}", f"{b:.3f}"]
            for k, a, b in zip(
                st["k_runs"], st["spearman_mean"], st["spearman_disjoint_mean"], strict=True
            )
        ],
    )
    lines += ["![ranking](ranking.png)", ""]
    if results["source"]:
        lines += [f"Input: `{results['source']}`.", ""]
    return "\n".join(lines)
