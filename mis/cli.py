"""Command-line interface: ``mis <command>``.

Commands available today:

* ``mis demo``  — the ROC core on a small built-in example (simulated
  membership scores of a leaky model and a less leaky one): metrics with
  bootstrap CIs, a paired comparison, a log-log ROC plot and a report.
  It will become the synthetic r_Q study when that lands.
* ``mis roc``   — ROC metrics with bootstrap CIs for stored ``.npy`` scores and labels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _add_bootstrap_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fprs",
        type=float,
        nargs="+",
        default=[1e-3, 1e-2],
        help="FPR levels for TPR@FPR (default: 0.001 0.01)",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument(
        "--method",
        choices=["percentile", "bca"],
        default="percentile",
        help="bootstrap interval (default percentile)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def simulated_scores(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Membership scores of two models on the same examples (labels, leaky, less leaky).

    Non-members score N(0, 1). Members score N(0.3, 1), except 2 % that the
    leaky model memorised (N(4, 1)); the less leaky model (think: a coarser
    quantization) keeps a third of that gap. Purely illustrative numbers.
    """
    labels = np.repeat([0, 1], n // 2)
    noise = rng.normal(size=labels.size)
    memorised = (labels == 1) & (rng.random(labels.size) < 0.02)
    leaky = noise + 0.3 * labels + 3.7 * memorised
    less_leaky = 0.8 * noise + 0.6 * rng.normal(size=labels.size) + 0.2 * labels + 1.2 * memorised
    return labels, leaky, less_leaky


def cmd_demo(args) -> int:
    from mis import metrics
    from mis.report import plots, tables
    from mis.store import atomic_write_text

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    labels, leaky, less = simulated_scores(args.n, rng)
    scorings = {"leaky model": leaky, "less leaky model": less}
    opts = dict(
        fprs=args.fprs,
        n_resamples=args.resamples,
        confidence_level=args.confidence,
        method=args.method,
    )
    results = {
        k: metrics.bootstrap_roc(s, labels, rng=args.seed + i, **opts)
        for i, (k, s) in enumerate(scorings.items())
    }
    cmp = {"leaky − less leaky": metrics.compare_roc(leaky, less, labels, rng=args.seed, **opts)}
    plot = plots.roc_loglog(
        {k: metrics.roc_curve(s, labels)[:2] for k, s in scorings.items()},
        out / "roc.png",
        title="mis demo: simulated membership scores",
    )
    report = "\n".join(
        [
            "# mis demo — the ROC core on simulated membership scores",
            "",
            f"{args.n:,} examples (half members); scores are simulated "
            "(see `mis.cli.simulated_scores`),",
            "not produced by a model: this shows what the statistics report, not a privacy result.",
            "",
            "## Metrics",
            "",
            tables.roc_markdown(results),
            "## Paired comparison (same resampled examples)",
            "",
            tables.comparison_markdown(cmp),
            f"![log-log ROC]({plot.name})",
            "",
        ]
    )
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "metrics.csv", tables.to_csv(tables.roc_rows(results)))
    atomic_write_text(
        out / "results.json",
        tables.to_json(
            {
                "command": "demo",
                "n": args.n,
                "seed": args.seed,
                **opts,
                "metrics": {k: r.as_dict() for k, r in results.items()},
                "comparison": {k: c.as_dict() for k, c in cmp.items()},
            }
        ),
    )
    print(tables.roc_markdown(results))
    print(tables.comparison_markdown(cmp))
    print(
        f"wrote {out}/report.md, results.json, metrics.csv, roc.png "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def cmd_roc(args) -> int:
    from mis import metrics
    from mis.report import tables

    scores = np.load(args.scores, allow_pickle=False)
    labels = np.load(args.labels, allow_pickle=False)
    res = metrics.bootstrap_roc(
        scores,
        labels,
        fprs=args.fprs,
        n_resamples=args.resamples,
        confidence_level=args.confidence,
        method=args.method,
        rng=args.seed,
        compat=args.compat,
    )
    if args.json:
        print(tables.to_json(res.as_dict()))
    else:
        print(tables.roc_markdown({Path(args.scores).name: res}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mis", description="Membership-inference measurement for (quantized) neural networks."
    )
    from mis import __version__

    parser.add_argument("--version", action="version", version=f"mis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="ROC core on a built-in simulated example, writes a report")
    demo.add_argument("--out", default="mis-demo", help="output directory (default ./mis-demo)")
    demo.add_argument("--n", type=int, default=20_000, help="number of examples (default 20000)")
    _add_bootstrap_options(demo)
    demo.set_defaults(func=cmd_demo)

    roc = sub.add_parser("roc", help="ROC metrics with bootstrap CIs for .npy scores and labels")
    roc.add_argument("scores", help=".npy file of membership scores (higher = member)")
    roc.add_argument("labels", help=".npy file of 0/1 labels (1 = member)")
    roc.add_argument(
        "--compat",
        choices=["carlini2022"],
        default=None,
        help="TPR@FPR with FPR < alpha as the reference LiRA code",
    )
    roc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_bootstrap_options(roc)
    roc.set_defaults(func=cmd_roc)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mis.exceptions import MisValueError

    try:
        return args.func(args)
    except (MisValueError, FileNotFoundError) as exc:
        print(f"mis {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
