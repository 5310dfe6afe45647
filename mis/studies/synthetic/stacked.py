"""A fast keep-best trajectory recorder for many single-layer models at once.

The synthetic study of Aubinais et al. (2025, §5.1.1) records, after every epoch of 300
single-layer models and for 8 quantizers, the quantized validation losses (Algorithm 1).
:class:`~mis.train.trajectory.TrajectoryRecorder` does this generically (any model, any
quantizer callable), one model and one quantizer at a time, with a Python hash per
checkpoint; for 2,700 runs × 3,000 epochs × 8 quantizers that is tens of millions of Python
calls. This module does the same for the quadratic single layer
(:class:`~mis.train.models.QuadraticLinear`) with vectorized operations over all models:

* :func:`mis.quant.stacked_quantize` — the quantizers of :func:`mis.quant.weight_quantizer`
  applied to every model's slice of a stacked (K, ...) tensor at once, bit for bit as
  ``weight_quantizer(name)(w[k])``;
* :class:`KeepBestRecorder` — the ``keep_best=B`` mode of ``TrajectoryRecorder``: per run
  and quantizer, the B distinct quantized checkpoints with the lowest mean validation loss,
  sorted by (mean, epoch), with the same ``val_losses`` / ``qhash`` / ``val_epochs`` arrays
  (padding NaN / 0 / −1), the same tie rules (a repeated point keeps its first occurrence;
  when full, the worst slot — largest mean, latest epoch among ties — is replaced only by a
  strictly lower mean), and ``qhash`` computed with the same
  :func:`~mis.train.trajectory.weights_hash` (of ``fc.bias``, ``fc.weight`` in name order).

How it is fast: quantization, change detection and the kept-set update are serial numba
kernels (:mod:`mis._kernels.stacked`; the ternary quantizers find their zeros with one O(n)
selection per row instead of a sort). (1) A (run, quantizer) whose quantized weights
did not change since the previous checkpoint cannot change the kept set (a point already
seen is either kept, or was rejected or evicted by points that are all still at least as
good), so its validation losses are not even computed. (2) The other pairs' losses come
from one batched matrix product on features ``[x, x²]`` computed once. (3) Membership in
the kept set is tested with a 64-bit linear fingerprint of the weights' bit patterns,
confirmed by exact comparison. Losses equal those of ``TrajectoryRecorder`` up to float
rounding (a different but equivalent matrix product); the kept sets are identical unless
two means tie to within that rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mis._kernels import stacked as _k
from mis.exceptions import MisValueError
from mis.quant.stacked import RowQuantizer
from mis.train.models import QuadraticLinear
from mis.train.trajectory import weights_hash

__all__ = ["KeepBestRecorder"]


# ------------------------------------------------------------------------------------------
# Keep-best recorder for QuadraticLinear ensembles
# ------------------------------------------------------------------------------------------
class KeepBestRecorder:
    """``TrajectoryRecorder(..., keep_best=B)`` for ensembles of :class:`QuadraticLinear`.

    Parameters
    ----------
    quantizers : sequence of str
        Names from :data:`STACKED_QUANTIZERS`.
    x_val : Tensor, shape (n_val, d), float32
        Validation inputs shared by all runs (raw ``x``; the features ``[x, x²]`` are
        computed here once).
    y_val : Tensor or array, shape (n_val,), int
    keep_best : int
        B, the number of distinct lowest-mean quantized checkpoints kept per run and quantizer.
    every : int, default 1
        Record when the number of completed epochs is a multiple of ``every``.
    params : {"all", "weights"}
        Quantize weight and bias (``"all"``: θ̄ = Q(θ) as in Algorithm 1, each tensor on its
        own, as ``TrajectoryRecorder`` does) or the weight only (bias kept).

    Notes
    -----
    Call as ``recorder(epoch, ensemble)`` (a :func:`~mis.train.train_ensemble` callback; CPU).
    :meth:`result` returns ``val_losses`` (K, Q, B, n_val) float32, ``qhash`` (K, Q, B)
    uint64 and ``val_epochs`` (K, Q, B) int64 — the layout of ``TrajectoryRecorder`` with
    ``keep_best=B`` — and :attr:`n_changes` (K, Q) counts the checkpoints whose quantized
    weights differ from the previous checkpoint's, the first checkpoint included (an upper
    bound on the number of distinct quantized points along the trajectory).

    With two classes the loss is computed as ``softplus(±(z_1 − z_0))``, which equals the
    cross-entropy up to rounding, with half the multiplications.
    """

    def __init__(
        self,
        quantizers,
        x_val: torch.Tensor,
        y_val,
        *,
        keep_best: int,
        every: int = 1,
        params: str = "all",
    ):
        self.names = [str(q) for q in quantizers]
        if not self.names:
            raise MisValueError("quantizers must name at least one quantizer")
        self._qw = RowQuantizer(self.names)
        self._qb = RowQuantizer(self.names)
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 1:
            raise MisValueError(f"keep_best must be an integer >= 1; got {keep_best!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise MisValueError(f"every must be an integer >= 1; got {every!r}")
        if params not in ("all", "weights"):
            raise MisValueError(f"params must be 'all' or 'weights'; got {params!r}")
        self.keep_best, self.every, self.params = keep_best, every, params
        x_val = torch.as_tensor(x_val).to("cpu", torch.float32)
        self.phi_t = QuadraticLinear.features(x_val).t().contiguous()  # (F, n_val)
        self.y_val = torch.as_tensor(np.asarray(y_val)).long()
        if self.y_val.shape != (x_val.shape[0],):
            raise MisValueError(
                f"y_val must have shape ({x_val.shape[0]},); got {tuple(self.y_val.shape)}"
            )
        self._sign = (1.0 - 2.0 * self.y_val.float())[None, :]  # +1 for class 0, -1 for class 1
        self._state = None
        self._prev = None
        self.n_changes = None

    def _init_state(self, k: int, c: int, p: int) -> None:
        q, b, nv = len(self.names), self.keep_best, self.phi_t.shape[1]
        kq = k * q
        self.c, self.p = c, p
        self.n_changes = np.zeros((k, q), dtype=np.int64)
        self._state = {
            "losses": np.full((kq, b, nv), np.nan, dtype=np.float32),
            "mean": np.full((kq, b), np.inf),
            "epoch": np.full((kq, b), -1, dtype=np.int64),
            "fp": np.zeros((kq, b), dtype=np.uint64),
            "w": np.zeros((kq, b, p), dtype=np.float32),
            "filled": np.zeros((kq, b), dtype=bool),
        }
        # odd random multipliers of the linear fingerprint (fixed: results are reproducible)
        rng = np.random.default_rng(0x5EED)
        self._mult = rng.integers(0, 2**63, size=p, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._prev = np.full((kq, p), np.nan, dtype=np.float32)  # NaN != anything: all changed
        self._changed = np.empty(kq, dtype=bool)
        self._fp = np.zeros(kq, dtype=np.uint64)

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
        """Quantized parameters of every run and quantizer, flat in name order (bias, weight).

        weight (K, C, F), bias (K, C) → (K·Q, C + C·F) float32 (row = run·Q + quantizer).
        """
        k, c, f = weight.shape
        nq = len(self.names)
        wq = self._qw(weight, "fc.weight")  # (K, Q, C·F)
        if self.params == "all":
            bq = self._qb(bias, "fc.bias")  # (K, Q, C)
        else:
            bq = np.broadcast_to(bias.detach().cpu().numpy()[:, None, :], (k, nq, c))
        return np.concatenate([bq, wq], axis=2).reshape(k * nq, c + c * f)

    @torch.no_grad()
    def __call__(self, epoch: int, ensemble) -> None:
        if epoch % self.every:
            return
        weight, bias = ensemble.params["fc.weight"], ensemble.params["fc.bias"]  # (K,C,F), (K,C)
        k, c, f = weight.shape
        flat = self.quantize(weight, bias)
        if self._state is None:
            self._init_state(k, c, flat.shape[1])
        _k.changes_and_fingerprints(flat, self._prev, self._mult, self._changed, self._fp)
        self._prev = flat
        self.n_changes += self._changed.reshape(self.n_changes.shape)
        pairs = np.flatnonzero(self._changed)
        if pairs.size == 0:
            return
        qp = torch.from_numpy(flat[pairs])  # (M, P)
        bc, wc = qp[:, :c], qp[:, c:].reshape(-1, c, f)
        if c == 2:  # CE(z, y) = softplus(z_other − z_y) = softplus((1 − 2y)(z_1 − z_0))
            d = torch.matmul(wc[:, 1] - wc[:, 0], self.phi_t) + (bc[:, 1] - bc[:, 0])[:, None]
            losses = F.softplus(d * self._sign)
        else:
            z = torch.matmul(wc, self.phi_t) + bc[:, :, None]  # (M, C, n_val)
            losses = F.cross_entropy(z, self.y_val.expand(pairs.size, -1), reduction="none")
        s = self._state
        _k.keep_best_update(
            pairs,
            np.ascontiguousarray(losses.numpy()),
            flat,
            self._fp,
            int(epoch),
            s["losses"],
            s["mean"],
            s["epoch"],
            s["fp"],
            s["w"],
            s["filled"],
        )

    def result(self) -> dict[str, np.ndarray]:
        """``val_losses`` (K, Q, B, n_val), ``qhash`` (K, Q, B), ``val_epochs`` (K, Q, B)."""
        if self._state is None:
            raise MisValueError("nothing recorded yet (no epoch was a multiple of `every`)")
        s = self._state
        k, nq = self.n_changes.shape
        b, nv = self.keep_best, s["losses"].shape[2]
        order = np.lexsort((s["epoch"], s["mean"]), axis=1)  # by (mean, epoch); empties last
        take = np.arange(k * nq)[:, None], order
        losses = s["losses"][take]
        epochs = s["epoch"][take]
        filled = s["filled"][take]
        w = s["w"][take]
        qhash = np.zeros((k * nq, b), dtype=np.uint64)
        c = self.c
        for i, j in zip(*np.nonzero(filled), strict=True):
            qhash[i, j] = weights_hash([w[i, j, :c], w[i, j, c:]])
        return {
            "val_losses": losses.reshape(k, nq, b, nv),
            "qhash": qhash.reshape(k, nq, b),
            "val_epochs": epochs.reshape(k, nq, b),
        }
