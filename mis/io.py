"""Arrays a user already has, read from files: ``.npy``, ``.csv`` and ``.txt`` columns.

The commands on existing arrays (``mis roc``, ``mis rank``) read their inputs with
:func:`read_array` (a whole ``.npy`` array) and :func:`read_column` (one column of a
``.npy``, ``.csv`` or ``.txt`` file, ``PATH`` or ``PATH:COLUMN``). Every problem is one
:class:`~mis.exceptions.MisValueError` naming the argument: a missing file, a directory, an
empty or truncated file, pickled objects (never loaded), a column that is not there, text
that is not a number.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from mis.exceptions import MisValueError

__all__ = ["read_array", "read_column", "read_table"]

TEXT_SUFFIXES = (".csv", ".txt", ".tsv")


def _existing_file(path: Path, name: str) -> Path:
    if not path.exists():
        raise MisValueError(f"{name}: {path} does not exist")
    if path.is_dir():
        raise MisValueError(f"{name}: {path} is a directory, not a file")
    return path


def _unreadable(p: Path, name: str, exc: Exception) -> MisValueError:
    return MisValueError(f"{name}: {p} is not a readable .npy file (truncated?): {exc}")


def read_array(path, name: str) -> np.ndarray:
    """A ``.npy`` file, memory-mapped and never unpickled.

    Raises
    ------
    MisValueError
        Missing, a directory, empty, not a ``.npy`` file (e.g. a ``.npz`` archive or text),
        truncated, or holding Python objects.
    """
    p = _existing_file(Path(path), name)
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise MisValueError(f"{name}: cannot read {p}: {exc.strerror or exc}") from None
    if not head:
        raise MisValueError(f"{name}: {p} is empty, not a .npy file")
    if head != b"\x93NUMPY":
        kind = " (a .npz archive: give one of its arrays as .npy)" if head[:2] == b"PK" else ""
        raise MisValueError(
            f"{name}: {p} is not a .npy file (it has no NumPy header){kind}; save the "
            "array with numpy.save, or give a .csv / .txt file"
        )
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise MisValueError(
                f"{name}: {p} holds Python objects (pickled data), which are never loaded; "
                "save a numeric array"
            ) from None
        raise MisValueError(
            f"{name}: {p} is not a readable .npy file (truncated?): {exc}"
        ) from None
    except (OSError, EOFError) as exc:
        raise MisValueError(
            f"{name}: {p} is not a readable .npy file (truncated?): {exc}"
        ) from None


def _split_spec(spec) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:COLUMN`` (a path that exists as given wins over the split)."""
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    path, column = text.rsplit(":", 1)
    return Path(path), column or None


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _text_table(p: Path, name: str) -> tuple[list[str] | None, list[list[str]]]:
    """Header (or None) and rows of a ``.csv`` (comma) or ``.txt``/``.tsv`` (whitespace or
    tab) file."""
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise MisValueError(f"{name}: {p} is not a text file") from None
    except OSError as exc:
        raise MisValueError(f"{name}: cannot read {p}: {exc.strerror or exc}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise MisValueError(f"{name}: {p} is empty")
    if p.suffix.lower() == ".csv":
        rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO("\n".join(lines)))]
    else:
        rows = [ln.replace("\t", " ").split() for ln in lines]
    header = None
    if any(_number(c) is None for c in rows[0]):
        header, rows = rows[0], rows[1:]
    if not rows:
        raise MisValueError(f"{name}: {p} has a header but no rows")
    width = len(header) if header else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            line = i + 2 if header else i + 1
            raise MisValueError(
                f"{name}: {p} row {line} has {len(r)} fields; the file has {width} columns"
            )
    return header, rows


def read_column(spec, name: str) -> np.ndarray:
    """One column of numbers, as a 1-D float64 array.

    Parameters
    ----------
    spec : str or path-like
        ``PATH`` or ``PATH:COLUMN``. ``.npy``: a 1-D array, or a column (by index) of a 2-D
        one. ``.csv`` (comma-separated) and ``.txt`` / ``.tsv`` (whitespace- or
        tab-separated): a file of one column, or ``COLUMN`` named by the header line (or an
        index counted from 0). Lines starting with ``#`` are comments.
    name : str
        The argument's name, for the error messages.

    Raises
    ------
    MisValueError
        A missing or unreadable file, several columns and none chosen, an unknown column,
        a value that is not a number.
    """
    p, column = _split_spec(spec)
    p = _existing_file(p, name)
    if p.suffix.lower() not in TEXT_SUFFIXES:
        arr = np.asarray(read_array(p, name))
        if arr.ndim == 2 and column is not None:
            if not column.isdigit() or int(column) >= arr.shape[1]:
                raise MisValueError(
                    f"{name}: column {column!r} of {p}: give an index in 0..{arr.shape[1] - 1}"
                )
            arr = arr[:, int(column)]
        if arr.ndim != 1:
            raise MisValueError(
                f"{name}: {p} holds an array of shape {arr.shape}; give a 1-D array or "
                f"{p}:INDEX for a column"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise MisValueError(f"{name}: {p} must hold numbers; got dtype {arr.dtype}")
        return np.asarray(arr, dtype=np.float64)
    header, rows = _text_table(p, name)
    width = len(rows[0])
    if column is None:
        if width != 1:
            cols = header if header else list(range(width))
            raise MisValueError(
                f"{name}: {p} has {width} columns {cols}; choose one with {p}:COLUMN"
            )
        j = 0
    elif header and column in header:
        j = header.index(column)
    elif column.isdigit() and int(column) < width:
        j = int(column)
    else:
        cols = header if header else list(range(width))
        raise MisValueError(f"{name}: {p} has no column {column!r}; columns: {cols}")
    values = np.empty(len(rows))
    for i, r in enumerate(rows):
        v = _number(r[j])
        if v is None:
            line = i + 2 if header else i + 1
            raise MisValueError(f"{name}: {p} row {line}: {r[j]!r} is not a number")
        values[i] = v
    return values


def read_table(path, name: str) -> tuple[list[str] | None, np.ndarray]:
    """A whole ``.csv`` / ``.txt`` table of numbers: its header (None without one) and its
    values, shape (n_rows, n_columns) float64."""
    p = _existing_file(Path(path), name)
    header, rows = _text_table(p, name)
    values = np.empty((len(rows), len(rows[0])))
    for i, r in enumerate(rows):
        for j, token in enumerate(r):
            v = _number(token)
            if v is None:
                line = i + 2 if header else i + 1
                raise MisValueError(f"{name}: {p} row {line}: {token!r} is not a number")
            values[i, j] = v
    return header, values
