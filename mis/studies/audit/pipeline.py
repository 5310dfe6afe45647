"""The PTQ privacy audit of Zhang et al. (2025), *Bits for Privacy*, end to end: ``mis audit``.

Pipeline (:func:`run_audit`; configuration in :mod:`mis.studies.audit.config`):

1. **Train** (resumable jobs, :mod:`mis.studies.audit.jobs`): ``shadows + targets`` models of
   one architecture, all full precision, each on its row of the keep masks
   (:func:`~mis.train.keep_masks`: every example of the audit pool is IN for exactly ``pkeep``
   of the models, Carlini et al. 2022 §VI-A). Models 0 … S−1 are the shadows, S … S+T−1 the
   targets (the paper's "random seeds"). BatchNorm-free models train together with the vmap
   ensemble trainer, others one per job with the plain trainer (checkpointed every epoch).
2. **Logits** (inside the training job): every model on every pool example under the
   augmentation queries (``n_aug``), reduced to what the attacks read — the LiRA signal
   (scaled logit), the true-class probability (RMIA) and the loss score — plus the
   predictions on the test set. The targets' weights are stored (flat float32 vectors).
3. **Quantize** (one resumable job per target and variant): method × bits (× decoupled last
   layer), each a :class:`~mis.quant.QuantConfig` validated with the configuration (method
   looked up in the :mod:`mis.quant` registry); calibration data are
   ``calibration_samples`` of the target's *own members* (:func:`~mis.quant.select_calibration`,
   the same draw for every method, §IV-A); then the quantized target's signals, probabilities,
   losses and test predictions. With ``attack.quantize_shadows`` the shadows are quantized
   the same way (each calibrated on its own members).
4. **Attack** (:mod:`mis.studies.audit.scoring`): per target and variant, LiRA online and
   offline (Carlini et al. 2022, Eq. 3–4; fixed variance as configured) and offline RMIA
   (Zarifzadeh et al. 2024) against the full-precision shadows (or the quantized ones), and the
   loss threshold (Yeom et al. 2018).
5. **Metrics** (:mod:`mis.studies.audit.analysis`): test accuracy of every target; TPR at the
   configured FPRs, AUC and log-AUC per target (bootstrap CIs over examples) and pooled over
   targets (cluster bootstrap: an example and its rows across targets are resampled together);
   over targets mean ± sd and a Student-t interval; paired bootstrap tests
   (:func:`mis.metrics.compare_roc`) of each quantized variant against the same targets at full
   precision, pooled and per target, with Holm's correction over each family
   (:func:`mis.metrics.holm`).
6. **Verdict and report** (:func:`mis.studies.audit.analysis.verdict`,
   :mod:`mis.studies.audit.report`): which quantizer to ship (the full-precision leak, each
   quantizer's accuracy cost and change in leak with Holm-adjusted p-values, the Pareto
   front), then ``report.md`` (opening with that verdict), ``results.json``, CSV tables and
   PNG figures.

Resuming. Stages 1–3 write their arrays atomically into the run store ``<out>/store``
(:func:`mis.train.jobs.run_job`, a ``done`` marker per job); stage 4 stores the scores
(``scores/<variant>/<attack>``) and stage 5 caches one JSON file per (variant, attack) in
``<out>/analysis``; anything present is skipped. Every random quantity derives from
``study.seed`` and the identity of what it is for (purpose, model, variant, attack), never
from the order of execution, so an interrupted audit run again with the same configuration
and ``--out`` gives bit-for-bit the results of an uninterrupted one (on the CPU). The
configuration is written to ``<out>/config.json`` and a different one is refused.

Seeds (:mod:`mis.studies.audit.seeds`): ``derive_seed(seed, purpose, *keys)``
(:class:`numpy.random.SeedSequence`); purposes 1 keep masks, 2 model initialisation and data
order (model index), 3 calibration draw (model), 4 quantization method seed (model), 5 metric
bootstraps, 6 test split, 7 synthetic data, 8 ROC bands, 9 paired tests; strings (variant,
attack) enter as CRC-32 keys."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from mis.exceptions import MisValueError
from mis.store import RunStore
from mis.studies._common import (
    TimingLog,
    audit_footprint,
    check_out_config,
    check_resources,
    derive_seed,
    job_spec,
    locked_output,
    run_stage,
    versions,
)
from mis.studies.audit.analysis import analyse, verdict
from mis.studies.audit.config import Config
from mis.studies.audit.data import keep_matrix, load_data
from mis.studies.audit.jobs import quant_job, quant_name, train_job, train_name
from mis.studies.audit.models import stored_models, train_chunks, trainer_kind
from mis.studies.audit.report import write_report
from mis.studies.audit.scoring import attack_stage, full_precision_outputs
from mis.studies.audit.seeds import INIT, KEEP, PURPOSES, QUANT
from mis.train.executors import make_executor

__all__ = ["PAPER", "STAGES", "run_audit"]

log = logging.getLogger(__name__)

PAPER = (
    "Zhang, Qu, Li, Zhang, Pang, Mauw (2025), Bits for Privacy: Evaluating Post-Training "
    "Quantization via Membership Inference"
)
#: Stages after which ``run_audit(..., stop_after=...)`` may stop.
STAGES = ("train", "quantize", "attack")


def _check_images(config: Config, data) -> None:
    """Flip-and-crop augmentation and the flipped queries need images (n, C, H, W)."""
    if data.x.ndim == 4:
        return
    asks = []
    if config.train.augment and not config.train.fn:  # a user's train.fn augments itself
        asks.append("train.augment = false")
    if config.attack.n_aug > 1:
        asks.append("attack.n_aug = 1")
    if asks:
        raise MisValueError(
            f"the inputs are not images (shape {tuple(data.x.shape[1:])} per example): flips "
            f"and crops do not apply; set {' and '.join(asks)}"
        )


@locked_output
def run_audit(
    config: Config,
    out,
    *,
    executor=None,
    progress: bool | None = None,
    stop_after: str | None = None,
    report: bool = True,
) -> dict:
    """Run (or resume) the audit and write its report to ``out``.

    Parameters
    ----------
    config : Config
    out : path-like
        Output directory: ``store/`` (run store), ``analysis/`` (cached metrics),
        ``config.json``, ``timing.json``, ``report.md``, ``results.json``, CSV and PNG files.
    executor : object with ``map(fn, iterable)``, optional
        Runs the training and quantization jobs (default: in this process).
    progress : bool or None
        Progress bars (None: only when stderr is a terminal).
    stop_after : {"train", "quantize", "attack"}, optional
        Stop after that stage (the report is not written); a later call resumes.
    report : bool, default True
        Write ``report.md``, ``results.json``, CSV and PNG files (False: only return).

    Returns
    -------
    dict
        The content of ``results.json`` (empty when stopped early).

    Notes
    -----
    One line per stage goes to the ``mis.studies`` logger (level INFO).
    """
    if not isinstance(config, Config):
        raise MisValueError(
            f"config must be a mis.studies.audit.Config; got {type(config).__name__}"
        )
    if stop_after not in (None, *STAGES):
        raise MisValueError(f"stop_after must be None or one of {list(STAGES)}; got {stop_after!r}")
    t_start = time.perf_counter()
    check_resources("the audit", out=out, **audit_footprint(config))
    data = load_data(config)  # fails early with a clear message when files are missing
    _check_images(config, data)
    out = Path(out)
    cfg_path = check_out_config(out, config.as_dict(), "audit")
    store_path = out / "store"
    store = RunStore(store_path)
    executor = executor or make_executor("serial")
    timing_log = TimingLog(out)
    n = len(data)
    keep = keep_matrix(config, n)
    if not store.has("keep"):
        store.save("keep", keep, seed=derive_seed(config.study.seed, KEEP))
        store.save("labels", data.y)
        store.save("test_labels", data.y_test)
    elif not np.array_equal(np.asarray(store.load("keep")), keep):
        raise MisValueError(f"{store_path}/keep.npy does not match the configuration")
    timing: dict[str, float] = {}
    jobs: dict[str, dict[str, int]] = {}
    variants = config.variants()
    quantized = [v for v in variants if not v.is_fp]

    # -- 1+2: train and extract -------------------------------------------------------------
    kind = trainer_kind(config, data)
    chunks = train_chunks(config, kind)
    specs = [
        job_spec(store_path, train_name(i), i,
                 {"config": cfg_path, "store": str(store_path), "models": [a, b],
                  "trainer": kind},
                 seed=derive_seed(config.study.seed, INIT, a))
        for i, (a, b) in enumerate(chunks)
    ]  # fmt: skip
    log.info(
        "[train] %d shadows + %d targets (%s, %d epochs, %s trainer) on %d %s examples: %d job(s)",
        config.study.shadows,
        config.study.targets,
        config.model.label,
        config.train.epochs,
        kind,
        n,
        data.name or config.data.source,
        len(specs),
    )
    ran, skipped, timing["train_s"] = run_stage(train_job, specs, executor, "train", progress)
    timing_log.record("train", timing["train_s"], ran, skipped)
    jobs["train"] = {"run": ran, "skipped": skipped}
    if stop_after == "train":
        return {}

    # -- 3: quantize ------------------------------------------------------------------------
    quant_models = stored_models(config)
    specs = [
        job_spec(store_path, quant_name(v.key, m), m,
                 {"config": cfg_path, "model": m, "variant": v.key, "store": str(store_path)},
                 seed=derive_seed(config.study.seed, QUANT, m))
        for m in quant_models
        for v in quantized
    ]  # fmt: skip
    log.info(
        "[quantize] %d variant(s) (%s × %s bits) × %d model(s): %d job(s)",
        len(quantized),
        ", ".join(config.quant.methods) or "none",
        ", ".join(map(str, config.quant.bits)),
        len(quant_models),
        len(specs),
    )
    ran, skipped, timing["quantize_s"] = run_stage(quant_job, specs, executor, "quantize", progress)
    timing_log.record("quantize", timing["quantize_s"], ran, skipped)
    jobs["quantize"] = {"run": ran, "skipped": skipped}
    if stop_after == "quantize":
        return {}

    # -- 4: attack --------------------------------------------------------------------------
    t0 = time.perf_counter()
    store = RunStore(store_path, create=False)
    fp = full_precision_outputs(store, len(chunks))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ran = attack_stage(config, store, keep, fp, variants, progress)
    timing["attack_s"] = time.perf_counter() - t0
    timing_log.record("attack", timing["attack_s"], ran, len(variants) - ran)
    jobs["attack"] = {"run": ran, "skipped": len(variants) - ran}
    log.info("[attack] %s: done in %.1f s", ", ".join(config.attack.attacks), timing["attack_s"])
    if stop_after == "attack":
        return {}

    # -- 5: metrics -------------------------------------------------------------------------
    t0 = time.perf_counter()
    results = analyse(config, store, out, keep, fp, data, progress=progress)
    timing["analysis_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    history = timing_log.record("analysis", timing["analysis_s"])
    log.info("[metrics] done in %.1f s", timing["analysis_s"])
    invocations: dict[str, dict] = {}  # every invocation's finished stages, in order
    for h in history:
        inv = invocations.setdefault(h["invocation"], {"stages_s": {}, "jobs_run": 0})
        inv["stages_s"][h["stage"]] = inv["stages_s"].get(h["stage"], 0.0) + h["seconds"]
        inv["jobs_run"] += h["jobs_run"]
    all_invocations = [{"invocation": k, **v} for k, v in invocations.items()]
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    qsec = results.pop("quantize_seconds", {})
    by_method: dict[str, float] = {}
    for v in quantized:
        if v.key in qsec:
            by_method[v.method] = by_method.get(v.method, 0.0) + qsec[v.key]
    results.update(
        {
            "schema": 1,
            "study": config.study.name,
            "paper": PAPER,
            "config": config.as_dict(),
            "versions": versions(),
            "trainer": kind,
            "seeds": {
                "master": config.study.seed,
                "derivation": "SeedSequence([seed, purpose, *keys]); strings as CRC-32",
                "purposes": dict(PURPOSES),
            },
            "timing": {
                **timing,
                "jobs": jobs,
                "workers": getattr(executor, "max_workers", 1),
                "all_invocations": all_invocations,
                # seconds inside quantize_model, summed over targets (all invocations)
                "quantize_by_method": by_method,
                "quantize_jobs_per_method": len(quant_models)
                * len(quantized)
                // max(1, len(config.quant.methods)),
            },
        }
    )
    results["warnings"] = sorted(set(results.get("warnings", [])) | set(notes))
    results["verdict"] = verdict(results)
    if not report:
        return results
    t0 = time.perf_counter()
    files = write_report(results, out)
    log.info("[report] %s in %.1f s → %s", ", ".join(sorted(files)), time.perf_counter() - t0, out)
    return results
