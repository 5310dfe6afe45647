"""``mis lira``: LiRA over logits you already have, every model in turn as the target.

:func:`run_lira` reads a directory in the layout of the reference LiRA code
(tensorflow/privacy ``research/mi_lira_2021``: ``experiment-*/keep.npy``,
``experiment-*/logits/*.npy``, ``y_train.npy``) or a run store holding ``keep``, ``logits``
and ``labels`` (:mod:`mis.store`), scores every model against all the others as shadows
with LiRA online and offline (Carlini et al. 2022; :func:`mis.attacks.lira_all_targets`),
and reports TPR at low FPR, AUC and log-AUC pooled over targets (cluster bootstrap: an
example and its rows for every target resampled together) and per target, with the
log-log ROC and its pointwise bands. The report opens with the verdict: how far above
chance the leak is, with its interval.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mis import metrics
from mis._validation import integer, output_dir
from mis.attacks import evaluate, lira_all_targets, lira_signal
from mis.exceptions import MisValueError, UndefinedMetricWarning
from mis.report.plots import plot_roc, save_figure
from mis.report.tables import markdown_table, write_report_files
from mis.store import RunStore, import_lira_reference
from mis.studies._common import versions

__all__ = ["MODES", "run_lira"]

log = logging.getLogger(__name__)

#: The LiRA variants scored: name → (mode, fixed variance) — the paper's "online" and
#: "offline with fixed variance" (Zhang et al. 2025, §IV-A; Carlini et al. 2022).
MODES = {"online": ("online", False), "offline": ("offline", True)}


def _open(source: Path, out: Path) -> tuple[RunStore, str]:
    """A run store with ``keep``, ``logits`` and ``labels``: ``source`` itself, or the
    reference layout imported into ``out/store``."""
    if (source / "manifest.json").is_file():
        return RunStore(source, create=False), f"run store {source}"
    if any(source.rglob("keep.npy")):
        store = out / "store"
        if (store / "manifest.json").is_file() and RunStore(store, create=False).has("logits"):
            return RunStore(store, create=False), f"reference layout {source} (imported before)"
        return import_lira_reference(source, store), f"reference layout {source}"
    raise MisValueError(
        f"source: {source} is neither a run store (manifest.json) nor a reference LiRA "
        "directory (experiment-*/keep.npy and experiment-*/logits/*.npy)"
    )


def run_lira(
    source,
    out,
    *,
    fprs=(1e-3, 1e-2),
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> dict:
    """Score every model as the target with LiRA online and offline; write the report.

    Parameters
    ----------
    source : path-like
        A reference-layout LiRA directory or a run store (``keep`` (n_models, N) bool,
        ``logits`` (n_models, N, n_aug, n_classes), ``labels`` (N,)).
    out : path-like
        Output directory: ``report.md``, ``results.json``, ``metrics.csv``,
        ``per_target.csv``, ``roc.png`` (and ``store/`` for an imported directory).
    fprs, n_resamples, confidence_level, method
        As :func:`mis.attacks.evaluate`.
    seed : int

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    source = Path(source)
    if not source.is_dir():
        raise MisValueError(f"source: {source} is not a directory")
    out = output_dir(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    integer(seed, "seed", 0)
    store, described = _open(source, out)
    for name in ("keep", "logits", "labels"):
        if not store.has(name):
            raise MisValueError(f"source: {store.path} has no array {name!r}")
    keep = np.asarray(store.load("keep"), dtype=bool)
    signals = lira_signal(store.load("logits"), store.load("labels"))
    n_models, n = keep.shape
    results: dict = {
        "source": described,
        "n_models": int(n_models),
        "n_examples": int(n),
        "fprs": list(fprs),
        "modes": {},
        "versions": versions(),
    }
    bands = {}
    groups = np.tile(np.arange(n), n_models)
    for label, (mode, fixed) in MODES.items():
        scores = lira_all_targets(signals, keep, mode=mode, fixed_variance=fixed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndefinedMetricWarning)
            ev = evaluate(
                scores, keep, fprs=fprs, n_resamples=n_resamples,
                confidence_level=confidence_level, method=method, rng=seed,
            )  # fmt: skip
        undefined = sum(issubclass(w.category, UndefinedMetricWarning) for w in caught)
        results["modes"][label] = {
            "fixed_variance": fixed,
            "pooled": ev.pooled.as_dict(),
            "per_target": [r.as_dict() for r in ev.per_target],
            "spread": {k: asdict(v) for k, v in ev.spread.items()},
        }
        if undefined:
            n_neg = (~keep).sum(axis=1)
            results.setdefault("notes", []).append(
                f"LiRA {label}: some per-target TPRs are undefined (NaN): a target has "
                f"{int(n_neg.min())}–{int(n_neg.max())} non-members, fewer than 1/FPR for the "
                "lowest FPR level; the pooled values (all targets' non-members) are defined."
            )
        bands[f"LiRA {label}"] = metrics.roc_band(
            scores.ravel(), keep.ravel(), groups=groups, rng=seed + 1
        )
    save_figure(plot_roc(bands, title="LiRA, pooled over targets"), out / "roc.png")
    metric_rows = [
        {"attack": f"lira_{label}", "metric": metric, **values}
        for label, r in results["modes"].items()
        for metric, values in r["pooled"].items()
    ]
    target_rows = [
        {"attack": f"lira_{label}", "target": t, "metric": metric, **values}
        for label, r in results["modes"].items()
        for t, per in enumerate(r["per_target"])
        for metric, values in per.items()
    ]
    files = write_report_files(
        out,
        results,
        _markdown(results),
        {"metrics.csv": metric_rows, "per_target.csv": target_rows},
        ["roc.png"],
    )
    log.info("[report] %s → %s", ", ".join(sorted(files)), out)
    return results


def _iv(d: dict) -> str:
    if not np.isfinite(d["estimate"]):
        return "n/a"
    return f"{d['estimate']:.4f} [{d['low']:.4f}, {d['high']:.4f}]"


def _markdown(results: dict) -> str:
    fpr = results["fprs"][0]
    key = f"tpr@{fpr:g}fpr"
    # the verdict speaks of the stronger attack: an auditor cares about the worst case
    label, best = max(
        results["modes"].items(),
        key=lambda kv: np.nan_to_num(kv[1]["pooled"][key]["low"], nan=-1.0),
    )
    pooled = best["pooled"]
    tpr = pooled[key]
    lines = ["# LiRA on every model as the target", "", "## Verdict", ""]
    if np.isfinite(tpr["low"]) and tpr["low"] > fpr:
        lines.append(
            f"* **The models leak membership.** LiRA {label} (the stronger of the two here), "
            f"pooled over {results['n_models']} targets: TPR at {fpr:.1%} FPR = {_iv(tpr)} "
            f"(95 % cluster bootstrap), {tpr['estimate'] / fpr:.0f}× chance (a TPR of "
            f"{fpr:.1%} is chance); AUC {pooled['auc']['estimate']:.3f}."
        )
    else:
        lines.append(
            f"* **No leak distinguishable from chance** at {fpr:.1%} FPR: the stronger attack, "
            f"LiRA {label}, has TPR = {_iv(tpr)}, whose interval reaches the chance level "
            f"{fpr:.1%}. No privacy conclusion follows at this FPR (more models or examples "
            "would narrow it)."
        )
    lines += [
        "",
        "## Pooled over targets",
        "",
        f"{results['n_models']} models, {results['n_examples']} examples: each model in turn "
        "is the target and the others are its shadows. Intervals: cluster bootstrap over "
        "examples (an example's rows for every target are resampled together).",
        "",
    ]
    names = list(pooled)
    rows = [
        [f"LiRA {label}", *[_iv(r["pooled"][m]) for m in names]]
        for label, r in results["modes"].items()
    ]
    lines += markdown_table(["attack", *names], rows)
    lines += [
        "Spread over targets (mean ± sd of the per-target values) is in `results.json`; "
        "per-target values with their intervals in `per_target.csv`.",
        "",
        "![ROC](roc.png)",
        "",
        *[f"Note: {n}" for n in dict.fromkeys(results.get("notes", []))],
        "",
        f"Input: {results['source']}.",
        "",
    ]
    return "\n".join(lines)
