"""Benchmark: the fused minibatch trainer vs training the models one after another in torch.

Part 1 (CPU; issue 16 target ≥ 20×): 64 single-layer binary classifiers of Aubinais et al.
(2025, §5.1.1) as ``mis synth`` trains them — n = 128 samples of a 128-dim Gaussian mixture
per model (each model its own training set), features [x, x²] (256), one logit and the
binary cross-entropy, minibatch Adam (batch 32, reshuffled every epoch), lr 1e-4,
3,000 epochs — trained

* as one ensemble by the fused numba kernel (:func:`mis.train.train_linear_ensemble`),
  then also with the study's streaming r_Q recorder (8 quantizers every epoch), for
  information;
* one model after another with the plain torch loop a user would write (``nn.Linear``,
  ``torch.optim.Adam``, ``BCEWithLogitsLoss``, float32, one torch thread, the same batches),
  the baseline.

Sequential training time is linear in the number of models, so the baseline trains
``--baseline-models`` of the 64 (default 4) and reports its models/s; the ratio compares
models/s. The benchmark also prints how far the fused weights (float64) are from the torch
loop's (float32) after training.

Part 1b (``--full-batch``): the earlier comparison, full-batch Adam with the vmap ensemble
(``train_ensemble``) against ``train_model`` one after another (target then ≥ 10×).

Part 2 (only when CUDA is available; issue target ≥ 3×): ResNet-18 training throughput
(images/s) on CIFAR-shaped random data: ``train_model`` (data resident on the GPU, flip + crop
as tensor ops, bf16 autocast, channels-last) against a plain ``DataLoader`` loop (CPU tensors,
per-sample flip + crop in the dataset, fp32).

Run: ``.venv/bin/python benchmarks/bench_training.py [--quick] [--threads N] [--full-batch]``.
Timings on a shared machine are noisy: re-run when a figure looks contended; the CPU time
of the process is printed beside the wall time.
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mis.quant import AUBINAIS_QUANTIZERS
from mis.studies.synthetic.streaming import StreamingRecorder, quadratic_features
from mis.train.config import TrainConfig, init_model
from mis.train.data import GaussianMixture, random_flip_crop
from mis.train.ensemble import train_ensemble
from mis.train.fused import batch_order, train_linear_ensemble
from mis.train.models import QuadraticLinear, build_model
from mis.train.trainer import train_model


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def aubinais_data(k, n, dim, seed=0):
    mix = GaussianMixture.random(dim=dim, k_modes=8, sigma=2.0, rng=seed)
    parts = [mix.sample(n, 1000 + i) for i in range(k)]
    x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
    y = torch.as_tensor(np.concatenate([p[1] for p in parts]))
    return x, y, np.arange(k * n).reshape(k, n)


def _torch_loop(phi, y, w0, b0, epochs, lr, batch, seed):
    """One model, the plain torch way (float32)."""
    n, f = phi.shape
    lin = torch.nn.Linear(f, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(b0.astype(np.float32)))
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    bce = torch.nn.BCEWithLogitsLoss()
    x = torch.from_numpy(phi.astype(np.float32))
    t = torch.from_numpy(y.astype(np.float32))
    for e in range(epochs):
        order = torch.from_numpy(batch_order(seed, e, n))
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            opt.zero_grad(set_to_none=True)
            loss = bce(lin(x[idx])[:, 0], t[idx])
            loss.backward()
            opt.step()
    return lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()


def part1(args):
    k, n, dim, lr, batch = args.models, 128, 128, 1e-4, args.batch
    x, y, subsets = aubinais_data(k, n, dim)
    phi = np.stack([quadratic_features(x[s].numpy()) for s in subsets])  # (K, n, 256) float64
    yy = np.stack([y[s].numpy() for s in subsets])
    models = [init_model(functools.partial(QuadraticLinear, dim, 1), s) for s in range(k)]
    w0 = np.stack([m.fc.weight.detach().numpy() for m in models]).astype(np.float64)
    b0 = np.stack([m.fc.bias.detach().numpy() for m in models]).astype(np.float64)
    seeds = list(range(100, 100 + k))
    print(
        f"[1] {k} single-layer binary classifiers, n={n}, dim={dim} -> {2 * dim} features, "
        f"{args.epochs} epochs of minibatch Adam (batch {batch}, {-(-n // batch)} steps/epoch, "
        f"lr {lr}); torch threads = {torch.get_num_threads()}"
    )
    # warm-up (numba compilation, torch first calls) outside the timings
    train_linear_ensemble(phi[:2], yy[:2], w0[:2], b0[:2], epochs=2, lr=lr, seeds=seeds[:2],
                          batch_size=batch)  # fmt: skip
    _torch_loop(phi[0], yy[0], w0[0], b0[0], 2, lr, batch, seeds[0])
    t, c = time.perf_counter(), time.process_time()
    ens = train_linear_ensemble(phi, yy, w0, b0, epochs=args.epochs, lr=lr, seeds=seeds,
                                batch_size=batch)  # fmt: skip
    t_fused, c_fused = time.perf_counter() - t, time.process_time() - c
    print(f"    fused ensemble (numba)          : {t_fused:8.2f} s (cpu {c_fused:7.2f} s)  "
          f"{k / t_fused:8.2f} models/s")  # fmt: skip
    xv, yv = GaussianMixture.random(dim=dim, k_modes=8, sigma=2.0, rng=0).sample(512, 7)
    rec = StreamingRecorder(AUBINAIS_QUANTIZERS, xv, yv, n_checkpoints=args.epochs)
    t = time.perf_counter()
    train_linear_ensemble(phi, yy, w0, b0, epochs=args.epochs, lr=lr, seeds=seeds,
                          batch_size=batch, callbacks=[rec])  # fmt: skip
    res = rec.result()
    t_rec = time.perf_counter() - t
    print(f"    fused + streaming r_Q (8 quant.): {t_rec:8.2f} s             "
          f"{k / t_rec:8.2f} models/s  ({res['n_distinct'].sum(1).mean():.0f} distinct "
          "quantized points per model)")  # fmt: skip

    nb = min(args.baseline_models, k)
    t, c = time.perf_counter(), time.process_time()
    worst = 0.0
    for i in range(nb):
        w, b = _torch_loop(phi[i], yy[i], w0[i], b0[i], args.epochs, lr, batch, seeds[i])
        worst = max(worst, np.abs(w - ens.weight[i]).max(), np.abs(b - ens.bias[i]).max())
    t_seq, c_seq = time.perf_counter() - t, time.process_time() - c
    rate_seq = nb / t_seq
    print(f"    torch loop, one after another   : {t_seq:8.2f} s (cpu {c_seq:7.2f} s)  "
          f"{rate_seq:8.2f} models/s   ({nb} models timed; {k} would take "
          f"~{k / rate_seq:.0f} s)")  # fmt: skip
    print(f"    max |w_fused (float64) - w_torch (float32)| over {nb} models = {worst:.2e}")
    print(f"    ratio fused / torch loop = {(k / t_fused) / rate_seq:6.1f}x   [target >= 20x]; "
          f"cpu-time ratio {(c_seq / nb) / (c_fused / k):6.1f}x")  # fmt: skip
    print(f"    peak RSS {peak_rss_mb():.0f} MB")


def part1b(args):
    k, n, dim = args.models, 128, 128
    x, y, subsets = aubinais_data(k, n, dim)
    fn = functools.partial(build_model, "quadratic_linear", dim=dim)
    cfg = TrainConfig.aubinais2025(epochs=args.epochs)
    print(f"[1b] full batch, two logits: {k} models, {cfg.epochs} full-batch Adam epochs")
    warm = TrainConfig.aubinais2025(epochs=5)
    train_ensemble(fn, x, y, warm, range(k), subsets=subsets, device="cpu", fast=True)
    train_model(fn, x, y, warm, 0, subset=subsets[0], device="cpu", progress=False)
    t = time.perf_counter()
    train_ensemble(fn, x, y, cfg, range(k), subsets=subsets, device="cpu", fast=True)
    t_fast = time.perf_counter() - t
    nb = min(args.baseline_models, k)
    t = time.perf_counter()
    for i in range(nb):
        train_model(fn, x, y, cfg, i, subset=subsets[i], device="cpu", progress=False)
    rate_seq = nb / (time.perf_counter() - t)
    print(f"     vmap ensemble {k / t_fast:8.2f} models/s; train_model one after another "
          f"{rate_seq:8.2f} models/s; ratio {(k / t_fast) / rate_seq:6.1f}x")  # fmt: skip


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
    ap.add_argument("--batch", type=int, default=32, help="minibatch size of part 1")
    ap.add_argument("--baseline-models", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--full-batch", action="store_true", help="also part 1b")
    ap.add_argument("--gpu-images", type=int, default=25_000)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers (GPU part)")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.baseline_models, args.gpu_images = 300, 2, 4096
    if args.threads:
        torch.set_num_threads(args.threads)
    part1(args)
    if args.full_batch:
        part1b(args)
    part2(args)


if __name__ == "__main__":
    main()
