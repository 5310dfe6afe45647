"""Stage 4 of the audit: every configured attack on every target and variant.

Per target and variant: LiRA online and offline (Carlini et al. 2022, Eq. 3–4; fixed
variance as configured) and RMIA (Zarifzadeh et al. 2024) against the full-precision
shadows (or the quantized ones with ``attack.quantize_shadows``), and the loss threshold
(Yeom et al. 2018). Scores are stored as ``scores/<variant>/<attack>`` (targets × examples).
"""

from __future__ import annotations

import numpy as np

from mis._progress import progress_bar
from mis.attacks import lira, rmia
from mis.studies.audit.config import Config
from mis.studies.audit.jobs import OUTPUTS, quant_name, train_name

__all__ = ["attack_stage", "full_precision_outputs"]


def full_precision_outputs(store, n_chunks: int) -> dict[str, np.ndarray]:
    """The compact outputs of every full-precision model (models × ...), from the chunks."""
    return {
        k: np.concatenate([np.asarray(store.load(f"{train_name(i)}/{k}")) for i in range(n_chunks)])
        for k in OUTPUTS
    }


def _attack_scores(cfg: Config, shadow, target, keep_sh, keep_t) -> dict[str, np.ndarray]:
    """Scores of every configured attack on one target given its shadows' arrays."""
    a = cfg.attack
    sig = np.concatenate([shadow["signal"], target["signal"][None]])
    keep = np.concatenate([keep_sh, keep_t[None]])
    out = {}
    for name in a.attacks:
        if name == "lira_online":
            out[name] = lira(sig, keep, -1, mode="online", fixed_variance=a.online_fixed_variance)
        elif name == "lira_offline":
            out[name] = lira(sig, keep, -1, mode="offline", fixed_variance=a.offline_fixed_variance)
        elif name == "rmia":
            prob = np.concatenate([shadow["prob"], target["prob"][None]])
            out[name] = rmia(prob, keep, -1, mode=a.rmia_mode, a=a.rmia_a, gamma=a.rmia_gamma)
        elif name == "loss":
            out[name] = np.asarray(target["loss"], dtype=np.float64)
    return out


def _load_quant(store, variant: str, m: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(store.load(f"{quant_name(variant, m)}/{k}")) for k in OUTPUTS}


def attack_stage(cfg: Config, store, keep, fp, variants, progress=None) -> int:
    """Score every (variant, attack) on every target into ``scores/<variant>/<attack>``.

    Returns the number of variants scored (those already stored are skipped).
    """
    s = cfg.study.shadows
    targets = cfg.target_models()
    todo = [
        v for v in variants if not all(store.has(f"scores/{v.key}/{a}") for a in cfg.attack.attacks)
    ]
    for v in progress_bar(todo, desc="attack", enabled=progress):
        if cfg.attack.quantize_shadows and not v.is_fp:
            parts = [_load_quant(store, v.key, m) for m in range(s)]
            shadow = {k: np.stack([p[k] for p in parts]) for k in ("signal", "prob")}
        else:
            shadow = {k: fp[k][:s] for k in ("signal", "prob")}
        scores = {a: np.empty((len(targets), keep.shape[1])) for a in cfg.attack.attacks}
        for i, m in enumerate(targets):
            target = {k: fp[k][m] for k in fp} if v.is_fp else _load_quant(store, v.key, m)
            for a, sc in _attack_scores(cfg, shadow, target, keep[:s], keep[m]).items():
                scores[a][i] = sc
        for a, sc in scores.items():
            store.save(f"scores/{v.key}/{a}", sc, variant=v.key, attack=a, targets=targets)
    return len(todo)
