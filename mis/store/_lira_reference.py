"""Import the directory layout of the reference LiRA code into a run store (via :mod:`mis.store`).

tensorflow/privacy ``research/mi_lira_2021`` writes, under a log directory::

    x_train.npy, y_train.npy                  (the training pool and its labels)
    experiment-<i>_<n>/keep.npy               (bool (N_pool,): which examples model i trained on)
    experiment-<i>_<n>/logits/<epoch>.npy     (float32 (N, 1, A, C): logits per augmentation)

and ``plot.py`` uses the last logits file (sorted by name) of every
experiment directory found by ``os.walk``, with ``keep`` cut to ``N``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mis.exceptions import MisValueError
from mis.store._run_store import RunStore

__all__ = ["import_lira_reference"]


def _natural_key(path: Path):
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", str(path))]


def _experiments(root: Path) -> list[Path]:
    """Experiment directories (any depth, as ``os.walk`` in plot.py), in natural name order."""
    found = [
        p
        for p in root.rglob("experiment*")
        if p.is_dir() and (p / "keep.npy").exists() and (p / "logits").is_dir()
    ]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root)))


def _logits_file(exp: Path, epoch) -> Path:
    if epoch is None:
        files = sorted((exp / "logits").glob("*.npy"))
        if not files:
            raise MisValueError(f"path: {exp / 'logits'} holds no .npy logits file")
        return files[-1]
    f = exp / "logits" / f"{int(epoch):010d}.npy"
    if not f.exists():
        raise MisValueError(f"epoch: {f} does not exist")
    return f


def import_lira_reference(path, out, *, labels=None, epoch=None):
    """Read a reference LiRA log directory into a run store.

    Parameters
    ----------
    path : str or path-like
        The reference code's log directory (e.g. ``exp/cifar10``).
    out : str, path-like or RunStore
        The run store to write ``keep`` (n_models, N) bool, ``logits``
        (n_models, N, A, C) float32 and ``labels`` (N,) int64 into.
    labels : array_like of int, optional
        True classes, if ``path`` has no ``y_train.npy`` (else cut to N and checked).
    epoch : int, optional
        Which logits file to read (``<epoch>.npy``, zero-padded to 10 digits);
        default the last one by name, as ``plot.py`` does.

    Returns
    -------
    RunStore

    Notes
    -----
    Model order is the natural sort of the experiment directory names
    (``experiment-2_16`` before ``experiment-10_16``); ``plot.py`` takes
    ``os.walk`` order, which depends on the file system, so to reproduce one
    of its runs exactly the order must match (it decides which model is the
    target ``-1`` and which shadows the truncation keeps). The order is
    recorded in the metadata of ``keep`` (``"experiments"``). The logits are
    assembled in a temporary memory-mapped file, so they need not fit in RAM.

    Raises
    ------
    MisValueError
        No experiment directory, inconsistent shapes, logits of the wrong
        rank, missing or out-of-range labels.
    """
    root = Path(path)
    if not root.is_dir():
        raise MisValueError(f"path must be a directory; got {str(root)!r}")
    exps = _experiments(root)
    if not exps:
        raise MisValueError(
            f"path: no experiment*/ directory with keep.npy and logits/ under {str(root)!r}"
        )
    files = [_logits_file(e, epoch) for e in exps]
    first = np.load(files[0], mmap_mode="r", allow_pickle=False)
    if first.ndim != 4 or first.shape[1] != 1:
        raise MisValueError(
            f"logits files must have shape (N, 1, A, C); {files[0]} has shape {first.shape}"
        )
    n, _, n_aug, n_classes = first.shape
    store = out if isinstance(out, RunStore) else RunStore(out)

    if labels is None:
        y_file = root / "y_train.npy"
        if not y_file.exists():
            raise MisValueError(
                f"labels: {y_file} does not exist; pass labels= (the true class of each example)"
            )
        labels = np.load(y_file, allow_pickle=False)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] < n:
        raise MisValueError(
            f"labels must be 1-D with at least N = {n} entries; got shape {y.shape}"
        )
    y = y[:n]
    if not np.issubdtype(y.dtype, np.integer):
        raise MisValueError(f"labels must be integer classes; got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise MisValueError(
            f"labels must lie in [0, {n_classes}); got range [{y.min()}, {y.max()}]"
        )

    keep = np.empty((len(exps), n), dtype=bool)
    tmpdir = Path(tempfile.mkdtemp(prefix=".import-", dir=store.path))
    try:
        big = np.lib.format.open_memmap(
            tmpdir / "logits.npy",
            mode="w+",
            dtype=np.float32,
            shape=(len(exps), n, n_aug, n_classes),
        )
        for m, (exp, f) in enumerate(zip(exps, files, strict=True)):
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
            if arr.shape != first.shape:
                raise MisValueError(
                    f"logits files must all have shape {first.shape}; {f} has shape {arr.shape}"
                )
            big[m] = arr[:, 0]
            k = np.load(exp / "keep.npy", allow_pickle=False)
            if k.ndim != 1 or k.shape[0] < n:
                raise MisValueError(
                    f"keep.npy must be 1-D with at least N = {n} entries; {exp / 'keep.npy'} has "
                    f"shape {k.shape}"
                )
            keep[m] = k[:n].astype(bool)
        big.flush()
        source = dict(source=str(root), experiments=[str(e.relative_to(root)) for e in exps])
        store.save("logits", big, **source, files=[str(f.relative_to(root)) for f in files])
        del big
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    store.save("keep", keep, **source)
    store.save("labels", y.astype(np.int64), source=str(root))
    return store
