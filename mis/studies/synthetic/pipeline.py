"""The synthetic validation study of Aubinais et al. (2025), §5.1, end to end.

For every mixture setting (k_modes, σ) of the configuration
(:mod:`mis.studies.synthetic.config`):

1. **Training and r_Q** (resumable jobs, one per chunk of runs). Each run draws its own
   ``n_train`` i.i.d. points from the fixed Gaussian mixture (:class:`~mis.train.GaussianMixture`,
   §5.1.1) and trains the single layer on ``[x, x²]`` — one logit and the binary
   cross-entropy by default (§4.2) — with minibatch Adam (lr 1e-4, 3,000 epochs); the runs
   of a chunk train together in the fused numba trainer (:func:`mis.train.train_linear_ensemble`).
   After every ``every`` epochs a :class:`~mis.studies.synthetic.streaming.StreamingRecorder`
   quantizes every run's parameters with every quantizer (Appendix D) and streams r_Q over
   every distinct quantized checkpoint (Algorithm 1) on a validation set shared by the runs
   of the setting. The job also stores the final weights and the accuracies of the original
   and quantized final models on the training set and on a held-out test set (Table 2).
2. **MIS baseline** (one resumable job per setting, variant and seed repeat): the quantized
   final weights, ``n_members`` members of each run's training set and as many fresh
   non-members, with the quantized model's loss on each, go to
   :func:`mis.security.discriminator_mis` (§4.2), cross-fitted by run (``mis.folds`` folds,
   the same folds for every variant of a setting): every run is scored by a discriminator
   that never saw it. Jobs: :mod:`mis.studies.synthetic.jobs`.
3. **Analysis** (:mod:`mis.studies.synthetic.analysis`; cheap, recomputed on every call): the
   ranking with bootstrap-over-runs intervals, Holm-corrected adjacent comparisons and tie
   groups (:func:`~mis.security.rank_quantizers`), its stability over subsets of runs
   (Fig. 1, per setting and pooled, against all runs and against the other runs), Spearman
   and Kendall between mean r_Q and the MIS over the same runs (Fig. 2,
   :func:`~mis.security.rank_agreement`: paired bootstrap CIs, exact permutation p-values)
   and the accuracies (Table 2).
4. **Report** (:mod:`mis.studies.synthetic.report`): ``report.md`` (opening with a verdict),
   ``results.json``, CSV tables, PNG plots.

Resuming. Jobs write their arrays atomically to the run store ``<out>/store`` and then a
``done`` marker (:func:`mis.train.jobs.run_job`); a finished job is skipped. Every random
quantity derives from ``study.seed`` and the identity of what it is for (setting, run,
purpose) — never from the order of execution — so an interrupted study, run again with the
same configuration and output directory, produces bit-for-bit the results of an
uninterrupted one. The configuration is written to ``<out>/config.json`` on the first call
and a later call with a different configuration is refused (except ``study.workers`` and
``mis.repeats``: more repeats add discriminator jobs to a finished study).

Seeds (:mod:`mis.studies.synthetic.data`). ``derive_seed(seed, purpose, k_modes, round(1000 σ),
run)`` hashes these integers with :class:`numpy.random.SeedSequence`; purposes: 1 mixture,
2 validation set, 3 test set, 4 training set of a run, 5 initialisation of a run,
6 non-members of a run, 7 discriminator (folds, initialisations; with the repeat index),
8 analysis bootstraps, 9 batch order of a run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

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
    run_stage,
    synthetic_footprint,
    versions,
)
from mis.studies.synthetic.analysis import analyse_setting, summary
from mis.studies.synthetic.config import Config
from mis.studies.synthetic.data import PURPOSES, setting_key
from mis.studies.synthetic.jobs import (
    chunk_name,
    chunks,
    discriminator_job,
    discriminator_name,
    discriminator_variants,
    train_chunk_job,
)
from mis.studies.synthetic.report import write_report

__all__ = ["STAGES", "run_synthetic"]

log = logging.getLogger(__name__)

#: Stages after which ``run_synthetic(..., stop_after=...)`` may stop.
STAGES = ("train", "mis")


@locked_output
def run_synthetic(
    config: Config,
    out,
    *,
    executor=None,
    progress: bool | None = None,
    stop_after: str | None = None,
) -> dict:
    """Run (or resume) the synthetic study and write its report to ``out``.

    Parameters
    ----------
    config : Config
    out : path-like
        Output directory: ``store/`` (run store of the jobs), ``config.json``, ``report.md``,
        ``results.json``, CSV tables and PNG plots.
    executor : object with ``map(fn, iterable)``, optional
        Runs the jobs; default: ``config.study.workers`` spawned processes (serial when 1).
    progress : bool or None
        Progress bars (None: only when stderr is a terminal).
    stop_after : {"train", "mis"}, optional
        Stop after that stage (for tests and staged runs); the report is not written.

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
            f"config must be a mis.studies.synthetic.Config; got {type(config).__name__}"
        )
    if stop_after not in (None, *STAGES):
        raise MisValueError(f"stop_after must be None, 'train' or 'mis'; got {stop_after!r}")
    check_resources("the synthetic study", out=out, **synthetic_footprint(config))
    out = Path(out)
    cfg_path = check_out_config(
        out, config.as_dict(), "study", ignore=("study.workers", "mis.repeats")
    )
    store_path = out / "store"
    RunStore(store_path)  # create
    workers = config.study.workers
    executor = executor or local_executor(workers)
    settings = config.settings()
    timing: dict[str, float] = {}
    timing_log = TimingLog(out)
    t_start = time.perf_counter()

    # -- stage 1: training and trajectories ---------------------------------------------------
    specs = []
    for k, s in settings:
        key = setting_key(k, s)
        for i, (a, b) in enumerate(chunks(config)):
            specs.append(
                job_spec(
                    store_path,
                    chunk_name(key, i),
                    i,
                    {"config": cfg_path, "k_modes": k, "sigma": s, "runs": [a, b]},
                )
            )
    log.info(
        "[train] %d setting(s) × %d runs × %d epochs (batch %s), r_Q of %d quantizers: %d jobs",
        len(settings),
        config.study.runs,
        config.train.epochs,
        config.train.batch_size or "full",
        len(config.trajectory.quantizers),
        len(specs),
    )
    ran, skipped, timing["train_s"] = run_stage(train_chunk_job, specs, executor, "train", progress)
    timing_log.record("train", timing["train_s"], ran, skipped)
    jobs = {"train": {"run": ran, "skipped": skipped}}
    if stop_after == "train":
        return {}

    # -- stage 2: MIS baseline ----------------------------------------------------------------
    mis_specs = []
    if config.mis.enabled:
        for k, s in settings:
            key = setting_key(k, s)
            for rep in range(config.mis.repeats):
                for j, q in enumerate(discriminator_variants(config)):
                    mis_specs.append(
                        job_spec(
                            store_path,
                            discriminator_name(key, q, rep),
                            j,
                            {
                                "config": cfg_path,
                                "k_modes": k,
                                "sigma": s,
                                "quantizer": q,
                                "repeat": rep,
                                "store": str(store_path),
                            },
                        )
                    )
        log.info("[mis] %d discriminator jobs (%d folds each)", len(mis_specs), config.mis.folds)
        ran, skipped, timing["mis_s"] = run_stage(
            discriminator_job, mis_specs, executor, "mis", progress
        )
        timing_log.record("mis", timing["mis_s"], ran, skipped)
    else:
        ran, skipped, timing["mis_s"] = 0, 0, 0.0
    jobs["mis"] = {"run": ran, "skipped": skipped}
    if stop_after == "mis":
        return {}

    # -- stage 3: analysis --------------------------------------------------------------------
    t0 = time.perf_counter()
    store = RunStore(store_path, create=False)
    results_settings, blocks = [], []
    for k, s in settings:
        res, rq = analyse_setting(config, store, k, s)
        results_settings.append(res)
        blocks.append(rq)
    summ = summary(config, results_settings, blocks)
    timing["analysis_s"] = time.perf_counter() - t0
    timing["rq_part_s"] = timing["train_s"]
    timing["cpu_s"] = _cpu_seconds(store)
    timing["total_s"] = time.perf_counter() - t_start
    log.info("[analysis] done in %.1f s", timing["analysis_s"])
    history = timing_log.record("analysis", timing["analysis_s"])

    results = {
        "schema": 2,
        "study": config.study.name,
        "paper": "Aubinais et al. (2025), Membership Inference Risks in Quantized Models, §5.1",
        "config": config.as_dict(),
        "versions": versions(),
        "seeds": {
            "master": config.study.seed,
            "derivation": "SeedSequence([seed, purpose, k_modes, round(1000*sigma), run])",
            "purposes": dict(PURPOSES),
        },
        "quantizers": list(config.trajectory.quantizers),
        "labels": {q: quantizer_label(q) for q in [*config.trajectory.quantizers, ORIGINAL]},
        "settings": results_settings,
        "summary": summ,
        "timing": {**timing, "jobs": jobs, "workers": getattr(executor, "max_workers", 1)},
        "timing_history": _history_summary(history),
    }
    t0 = time.perf_counter()
    files = write_report(results, out)
    log.info("[report] %s in %.1f s → %s", ", ".join(sorted(files)), time.perf_counter() - t0, out)
    return results


def _cpu_seconds(store) -> dict[str, float]:
    """Process CPU seconds of the jobs, summed per stage (a measure of the work that does not
    depend on how busy the machine was; jobs of older versions did not record it), and the
    largest peak resident memory of a training worker."""
    out = {"train": 0.0, "mis": 0.0, "train_jobs": 0, "mis_jobs": 0, "train_peak_rss_mb": 0.0}
    for name in store.names():
        if name.endswith("/cpu_seconds"):
            stage = "train" if "/train/" in name else "mis"
            out[stage] += float(np.asarray(store.load(name))[0])
            out[f"{stage}_jobs"] += 1
        elif name.endswith("/peak_rss_mb"):  # of the worker process, up to the end of the job
            rss = float(np.asarray(store.load(name))[0])
            out["train_peak_rss_mb"] = max(out["train_peak_rss_mb"], rss)
    return out


def _history_summary(history: list[dict]) -> dict:
    """Seconds spent per stage over all recorded invocations (work actually done)."""
    out: dict[str, Any] = {"invocations": sorted({h["invocation"] for h in history})}
    for stage in ("train", "mis"):
        rows = [h for h in history if h["stage"] == stage and h["jobs_run"]]
        out[f"{stage}_s"] = round(sum(h["seconds"] for h in rows), 3)
        out[f"{stage}_jobs_run"] = sum(h["jobs_run"] for h in rows)
    return out
