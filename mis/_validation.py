"""The one torch-free toolkit of argument checks (private).

Array checks for the estimators (scores, labels, probabilities) and scalar / container checks
for configurations and options (integers, reals, booleans, choices, bit widths, paths,
lists, tables). Every check raises :class:`~mis.exceptions.MisValueError` whose message names
the parameter (or configuration key), what was expected and what was received.
"""

from __future__ import annotations

import math
import numbers
import os
import resource
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mis.exceptions import MisValueError, ResourceLimitError


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from ``None``, a non-negative int seed, a
    :class:`numpy.random.SeedSequence` or a Generator."""
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise MisValueError(f"{name} must be a non-negative int seed; got {int(rng)}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise MisValueError(
        f"{name} must be None, a non-negative int seed or a numpy.random.Generator; "
        f"got {rng!r} ({type(rng).__name__})"
    )


def _is_real_dtype(dtype: np.dtype) -> bool:
    """Booleans, integers and floats (not complex, timedelta, strings or objects)."""
    return dtype.kind in "biuf"


def draw_seed(rng) -> np.uint64:
    """Draw one 64-bit seed for a numba kernel's counter-based generator."""
    return np.uint64(as_generator(rng).integers(0, 2**63, dtype=np.int64))


def as_array(x, name: str) -> np.ndarray:
    """``numpy.asarray(x)``; a ragged nested sequence raises a ``MisValueError`` naming ``name``."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise MisValueError(
            f"{name} must be an array of numbers; got {type(x).__name__} ({exc})"
        ) from None


def real_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` as a float64 array of real numbers (NaN and inf allowed), of ``ndim`` dimensions
    when given."""
    arr = as_array(x, name)
    if not _is_real_dtype(arr.dtype):
        raise MisValueError(f"{name} must be real numbers; got {x!r:.60} (dtype {arr.dtype})")
    if ndim is not None and arr.ndim != ndim:
        raise MisValueError(f"{name} must be {ndim}-D; got an array of shape {arr.shape}")
    return arr.astype(np.float64)


def finite_1d(x, name: str) -> np.ndarray:
    """Return ``x`` as a contiguous 1-D float64 array with no NaN or inf."""
    arr = as_array(x, name)
    if arr.ndim != 1:
        raise MisValueError(f"{name} must be 1-D; got an array of shape {arr.shape}")
    if arr.size == 0:
        raise MisValueError(f"{name} must not be empty")
    if not _is_real_dtype(arr.dtype):
        raise MisValueError(f"{name} must be real numbers; got dtype {arr.dtype}")
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
    arr = as_array(y, name)
    if arr.ndim != 1:
        raise MisValueError(f"{name} must be 1-D; got an array of shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise MisValueError(f"{name} must have the same length as scores ({n}); got {arr.shape[0]}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not _is_real_dtype(arr.dtype):
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
    if isinstance(x, (str, bytes)):
        raise MisValueError(f"{name} must be a number or a 1-D sequence of numbers; got {x!r}")
    raw = as_array(x, name)
    if not _is_real_dtype(raw.dtype) or raw.dtype == bool:
        raise MisValueError(
            f"{name} must be a number or a 1-D sequence of numbers; got {x!r} (dtype {raw.dtype})"
        )
    arr = np.atleast_1d(raw.astype(np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise MisValueError(f"{name} must be a number or a 1-D sequence; got shape {arr.shape}")
    bad = ~((arr > 0) & (arr < 1))
    if bad.any():
        raise MisValueError(f"{name} must be in the open interval (0, 1); got {arr[bad][0]}")
    return np.ascontiguousarray(arr)


def choice(value, name: str, allowed) -> None:
    """Raise unless ``value`` is one of ``allowed`` (compared as plain values: an array or
    another unhashable object is never one of them)."""
    try:
        ok = not isinstance(value, np.ndarray) and hash(value) is not None and value in allowed
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise MisValueError(f"{name} must be one of {list(allowed)}; got {value!r:.60}")


# ------------------------------------------------------------------------------------------
# scalar and container checks for configurations and options (the message names the key)
# ------------------------------------------------------------------------------------------
def integer(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, checking it is an integer (not a bool) within the bounds."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return int(value)
    if minimum is not None and maximum is not None:
        want = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        want = f"an integer >= {minimum}"
    elif maximum is not None:
        want = f"an integer <= {maximum}"
    else:
        want = "an integer"
    raise MisValueError(f"{name} must be {want}; got {value!r}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, checking it is an integer >= ``minimum``."""
    return integer(value, name, minimum)


def real(
    value,
    name: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
) -> float:
    """Return ``value`` as a finite float in the interval from ``lo`` to ``hi``.

    ``open_lo`` / ``open_hi`` exclude the end points. Booleans and strings are refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MisValueError(f"{name} must be a number; got {value!r}")
    v = float(value)
    inside = (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
    if math.isfinite(v) and inside:
        return v
    if lo == -math.inf and hi == math.inf:
        want = "a finite number"
    elif hi == math.inf:
        want = f"a finite number {'>' if open_lo else '>='} {lo:g}"
    elif lo == -math.inf:
        want = f"a finite number {'<' if open_hi else '<='} {hi:g}"
    else:
        want = f"a number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    raise MisValueError(f"{name} must be {want}; got {value!r}")


def probability(value, name: str, *, open_lo: bool = True, open_hi: bool = True) -> float:
    """A probability: a number in (0, 1) by default (``open_lo/open_hi=False`` admit 0 / 1)."""
    return real(value, name, 0.0, 1.0, open_lo=open_lo, open_hi=open_hi)


def boolean(value, name: str) -> bool:
    """Return ``value``, checking it is ``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise MisValueError(f"{name} must be true or false; got {value!r}")
    return bool(value)


def string(value, name: str, choices=None) -> str:
    """Return ``value``, checking it is a string (one of ``choices`` when given)."""
    if not isinstance(value, str) or (choices is not None and value not in choices):
        want = f"one of {list(choices)}" if choices is not None else "a string"
        raise MisValueError(f"{name} must be {want}; got {value!r}")
    return value


#: The ternary bit width: three levels, log2(3) ≈ 1.585 bits per weight, written 1.58.
TERNARY_BITS = 1.58


def bit_width(value, name: str) -> float | int:
    """Return a bit width as ``1.58`` (three levels) or an int in [1, 16].

    1.58 and log2(3) both mean the ternary grid; any other non-integer is refused.
    """
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        b = float(value)
        if math.isclose(b, TERNARY_BITS, abs_tol=1e-9) or math.isclose(
            b, math.log2(3), abs_tol=1e-9
        ):
            return TERNARY_BITS
        if b.is_integer() and 1 <= b <= 16:
            return int(b)
    raise MisValueError(f"{name} must be 1.58 or an integer in [1, 16]; got {value!r}")


def sequence(value, name: str, item=None, *, min_len: int = 1, unique: bool = True) -> tuple:
    """Return a list or tuple as a tuple, each element checked by ``item(v, f"{name}[i]")``.

    Strings are refused (they are sequences of characters, never what is meant); so are
    fewer than ``min_len`` elements and, with ``unique``, repeated ones.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise MisValueError(f"{name} must be a list; got {value!r}")
    if len(value) < min_len:
        raise MisValueError(f"{name} must hold at least {min_len} item(s); got {list(value)!r}")
    out = tuple(item(v, f"{name}[{i}]") if item else v for i, v in enumerate(value))
    if unique and len(set(out)) != len(out):
        raise MisValueError(f"{name} must not repeat items; got {list(value)!r}")
    return out


def table(value, name: str) -> dict:
    """Return a mapping (a TOML table) as a plain dict of plain values (lists, not tuples)."""
    if not isinstance(value, Mapping):
        raise MisValueError(f"{name} must be a table; got {value!r}")
    return {str(k): plain(v) for k, v in value.items()}


def plain(x):
    """Mappings → dicts and tuples → lists, recursively (JSON / TOML-compatible data)."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def output_dir(value, name: str = "out") -> Path:
    """Return ``value`` as the :class:`~pathlib.Path` of an output directory.

    The empty string is refused (it silently means the current directory), and so is an
    existing path that is not a directory.
    """
    p = path(value, name)
    if p.exists() and not p.is_dir():
        raise MisValueError(f"{name} must be a directory; {p} exists and is not one")
    return p


# ------------------------------------------------------------------------------------------
# sizes: what an allocation needs against what the machine has
# ------------------------------------------------------------------------------------------
def format_bytes(n: float) -> str:
    """``n`` bytes in binary units (``"7.5 GiB"``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def available_memory() -> int:
    """Bytes of memory this process can still use: the kernel's ``MemAvailable`` (or the
    physical memory when it is unknown), capped by an address-space limit (``ulimit -v``)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = 1 << 62
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY and soft > 0:
        avail = min(avail, soft)
    return int(avail)


def check_memory(nbytes: float, what: str, *, limit: float | None = None) -> None:
    """Raise :class:`~mis.exceptions.ResourceLimitError` unless ``nbytes`` fits in memory.

    ``limit`` defaults to :func:`available_memory`; the message names ``what`` and both sizes.
    """
    have = available_memory() if limit is None else limit
    if nbytes > have:
        raise ResourceLimitError(
            f"{what} would need {format_bytes(nbytes)} of memory; this machine has "
            f"{format_bytes(have)} available"
        )


def path(value, name: str, *, must_exist: bool = False, kind: str | None = None) -> Path:
    """Return ``value`` (a string or path-like) as a :class:`~pathlib.Path`.

    ``must_exist`` checks that it exists; ``kind`` ("file" or "dir") checks what it is.
    The empty string is refused: it silently means the current directory.
    """
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise MisValueError(f"{name} must be a non-empty path; got {value!r}")
    p = Path(value).expanduser()
    if (must_exist or kind) and not p.exists():
        raise MisValueError(f"{name}: {p} does not exist")
    if kind == "file" and not p.is_file():
        raise MisValueError(f"{name} must be a file; {p} is a directory")
    if kind == "dir" and not p.is_dir():
        raise MisValueError(f"{name} must be a directory; {p} is a file")
    return p
