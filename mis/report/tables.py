"""Plain-text tables of metric results: markdown for people, CSV/JSON for programs."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from mis.metrics import RocBootstrap, RocComparison
from mis.store import atomic_write_text


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


def write_report_files(
    out, results, markdown: str, tables: Mapping[str, list], figures
) -> list[str]:
    """Write a study's non-empty CSV ``tables``, ``results.json`` and, last, ``report.md``
    (whose links point at ``figures``, already written) into ``out``, atomically.

    Returns the names of the files written: report, results, figures, tables.
    """
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
