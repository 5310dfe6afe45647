"""RTN vs AdaRound vs BRECQ on the digits CNN at 4, 2, 1.58 and 1 bit (CPU, minutes).

For each seed: a keep mask (half of the 1,797 digits are members), a digits CNN with
BatchNorm (conv–BN–ReLU, so BRECQ has something to fold) trained on the members, a
calibration set drawn from the members only (1,024 requested = all ~900 members), then
every method on the *same* trained model and calibration set. Accuracy is measured on the
non-members (held out). Methods:

* ``rtn``        round to nearest on the per-channel asymmetric L2.4-searched grid
                 (1 bit: α_c·sign(W));
* ``adaround``   AdaRound, layer-wise, BN kept and included in each layer's output;
* ``brecq``      BRECQ defaults: BN folded, stem and head at 8 bits (layer units: the
                 digits CNN has no residual blocks);
* ``brecq-same`` BRECQ with ``head_stem_bits=None``: the same grids as RTN/AdaRound.

Each with all layers at ``bits`` and with the decoupled 8-bit last layer (Zhang et al.
§IV-C); BRECQ's default already has an 8-bit last layer, so it is run once.

Usage::

    .venv/bin/python experiments/ptq_digits_adaround_brecq.py            # 3 seeds, 1500 it.
    .venv/bin/python experiments/ptq_digits_adaround_brecq.py --quick    # 1 seed, 200 it.
    .venv/bin/python experiments/ptq_digits_adaround_brecq.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from mis.quant import QuantConfig, quantize_model, select_calibration
from mis.train import TrainConfig, build_model, keep_masks, load_digits, train_model
from mis.train.models import _BasicBlock

BITS = (4, 2, 1.58, 1)
# Zhang et al. 2025, Table I (CIFAR-100, ResNet-18, 10 seeds; FP 70.22 %, chance 1 %).
ZHANG_TABLE_I = {
    "1.58": {"adaround": 62.35, "brecq": 67.61, "obc": 64.34},
    "1": {"adaround": 1.00, "brecq": 0.99, "obc": 1.04},
}


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean()) * 100


def run(args) -> dict:
    ds = load_digits()
    x, y = torch.as_tensor(ds.x), torch.as_tensor(ds.y)
    opts = {"n_iter": args.n_iter, "num_threads": args.threads, "progress": None}
    variants = [
        ("rtn", "rtn", {}, None),
        ("adaround", "adaround", opts, None),
        ("brecq", "brecq", opts, None),
        ("brecq-same", "brecq", {**opts, "head_stem_bits": None}, None),
        ("rtn", "rtn", {}, 8),
        ("adaround", "adaround", opts, 8),
        ("brecq-same", "brecq", {**opts, "head_stem_bits": None}, 8),
    ]
    rows, losses = [], []
    for seed in args.seeds:
        keep = keep_masks(2, len(ds), rng=seed)[0]
        t0 = time.perf_counter()
        model = train_model(
            lambda: build_model("digits_cnn", batchnorm=True),
            x,
            y,
            TrainConfig(epochs=args.epochs, lr=0.05, batch_size=64, weight_decay=5e-4),
            seed,
            subset=keep,
            device="cpu",
            progress=False,
        )
        fp_acc = accuracy(model, x[~keep], y[~keep])
        print(f"seed {seed}: trained in {time.perf_counter() - t0:.0f}s, FP acc {fp_acc:.2f}%")
        rows.append(dict(seed=seed, method="fp", bits=32, last=None, acc=fp_acc, seconds=0.0))
        calib = select_calibration(x, y, member_mask=keep, n_samples=1024, rng=seed)
        for bits in BITS:
            for label, method, mopts, last in variants:
                cfg = QuantConfig(
                    bits=bits, method=method, last_layer_bits=last, method_options=mopts, seed=seed
                )
                t0 = time.perf_counter()
                q = quantize_model(model, cfg, calib if method != "rtn" else None)
                sec = time.perf_counter() - t0
                acc = accuracy(q, x[~keep], y[~keep])
                rows.append(
                    dict(seed=seed, method=label, bits=bits, last=last, acc=acc, seconds=sec)
                )
                rec = getattr(q, "mis_reconstruction", None)
                if rec is not None:
                    for u in rec.units:
                        losses.append(
                            dict(
                                seed=seed,
                                method=label,
                                bits=bits,
                                last=last,
                                unit=u.name,
                                nearest=u.nearest_loss,
                                final=u.final_loss,
                                flipped=u.flipped,
                                history=u.history.tolist(),
                            )
                        )
                print(
                    f"  {bits:>4} bits {label:<10} last={last}: {acc:6.2f}%  ({sec:.1f}s)",
                    flush=True,
                )
    return dict(args=vars(args), rows=rows, losses=losses)


def summarise(res: dict) -> str:
    rows = res["rows"]
    seeds = sorted({r["seed"] for r in rows})
    out = []
    fp = [r["acc"] for r in rows if r["method"] == "fp"]
    out.append(
        f"Digits CNN (BN), accuracy on non-members, mean ± sd over {len(seeds)} seeds "
        f"(FP {np.mean(fp):.2f} ± {np.std(fp, ddof=1) if len(fp) > 1 else 0:.2f} %); "
        f"{res['args']['n_iter']} iterations per unit\n"
    )
    methods = ["rtn", "adaround", "brecq", "brecq-same"]
    for last in (None, 8):
        out.append(f"\nLast layer: {'same bits' if last is None else '8 bits (decoupled)'}\n")
        out.append("| bits | " + " | ".join(methods) + " |")
        out.append("|---" * (len(methods) + 1) + "|")
        for bits in BITS:
            cells = []
            for m in methods:
                lst = None if m == "brecq" else last
                a = [
                    r["acc"]
                    for r in rows
                    if r["method"] == m and r["bits"] == bits and r["last"] == lst
                ]
                if not a:
                    cells.append("–")
                    continue
                sd = np.std(a, ddof=1) if len(a) > 1 else 0.0
                cells.append(f"{np.mean(a):.2f} ± {sd:.2f}")
            out.append(f"| {bits} | " + " | ".join(cells) + " |")
    out.append("\n(brecq = 8-bit stem and head by default, so its row is the same in both tables)")
    # paired differences on the same models
    out.append("\nPaired differences (same trained model and calibration set), mean [min, max]:")
    for a_m, b_m, bits, last in [
        ("adaround", "rtn", 2, None),
        ("adaround", "rtn", 1.58, None),
        ("adaround", "rtn", 2, 8),
        ("adaround", "rtn", 1.58, 8),
        ("brecq", "adaround", 1.58, None),
        ("brecq-same", "adaround", 1.58, None),
        ("brecq-same", "adaround", 1.58, 8),
    ]:
        d = []
        for s in seeds:
            pick = {
                m: [
                    r["acc"]
                    for r in rows
                    if r["seed"] == s
                    and r["method"] == m
                    and r["bits"] == bits
                    and r["last"] == (None if m == "brecq" else last)
                ]
                for m in (a_m, b_m)
            }
            if pick[a_m] and pick[b_m]:
                d.append(pick[a_m][0] - pick[b_m][0])
        if d:
            out.append(
                f"  {a_m:>10} − {b_m:<8} at {bits} bits, last={last}: "
                f"{np.mean(d):+.2f} [{min(d):+.2f}, {max(d):+.2f}] points"
            )
    # 1 bit beside Zhang et al. Table I
    out.append("\n1-bit (α_c·sign) and 1.58-bit accuracy beside Zhang et al. Table I (CIFAR-100):")
    out.append("| bits | ours RTN | ours AdaRound | ours BRECQ | Zhang AdaRound | Zhang BRECQ |")
    out.append("|---|---|---|---|---|---|")
    for bits in (1.58, 1):

        def mean(m, bits=bits):
            a = [
                r["acc"]
                for r in rows
                if r["method"] == m and r["bits"] == bits and r["last"] is None
            ]
            return f"{np.mean(a):.2f}" if a else "–"

        z = ZHANG_TABLE_I[str(bits)]
        out.append(
            f"| {bits} | {mean('rtn')} | {mean('adaround')} | {mean('brecq')} | "
            f"{z['adaround']:.2f} | {z['brecq']:.2f} |"
        )
    out.append("(chance: 10 % for digits, 1 % for CIFAR-100)")
    # reconstruction losses
    out.append(
        "\nReconstruction loss per unit, nearest rounding (start) → learned rounding (end), "
        "mean over seeds, last layer at the same bits:"
    )
    losses = res["losses"]
    for m in ("adaround", "brecq"):
        for bits in BITS:
            sel = [
                L for L in losses if L["method"] == m and L["bits"] == bits and L["last"] is None
            ]
            if not sel:
                continue
            units = list(dict.fromkeys(L["unit"] for L in sel))
            parts = []
            for u in units:
                us = [L for L in sel if L["unit"] == u]
                n0 = np.mean([L["nearest"] for L in us])
                n1 = np.mean([L["final"] for L in us])
                parts.append(f"{u} {n0:.3g}→{n1:.3g}")
            fell = sum(L["final"] < L["nearest"] for L in sel)
            out.append(
                f"  {m:>8} {bits:>4}: " + ", ".join(parts) + f"  (fell in {fell}/{len(sel)})"
            )
    ex = [L for L in losses if L["method"] == "adaround" and L["bits"] == 2 and L["last"] is None]
    if ex:
        L = ex[0]
        h = np.asarray(L["history"])
        out.append(
            f"\nExample: AdaRound 2 bits, seed {L['seed']}, unit {L['unit']}: hard-rounded loss on "
            "256 cached examples during optimisation (step: loss)"
        )
        idx = np.unique(np.linspace(0, len(h) - 1, 8).astype(int))
        out.append("  " + ", ".join(f"{int(h[i, 0])}: {h[i, 4]:.4g}" for i in idx))
    t = [r["seconds"] for r in rows if r["method"] in ("adaround", "brecq-same")]
    if t:
        out.append(
            f"\nWall time per quantization (AdaRound / BRECQ runs): median {np.median(t):.1f}s"
        )
    return "\n".join(out)


class TinyResNet(torch.nn.Module):
    """conv3x3(16)-BN-ReLU stem, BasicBlock(16), BasicBlock(32, stride 2), GAP, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.layer = torch.nn.Sequential(_BasicBlock(16, 16), _BasicBlock(16, 32, stride=2))
        self.linear = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = self.layer(torch.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


def run_resnet(args) -> str:
    """Block vs layer reconstruction on a tiny residual net (same grids, 2 and 1.58 bits)."""
    ds = load_digits()
    x, y = torch.as_tensor(ds.x), torch.as_tensor(ds.y)
    opts = {"n_iter": args.n_iter, "num_threads": args.threads, "head_stem_bits": None}
    variants = [
        ("rtn", "rtn", {}),
        ("adaround", "adaround", {k: v for k, v in opts.items() if k != "head_stem_bits"}),
        ("brecq-layerwise", "brecq", {**opts, "blocks": ()}),
        ("brecq-blocks", "brecq", opts),
    ]
    acc: dict = {}
    for seed in args.seeds:
        keep = keep_masks(2, len(ds), rng=seed)[0]
        model = train_model(
            TinyResNet,
            x,
            y,
            TrainConfig(epochs=args.epochs, lr=0.05, batch_size=64),
            seed,
            subset=keep,
            device="cpu",
            progress=False,
        )
        acc.setdefault(("fp", 32), []).append(accuracy(model, x[~keep], y[~keep]))
        calib = select_calibration(x, y, member_mask=keep, n_samples=1024, rng=seed)
        for bits in (2, 1.58):
            for label, method, mopts in variants:
                cfg = QuantConfig(bits=bits, method=method, method_options=mopts, seed=seed)
                q = quantize_model(model, cfg, calib if method != "rtn" else None)
                a = accuracy(q, x[~keep], y[~keep])
                acc.setdefault((label, bits), []).append(a)
                print(f"  resnet seed {seed} {bits:>4} bits {label:<16} {a:6.2f}%", flush=True)
    fp = acc[("fp", 32)]
    out = [
        f"\nTiny ResNet on digits (2 BasicBlocks; all layers at the same bits), FP "
        f"{np.mean(fp):.2f} %, mean ± sd over {len(args.seeds)} seeds:",
        "| bits | " + " | ".join(v[0] for v in variants) + " |",
        "|---" * (len(variants) + 1) + "|",
    ]
    for bits in (2, 1.58):
        cells = []
        for label, *_ in variants:
            a = acc[(label, bits)]
            cells.append(f"{np.mean(a):.2f} ± {np.std(a, ddof=1) if len(a) > 1 else 0:.2f}")
        out.append(f"| {bits} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-iter", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 seed, 200 iterations, 10 epochs")
    p.add_argument("--json", help="write all rows, losses and histories to this file")
    p.add_argument(
        "--resnet", action="store_true", help="only the block-vs-layer study on a tiny ResNet"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n_iter, args.epochs = [0], 200, 10
    torch.set_num_threads(args.threads)
    if args.resnet:
        print(run_resnet(args))
        return
    res = run(args)
    text = summarise(res)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)
        print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
