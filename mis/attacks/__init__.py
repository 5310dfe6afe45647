"""Membership inference attacks over stored logits (no torch).

* :func:`lira_signal`, :func:`true_class_log_prob`, :func:`true_class_probability` — signals;
* :func:`lira`, :func:`lira_all_targets` — LiRA online / offline (Carlini et al. 2022),
  with ``compat="carlini2022"`` reproducing the reference code bit for bit;
* :func:`rmia`, :func:`rmia_all_targets` — RMIA (Zarifzadeh et al. 2024);
* :func:`loss_threshold`, :func:`signal_threshold` — global-threshold baselines (Yeom et al. 2018);
* :func:`evaluate` — per-target and pooled ROC metrics with confidence intervals.

Scores are ``(n_examples,)`` for one target or ``(n_models, n_examples)`` for
every model as target; higher = more likely a member.
"""

from mis.attacks._evaluate import AttackEvaluation, Spread, evaluate
from mis.attacks._lira import lira, lira_all_targets
from mis.attacks._rmia import rmia, rmia_all_targets
from mis.attacks._signals import lira_signal, true_class_log_prob, true_class_probability
from mis.attacks._threshold import loss_threshold, signal_threshold

__all__ = [
    "AttackEvaluation",
    "Spread",
    "evaluate",
    "lira",
    "lira_all_targets",
    "lira_signal",
    "loss_threshold",
    "rmia",
    "rmia_all_targets",
    "signal_threshold",
    "true_class_log_prob",
    "true_class_probability",
]
