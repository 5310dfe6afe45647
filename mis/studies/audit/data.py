"""Data of the audit: the audit pool and its test split, and the keep masks of all models."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from mis._callables import resolve_callable
from mis.exceptions import MisValueError
from mis.studies._common import derive_seed
from mis.studies.audit.config import Config
from mis.studies.audit.seeds import KEEP, SPLIT, SYNTH
from mis.train import data as D
from mis.train.masks import keep_masks

__all__ = ["keep_matrix", "load_data"]

_ROOT_LAYOUT = {
    "idx": "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (the layout of MNIST)",
    "mnist": "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (the original release)",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5, test_batch} (the official python version)",
    "cifar100": "cifar-100-python/{train, test} (the official python version)",
    "tinyimagenet": "tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, "
    "val/val_annotations.txt, val/images/*.JPEG}",
}


def _synthetic(cfg: Config) -> D.Dataset:
    """Class-prototype images: x = prototype[y] + noise · N(0, 1), float32 (no download)."""
    d = cfg.data
    g = np.random.default_rng(derive_seed(cfg.study.seed, SYNTH))
    protos = g.standard_normal((d.synthetic_classes, *d.synthetic_shape)).astype(np.float32)

    def draw(n):
        y = g.integers(0, d.synthetic_classes, size=n)
        noise = g.standard_normal((n, *d.synthetic_shape)).astype(np.float32)
        return protos[y] + np.float32(d.synthetic_noise) * noise, y.astype(np.int64)

    x, y = draw(d.synthetic_n)
    xt, yt = draw(d.synthetic_n_test)
    return D.Dataset(
        x=x, y=y, n_classes=d.synthetic_classes, x_test=xt, y_test=yt, name="synthetic"
    )


def _from_loader(spec: str) -> D.Dataset:
    """The data set that the user's ``data.loader`` returns (see ``[data]`` in the config)."""
    out = resolve_callable(spec, "data.loader")()
    try:
        return D.as_dataset(out)
    except MisValueError as exc:
        raise MisValueError(f"data.loader = {spec!r} returned bad data: {exc}") from None


def _open_dataset(cfg: Config) -> D.Dataset:
    d = cfg.data
    if d.source == "digits":
        return D.load_digits()
    if d.source == "synthetic":
        return _synthetic(cfg)
    if d.source == "callable":
        return _from_loader(d.loader)
    if d.source == "npz":
        if not d.path:
            raise MisValueError("data.path must name the .npz file (data.source = 'npz')")
        return D.load_npz(d.path)
    if d.source == "fashion_mnist":
        try:
            return D.load_fashion_mnist(Path(d.root).expanduser() if d.root else None)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{exc} (data.root = {d.root!r}: set data.root in the config or pass "
                "--data-root DIR)"
            ) from None
    loader = {
        "mnist": D.load_mnist,
        "idx": D.load_idx,
        "cifar10": D.load_cifar10,
        "cifar100": D.load_cifar100,
    }.get(d.source)
    if d.source == "tinyimagenet":
        loader = functools.partial(D.load_tinyimagenet, cache=True)
    if not d.root:
        raise FileNotFoundError(
            f"data.root is not set: the {d.source} audit reads a local copy of the data set. "
            f'Expected under DIR: {_ROOT_LAYOUT[d.source]}. Set data.root = "DIR" in the config '
            "or pass --data-root DIR."
        )
    root = Path(d.root).expanduser()
    try:
        return loader(root)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"data directory for data.source = {d.source!r} is missing or incomplete "
            f"(data.root = {d.root!r}, i.e. {root.resolve()}). {exc}"
        ) from None


@functools.lru_cache(maxsize=1)
def _cached_data(key: str) -> D.Dataset:
    cfg = Config.from_dict(json.loads(key))
    return _build_data(cfg)


def _build_data(cfg: Config) -> D.Dataset:
    """The audit pool (training split) and test split as one :class:`~mis.train.Dataset`."""
    ds = _open_dataset(cfg)
    d = cfg.data
    x, y, xt, yt = ds.x, ds.y, ds.x_test, ds.y_test
    if xt is None:
        if d.test_size < 1 or d.test_size >= len(x) - 1:
            raise MisValueError(
                f"data set {d.source!r} has no test split: set data.test_size to the number of "
                f"examples to hold out (1 .. {len(x) - 2}); got {d.test_size}"
            )
        perm = np.random.default_rng(derive_seed(cfg.study.seed, SPLIT)).permutation(len(x))
        test, pool = np.sort(perm[: d.test_size]), np.sort(perm[d.test_size :])
        x, y, xt, yt = x[pool], y[pool], x[test], y[test]
    if d.n_examples:
        if d.n_examples > len(x):
            raise MisValueError(
                f"data.n_examples must be <= the pool size {len(x)}; got {d.n_examples}"
            )
        x, y = x[: d.n_examples], y[: d.n_examples]
    if d.n_test:
        xt, yt = xt[: d.n_test], yt[: d.n_test]
    return dataclasses.replace(
        ds,
        x=np.ascontiguousarray(x),
        y=np.ascontiguousarray(y),
        x_test=np.ascontiguousarray(xt),
        y_test=np.ascontiguousarray(yt),
    )


def load_data(cfg: Config) -> D.Dataset:
    """The data of an audit: ``Dataset`` with the pool as ``x, y`` and the test split.

    Cached (one data set per process), so the jobs of one audit read the files once.
    """
    plain = cfg.as_dict()
    return _cached_data(json.dumps({"study": plain["study"], "data": plain["data"]}))


def keep_matrix(cfg: Config, n_examples: int) -> np.ndarray:
    """Keep masks of all models, shape (shadows + targets, n_examples)."""
    return keep_masks(
        cfg.study.n_models, n_examples, cfg.study.pkeep, rng=derive_seed(cfg.study.seed, KEEP)
    )
