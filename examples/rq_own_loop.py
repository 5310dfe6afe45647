"""Your model, your training loop: r_Q for three quantizers, ranked with significance.

r_Q (Aubinais et al. 2025, Algorithm 1) is a privacy indicator of a quantizer computed from
the validation losses of the quantized checkpoints along training: larger = more private.
Each run trains a fresh model; RQRecorder records one checkpoint per epoch.

    python examples/rq_own_loop.py --out rq-example      # 20 runs, about a minute on a CPU
"""

import argparse

import torch
from torch import nn

from mis import RQRecorder
from mis.report.plots import plot_ranking, save_figure
from mis.security import rank_quantizers
from mis.train import load_rq_runs, saved_runs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="rq-example")
parser.add_argument("--tiny", action="store_true", help="4 runs of 3 epochs (a smoke test)")
args = parser.parse_args()
runs, epochs = (4, 3) if args.tiny else (20, 30)


def draw(n, gen):  # your data: here a two-class Gaussian mixture in 20 dimensions
    y = torch.randint(0, 2, (n,), generator=gen)
    return torch.randn(n, 20, generator=gen) + 0.5 * (2 * y[:, None] - 1), y


x_val, y_val = draw(1000, torch.Generator().manual_seed(0))  # never trained on
store = f"{args.out}/store"
for run in sorted(set(range(runs)) - set(saved_runs(store))):  # resumes
    gen = torch.Generator().manual_seed(1 + run)
    x, y = draw(200, gen)
    torch.manual_seed(run)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rec = RQRecorder(["sign", "ternary-50", "4bit"], x_val, y_val)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        rec.record(model)  # one checkpoint per epoch
    rec.save(store, run=run)

rq, names = load_rq_runs(store)  # (runs, quantizers)
ranking = rank_quantizers(rq, names, rng=0)  # bootstrap CIs, Holm-corrected tie groups
for row in ranking.table():
    print(f"{row['rank']:>4}  {row['name']:<12} mean r_Q {row['mean']['estimate']:.3g} "
          f"[{row['mean']['low']:.3g}, {row['mean']['high']:.3g}]")  # fmt: skip
print("tie groups (most private first):", ranking.tie_groups)
save_figure(plot_ranking(ranking), f"{args.out}/ranking.png")
