"""Analysis of the synthetic study (cheap, recomputed on every call): r_Q of every run and
quantizer, the ranking with bootstrap-over-runs intervals, its stability over subsets of runs
(Fig. 1), the agreement of r_Q with the discriminator's MIS (Fig. 2) and the accuracies
(Table 2)."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from mis.exceptions import DegenerateStatisticWarning
from mis.security import rank_agreement, rank_quantizers, rank_stability, rq_batch
from mis.studies._common import (
    ORIGINAL,
    derive_seed,
    fill_keep_best_padding,
    interval_dict,
    ranking_summary,
)
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import ANALYSIS, setting_key, setting_keys
from mis.studies.synthetic.jobs import (
    DISCRIMINATOR_SUMMARY,
    chunk_name,
    chunks,
    discriminator_variants,
)

__all__ = ["analyse_setting", "rq_values", "summary"]


def _load_chunks(store, key: str, n_chunks: int, name: str) -> np.ndarray:
    return np.concatenate(
        [np.asarray(store.load(f"{chunk_name(key, i)}/{name}")) for i in range(n_chunks)]
    )


def rq_values(store, key: str, n_chunks: int):
    """r_Q (n_runs, n_quantizers) of a setting from its chunks, with diagnostics."""
    vl = _load_chunks(store, key, n_chunks, "val_losses")
    qh = _load_chunks(store, key, n_chunks, "qhash")
    ep = _load_chunks(store, key, n_chunks, "val_epochs")
    full = ep[:, :, -1] >= 0
    vl, qh = fill_keep_best_padding(vl, qh, ep)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateStatisticWarning)
        det = rq_batch(vl, qh, details=True, progress=False)
    degenerate = [str(w.message) for w in caught if w.category is DegenerateStatisticWarning]
    b = vl.shape[2]
    last = full & (det.argmin_checkpoint == b - 1)
    return det, full, last, degenerate


def analyse_setting(cfg: Config, store, k_modes, sigma) -> tuple[dict, float]:
    """The results of one setting and the seconds spent computing r_Q."""
    key = setting_key(k_modes, sigma)
    n_chunks = len(chunks(cfg))
    names = list(cfg.trajectory.quantizers)
    an = cfg.analysis
    seed = derive_seed(cfg.study.seed, ANALYSIS, *setting_keys(k_modes, sigma))
    t0 = time.perf_counter()
    det, full, last, degenerate = rq_values(store, key, n_chunks)
    rq = det.rq
    dt = time.perf_counter() - t0
    if not store.has(f"{key}/rq"):
        store.save(f"{key}/rq", rq, quantizers=names, what="r_Q per run and quantizer")
    ranking = rank_quantizers(
        rq, names, n_resamples=an.n_resamples, confidence_level=an.confidence_level, rng=seed
    )
    ks = [k for k in an.k_runs if k <= rq.shape[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stab = rank_stability(rq, ks, an.n_subsets, names=names, rng=seed + 1) if ks else None
    n_changes = _load_chunks(store, key, n_chunks, "n_changes")
    acc_train = _load_chunks(store, key, n_chunks, "acc_train")
    acc_test = _load_chunks(store, key, n_chunks, "acc_test")
    variants = [ORIGINAL, *names]
    q_idx = {q: j for j, q in enumerate(names)}
    res: dict[str, Any] = {
        "key": key,
        "k_modes": int(k_modes),
        "sigma": float(sigma),
        "n_runs": int(rq.shape[0]),
        "rq": ranking_summary(ranking),
        "rq_diagnostics": {
            "mean_changes": {q: float(n_changes[:, j].mean()) for q, j in q_idx.items()},
            "mean_distinct_kept": {q: float(det.n_distinct[:, j].mean()) for q, j in q_idx.items()},
            "share_kept_full": {q: float(full[:, j].mean()) for q, j in q_idx.items()},
            "share_min_at_last_kept": {q: float(last[:, j].mean()) for q, j in q_idx.items()},
            "degenerate_warnings": degenerate,
        },
        "stability": None,
        "mis": None,
        "agreement": None,
        "accuracy": {
            "test": {v: float(acc_test[:, i].mean()) for i, v in enumerate(variants)},
            "test_sd": {v: float(acc_test[:, i].std(ddof=1)) for i, v in enumerate(variants)},
            "train": {v: float(acc_train[:, i].mean()) for i, v in enumerate(variants)},
            "n_test": cfg.data.n_test,
        },
    }
    if stab is not None:
        res["stability"] = {
            "k_runs": list(stab.k_runs),
            "n_subsets": stab.n_subsets,
            "spearman_mean": [float(v) for v in stab.spearman_mean],
            "reference_order": [names[j] for j in stab.reference_order],
            "at_reference_rank": {
                q: [float(v) for v in stab.at_reference_rank[:, j]] for q, j in q_idx.items()
            },
            "frequencies": stab.frequencies.tolist(),
        }
    if cfg.mis.enabled:
        res["mis"], per_run = _discriminator_results(cfg, store, key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agr = rank_agreement(
                rq,
                np.stack(per_run, axis=1),
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
            "note": "mean r_Q over all runs vs mean unclipped per-test-run MIS; bootstrap over "
            "runs of each measure independently; exact permutation p-values",
        }
    return res, dt


def _discriminator_results(cfg: Config, store, key: str) -> tuple[dict, list[np.ndarray]]:
    """The MIS of every variant of a setting, and the per-test-run MIS of the quantizers."""
    out = {}
    per_run = []
    for q in discriminator_variants(cfg):
        p = f"{key}/mis/{q}"
        v = dict(
            zip(
                DISCRIMINATOR_SUMMARY,
                map(float, np.asarray(store.load(f"{p}/summary"))),
                strict=True,
            )
        )
        out[q] = {
            "mis": {"estimate": v["mis"], "low": v["mis_low"], "high": v["mis_high"]},
            "accuracy": {
                "estimate": v["accuracy"],
                "low": v["accuracy_low"],
                "high": v["accuracy_high"],
            },
            "best_epoch": int(v["best_epoch"]),
            "epochs_run": int(v["epochs_run"]),
            "n_test": int(v["n_test"]),
            "n_test_runs": int(np.asarray(store.load(f"{p}/test_runs")).size),
        }
        if q != ORIGINAL:
            per_run.append(np.asarray(store.load(f"{p}/per_run_mis")))
    return out, per_run


def summary(settings: list[dict]) -> dict:
    """Means over the settings of the agreement and of the stability curves."""

    def mean(vals):
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else None

    out: dict[str, Any] = {"n_settings": len(settings)}
    agr = [s["agreement"] for s in settings if s.get("agreement")]
    if agr:
        out["mean_spearman"] = mean([a["spearman"]["estimate"] for a in agr])
        out["mean_kendall"] = mean([a["kendall"]["estimate"] for a in agr])
    stabs = [s["stability"] for s in settings if s.get("stability")]
    if stabs:
        ks = sorted(set.intersection(*(set(st["k_runs"]) for st in stabs)))
        out["stability_spearman_mean"] = {
            str(k): mean([st["spearman_mean"][st["k_runs"].index(k)] for st in stabs]) for k in ks
        }
    return out
