"""The IDX reader and the (Fashion-)MNIST loaders of mis.train.data, on files the tests write.

CI does not need the Debian package ``dataset-fashion-mnist``: every file here is written by
:func:`write_idx`, an independent writer of the format (``struct``, not numpy's byte-order
machinery). One test reads the installed package when it is there.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mis.exceptions import MisValueError
from mis.train import Dataset, load_fashion_mnist, load_mnist, read_idx
from mis.train.data import FASHION_MNIST_ROOT, IDX_FILES

_CODES = {"u1": (0x08, "B"), "i1": (0x09, "b"), "i2": (0x0B, "h"), "i4": (0x0C, "i"),
          "f4": (0x0D, "f"), "f8": (0x0E, "d")}  # fmt: skip


def write_idx(path, arr, *, gz=False, magic=None, truncate=0, extra=b""):
    """Write ``arr`` as an IDX file element by element with ``struct`` (big-endian)."""
    arr = np.asarray(arr)
    code, fmt = _CODES[arr.dtype.str[1:]]
    head = magic if magic is not None else bytes([0, 0, code, arr.ndim])
    head += b"".join(struct.pack(">I", d) for d in arr.shape)
    body = b"".join(struct.pack(">" + fmt, v.item()) for v in arr.ravel())
    raw = (head + body)[: len(head + body) - truncate] + extra
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_release(root, n=12, n_test=5, size=6, gz=True, seed=0):
    """Four small MNIST-format files under ``root``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    xt = rng.integers(0, 256, (n_test, size, size), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for stem, a in zip(IDX_FILES, (x, y, xt, yt), strict=True):
        write_idx(root / (stem + (".gz" if gz else "")), a, gz=gz)
    return x, y, xt, yt


# ------------------------------------------------------------------------------------------
# read_idx
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(3, 4, 2)) * 50).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", a, gz=gz))
    np.testing.assert_array_equal(out, a)
    assert out.shape == (3, 4, 2) and out.dtype == a.dtype.newbyteorder("=")
    assert out.dtype.isnative and out.flags.writeable


def test_read_idx_recognises_gzip_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", a)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "packed", a, gz=True)), a)


def test_read_idx_checks_dtype_and_ndim(tmp_path):
    p = write_idx(tmp_path / "a", np.zeros((2, 3), dtype=">i4"))
    with pytest.raises(MisValueError, match=r"expected uint8 values; got >?int32"):
        read_idx(p, dtype=np.uint8)
    with pytest.raises(MisValueError, match=r"expected 3 dimension\(s\).*\(2, 3\)"):
        read_idx(p, ndim=3)
    assert read_idx(p, dtype=np.int32, ndim=2).shape == (2, 3)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file(tmp_path, gz):
    p = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 5, 5), np.uint8), gz=gz,
                  truncate=7)  # fmt: skip
    with pytest.raises(MisValueError, match=r"train-images-idx3-ubyte is truncated.*\(4, 5, 5\)"):
        read_idx(p)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    p = write_idx(tmp_path / "x.gz", np.zeros((40, 5), np.uint8), gz=True)
    p.write_bytes(p.read_bytes()[:-12])  # cut inside the gzip trailer / stream
    with pytest.raises(MisValueError, match=r"x\.gz: gzip stream is corrupt or truncated"):
        read_idx(p)


def test_header_shorter_than_declared_dims(tmp_path):
    p = tmp_path / "h"
    p.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2))
    with pytest.raises(MisValueError, match=r"h is truncated.*shorter than its header"):
        read_idx(p)


def test_trailing_bytes_are_refused(tmp_path):
    p = write_idx(tmp_path / "t", np.zeros(6, np.uint8), extra=b"\x00\x01")
    with pytest.raises(MisValueError, match="longer than its header declares"):
        read_idx(p)


@pytest.mark.parametrize(
    "magic, match",
    [
        (bytes([1, 0, 0x08, 1]), "is not an IDX file.*two zero bytes.*01000801"),
        (bytes([0, 0, 0x0A, 1]), r"unknown IDX type code 0x0a"),
        (bytes([0, 0, 0x08, 0]), "at least one dimension"),
        (b"", "an empty file"),
    ],
)
def test_wrong_magic_is_refused(tmp_path, magic, match):
    p = tmp_path / "bad-magic"
    if magic:
        write_idx(p, np.zeros(3, np.uint8), magic=magic)
    else:
        p.write_bytes(b"")
    with pytest.raises(MisValueError, match=match) as e:
        read_idx(p)
    assert "bad-magic" in str(e.value)


def test_a_cifar_pickle_is_not_mistaken_for_idx(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(b"\x80\x02}q\x00")  # the start of a pickle
    with pytest.raises(MisValueError, match="data_batch_1 is not an IDX file"):
        read_idx(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_idx(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------
# the loaders
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_written_files(tmp_path, gz):
    x, y, xt, yt = fake_release(tmp_path, gz=gz)
    ds = load_fashion_mnist(tmp_path)
    assert isinstance(ds, Dataset) and ds.name == "fashion_mnist" and ds.n_classes == 10
    assert ds.x.shape == (12, 1, 6, 6) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.x[:, 0], x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x_test[:, 0], xt)
    np.testing.assert_array_equal(ds.y_test, yt)
    t = ds.tensor()  # normalised with the Fashion-MNIST constants
    expect = (x[0].astype(np.float32) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(t[0, 0].numpy(), expect, rtol=1e-6, atol=1e-6)


def test_load_mnist_mixed_raw_and_gzipped(tmp_path):
    _, _, xt, _ = fake_release(tmp_path, gz=False, seed=3)
    raw = tmp_path / IDX_FILES[2]
    (tmp_path / (IDX_FILES[2] + ".gz")).write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()
    ds = load_mnist(tmp_path)
    assert ds.name == "mnist" and ds.mean == (0.1307,)
    np.testing.assert_array_equal(ds.x_test[:, 0], xt)


def test_missing_release_says_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_fashion_mnist(tmp_path / "nowhere")
    msg = str(e.value)
    assert "Fashion-MNIST not found" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte[.gz]" in msg and "root" in msg
    fake_release(tmp_path / "part")
    (tmp_path / "part" / (IDX_FILES[3] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[.gz\]\."):
        load_mnist(tmp_path / "part")


def test_inconsistent_release_is_refused(tmp_path):
    fake_release(tmp_path)
    write_idx(tmp_path / (IDX_FILES[1] + ".gz"), np.zeros(11, np.uint8), gz=True)
    with pytest.raises(MisValueError, match=r"holds 12 images but .*train-labels.* 11 labels"):
        load_fashion_mnist(tmp_path)
    fake_release(tmp_path)
    write_idx(tmp_path / (IDX_FILES[3] + ".gz"), np.full(5, 10, np.uint8), gz=True)
    with pytest.raises(MisValueError, match=r"labels must lie in 0\.\.9; got 10"):
        load_fashion_mnist(tmp_path)
    fake_release(tmp_path)
    write_idx(tmp_path / (IDX_FILES[0] + ".gz"), np.zeros((12, 6, 6), ">i4"), gz=True)
    with pytest.raises(MisValueError, match="expected uint8"):
        load_fashion_mnist(tmp_path)
    fake_release(tmp_path)
    write_idx(tmp_path / (IDX_FILES[2] + ".gz"), np.zeros((5, 7, 7), np.uint8), gz=True)
    with pytest.raises(MisValueError, match="different sizes"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(
    not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_installed_fashion_mnist():
    ds = load_fashion_mnist()
    assert ds.x.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert (np.bincount(ds.y) == 6000).all() and (np.bincount(ds.y_test) == 1000).all()
    assert abs(ds.x.mean() / 255 - 0.2860) < 1e-3
