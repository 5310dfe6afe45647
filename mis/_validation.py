"""Input checks shared by the public wrappers (private)."""

from __future__ import annotations

import numbers

import numpy as np

from mis.exceptions import MisValueError


def as_generator(rng) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from ``None``, an int seed or a Generator."""
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise MisValueError(
        f"rng must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}"
    )


def draw_seed(rng) -> np.uint64:
    """Draw one 64-bit seed for a numba kernel's counter-based generator."""
    return np.uint64(as_generator(rng).integers(0, 2**63, dtype=np.int64))


def finite_1d(x, name: str) -> np.ndarray:
    """Return ``x`` as a contiguous 1-D float64 array with no NaN or inf."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise MisValueError(f"{name} must be 1-D; got an array of shape {arr.shape}")
    if arr.size == 0:
        raise MisValueError(f"{name} must not be empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise MisValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MisValueError(
            f"{name} must be finite; found {arr[i]} at index {i} "
            f"({int(bad.sum())} non-finite values)"
        )
    return arr


def binary_labels(y, name: str = "labels", n: int | None = None) -> np.ndarray:
    """Return ``y`` as a uint8 array of 0/1 (1 = member), checking values and length."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MisValueError(f"{name} must be 1-D; got an array of shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise MisValueError(f"{name} must have the same length as scores ({n}); got {arr.shape[0]}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise MisValueError(f"{name} must be 0/1 or boolean; got dtype {arr.dtype}")
    ok = (arr == 0) | (arr == 1)
    if not ok.all():
        bad = np.unique(arr[~ok])[:5]
        raise MisValueError(f"{name} must contain only 0 (non-member) and 1 (member); got {bad}")
    return arr.astype(np.uint8)


def scores_and_labels(scores, labels, *, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate a scoring and its membership labels; both classes must be present."""
    s = finite_1d(scores, name)
    y = binary_labels(labels, "labels", n=s.shape[0])
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        only = "members (1)" if n_pos else "non-members (0)"
        raise MisValueError(
            f"labels must contain both members (1) and non-members (0); got only {only}"
        )
    return s, y


def probability_in_open_unit(x, name: str) -> np.ndarray:
    """Return ``x`` as a 1-D float64 array with every value in (0, 1)."""
    arr = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise MisValueError(f"{name} must be a number or a 1-D sequence; got shape {arr.shape}")
    bad = ~((arr > 0) & (arr < 1))
    if bad.any():
        raise MisValueError(f"{name} must be in the open interval (0, 1); got {arr[bad][0]}")
    return np.ascontiguousarray(arr)


def choice(value, name: str, allowed) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise MisValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise MisValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)
