"""r_Q in any training loop: record quantized validation losses, get r_Q per quantizer.

:class:`RQRecorder` is the user-facing way to compute the privacy indicator r_Q of Aubinais
et al. (2025, Algorithm 1) for one's own model, trained in one's own loop::

    rec = RQRecorder(["sign", "ternary-50", "4bit"], x_val, y_val)
    for epoch in range(epochs):
        train_one_epoch(model)          # your loop
        rec.record(model)               # a checkpoint: quantize, validation losses, hash
    rec.rq()                            # {"sign": 0.0123, "ternary-50": ..., "4bit": ...}
    rec.save(store, run=seed)           # many runs accumulate in one run store
    rq, names = load_rq_runs(store)     # (n_runs, n_quantizers), for rank_quantizers

Each call of :meth:`RQRecorder.record` is one checkpoint k of the trajectory: the current
weights are quantized with every quantizer, θ̄_k = Q(θ), and the per-sample validation
losses of θ̄_k and a hash of θ̄_k are kept. Checkpoints whose quantized weights are identical
are one point of the quantized parameter set; :func:`mis.security.rq_batch` removes the
duplicates before computing r_Q, so calling :meth:`~RQRecorder.record` twice on unchanged
weights changes nothing.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from mis._validation import integer
from mis.exceptions import MisValueError
from mis.quant import available_weight_quantizers, weight_quantizer
from mis.security import rq_batch
from mis.store import RunStore
from mis.train.ensemble import Ensemble
from mis.train.losses import per_sample_loss
from mis.train.trajectory import TrajectoryRecorder, weights_hash

__all__ = ["ModelQuantizer", "RQRecorder", "load_rq_runs", "saved_runs"]

_RUN = re.compile(r"^rq/run(\d+)/val_losses$")


class ModelQuantizer:
    """Mark a callable ``nn.Module -> nn.Module`` (a whole-model quantizer, e.g. a PTQ method
    with its calibration data) for :class:`RQRecorder`.

    A callable whose first parameter is annotated as ``nn.Module`` is recognised without
    this wrapper. The callable receives a copy of the model and returns the quantized model;
    its losses are computed on the validation data and its hash from its floating-point
    state.
    """

    def __init__(self, fn: Callable[[nn.Module], nn.Module], name: str | None = None):
        if not callable(fn):
            raise MisValueError(f"fn must be callable (nn.Module -> nn.Module); got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "model_quantizer")

    def __call__(self, model: nn.Module) -> nn.Module:
        return self.fn(model)


def _is_model_quantizer(q) -> bool:
    if isinstance(q, ModelQuantizer):
        return True
    try:  # string annotations (``from __future__ import annotations``) are evaluated
        params = list(inspect.signature(q, eval_str=True).parameters.values())
    except (TypeError, ValueError, NameError):
        return False
    ann = params[0].annotation if params else inspect.Parameter.empty
    return isinstance(ann, type) and issubclass(ann, nn.Module)


def _resolve(quantizers) -> tuple[list[str], list]:
    """Names and callables: registry names → :func:`mis.quant.weight_quantizer`."""
    if isinstance(quantizers, (str, bytes)) or callable(quantizers):
        quantizers = [quantizers]
    if isinstance(quantizers, Mapping):
        items = [(str(k), v) for k, v in quantizers.items()]
    else:
        items = []
        for i, q in enumerate(quantizers):
            name = q if isinstance(q, str) else getattr(q, "name", None)
            items.append((name or getattr(q, "__name__", f"q{i}"), q))
    if not items:
        raise MisValueError("quantizers must name at least one quantizer")
    names, fns = [], []
    for name, q in items:
        if isinstance(q, str):
            if q not in available_weight_quantizers():
                raise MisValueError(
                    f"quantizer {q!r} is not a registered weight quantizer; available: "
                    f"{list(available_weight_quantizers())}, or pass a callable "
                    "(tensor -> tensor, or nn.Module -> nn.Module wrapped in ModelQuantizer)"
                )
            q = weight_quantizer(q)
        elif not callable(q):
            raise MisValueError(f"quantizer {name!r} must be a name or a callable; got {q!r}")
        names.append(name)
        fns.append(q)
    if len(set(names)) != len(names):
        raise MisValueError(f"quantizer names must be distinct; got {names}")
    return names, fns


class RQRecorder:
    """Record quantized validation losses along training and compute r_Q (Algorithm 1).

    Parameters
    ----------
    quantizers : str, callable, sequence of them, or mapping name → either
        Names of :func:`mis.quant.available_weight_quantizers` (``"sign"``, ``"ternary-50"``,
        ``"4bit"``, ``"uaq-2"``, ...); callables ``w -> w_q`` applied to every selected
        parameter tensor on its own (same shape out); or whole-model quantizers
        ``nn.Module -> nn.Module`` (:class:`ModelQuantizer`, or a callable whose first
        parameter is annotated ``nn.Module``).
    x_val : Tensor, shape (n_val, ...)
        Validation inputs (never trained on), on the device the model will be on.
    y_val : Tensor or array, shape (n_val,)
        Class labels for ``loss="cross_entropy"``, float targets for ``"mse"``.
    loss : {"cross_entropy", "mse"}
        The per-sample loss ℓ(θ̄, z) of Algorithm 1 (binary classifiers: two logits and
        cross-entropy, or use ``"mse"`` for regression).
    params : {"all", "weights"} or callable
        Parameters quantized by the tensor quantizers: all (θ̄ = Q(θ)), only tensors with at
        least two dimensions, or ``f(name) -> bool``.
    batch_size : int, default 4096
        Validation examples per forward pass.

    Notes
    -----
    :meth:`record` takes an ``nn.Module`` (one run) or a :class:`~mis.train.Ensemble`
    (K runs at once, as :func:`~mis.train.train_ensemble` callbacks receive); the model is
    evaluated in eval mode and its training mode is restored. Memory grows by
    ``K × n_quantizers × n_val`` float32 per checkpoint.
    """

    def __init__(
        self,
        quantizers,
        x_val,
        y_val,
        *,
        loss: str = "cross_entropy",
        params="all",
        batch_size: int = 4096,
    ):
        if not isinstance(x_val, torch.Tensor):
            x_val = torch.as_tensor(np.asarray(x_val))
        if x_val.ndim < 1 or x_val.shape[0] < 3:
            raise MisValueError(
                f"x_val must hold at least 3 validation examples; got shape {tuple(x_val.shape)}"
            )
        self.names, fns = _resolve(quantizers)
        self._is_model = [_is_model_quantizer(q) for q in fns]
        pairs = list(zip(self.names, fns, self._is_model, strict=True))
        tensor_q = {n: q for n, q, m in pairs if not m}
        self._model_q = [(n, q) for n, q, m in pairs if m]
        integer(batch_size, "batch_size", 1)
        self._tensor = None
        if tensor_q:
            self._tensor = TrajectoryRecorder(
                tensor_q, x_val, y_val, params=params, batch_size=batch_size, loss=loss
            )
        probe = self._tensor or TrajectoryRecorder({"id": lambda w: w}, x_val, y_val, loss=loss)
        self.x_val, self.y_val, self.loss = probe.x_val, probe.y_val, probe.loss
        self.batch_size = batch_size
        self._model_losses: list[np.ndarray] = []  # per checkpoint (K, n_model_q, n_val)
        self._model_hashes: list[np.ndarray] = []
        self.n_checkpoints = 0
        self._k = None

    # -- recording ----------------------------------------------------------------------------
    def record(self, model) -> None:
        """Add one checkpoint: the current weights of ``model`` (``nn.Module`` or ``Ensemble``)."""
        if isinstance(model, Ensemble):
            ens = model
        elif isinstance(model, nn.Module):
            ens = Ensemble.from_modules([model])
        else:
            raise MisValueError(
                "model must be a torch.nn.Module or a mis.train.Ensemble; got "
                f"{type(model).__name__}"
            )
        k = len(ens)
        if self._k is not None and k != self._k:
            raise MisValueError(f"model has {k} runs; earlier checkpoints had {self._k}")
        self._k = k
        if self._tensor is not None:
            self._tensor(self.n_checkpoints, ens)
        if self._model_q:
            self._record_model_quantizers(ens)
        self.n_checkpoints += 1

    @torch.no_grad()
    def _record_model_quantizers(self, ens: Ensemble) -> None:
        k, nv = len(ens), self.x_val.shape[0]
        losses = np.empty((k, len(self._model_q), nv), dtype=np.float32)
        hashes = np.empty((k, len(self._model_q)), dtype=np.uint64)
        for r in range(k):
            base = ens.model(r) if k > 1 else copy.deepcopy(ens.base)
            for j, (name, q) in enumerate(self._model_q):
                qm = q(copy.deepcopy(base)) if k == 1 else q(base)
                if not isinstance(qm, nn.Module):
                    raise MisValueError(
                        f"model quantizer {name!r} must return an nn.Module; got "
                        f"{type(qm).__name__}"
                    )
                was_training = qm.training
                qm.eval()
                out = torch.cat([qm(xb) for xb in torch.split(self.x_val, self.batch_size)], dim=0)[
                    None
                ]
                qm.train(was_training)
                losses[r, j] = per_sample_loss(out, self.y_val, self.loss)[0].cpu().numpy()
                state = qm.state_dict()
                hashes[r, j] = weights_hash(
                    [state[n] for n in sorted(state) if state[n].is_floating_point()]
                )
        self._model_losses.append(losses)
        self._model_hashes.append(hashes)

    # -- results ------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """``val_losses`` (K, Q, n_checkpoints, n_val) float32, ``qhash`` (K, Q, n_checkpoints)
        uint64, ``val_epochs`` (K, Q, n_checkpoints) int64 — quantizers in the order given."""
        if self.n_checkpoints == 0:
            raise MisValueError("nothing recorded yet: call record(model) after each epoch")
        parts_l, parts_h = {}, {}
        if self._tensor is not None:
            res = self._tensor.result()
            tnames = [n for n, m in zip(self.names, self._is_model, strict=True) if not m]
            for j, n in enumerate(tnames):
                parts_l[n], parts_h[n] = res["val_losses"][:, j], res["qhash"][:, j]
        if self._model_q:
            ml = np.stack(self._model_losses, axis=2)  # (K, Qm, C, n_val)
            mh = np.stack(self._model_hashes, axis=2)
            for j, (n, _) in enumerate(self._model_q):
                parts_l[n], parts_h[n] = ml[:, j], mh[:, j]
        losses = np.stack([parts_l[n] for n in self.names], axis=1)
        hashes = np.stack([parts_h[n] for n in self.names], axis=1)
        epochs = np.broadcast_to(np.arange(self.n_checkpoints, dtype=np.int64), hashes.shape)
        return {"val_losses": losses, "qhash": hashes, "val_epochs": epochs.copy()}

    def rq(self) -> dict[str, float | np.ndarray]:
        """r_Q per quantizer (higher = more private): a float for one run, an array (K,) for
        an ensemble of K runs. +inf when a quantizer produced one distinct point only."""
        a = self.arrays()
        r = rq_batch(a["val_losses"], a["qhash"], progress=False)  # (K, Q)
        one = r.shape[0] == 1
        return {n: float(r[0, j]) if one else r[:, j] for j, n in enumerate(self.names)}

    def save(self, store, run: int, **meta) -> list[str]:
        """Write this recorder's arrays as run ``run`` of ``store`` (``rq/run<run>/...``).

        One run per call (an ensemble of K runs is saved as runs ``run .. run + K - 1``).
        Returns the names written. A run already in the store is refused.
        """
        store = store if isinstance(store, RunStore) else RunStore(store)
        integer(run, "run", 0)
        a = self.arrays()
        names = []
        for r in range(a["qhash"].shape[0]):
            prefix = f"rq/run{run + r:06d}/"
            if store.has(prefix + "val_losses"):
                raise MisValueError(f"run {run + r} is already in {store.path}; use another run")
            for key in ("val_losses", "qhash", "val_epochs"):
                store.save(prefix + key, a[key][r], quantizers=self.names, loss=self.loss, **meta)
                names.append(prefix + key)
        return names


def saved_runs(store) -> list[int]:
    """Run numbers already saved in ``store`` by :meth:`RQRecorder.save` (a script that skips
    them resumes after an interruption); empty when the store does not exist yet."""
    if not isinstance(store, RunStore):
        try:
            store = RunStore(store, create=False)
        except FileNotFoundError:  # no store yet: no run saved
            return []
    return sorted(int(m.group(1)) for n in store.names() if (m := _RUN.match(n)))


def load_rq_runs(store) -> tuple[np.ndarray, list[str]]:
    """r_Q of every run saved with :meth:`RQRecorder.save`: ``(rq (n_runs, Q), names)``.

    Runs in increasing run number; every run must have recorded the same quantizers (runs
    may have different numbers of checkpoints).
    """
    store = store if isinstance(store, RunStore) else RunStore(store, create=False)
    runs = saved_runs(store)
    if not runs:
        raise MisValueError(f"{store.path} holds no r_Q runs (rq/run*/val_losses)")
    names = None
    rows = []
    for run in runs:
        prefix = f"rq/run{run:06d}/"
        meta = store.meta(prefix + "val_losses")
        q = list(meta.get("quantizers", []))
        if names is None:
            names = q
        elif q != names:
            raise MisValueError(
                f"run {run} recorded quantizers {q}; run {runs[0]} recorded {names}"
            )
        vl = np.asarray(store.load(prefix + "val_losses"))[None]
        qh = np.asarray(store.load(prefix + "qhash"))[None]
        rows.append(rq_batch(vl, qh, progress=False)[0])
    return np.stack(rows), names
