"""Metrics, intervals and paired tests of the PTQ privacy audit (stage 5 of
:func:`mis.studies.audit.run_audit`).

For every variant (full precision, and method × bits × decoupled last layer) and attack:

* **Per target** — :func:`mis.attacks.evaluate`: TPR at each FPR level, AUC and log-AUC
  (:func:`mis.metrics.log_roc_auc`, normalised area under TPR against log10 FPR on
  [fpr_min, 1]) with percentile (or BCa) bootstrap intervals over examples, members and
  non-members resampled separately.
* **Pooled over targets** — the (score, membership) pairs of all targets in one ROC; the
  interval comes from a cluster bootstrap in which an example and its rows for every target
  are drawn together (they are not independent). TPR@0.1 % FPR needs at least 1,000
  non-members: a single digits target has fewer, so only the pooled value is defined there.
* **Over targets** — mean, standard deviation (ddof 1) and the Student-t interval
  ``mean ± t_{(1+c)/2, T−1} · sd / √T`` of the per-target point estimates (the paper's
  "mean over 10 seeds"), likewise for the test accuracy and its paired drop against full
  precision.
* **Paired tests** — :func:`mis.metrics.compare_roc` of the quantized scores against the
  full-precision scores of the same targets on the same resampled examples (difference =
  quantized − full precision; negative = less leakage): pooled over targets (cluster bootstrap)
  and per target. Holm's step-down correction (:func:`mis.metrics.holm`, as ``statsmodels``
  ``multipletests(method="holm")``) controls the family-wise error at ``metrics.alpha`` within
  each family: for one attack and one metric, the pooled tests of all quantized variants form
  one family, the per-target tests of all (variant, target) pairs another. Undefined p-values (a
  TPR below the resolvable FPR) are left out of the family.
* **ROC bands** — pointwise bootstrap intervals of the pooled TPR on a log-spaced FPR grid
  from the resolvable floor ``1/n_non-members`` to 0.99 (``metrics.band_points`` points).

Each (variant, attack) result is cached as ``<out>/analysis/<variant>/<attack>.json`` (seeded,
so a cached result equals a recomputed one) and skipped when present.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np

from mis import metrics
from mis._progress import progress_bar
from mis.attacks import evaluate
from mis.exceptions import UndefinedMetricWarning
from mis.metrics import holm, t_interval
from mis.store import atomic_write_text
from mis.studies._common import derive_seed
from mis.studies.audit.config import ATTACK_LABELS, Config, Variant, bits_label
from mis.studies.audit.jobs import quant_name
from mis.studies.audit.seeds import BAND, BOOT, TESTS

__all__ = ["analyse", "pareto_front", "verdict"]

log = logging.getLogger(__name__)


def _band_grid(n_neg: int, points: int) -> np.ndarray:
    lo = 1.0001 / n_neg
    return np.logspace(math.log10(lo), math.log10(0.99), points)


def _analyse_one(cfg: Config, v: Variant, attack: str, scores, fp_scores, keep_t) -> dict:
    """Metrics of one (variant, attack): see the module docstring."""
    m = cfg.metrics
    seed = cfg.study.seed
    common = dict(
        n_resamples=m.n_resamples,
        confidence_level=m.confidence_level,
        method=m.method,
        fpr_min=m.fpr_min,
    )
    n_t, n = scores.shape
    ev = evaluate(scores, keep_t, fprs=m.fprs, rng=derive_seed(seed, BOOT, v.key, attack), **common)
    names = ev.pooled.names()
    table = ev.per_target_table()  # (T, len(names) + 1): ..., attack accuracy
    res = {
        "pooled": ev.pooled.as_dict(),
        "pooled_attack_accuracy": ev.pooled_accuracy,
        "per_target": [r.as_dict() for r in ev.per_target],
        "per_target_attack_accuracy": [float(a) for a in ev.per_target_accuracy],
        "over_targets": {
            name: t_interval(table[:, i], m.confidence_level)
            for i, name in enumerate([*names, "attack_accuracy"])
        },
    }
    flat_s = np.ascontiguousarray(scores).ravel()
    flat_k = np.ascontiguousarray(keep_t).ravel()
    groups = np.tile(np.arange(n), n_t) if n_t > 1 else None
    if fp_scores is not None:
        flat_fp = np.ascontiguousarray(fp_scores).ravel()
        pooled = metrics.compare_roc(
            flat_s, flat_fp, flat_k, fprs=m.fprs, groups=groups,
            rng=derive_seed(seed, TESTS, v.key, attack), **common,
        )  # fmt: skip
        per = [
            metrics.compare_roc(
                scores[t], fp_scores[t], keep_t[t], fprs=m.fprs,
                rng=derive_seed(seed, TESTS, v.key, attack, t + 1), **common,
            ).as_dict()
            for t in range(n_t)
        ]  # fmt: skip
        res["vs_fp"] = {"pooled": pooled.as_dict(), "per_target": per}
    n_neg = int((~flat_k.astype(bool)).sum())
    grid = _band_grid(n_neg, m.band_points)
    band = metrics.bootstrap_roc(
        flat_s, flat_k, fprs=grid, groups=groups, n_resamples=m.band_resamples,
        confidence_level=m.confidence_level, fpr_min=m.fpr_min,
        rng=derive_seed(seed, BAND, v.key, attack),
    )  # fmt: skip
    res["roc_band"] = {
        "fpr": grid.tolist(),
        "tpr": [iv.estimate for iv in band.tpr],
        "low": [iv.low for iv in band.tpr],
        "high": [iv.high for iv in band.tpr],
    }
    return res


def _cached(path: Path, compute):
    """Load ``path`` (JSON, NaN allowed) or compute, write atomically and return it."""
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:  # a damaged cache (interrupted copy, edit): recompute it
            log.warning("%s is not valid JSON; recomputing it", path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(value, sort_keys=True))
    return json.loads(json.dumps(value))  # the same floats as a later load


def analyse(cfg: Config, store, out, keep, fp, data, progress=None) -> dict:
    """Everything statistical of the audit from the run store; returns part of results.json."""
    out = Path(out)
    targets = cfg.target_models()
    keep_t = np.ascontiguousarray(keep[targets])
    variants = cfg.variants()
    attacks = list(cfg.attack.attacks)
    m = cfg.metrics
    names = [f"tpr@{f:g}fpr" for f in m.fprs] + ["auc", "log_auc"]
    y_test = np.asarray(data.y_test)

    # -- accuracy and bits ---------------------------------------------------------------
    acc: dict[str, np.ndarray] = {}
    bpp: dict[str, float] = {}
    for v in variants:
        if v.is_fp:
            preds = np.asarray(fp["test_pred"])[targets]
            bpp[v.key] = 32.0
        else:
            preds = np.stack(
                [np.asarray(store.load(f"{quant_name(v.key, t)}/test_pred")) for t in targets]
            )
            bpp[v.key] = float(
                np.mean(
                    [store.load(f"{quant_name(v.key, t)}/bits_per_parameter")[0] for t in targets]
                )
            )
        acc[v.key] = (preds == y_test[None, :]).mean(axis=1)
    # wall time of the quantization itself per variant, summed over targets (jobs of older
    # runs did not record it)
    qsec: dict[str, float] = {}
    for v in variants:
        files = [f"{quant_name(v.key, t)}/seconds" for t in targets]
        if not v.is_fp and all(store.has(f) for f in files):
            qsec[v.key] = float(sum(store.load(f)[0] for f in files))
    accuracy = {}
    for v in variants:
        a = acc[v.key]
        accuracy[v.key] = {
            "per_target": a.tolist(),
            **t_interval(a, m.confidence_level),
            "drop": t_interval(acc["fp"] - a, m.confidence_level),
        }

    # -- privacy -------------------------------------------------------------------------
    privacy: dict[str, dict[str, dict]] = {v.key: {} for v in variants}
    pairs = [(v, a) for v in variants for a in attacks]
    undefined = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        for v, a in progress_bar(pairs, desc="metrics", enabled=progress):
            scores = np.asarray(store.load(f"scores/{v.key}/{a}"))
            fp_scores = None if v.is_fp else np.asarray(store.load(f"scores/fp/{a}"))
            privacy[v.key][a] = _cached(
                out / "analysis" / v.key / f"{a}.json",
                lambda v=v, a=a, s=scores, f=fp_scores: _analyse_one(cfg, v, a, s, f, keep_t),
            )
    for w in caught:
        if issubclass(w.category, UndefinedMetricWarning):
            undefined.add(str(w.message))

    # -- Holm over each family -----------------------------------------------------------
    for a in attacks:
        for name in names:
            qv = [v for v in variants if not v.is_fp]
            p = [privacy[v.key][a]["vs_fp"]["pooled"][name]["pvalue"] for v in qv]
            adj, rej = holm(p, m.alpha)
            for v, pa, r in zip(qv, adj, rej, strict=True):
                d = privacy[v.key][a]["vs_fp"]["pooled"][name]
                d["pvalue_holm"], d["reject"] = float(pa), bool(r)
            cells = [(v, t) for v in qv for t in range(len(targets))]
            p = [privacy[v.key][a]["vs_fp"]["per_target"][t][name]["pvalue"] for v, t in cells]
            adj, rej = holm(p, m.alpha)
            for (v, t), pa, r in zip(cells, adj, rej, strict=True):
                d = privacy[v.key][a]["vs_fp"]["per_target"][t][name]
                d["pvalue_holm"], d["reject"] = float(pa), bool(r)
            for v in qv:
                per = privacy[v.key][a]["vs_fp"]["per_target"]
                privacy[v.key][a]["vs_fp"].setdefault("n_reject_per_target", {})[name] = int(
                    sum(bool(d[name]["reject"]) for d in per)
                )

    n_neg = (~keep_t).sum(axis=1)
    notes = []
    if undefined:
        notes.append(
            "Some per-target TPRs are undefined (NaN): a target has only "
            f"{int(n_neg.min())}–{int(n_neg.max())} non-members, fewer than 1/FPR for the "
            "lowest FPR level; the pooled values (all targets' non-members) are defined."
        )
    return {
        "data": {
            "name": cfg.data.source if cfg.data.source != "callable" else data.name or "user",
            "n_pool": int(keep.shape[1]),
            "n_test": int(y_test.size),
            "n_classes": int(data.n_classes),
            "input_shape": list(data.x.shape[1:]),
            "members_per_target": [int(k) for k in keep_t.sum(axis=1)],
        },
        "models": {
            "shadows": cfg.study.shadows,
            "targets": cfg.study.targets,
            "target_indices": targets,
        },
        "fprs": list(m.fprs),
        "metric_names": names,
        "attacks": attacks,
        "attack_labels": {a: ATTACK_LABELS[a] for a in attacks},
        "variants": [
            {
                **v.as_dict(),
                "bits_label": bits_label(v.bits) if v.bits else "32",
                "bits_per_parameter": bpp[v.key],
            }
            for v in variants
        ],
        "accuracy": accuracy,
        "privacy": privacy,
        "tests": {
            "alpha": m.alpha,
            "correction": "holm",
            "difference": "quantized − full precision (negative = less leakage)",
            "families": "per (attack, metric): pooled tests over quantized variants; "
            "per-target tests over (variant, target) pairs",
        },
        "warnings": notes,
        "quantize_seconds": qsec,
    }


# ------------------------------------------------------------------------------------------
# the verdict: which quantizer to ship
# ------------------------------------------------------------------------------------------
def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Keys of the points not dominated in (accuracy ↑, leak ↓).

    ``points[key] = (accuracy, leak)``; a point is dominated when another is at least as
    accurate and leaks at most as much, and strictly better in one of the two. Points with
    a non-finite coordinate are left out. Returned in decreasing accuracy.
    """
    ok = {k: (a, t) for k, (a, t) in points.items() if _finite(a) and _finite(t)}
    front = [
        k
        for k, (a, t) in ok.items()
        if not any(
            (a2 >= a and t2 <= t) and (a2 > a or t2 < t) for k2, (a2, t2) in ok.items() if k2 != k
        )
    ]
    return sorted(front, key=lambda k: (-ok[k][0], ok[k][1]))


def verdict(results: dict, attack: str | None = None, max_accuracy_drop: float | None = None):
    """Which quantizer to ship: the verdict that opens ``report.md``, from ``results``.

    The leak is the pooled TPR at the lowest configured FPR (``α``, e.g. 0.1 %) of
    ``attack`` (default: the configuration's ``report.attack``, else LiRA online). Rules:

    * **leak** — the full-precision leak is *present* when the lower end of its 95 % CI
      exceeds ``α`` (a TPR of ``α`` is chance: the attack's ROC on the diagonal), else
      *none*: then nothing is recommended on privacy grounds, whatever the quantized
      variants show (a "reduction" of a leak that is not there is noise).
    * For every quantized variant: the accuracy cost (mean paired drop over targets, with its
      Student-t interval), its TPR and the paired difference Δ = quantized − full precision
      with its CI and Holm-adjusted p-value (:func:`analyse`); *lower* when Holm rejects and
      Δ < 0, *higher* when Holm rejects and Δ > 0, else *n.s.*
    * **Pareto front** over all variants (full precision included) in (mean accuracy ↑,
      TPR ↓), on the point estimates (:func:`pareto_front`).
    * **recommendation** — among the variants *within the accuracy budget* — the upper end
      of the 95 % interval of their accuracy drop (the mean drop when the interval is
      undefined, e.g. one target) at most ``max_accuracy_drop`` (default:
      ``report.max_accuracy_drop``), so that the cost is within budget with confidence, not
      only on average — those with a significantly *lower* leak; of these the one with the
      lowest TPR (ties: smaller accuracy drop, then fewer bits per parameter). Status
      ``"reduction"``; else ``"no_reduction"`` (with the cheapest significant reduction beyond
      the budget, if any); ``"no_leak"`` when the leak is *none*. ``borderline``: variants
      with a significantly lower leak than the recommended one's TPR whose mean drop is
      within the budget but whose interval reaches past it.

    Returns
    -------
    dict
        ``status``, ``attack``, ``metric``, ``fpr``, ``fp`` (TPR estimate / low / high, AUC,
        ``ratio_to_chance``), ``leak`` ("present" / "none"), ``rows`` (one per quantized
        variant), ``pareto`` (keys), ``recommended`` (key or None), ``borderline`` (keys),
        ``best_beyond_budget`` (key or None), ``max_accuracy_drop``, ``resolution`` (numbers
        for "what this data can and cannot show": pooled non-members, smallest resolvable
        FPR, median half-width of the Δ intervals).
    """
    cfg = results.get("config", {})
    rep = cfg.get("report", {})
    attacks = results["attacks"]
    if attack is None:
        attack = rep.get("attack") or ("lira_online" if "lira_online" in attacks else attacks[0])
    if max_accuracy_drop is None:
        max_accuracy_drop = rep.get("max_accuracy_drop", 0.01)
    metric = results["metric_names"][0]
    fpr = float(results["fprs"][0])
    variants = results["variants"]
    fp_key = next(v["key"] for v in variants if v["method"] is None)
    fpd = results["privacy"][fp_key][attack]["pooled"]
    fp_tpr = fpd[metric]
    leak = "present" if _finite(fp_tpr.get("low")) and fp_tpr["low"] > fpr else "none"
    rows = []
    for v in variants:
        if v["method"] is None:
            continue
        k = v["key"]
        acc = results["accuracy"][k]
        p = results["privacy"][k][attack]
        d = p["vs_fp"]["pooled"][metric]
        reject = bool(d.get("reject")) and _finite(d.get("estimate"))
        sig = "n.s." if not reject else ("lower" if d["estimate"] < 0 else "higher")
        drop = acc["drop"]
        rows.append(
            {
                "key": k,
                "label": v["label"],
                "method": v["method"],
                "bits_label": v.get("bits_label"),
                "last_layer_bits": v.get("last_layer_bits"),
                "bits_per_parameter": v.get("bits_per_parameter"),
                "accuracy": acc["mean"],
                "drop": drop["mean"],
                "drop_low": drop["low"],
                "drop_high": drop["high"],
                "drop_significant": _finite(drop["low"]) and (drop["low"] > 0 or drop["high"] < 0),
                "tpr": p["pooled"][metric]["estimate"],
                "tpr_low": p["pooled"][metric]["low"],
                "tpr_high": p["pooled"][metric]["high"],
                "delta": d["estimate"],
                "delta_low": d["low"],
                "delta_high": d["high"],
                "pvalue_holm": d.get("pvalue_holm"),
                "significance": sig,
            }
        )
    points = {fp_key: (results["accuracy"][fp_key]["mean"], fp_tpr["estimate"])}
    points.update({r["key"]: (r["accuracy"], r["tpr"]) for r in rows})
    front = pareto_front(points)
    for r in rows:
        r["pareto"] = r["key"] in front

    def rank(r):
        bpp = r["bits_per_parameter"] if _finite(r["bits_per_parameter"]) else math.inf
        return (r["tpr"], r["drop"], bpp)

    def cost(r):  # the accuracy drop the budget is checked against
        return r["drop_high"] if _finite(r["drop_high"]) else r["drop"]

    lower = [r for r in rows if r["significance"] == "lower" and _finite(r["tpr"])]
    within = [r for r in lower if _finite(cost(r)) and cost(r) <= max_accuracy_drop]
    beyond = [r for r in lower if r not in within]
    recommended = min(within, key=rank)["key"] if within and leak == "present" else None
    best_tpr = min(within, key=rank)["tpr"] if within else math.inf
    borderline = [
        r["key"]
        for r in sorted(beyond, key=rank)
        if leak == "present" and _finite(r["drop"]) and r["drop"] <= max_accuracy_drop
        and r["tpr"] < best_tpr
    ]  # fmt: skip
    best_beyond = None
    if beyond and leak == "present":  # the smallest accuracy cost of a significant reduction
        best_beyond = min(beyond, key=lambda r: (r["drop"], r["tpr"]))["key"]
    status = "no_leak" if leak == "none" else ("reduction" if recommended else "no_reduction")
    keep_t = results.get("data", {}).get("members_per_target", [])
    n_pool = results.get("data", {}).get("n_pool", 0)
    n_neg = sum(n_pool - m for m in keep_t)
    half = [
        (r["delta_high"] - r["delta_low"]) / 2
        for r in rows
        if _finite(r["delta_high"]) and _finite(r["delta_low"])
    ]
    return {
        "status": status,
        "attack": attack,
        "attack_label": results.get("attack_labels", {}).get(attack, attack),
        "metric": metric,
        "fpr": fpr,
        "fp": {
            "estimate": fp_tpr["estimate"],
            "low": fp_tpr["low"],
            "high": fp_tpr["high"],
            "auc": fpd.get("auc", {}).get("estimate"),
            "ratio_to_chance": fp_tpr["estimate"] / fpr if _finite(fp_tpr["estimate"]) else None,
            "accuracy": results["accuracy"][fp_key]["mean"],
        },
        "leak": leak,
        "rows": rows,
        "pareto": front,
        "recommended": recommended,
        "borderline": borderline,
        "best_beyond_budget": best_beyond,
        "max_accuracy_drop": max_accuracy_drop,
        "resolution": {
            "n_targets": len(keep_t),
            "n_nonmembers_pooled": int(n_neg),
            "smallest_fpr": 1.0 / n_neg if n_neg else None,
            "median_delta_halfwidth": float(np.median(half)) if half else None,
        },
    }
