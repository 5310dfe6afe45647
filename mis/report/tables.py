"""Plain-text tables of metric results: markdown for people, CSV/JSON for programs."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence

from mis.metrics import RocBootstrap, RocComparison


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def roc_rows(results: Mapping[str, RocBootstrap]) -> list[dict[str, object]]:
    """One row per (scoring, metric) with estimate and CI bounds."""
    rows = []
    for label, res in results.items():
        for metric, v in res.as_dict().items():
            rows.append({"scoring": label, "metric": metric, **v})
    return rows


def roc_markdown(results: Mapping[str, RocBootstrap]) -> str:
    """Markdown table: one row per scoring, one column per metric, ``est [low, high]``."""
    first = next(iter(results.values()))
    names = first.names()
    level = round(first.confidence_level * 100)
    head = "| scoring | " + " | ".join(names) + " |"
    sep = "|---|" + "---|" * len(names)
    lines = [
        f"Point estimates with {level} % {first.method} bootstrap intervals "
        f"({first.n_resamples} resamples).",
        "",
        head,
        sep,
    ]
    for label, res in results.items():
        cells = [
            f"{_fmt(v['estimate'])} [{_fmt(v['low'])}, {_fmt(v['high'])}]"
            for v in res.as_dict().values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(comparisons: Mapping[str, RocComparison]) -> str:
    """Markdown table of paired differences with CIs and p-values."""
    first = next(iter(comparisons.values()))
    names = first.names()
    head = "| comparison | " + " | ".join(names) + " |"
    sep = "|---|" + "---|" * len(names)
    lines = [head, sep]
    for label, cmp in comparisons.items():
        cells = [
            f"{_fmt(v['estimate'])} [{_fmt(v['low'])}, {_fmt(v['high'])}] p={_fmt(v['pvalue'], 3)}"
            for v in cmp.as_dict().values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(head: Sequence[object], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of a markdown table (header, rule, one line per row) and a blank line."""
    out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return [*out, ""]


def claims_markdown(rows: Sequence[Mapping[str, object]]) -> str:
    """The table of a paper check: rows with ``claim``, ``paper``, ``ours`` and ``pass``
    (True, False, or None for an information row)."""
    body = [
        [
            str(r["claim"]).strip(),
            r["paper"],
            r["ours"],
            {None: "", True: "yes", False: "NO"}[r["pass"]],
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(["claim", "paper", "ours", "pass"], body)).rstrip()


def paper_check_main(argv, *, name: str, description: str, run_help: str, check, reference) -> int:
    """Command line of a paper-check script: ``RUN_DIR [--reference FILE] [--json]``.

    Reads ``RUN_DIR/results.json`` and the reference JSON, prints ``check(results,
    reference)`` as :func:`claims_markdown` (or JSON). Exit status 0 when every checked claim
    passes, 1 otherwise, 2 for unreadable input.
    """
    import argparse
    import sys
    from pathlib import Path

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
    print(json.dumps(rows, indent=2) if args.json else claims_markdown(rows))
    checked = [r["pass"] for r in rows if r["pass"] is not None and not r["claim"].startswith(" ")]
    return 0 if all(checked) else 1


def write_report_files(
    out, results, markdown: str, tables: Mapping[str, list], figures
) -> list[str]:
    """Write a study's non-empty CSV ``tables``, ``results.json`` and, last, ``report.md``
    (whose links point at ``figures``, already written) into ``out``, atomically.

    Returns the names of the files written: report, results, figures, tables.
    """
    from pathlib import Path

    from mis.store import atomic_write_text

    out = Path(out)
    files = list(figures)
    for name, rows in tables.items():
        if rows:
            atomic_write_text(out / name, to_csv(rows))
            files.append(name)
    atomic_write_text(out / "results.json", to_json(results) + "\n")
    atomic_write_text(out / "report.md", markdown)
    return ["report.md", "results.json", *files]


def to_csv(rows: Sequence[Mapping[str, object]]) -> str:
    """CSV text of a list of flat dicts (columns: every key, in order of first appearance;
    a row without a key leaves its cell empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(obj) -> str:
    """JSON text; NaN becomes null so every JSON reader accepts it."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=2, sort_keys=True)
