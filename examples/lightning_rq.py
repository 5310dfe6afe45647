"""r_Q from a PyTorch Lightning training run: one callback, no change to your module.

RQCallback records a checkpoint of mis.RQRecorder at the end of every training epoch (or
every validation loop: on="validation_epoch_end") and saves the run into a run store, so
that runs of several seeds accumulate. Needs Lightning (pip install -e ".[lightning]").

    python examples/lightning_rq.py --out lightning-example    # about a minute on a CPU
"""

import argparse
import logging
import warnings

import lightning.pytorch as pl
import torch
from torch import nn

from mis.integrations.lightning import RQCallback
from mis.security import rank_quantizers
from mis.train import load_rq_runs, saved_runs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="lightning-example")
parser.add_argument("--tiny", action="store_true", help="3 runs of 2 epochs (a smoke test)")
args = parser.parse_args()
runs, epochs = (3, 2) if args.tiny else (10, 20)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13


class Classifier(pl.LightningModule):  # your LightningModule, unchanged
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def draw(n, gen):  # your data: a two-class Gaussian mixture
    y = torch.randint(0, 2, (n,), generator=gen)
    return torch.randn(n, 20, generator=gen) + 0.5 * (2 * y[:, None] - 1), y


x_val, y_val = draw(1000, torch.Generator().manual_seed(0))
store = f"{args.out}/store"
for run in sorted(set(range(runs)) - set(saved_runs(store))):
    pl.seed_everything(run, verbose=False)
    x, y = draw(200, torch.Generator().manual_seed(1 + run))
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    rq = RQCallback(["sign", "ternary-50", "4bit"], x_val, y_val, store=store, run=run)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[rq], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(Classifier(), train)
    print(f"run {run}: r_Q", {k: f"{v:.3g}" for k, v in rq.rq().items()})

ranking = rank_quantizers(*load_rq_runs(store))
print("most private first:", ranking.ranked_names(), "tie groups:", ranking.tie_groups)
