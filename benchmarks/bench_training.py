"""Benchmark: ensemble training vs training the models one after another.

Part 1 (CPU; issue target ≥ 10×): 64 single-layer classifiers of Aubinais et al. (2025,
§5.1.1) — n = 128 samples of a 128-dim Gaussian mixture per model (each model its own
training set), features [x, x²] (256), 3,000 full-batch Adam epochs at lr 1e-4 — trained

* as one ensemble (``train_ensemble``, closed-form batched gradient: the default fast path),
* as one ensemble through the generic ``torch.func`` path (vmap + functional_call + autograd),
* one after another with the plain ``torch.optim`` loop (``train_model``), the baseline.

Sequential training time is linear in the number of models, so the baseline trains
``--baseline-models`` of the 64 (default 8) and reports its models/s; the ratio compares
models/s. The benchmark also checks that the ensemble's weights equal the sequential ones.

Part 2 (only when CUDA is available; issue target ≥ 3×): ResNet-18 training throughput
(images/s) on CIFAR-shaped random data: ``train_model`` (data resident on the GPU, flip + crop
as tensor ops, bf16 autocast, channels-last) against a plain ``DataLoader`` loop (CPU tensors,
per-sample flip + crop in the dataset, fp32).

Run: ``.venv/bin/python benchmarks/bench_training.py [--quick] [--threads N]``.
Timings on a shared machine are noisy: re-run when a figure looks contended.
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mis.train.config import TrainConfig
from mis.train.data import GaussianMixture, random_flip_crop
from mis.train.ensemble import train_ensemble
from mis.train.models import build_model
from mis.train.trainer import train_model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def aubinais_data(k, n, dim, seed=0):
    mix = GaussianMixture.random(dim=dim, k_modes=8, sigma=2.0, rng=seed)
    parts = [mix.sample(n, 1000 + i) for i in range(k)]
    x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    y = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    return x, y, np.arange(k * n).reshape(k, n)


def part1(args):
    k, n, dim = args.models, 128, 128
    x, y, subsets = aubinais_data(k, n, dim)
    fn = functools.partial(build_model, "quadratic_linear", dim=dim)
    cfg = TrainConfig.aubinais2025(epochs=args.epochs)
    print(
        f"[1] {k} quadratic single-layer models, n={n}, dim={dim} -> {2 * dim} features, "
        f"{cfg.epochs} full-batch Adam epochs (lr {cfg.lr}); torch threads = "
        f"{torch.get_num_threads()}"
    )
    # warm-up (first-call overheads of torch) for every contender, outside the timings
    warm = TrainConfig.aubinais2025(epochs=5)
    train_ensemble(fn, x, y, warm, range(k), subsets=subsets, device="cpu", fast=True)
    train_ensemble(fn, x, y, warm, range(k), subsets=subsets, device="cpu", fast=False)
    train_model(fn, x, y, warm, 0, subset=subsets[0], device="cpu", progress=False)
    t = time.perf_counter()
    ens = train_ensemble(fn, x, y, cfg, range(k), subsets=subsets, device="cpu", fast=True)
    t_fast = time.perf_counter() - t
    print(f"    ensemble, fast path   : {t_fast:8.2f} s  {k / t_fast:8.2f} models/s")

    t_gen = None
    if not args.skip_generic:
        t = time.perf_counter()
        gen = train_ensemble(fn, x, y, cfg, range(k), subsets=subsets, device="cpu", fast=False)
        t_gen = time.perf_counter() - t
        diff = max((gen.params[p] - ens.params[p]).abs().max().item() for p in ens.params)
        print(
            f"    ensemble, torch.func  : {t_gen:8.2f} s  {k / t_gen:8.2f} models/s"
            f"   (max |w - w_fast| = {diff:.2e})"
        )

    nb = min(args.baseline_models, k)
    t = time.perf_counter()
    worst = 0.0
    for i in range(nb):
        m = train_model(fn, x, y, cfg, i, subset=subsets[i], device="cpu", progress=False)
        sd = ens.state_dict(i)
        worst = max(worst, max((sd[p] - v).abs().max().item() for p, v in m.state_dict().items()))
    t_seq = time.perf_counter() - t
    rate_seq = nb / t_seq
    print(
        f"    one after another     : {t_seq:8.2f} s  {rate_seq:8.2f} models/s"
        f"   ({nb} models timed; {k} would take ~{k / rate_seq:.0f} s)"
    )
    print(f"    max |w_ensemble - w_sequential| over {nb} models = {worst:.2e}")
    print(
        f"    ratio ensemble(fast) / sequential = {(k / t_fast) / rate_seq:6.1f}x   [target >= 10x]"
    )
    if t_gen is not None:
        print(f"    ratio ensemble(torch.func) / sequential = {(k / t_gen) / rate_seq:6.1f}x")
    print(f"    peak RSS {peak_rss_mb():.0f} MB")


def part2(args):
    if not torch.cuda.is_available():
        print("[2] ResNet-18 GPU throughput: skipped (no CUDA device)")
        return
    n = args.gpu_images
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    fn = functools.partial(build_model, "resnet18")
    epochs = 2
    cfg = TrainConfig.zhang2025(epochs=epochs)
    torch.cuda.synchronize()
    train_model(fn, x[:512], y[:512], TrainConfig.zhang2025(epochs=1), 0, device="cuda")  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    train_model(fn, x, y, cfg, 0, device="cuda", progress=False)
    torch.cuda.synchronize()
    ours = epochs * n / (time.perf_counter() - t)

    class Aug(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            gi = torch.Generator().manual_seed(i)
            flip = torch.rand(1, generator=gi) < 0.5
            off = torch.randint(0, 9, (1, 2), generator=gi)
            return random_flip_crop(x[i : i + 1], flip, off, 4)[0], y[i]

    model = fn().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(
        Aug(), batch_size=128, shuffle=True, num_workers=args.workers, pin_memory=True
    )
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.cuda(non_blocking=True), yb.cuda(non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    base = epochs * n / (time.perf_counter() - t)
    print(
        f"[2] ResNet-18, {n} CIFAR-shaped images, batch 128, {epochs} epochs on "
        f"{torch.cuda.get_device_name()}"
    )
    print(f"    train_model (GPU-resident data, bf16, channels-last): {ours:9.0f} images/s")
    print(f"    plain DataLoader loop (fp32, {args.workers} workers)      : {base:9.0f} images/s")
    print(f"    ratio = {ours / base:.1f}x   [target >= 3x]")
    print(f"    peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 epochs, 2 baseline models")
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--baseline-models", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--skip-generic", action="store_true")
    ap.add_argument("--gpu-images", type=int, default=25_000)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers (GPU part)")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.baseline_models, args.gpu_images = 300, 2, 4096
    if args.threads:
        torch.set_num_threads(args.threads)
    part1(args)
    part2(args)


if __name__ == "__main__":
    main()
