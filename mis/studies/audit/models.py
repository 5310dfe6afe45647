"""Models of the audit: the configured architecture, which trainer trains it, which models
train together, and their weights packed into flat vectors for the run store."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mis._callables import resolve_callable
from mis.exceptions import MisValueError
from mis.studies.audit.config import Config
from mis.train.models import build_model

__all__ = [
    "model_factory",
    "pack_state",
    "stored_models",
    "train_chunks",
    "trainer_kind",
    "unpack_state",
]


def _build_user_model(spec: str, options: dict) -> nn.Module:
    """``model.factory`` called with the data's ``n_classes`` and ``input_shape``; checked."""
    model = resolve_callable(spec, "model.factory")(**options)
    if not isinstance(model, nn.Module):
        raise MisValueError(
            f"model.factory = {spec!r} must return a torch.nn.Module; got {type(model).__name__}"
        )
    return model


def model_factory(cfg: Config, data) -> Callable:
    """A picklable zero-argument factory of the configured architecture for ``data``."""
    name = cfg.model.name
    opts = dict(cfg.model.options)
    shape = data.x.shape[1:]
    if cfg.model.factory:
        opts = {"n_classes": data.n_classes, "input_shape": tuple(int(s) for s in shape), **opts}
        return functools.partial(_build_user_model, cfg.model.factory, opts)
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
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def trainer_kind(cfg: Config, data) -> str:
    """ "ensemble" or "plain" (``auto``: ensemble unless the model has BatchNorm or
    ``train.fn`` is set)."""
    if cfg.train.fn:
        return "plain"
    if cfg.train.trainer != "auto":
        return cfg.train.trainer
    with torch.random.fork_rng(devices=[]):
        model = model_factory(cfg, data)()
    return "plain" if _has_batchnorm(model) else "ensemble"


def train_chunks(cfg: Config, kind: str) -> list[tuple[int, int]]:
    """Model index ranges [a, b) trained by one job each."""
    size = 1 if kind == "plain" else cfg.study.chunk_size
    m = cfg.study.n_models
    return [(a, min(a + size, m)) for a in range(0, m, size)]


def stored_models(cfg: Config) -> list[int]:
    """Models whose weights are kept: the targets (and the shadows when they are quantized)."""
    if cfg.attack.quantize_shadows:
        return list(range(cfg.study.n_models))
    return cfg.target_models()


def pack_state(model) -> tuple[np.ndarray, np.ndarray]:
    """State dict → (float32 vector of floating tensors, int64 vector of the others)."""
    fl, ints = [], []
    for t in model.state_dict().values():
        t = t.detach().cpu()
        (fl if t.is_floating_point() else ints).append(t.reshape(-1))
    f = torch.cat([t.float() for t in fl]).numpy() if fl else np.zeros(0, np.float32)
    i = torch.cat([t.long() for t in ints]).numpy() if ints else np.zeros(0, np.int64)
    return f.astype(np.float32), i.astype(np.int64)


def unpack_state(model, flat: np.ndarray, ints: np.ndarray):
    """Inverse of :func:`pack_state` (in place); returns the model in eval mode."""
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
