"""Compare a molecular study (``mis molecular``) with Aubinais et al. (2025), §5.2 / App. F.

Usage::

    python paper_checks/aubinais2025_molecular.py RUN_DIR [--reference FILE] [--json]

Reads ``RUN_DIR/results.json`` and the paper's numbers from
``paper_checks/aubinais2025_molecular_reference.json`` (each with where it comes from) and
prints a table claim / paper / ours / pass. The claims are trends, checked on every task of
the right kind in the study:

* regression: R² of Sign, 1.58b 33/50/90 % and 2 bits is negative (Table 4);
* regression: 5 bits keeps >= 85 % of the original R² (Table 4);
* regression: the Spearman correlation between predictions and labels of every quantizer is
  >= 80 % of the original's ("the ordering of the predictions is preserved", Table 5);
* r_Q ranks a sparse ternary quantizer (1.58b 33/50/90 %) most private, and 1.58b 90 % in
  particular (§5.2.2);
* r_Q ranks one of 2–5 bits least private (§5.2.2);
* classification: the mean relative AUROC of 2–5 bits is above that of Sign and 1.58b
  (Table 3).

Then, for information, our R² and Spearman next to Tables 4–5 for FreeSolv and solubility.
A claim with no task to check prints ``n/a`` and does not pass. Exit status: 0 when every
claim passes, 1 otherwise, 2 for unreadable input.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mis.cli import paper_check_main

REFERENCE = Path(__file__).with_name("aubinais2025_molecular_reference.json")


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x < -1:
        return "< -1"
    return f"{x:.{digits}f}"


def _row(claim, paper, hits, total, misses):
    ours = f"{hits}/{total} tasks" if total else "n/a"
    if misses:
        ours += " (" + "; ".join(misses) + ")"
    return {"claim": claim, "paper": paper, "ours": ours, "pass": bool(total) and not misses}


def check(results: dict, reference: dict) -> list[dict]:
    """Rows of the comparison: dicts with ``claim``, ``paper``, ``ours``, ``pass`` (None for
    an information row)."""
    claims = reference["claims"]
    labels = results.get("labels", {})
    name = lambda q: labels.get(q, q)  # noqa: E731
    tasks = results.get("tasks", [])
    reg = [t for t in tasks if t["kind"] == "regression"]
    cls = [t for t in tasks if t["kind"] == "classification"]
    rows: list[dict] = []

    c = claims["r2_low_bits_negative"]
    misses, failed = [], set()
    for t in reg:
        for q in c["quantizers"]:
            r2 = t["metrics"]["r2"][q]["mean"]
            if not r2 < 0:
                misses.append(f"{t['task']} {name(q)}: {_fmt(r2)}")
                failed.add(t["task"])
    rows.append(
        _row(
            "R² of Sign, 1.58b and 2 bits negative (regression)",
            "every task",
            len(reg) - len(failed),
            len(reg),
            misses,
        )
    )

    c = claims["r2_5bit_retained"]
    misses = []
    for t in reg:
        rel = t["metrics"]["r2"][c["quantizer"]]["relative"]
        if not (rel is not None and rel >= c["min_relative"]):
            misses.append(f"{t['task']}: {100 * rel:.0f}%" if rel is not None else t["task"])
    rows.append(
        _row(
            f"5 bits keeps >= {100 * c['min_relative']:.0f}% of the original R²",
            "89-98 %",
            len(reg) - len(misses),
            len(reg),
            misses,
        )
    )

    c = claims["spearman_preserved"]
    misses, failed = [], set()
    for t in reg:
        for q in results["quantizers"]:
            rel = t["metrics"]["spearman"][q]["relative"]
            if not (rel is not None and rel >= c["min_relative"]):
                misses.append(f"{t['task']} {name(q)}: " + (f"{100 * rel:.0f}%" if rel else "n/a"))
                failed.add(t["task"])
    rows.append(
        _row(
            f"Spearman(predictions, labels) >= {100 * c['min_relative']:.0f}% of the original's "
            "for every quantizer",
            "77-99 % (85-99 % on these two tasks)",
            len(reg) - len(failed),
            len(reg),
            misses,
        )
    )

    for key, what, pos in (
        ("rq_sparse_most_private", "a sparse ternary quantizer ranked most private by r_Q", 0),
        ("rq_ternary90_most_private", "1.58b 90% ranked most private by r_Q", 0),
        ("rq_dense_least_private", "one of 2-5 bits ranked least private by r_Q", -1),
    ):
        c = claims[key]
        allowed = c.get("quantizers") or [c["quantizer"]]
        misses = [
            f"{t['task']}: {name(t['rq']['order'][pos])}"
            for t in tasks
            if t["rq"]["order"][pos] not in allowed
        ]
        rows.append(_row(what, "almost all tasks", len(tasks) - len(misses), len(tasks), misses))

    c = claims["auroc_dense_above_sparse"]
    misses, hits = [], 0
    for t in cls:
        au = t["metrics"]["auroc"]
        dense = sum(au[q]["relative"] for q in c["dense"]) / len(c["dense"])
        sparse = sum(au[q]["relative"] for q in c["sparse"]) / len(c["sparse"])
        if dense > sparse:
            hits += 1
        else:
            misses.append(f"{t['task']}: {100 * dense:.0f}% vs {100 * sparse:.0f}%")
    rows.append(
        _row(
            "mean relative AUROC of 2-5 bits above Sign and 1.58b (classification)",
            "94-100 % vs 79-95 %",
            hits,
            len(cls),
            misses,
        )
    )

    # information: our values next to Tables 4-5
    qs = reference["quantizers"]
    for t in reg:
        ref = reference["tables"].get(t["task"])
        if ref is None:
            continue
        for metric, table in (("r2", "Table 4"), ("spearman", "Table 5")):
            ours = [t["metrics"][metric].get(q, {}).get("mean") for q in qs]
            rows.append(
                {
                    "claim": f" {t['task']} {metric} ({table}: {', '.join(map(name, qs))})",
                    "paper": " / ".join("< -1" if v is None else _fmt(v) for v in ref[metric]),
                    "ours": " / ".join(_fmt(v) for v in ours),
                    "pass": None,
                }
            )
    return rows


def main(argv=None) -> int:
    return paper_check_main(
        argv,
        name="aubinais2025_molecular",
        description=__doc__.split("\n\n")[0],
        run_help="output directory of `mis molecular` (results.json)",
        check=check,
        reference=REFERENCE,
    )


if __name__ == "__main__":
    sys.exit(main())
