"""Data sets, the restricted unpickler and the augmentations of mis.train.data."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mis.exceptions import MisValueError
from mis.train import data
from tests import naive

# ---------------------------------------------------------------------------------------------
# Gaussian mixture
# ---------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gaussian_mixture_same_seed_same_data_and_shapes():
    x1, y1 = data.gaussian_mixture(50, dim=16, k_modes=6, sigma=1.5, rng=3)
    x2, y2 = data.gaussian_mixture(50, dim=16, k_modes=6, sigma=1.5, rng=3)
    assert x1.shape == (50, 16) and x1.dtype == np.float32 and y1.dtype == np.int64
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = data.gaussian_mixture(50, dim=16, k_modes=6, sigma=1.5, rng=4)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("k", [2, 6, 7, 16])
def test_mixture_labels_balanced_and_fixed_per_seed(k):
    m1 = data.GaussianMixture.random(dim=8, k_modes=k, sigma=2.0, rng=11)
    m2 = data.GaussianMixture.random(dim=8, k_modes=k, sigma=2.0, rng=11)
    np.testing.assert_array_equal(m1.centres, m2.centres)
    np.testing.assert_array_equal(m1.labels, m2.labels)
    assert sorted(np.bincount(m1.labels, minlength=2)) == sorted([k // 2, k - k // 2])


def test_mixture_fresh_samples_come_from_the_same_mixture():
    mix = data.GaussianMixture.random(dim=32, k_modes=4, sigma=0.1, rng=0)
    xa, ya = mix.sample(400, 1)
    xb, yb = mix.sample(400, 2)
    assert not np.array_equal(xa, xb)
    for x, y in ((xa, ya), (xb, yb)):
        # with tiny sigma each point sits next to one centre, whose label it carries
        d = ((x[:, None, :] - mix.centres[None]) ** 2).sum(-1)
        nearest = d.argmin(1)
        np.testing.assert_array_equal(mix.labels[nearest], y)
        resid = x - mix.centres[nearest]
        assert abs(resid.std() - 0.1) < 0.01


def test_mixture_bad_inputs():
    with pytest.raises(MisValueError, match="sigma"):
        data.GaussianMixture.random(dim=4, k_modes=3, sigma=0.0, rng=0)
    with pytest.raises(MisValueError, match="k_modes"):
        data.GaussianMixture.random(dim=4, k_modes=1, sigma=1.0, rng=0)


# ---------------------------------------------------------------------------------------------
# CIFAR in the official python format, restricted unpickler
# ---------------------------------------------------------------------------------------------


def _write_batch(path, n, rng, label_key=b"labels", n_classes=10):
    d = {
        b"batch_label": b"testing batch",
        b"labels" if label_key == b"labels" else label_key: rng.integers(0, n_classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key != b"labels":
        d[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def test_load_cifar10_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_write_batch(root / f"data_batch_{i}", 4, rng) for i in range(1, 6)]
    test = _write_batch(root / "test_batch", 3, rng)
    for where in (tmp_path, root):  # the parent or the directory itself
        ds = data.load_cifar10(where)
        assert ds.x.shape == (20, 3, 32, 32) and ds.x.dtype == np.uint8
        assert ds.x_test.shape == (3, 3, 32, 32) and ds.n_classes == 10
        np.testing.assert_array_equal(ds.y, np.concatenate([b[b"labels"] for b in batches]))
        # row-major 3072 = 3 channels × 32 × 32 (R plane, then G, then B)
        np.testing.assert_array_equal(ds.x[5, 1].ravel(), batches[1][b"data"][1, 1024:2048])
        np.testing.assert_array_equal(ds.y_test, test[b"labels"])
    t = ds.tensor(ds.x[:2])
    assert t.dtype == torch.float32 and t.shape == (2, 3, 32, 32)
    expected = (ds.x[0, 2] / 255.0 - data.CIFAR10_MEAN[2]) / data.CIFAR10_STD[2]
    np.testing.assert_allclose(t[0, 2].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_load_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    tr = _write_batch(root / "train", 6, rng, label_key=b"fine_labels", n_classes=100)
    _write_batch(root / "test", 2, rng, label_key=b"fine_labels", n_classes=100)
    fine = data.load_cifar100(tmp_path)
    coarse = data.load_cifar100(tmp_path, label="coarse")
    assert fine.n_classes == 100 and coarse.n_classes == 20
    np.testing.assert_array_equal(fine.y, tr[b"fine_labels"])
    np.testing.assert_array_equal(coarse.y, tr[b"coarse_labels"])


def test_cifar_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        data.load_cifar100(tmp_path / "nowhere")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Evil2:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize("payload", [_Evil(), _Evil2(), {b"data": _Evil()}])
def test_restricted_unpickler_refuses_calls(tmp_path, payload, monkeypatch):
    blob = pickle.dumps(payload, protocol=2)
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        data.restricted_load(__import__("io").BytesIO(blob))
    assert not called
    # and the same file placed as a CIFAR batch is refused by the loader
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(blob)
    with pytest.raises(MisValueError, match="not a CIFAR python batch: refused"):
        data.load_cifar10(tmp_path)
    assert not called


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_and_containers(protocol):
    obj = {
        "a": np.arange(12, dtype=np.int16).reshape(3, 4),
        "b": [1, 2.5, "x", b"y", (None, True)],
        "c": np.float32(3.5),
        "d": np.zeros((2, 2), dtype=np.float64)[:, ::-1],
    }
    out = data.restricted_load(
        __import__("io").BytesIO(pickle.dumps(obj, protocol=protocol)), encoding="ASCII"
    )
    np.testing.assert_array_equal(out["a"], obj["a"])
    assert out["b"] == obj["b"] and out["c"] == obj["c"]
    np.testing.assert_array_equal(out["d"], obj["d"])


# ---------------------------------------------------------------------------------------------
# TinyImageNet, npz, digits
# ---------------------------------------------------------------------------------------------


def test_load_tinyimagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    lines = []
    for i, w in enumerate([wnids[1], wnids[0]]):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(
            root / "val" / "images" / f"val_{i}.JPEG", format="JPEG"
        )
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = data.load_tinyimagenet(tmp_path, cache=True, progress=False)
    assert ds.x.shape == (6, 3, 64, 64) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.y_test, [1, 0])
    assert ds.n_classes == 200
    assert (root / "mis_cache.npz").is_file()
    again = data.load_tinyimagenet(root, cache=True)
    np.testing.assert_array_equal(again.x, ds.x)
    with pytest.raises(FileNotFoundError, match=r"wnids\.txt"):
        data.load_tinyimagenet(tmp_path / "empty")


def test_load_npz(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    y = np.arange(10) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:2], y_test=y[:2])
    ds = data.load_npz(tmp_path / "d.npz")
    assert ds.n_classes == 4 and ds.x_test.shape == (2, 3)
    np.testing.assert_array_equal(ds.x, x)
    np.savez(tmp_path / "bad.npz", x=x, y=y[:3])
    with pytest.raises(MisValueError, match="one per row"):
        data.load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="'x' and 'y'"):
        data.load_npz(tmp_path / "missing.npz")


def test_load_digits():
    ds = data.load_digits()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.n_classes == 10
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert set(np.unique(ds.y)) == set(range(10))


# ---------------------------------------------------------------------------------------------
# Augmentations
# ---------------------------------------------------------------------------------------------


@given(
    st.integers(1, 3),
    st.integers(4, 9),
    st.integers(-3, 3),
    st.integers(-3, 3),
    st.sampled_from(["reflect", "constant"]),
)
def test_shift_matches_naive(c, size, dy, dx, mode):
    x = torch.randn(2, c, size, size + 1, generator=torch.Generator().manual_seed(size))
    got = data.shift(x, dy, dx, mode=mode).numpy()
    want = naive.shift_image(x.numpy(), dy, dx, mode)
    np.testing.assert_array_equal(got, want)


@given(st.integers(1, 6), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_random_flip_crop_matches_naive(n, padding, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 6, 5, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    off = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    got = data.random_flip_crop(x, flip, off, padding).numpy()
    want = naive.flip_crop(x.numpy(), flip.numpy(), off.numpy(), padding)
    np.testing.assert_array_equal(got, want)


def test_flip_crop_identity_offsets():
    x = torch.randn(3, 3, 8, 8)
    same = data.random_flip_crop(x, torch.zeros(3, dtype=torch.bool), torch.full((3, 2), 4), 4)
    assert torch.equal(same, x)


@pytest.mark.parametrize("n_aug", [1, 2, 18])
def test_augmentation_queries(n_aug):
    qs = data.augmentation_queries(n_aug)
    assert len(qs) == n_aug and qs[0][0] == "id"
    assert len({name for name, _ in qs}) == n_aug
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(qs[0][1](x), x)
    outs = [q(x) for _, q in qs]
    assert all(o.shape == x.shape for o in outs)
    if n_aug == 2:
        assert torch.equal(outs[1], x.flip(-1))
    with pytest.raises(MisValueError, match="n_aug"):
        data.augmentation_queries(3)
