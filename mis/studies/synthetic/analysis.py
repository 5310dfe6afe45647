"""Analysis of the synthetic study (cheap, recomputed on every call): r_Q of every run and
quantizer, the ranking with bootstrap-over-runs intervals, Holm-corrected adjacent
comparisons and tie groups, its stability over subsets of runs (Fig. 1, per setting and
pooled, against all runs and against the other runs), the agreement of r_Q with the
cross-fitted discriminator's MIS (Fig. 2) and the accuracies (Table 2)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from mis.security import pooled_rank_stability, rank_agreement, rank_quantizers, rank_stability
from mis.studies._common import ORIGINAL, derive_seed, interval_dict, ranking_summary
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import ANALYSIS, setting_key, setting_keys
from mis.studies.synthetic.jobs import (
    DISCRIMINATOR_SUMMARY,
    chunk_name,
    chunks,
    discriminator_name,
    discriminator_variants,
)
from mis.studies.synthetic.streaming import STATUS_NAMES

__all__ = ["analyse_setting", "load_chunks", "summary"]


def load_chunks(store, key: str, n_chunks: int, name: str) -> np.ndarray:
    """Array ``name`` of every training chunk of setting ``key``, concatenated over runs."""
    return np.concatenate(
        [np.asarray(store.load(f"{chunk_name(key, i)}/{name}")) for i in range(n_chunks)]
    )


def _stability_dict(stab, names) -> dict:
    q_idx = {q: j for j, q in enumerate(names)}
    return {
        "k_runs": list(stab.k_runs),
        "n_subsets": stab.n_subsets,
        "spearman_mean": [float(v) for v in stab.spearman_mean],
        "spearman_ci": stab.spearman_ci.tolist(),
        "spearman_disjoint_mean": [float(v) for v in stab.spearman_disjoint_mean],
        "spearman_disjoint_ci": stab.spearman_disjoint_ci.tolist(),
        "n_resamples": stab.n_resamples,
        "reference_order": [names[j] for j in stab.reference_order],
        "at_reference_rank": {
            q: [float(v) for v in stab.at_reference_rank[:, j]] for q, j in q_idx.items()
        },
        "frequencies": stab.frequencies.tolist(),
    }


def _ranking_dict(ranking) -> dict:
    """:func:`ranking_summary` with Holm's adjustment and the tie groups."""
    out = ranking_summary(ranking)
    for a, d in zip(ranking.adjacent, out["adjacent"], strict=True):
        d["pvalue_holm"] = float(a.pvalue_holm)
        d["significant_holm"] = bool(a.significant_holm)
    out["tie_groups"] = [list(g) for g in ranking.tie_groups]
    out["correction"] = "holm over the adjacent comparisons of this ranking"
    return out


def analyse_setting(cfg: Config, store, k_modes, sigma) -> tuple[dict, np.ndarray]:
    """The results of one setting, and its r_Q array (n_runs, n_quantizers)."""
    key = setting_key(k_modes, sigma)
    n_chunks = len(chunks(cfg))
    names = list(cfg.trajectory.quantizers)
    an = cfg.analysis
    seed = derive_seed(cfg.study.seed, ANALYSIS, *setting_keys(k_modes, sigma))

    def get(name):
        return load_chunks(store, key, n_chunks, name)

    rq = get("rq")
    rq_all, rq_kept, kept = get("rq_all"), get("rq_kept"), int(get("kept")[0])
    status = get("status")
    ranking = rank_quantizers(
        rq, names, n_resamples=an.n_resamples, confidence_level=an.confidence_level, rng=seed
    )
    ks = [k for k in an.k_runs if k <= rq.shape[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stab = (
            rank_stability(
                rq,
                ks,
                an.n_subsets,
                names=names,
                n_resamples=an.stability_resamples,
                confidence_level=an.confidence_level,
                rng=seed + 1,
            )
            if ks
            else None
        )
    acc_train, acc_test = get("acc_train"), get("acc_test")
    n_distinct, argmin = get("n_distinct"), get("argmin_rank")
    variants = [ORIGINAL, *names]
    q_idx = {q: j for j, q in enumerate(names)}
    differ = ~((rq_all == rq_kept) | (np.isnan(rq_all) & np.isnan(rq_kept)))
    res: dict[str, Any] = {
        "key": key,
        "k_modes": int(k_modes),
        "sigma": float(sigma),
        "n_runs": int(rq.shape[0]),
        "rq": _ranking_dict(ranking),
        "rq_diagnostics": {
            "mean_changes": {q: float(get("n_changes")[:, j].mean()) for q, j in q_idx.items()},
            "mean_distinct": {q: float(n_distinct[:, j].mean()) for q, j in q_idx.items()},
            "max_distinct": {q: int(n_distinct[:, j].max()) for q, j in q_idx.items()},
            "mean_argmin_rank": {q: float(argmin[:, j].mean()) for q, j in q_idx.items()},
            "max_argmin_rank": {q: int(argmin[:, j].max()) for q, j in q_idx.items()},
            "mean_recomputed": {
                q: float(get("n_recomputed")[:, j].mean()) for q, j in q_idx.items()
            },
            "kept": kept,
            "runs_changed_by_kept": {q: int(differ[:, j].sum()) for q, j in q_idx.items()},
            "status": {
                STATUS_NAMES.get(int(c), str(c)): int((status == c).sum())
                for c in np.unique(status)
            },
        },
        "stability": _stability_dict(stab, names) if stab is not None else None,
        "mis": None,
        "agreement": None,
        "accuracy": {
            "test": {v: float(acc_test[:, i].mean()) for i, v in enumerate(variants)},
            "test_sd": {v: float(acc_test[:, i].std(ddof=1)) for i, v in enumerate(variants)},
            "train": {v: float(acc_train[:, i].mean()) for i, v in enumerate(variants)},
            "n_test": cfg.data.n_test,
        },
    }
    if cfg.mis.enabled:
        res["mis"], per_run = _discriminator_results(cfg, store, key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agr = rank_agreement(
                rq,
                per_run,
                paired=True,
                n_resamples=an.n_resamples,
                confidence_level=an.confidence_level,
                rng=seed + 2,
            )
        res["agreement"] = {
            "spearman": interval_dict(agr.spearman),
            "kendall": interval_dict(agr.kendall),
            "spearman_pvalue": float(agr.spearman_pvalue),
            "kendall_pvalue": float(agr.kendall_pvalue),
            "permutation": agr.permutation,
            "n_valid": int(agr.n_valid),
            "n_resamples": int(agr.n_resamples),
            "confidence_level": float(agr.confidence_level),
            "warnings": [str(w.message) for w in caught],
            "note": "mean r_Q vs mean unclipped per-run MIS over the same runs (every run is "
            "a test run of the cross-fitted discriminator); paired bootstrap over runs; "
            "exact permutation p-values over the quantizer pairings",
        }
        res["_spearman_replicates"] = agr.spearman_replicates
    return res, rq


def _discriminator_results(cfg: Config, store, key: str) -> tuple[dict, np.ndarray]:
    """The MIS of every variant of a setting (every seed repeat), and the per-run MIS of the
    quantizers (n_runs, n_quantizers) of repeat 0."""
    out = {}
    per_run = []
    for q in discriminator_variants(cfg):
        reps = []
        for rep in range(cfg.mis.repeats):
            p = discriminator_name(key, q, rep)
            v = dict(
                zip(
                    DISCRIMINATOR_SUMMARY,
                    map(float, np.asarray(store.load(f"{p}/summary"))),
                    strict=True,
                )
            )
            reps.append(v)
        v = reps[0]
        out[q] = {
            "mis": {"estimate": v["mis"], "low": v["mis_low"], "high": v["mis_high"]},
            "accuracy": {
                "estimate": v["accuracy"],
                "low": v["accuracy_low"],
                "high": v["accuracy_high"],
            },
            "mis_clopper_pearson": {
                "estimate": v["mis"],
                "low": v["mis_cp_low"],
                "high": v["mis_cp_high"],
            },
            "mean_best_epoch": v["mean_best_epoch"],
            "mean_epochs_run": v["mean_epochs_run"],
            "n_test": int(v["n_test"]),
            "folds": cfg.mis.folds,
            "repeats": [r["mis"] for r in reps],
        }
        if q != ORIGINAL:
            per_run.append(np.asarray(store.load(f"{discriminator_name(key, q)}/per_run_mis")))
    return out, np.stack(per_run, axis=1)


def _mean(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summary(cfg: Config, settings: list[dict], rq_blocks: list[np.ndarray]) -> dict:
    """What holds over the settings: mean Spearman ρ(r_Q, MIS) with its bootstrap interval,
    the stability curves averaged per setting and pooled, the keep-best diagnostic and the
    discriminator's seed spread and interval widths."""
    an = cfg.analysis
    level = an.confidence_level
    out: dict[str, Any] = {"n_settings": len(settings)}
    agr = [s["agreement"] for s in settings if s.get("agreement")]
    if agr:
        out["mean_spearman"] = _mean([a["spearman"]["estimate"] for a in agr])
        out["mean_kendall"] = _mean([a["kendall"]["estimate"] for a in agr])
        reps = np.stack([s.pop("_spearman_replicates") for s in settings if s.get("agreement")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(reps, axis=0)  # settings are independent: resample each, average
        m = np.sort(m[np.isfinite(m)])
        alpha = (1.0 - level) / 2.0
        lo, hi = (float(v) for v in np.quantile(m, [alpha, 1 - alpha])) if m.size else (None,) * 2
        out["mean_spearman_ci"] = {"low": lo, "high": hi, "confidence_level": level}
        out["n_settings_spearman_significant"] = sum(a["spearman_pvalue"] < 1 - level for a in agr)
    for s in settings:
        s.pop("_spearman_replicates", None)
    stabs = [s["stability"] for s in settings if s.get("stability")]
    if stabs:
        ks = sorted(set.intersection(*(set(st["k_runs"]) for st in stabs)))
        for name in ("spearman_mean", "spearman_disjoint_mean"):
            out[f"stability_{name}"] = {
                str(k): _mean([st[name][st["k_runs"].index(k)] for st in stabs]) for k in ks
            }
        if len(rq_blocks) > 1 and ks:
            seed = derive_seed(cfg.study.seed, ANALYSIS, 0, 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pooled = pooled_rank_stability(
                    rq_blocks,
                    ks,
                    an.n_subsets,
                    n_resamples=an.stability_resamples,
                    confidence_level=level,
                    rng=seed,
                )
            out["stability_pooled"] = {
                "k_runs": list(pooled.k_runs),
                "spearman_mean": [float(v) for v in pooled.spearman_mean],
                "spearman_ci": pooled.spearman_ci.tolist(),
                "spearman_disjoint_mean": [float(v) for v in pooled.spearman_disjoint_mean],
                "spearman_disjoint_ci": pooled.spearman_disjoint_ci.tolist(),
                "n_resamples": pooled.n_resamples,
            }
    diags = [s["rq_diagnostics"] for s in settings]
    out["keep_best"] = {
        "kept": diags[0]["kept"] if diags else None,
        "runs_changed": sum(sum(d["runs_changed_by_kept"].values()) for d in diags),
        "run_quantizer_pairs": sum(s["n_runs"] for s in settings) * len(cfg.trajectory.quantizers),
        "max_distinct": max((max(d["max_distinct"].values()) for d in diags), default=0),
        "max_argmin_rank": max((max(d["max_argmin_rank"].values()) for d in diags), default=0),
    }
    mis = [s["mis"] for s in settings if s.get("mis")]
    if mis:
        width = [m[q]["mis"]["high"] - m[q]["mis"]["low"] for m in mis for q in m]
        width_cp = [
            m[q]["mis_clopper_pearson"]["high"] - m[q]["mis_clopper_pearson"]["low"]
            for m in mis
            for q in m
        ]
        out["mis_interval_width"] = {
            "cluster_bootstrap_mean": _mean(width),
            "clopper_pearson_mean": _mean(width_cp),
        }
        spread = [
            max(m[q]["repeats"]) - min(m[q]["repeats"])
            for m in mis
            for q in m
            if len(m[q]["repeats"]) > 1
        ]
        if spread:
            # two seeds: E|Δ| = 2σ/√π, so σ_seed ≈ mean|Δ|·√π/2 (more seeds: range, a rough
            # guide); a 95 % percentile interval spans about 3.92 bootstrap SDs
            out["mis_seed_spread"] = {
                "mean": _mean(spread),
                "max": float(max(spread)),
                "seed_sd": _mean(spread) * math.sqrt(math.pi) / 2,
                "bootstrap_sd": _mean(width) / (2 * 1.959964),
            }
    return out
