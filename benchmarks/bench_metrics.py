"""Bootstrap of ROC metrics: mis vs a loop of scikit-learn calls, timed in the same run.

Workload (issue 2): n = 50,000 scores (half members), 1,000 stratified
bootstrap resamples of TPR@0.1%FPR, TPR@1%FPR and AUC. mis also computes the
log-AUC in the same pass. The baseline draws the same kind of resample with
numpy and calls ``sklearn.metrics.roc_curve`` + ``roc_auc_score`` on it.
Target: >= 100x faster than that loop and <= 1 s on a 2-core machine. mis is
also timed on one numba thread, and the load average is printed (the machine
may be shared: a loaded machine slows both sides unevenly).

Usage::

    python benchmarks/bench_metrics.py            # full baseline loop (~30 s)
    python benchmarks/bench_metrics.py --quick    # baseline on 100 resamples, scaled
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numba
import numpy as np


def sklearn_loop(scores, labels, n_resamples, rng):
    from sklearn.metrics import roc_auc_score, roc_curve

    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    out = np.empty((n_resamples, 3))
    for b in range(n_resamples):
        idx = np.concatenate([rng.choice(neg, neg.size), rng.choice(pos, pos.size)])
        s, y = scores[idx], labels[idx]
        fpr, tpr, _ = roc_curve(y, s)
        out[b] = [tpr[fpr <= 1e-3].max(), tpr[fpr <= 1e-2].max(), roc_auc_score(y, s)]
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="time the baseline on 100 resamples")
    args = parser.parse_args()

    from mis.metrics import bootstrap_roc

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], args.n // 2)
    scores = rng.normal(size=labels.size) + 1.0 * labels
    fprs = (1e-3, 1e-2)

    load_start = os.getloadavg()
    bootstrap_roc(scores[::50], labels[::50], fprs=0.01, n_resamples=10, rng=0)  # compile
    rss_before = peak_rss_mib()
    times = []
    for rep in range(3):
        t0 = time.perf_counter()
        res = bootstrap_roc(scores, labels, fprs=fprs, n_resamples=args.resamples, rng=rep)
        times.append(time.perf_counter() - t0)
    ours = min(times)
    rss_ours = peak_rss_mib()
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    times_1 = []
    cpu_1 = []
    for rep in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        res_1 = bootstrap_roc(scores, labels, fprs=fprs, n_resamples=args.resamples, rng=rep)
        times_1.append(time.perf_counter() - t0)
        cpu_1.append(time.process_time() - c0)
    numba.set_num_threads(threads)
    assert np.array_equal(res.replicates, res_1.replicates)  # thread-count independent

    n_base = 100 if args.quick else args.resamples
    t0, c0 = time.perf_counter(), time.process_time()
    base = sklearn_loop(scores, labels, n_base, np.random.default_rng(1))
    base_time = (time.perf_counter() - t0) * args.resamples / n_base
    base_cpu = (time.process_time() - c0) * args.resamples / n_base

    load_end = os.getloadavg()
    print(
        f"n = {args.n:,} (half members), {args.resamples:,} resamples, numba threads = "
        f"{threads}, {os.cpu_count()} CPUs"
    )
    print(
        "load average (1, 5, 15 min): start "
        + ", ".join(f"{x:.2f}" for x in load_start)
        + "; end "
        + ", ".join(f"{x:.2f}" for x in load_end)
    )
    print(
        f"mis.bootstrap_roc      : {ours:8.3f} s  "
        f"(best of 3: {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(
        f"  on 1 numba thread    : {min(times_1):8.3f} s  "
        f"(best of 3: {', '.join(f'{t:.3f}' for t in times_1)}; identical replicates)"
    )
    scaled = (
        f" (timed {n_base} resamples, scaled x{args.resamples / n_base:g})" if args.quick else ""
    )
    print(f"scikit-learn loop      : {base_time:8.3f} s{scaled}")
    print(f"ratio                  : {base_time / ours:8.1f}x   target >= 100x and <= 1 s")
    print(
        f"CPU time (less sensitive to a loaded machine): mis on 1 thread {min(cpu_1):.3f} s, "
        f"scikit-learn loop {base_cpu:.3f} s, ratio {base_cpu / min(cpu_1):.1f}x"
    )
    print(
        f"peak RSS               : {rss_ours:8.1f} MiB (before mis bootstrap {rss_before:.1f} MiB)"
    )
    # the two bootstrap distributions estimate the same thing: their spreads should agree
    sd_ours = np.std(res.replicates[:, [0, 1, 2]], axis=0)
    sd_base = np.std(base, axis=0)
    print(
        "bootstrap SD (TPR@0.1%, TPR@1%, AUC): mis",
        np.round(sd_ours, 4),
        "sklearn",
        np.round(sd_base, 4),
    )


if __name__ == "__main__":
    main()
