"""Data sets and augmentation queries.

* :class:`GaussianMixture` / :func:`gaussian_mixture` — the synthetic task of Aubinais et al.
  (2025), §5.1.1: points of R^128 from ``k_modes`` isotropic Gaussians of standard deviation
  ``sigma``, each cluster carrying a label in {0, 1}.
* :func:`load_digits` — scikit-learn's bundled 8×8 digits (1,797 real images, no download):
  the embedded default for image experiments.
* :func:`load_cifar10`, :func:`load_cifar100` — the official *python* batches, read through a
  restricted unpickler (:func:`restricted_load`) that admits only builtin containers and numpy
  arrays, so a tampered file cannot run code.
* :func:`load_tinyimagenet` — the official directory layout, decoded with Pillow (installed as a
  dependency of matplotlib).
* :func:`load_npz` — any ``(x, y)`` pair saved with :func:`numpy.savez`.
* :func:`load_fashion_mnist`, :func:`load_mnist` — the four IDX files of an MNIST-format
  release (raw or gzipped, :func:`read_idx`); Fashion-MNIST defaults to where Debian's
  package ``dataset-fashion-mnist`` installs it.

Augmentations are pure tensor operations on NCHW batches (no torchvision): :func:`hflip`,
:func:`shift` (the LiRA inference queries, :func:`augmentation_queries`) and
:func:`random_flip_crop` (the training augmentation of Zhang et al. 2025, §IV-A).

Images are kept as ``uint8`` NCHW arrays in memory (CIFAR-10's 50,000 training images take
150 MB); :meth:`Dataset.tensor` converts a selection to normalised float32.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import functools
import gzip
import io
import math
import os
import pickle
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image  # Pillow: installed as a dependency of matplotlib

from mis._progress import progress_bar
from mis._validation import as_generator, positive_int, real
from mis.exceptions import MisValueError
from mis.store import atomic_write

__all__ = [
    "Dataset",
    "GaussianMixture",
    "as_dataset",
    "augmentation_queries",
    "dataset_from_arrays",
    "gaussian_mixture",
    "hflip",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "load_npz",
    "load_tinyimagenet",
    "random_flip_crop",
    "read_idx",
    "restricted_load",
    "shift",
]

# Per-channel statistics of the training sets (the usual published constants).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
TINYIMAGENET_MEAN, TINYIMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)


# ------------------------------------------------------------------------------------------
# Data set container
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Dataset:
    """Arrays of one data set.

    Attributes
    ----------
    x : ndarray, shape (n, ...)
        Inputs. Images are NCHW, ``uint8`` (0–255) or float32 already scaled.
    y : ndarray of int64, shape (n,)
        Class labels in ``0 .. n_classes-1``.
    n_classes : int
    x_test, y_test : ndarray or None
        The official test split when there is one.
    mean, std : tuple of float or None
        Per-channel normalisation applied by :meth:`tensor` (after scaling uint8 to [0, 1]).
    name : str
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def tensor(self, x=None, device="cpu"):
        """Return ``x`` (default: the training inputs) as a normalised float32 torch tensor.

        ``uint8`` inputs are divided by 255; then ``(x - mean) / std`` per channel (axis 1)
        when ``mean``/``std`` are set.
        """
        x = self.x if x is None else x
        t = torch.as_tensor(np.asarray(x))
        t = t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()
        if self.mean is not None:
            shape = (1, -1) + (1,) * (t.ndim - 2)
            mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
            std = torch.tensor(self.std, dtype=torch.float32).view(shape)
            t = (t - mean) / std
        return t.contiguous().to(device)


# ------------------------------------------------------------------------------------------
# Synthetic Gaussian mixture (Aubinais et al. 2025, §5.1.1)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A fixed mixture of isotropic Gaussians with 0/1 cluster labels.

    Drawn by :meth:`random`:

    * centres ``mu_j ~ N(0, centre_scale² I_dim)``, j = 1..k_modes, independently;
    * labels: a uniformly random permutation of ``[0, 1, 0, 1, ...]`` (k_modes//2 clusters
      of one label and the rest of the other), so both classes are present and balanced
      within one cluster;
    * mixture weights are uniform.

    A sample picks a cluster ``j`` uniformly, then ``x = mu_j + sigma · eps`` with
    ``eps ~ N(0, I_dim)`` and ``y = label_j``. The paper (§5.1.1) fixes dim = 128,
    k_modes ∈ {6, 8, 16} and sigma ∈ {1.5, 2, 3} but does not say how centres are drawn;
    the choice above is ours.

    Attributes
    ----------
    centres : ndarray, shape (k_modes, dim), float64
    labels : ndarray, shape (k_modes,), int64
    sigma : float
    """

    centres: np.ndarray
    labels: np.ndarray
    sigma: float

    @property
    def dim(self) -> int:
        return int(self.centres.shape[1])

    @property
    def k_modes(self) -> int:
        return int(self.centres.shape[0])

    @classmethod
    def random(cls, *, dim: int = 128, k_modes: int, sigma: float, rng=None, centre_scale=1.0):
        """Draw a mixture (centres and cluster labels) from ``rng`` (see the class docstring)."""
        dim = positive_int(dim, "dim")
        k_modes = positive_int(k_modes, "k_modes", minimum=2)
        real(sigma, "sigma", 0.0, open_lo=True)
        real(centre_scale, "centre_scale", 0.0, open_lo=True)
        g = as_generator(rng)
        centres = centre_scale * g.standard_normal((k_modes, dim))
        labels = g.permutation(np.arange(k_modes) % 2).astype(np.int64)
        return cls(centres=centres, labels=labels, sigma=float(sigma))

    def sample(self, n: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` i.i.d. points.

        Returns
        -------
        x : ndarray, shape (n, dim), float32
        y : ndarray, shape (n,), int64
        """
        n = positive_int(n, "n")
        g = as_generator(rng)
        comp = g.integers(0, self.k_modes, size=n)
        x = self.centres[comp] + self.sigma * g.standard_normal((n, self.dim))
        return x.astype(np.float32), self.labels[comp].copy()


def gaussian_mixture(n, *, dim=128, k_modes, sigma, rng=None, centre_scale=1.0):
    """Draw a mixture from ``rng`` and then ``n`` points from it (Aubinais et al., §5.1.1).

    Equivalent to ``g = as_generator(rng); GaussianMixture.random(..., rng=g).sample(n, g)``:
    the same seed gives the same mixture and the same points. For fresh samples from the same
    mixture (one training set per run, a common validation set), build the
    :class:`GaussianMixture` once and call :meth:`GaussianMixture.sample` with one seed per run.

    Returns
    -------
    x : ndarray, shape (n, dim), float32
    y : ndarray, shape (n,), int64
    """
    g = as_generator(rng)
    mix = GaussianMixture.random(
        dim=dim, k_modes=k_modes, sigma=sigma, rng=g, centre_scale=centre_scale
    )
    return mix.sample(n, g)


# ------------------------------------------------------------------------------------------
# scikit-learn digits
# ------------------------------------------------------------------------------------------
def load_digits() -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes).

    Returns a :class:`Dataset` with ``x`` of shape (1797, 1, 8, 8) float32 in [0, 1]
    (pixel values 0–16 divided by 16), ``y`` int64, no test split (use keep masks).
    """
    try:  # scikit-learn is the optional extra mis[digits]: imported only when asked for
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits needs scikit-learn (its bundled digits data set); "
            "install it, e.g. `pip install scikit-learn`"
        ) from None
    bunch = _sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return Dataset(
        x=np.ascontiguousarray(x), y=bunch.target.astype(np.int64), n_classes=10, name="digits"
    )


# ------------------------------------------------------------------------------------------
# Restricted unpickler (CIFAR python batches)
# ------------------------------------------------------------------------------------------
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "bytearray"),
        ("__builtin__", "bytearray"),
        # Python 3 writes ``bytes`` under protocol < 3 as _codecs.encode(str, "latin1"):
        # a pure data transform (codec lookup only imports from the ``encodings`` package).
        ("_codecs", "encode"),
    }
)


#: Memory a data file may make the unpickler allocate, besides its own bytes: a legitimate
#: CIFAR batch holds its data (each array costs about twice its size while it is rebuilt),
#: so allocations beyond a few times the file size mean a crafted file.
_UNPICKLE_FACTOR = 4
_UNPICKLE_SLACK = 16 * 2**20


class _RestrictedUnpickler(pickle._Unpickler):
    """Admits builtin containers (opcodes, no globals) and numpy arrays; refuses anything else.

    The memory the file makes us allocate is metered against a budget proportional to its
    size (:data:`_UNPICKLE_FACTOR` × size + 16 MiB): a call of an allowed global that would
    allocate more (``bytearray(10**12)``, an array of a huge shape, a chain of expanding
    codecs) or arrays rebuilt past the budget are refused before the allocation. The pure
    Python unpickler is used so that rebuilding an array (BUILD) can be metered.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, *, encoding: str, budget: int):
        super().__init__(file, encoding=encoding)
        self._budget = budget
        self._array_type = self._ndarray  # one bound method, recognised by _reconstruct

    def _spend(self, nbytes: int, what: str) -> None:
        self._budget -= int(nbytes)
        if self._budget < 0:
            raise pickle.UnpicklingError(
                f"refused to load: {what} would allocate more memory than a data file of this "
                "size can hold (a crafted file?)"
            )

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: only builtin containers and numpy "
                "arrays are allowed in a data file"
            )
        real = super().find_class(module, name)
        if name == "ndarray":
            return self._array_type
        if name == "bytearray":
            return self._bytearray
        if name == "encode":
            return self._encode
        if name == "_reconstruct":
            return functools.partial(self._reconstruct, real)
        return real

    def _bytearray(self, source=b"", *args):
        if isinstance(source, bool) or not isinstance(source, (int, bytes, bytearray, str)):
            raise pickle.UnpicklingError(f"refused to load: bytearray of a {type(source).__name__}")
        size = (
            source
            if isinstance(source, int)
            else len(source) * (4 if isinstance(source, str) else 1)
        )
        self._spend(max(size, 0), f"bytearray({size})")
        return bytearray(source, *args)

    def _encode(self, obj, encoding="utf-8", errors="strict"):
        # Python 3 pickles bytes under protocol < 3 as _codecs.encode(str, "latin1"): allow
        # exactly that (other codecs can expand their input, and chain)
        if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in (
            "latin1",
            "latin-1",
            "iso-8859-1",
        ):
            raise pickle.UnpicklingError(
                "refused to load: _codecs.encode is allowed only for (str, 'latin1')"
            )
        self._spend(len(obj), "a byte string")
        return codecs.encode(obj, "latin1", errors)

    def _ndarray(self, shape=(), dtype=float, *args, **kwargs):
        """``numpy.ndarray`` called by the file (legitimate files only name it, as the
        subtype of ``_reconstruct``): metered like an allocation of that shape."""

        def make(subtype, shape, dtype, *a, **k):
            return np.ndarray(shape, dtype, *a, **k)

        return self._reconstruct(make, np.ndarray, shape, dtype, *args, **kwargs)

    def _reconstruct(self, real, subtype, shape, dtype, *args, **kwargs):
        if subtype is self._array_type:
            subtype = np.ndarray
        if not (isinstance(subtype, type) and issubclass(subtype, np.ndarray)):
            raise pickle.UnpicklingError("refused to load: an array of a non-array type")
        try:
            n = math.prod(int(v) for v in (shape if isinstance(shape, tuple) else (shape,)))
            itemsize = np.dtype(dtype).itemsize
        except (TypeError, ValueError) as exc:
            raise pickle.UnpicklingError(f"refused to load: invalid array header ({exc})") from None
        self._spend(n * itemsize, f"an array of shape {shape}")
        return real(subtype, shape, dtype, *args, **kwargs)

    def load_build(self):
        inst = self.stack[-2] if len(self.stack) >= 2 else None
        pickle._Unpickler.load_build(self)
        if isinstance(inst, np.ndarray):
            self._spend(inst.nbytes, f"an array of {inst.nbytes} bytes")

    dispatch[pickle.BUILD[0]] = load_build


def _remaining_bytes(f) -> int | None:
    """Bytes left to read in a binary file object (None when it cannot tell)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return max(os.fstat(f.fileno()).st_size - f.tell(), 0)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return max(end - here, 0)
    return None


def restricted_load(file, *, encoding: str = "bytes"):
    """Unpickle ``file`` (a path or a binary file object) admitting only safe types.

    Dicts, lists, tuples, strings, bytes and numbers come from pickle opcodes and need no
    global; numpy arrays need the few numpy reconstruction functions listed in
    ``_ALLOWED_GLOBALS`` (plus ``_codecs.encode`` for ``(str, "latin1")``, which Python 3
    uses for bytes under pickle protocol 2). Any other global (``os.system``,
    ``builtins.eval``, a class…) is refused with :class:`pickle.UnpicklingError` before it
    can be called, and so is a file that would make the unpickler allocate more than a few
    times its own size (see :class:`_RestrictedUnpickler`).

    ``encoding="bytes"`` matches the official CIFAR files (pickled by Python 2): dictionary
    keys come back as ``bytes``.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return restricted_load(f, encoding=encoding)
    size = _remaining_bytes(file)
    budget = _UNPICKLE_FACTOR * (size if size is not None else 2**30) + _UNPICKLE_SLACK
    try:
        return _RestrictedUnpickler(file, encoding=encoding, budget=budget).load()
    except (pickle.UnpicklingError, MemoryError):
        raise
    except EOFError:
        raise pickle.UnpicklingError("not a complete pickle (the file is truncated)") from None
    except Exception as exc:  # malformed opcodes: the pure-Python unpickler's raw errors
        raise pickle.UnpicklingError(f"not a valid pickle ({type(exc).__name__}: {exc})") from None


def _missing(what: str, root: Path, expected: list[str]) -> FileNotFoundError:
    listing = "\n  ".join(expected)
    return FileNotFoundError(
        f"{what} not found under {root}. Expected these files (the official python-format "
        f"release, unpacked):\n  {listing}\nDownload it yourself and pass its directory as root."
    )


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise MisValueError(f"CIFAR batch has no {name!r} entry; keys are {sorted(map(str, d))}")


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = restricted_load(path)
    except pickle.UnpicklingError as exc:
        raise MisValueError(f"{path} is not a CIFAR python batch: {exc}") from None
    if not isinstance(d, dict):
        raise MisValueError(f"{path} does not hold a dict (got {type(d).__name__})")
    data = np.asarray(_key(d, "data"), dtype=np.uint8)
    labels = np.asarray(_key(d, label_key), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise MisValueError(
            f"{path}: expected data of shape (n, 3072) and n labels; "
            f"got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(root, sub: str, probe: str) -> Path:
    """``root/sub`` unless ``root`` itself holds the files (``probe`` is one of them)."""
    root = Path(root)
    return root if (root / probe).is_file() and not (root / sub).is_dir() else root / sub


def load_cifar10(root) -> Dataset:
    """CIFAR-10 from the official python batches.

    Parameters
    ----------
    root : path
        ``cifar-10-batches-py/`` itself or the directory containing it, holding
        ``data_batch_1`` … ``data_batch_5`` and ``test_batch``.

    Returns
    -------
    Dataset
        ``x`` (50000, 3, 32, 32) uint8, ``y`` int64, ``x_test``/``y_test`` (10000 images),
        10 classes, CIFAR-10 mean/std.
    """
    d = _cifar_dir(root, "cifar-10-batches-py", "test_batch")
    train = [d / f"data_batch_{i}" for i in range(1, 6)]
    expected = [*train, d / "test_batch"]
    if not all(p.is_file() for p in expected):
        raise _missing("CIFAR-10", Path(root), [str(p) for p in expected])
    parts = [_read_cifar_batch(p, "labels") for p in train]
    xt, yt = _read_cifar_batch(d / "test_batch", "labels")
    return Dataset(
        x=np.concatenate([p[0] for p in parts]),
        y=np.concatenate([p[1] for p in parts]),
        n_classes=10,
        x_test=xt,
        y_test=yt,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        name="cifar10",
    )


def load_cifar100(root, *, label: str = "fine") -> Dataset:
    """CIFAR-100 from the official python files ``train`` and ``test``.

    Parameters
    ----------
    root : path
        ``cifar-100-python/`` itself or the directory containing it.
    label : {"fine", "coarse"}
        100 fine classes (default) or 20 coarse superclasses.
    """
    if label not in ("fine", "coarse"):
        raise MisValueError(f"label must be 'fine' or 'coarse'; got {label!r}")
    d = _cifar_dir(root, "cifar-100-python", "test")
    expected = [d / "train", d / "test"]
    if not all(p.is_file() for p in expected):
        raise _missing("CIFAR-100", Path(root), [str(p) for p in expected])
    x, y = _read_cifar_batch(d / "train", f"{label}_labels")
    xt, yt = _read_cifar_batch(d / "test", f"{label}_labels")
    return Dataset(
        x=x,
        y=y,
        n_classes=100 if label == "fine" else 20,
        x_test=xt,
        y_test=yt,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        name=f"cifar100-{label}",
    )


# ------------------------------------------------------------------------------------------
# TinyImageNet
# ------------------------------------------------------------------------------------------
def _read_image(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            raise MisValueError(f"{path}: expected a {size}×{size} image; got {im.size}")
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def load_tinyimagenet(root, *, cache: bool = False, progress: bool | None = None) -> Dataset:
    """TinyImageNet-200 from the official directory layout.

    Expected under ``root`` (``tiny-imagenet-200/`` itself or its parent)::

        wnids.txt                          200 class ids, one per line (label = line order)
        train/<wnid>/images/*.JPEG         500 training images per class
        val/val_annotations.txt            "<file>\\t<wnid>\\t..." per validation image
        val/images/*.JPEG                  10,000 validation images (used as the test split)

    Images are decoded with Pillow (a dependency of matplotlib) to RGB uint8, NCHW, 64×64.
    With ``cache=True`` the decoded arrays are stored once as ``mis_cache.npz`` next to
    ``wnids.txt`` (written atomically) and read from there afterwards.
    """
    root = Path(root)
    d = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
    expected = [d / "wnids.txt", d / "train", d / "val" / "val_annotations.txt", d / "val/images"]
    if not all(p.exists() for p in expected):
        raise _missing(
            "TinyImageNet",
            root,
            [
                str(d / "wnids.txt"),
                str(d / "train/<wnid>/images/*.JPEG"),
                str(d / "val/val_annotations.txt"),
                str(d / "val/images/*.JPEG"),
            ],
        )
    cache_file = d / "mis_cache.npz"
    meta = dict(n_classes=200, mean=TINYIMAGENET_MEAN, std=TINYIMAGENET_STD, name="tinyimagenet")
    if cache and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            return Dataset(x=z["x"], y=z["y"], x_test=z["x_test"], y_test=z["y_test"], **meta)
    wnids = [w.strip() for w in (d / "wnids.txt").read_text().splitlines() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    files, labels = [], []
    for w in wnids:
        imgs = sorted((d / "train" / w / "images").glob("*.JPEG"))
        files += imgs
        labels += [index[w]] * len(imgs)
    vfiles, vlabels = [], []
    for line in (d / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            if parts[1] not in index:
                raise MisValueError(f"val_annotations.txt names unknown class {parts[1]!r}")
            vfiles.append(d / "val" / "images" / parts[0])
            vlabels.append(index[parts[1]])

    def read(paths, desc):
        out = np.empty((len(paths), 3, 64, 64), dtype=np.uint8)
        for i, p in enumerate(progress_bar(paths, desc=desc, enabled=progress)):
            out[i] = _read_image(p, 64)
        return out

    ds = Dataset(
        x=read(files, "tinyimagenet train"),
        y=np.asarray(labels, dtype=np.int64),
        x_test=read(vfiles, "tinyimagenet val"),
        y_test=np.asarray(vlabels, dtype=np.int64),
        **meta,
    )
    if cache:

        def write(f):
            buf = io.BytesIO()
            np.savez(buf, x=ds.x, y=ds.y, x_test=ds.x_test, y_test=ds.y_test)
            f.write(buf.getvalue())

        atomic_write(cache_file, write)
    return ds


# ------------------------------------------------------------------------------------------
# npz
# ------------------------------------------------------------------------------------------
def load_npz(path, *, n_classes: int | None = None) -> Dataset:
    """Any data set saved with :func:`numpy.savez`: arrays ``x`` and ``y`` (or ``X``/``Y``),
    optionally ``x_test`` and ``y_test``. Read with ``allow_pickle=False``.

    ``n_classes`` defaults to ``max(y) + 1`` over both splits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected an .npz with arrays 'x' and 'y')")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)

        def get(*names):
            for k in names:
                if k in keys:
                    return z[k]
            return None

        x, y = get("x", "X"), get("y", "Y")
        if x is None or y is None:
            raise MisValueError(f"{path} must hold arrays 'x' and 'y'; it holds {sorted(keys)}")
        xt, yt = get("x_test", "X_test"), get("y_test", "Y_test")
    try:
        return dataset_from_arrays(x, y, xt, yt, n_classes=n_classes, name=path.stem)
    except MisValueError as exc:
        raise MisValueError(f"{path}: {exc}") from None


def as_dataset(data, *, name: str = "user") -> Dataset:
    """A data set handed over in any of the forms a user may hold it, as a checked
    :class:`Dataset`.

    Parameters
    ----------
    data : Dataset, tuple or mapping
        A :class:`Dataset` (returned as is), ``(x, y)``, ``(x, y, x_test, y_test)``, or a
        mapping with keys ``x``, ``y`` and optionally ``x_test``, ``y_test``, ``n_classes``;
        the arrays as in :func:`dataset_from_arrays`.
    name : str
        The name of a data set built from arrays.
    """
    if isinstance(data, Dataset):
        return data
    n_classes = None
    if isinstance(data, Mapping):
        if data.get("x") is None or data.get("y") is None:
            raise MisValueError(f"a data mapping must hold 'x' and 'y'; it holds {sorted(data)}")
        parts = [data.get(k) for k in ("x", "y", "x_test", "y_test")]
        n_classes = data.get("n_classes")
    elif isinstance(data, tuple) and len(data) in (2, 4):
        parts = [*data, None, None][:4]
    else:
        raise MisValueError(
            "data must be a mis.train.Dataset, (x, y), (x, y, x_test, y_test) or a mapping "
            f"with those keys; got {type(data).__name__}"
        )
    return dataset_from_arrays(*parts, n_classes=n_classes, name=name)


def dataset_from_arrays(
    x, y, x_test=None, y_test=None, *, n_classes: int | None = None, name: str = ""
) -> Dataset:
    """A :class:`Dataset` of arrays you hold, checked.

    Parameters
    ----------
    x : array_like, shape (n, ...)
        Inputs (images NCHW, ``uint8`` or float32 already scaled).
    y : array_like of int, shape (n,)
        Labels in ``0 .. n_classes - 1``.
    x_test, y_test : array_like, optional
        A test split (both or neither).
    n_classes : int, optional
        Default ``max(y) + 1`` over both splits.
    name : str
    """
    x, y = np.asarray(x), np.asarray(y)
    if (
        x.ndim < 2
        or y.ndim != 1
        or y.shape[0] != x.shape[0]
        or not np.issubdtype(y.dtype, np.integer)
    ):
        raise MisValueError(
            f"y must be 1-D integer labels, one per row of x (x of shape {x.shape}); "
            f"got y of shape {y.shape}, dtype {y.dtype}"
        )
    if (x_test is None) != (y_test is None):
        raise MisValueError("give both x_test and y_test or neither")
    if x_test is not None:
        x_test, y_test = np.asarray(x_test), np.asarray(y_test)
        if x_test.shape[1:] != x.shape[1:] or y_test.shape != (x_test.shape[0],):
            raise MisValueError(
                f"x_test must have rows of x's shape {x.shape[1:]} and y_test one label per "
                f"row; got x_test {x_test.shape}, y_test {y_test.shape}"
            )
    ys = [y] + ([y_test] if y_test is not None else [])
    if n_classes is None:
        n_classes = int(max(int(v.max()) for v in ys)) + 1
    if any(int(v.min()) < 0 or int(v.max()) >= n_classes for v in ys):
        raise MisValueError(f"labels must lie in 0..{n_classes - 1}")
    return Dataset(
        x=x,
        y=y.astype(np.int64),
        n_classes=int(n_classes),
        x_test=x_test,
        y_test=None if y_test is None else y_test.astype(np.int64),
        name=name,
    )


# ------------------------------------------------------------------------------------------
# IDX files: MNIST and Fashion-MNIST
# ------------------------------------------------------------------------------------------
#: IDX type codes (third byte of the magic number) → big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: The four files of an MNIST-format release, in the order train images, train labels,
#: test images, test labels (each raw or gzipped, ``.gz``).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Where Debian's package ``dataset-fashion-mnist`` installs the files.
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
# Pixel mean / std of the training images (scaled to [0, 1]), the usual published constants.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, *, dtype=None, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzipped.

    Layout (LeCun et al.'s MNIST page): a 4-byte magic number — two zero bytes, a type code
    (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E``
    float64) and the number of dimensions — then one big-endian uint32 per dimension, then the
    values, big-endian, in C order. A gzipped file is recognised by its first two bytes, not by
    its name.

    Parameters
    ----------
    path : path-like
    dtype : numpy dtype, optional
        The element type the file must hold (e.g. ``np.uint8``); checked, not converted.
    ndim : int, optional
        The number of dimensions the file must have.

    Returns
    -------
    ndarray
        Shape as declared in the header, native byte order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    MisValueError
        A wrong magic number, type code, dimension count or element type, or a file
        shorter or longer than its header declares (truncated download); the message
        names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file {p} not found")
    raw = p.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise MisValueError(f"{p}: gzip stream is corrupt or truncated ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MisValueError(
            f"{p} is not an IDX file: its magic number must start with two zero bytes; "
            f"got {raw[:4].hex() or 'an empty file'}"
        )
    code, nd = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise MisValueError(
            f"{p}: unknown IDX type code 0x{code:02x} (expected one of "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})"
        )
    if nd < 1:
        raise MisValueError(f"{p}: an IDX file must have at least one dimension; got {nd}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise MisValueError(f"{p} is truncated: {len(raw)} bytes, shorter than its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=nd, offset=4))
    dt = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header declares"
        raise MisValueError(
            f"{p} is {what}: the header declares shape {shape} of {dt.name} "
            f"({expected} bytes with the header); the file has {len(raw)} bytes"
        )
    if ndim is not None and nd != ndim:
        raise MisValueError(f"{p}: expected {ndim} dimension(s); the file has shape {shape}")
    if dtype is not None and dt.newbyteorder("=") != np.dtype(dtype):
        raise MisValueError(f"{p}: expected {np.dtype(dtype).name} values; got {dt.name}")
    arr = np.frombuffer(raw, dt, offset=header).reshape(shape)
    return arr.astype(dt.newbyteorder("="))  # native order, writable copy


def _idx_file(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (root / name).is_file():
            return root / name
    return None


def _load_idx_set(root, name: str, hint: str, mean, std, n_classes: int = 10) -> Dataset:
    """The four IDX files of an MNIST-format release under ``root`` as a :class:`Dataset`."""
    root = Path(root).expanduser()
    files = [_idx_file(root, stem) for stem in IDX_FILES]
    if any(f is None for f in files):
        missing = [s + "[.gz]" for s, f in zip(IDX_FILES, files, strict=True) if f is None]
        raise FileNotFoundError(
            f"{name} not found under {root}: missing {', '.join(missing)}. {hint}"
        )
    xs, ys = [], []
    for img, lab in ((files[0], files[1]), (files[2], files[3])):
        x = read_idx(img, dtype=np.uint8, ndim=3)
        y = read_idx(lab, dtype=np.uint8, ndim=1)
        if x.shape[0] != y.shape[0]:
            raise MisValueError(
                f"{img} holds {x.shape[0]} images but {lab} holds {y.shape[0]} labels"
            )
        if y.size and int(y.max()) >= n_classes:
            raise MisValueError(f"{lab}: labels must lie in 0..{n_classes - 1}; got {int(y.max())}")
        xs.append(np.ascontiguousarray(x[:, None]))
        ys.append(y.astype(np.int64))
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise MisValueError(
            f"{files[0]} and {files[2]} hold images of different sizes: "
            f"{xs[0].shape[2:]} and {xs[1].shape[2:]}"
        )
    return Dataset(
        x=xs[0], y=ys[0], n_classes=n_classes, x_test=xs[1], y_test=ys[1],
        mean=mean, std=std, name=name.lower().replace("-", "_"),
    )  # fmt: skip


def load_fashion_mnist(root=None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017) from its four IDX files, raw or gzipped.

    Parameters
    ----------
    root : path, optional
        The directory holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``; default
        ``/usr/share/datasets/fashion-mnist``, where Debian's package ``dataset-fashion-mnist``
        puts them (no download at run time).

    Returns
    -------
    Dataset
        ``x`` (60000, 1, 28, 28) uint8, ``y`` int64 in 0..9, ``x_test``/``y_test`` (10000
        images), 10 classes, mean 0.2860 and std 0.3530 (of the training pixels in [0, 1]).

    Raises
    ------
    FileNotFoundError
        A file is missing: the message says which and what to install.
    MisValueError
        A file is not a valid IDX file of the expected type (see :func:`read_idx`).

    References
    ----------
    H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a novel image dataset for benchmarking
    machine learning algorithms. arXiv:1708.07747, 2017.
    """
    hint = (
        "Install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
        f"which puts the four files under {FASHION_MNIST_ROOT}, or pass the directory that "
        "holds them as root."
    )
    return _load_idx_set(
        FASHION_MNIST_ROOT if root is None else root,
        "Fashion-MNIST",
        hint,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
    )


def load_mnist(root) -> Dataset:
    """MNIST (LeCun et al. 1998) from its four IDX files, raw or gzipped.

    Parameters
    ----------
    root : path
        The directory holding ``train-images-idx3-ubyte[.gz]`` and the three other files
        (the names of the original release).

    Returns
    -------
    Dataset
        ``x`` (60000, 1, 28, 28) uint8, ``y`` int64, ``x_test``/``y_test`` (10000 images),
        10 classes, mean 0.1307 and std 0.3081.
    """
    hint = "Download the four files of the original release and pass their directory as root."
    return _load_idx_set(root, "MNIST", hint, MNIST_MEAN, MNIST_STD)


def load_idx(root) -> Dataset:
    """Any data set in the IDX layout of the MNIST release (KMNIST, EMNIST, your own, ...).

    Parameters
    ----------
    root : path
        The directory holding ``train-images-idx3-ubyte[.gz]``,
        ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
        ``t10k-labels-idx1-ubyte[.gz]``.

    Returns
    -------
    Dataset
        ``x`` (n, 1, H, W) uint8, ``y`` int64 with ``n_classes = max(label) + 1``, and the
        test split; no normalisation constants (the pixels are scaled to [0, 1]).
    """
    hint = "Name the directory of the four IDX files (the file names of MNIST)."
    ds = _load_idx_set(Path(root).expanduser(), "IDX", hint, None, None, n_classes=256)
    n_classes = int(max(int(ds.y.max()), int(ds.y_test.max()))) + 1
    return dataclasses.replace(ds, n_classes=n_classes, name=Path(root).name or "idx")


# ------------------------------------------------------------------------------------------
# Augmentations (pure tensor ops on NCHW batches)
# ------------------------------------------------------------------------------------------
def hflip(x):
    """Mirror a batch ``(N, C, H, W)`` left–right."""
    return x.flip(-1)


def shift(x, dy: int, dx: int, *, mode: str = "reflect"):
    """Translate a batch ``(N, C, H, W)`` by ``(dy, dx)`` pixels (content moves down/right).

    The vacated border is filled by padding the image (``mode``: ``"reflect"`` as in the LiRA
    reference's queries, or ``"constant"`` for zeros) and cropping back to ``H × W``.
    """
    if dy == 0 and dx == 0:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    xp = F.pad(x, (p, p, p, p), mode=mode)
    return xp[..., p - dy : p - dy + h, p - dx : p - dx + w]


def augmentation_queries(n_aug: int = 2, *, max_shift: int = 4) -> list[tuple[str, Callable]]:
    """The test-time queries of LiRA (Carlini et al. 2022, §VI).

    ``n_aug = 1``: the image; ``2``: image and its mirror; ``18``: {image, mirror} ×
    shifts (dy, dx) ∈ {-s, 0, s}² with ``s = max_shift`` (reflect padding).

    Returns
    -------
    list of (name, callable)
        Each callable maps an NCHW batch to the augmented batch; the first is the identity.
    """
    if n_aug not in (1, 2, 18):
        raise MisValueError(f"n_aug must be 1, 2 or 18; got {n_aug!r}")
    ident = [("id", lambda x: x)]
    if n_aug == 1:
        return ident
    if n_aug == 2:
        return [*ident, ("flip", hflip)]
    s = positive_int(max_shift, "max_shift")
    out = []
    for flip in (False, True):
        for dy in (-s, 0, s):
            for dx in (-s, 0, s):
                out.append(_query(flip, dy, dx))
    out.sort(key=lambda q: q[0] != "id")  # identity first
    return out


def _query(flip: bool, dy: int, dx: int):
    name = ("flip" if flip else "") + (f"_shift{dy:+d}{dx:+d}" if (dy or dx) else "")
    name = name.lstrip("_") or "id"

    def q(x):
        x = hflip(x) if flip else x
        return shift(x, dy, dx)

    return name, q


def random_flip_crop(x, flip, offsets, padding: int = 4):
    """Apply per-image flips and crops (the standard CIFAR training augmentation).

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W)
    flip : bool Tensor, shape (N,)
        Mirror image i when true.
    offsets : int Tensor, shape (N, 2)
        Top-left corner ``(oy, ox)`` in ``0 .. 2·padding`` of the crop taken from the
        zero-padded image; ``(padding, padding)`` is the identity.
    padding : int
        Zero padding on every side (torchvision's ``RandomCrop(32, padding=4)``).

    Returns
    -------
    Tensor, shape (N, C, H, W)
    """
    n, c, h, w = x.shape
    x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(-1), x)
    if padding == 0:
        return x
    xp = F.pad(x, (padding, padding, padding, padding))
    offsets = offsets.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (N, W)
    bi = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return xp[bi, ci, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
