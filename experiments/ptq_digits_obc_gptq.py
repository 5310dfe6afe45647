"""OBC and GPTQ vs RTN on the digits CNN, with and without batch-norm tuning (issue 8).

For each seed: a random half of sklearn's 1,797 digits are the members (keep mask from
the seed); a :func:`mis.train.build_model` ``"digits_cnn"`` is trained on them (SGD 0.9,
lr 0.05 cosine, weight decay 5e-4, batch 64, 30 epochs); the calibration set is drawn
from the members only (:func:`mis.quant.select_calibration`, 1,024 requested = all
≈ 900 members); accuracy is measured on the non-members (≈ 900 held-out digits).

Table 1 — the plain CNN (no BatchNorm): accuracy of RTN, OBC and GPTQ at 4, 2, 1.58
and 1 bits (all layers, per-channel asymmetric L2.4 grid; 1 bit = α_c·sign), and at
1.58 bits with the decoupled 8-bit last layer (Zhang et al. §IV-C).
Table 2 — the conv–BN–ReLU CNN: each method without and with BN tuning (reset the
running statistics, 100 calibration batches of 64 in train mode, momentum 0.1).

Usage::

    python experiments/ptq_digits_obc_gptq.py                 # 3 seeds (~2-4 min on 2 cores)
    python experiments/ptq_digits_obc_gptq.py --seeds 0 1 2 3 4 --out results.json
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np
import torch

from mis.quant import QuantConfig, quantize_model, select_calibration
from mis.quant.bn import bn_tune
from mis.train import TrainConfig, build_model, load_digits, train_model

METHODS = ("rtn", "obc", "gptq")
BITS = (4, 2, 1.58, 1)


def train(seed: int, batchnorm: bool, epochs: int):
    ds = load_digits()
    x, y = ds.tensor(), torch.as_tensor(ds.y)
    keep = np.random.default_rng(seed).random(len(y)) < 0.5
    cfg = TrainConfig(
        epochs=epochs, lr=0.05, batch_size=64, weight_decay=5e-4, amp=False, channels_last=False
    )
    factory = functools.partial(build_model, "digits_cnn", batchnorm=batchnorm)
    model = train_model(factory, x, y, cfg, seed, subset=keep, device="cpu", progress=False)
    calib = select_calibration(x, y, member_mask=keep, rng=seed)  # members only
    test = torch.as_tensor(~keep)

    def accuracy(m) -> float:
        m.eval()
        with torch.no_grad():
            return float((m(x[test]).argmax(1) == y[test]).double().mean())

    return model, calib, accuracy


def run_seed(seed: int, epochs: int) -> dict:
    out = {"plain": {}, "bn": {}}
    model, calib, acc = train(seed, batchnorm=False, epochs=epochs)
    out["plain"]["float"] = acc(model)
    for bits in BITS:
        for m in METHODS:
            out["plain"][f"{m}@{bits}"] = acc(
                quantize_model(model, QuantConfig(bits=bits, method=m), calib)
            )
    for m in METHODS:
        cfg = QuantConfig(bits=1.58, method=m, last_layer_bits=8)
        out["plain"][f"{m}@1.58+last8"] = acc(quantize_model(model, cfg, calib))
    model, calib, acc = train(seed, batchnorm=True, epochs=epochs)
    out["bn"]["float"] = acc(model)
    for bits in BITS:
        for m in METHODS:
            q = quantize_model(model, QuantConfig(bits=bits, method=m), calib)
            out["bn"][f"{m}@{bits}"] = acc(q)
            out["bn"][f"{m}+bnt@{bits}"] = acc(bn_tune(q, calib))  # same as bn_tuning=True
    return out


def fmt(vals) -> str:
    v = np.asarray(vals) * 100
    return f"{v.mean():.1f} ± {v.std(ddof=1) if v.size > 1 else 0:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=str, default=None, help="write per-seed results as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = {}
    for s in args.seeds:
        res[s] = run_seed(s, args.epochs)
        print(f"seed {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    seeds = args.seeds

    def col(model, key):
        return [res[s][model][key] for s in seeds]

    def wins(model, a, b):
        return sum(res[s][model][a] >= res[s][model][b] for s in seeds)

    n = len(seeds)
    print(f"\nTest accuracy (%) on non-members, mean ± sd over {n} seeds {seeds}")
    print(f"\nTable 1: digits CNN (no BN), float {fmt(col('plain', 'float'))}")
    print("| bits | RTN | OBC | GPTQ | OBC ≥ RTN | GPTQ ≥ RTN |")
    print("| --- | --- | --- | --- | --- | --- |")
    for bits in [*BITS, "1.58+last8"]:
        k = {m: f"{m}@{bits}" for m in METHODS}
        print(
            f"| {bits} | {fmt(col('plain', k['rtn']))} | {fmt(col('plain', k['obc']))} "
            f"| {fmt(col('plain', k['gptq']))} | {wins('plain', k['obc'], k['rtn'])}/{n} "
            f"| {wins('plain', k['gptq'], k['rtn'])}/{n} |"
        )
    print(
        f"\nTable 2: digits CNN with BN, float {fmt(col('bn', 'float'))}; without → with BN tuning"
    )
    print("| bits | RTN | RTN+BNT | OBC | OBC+BNT | GPTQ | GPTQ+BNT | BNT ≥ none (R/O/G) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for bits in BITS:
        cells = []
        w = []
        for m in METHODS:
            a, b = f"{m}@{bits}", f"{m}+bnt@{bits}"
            cells += [fmt(col("bn", a)), fmt(col("bn", b))]
            w.append(f"{wins('bn', b, a)}")
        print(f"| {bits} | " + " | ".join(cells) + f" | {'/'.join(w)} of {n} |")
    print("\nPer seed (plain @2, @1.58; BN @2, @1.58 without/with BNT):")
    for s in seeds:
        r = res[s]
        p = " ".join(
            f"{m}@{b}={100 * r['plain'][f'{m}@{b}']:.1f}" for b in (2, 1.58) for m in METHODS
        )
        q = " ".join(
            f"{m}@{b}={100 * r['bn'][f'{m}@{b}']:.1f}/{100 * r['bn'][f'{m}+bnt@{b}']:.1f}"
            for b in (2, 1.58)
            for m in METHODS
        )
        print(f"  seed {s}: plain {p}\n          bn    {q}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({str(s): res[s] for s in seeds}, f, indent=1)


if __name__ == "__main__":
    main()
