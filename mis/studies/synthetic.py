"""The synthetic validation study of Aubinais et al. (2025), §5.1, end to end.

For every mixture setting (k_modes, σ) of the configuration (:mod:`mis.studies.config`):

1. **Training and r_Q** (resumable jobs, one per chunk of runs). Each run draws its own
   ``n_train`` i.i.d. points from the fixed Gaussian mixture (:class:`~mis.train.GaussianMixture`,
   §5.1.1) and trains the single layer on ``[x, x²]`` (:class:`~mis.train.QuadraticLinear`) with
   full-batch Adam; the runs of a chunk train together as one ensemble
   (:func:`~mis.train.train_ensemble`, closed-form gradient). After every ``every`` epochs a
   :class:`~mis.studies.stacked.KeepBestRecorder` quantizes every run's weights with every
   quantizer (Appendix D) and keeps the ``keep_best`` distinct lowest-loss quantized
   checkpoints with their per-sample losses on a validation set shared by the runs of the
   setting (Algorithm 1). The job also stores the final weights and the accuracies of the
   original and quantized final models on the training set and on a held-out test set
   (Table 2).
2. **MIS baseline** (one resumable job per setting and quantizer, plus the unquantized
   model): the quantized final weights, ``n_members`` members of each run's training set and as
   many fresh non-members, with the quantized model's loss on each, go to
   :func:`mis.security.mis_baseline` (§4.2; train / test split by run; the same split for every
   quantizer of a setting).
3. **Analysis** (cheap, recomputed on every call): r_Q of every run and quantizer
   (:func:`~mis.security.rq_batch`), the ranking with bootstrap-over-runs intervals
   (:func:`~mis.security.rank_quantizers`), its stability over subsets of runs (Fig. 1,
   :func:`~mis.security.rank_stability`), Spearman and Kendall between mean r_Q and the MIS
   (Fig. 2, :func:`~mis.security.rank_agreement`: bootstrap CIs, exact permutation
   p-values) and the accuracies (Table 2).
4. **Report** (:mod:`mis.report.synthetic`): ``report.md``, ``results.json``, CSV tables, PNG
   plots.

Resuming. Jobs write their arrays atomically to the run store ``<out>/store`` and then a
``done`` marker (:func:`mis.train.jobs.run_job`); a finished job is skipped. Every random
quantity derives from ``study.seed`` and the identity of what it is for (setting, run,
purpose) — never from the order of execution — so an interrupted study, run again with the
same configuration and output directory, produces bit-for-bit the results of an
uninterrupted one. The configuration is written to ``<out>/config.json`` on the first call
and a later call with a different configuration is refused.

Seeds. ``derive_seed(seed, purpose, k_modes, round(1000 σ), run)`` hashes these integers
with :class:`numpy.random.SeedSequence`; purposes: 1 mixture, 2 validation set, 3 test set,
4 training set of a run, 5 initialisation of a run, 6 non-members of a run, 7 discriminator,
8 analysis bootstraps.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mis.exceptions import DegenerateStatisticWarning, MisValueError
from mis.studies.common import (
    check_out_config,
    derive_seed,
    fill_keep_best_padding,
    interval_dict,
    job_spec,
    make_executor,
    ranking_summary,
    run_stage,
    versions,
)
from mis.studies.common import torch_threads as _torch_threads
from mis.studies.config import SyntheticConfig

__all__ = [
    "LABELS",
    "derive_seed",
    "mis_job",
    "run_synthetic",
    "setting_key",
    "train_chunk_job",
]

#: Display names of the quantizers (Aubinais et al., Table 1 / Fig. 2).
LABELS = {
    "sign": "Sign",
    "ternary-33": "1.58b 33%",
    "ternary-50": "1.58b 50%",
    "ternary-90": "1.58b 90%",
    "2bit": "2 bits",
    "3bit": "3 bits",
    "4bit": "4 bits",
    "5bit": "5 bits",
    "original": "original",
}

MIXTURE, VALIDATION, TEST, TRAIN_DATA, INIT, NONMEMBERS, DISCRIMINATOR, ANALYSIS = range(1, 9)
ORIGINAL = "original"


# ------------------------------------------------------------------------------------------
# seeds and data
# ------------------------------------------------------------------------------------------


def setting_key(k_modes: int, sigma: float) -> str:
    """Store prefix and report label of a setting, e.g. ``"k8-s2"``."""
    return f"k{int(k_modes)}-s{float(sigma):g}"


def _skeys(k_modes, sigma) -> tuple[int, int]:
    return int(k_modes), round(1000 * float(sigma))


def setting_data(cfg: SyntheticConfig, k_modes: int, sigma: float):
    """The mixture, validation set and test set of a setting.

    Returns
    -------
    mixture : GaussianMixture
    (x_val, y_val) : (n_val, dim) float32, (n_val,) int64
    (x_test, y_test) : (n_test, dim) float32, (n_test,) int64
    """
    from mis.train.data import GaussianMixture

    s, d = cfg.study.seed, cfg.data
    sk = _skeys(k_modes, sigma)
    mixture = GaussianMixture.random(
        dim=d.dim,
        k_modes=int(k_modes),
        sigma=float(sigma),
        rng=derive_seed(s, MIXTURE, *sk),
        centre_scale=d.centre_scale,
    )
    val = mixture.sample(d.n_val, derive_seed(s, VALIDATION, *sk))
    test = mixture.sample(d.n_test, derive_seed(s, TEST, *sk))
    return mixture, val, test


def training_set(cfg: SyntheticConfig, mixture, k_modes, sigma, run: int):
    """Run ``run``'s ``n_train`` training points: (n_train, dim) float32, (n_train,) int64."""
    return mixture.sample(
        cfg.data.n_train, derive_seed(cfg.study.seed, TRAIN_DATA, *_skeys(k_modes, sigma), run)
    )


def nonmember_set(cfg: SyntheticConfig, mixture, k_modes, sigma, run: int):
    """``n_members`` fresh points for run ``run``'s non-members (never trained on)."""
    return mixture.sample(
        cfg.mis.n_members, derive_seed(cfg.study.seed, NONMEMBERS, *_skeys(k_modes, sigma), run)
    )


def _flat_params(weight, bias) -> np.ndarray:
    """(K, C, F), (K, C) → (K, C + C·F) float32, parameters in name order (bias, weight)."""
    k = weight.shape[0]
    return np.concatenate(
        [
            np.asarray(bias, dtype=np.float32).reshape(k, -1),
            np.asarray(weight, dtype=np.float32).reshape(k, -1),
        ],
        axis=1,
    )


def _logits(flat: np.ndarray, x: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Logits of flat parameters (M, C + C·F) on raw inputs x (n, d): (M, n, C) float32."""
    import torch

    from mis.train.models import QuadraticLinear

    t = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
    b, w = t[:, :n_classes], t[:, n_classes:].reshape(t.shape[0], n_classes, -1)
    phi = QuadraticLinear.features(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return (torch.matmul(w, phi.t()) + b[:, :, None]).transpose(1, 2).numpy()


def _ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy of logits (..., n, C) with labels (n,) or (..., n), float32."""
    import torch
    import torch.nn.functional as F

    z = torch.from_numpy(np.ascontiguousarray(logits))
    yy = torch.from_numpy(np.broadcast_to(y, z.shape[:-1]).astype(np.int64))
    return (
        F.cross_entropy(z.reshape(-1, z.shape[-1]), yy.reshape(-1), reduction="none")
        .reshape(z.shape[:-1])
        .numpy()
    )


# ------------------------------------------------------------------------------------------
# jobs (module-level functions: picklable for process and distributed executors)
# ------------------------------------------------------------------------------------------
def _job_config(config: Mapping[str, Any]) -> SyntheticConfig:
    """The study configuration of a job: read from the ``config.json`` named by the job (kept
    out of the job's arguments, which the run store records with every array)."""
    return SyntheticConfig.from_dict(json.loads(Path(config["config"]).read_text()))


def train_chunk_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train runs ``config["runs"] = [r0, r1)`` of one setting and record their trajectories.

    Returns ``val_losses`` (K, Q, B, n_val) float32, ``qhash`` (K, Q, B) uint64,
    ``val_epochs`` (K, Q, B) int64, ``n_changes`` (K, Q) int64, ``final_params``
    (K, 2 + 2·2d) float32 (bias, weight), ``acc_train`` / ``acc_test`` (K, 1 + Q) float64
    (original model first, then the quantizers in config order).
    """
    import torch

    from mis.studies.stacked import KeepBestRecorder
    from mis.train.ensemble import train_ensemble
    from mis.train.models import QuadraticLinear
    from mis.train.trainer import TrainConfig

    cfg = _job_config(config)
    k_modes, sigma = config["k_modes"], config["sigma"]
    r0, r1 = (int(v) for v in config["runs"])
    runs = np.arange(r0, r1)
    tr = cfg.trajectory
    cpu0 = time.process_time()
    with _torch_threads(1):
        mixture, (xv, yv), (xt, yt) = setting_data(cfg, k_modes, sigma)
        sets = [training_set(cfg, mixture, k_modes, sigma, int(r)) for r in runs]
        x = torch.from_numpy(np.concatenate([s[0] for s in sets]))
        y = torch.from_numpy(np.concatenate([s[1] for s in sets]))
        n = cfg.data.n_train
        subsets = [np.arange(i * n, (i + 1) * n) for i in range(len(runs))]
        init = [derive_seed(cfg.study.seed, INIT, *_skeys(k_modes, sigma), int(r)) for r in runs]
        keep = tr.keep_best or max(1, cfg.train.epochs // tr.every)
        rec = KeepBestRecorder(
            tr.quantizers,
            torch.from_numpy(xv),
            yv,
            keep_best=keep,
            every=tr.every,
            params=tr.params,
        )
        ens = train_ensemble(
            functools.partial(QuadraticLinear, cfg.data.dim),
            x,
            y,
            TrainConfig.aubinais2025(epochs=cfg.train.epochs, lr=cfg.train.lr),
            init,
            subsets=subsets,
            device="cpu",
            callbacks=[rec],
            progress=False,
        )
        res = rec.result()
        weight, bias = ens.params["fc.weight"], ens.params["fc.bias"]
        k, nq = len(runs), len(tr.quantizers)
        final = _flat_params(weight.numpy(), bias.numpy())  # (K, P)
        quant = rec.quantize(weight, bias).reshape(k, nq, -1)  # (K, Q, P)
        variants = np.concatenate([final[:, None], quant], axis=1)  # (K, 1 + Q, P)
        acc_train = np.empty((k, 1 + nq))
        acc_test = np.empty((k, 1 + nq))
        for i, (xs, ys) in enumerate(sets):
            acc_train[i] = (_logits(variants[i], xs).argmax(-1) == ys).mean(axis=1)
            acc_test[i] = (_logits(variants[i], xt).argmax(-1) == yt).mean(axis=1)
    return {
        **res,
        "n_changes": rec.n_changes,
        "final_params": final,
        "acc_train": acc_train,
        "acc_test": acc_test,
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }


def _quantize_flat(name: str, flat: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Quantize flat (R, C + C·F) parameters tensor by tensor with ``weight_quantizer``."""
    import torch

    if name == ORIGINAL:
        return flat
    from mis.quant import weight_quantizer

    q = weight_quantizer(name)
    out = np.empty_like(flat)
    for r in range(flat.shape[0]):
        t = torch.from_numpy(np.ascontiguousarray(flat[r]))
        out[r, :n_classes] = q(t[:n_classes]).numpy()
        out[r, n_classes:] = q(t[n_classes:].reshape(n_classes, -1)).numpy().reshape(-1)
    return out


def mis_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """The MIS baseline of one setting and one quantizer (or ``"original"``).

    Returns ``summary`` (9,) float64 (the entries of :data:`MIS_SUMMARY`: MIS and test
    accuracy with their Clopper–Pearson bounds, best epoch, epochs run, test decisions), and
    ``per_run_mis``, ``per_run_accuracy``, ``test_runs`` (n_test_runs,).
    """
    from mis.security import mis_baseline
    from mis.store import RunStore

    cfg = _job_config(config)
    k_modes, sigma, name = config["k_modes"], config["sigma"], config["quantizer"]
    store = RunStore(config["store"], create=False)
    chunks = [_chunk_name(setting_key(k_modes, sigma), i) for i in range(len(_chunks(cfg)))]
    cpu0 = time.process_time()
    with _torch_threads(1):
        final = np.concatenate([np.asarray(store.load(f"{c}/final_params")) for c in chunks])
        params = _quantize_flat(name, final)
        if cfg.trajectory.params == "weights" and name != ORIGINAL:
            params[:, :2] = final[:, :2]
        mixture, _, _ = setting_data(cfg, k_modes, sigma)
        m = cfg.mis.n_members
        mx, my, ml, nx, ny, nl = ([] for _ in range(6))
        for r in range(final.shape[0]):
            xs, ys = training_set(cfg, mixture, k_modes, sigma, r)
            xs, ys = xs[:m], ys[:m]
            xn, yn = nonmember_set(cfg, mixture, k_modes, sigma, r)
            both = _ce(
                _logits(params[r : r + 1], np.concatenate([xs, xn]))[0], np.concatenate([ys, yn])
            )
            mx.append(xs), my.append(ys), ml.append(both[:m])
            nx.append(xn), ny.append(yn), nl.append(both[m:])
        c = cfg.mis
        res = mis_baseline(
            params,
            np.stack(mx),
            np.stack(my),
            np.stack(ml),
            np.stack(nx),
            np.stack(ny),
            np.stack(nl),
            n_classes=2,
            test_fraction=c.test_fraction,
            val_fraction=c.val_fraction,
            hidden=c.hidden,
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            patience=c.patience,
            device="cpu",
            num_threads=1,
            rng=derive_seed(cfg.study.seed, DISCRIMINATOR, *_skeys(k_modes, sigma)),
            progress=False,
        )
    summary = [
        res.mis.estimate,
        res.mis.low,
        res.mis.high,
        res.accuracy.estimate,
        res.accuracy.low,
        res.accuracy.high,
        res.best_epoch,
        len(res.history["train_loss"]),
        res.n_test,
    ]
    return {
        "summary": np.array(summary, dtype=np.float64),
        "per_run_mis": res.per_run_mis,
        "per_run_accuracy": res.per_run_accuracy,
        "test_runs": res.test_runs.astype(np.int64),
        "cpu_seconds": np.array([time.process_time() - cpu0]),
    }


#: Entries of a MIS job's ``summary`` array.
MIS_SUMMARY = (
    "mis",
    "mis_low",
    "mis_high",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "best_epoch",
    "epochs_run",
    "n_test",
)


# ------------------------------------------------------------------------------------------
# orchestration
# ------------------------------------------------------------------------------------------
def _chunks(cfg: SyntheticConfig) -> list[tuple[int, int]]:
    c, n = cfg.study.chunk_size, cfg.study.runs
    return [(a, min(a + c, n)) for a in range(0, n, c)]


def _chunk_name(key: str, i: int) -> str:
    return f"{key}/train/chunk{i:04d}"


def _mis_variants(cfg: SyntheticConfig) -> list[str]:
    return list(cfg.trajectory.quantizers) + ([ORIGINAL] if cfg.mis.include_original else [])


def run_synthetic(
    config: SyntheticConfig,
    out,
    *,
    executor=None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    stop_after: str | None = None,
) -> dict:
    """Run (or resume) the synthetic study and write its report to ``out``.

    Parameters
    ----------
    config : SyntheticConfig
    out : path-like
        Output directory: ``store/`` (run store of the jobs), ``config.json``, ``report.md``,
        ``results.json``, CSV tables and PNG plots.
    executor : object with ``map(fn, iterable)``, optional
        Runs the jobs; default: ``config.study.workers`` spawned processes (serial when 1).
    progress : bool or None
        Progress bars (None: only when stderr is a terminal).
    log : callable or None
        Receives one line per stage (default ``print``).
    stop_after : {"train", "mis"}, optional
        Stop after that stage (for tests and staged runs); the report is not written.

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from mis.store import RunStore

    if not isinstance(config, SyntheticConfig):
        raise MisValueError(f"config must be a SyntheticConfig; got {type(config).__name__}")
    if stop_after not in (None, "train", "mis"):
        raise MisValueError(f"stop_after must be None, 'train' or 'mis'; got {stop_after!r}")
    say = log or (lambda s: None)
    out = Path(out)
    check_out_config(out, config.as_dict(), "study", ignore=("study.workers",))
    store_path = out / "store"
    cfg_path = str((out / "config.json").resolve())
    RunStore(store_path)  # create
    executor = executor or make_executor(config.study.workers)
    cfg_dict = config.as_dict()
    settings = config.settings()
    chunks = _chunks(config)
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    invocation = time.strftime("%Y-%m-%dT%H:%M:%S")

    # -- stage 1: training and trajectories ---------------------------------------------------
    specs = []
    for k, s in settings:
        key = setting_key(k, s)
        for i, (a, b) in enumerate(chunks):
            specs.append(
                job_spec(
                    store_path,
                    _chunk_name(key, i),
                    i,
                    {"config": cfg_path, "k_modes": k, "sigma": s, "runs": [a, b]},
                )
            )
    say(
        f"[train] {len(settings)} setting(s) × {config.study.runs} runs × "
        f"{config.train.epochs} epochs, {len(config.trajectory.quantizers)} quantizers: "
        f"{len(specs)} jobs"
    )
    ran, skipped, timing["train_s"] = run_stage(
        train_chunk_job, specs, executor, "train", progress, say
    )
    _append_timing(out, invocation, "train", timing["train_s"], ran, skipped)
    jobs = {"train": {"run": ran, "skipped": skipped}}
    if stop_after == "train":
        return {}

    # -- stage 2: MIS baseline ----------------------------------------------------------------
    mis_specs = []
    if config.mis.enabled:
        for k, s in settings:
            key = setting_key(k, s)
            for j, q in enumerate(_mis_variants(config)):
                mis_specs.append(
                    job_spec(
                        store_path,
                        f"{key}/mis/{q}",
                        j,
                        {
                            "config": cfg_path,
                            "k_modes": k,
                            "sigma": s,
                            "quantizer": q,
                            "store": str(store_path),
                        },
                    )
                )
        say(f"[mis] {len(mis_specs)} discriminators")
    ran, skipped, timing["mis_s"] = run_stage(
        mis_job, mis_specs, executor, "mis", progress, say if mis_specs else None
    )
    jobs["mis"] = {"run": ran, "skipped": skipped}
    if mis_specs:
        _append_timing(out, invocation, "mis", timing["mis_s"], ran, skipped)
    if stop_after == "mis":
        return {}

    # -- stage 3: analysis --------------------------------------------------------------------
    t0 = time.perf_counter()
    store = RunStore(store_path, create=False)
    results_settings = []
    rq_time = 0.0
    for k, s in settings:
        res, dt = _analyse_setting(config, store, k, s)
        rq_time += dt
        results_settings.append(res)
    timing["rq_s"] = rq_time
    timing["analysis_s"] = time.perf_counter() - t0
    timing["rq_part_s"] = timing["train_s"] + rq_time
    timing["cpu_s"] = _cpu_seconds(store)
    timing["total_s"] = time.perf_counter() - t_start
    say(f"[analysis] done in {timing['analysis_s']:.1f} s")
    history = _append_timing(out, invocation, "analysis", timing["analysis_s"], 0, 0)

    results = {
        "schema": 1,
        "study": config.study.name,
        "paper": "Aubinais et al. (2025), Membership Inference Risks in Quantized Models, §5.1",
        "config": cfg_dict,
        "versions": versions(),
        "seeds": {
            "master": config.study.seed,
            "derivation": "SeedSequence([seed, purpose, k_modes, round(1000*sigma), run])",
            "purposes": {
                "mixture": MIXTURE,
                "validation": VALIDATION,
                "test": TEST,
                "training_set": TRAIN_DATA,
                "init": INIT,
                "nonmembers": NONMEMBERS,
                "discriminator": DISCRIMINATOR,
                "analysis": ANALYSIS,
            },
        },
        "quantizers": list(config.trajectory.quantizers),
        "labels": {q: LABELS.get(q, q) for q in [*config.trajectory.quantizers, ORIGINAL]},
        "settings": results_settings,
        "summary": _summary(results_settings),
        "timing": {**timing, "jobs": jobs, "workers": getattr(executor, "max_workers", 1)},
        "timing_history": _history_summary(history),
    }
    from mis.report.synthetic import write_report

    t0 = time.perf_counter()
    files = write_report(results, out)
    say(f"[report] {', '.join(sorted(files))} in {time.perf_counter() - t0:.1f} s → {out}")
    return results


def _append_timing(
    out: Path, invocation: str, stage: str, seconds: float, ran: int, skipped: int
) -> list[dict]:
    """Record a finished stage in ``<out>/timing.json`` (every invocation of a resumed study;
    a stage interrupted before its end is not recorded). Returns the whole history."""
    from mis.store import atomic_write_text

    path = out / "timing.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(
        {
            "invocation": invocation,
            "stage": stage,
            "seconds": round(seconds, 3),
            "jobs_run": ran,
            "jobs_skipped": skipped,
        }
    )
    atomic_write_text(path, json.dumps(history, indent=1) + "\n")
    return history


def _cpu_seconds(store) -> dict[str, float]:
    """Process CPU seconds of the jobs, summed per stage (a measure of the work that does not
    depend on how busy the machine was; jobs of older versions did not record it)."""
    out = {"train": 0.0, "mis": 0.0, "train_jobs": 0, "mis_jobs": 0}
    for name in store.names():
        if name.endswith("/cpu_seconds"):
            stage = "train" if "/train/" in name else "mis"
            out[stage] += float(np.asarray(store.load(name))[0])
            out[f"{stage}_jobs"] += 1
    return out


def _history_summary(history: list[dict]) -> dict:
    """Seconds spent per stage over all recorded invocations (work actually done)."""
    out: dict[str, Any] = {"invocations": sorted({h["invocation"] for h in history})}
    for stage in ("train", "mis"):
        rows = [h for h in history if h["stage"] == stage and h["jobs_run"]]
        out[f"{stage}_s"] = round(sum(h["seconds"] for h in rows), 3)
        out[f"{stage}_jobs_run"] = sum(h["jobs_run"] for h in rows)
    return out


# ------------------------------------------------------------------------------------------
# analysis
# ------------------------------------------------------------------------------------------
def _load_chunks(store, key: str, n_chunks: int, name: str) -> np.ndarray:
    return np.concatenate(
        [np.asarray(store.load(f"{_chunk_name(key, i)}/{name}")) for i in range(n_chunks)]
    )


def rq_values(store, key: str, n_chunks: int):
    """r_Q (n_runs, n_quantizers) of a setting from its chunks, with diagnostics."""
    from mis.security import rq_batch

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


def _analyse_setting(cfg: SyntheticConfig, store, k_modes, sigma) -> tuple[dict, float]:
    from mis.security import rank_agreement, rank_quantizers, rank_stability

    key = setting_key(k_modes, sigma)
    n_chunks = len(_chunks(cfg))
    names = list(cfg.trajectory.quantizers)
    an = cfg.analysis
    seed = derive_seed(cfg.study.seed, ANALYSIS, *_skeys(k_modes, sigma))
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
        mis = {}
        per_run = []
        for q in _mis_variants(cfg):
            p = f"{key}/mis/{q}"
            v = dict(
                zip(MIS_SUMMARY, map(float, np.asarray(store.load(f"{p}/summary"))), strict=True)
            )
            mis[q] = {
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
        res["mis"] = mis
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


def _summary(settings: list[dict]) -> dict:
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
