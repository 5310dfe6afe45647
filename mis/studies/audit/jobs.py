"""The resumable jobs of the audit (module level, picklable) and where their outputs live.

* :func:`train_job` — train models ``[a, b)`` on their keep rows, then their compact
  outputs: the LiRA signal, true-class probability and loss score of every pool example
  under the augmentation queries, the test predictions, and the weights of the models that
  will be quantized.
* :func:`quant_job` — quantize one stored model as one variant (its validated
  :class:`~mis.quant.QuantConfig`), calibrated on that model's own members, and the same
  compact outputs for the quantized model.

A job reads the audit configuration from the ``config.json`` its arguments name, and the
keep masks from the run store (written once by :func:`~mis.studies.audit.run_audit`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mis._callables import resolve_callable
from mis.attacks import lira_signal, loss_threshold, true_class_probability
from mis.exceptions import MisValueError
from mis.quant import quantization_report, quantize_model, select_calibration
from mis.store import RunStore
from mis.studies._common import derive_seed, torch_threads
from mis.studies.audit.config import Config
from mis.studies.audit.data import load_data
from mis.studies.audit.models import (
    model_factory,
    pack_state,
    stored_models,
    train_chunks,
    trainer_kind,
    unpack_state,
)
from mis.studies.audit.seeds import CALIB, INIT, QUANT
from mis.train.config import resolve_device
from mis.train.ensemble import train_ensemble
from mis.train.logits import extract_logits
from mis.train.trainer import train_model

__all__ = ["load_model", "quant_job", "quant_name", "train_job", "train_name"]

#: The compact per-model outputs the attacks read.
OUTPUTS = ("signal", "prob", "loss", "test_pred")


def train_name(i: int) -> str:
    """Store prefix of training job ``i``."""
    return f"train/chunk{i:04d}"


def quant_name(variant: str, model: int) -> str:
    """Store prefix of the quantization job of ``model`` as ``variant``."""
    return f"quant/{variant}/m{model:04d}"


@functools.lru_cache(maxsize=4)
def _read_config(path: str, mtime_ns: int) -> Config:
    return Config.from_dict(json.loads(Path(path).read_text()))


def _job_config(job: Mapping[str, Any]) -> Config:
    p = Path(job["config"])
    return _read_config(str(p), p.stat().st_mtime_ns)


def _device(cfg: Config) -> torch.device:
    return resolve_device(None if cfg.study.device == "auto" else cfg.study.device)


def _evaluate(models, data, cfg: Config, device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Signals, probabilities, loss scores (pool, under the queries), test predictions; logits."""
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


def _train_user(cfg: Config, factory, x, y, keep_row, seed: int, device) -> torch.nn.Module:
    """One model trained by the user's ``train.fn`` on its members (``[train]`` docs)."""
    fit = resolve_callable(cfg.train.fn, "train.fn")
    torch.manual_seed(seed % 2**63)
    model = factory().to(device)
    rows = torch.as_tensor(np.flatnonzero(keep_row))
    xm = x[rows].to(device)
    ym = torch.as_tensor(np.asarray(y)[keep_row], dtype=torch.int64, device=device)
    trained = fit(model, xm, ym, cfg.train.train_config(), int(seed))
    trained = model if trained is None else trained  # None: trained in place
    if not isinstance(trained, torch.nn.Module):
        raise MisValueError(
            f"train.fn = {cfg.train.fn!r} must return the trained torch.nn.Module; got "
            f"{type(trained).__name__}"
        )
    return trained.eval()


def train_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Train models ``config["models"] = [a, b)`` on their keep rows; their compact outputs.

    Returns ``signal`` (k, N, n_aug) and ``prob`` float64, ``loss`` (k, N), ``test_pred``
    (k, n_test) int64, optionally ``logits`` (k, N, n_aug, C) float32, and for the models
    whose weights are kept ``state_index`` (j,), ``state_float`` (j, P) float32 and
    ``state_int`` (j, Q) int64.
    """
    cfg = _job_config(config)
    a, b = config["models"]
    data = load_data(cfg)
    device = _device(cfg)
    keep = np.array(RunStore(config["store"], create=False).load("keep")[a:b])  # writable
    seeds = [derive_seed(cfg.study.seed, INIT, m) for m in range(a, b)]
    fn = model_factory(cfg, data)
    tc = cfg.train.train_config()
    with torch_threads(cfg.study.torch_threads):
        x = data.tensor(data.x)
        if config["trainer"] == "ensemble":
            ens = train_ensemble(fn, x, data.y, tc, seeds, subsets=keep, device=device,
                                 progress=False)  # fmt: skip
            models = [ens.model(k) for k in range(b - a)]
        elif cfg.train.fn:
            models = [_train_user(cfg, fn, x, data.y, keep[0], seeds[0], device)]
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


def load_model(cfg: Config, store, model_index: int, data=None):
    """Rebuild full-precision model ``model_index`` from its stored weights (CPU, eval mode)."""
    data = data if data is not None else load_data(cfg)
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


def quant_job(config: Mapping[str, Any], index: int, seed: int, scratch) -> dict:
    """Quantize model ``config["model"]`` as variant ``config["variant"]``; its compact outputs.

    The variant's :class:`~mis.quant.QuantConfig` comes validated from the configuration;
    the job adds the model's quantization seed. Calibration: ``quant.calibration_samples`` of
    the model's own training members, drawn with a seed that depends on the model only (the
    same set for every method and bit width). Returns ``signal``, ``prob``, ``loss``,
    ``test_pred`` (as :func:`train_job`, without the model axis), ``bits_per_parameter``
    (1,) and ``seconds`` (1,), the wall time of the quantization itself.
    """
    cfg = _job_config(config)
    m = int(config["model"])
    variant = cfg.variant(config["variant"])
    qconfig = variant.quant.with_seed(derive_seed(cfg.study.seed, QUANT, m) % (2**31))
    data = load_data(cfg)
    device = _device(cfg)
    store = RunStore(config["store"], create=False)
    keep_row = np.array(store.load("keep")[m])  # writable
    with torch_threads(cfg.study.torch_threads):
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
            cal = cal.to(device)
        t0 = time.perf_counter()
        qmodel = quantize_model(model, qconfig, cal)
        seconds = time.perf_counter() - t0
        out, _ = _evaluate([qmodel], data, cfg, device)
    out = {k: arr[0] for k, arr in out.items()}
    out["bits_per_parameter"] = np.array([quantization_report(qmodel).bits_per_parameter])
    out["seconds"] = np.array([seconds])  # wall time of quantize_model alone
    return out
