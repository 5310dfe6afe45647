"""Your model, quantized with GPTQ at 2 bits: does it leak less than at full precision?

mis.audit_model trains shadow and target models of your architecture with your training
function, quantizes each target (calibrated on its own members), attacks every variant with
LiRA and tests the change of TPR at low FPR against full precision (paired cluster bootstrap,
Holm-corrected). Needs scikit-learn for the digits (pip install -e ".[digits]").

    python examples/audit_own_model.py --out audit-example    # about 2 minutes on a CPU
"""

import argparse

import torch
from torch import nn

import mis
from mis.report.plots import plot_accuracy_vs_leak, save_figure
from mis.train import load_digits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="audit-example")
parser.add_argument("--tiny", action="store_true", help="4 shadows, 10 epochs (a smoke test)")
args = parser.parse_args()


def make_model(n_classes, input_shape):  # your architecture
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, n_classes))


def fit(model, x, y, config, seed):  # your training loop (x, y: this model's members)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


results = mis.audit_model(
    make_model, load_digits(), out=args.out, train=fit, quantizers=["gptq"], bits=[2],
    shadows=4 if args.tiny else 32, targets=2 if args.tiny else 4,
    config={"data": {"test_size": 297}, "train": {"epochs": 10 if args.tiny else 100},
            "metrics": {"fprs": [0.01]}, "attack": {"attacks": ["lira_online"]}},
)  # fmt: skip

v = results["verdict"]  # the same verdict opens <out>/report.md
fp = v["fp"]
print(f"full precision: TPR@1% FPR {fp['estimate']:.3f} [{fp['low']:.3f}, {fp['high']:.3f}], "
      f"accuracy {fp['accuracy']:.1%}")  # fmt: skip
for r in v["rows"]:
    print(f"{r['label']}: TPR {r['tpr']:.3f}, change {r['delta']:+.3f} "
          f"[{r['delta_low']:+.3f}, {r['delta_high']:+.3f}], Holm p = {r['pvalue_holm']:.3g}, "
          f"accuracy {r['accuracy']:.1%}")  # fmt: skip
points = {"full precision": {"accuracy": fp["accuracy"], "tpr": fp["estimate"],
                             "tpr_low": fp["low"], "tpr_high": fp["high"]}}  # fmt: skip
points |= {r["label"]: {"accuracy": r["accuracy"], "tpr": r["tpr"], "tpr_low": r["tpr_low"],
                        "tpr_high": r["tpr_high"]} for r in v["rows"]}  # fmt: skip
fig = plot_accuracy_vs_leak(points, fpr=v["fpr"], reference="full precision")
save_figure(fig, f"{args.out}/accuracy_vs_leak.png")
