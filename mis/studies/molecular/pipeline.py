"""The molecular study of Aubinais et al. (2025), §5.2 and Appendix F, end to end.

For every task of the configuration (:mod:`mis.studies.molecular.config`):

1. **Training and trajectories** (:mod:`mis.studies.molecular.jobs`, one resumable job per
   task). The molecules are featurised
   (:func:`mis.chem.featurize`, or the user's embeddings), a fixed random 40 % is held out
   as the validation part, features (and regression targets) are standardised with the
   statistics of the training part. Each of the 10 runs trains a two-layer MLP (hidden 128)
   on its own random 90 % of the training part for 500 epochs; the runs train together as
   one ensemble (:func:`~mis.train.train_ensemble`, squared error for regression,
   cross-entropy for classification). After every epoch a
   :class:`~mis.train.TrajectoryRecorder` quantizes every run's parameters with the 8
   quantizers and keeps the lowest-loss distinct quantized checkpoints with their
   per-sample validation losses (Algorithm 1). The job also stores the predictions of the
   final original and quantized models on the validation part.
2. **Analysis** (:mod:`mis.studies.molecular.analysis`, recomputed on every call): r_Q per run
   and quantizer (:func:`~mis.security.rq_batch`) ranked with bootstrap-over-runs intervals
   (:func:`~mis.security.rank_quantizers`); per run, R² and the Spearman correlation between
   predictions and labels (Tables 4–5), the Spearman correlation between quantized and original
   predictions, and the AUROC for classification tasks (Table 3) — each with its mean over runs,
   a Student-t interval, and its ratio to the original model's (r^val_m of §5.2.1).
3. **Report** (:mod:`mis.studies.molecular.report`): ``report.md``, ``results.json``, CSV, and the
   privacy–performance plot of Fig. 3/4.

Resuming and seeds as in :mod:`mis.studies.synthetic`: jobs write atomically, a finished
job is skipped, and every random quantity derives from ``study.seed`` and the task's name
(purposes: 1 split, 2 run subsample, 3 initialisation, 4 analysis bootstraps).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mis.exceptions import MisValueError
from mis.quant import quantizer_label
from mis.store import RunStore
from mis.studies._common import (
    ORIGINAL,
    TimingLog,
    check_out_config,
    check_resources,
    job_spec,
    local_executor,
    locked_output,
    molecular_footprint,
    run_stage,
    versions,
)
from mis.studies.molecular.analysis import analyse_task
from mis.studies.molecular.config import Config
from mis.studies.molecular.jobs import task_job
from mis.studies.molecular.report import write_report

__all__ = ["run_molecular"]

log = logging.getLogger(__name__)


@locked_output
def run_molecular(
    config: Config,
    out,
    *,
    executor=None,
    workers: int = 1,
    progress: bool | None = None,
) -> dict:
    """Run (or resume) the molecular study and write its report to ``out``.

    Parameters
    ----------
    config : Config
    out : path-like
        Output directory: ``store/``, ``config.json``, ``report.md``, ``results.json``,
        CSV tables and PNG plots.
    executor : object with ``map(fn, iterable)``, optional
        Runs the jobs (one per task); default: ``workers`` processes (serial when 1).
    workers : int, default 1
    progress : bool or None
        Progress bar over tasks (None: only when stderr is a terminal).

    Returns
    -------
    dict
        The content of ``results.json``.

    Notes
    -----
    One line per stage goes to the ``mis.studies`` logger (level INFO).
    """
    if not isinstance(config, Config):
        raise MisValueError(
            f"config must be a mis.studies.molecular.Config; got {type(config).__name__}"
        )
    check_resources("the molecular study", out=out, **molecular_footprint(config))
    out = Path(out)
    cfg_path = check_out_config(out, config.as_dict(), "molecular study")
    store_path = out / "store"
    store = RunStore(store_path)
    executor = executor or local_executor(workers)
    specs = [
        job_spec(store_path, t.name, i, {"config": cfg_path, "task": i})
        for i, t in enumerate(config.tasks)
    ]
    log.info(
        "[train] %d task(s) × %d runs × %d epochs, %d quantizers",
        len(specs),
        config.study.runs,
        config.train.epochs,
        len(config.trajectory.quantizers),
    )
    ran, skipped, train_s = run_stage(task_job, specs, executor, "train", progress)
    TimingLog(out).record("train", train_s, ran, skipped)

    t0 = time.perf_counter()
    tasks = [analyse_task(config, store, t) for t in config.tasks]
    analysis_s = time.perf_counter() - t0
    results = {
        "study": config.study.name,
        "paper": "Aubinais et al. (2025), Membership Inference Risks in Quantized Models, §5.2",
        "config": config.as_dict(),
        "quantizers": list(config.trajectory.quantizers),
        "labels": {q: quantizer_label(q) for q in [ORIGINAL, *config.trajectory.quantizers]},
        "tasks": tasks,
        "timing": {
            "train_s": round(train_s, 3),
            "analysis_s": round(analysis_s, 3),
            "jobs_run": ran,
            "jobs_skipped": skipped,
            "cpu_seconds_jobs": round(sum(t["cpu_seconds"] for t in tasks), 3),
        },
        "versions": versions(),
    }
    t0 = time.perf_counter()
    files = write_report(results, out)
    log.info("[report] %s in %.1f s → %s", ", ".join(sorted(files)), time.perf_counter() - t0, out)
    return results
