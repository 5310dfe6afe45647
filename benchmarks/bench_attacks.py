"""Benchmark: LiRA from stored signals, ours vs reference-style NumPy code, in one run.

Setting of the issue: 50,000 examples, 64 shadows + 1 target, 2 queries.

* one target: ``mis.attacks.lira`` vs a NumPy transcription in the style of
  tensorflow/privacy ``research/mi_lira_2021/plot.py`` (``generate_ours``: a
  Python loop over examples to collect IN/OUT values, then vectorised
  median / std / ``scipy.stats.norm.logpdf``). Target: >= 50x faster.
* all 65 targets leave-one-out: ``mis.attacks.lira_all_targets``. Target: <= 10 s.

Run: ``.venv/bin/python benchmarks/bench_attacks.py [--quick] [--repeat R]``.
Timings are wall-clock best-of-R; the machine may be shared, so re-run if a
figure looks contended.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import scipy.stats

from mis.attacks import lira, lira_all_targets


def reference_style_online(keep, scores, check_keep, check_scores, fix_variance=False):
    """Reference-style online LiRA: Python loop over examples, as plot.py's generate_ours."""
    dat_in = []
    dat_out = []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(len(x) for x in dat_in)
    out_size = min(len(x) for x in dat_out)
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in = np.median(dat_in, 1)
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_in = std_out = np.std(dat_in)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    prediction = []
    for sc in check_scores:
        pr_in = -scipy.stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        prediction.extend((pr_in - pr_out).mean(1))
    return -np.array(prediction)


def best_of(fn, repeat, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t0 = clock()
        out = fn()
        times.append(clock() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5,000 examples instead of 50,000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n_examples = 5_000 if args.quick else 50_000
    n_models, n_queries = 65, 2
    rng = np.random.default_rng(0)
    keep = rng.random((n_models, n_examples)) < 0.5
    mu_out = rng.normal(0.0, 2.0, (1, n_examples, 1))
    sig = mu_out + rng.normal(0.0, 1.0, (n_models, n_examples, n_queries))
    sig += keep[:, :, None] * rng.gamma(2.0, 0.5, (1, n_examples, 1))
    print(
        f"data: {n_models} models (64 shadows + 1 target) x {n_examples} examples x "
        f"{n_queries} queries, float64 signals = {sig.nbytes / 2**20:.0f} MiB"
    )

    # compile (cached after the first run) on a small slice
    lira(sig[:, :200], keep[:, :200], -1)
    lira(sig[:, :200], keep[:, :200], -1, center="median")
    lira_all_targets(sig[:, :200], keep[:, :200])
    lira_all_targets(sig[:, :200], keep[:, :200], center="median")

    t_ref, ref = best_of(
        lambda: reference_style_online(keep[:-1], sig[:-1], keep[-1:], sig[-1:]), 3
    )
    print(f"\none target (target = last model), best of {args.repeat} (reference: best of 3):")
    print(f"  reference-style NumPy (Python loop over examples): {t_ref * 1e3:9.1f} ms")
    rows = [
        ("online, mean (default)", dict()),
        ("online, median", dict(center="median")),
        ("online, fixed variance", dict(fixed_variance=True)),
        ("offline", dict(mode="offline")),
        ("offline, fixed variance", dict(mode="offline", fixed_variance=True)),
    ]
    headline = None
    for label, kw in rows:
        t, _ = best_of(lambda kw=kw: lira(sig, keep, -1, **kw), args.repeat)
        headline = headline or t_ref / t
        print(f"  mis.attacks.lira {label:26s}: {t * 1e3:9.1f} ms   {t_ref / t:7.1f}x")
    t_c, ours_c = best_of(lambda: lira(sig, keep, -1, compat="carlini2022"), 1)
    same = np.array_equal(ours_c, ref)
    print(
        f"  mis.attacks.lira compat='carlini2022'     : {t_c * 1e3:9.1f} ms   {t_ref / t_c:7.1f}x"
        f"   (bit-identical to the reference-style result: {same})"
    )
    print(
        f"  target >= 50x (online default): {'MET' if headline >= 50 else 'MISSED'} "
        f"({headline:.1f}x wall-clock)"
    )
    # CPU time (all threads) is less sensitive to other processes on a shared machine
    c_ref, _ = best_of(
        lambda: reference_style_online(keep[:-1], sig[:-1], keep[-1:], sig[-1:]),
        2,
        time.process_time,
    )
    c_ours, _ = best_of(lambda: lira(sig, keep, -1), args.repeat, time.process_time)
    print(
        f"  CPU time (all threads): reference-style {c_ref * 1e3:.1f} ms, ours (online default) "
        f"{c_ours * 1e3:.1f} ms -> {c_ref / c_ours:.1f}x less work"
    )

    print("\nall 65 targets, leave-one-out (lira_all_targets):")
    worst = 0.0
    for label, kw in rows:
        t, _ = best_of(lambda kw=kw: lira_all_targets(sig, keep, **kw), max(1, args.repeat - 1))
        worst = max(worst, t)
        print(f"  {label:26s}: {t:6.2f} s")
    print(f"  target <= 10 s: {'MET' if worst <= 10 else 'MISSED'} (slowest variant {worst:.2f} s)")

    tracemalloc.start()
    lira_all_targets(sig, keep)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"\npeak NumPy allocation during lira_all_targets: {peak / 2**20:.0f} MiB "
        f"(signals themselves: {sig.nbytes / 2**20:.0f} MiB, output "
        f"{n_models * n_examples * 8 / 2**20:.0f} MiB)"
    )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
