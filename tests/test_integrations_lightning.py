"""RQCallback on a real Lightning Trainer (mis[lightning])."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from mis.store import RunStore
from mis.train import RQRecorder, load_rq_runs

pl = pytest.importorskip("lightning.pytorch")
from mis.integrations.lightning import RQCallback  # noqa: E402  (needs lightning)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),
]


class TinyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(seed, n=128, batch=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def _trainer(cb, epochs=4):
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    return pl.Trainer(
        max_epochs=epochs, callbacks=[cb], accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True,
    )  # fmt: skip


def test_callback_records_every_epoch_like_the_recorder_in_a_plain_loop(tmp_path):
    xv, yv = next(iter(_loader(1, n=60, batch=60)))
    cb = RQCallback(["sign", "4bit"], xv, yv, store=tmp_path / "rq", run=3)
    module = TinyModule()
    _trainer(cb).fit(module, _loader(0))
    assert cb.recorder.n_checkpoints == 4
    # the same training by hand, recording after each epoch, gives the same r_Q
    by_hand = TinyModule()
    opt = by_hand.configure_optimizers()
    rec = RQRecorder(["sign", "4bit"], xv, yv)
    for _ in range(4):
        for x, y in _loader(0):
            opt.zero_grad()
            by_hand.training_step((x, y), 0).backward()
            opt.step()
        rec.record(by_hand)
    np.testing.assert_allclose(
        cb.recorder.arrays()["val_losses"], rec.arrays()["val_losses"], rtol=1e-5, atol=1e-6
    )
    assert cb.rq()["4bit"] == pytest.approx(rec.rq()["4bit"], rel=1e-4)
    rq, names = load_rq_runs(RunStore(tmp_path / "rq", create=False))
    assert names == ["sign", "4bit"] and rq.shape == (1, 2)


def test_callback_on_validation_skips_the_sanity_check():
    xv, yv = next(iter(_loader(1, n=60, batch=60)))
    cb = RQCallback(["ternary-50"], xv, yv, on="validation_epoch_end")
    _trainer(cb, epochs=3).fit(TinyModule(), _loader(0), _loader(2, n=32))
    assert cb.recorder.n_checkpoints == 3  # not the sanity-check validation
    with pytest.raises(ValueError, match="on must be one of"):
        RQCallback(["sign"], xv, yv, on="batch")
