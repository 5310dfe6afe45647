"""Trajectory recorder: quantized validation losses along training (input of r_Q).

Algorithm 1 of Aubinais et al. (2025) samples the training trajectory: after every epoch k
the current weights θ are quantized, θ̄_k = Q(θ), and the per-sample validation losses
L_k = {ℓ(θ̄_k, z) : z ∈ D_val} are kept. :class:`TrajectoryRecorder` does this for several
quantizers and for every model of an ensemble at once, as a callback of
:func:`~mis.train.ensemble.train_ensemble` or :func:`~mis.train.trainer.train_model`, and
writes the canonical run-store arrays

==============  ==========================================  =======
``val_losses``  (n_runs, n_quantizers, n_checkpoints, n_val)  float32
``qhash``       (n_runs, n_quantizers, n_checkpoints)         uint64
``val_epochs``  (n_runs, n_quantizers, n_checkpoints)         int64
==============  ==========================================  =======

``qhash`` identifies the quantized weights (blake2b, 8-byte digest, of the bytes of every
parameter tensor of θ̄ in name order, read as a little-endian uint64): checkpoints whose
quantized weights are identical are the *same point* of the quantized parameter set and must
be deduplicated before r_Q (else δ = σ = 0); that is the consumer's job unless ``keep_best``
is used.

``keep_best=B`` keeps, per run and quantizer, only the B distinct quantized checkpoints
(distinct ``qhash``) with the lowest mean validation loss, sorted by that mean, streaming
(memory O(B · n_val) instead of O(n_checkpoints · n_val)). This is an approximation of
Algorithm 1: r_Q is a minimum over all checkpoints k ≥ 2 of δ_k² / (2σ_k²), and Appendix F.3
of Aubinais et al. shows that the minimum is reached at low-loss checkpoints (small k after
sorting), so truncating to the B best rarely changes it — but it can. When a run has fewer
than B distinct quantized checkpoints, the missing rows are padding: ``val_losses`` NaN,
``qhash`` 0, ``val_epochs`` −1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from mis._validation import integer
from mis.exceptions import MisValueError
from mis.train.losses import as_targets, check_loss, per_sample_loss

__all__ = ["TrajectoryRecorder", "weights_hash"]


def weights_hash(tensors: Sequence) -> np.uint64:
    """64-bit hash of a sequence of tensors or arrays: blake2b (digest_size=8) of their dtype
    names and raw bytes, read as a little-endian uint64."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        if isinstance(t, torch.Tensor):
            t = t.detach().to("cpu").contiguous().numpy()
        arr = np.ascontiguousarray(t)
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    return np.frombuffer(h.digest(), dtype="<u8")[0]


def _named_quantizers(quantizers) -> tuple[list[str], list[Callable]]:
    if isinstance(quantizers, Mapping):
        names, fns = [str(k) for k in quantizers], list(quantizers.values())
    else:
        fns = list(quantizers)
        names = [
            getattr(q, "name", None) or getattr(q, "__name__", f"q{i}") for i, q in enumerate(fns)
        ]
    if not fns:
        raise MisValueError("quantizers must hold at least one callable")
    for nm, q in zip(names, fns, strict=True):
        if not callable(q):
            raise MisValueError(f"quantizer {nm!r} is not callable (expected w -> w_q)")
    return names, fns


class TrajectoryRecorder:
    """Callback that records quantized validation losses and weight hashes along training.

    Parameters
    ----------
    quantizers : sequence of callable, or mapping name → callable
        Each maps one weight tensor to its quantized version (``w -> w_q``, same shape; it must
        not modify ``w``). It is applied to every selected parameter tensor of every model
        separately. A quantizer with a true attribute ``stacked`` is instead called once on the
        stacked (K, ...) tensor and must quantize each model's slice on its own (fast path).
        ``lambda w: w`` records the full-precision model.
    x_val : Tensor, shape (n_val, ...)
        Validation inputs shared by all runs, on the training device.
    y_val : Tensor, shape (n_val,)
        Class labels (int) for ``loss="cross_entropy"``, float targets for ``"mse"``.
    every : int, default 1
        Record when the number of completed epochs is a multiple of ``every``.
    keep_best : int, optional
        Keep only the ``keep_best`` lowest-mean distinct quantized checkpoints per run and
        quantizer (see the module docstring: an approximation, Appendix F.3).
    params : {"all", "weights"} or callable
        Which parameters are quantized: all (default; θ̄ = Q(θ) as in Algorithm 1), only those
        with at least 2 dimensions per model (weights, not biases), or ``f(name) -> bool``.
    batch_size : int, default 4096
        Validation examples per forward pass.
    loss : {"cross_entropy", "mse"}
        The per-sample loss recorded (:mod:`mis.train.losses`).

    Notes
    -----
    Call as ``recorder(epoch, ensemble)``; :meth:`result` returns the arrays and
    :meth:`save` writes them to a :class:`~mis.store.RunStore`.
    """

    def __init__(
        self,
        quantizers,
        x_val,
        y_val,
        *,
        every: int = 1,
        keep_best: int | None = None,
        params="all",
        batch_size: int = 4096,
        loss: str = "cross_entropy",
    ):
        self.names, self.fns = _named_quantizers(quantizers)
        self.x_val = x_val
        self.loss = check_loss(loss)
        self.y_val = as_targets(y_val, loss, "y_val").to(x_val.device)
        if self.y_val.ndim != 1 or self.y_val.shape[0] != x_val.shape[0]:
            raise MisValueError(
                f"y_val must have one label per row of x_val ({x_val.shape[0]}); "
                f"got shape {tuple(self.y_val.shape)}"
            )
        integer(every, "every", 1)
        if keep_best is not None:
            integer(keep_best, "keep_best", 1)
        if params not in ("all", "weights") and not callable(params):
            raise MisValueError(f"params must be 'all', 'weights' or a callable; got {params!r}")
        self.every = every
        self.keep_best = keep_best
        self.params = params
        self.batch_size = batch_size
        self._losses: list[np.ndarray] = []  # per checkpoint (K, nq, n_val)
        self._hashes: list[np.ndarray] = []  # per checkpoint (K, nq)
        self._epochs: list[int] = []
        self._best = None

    # -- selection and quantization -----------------------------------------------------------
    def _selected(self, name: str, t: torch.Tensor) -> bool:
        if self.params == "all":
            return True
        if self.params == "weights":
            return t.ndim >= 3  # (K, out, in, ...) — at least 2-D per model
        return bool(self.params(name))

    def _quantize(self, q, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in params.items():
            if not self._selected(name, p):
                out[name] = p
            elif getattr(q, "stacked", False):
                out[name] = q(p.detach().clone())
            else:
                out[name] = torch.stack([q(p[k].detach().clone()) for k in range(p.shape[0])])
            if out[name].shape != p.shape:
                raise MisValueError(
                    f"quantizer returned shape {tuple(out[name].shape)} for {name} of shape "
                    f"{tuple(p.shape)}; it must preserve the shape"
                )
        return out

    # -- callback -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, epoch: int, ensemble) -> None:
        if epoch % self.every:
            return
        k = len(ensemble)
        nq, nv = len(self.fns), self.x_val.shape[0]
        losses = np.empty((k, nq, nv), dtype=np.float32)
        hashes = np.empty((k, nq), dtype=np.uint64)
        names = sorted(ensemble.params)
        for j, q in enumerate(self.fns):
            qp = self._quantize(q, ensemble.params)
            out = ensemble.forward(self.x_val, params=qp, batch_size=self.batch_size)
            losses[:, j] = per_sample_loss(out, self.y_val, self.loss).cpu().numpy()
            arrays = [qp[n].detach().cpu().contiguous().numpy() for n in names]
            for r in range(k):
                hashes[r, j] = weights_hash([a[r] for a in arrays])
        if self.keep_best is None:
            self._losses.append(losses)
            self._hashes.append(hashes)
            self._epochs.append(int(epoch))
        else:
            self._update_best(losses, hashes, int(epoch))

    def _update_best(self, losses, hashes, epoch):
        k, nq, nv = losses.shape
        b = self.keep_best
        if self._best is None:
            self._best = {
                "losses": np.full((k, nq, b, nv), np.nan, dtype=np.float32),
                "mean": np.full((k, nq, b), np.inf),
                "hash": np.zeros((k, nq, b), dtype=np.uint64),
                "epoch": np.full((k, nq, b), -1, dtype=np.int64),
                "filled": np.zeros((k, nq, b), dtype=bool),
            }
        best = self._best
        means = losses.astype(np.float64).mean(axis=2)
        for r in range(k):
            for j in range(nq):
                filled = best["filled"][r, j]
                if (best["hash"][r, j][filled] == hashes[r, j]).any():
                    continue  # the same quantized point: keep its first occurrence
                if filled.all():  # evict the worst: largest mean, latest epoch among ties
                    mean_rj = best["mean"][r, j]
                    ties = np.flatnonzero(mean_rj == mean_rj.max())
                    slot = int(ties[np.argmax(best["epoch"][r, j][ties])])
                    if not means[r, j] < mean_rj[slot]:
                        continue
                else:
                    slot = int(np.argmin(filled))
                best["losses"][r, j, slot] = losses[r, j]
                best["mean"][r, j, slot] = means[r, j]
                best["hash"][r, j, slot] = hashes[r, j]
                best["epoch"][r, j, slot] = epoch
                best["filled"][r, j, slot] = True

    # -- output -------------------------------------------------------------------------------
    def result(self) -> dict[str, np.ndarray]:
        """The recorded arrays: ``val_losses``, ``qhash``, ``val_epochs`` (module docstring)."""
        if self.keep_best is None:
            if not self._losses:
                raise MisValueError("nothing recorded yet (no epoch was a multiple of `every`)")
            losses = np.stack(self._losses, axis=2)
            hashes = np.stack(self._hashes, axis=2)
            epochs = np.broadcast_to(np.asarray(self._epochs, dtype=np.int64), hashes.shape)
            return {"val_losses": losses, "qhash": hashes, "val_epochs": epochs.copy()}
        if self._best is None:
            raise MisValueError("nothing recorded yet (no epoch was a multiple of `every`)")
        best = self._best
        # sort by (mean, epoch); empty slots have mean +inf and go last
        order = np.lexsort((best["epoch"], best["mean"]), axis=2)
        return {
            "val_losses": np.take_along_axis(best["losses"], order[..., None], axis=2),
            "qhash": np.take_along_axis(best["hash"], order, axis=2),
            "val_epochs": np.take_along_axis(best["epoch"], order, axis=2),
        }

    def save(self, store, prefix: str = "", **meta) -> None:
        """Write ``<prefix>val_losses``, ``<prefix>qhash``, ``<prefix>val_epochs`` to ``store``."""
        res = self.result()
        info = dict(
            quantizers=self.names,
            every=self.every,
            keep_best=self.keep_best,
            loss=self.loss,
            **meta,
        )
        for name in ("val_losses", "qhash", "val_epochs"):
            store.save(f"{prefix}{name}", res[name], **info)
