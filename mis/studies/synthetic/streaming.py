"""Streaming r_Q over every distinct quantized checkpoint, for many linear models at once.

Algorithm 1 of Aubinais et al. (2025) records, after every epoch and for every quantizer,
the quantized model's per-sample validation losses, and computes r_Q once training ends
from all of them (after removing repeated quantized points, DESIGN.md). Kept literally, that
is n_checkpoints × n_val losses per run and quantizer; earlier versions of this study kept
only the 64 lowest-loss points instead, which changes r_Q in some runs (issue 16).

:class:`StreamingRecorder` computes the same r_Q over *every* distinct point while holding
only each point's quantized weights (int8 codes and a scale), its mean loss and its sum of
squared deviations (:mod:`mis._kernels.streaming`): memory is about C·F bytes per distinct
point (in one pool that grows with them) — 256 bytes for the single layer of §5.1.1, at
most 0.8 MB per run and quantizer over 3,000 epochs — plus about 50 bytes per checkpoint of
bookkeeping, whatever the validation set's size. Losses are recomputed at the end
only for the few points that can still attain the minimum (a Cauchy–Schwarz bound decides),
so the result equals Algorithm 1 over all distinct points (``tests`` compare it with
Algorithm 1 written literally on random trajectories).

The model is ``z = W [x, x²] + b`` (:class:`~mis.train.QuadraticLinear`) with C = 1 output
(binary cross-entropy with logits) or C ≥ 2 (softmax cross-entropy); the quantizers are those
of :func:`mis.quant.stacked_quantize`, applied to each model's weight tensor (C, F) and, with
``params="all"``, to its bias tensor (C,) on its own, exactly as
:func:`mis.quant.weight_quantizer` does on one model.
"""

from __future__ import annotations

import numpy as np
import torch

from mis._kernels import streaming as _k
from mis._validation import choice, integer, sequence, string
from mis.exceptions import MisValueError
from mis.quant import STACKED_QUANTIZERS
from mis.quant.stacked import RowQuantizer, pow2max_alpha

__all__ = ["STATUS_NAMES", "StreamingRecorder", "quadratic_features"]

#: Names of the status codes of :meth:`StreamingRecorder.result`.
STATUS_NAMES = _k.STATUS_NAMES

_BITS = {"2bit": 2, "3bit": 3, "4bit": 4, "5bit": 5}


def quadratic_features(x) -> np.ndarray:
    """``[x, x²]`` in float64 along the last axis: (..., d) → (..., 2d)."""
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x, x * x], axis=-1)


class StreamingRecorder:
    """r_Q of every (model, quantizer) over all distinct quantized checkpoints, streamed.

    Parameters
    ----------
    quantizers : sequence of str
        Names from :data:`mis.quant.STACKED_QUANTIZERS`.
    x_val : array_like, shape (n_val, d)
        Validation inputs shared by the models (raw x; the features ``[x, x²]`` are built here).
    y_val : array_like of int, shape (n_val,)
    n_checkpoints : int
        The most checkpoints that will be offered (e.g. ``epochs // every``): the capacity of
        each row's table of distinct points.
    every : int, default 1
        Record when the number of completed epochs is a multiple of ``every``.
    params : {"all", "weights"}
        Quantize weight and bias (θ̄ = Q(θ), Algorithm 1) or the weight only.
    ddof : int, default 1
        Of the variances, as :func:`mis.security.rq`.
    keep_best : int, default 64
        B of the diagnostic ``rq_kept``: r_Q over the B lowest-mean distinct points only (what
        a keep-best recorder of B slots would give); 0 = all.

    Notes
    -----
    Call as ``recorder(epoch, weight, bias)`` with the float64 weight (K, C, F) and bias (K, C)
    of K models (a :func:`mis.train.train_linear_ensemble` callback); the parameters are cast
    to float32 before quantization, as a saved float32 model would be. :meth:`result` gives
    per model and quantizer ``rq`` (K, Q), ``rq_kept``, ``delta2``, ``best_epoch``,
    ``argmin_rank`` (position by mean of the point attaining the minimum; 1 = θ̄₂),
    ``n_distinct``, ``n_changes`` (checkpoints that differ from the previous one, the first
    included), ``n_recomputed`` and ``status`` (codes of :mod:`mis._kernels.rq`).
    """

    def __init__(
        self,
        quantizers,
        x_val,
        y_val,
        *,
        n_checkpoints: int,
        every: int = 1,
        params: str = "all",
        ddof: int = 1,
        keep_best: int = 64,
    ):
        self.names = list(
            sequence(list(quantizers), "quantizers", lambda v, k: string(v, k, STACKED_QUANTIZERS))
        )
        self._rows = RowQuantizer(self.names)
        self.n_checkpoints = integer(n_checkpoints, "n_checkpoints", 1)
        self.every = integer(every, "every", 1)
        choice(params, "params", ("all", "weights"))
        self.params = params
        self.ddof = integer(ddof, "ddof", 0)
        self.keep_best = integer(keep_best, "keep_best", 0)
        x = np.asarray(x_val)
        if x.ndim != 2 or x.shape[0] <= max(self.ddof, 1):
            raise MisValueError(
                f"x_val must have shape (n_val, d) with n_val > max(ddof, 1); got {x.shape}"
            )
        self.phi_t = np.ascontiguousarray(quadratic_features(x).T)  # (F, n_val)
        y = np.asarray(y_val)
        if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise MisValueError(f"y_val must be integers of shape ({x.shape[0]},); got {y.shape}")
        self.y_val = np.ascontiguousarray(y, dtype=np.int64)
        bbit = np.array([q in _BITS for q in self.names])
        self._levels = np.array([2.0 ** (_BITS.get(q, 1) - 1) for q in self.names], np.float32)
        self._bbit = bbit
        self._state = None

    # -- quantization -----------------------------------------------------------------------
    def quantize(self, weight, bias) -> tuple[np.ndarray, np.ndarray]:
        """Quantized flat parameters and weight scales of every model and quantizer.

        weight (K, C, F), bias (K, C) (any float) → flat (K, Q, C + C·F) float32 (bias, then
        weight row-major) and scale (K, Q) float32 (1 for sign / ternary, the grid step
        α / 2^(b−1) for b bits).
        """
        w = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        k, c, _ = w.shape
        wq = self._rows(w, "weight")  # (K, Q, C·F)
        alpha = pow2max_alpha(w.reshape(k, -1)).numpy()  # (K,) float32
        scale = np.where(self._bbit[None, :], alpha[:, None] / self._levels[None, :], 1.0)
        b32 = np.ascontiguousarray(bias, dtype=np.float32).reshape(k, c)
        if self.params == "all":
            bq = self._rows(torch.from_numpy(b32), "bias")  # (K, Q, C)
        else:
            bq = np.broadcast_to(b32[:, None, :], (k, len(self.names), c))
        return np.concatenate([bq, wq], axis=2), scale.astype(np.float32)

    # -- streaming ---------------------------------------------------------------------------
    def _init_state(self, k: int, c: int, f: int) -> None:
        rows, cap, n_val = k * len(self.names), self.n_checkpoints, self.phi_t.shape[1]
        if self.phi_t.shape[0] != f:
            raise MisValueError(
                f"weight has {f} features but x_val gives {self.phi_t.shape[0]} ([x, x²])"
            )
        h = 1 << int(np.ceil(np.log2(2 * cap + 1)))
        p = c + c * f
        rng = np.random.default_rng(0x5EED)  # fixed: results are reproducible
        self.c, self.f, self.k = c, f, k
        self._state = {
            "n_changes": np.zeros(rows, np.int64),
            "count": np.zeros(rows, np.int64),
            "fp": np.zeros((rows, cap), np.uint64),
            "table": np.full((rows, h), -1, np.int64),
            "pid": np.empty((rows, cap), np.int64),
            # the int8 weight codes of every distinct point, in one pool that grows with them
            "pool": np.empty((max(4 * rows, 1024), c * f), np.int8),
            "n_pool": np.zeros(1, np.int64),
            "scales": np.empty((rows, cap), np.float32),
            "biases": np.empty((rows, cap, c), np.float32),
            "means": np.empty((rows, cap)),
            "m2": np.empty((rows, cap)),
            "epochs": np.empty((rows, cap), np.int64),
        }
        self._mult = rng.integers(0, 2**63, size=p, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._prev = np.full((rows, p), np.nan, np.float32)
        self._zrow = np.zeros((rows, c, n_val))
        self._n_incr = np.zeros(rows, np.int64)
        self._losses = np.empty(n_val)

    def __call__(self, epoch: int, weight, bias) -> None:
        if epoch % self.every:
            return
        w = np.asarray(weight)
        if w.ndim != 3:
            raise MisValueError(f"weight must have shape (K, C, F); got {w.shape}")
        if self._state is None:
            self._init_state(*w.shape)
        flat, scale = self.quantize(w, bias)
        s = self._state
        rows = s["count"].shape[0]
        if s["pool"].shape[0] - int(s["n_pool"][0]) < rows:  # room for one new point per row
            grown = np.empty((2 * s["pool"].shape[0] + rows, s["pool"].shape[1]), np.int8)
            grown[: int(s["n_pool"][0])] = s["pool"][: int(s["n_pool"][0])]
            s["pool"] = grown
        status = _k.stream_update(
            np.ascontiguousarray(flat.reshape(-1, flat.shape[2])), scale.reshape(-1),
            self._prev, self._mult, int(epoch), self.phi_t, self.y_val, s["n_changes"],
            s["count"], s["fp"], s["table"], s["pid"], s["pool"], s["n_pool"], s["scales"],
            s["biases"], s["means"], s["m2"], s["epochs"], self._zrow, self._n_incr,
            self._losses,
        )  # fmt: skip
        if status == _k.FULL:
            raise MisValueError(
                f"more distinct quantized points than n_checkpoints = {self.n_checkpoints}: "
                "offer at most n_checkpoints checkpoints"
            )
        if status == _k.NOT_A_CODE:
            raise MisValueError(
                "a quantized weight is not an int8 multiple of its scale; the streaming "
                "recorder supports the quantizers of mis.quant.stacked_quantize only"
            )

    @property
    def n_distinct(self) -> np.ndarray:
        """Distinct quantized points so far, (K, Q) int64."""
        if self._state is None:
            raise MisValueError("nothing recorded yet (no epoch was a multiple of `every`)")
        return self._state["count"].reshape(self.k, len(self.names)).copy()

    def result(self) -> dict[str, np.ndarray]:
        """r_Q and diagnostics per model and quantizer (class docstring), each (K, Q)."""
        if self._state is None:
            raise MisValueError("nothing recorded yet (no epoch was a multiple of `every`)")
        s = self._state
        rows = s["count"].shape[0]
        out = {name: np.empty(rows) for name in ("rq", "rq_kept", "delta2")}
        for name in ("best_epoch", "argmin_rank", "n_recomputed"):
            out[name] = np.empty(rows, np.int64)
        out["status"] = np.empty(rows, np.int8)
        keep = self.keep_best or self.n_checkpoints
        _k.stream_finalize(
            s["count"], s["pid"], s["pool"], s["scales"], s["biases"], s["means"], s["m2"],
            s["epochs"], self.phi_t, self.y_val, self.ddof, keep, out["rq"], out["rq_kept"],
            out["delta2"], out["best_epoch"], out["argmin_rank"], out["n_recomputed"],
            out["status"],
        )  # fmt: skip
        out["n_distinct"] = s["count"].copy()
        out["n_changes"] = s["n_changes"].copy()
        shape = (self.k, len(self.names))
        return {name: v.reshape(shape) for name, v in out.items()}

    def points(self, model: int, quantizer: int) -> dict[str, np.ndarray]:
        """The distinct points of one row in first-seen order: ``epochs``, ``means``, and the
        quantized ``weights`` (D, C, F) and ``biases`` (D, C), float32 (for tests and plots)."""
        s = self._state
        r = integer(model, "model", 0, self.k - 1) * len(self.names) + integer(
            quantizer, "quantizer", 0, len(self.names) - 1
        )
        d = int(s["count"][r])
        w = s["pool"][s["pid"][r, :d]].astype(np.float32) * s["scales"][r, :d, None]
        return {
            "epochs": s["epochs"][r, :d].copy(),
            "means": s["means"][r, :d].copy(),
            "weights": w.reshape(d, self.c, self.f),
            "biases": s["biases"][r, :d].copy(),
        }
