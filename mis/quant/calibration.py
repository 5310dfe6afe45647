"""Calibration data for post-training quantization, guarded to the target's training members.

PTQ methods (AdaRound, BRECQ, OBC/GPTQ, BN tuning) look at data; if that data contains
examples the target did not train on, the quantized model has seen non-members and a
membership-inference audit of it is biased (Zhang et al. 2025, §IV-A: the calibration
set must be a subset of the target's training set). A :class:`Calibration` therefore
carries, with its tensors, the dataset indices of its examples and the target's
membership mask, and refuses to exist if any index is not a member.
:func:`~mis.quant.api.quantize_model` accepts calibration data only in this form.

Build one with :func:`select_calibration` from the full dataset and the target's keep
row — either drawing ``n_samples`` members at random (the paper uses 1024, fixed
across methods: use the same ``rng`` seed), or from explicit ``indices`` (dataset
indices, each checked) or ``member_positions`` (positions in the list of members).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mis._validation import as_generator, integer
from mis.exceptions import MisValueError

DEFAULT_N_SAMPLES = 1024
_CHECKED = object()  # ``dataset`` of a Calibration whose rows this module took by index


def _member_mask(member_mask) -> np.ndarray:
    if isinstance(member_mask, torch.Tensor):
        member_mask = member_mask.detach().cpu().numpy()
    m = np.asarray(member_mask)
    if m.ndim != 1 or m.size == 0:
        raise MisValueError(
            f"member_mask must be a 1-D boolean mask over the dataset (the target's keep row); "
            f"got shape {m.shape}"
        )
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
            raise MisValueError(f"member_mask must be boolean (or 0/1); got dtype {m.dtype}")
        m = m.astype(bool)
    return m


def _index_array(indices, name: str) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0:
        raise MisValueError(
            f"{name} must be a non-empty 1-D array of integers; got shape {idx.shape}"
        )
    if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        raise MisValueError(f"{name} must hold integers; got dtype {idx.dtype}")
    return idx.astype(np.int64)


def check_members(indices, member_mask) -> None:
    """Raise :class:`MisValueError` unless every index is a training member of the target."""
    m = _member_mask(member_mask)
    idx = _index_array(indices, "indices")
    out = (idx < 0) | (idx >= m.size)
    if out.any():
        raise MisValueError(
            f"indices must lie in [0, {m.size}) (the dataset the member mask covers); "
            f"got {idx[out][:5].tolist()}"
        )
    bad = ~m[idx]
    if bad.any():
        raise MisValueError(
            f"calibration data must come from the target's training members only; "
            f"{int(bad.sum())} of {idx.size} indices are non-members "
            f"(e.g. {idx[bad][:5].tolist()}). "
            "Calibrating on non-members leaks them into the quantized model."
        )


def _check_rows(data: tuple, idx: np.ndarray, mask: np.ndarray, dataset) -> None:
    """Raise unless ``data[k]`` is ``dataset[k][idx]`` for every k (the guard's link between
    the rows and the member indices)."""
    if dataset is None:
        raise MisValueError(
            "Calibration(data, indices, member_mask) cannot check that the rows of data are "
            "the examples at indices: pass dataset=x (or (x, y)), the whole dataset the member "
            "mask refers to, or build it with select_calibration(x, y, member_mask=keep_row, "
            "indices=...)"
        )
    full = (dataset,) if isinstance(dataset, torch.Tensor) else dataset
    if not isinstance(full, (tuple, list)) or len(full) < len(data):
        raise MisValueError(
            f"dataset must be a tensor or a tuple of {len(data)} tensor(s) (x[, y]) like data"
        )
    t_idx = torch.as_tensor(idx)
    for k, t in enumerate(data):
        src = torch.as_tensor(full[k])
        if src.ndim == 0 or src.shape[0] != mask.size:
            raise MisValueError(
                f"dataset[{k}] must have one row per entry of member_mask ({mask.size}); "
                f"got shape {tuple(src.shape)}"
            )
        rows = src[t_idx]
        same = rows.shape == t.shape and torch.equal(rows.to(t.device, t.dtype), t)
        if not same:
            raise MisValueError(
                f"data[{k}] must be the dataset's rows at indices (dataset[{k}][indices]); "
                "it is not, so it may hold non-members: calibrating on them leaks them into "
                "the quantized model"
            )


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration examples of one target model, each a verified training member.

    Attributes
    ----------
    data : tuple of torch.Tensor
        ``(x,)`` or ``(x, y)``; each has ``len(indices)`` rows.
    indices : numpy.ndarray of int64, shape (n,)
        Dataset indices of the rows (distinct).
    member_mask : numpy.ndarray of bool, shape (N,)
        The target's membership (keep) mask over the dataset.
    dataset : torch.Tensor or tuple of torch.Tensor
        Given to the constructor only: the whole dataset ``(x[, y])`` that ``member_mask``
        and ``indices`` refer to. Each row of ``data`` must equal the dataset's row at its
        index, so that data of non-members cannot pass under members' indices. Not kept
        (None afterwards). :func:`select_calibration` and :meth:`to` need none: they take
        the rows by index themselves.

    Construction validates all of it; an index that is not a member, or a row that is not
    the dataset's row at its index, raises :class:`~mis.exceptions.MisValueError`.
    """

    data: tuple
    indices: np.ndarray
    member_mask: np.ndarray
    dataset: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        data = self.data
        if isinstance(data, torch.Tensor):
            data = (data,)
        if not isinstance(data, (tuple, list)) or not data:
            raise MisValueError("data must be a tensor or a non-empty tuple of tensors (x[, y])")
        data = tuple(torch.as_tensor(t) for t in data)
        mask = _member_mask(self.member_mask)
        idx = _index_array(self.indices, "indices")
        if np.unique(idx).size != idx.size:
            raise MisValueError("indices must be distinct (each calibration example once)")
        check_members(idx, mask)
        for k, t in enumerate(data):
            if t.ndim == 0 or t.shape[0] != idx.size:
                raise MisValueError(
                    f"data[{k}] must have one row per index ({idx.size}); "
                    f"got shape {tuple(t.shape)}"
                )
        if self.dataset is not _CHECKED:
            _check_rows(data, idx, mask, self.dataset)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "member_mask", mask)
        object.__setattr__(self, "dataset", None)

    def to(self, device) -> Calibration:
        """The same calibration set with its tensors on ``device``."""
        data = tuple(t.to(device) for t in self.data)
        return Calibration(data, self.indices, self.member_mask, dataset=_CHECKED)

    @property
    def x(self) -> torch.Tensor:
        """Inputs, shape (n, ...)."""
        return self.data[0]

    @property
    def y(self) -> torch.Tensor | None:
        """Labels (n,) when given, else None."""
        return self.data[1] if len(self.data) > 1 else None

    def __len__(self) -> int:
        return int(self.indices.size)

    def batches(self, batch_size: int = 32, device=None):
        """Yield tuples of tensors, ``batch_size`` rows at a time, in a fixed order."""
        integer(batch_size, "batch_size", 1)
        for i in range(0, len(self), batch_size):
            part = tuple(t[i : i + batch_size] for t in self.data)
            yield tuple(t.to(device) for t in part) if device is not None else part

    def __repr__(self) -> str:
        n_members = int(self.member_mask.sum())
        return f"Calibration(n={len(self)}, members={n_members}/{self.member_mask.size})"


def select_calibration(
    x,
    y=None,
    *,
    member_mask,
    indices=None,
    member_positions=None,
    n_samples: int = DEFAULT_N_SAMPLES,
    rng=0,
) -> Calibration:
    """Pick calibration examples among the target's training members.

    Parameters
    ----------
    x : torch.Tensor or array, shape (N, ...)
        The whole dataset the member mask refers to.
    y : torch.Tensor or array, shape (N,), optional
        Labels.
    member_mask : array of bool, shape (N,)
        The target's keep row (True = trained on).
    indices : array of int, optional
        Dataset indices to use; every one must be a member (else ``MisValueError``).
    member_positions : array of int, optional
        Alternatively, positions into ``flatnonzero(member_mask)`` (the k-th member).
    n_samples : int, default 1024
        When neither is given: draw this many distinct members at random
        (all of them if there are fewer).
    rng : int or numpy.random.Generator, default 0
        Seed of the draw (same seed, same calibration set).
    """
    mask = _member_mask(member_mask)
    x = torch.as_tensor(x)
    if x.ndim == 0 or x.shape[0] != mask.size:
        raise MisValueError(
            f"x must have one row per entry of member_mask ({mask.size}); "
            f"got shape {tuple(x.shape)}"
        )
    members = np.flatnonzero(mask)
    if indices is not None and member_positions is not None:
        raise MisValueError("give indices or member_positions, not both")
    if indices is not None:
        idx = _index_array(indices, "indices")
        check_members(idx, mask)
    elif member_positions is not None:
        pos = _index_array(member_positions, "member_positions")
        if (pos < 0).any() or (pos >= members.size).any():
            raise MisValueError(
                f"member_positions must lie in [0, {members.size}) (the number of members); "
                f"got {pos[(pos < 0) | (pos >= members.size)][:5].tolist()}"
            )
        idx = members[pos]
    else:
        integer(n_samples, "n_samples", 1)
        if members.size == 0:
            raise MisValueError("member_mask has no members: nothing to calibrate on")
        k = min(int(n_samples), members.size)
        idx = np.sort(as_generator(rng).choice(members, size=k, replace=False))
    t_idx = torch.as_tensor(idx)
    if y is None:
        data = (x[t_idx],)
    else:
        y = torch.as_tensor(y)
        if y.ndim == 0 or y.shape[0] != mask.size:
            raise MisValueError(
                f"y must have one entry per entry of member_mask ({mask.size}); "
                f"got shape {tuple(y.shape)}"
            )
        data = (x[t_idx], y[t_idx])
    return Calibration(data, idx, mask, dataset=_CHECKED)
