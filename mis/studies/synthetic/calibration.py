"""Calibration of the study's free choices against the original-model accuracies of Table 2.

The paper fixes the model, the optimiser, the learning rate and the epochs (§5.1.1) but not
the batch size nor how the cluster centres are drawn; both change how well the models are
trained and how separable the mixtures are, hence the original models' accuracies that
Table 2 reports. :func:`original_accuracies` trains runs exactly as the study does
(:func:`~mis.studies.synthetic.jobs.train_runs`, no quantization, no recording) and returns
the mean held-out accuracy of the original models per setting; the calibration
(``experiments/calibrate_synthetic.py``, ``docs/synthetic_calibration.md``) evaluates it on a
grid of (batch size, centre scale), on master seeds other than the study's, and never looks
at r_Q or the MIS.
"""

from __future__ import annotations

import numpy as np

from mis._validation import integer, sequence
from mis.studies._common import torch_threads
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import setting_data, setting_key
from mis.studies.synthetic.jobs import train_runs
from mis.studies.synthetic.model import flat_params, logits, predictions

__all__ = ["accuracy_job", "original_accuracies"]


def accuracy_job(args: tuple) -> tuple[str, float, float, int]:
    """One setting of :func:`original_accuracies` (module-level: picklable for processes).

    ``args = (config dict, k_modes, sigma, n_runs)``; returns (setting key, mean test
    accuracy, mean training accuracy, runs).
    """
    d, k_modes, sigma, n_runs = args
    cfg = Config.from_dict(d)
    c = cfg.model.n_outputs
    with torch_threads(1):
        mixture, _, (xt, yt) = setting_data(cfg, k_modes, sigma)
        ens, sets = train_runs(cfg, mixture, k_modes, sigma, np.arange(n_runs))
        flat = flat_params(ens.weight, ens.bias)
        test = float((predictions(logits(flat, xt, c)) == yt).mean())
        hits = [
            predictions(logits(flat[i : i + 1], xs, c))[0] == ys for i, (xs, ys) in enumerate(sets)
        ]
        train = float(np.mean([h.mean() for h in hits]))
    return setting_key(k_modes, sigma), test, train, n_runs


def original_accuracies(cfg: Config, runs: int, seeds=(1,), executor=None) -> dict[str, dict]:
    """Mean original-model accuracies per setting, over ``runs`` runs of each master seed.

    Parameters
    ----------
    cfg : Config
        The study (its ``study.seed`` is replaced by each of ``seeds``).
    runs : int
        Runs per setting and seed.
    seeds : sequence of int
        Master seeds (new mixtures, training sets and initialisations for each).
    executor : object with ``map``, optional
        Runs the (seed, setting) jobs; default: this process.

    Returns
    -------
    dict
        ``{setting key: {"test": mean held-out accuracy, "train": mean training accuracy,
        "runs": total runs}}``, the means taken over all seeds and runs.
    """
    runs = integer(runs, "runs", 1)
    seeds = sequence(list(seeds), "seeds", lambda v, k: integer(v, k, 0))
    jobs = []
    for s in seeds:
        d = cfg.as_dict()
        d["study"]["seed"] = s
        jobs += [(d, k, sg, runs) for k, sg in cfg.settings()]
    results = list((executor.map if executor is not None else map)(accuracy_job, jobs))
    out: dict[str, dict] = {}
    for key, test, train, n in results:
        e = out.setdefault(key, {"test": 0.0, "train": 0.0, "runs": 0})
        e["test"] += test * n
        e["train"] += train * n
        e["runs"] += n
    for e in out.values():
        e["test"] /= e["runs"]
        e["train"] /= e["runs"]
    return out
