"""The PTQ privacy audit of Zhang et al. (2025), *Bits for Privacy*, end to end: ``mis audit``.

Pipeline (:func:`run_audit`; configuration in :mod:`mis.studies.audit_config`):

1. **Train** (resumable jobs): ``shadows + targets`` models of one architecture, all full
   precision, each on its row of the keep masks (:func:`~mis.train.keep_masks`: every
   example of the audit pool is IN for exactly ``pkeep`` of the models, Carlini et al. 2022
   §VI-A). Models 0 … S−1 are the shadows, S … S+T−1 the targets (the paper's "random
   seeds"). BatchNorm-free models train together with the vmap ensemble trainer, others one
   per job with the plain trainer (checkpointed every epoch).
2. **Logits** (inside the training job): every model on every pool example under the
   augmentation queries (``n_aug``), reduced to what the attacks read — the LiRA signal
   (scaled logit), the true-class probability (RMIA) and the loss score — plus the
   predictions on the test set. The targets' weights are stored (flat float32 vectors).
3. **Quantize** (one resumable job per target and variant): method × bits (× decoupled last
   layer), looked up by name in the :mod:`mis.quant` registry; calibration data are
   ``calibration_samples`` of the target's *own members* (:func:`~mis.quant.select_calibration`,
   the same draw for every method, §IV-A); then the quantized target's signals, probabilities,
   losses and test predictions. With ``attack.quantize_shadows`` the shadows are quantized
   the same way (each calibrated on its own members).
4. **Attack**: per target and variant, LiRA online and offline (Carlini et al. 2022, Eq. 3–4;
   fixed variance as configured) and offline RMIA (Zarifzadeh et al. 2024) against the
   full-precision shadows (or the quantized ones), and the loss threshold (Yeom et al. 2018).
5. **Metrics**: test accuracy of every target; TPR at the configured FPRs, AUC and log-AUC per
   target (bootstrap CIs over examples) and pooled over targets (cluster bootstrap: an example
   and its rows across targets are resampled together); over targets mean ± sd and a
   Student-t interval; paired bootstrap tests (:func:`mis.metrics.compare_roc`) of each
   quantized variant against the same targets at full precision, pooled and per target, with
   Holm's correction over each family (statsmodels).
6. **Report** (:mod:`mis.report.audit`): ``report.md``, ``results.json``, CSV tables and PNG
   figures.

Resuming. Stages 1–3 write their arrays atomically into the run store ``<out>/store``
(:func:`mis.train.jobs.run_job`, a ``done`` marker per job); stage 4 stores the scores
(``scores/<variant>/<attack>``) and stage 5 caches one JSON file per (variant, attack) in
``<out>/analysis``; anything present is skipped. Every random quantity derives from
``study.seed`` and the identity of what it is for (purpose, model, variant, attack), never
from the order of execution, so an interrupted audit run again with the same configuration
and ``--out`` gives bit-for-bit the results of an uninterrupted one (on the CPU). The
configuration is written to ``<out>/config.json`` and a different one is refused.

Seeds: ``derive_seed(seed, purpose, *keys)`` (:class:`numpy.random.SeedSequence`); purposes
1 keep masks, 2 model initialisation and data order (model index), 3 calibration draw (model),
4 quantization method seed (model), 5 metric bootstraps, 6 test split, 7 synthetic data,
8 ROC bands, 9 paired tests; strings (variant, attack) enter as CRC-32 keys.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mis.exceptions import MisValueError
from mis.studies.audit_config import (
    AuditConfig,
    Variant,
    default_config,
    load_audit_config,
)
from mis.studies.common import (
    check_out_config,
    derive_seed,
    job_spec,
    run_stage,
    versions,
)
from mis.studies.common import torch_threads as _torch_threads

__all__ = [
    "add_audit_command",
    "cmd_audit",
    "derive_seed",
    "ensure_methods",
    "load_audit_data",
    "quant_job",
    "run_audit",
    "train_job",
]

KEEP, INIT, CALIB, QUANT, BOOT, SPLIT, SYNTH, BAND, TESTS = range(1, 10)
PAPER = (
    "Zhang, Qu, Li, Zhang, Pang, Mauw (2025), Bits for Privacy: Evaluating Post-Training "
    "Quantization via Membership Inference"
)
STAGES = ("train", "quantize", "attack")


# ------------------------------------------------------------------------------------------
# seeds
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# quantization methods (looked up by name, never imported by their internals)
# ------------------------------------------------------------------------------------------
def ensure_methods(methods) -> None:
    """Make sure every method name is registered in :mod:`mis.quant`.

    A name not registered yet is looked for as the module ``mis.quant.<name>`` (methods
    register themselves on import). Raises :class:`MisValueError` naming what is available.
    """
    quant = importlib.import_module("mis.quant")
    for name in methods:
        if name in quant.available_methods():
            continue
        try:
            importlib.import_module(f"mis.quant.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mis.quant.{name}":
                raise
            raise MisValueError(
                f"quantization method {name!r} (quant.methods) is not registered and there is "
                f"no module mis.quant.{name} that would register it; available methods: "
                f"{list(quant.available_methods())}. Remove it from quant.methods."
            ) from None
        if name not in quant.available_methods():
            raise MisValueError(
                f"mis.quant.{name} was imported but registers no method named {name!r}; "
                f"available: {list(quant.available_methods())}"
            )


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def _synthetic(cfg: AuditConfig):
    """Class-prototype images: x = prototype[y] + noise · N(0, 1), float32 (no download)."""
    from mis.train.data import Dataset

    d = cfg.data
    g = np.random.default_rng(derive_seed(cfg.study.seed, SYNTH))
    protos = g.standard_normal((d.synthetic_classes, *d.synthetic_shape)).astype(np.float32)

    def draw(n):
        y = g.integers(0, d.synthetic_classes, size=n)
        noise = g.standard_normal((n, *d.synthetic_shape)).astype(np.float32)
        return protos[y] + np.float32(d.synthetic_noise) * noise, y.astype(np.int64)

    x, y = draw(d.synthetic_n)
    xt, yt = draw(d.synthetic_n_test)
    return Dataset(x=x, y=y, n_classes=d.synthetic_classes, x_test=xt, y_test=yt, name="synthetic")


_ROOT_LAYOUT = {
    "cifar10": "cifar-10-batches-py/{data_batch_1..5, test_batch} (the official python version)",
    "cifar100": "cifar-100-python/{train, test} (the official python version)",
    "tinyimagenet": "tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, "
    "val/val_annotations.txt, val/images/*.JPEG}",
}


def _open_dataset(cfg: AuditConfig):
    from mis.train import data as D

    d = cfg.data
    if d.name == "digits":
        return D.load_digits()
    if d.name == "synthetic":
        return _synthetic(cfg)
    if d.name == "npz":
        if not d.path:
            raise MisValueError("data.path must name the .npz file (data.name = 'npz')")
        return D.load_npz(d.path)
    loader = {"cifar10": D.load_cifar10, "cifar100": D.load_cifar100}.get(d.name)
    if d.name == "tinyimagenet":
        loader = functools.partial(D.load_tinyimagenet, cache=True)
    if not d.root:
        raise FileNotFoundError(
            f"data.root is not set: the {d.name} audit reads a local copy of the data set. "
            f'Expected under DIR: {_ROOT_LAYOUT[d.name]}. Set data.root = "DIR" in the config '
            "or pass --data-root DIR."
        )
    root = Path(d.root).expanduser()
    try:
        return loader(root)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"data directory for data.name = {d.name!r} is missing or incomplete "
            f"(data.root = {d.root!r}, i.e. {root.resolve()}). {exc}"
        ) from None


@functools.lru_cache(maxsize=1)
def _cached_data(key: str):
    cfg = AuditConfig.from_dict(json.loads(key))
    return _build_data(cfg)


def _build_data(cfg: AuditConfig):
    """The audit pool (training split) and test split as one :class:`~mis.train.Dataset`."""
    ds = _open_dataset(cfg)
    d = cfg.data
    x, y, xt, yt = ds.x, ds.y, ds.x_test, ds.y_test
    if xt is None:
        if d.test_size < 1 or d.test_size >= len(x) - 1:
            raise MisValueError(
                f"data set {d.name!r} has no test split: set data.test_size to the number of "
                f"examples to hold out (1 .. {len(x) - 2}); got {d.test_size}"
            )
        perm = np.random.default_rng(derive_seed(cfg.study.seed, SPLIT)).permutation(len(x))
        test, pool = np.sort(perm[: d.test_size]), np.sort(perm[d.test_size :])
        x, y, xt, yt = x[pool], y[pool], x[test], y[test]
    if d.n_examples:
        if d.n_examples > len(x):
            raise MisValueError(
                f"data.n_examples must be <= the pool size {len(x)}; got {d.n_examples}"
            )
        x, y = x[: d.n_examples], y[: d.n_examples]
    if d.n_test:
        xt, yt = xt[: d.n_test], yt[: d.n_test]
    return dataclasses.replace(
        ds,
        x=np.ascontiguousarray(x),
        y=np.ascontiguousarray(y),
        x_test=np.ascontiguousarray(xt),
        y_test=np.ascontiguousarray(yt),
    )


def load_audit_data(cfg: AuditConfig):
    """The data of an audit: ``Dataset`` with the pool as ``x, y`` and the test split.

    Cached (one data set per process), so the jobs of one audit read the files once.
    """
    key = json.dumps({"study": {**cfg.as_dict()["study"]}, "data": cfg.as_dict()["data"]})
    return _cached_data(key)


def keep_matrix(cfg: AuditConfig, n_examples: int) -> np.ndarray:
    """Keep masks of all models, shape (shadows + targets, n_examples)."""
    from mis.train.masks import keep_masks

    return keep_masks(
        cfg.study.n_models, n_examples, cfg.study.pkeep, rng=derive_seed(cfg.study.seed, KEEP)
    )


# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------
def model_factory(cfg: AuditConfig, data) -> Callable:
    """A picklable zero-argument factory of the configured architecture for ``data``."""
    from mis.train.models import build_model

    name = cfg.model.name
    opts = dict(cfg.model.options)
    shape = data.x.shape[1:]
    if name in ("resnet18", "resnet50", "densenet121"):
        opts.setdefault("n_classes", data.n_classes)
        opts.setdefault("in_channels", int(shape[0]))
    elif name == "digits_cnn":
        opts.setdefault("n_classes", data.n_classes)
        opts.setdefault("in_channels", int(shape[0]))
        opts.setdefault("size", int(shape[-1]))
    elif name == "mlp":
        opts.setdefault("n_classes", data.n_classes)
        opts.setdefault("in_features", int(np.prod(shape)))
    elif name == "quadratic_linear":
        opts.setdefault("n_classes", data.n_classes)
        opts.setdefault("dim", int(np.prod(shape)))
    return functools.partial(build_model, name, **opts)


def _has_batchnorm(model) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def trainer_kind(cfg: AuditConfig, data) -> str:
    """ "ensemble" or "plain" (``auto``: ensemble unless the model has BatchNorm)."""
    if cfg.train.trainer != "auto":
        return cfg.train.trainer
    import torch

    with torch.random.fork_rng(devices=[]):
        model = model_factory(cfg, data)()
    return "plain" if _has_batchnorm(model) else "ensemble"


def train_chunks(cfg: AuditConfig, kind: str) -> list[tuple[int, int]]:
    """Model index ranges [a, b) trained by one job each."""
    size = 1 if kind == "plain" else cfg.study.chunk_size
    m = cfg.study.n_models
    return [(a, min(a + size, m)) for a in range(0, m, size)]


def stored_models(cfg: AuditConfig) -> list[int]:
    """Models whose weights are kept: the targets (and the shadows when they are quantized)."""
    if cfg.attack.quantize_shadows:
        return list(range(cfg.study.n_models))
    return cfg.target_models()


def pack_state(model) -> tuple[np.ndarray, np.ndarray]:
    """State dict → (float32 vector of floating tensors, int64 vector of the others)."""
    import torch

    fl, ints = [], []
    for t in model.state_dict().values():
        t = t.detach().cpu()
        (fl if t.is_floating_point() else ints).append(t.reshape(-1))
    f = torch.cat([t.float() for t in fl]).numpy() if fl else np.zeros(0, np.float32)
    i = torch.cat([t.long() for t in ints]).numpy() if ints else np.zeros(0, np.int64)
    return f.astype(np.float32), i.astype(np.int64)


def unpack_state(model, flat: np.ndarray, ints: np.ndarray):
    """Inverse of :func:`pack_state` (in place); returns the model in eval mode."""
    import torch

    new, pf, pi = {}, 0, 0
    for name, t in model.state_dict().items():
        n = t.numel()
        if t.is_floating_point():
            new[name] = torch.as_tensor(np.array(flat[pf : pf + n])).view_as(t).to(t.dtype)
            pf += n
        else:
            new[name] = torch.as_tensor(np.array(ints[pi : pi + n])).view_as(t).to(t.dtype)
            pi += n
    if pf != flat.size or pi != ints.size:
        raise MisValueError(
            f"stored weights do not fit the model: {flat.size} float / {ints.size} int values "
            f"stored, the model has {pf} / {pi}"
        )
    model.load_state_dict(new)
    return model.eval()


def _device(cfg: AuditConfig):
    from mis.train.trainer import resolve_device

    return resolve_device(None if cfg.study.device == "auto" else cfg.study.device)


def _evaluate(models, data, cfg: AuditConfig, device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Signals, probabilities, loss scores (pool, under the queries), test predictions; logits."""
    from mis.attacks import lira_signal, loss_threshold, true_class_probability
    from mis.train.logits import extract_logits

    x = data.tensor(data.x)
    logits = extract_logits(models, x, queries=cfg.attack.n_aug, device=device, progress=False)
    xt = data.tensor(data.x_test)
    test = extract_logits(models, xt, queries=1, device=device, progress=False)[:, :, 0]
    out = {
        "signal": lira_signal(logits, data.y),
        "prob": true_class_probability(logits, data.y),
        "loss": loss_threshold(logits, data.y),
        "test_pred": test.argmax(-1).astype(np.int64),
    }
    return out, logits


# ------------------------------------------------------------------------------------------
# jobs (module level, picklable; the audit config is read from <out>/config.json)
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _read_config(path: str, mtime_ns: int) -> AuditConfig:
    return AuditConfig.from_dict(json.loads(Path(path).read_text()))


def _job_config(job: Mapping[str, Any]) -> AuditConfig:
    p = Path(job["config"])
    return _read_config(str(p), p.stat().st_mtime_ns)


def train_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train models ``config["models"] = [a, b)`` on their keep rows; their compact outputs.

    Returns ``signal`` (k, N, n_aug) and ``prob`` float64, ``loss`` (k, N), ``test_pred``
    (k, n_test) int64, optionally ``logits`` (k, N, n_aug, C) float32, and for the models
    whose weights are kept ``state_index`` (j,), ``state_float`` (j, P) float32 and
    ``state_int`` (j, Q) int64.
    """
    from mis.train.ensemble import train_ensemble
    from mis.train.trainer import train_model

    cfg = _job_config(config)
    a, b = config["models"]
    data = load_audit_data(cfg)
    device = _device(cfg)
    keep = keep_matrix(cfg, len(data))[a:b]
    seeds = [derive_seed(cfg.study.seed, INIT, m) for m in range(a, b)]
    fn = model_factory(cfg, data)
    tc = cfg.train.train_config()
    with _torch_threads(cfg.study.torch_threads):
        x = data.tensor(data.x)
        if config["trainer"] == "ensemble":
            ens = train_ensemble(fn, x, data.y, tc, seeds, subsets=keep, device=device,
                                 progress=False)  # fmt: skip
            models = [ens.model(k) for k in range(b - a)]
        else:
            if b - a != 1:
                raise MisValueError("the plain trainer trains one model per job")
            models = [
                train_model(fn, x, data.y, tc, seeds[0], subset=keep[0], device=device,
                            checkpoint=Path(scratch) / "ckpt.pt", progress=False)
            ]  # fmt: skip
        out, logits = _evaluate(models, data, cfg, device)
    if cfg.study.save_logits:
        out["logits"] = logits
    want = set(stored_models(cfg))
    rows = [k for k, m in enumerate(range(a, b)) if m in want]
    if rows:
        packed = [pack_state(models[k]) for k in rows]
        out["state_index"] = np.array([a + k for k in rows], dtype=np.int64)
        out["state_float"] = np.stack([p[0] for p in packed])
        out["state_int"] = np.stack([p[1] for p in packed])
    return out


def train_name(i: int) -> str:
    return f"train/chunk{i:04d}"


def quant_name(variant: str, model: int) -> str:
    return f"quant/{variant}/m{model:04d}"


def load_model(cfg: AuditConfig, store, model_index: int, data=None):
    """Rebuild full-precision model ``model_index`` from its stored weights (CPU, eval mode)."""
    import torch

    data = data if data is not None else load_audit_data(cfg)
    kind = trainer_kind(cfg, data)
    for i, (a, b) in enumerate(train_chunks(cfg, kind)):
        if a <= model_index < b:
            idx = np.asarray(store.load(f"{train_name(i)}/state_index"))
            row = int(np.flatnonzero(idx == model_index)[0])
            flat = store.load(f"{train_name(i)}/state_float")[row]
            ints = store.load(f"{train_name(i)}/state_int")[row]
            with torch.random.fork_rng(devices=[]):
                model = model_factory(cfg, data)()
            return unpack_state(model, flat, ints)
    raise MisValueError(f"model index {model_index} out of range")


def quantization_config(cfg: AuditConfig, variant: Variant, model_index: int):
    """The :class:`~mis.quant.QuantConfig` of one variant of one model."""
    from mis.quant import QuantConfig

    return QuantConfig(
        bits=variant.bits,
        method=variant.method,
        last_layer_bits=variant.last_layer_bits,
        method_options=dict(cfg.quant.options.get(variant.method, {})),
        seed=derive_seed(cfg.study.seed, QUANT, model_index) % (2**31),
        **cfg.quant.grid,
    )


def quant_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Quantize model ``config["model"]`` as ``config["variant"]``; its compact outputs.

    Calibration: ``quant.calibration_samples`` of the model's own training members, drawn
    with a seed that depends on the model only (the same set for every method and bit width).
    Returns ``signal``, ``prob``, ``loss``, ``test_pred`` (as :func:`train_job`, without the
    model axis) and ``bits_per_parameter`` (1,).
    """
    import torch

    from mis.quant import quantization_report, quantize_model, select_calibration
    from mis.store import RunStore

    cfg = _job_config(config)
    v = Variant(**config["variant"])
    m = int(config["model"])
    ensure_methods([v.method])
    data = load_audit_data(cfg)
    device = _device(cfg)
    store = RunStore(config["store"], create=False)
    keep_row = keep_matrix(cfg, len(data))[m]
    with _torch_threads(cfg.study.torch_threads):
        model = load_model(cfg, store, m, data).to(device)
        x = data.tensor(data.x)
        cal = select_calibration(
            x,
            torch.as_tensor(data.y),
            member_mask=keep_row,
            n_samples=cfg.quant.calibration_samples,
            rng=derive_seed(cfg.study.seed, CALIB, m),
        )
        if device.type != "cpu":
            from mis.quant import Calibration

            cal = Calibration(tuple(t.to(device) for t in cal.data), cal.indices, keep_row)
        qmodel = quantize_model(model, quantization_config(cfg, v, m), cal)
        out, _ = _evaluate([qmodel], data, cfg, device)
    out = {k: arr[0] for k, arr in out.items()}
    out["bits_per_parameter"] = np.array([quantization_report(qmodel).bits_per_parameter])
    return out


# ------------------------------------------------------------------------------------------
# stages
# ------------------------------------------------------------------------------------------
def _fp_arrays(cfg: AuditConfig, store, n_chunks: int) -> dict[str, np.ndarray]:
    keys = ("signal", "prob", "loss", "test_pred")
    return {
        k: np.concatenate([np.asarray(store.load(f"{train_name(i)}/{k}")) for i in range(n_chunks)])
        for k in keys
    }


def _attack_scores(cfg, shadow, target, keep_sh, keep_t) -> dict[str, np.ndarray]:
    """Scores of every configured attack on one target given its shadows' arrays."""
    from mis.attacks import lira, rmia

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
    return {
        k: np.asarray(store.load(f"{quant_name(variant, m)}/{k}"))
        for k in ("signal", "prob", "loss", "test_pred")
    }


def attack_stage(cfg: AuditConfig, store, keep, fp, variants, progress=None) -> int:
    """Score every (variant, attack) on every target into ``scores/<variant>/<attack>``."""
    from mis.train import progress_bar

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


def _append_timing(out: Path, timing: dict) -> None:
    from mis.store import atomic_write_text

    path = out / "timing.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **timing})
    atomic_write_text(path, json.dumps(history, indent=2) + "\n")


def run_audit(
    config: AuditConfig,
    out,
    *,
    executor=None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    stop_after: str | None = None,
    report: bool = True,
) -> dict:
    """Run (or resume) the audit and write its report to ``out``.

    Parameters
    ----------
    config : AuditConfig
    out : path-like
        Output directory: ``store/`` (run store), ``analysis/`` (cached metrics),
        ``config.json``, ``timing.json``, ``report.md``, ``results.json``, CSV and PNG files.
    executor : object with ``map(fn, iterable)``, optional
        Runs the training and quantization jobs (default: in this process).
    progress : bool or None
        Progress bars (None: only when stderr is a terminal).
    log : callable or None
        Receives one line per stage (default ``print``).
    stop_after : {"train", "quantize", "attack"}, optional
        Stop after that stage (the report is not written); a later call resumes.
    report : bool, default True
        Write ``report.md``, ``results.json``, CSV and PNG files (False: only return).

    Returns
    -------
    dict
        The content of ``results.json`` (empty when stopped early).
    """
    from mis.store import RunStore
    from mis.studies.audit_analysis import analyse
    from mis.train.jobs import SerialExecutor

    if not isinstance(config, AuditConfig):
        raise MisValueError(f"config must be an AuditConfig; got {type(config).__name__}")
    if stop_after not in (None, *STAGES):
        raise MisValueError(f"stop_after must be None or one of {list(STAGES)}; got {stop_after!r}")
    say = log or (lambda s: None)
    t_start = time.perf_counter()
    ensure_methods(config.quant.methods)
    data = load_audit_data(config)  # fails early with a clear message when files are missing
    out = Path(out)
    cfg_path = check_out_config(out, config.as_dict(), "audit")
    store_path = out / "store"
    store = RunStore(store_path)
    executor = executor or SerialExecutor()
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
                 {"config": str(cfg_path), "models": [a, b], "trainer": kind},
                 seed=derive_seed(config.study.seed, INIT, a))
        for i, (a, b) in enumerate(chunks)
    ]  # fmt: skip
    say(
        f"[train] {config.study.shadows} shadows + {config.study.targets} targets "
        f"({config.model.name}, {config.train.epochs} epochs, {kind} trainer) on {n} "
        f"{data.name or config.data.name} examples: {len(specs)} job(s)"
    )
    ran, skipped, timing["train_s"] = run_stage(train_job, specs, executor, "train", progress, say)
    jobs["train"] = {"run": ran, "skipped": skipped}
    if stop_after == "train":
        return {}

    # -- 3: quantize ------------------------------------------------------------------------
    quant_models = stored_models(config)
    specs = [
        job_spec(store_path, quant_name(v.key, m), m,
                 {"config": str(cfg_path), "model": m, "variant": dataclasses.asdict(v),
                  "store": str(store_path)},
                 seed=derive_seed(config.study.seed, QUANT, m))
        for m in quant_models
        for v in quantized
    ]  # fmt: skip
    say(
        f"[quantize] {len(quantized)} variant(s) ({', '.join(config.quant.methods) or 'none'} × "
        f"{', '.join(map(str, config.quant.bits))} bits) × {len(quant_models)} model(s): "
        f"{len(specs)} job(s)"
    )
    ran, skipped, timing["quantize_s"] = run_stage(
        quant_job, specs, executor, "quantize", progress, say
    )
    jobs["quantize"] = {"run": ran, "skipped": skipped}
    if stop_after == "quantize":
        return {}

    # -- 4: attack --------------------------------------------------------------------------
    t0 = time.perf_counter()
    store = RunStore(store_path, create=False)
    fp = _fp_arrays(config, store, len(chunks))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ran = attack_stage(config, store, keep, fp, variants, progress)
    timing["attack_s"] = time.perf_counter() - t0
    jobs["attack"] = {"run": ran, "skipped": len(variants) - ran}
    say(f"[attack] {', '.join(config.attack.attacks)}: done in {timing['attack_s']:.1f} s")
    if stop_after == "attack":
        return {}

    # -- 5: metrics -------------------------------------------------------------------------
    t0 = time.perf_counter()
    results = analyse(config, store, out, keep, fp, data, progress=progress)
    timing["analysis_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    say(f"[metrics] done in {timing['analysis_s']:.1f} s")
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
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
                "purposes": {
                    "keep": KEEP,
                    "init": INIT,
                    "calibration": CALIB,
                    "quant": QUANT,
                    "bootstrap": BOOT,
                    "split": SPLIT,
                    "synthetic": SYNTH,
                    "band": BAND,
                    "tests": TESTS,
                },
            },
            "timing": {**timing, "jobs": jobs, "workers": getattr(executor, "max_workers", 1)},
        }
    )
    results["warnings"] = sorted(set(results.get("warnings", [])) | set(notes))
    _append_timing(out, results["timing"])
    if not report:
        return results
    from mis.report.audit import write_report

    t0 = time.perf_counter()
    files = write_report(results, out)
    say(f"[report] {', '.join(sorted(files))} in {time.perf_counter() - t0:.1f} s → {out}")
    return results


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def _load_cli_config(args) -> AuditConfig:
    cfg = load_audit_config(args.config) if args.config else default_config()
    over: dict[str, dict] = {}
    if args.data_root is not None:
        over.setdefault("data", {})["root"] = args.data_root
    if args.methods is not None:
        over.setdefault("quant", {})["methods"] = list(args.methods)
    if args.device is not None:
        over.setdefault("study", {})["device"] = args.device
    return cfg.replace(**over) if over else cfg


def cmd_audit(args) -> int:
    """``mis audit``: run or resume an audit and print its main tables."""
    from mis.report.audit import summary_markdown

    t0 = time.perf_counter()
    cfg = _load_cli_config(args)
    executor = None
    if getattr(args, "executor", None) is not None:
        from mis.train.executors import executor_from_args

        executor = executor_from_args(args)
    results = run_audit(
        cfg,
        args.out,
        executor=executor,
        progress=False if args.quiet else None,
        log=None if args.quiet else functools.partial(print, flush=True),
        stop_after=args.stop_after,
    )
    if results:
        print(summary_markdown(results))
    print(f"mis audit: {time.perf_counter() - t0:.1f} s wall → {args.out}")
    return 0


def add_audit_command(subparsers) -> Any:
    """Register ``mis audit`` on an ``argparse`` sub-parser collection; returns its parser."""
    p = subparsers.add_parser(
        "audit",
        help="PTQ privacy audit (Zhang et al. 2025): train, quantize, attack, report",
        description=(
            "Train shadow and target models with keep masks, quantize every target with every "
            "configured method and bit width (calibration from its own members), attack with "
            "LiRA online/offline, RMIA and the loss threshold, and report accuracy, TPR at low "
            "FPR, AUC and log-AUC with bootstrap CIs and Holm-corrected paired tests. "
            "Re-running with the same --config and --out resumes."
        ),
    )
    p.add_argument(
        "--config",
        default=None,
        help="TOML file (default: the embedded digits config, as experiments/digits.toml)",
    )
    p.add_argument("--out", default="mis-audit", help="output directory (default ./mis-audit)")
    p.add_argument("--data-root", default=None, help="override data.root (data directory)")
    p.add_argument("--methods", nargs="+", default=None, help="override quant.methods")
    p.add_argument("--device", default=None, help="override study.device (cpu, cuda, auto)")
    p.add_argument(
        "--stop-after", choices=STAGES, default=None, help="stop after this stage (resume later)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    try:
        from mis.train.executors import add_executor_arguments
    except ImportError:  # pragma: no cover - executors not installed
        pass
    else:
        add_executor_arguments(p)
    p.set_defaults(func=cmd_audit)
    return p
