"""The audit of your own model from Python: :func:`audit_model`.

The same audit as ``mis audit`` (shadow and target models trained from scratch, each target
quantized by every quantizer, LiRA and the other attacks, paired tests against full
precision with Holm's correction, a verdict), with your parts handed over as objects: a model
factory, a data set, optionally your training function and your quantizers. They become the
``model.factory``, ``data.loader``, ``train.fn`` and ``quant.methods`` keys of the
configuration (see :mod:`mis.studies.audit.config`), kept in this process: the jobs run here,
one after the other.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from mis._callables import object_spec
from mis.exceptions import MisValueError
from mis.quant.user import register_quantizer
from mis.studies.audit.config import Config, load_config
from mis.studies.audit.pipeline import run_audit
from mis.train.data import as_dataset

__all__ = ["audit_model"]


def _model_spec(model) -> dict:
    """``[model]`` keys for a built-in name, a ``"pkg.module:fn"`` spec or a factory object."""
    if isinstance(model, nn.Module):
        raise MisValueError(
            "model must be a function that returns a fresh, untrained model (the audit trains "
            f"shadow and target models from scratch); got a {type(model).__name__} instance. "
            f"Pass e.g. `lambda: {type(model).__name__}(...)`"
        )
    if isinstance(model, str):
        return {"factory": model} if ":" in model else {"name": model}
    if not callable(model):
        raise MisValueError(f"model must be a callable or a name; got {type(model).__name__}")
    try:
        inspect.signature(model).bind(n_classes=2, input_shape=(1,))
        factory = model
    except (TypeError, ValueError):
        # a zero-argument factory: it knows its own shapes
        def factory(n_classes, input_shape):
            return model()

        factory.__qualname__ = getattr(model, "__qualname__", "model")
        factory.__module__ = getattr(model, "__module__", "?")
    return {"factory": object_spec(factory, "model")}


def _data_spec(data) -> dict:
    """``[data]`` keys for a ``"pkg.module:load"`` spec or arrays held in memory."""
    if isinstance(data, str):
        return {"source": "callable", "loader": data}
    dataset = as_dataset(data)  # checked here, before anything runs
    # the loader's name carries a digest of the arrays: another data set is another
    # configuration (an output directory of one is not resumed with the other)
    h = hashlib.blake2b(digest_size=8)
    for a in (dataset.x, dataset.y, dataset.x_test, dataset.y_test):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(a.data)

    def load():
        return dataset

    load.__qualname__ = f"data_{h.hexdigest()}"
    load.__module__ = "mis.audit_model"
    return {"source": "callable", "loader": object_spec(load, "data")}


def _quant_methods(quantizers) -> list[str]:
    """``quant.methods`` for registry names, specs and ``{name: callable}``."""
    if isinstance(quantizers, Mapping):
        methods = []
        for name, fn in quantizers.items():
            if isinstance(fn, str):
                methods.append(fn)
            else:
                if not callable(fn):
                    raise MisValueError(
                        f"quantizers[{name!r}] must be a registered name or a callable "
                        f"quantizer(model, *, bits, calibration); got {type(fn).__name__}"
                    )
                methods.append(register_quantizer(str(name), fn, label=str(name)))
        return methods
    if isinstance(quantizers, str) or not isinstance(quantizers, Sequence):
        raise MisValueError(
            "quantizers must be a list of registered names / 'package.module:fn' specs or a "
            f"mapping name -> callable; got {quantizers!r}"
        )
    return list(quantizers)


def audit_model(
    model: Callable | str,
    data,
    *,
    out,
    train: Callable | str | None = None,
    quantizers=("rtn", "gptq"),
    bits: Sequence = (4, 2),
    shadows: int | None = None,
    targets: int | None = None,
    config: Config | Mapping | str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Audit your own model: which quantizer leaks least, with significance at low FPR.

    Parameters
    ----------
    model : callable or str
        A function returning a fresh, untrained ``torch.nn.Module``: either
        ``make_model(n_classes=..., input_shape=...)`` or without arguments; or
        ``"package.module:make_model"``; or a built-in name (``"mlp"``, ``"resnet18"``, ...).
    data : Dataset, tuple, mapping or str
        The audit pool and its test split: a :class:`~mis.train.Dataset`, ``(x, y)``,
        ``(x, y, x_test, y_test)`` (arrays; images NCHW, ``uint8`` or float32), a mapping
        with those keys, or ``"package.module:load"``. Without a test split, set
        ``config={"data": {"test_size": n}}``. Inputs that are not images need
        ``config={"train": {"augment": False}, "attack": {"n_aug": 1}}`` (no flips or crops).
    out : path-like
        Output directory (``report.md``, ``results.json``, figures, the run store); an
        interrupted audit resumes when called again with the same arguments.
    train : callable or str, optional
        ``fit(model, x, y, config, seed) -> model`` (see ``[train]`` in
        :mod:`mis.studies.audit.config`); default: our trainer with the ``[train]`` keys of
        ``config``.
    quantizers : sequence or mapping, default ("rtn", "gptq")
        Registered method names (:func:`mis.quant.available_methods`), ``"pkg.module:fn"``
        specs, or ``{name: quantizer}`` with ``quantizer(model, *, bits, calibration) ->
        model`` (:mod:`mis.quant.user`).
    bits : sequence, default (4, 2)
        Bit widths (integers 1–16, or 1.58 for ternary).
    shadows, targets : int, optional
        Number of shadow and target models (default: ``config``'s, 64 and 10).
    config : Config, mapping, or path, optional
        The other settings: a :class:`Config`, a mapping of sections
        (``{"train": {"epochs": 20}, "attack": {"n_aug": 1}}``) or a TOML file; the arguments
        above override it.
    progress : bool, optional
        Progress bars (default: when stderr is a terminal).

    Returns
    -------
    dict
        The content of ``results.json``; ``results["verdict"]`` says which quantizer to ship.
        ``<out>/report.md`` opens with the same verdict.

    Notes
    -----
    The jobs run in this process, one after the other (the objects are not sent to worker
    processes). For parallel or distributed runs, name importable functions in a TOML file
    and use ``mis audit --config FILE --workers N``.
    """
    if config is None:
        base = Config()
    elif isinstance(config, Config):
        base = config
    elif isinstance(config, Mapping):
        base = Config.from_dict(config)
    elif isinstance(config, (str, Path)):
        base = load_config(config)
    else:
        raise MisValueError(
            f"config must be a Config, a mapping of sections or a TOML path; got {config!r}"
        )
    sections: dict = {
        "model": _model_spec(model),
        "data": _data_spec(data),
        "quant": {"methods": _quant_methods(quantizers), "bits": list(bits)},
    }
    if train is not None:
        sections["train"] = {"fn": train if isinstance(train, str) else object_spec(train, "train")}
    study = {k: v for k, v in (("shadows", shadows), ("targets", targets)) if v is not None}
    if study:
        sections["study"] = study
    return run_audit(base.replace(**sections), out, progress=progress)
