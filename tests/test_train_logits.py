"""Logit extraction under augmentation queries."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mis.exceptions import MisValueError
from mis.store import RunStore
from mis.train.config import TrainConfig
from mis.train.data import hflip
from mis.train.ensemble import train_ensemble
from mis.train.logits import extract_logits
from mis.train.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CNN = functools.partial(build_model, "digits_cnn", width=4, n_classes=3)


def test_logits_shape_values_and_store(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (30,), generator=g)
    ens = train_ensemble(CNN, x, y, TrainConfig(epochs=2, batch_size=None, lr=0.1), [0, 1, 2])
    store = RunStore(tmp_path / "run")
    out = extract_logits(ens, x, queries=2, batch_size=7, store=store, arch="cnn")
    assert out.shape == (3, 30, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(store.load("logits"), out)
    assert store.meta("logits")["n_aug"] == 2
    mods = [ens.model(k) for k in range(3)]
    by_module = extract_logits(mods, x, queries=[lambda t: t, hflip], batch_size=11, device="cpu")
    np.testing.assert_allclose(by_module, out, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        direct = mods[1](x.flip(-1)).numpy()
    np.testing.assert_allclose(out[1, :, 1], direct, rtol=1e-5, atol=1e-6)
    eighteen = extract_logits(mods[0], x, queries=18, device="cpu")
    assert eighteen.shape == (1, 30, 18, 3)
    np.testing.assert_allclose(eighteen[0, :, 0], out[0, :, 0], rtol=1e-5, atol=1e-6)


def test_logits_bad_inputs():
    m = CNN()
    with pytest.raises(MisValueError, match="float"):
        extract_logits(m, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(MisValueError, match="queries"):
        extract_logits(m, torch.zeros(2, 1, 8, 8), queries=[])
