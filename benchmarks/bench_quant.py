"""L_p range search (80 shrunk ranges, p = 2.4) over ResNet-18-sized weights: mis vs a loop.

Workload (issue 6): random weights with the layer shapes of the CIFAR ResNet-18
(3x3 stem, 4 stages of BasicBlocks, 1x1 shortcuts, 10-class head: 11.2 M weights in
4,810 output channels), He-scaled Gaussian. Per-channel asymmetric grid, 80 candidate
ranges ``(1 - 0.01 i)·[min, max]``, error ``Σ|W - Ŵ|^2.4``.

* mis: :func:`mis.quant.grids.mse_grid`: one numba pass per channel (rows split over
  ``torch.get_num_threads()`` Python threads; the kernel releases the GIL) brackets the
  candidates' errors -- a degree-8 polynomial of the rounding error for weights that are
  not clamped (about 13 vector operations per weight and candidate), an approximate power
  for clamped ones -- visiting the candidates outward from the previous channel's winner
  and abandoning one as soon as its partial sum shows it cannot win; the candidates it
  cannot separate (in about 1 channel out of 10) are evaluated exactly in float64.
* baseline: the per-channel Python loop of the reference PTQ code (BRECQ
  ``UniformAffineQuantizer.init_quantization_scale``, ``scale_method="mse"``), re-written
  here: for each channel, for each of 80 candidates, quantize with torch ops and take
  ``(x - x_q).abs().pow(2.4).mean()``, keeping strict improvements.

Both search ``[min, max]`` without widening it to contain 0 (the reference), so the two
must pick the same candidates; the script checks it. mis minimises the float64 error
(float64 powers and sum of the float32 ``|W - Ŵ|``), the reference the float32 ``pow``
and ``mean`` of the same numbers: they can only disagree on near-ties.
``--check-float64`` also evaluates every candidate in float64 with torch and reports how
close the closest runner-up is (the smallest relative gap between best and second best).
Torch's thread count applies to both (``--threads``; the default is torch's). The
baseline's thousands of tiny torch ops are very sensitive to threads: with 2 threads on a
busy machine they slow down several times, so compare ``--threads 1`` for a like-for-like
figure.

Usage::

    python benchmarks/bench_quant.py              # full model, both (baseline ~0.5-1 min)
    python benchmarks/bench_quant.py --quick      # stem + one stage-4 conv + head
    python benchmarks/bench_quant.py --threads 1
    python benchmarks/bench_quant.py --check-float64   # + every candidate in float64
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from mis.quant.grids import (
    AffineGrid,
    _fix_degenerate,
    _scale_zero,
    _screened_best,
    as_channels,
    mse_grid,
    shrink_factors,
)

# (out, in, kh, kw) of the CIFAR ResNet-18 (conv1 3x3 stride 1, no max-pool), in order.
RESNET18_CIFAR = (
    [(64, 3, 3, 3)]
    + [(64, 64, 3, 3)] * 4
    + [(128, 64, 3, 3), (128, 128, 3, 3), (128, 64, 1, 1), (128, 128, 3, 3), (128, 128, 3, 3)]
    + [(256, 128, 3, 3), (256, 256, 3, 3), (256, 128, 1, 1), (256, 256, 3, 3), (256, 256, 3, 3)]
    + [(512, 256, 3, 3), (512, 512, 3, 3), (512, 256, 1, 1), (512, 512, 3, 3), (512, 512, 3, 3)]
    + [(10, 512)]
)
QUICK = [RESNET18_CIFAR[0], RESNET18_CIFAR[-2], RESNET18_CIFAR[-1]]


def make_weights(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        fan_in = 1
        for d in s[1:]:
            fan_in *= d
        out.append(torch.randn(s, generator=g) * (2.0 / fan_in) ** 0.5)
    return out


def reference_loop(w, n_bits, p=2.4, n_candidates=80):
    """Per-channel loop of the reference code: returns (delta, zero_point) per channel."""
    n_levels = 2**n_bits
    deltas, zps = [], []
    for c in range(w.shape[0]):
        x = w[c]
        x_max, x_min = x.max(), x.min()
        best_score = 1e10
        delta = zero_point = None
        for i in range(n_candidates):
            new_max = x_max * (1.0 - (i * 0.01))
            new_min = x_min * (1.0 - (i * 0.01))
            d = (new_max - new_min) / (2**n_bits - 1)
            zp = (-new_min / d).round()
            x_q = (torch.clamp(torch.round(x / d) + zp, 0, n_levels - 1) - zp) * d
            score = (x - x_q).abs().pow(p).mean()
            if score < best_score:
                best_score = score
                delta = (new_max - new_min) / (2**n_bits - 1)
                zero_point = (-new_min / delta).round()
        deltas.append(float(delta))
        zps.append(float(zero_point))
    return torch.tensor(deltas), torch.tensor(zps)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 layers instead of 21")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both runs)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the mis run (best)")
    parser.add_argument(
        "--check-float64", action="store_true", help="also evaluate every candidate in float64"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shapes = QUICK if args.quick else RESNET18_CIFAR
    ws = make_weights(shapes)
    n_params = sum(w.numel() for w in ws)
    n_channels = sum(w.shape[0] for w in ws)
    L = 2**args.bits
    print(
        f"workload: {len(ws)} layers, {n_params / 1e6:.2f} M weights, {n_channels} channels, "
        f"{args.bits} bits, 80 candidates, p = 2.4, torch threads = {torch.get_num_threads()}"
    )

    mse_grid(ws[0], L, include_zero=False)  # warm-up
    rss0 = peak_rss_mib()
    t_ours = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        grids = [mse_grid(w, L, include_zero=False) for w in ws]
        t_ours = min(t_ours, time.perf_counter() - t0)
    rss1 = peak_rss_mib()

    t0 = time.perf_counter()
    ref = [reference_loop(w, args.bits) for w in ws]
    t_base = time.perf_counter() - t0

    same = sum(
        int(torch.isclose(g.scale, d, rtol=1e-5).sum())
        for g, (d, _) in zip(grids, ref, strict=False)
    )
    zsame = sum(int((g.zero_point == z).sum()) for g, (_, z) in zip(grids, ref, strict=False))

    print(
        f"mis (vectorized, best of {args.repeats}): {t_ours:8.3f} s"
        f"   ({t_ours / (n_params * 80) * 1e9:.2f} ns per weight and candidate)"
    )
    print(f"baseline (per-channel loop)      : {t_base:8.3f} s")
    print(f"speed-up: {t_base / t_ours:.1f}x   (target >= 20x)")
    print(f"same chosen scale: {same}/{n_channels} channels, same zero-point: {zsame}/{n_channels}")
    print(
        f"peak RSS: {rss1:.0f} MiB (+{rss1 - rss0:.0f} MiB during the mis run; "
        f"weights {n_params * 4 / 2**20:.0f} MiB)"
    )
    n_exact = torch.cat([screen_stats(w, L) for w in ws])
    print(
        f"channels the screen left to an exact float64 evaluation: "
        f"{int((n_exact > 0).sum())}/{n_channels} "
        f"({float(n_exact.sum()) / n_channels:.2f} candidates per channel on average)"
    )
    if args.check_float64:
        agree, gap = 0, float("inf")
        for w, g in zip(ws, grids, strict=True):
            err = all_errors_float64(w, L)
            agree += int((err.argmin(1) == candidate_index(w, g, L)).sum())
            top2 = err.topk(2, dim=1, largest=False).values
            gap = min(gap, float(((top2[:, 1] - top2[:, 0]) / top2[:, 0]).min()))
        print(
            f"float64 check: mis picks the float64 argmin on {agree}/{n_channels} channels; "
            f"smallest relative gap best vs runner-up: {gap:.2e}"
        )


def _ranges(w):
    x = as_channels(w)
    lo, hi = _fix_degenerate(x.amin(1), x.amax(1))
    return x, lo, hi


def screen_stats(w, n_levels):
    """Candidates evaluated exactly per channel (0: the screen alone decided)."""
    x, lo, hi = _ranges(w)
    return _screened_best(x, lo, hi, n_levels, shrink_factors(), False, 2.4)[1]


def all_errors_float64(w, n_levels, p=2.4):
    """(C, 80) float64 errors of every candidate (AffineGrid.error), no screening."""
    x, lo, hi = _ranges(w)
    cols = []
    for f in shrink_factors():
        s, z = _scale_zero(lo * f, hi * f, n_levels, False)
        cols.append(AffineGrid(s, z, n_levels, 0).error(x, p))
    return torch.stack(cols, 1)


def candidate_index(w, grid, n_levels):
    """Index of the candidate whose scale the grid has."""
    _, lo, hi = _ranges(w)
    f = shrink_factors()
    s, _ = _scale_zero(lo[:, None] * f, hi[:, None] * f, n_levels, False)
    return (s == grid.scale[:, None]).int().argmax(1)


if __name__ == "__main__":
    main()
