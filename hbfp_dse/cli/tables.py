"""The results table of configurations that ``report`` prints and a sweep ends with."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from rich.table import Table

from ..experiments.report import ConfigSummary
from .common import print_table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_rows(summaries: list[ConfigSummary]) -> list[dict[str, Any]]:
    return [
        {
            "sweep": s.sweep,
            "label": s.label,
            "kind": s.kind,
            "accuracy_pct": _pct(s.accuracy),
            "val_accuracy_pct": _pct(s.validation_accuracy),
            "std_pct": _pct(s.accuracy_std),
            "ci95_pct": "—" if s.accuracy_ci is None else f"{100 * s.accuracy_ci:.2f}",
            "drop_vs_fp32_pct": "-" if s.drop_vs_fp32 is None else f"{100 * s.drop_vs_fp32:+.2f}",
            "test_loss": _number(s.test_loss),
            "perplexity": "-" if s.perplexity is None else f"{s.perplexity:.2f}",
            "density_vs_fp32": "-" if s.density is None else f"{s.density:.2f}",
            "seeds": f"{len(s.done)}/{len(s.runs)}",
            "status": s.status,
            "pareto": "*" if s.pareto else "",
            "runs": " ".join(str(r.id) for r in s.runs),
        }
        for s in summaries
    ]


# The results table's columns, as a reader sees them.
TITLES = {
    "sweep": "sweep",
    "label": "configuration",
    "val_accuracy_pct": "val acc %",
    "accuracy_pct": "test acc %",
    "ci95_pct": "± 95% CI",
    "drop_vs_fp32_pct": "drop vs FP32",
    "test_loss": "loss",
    "perplexity": "ppl",
    "density_vs_fp32": "density",
    "seeds": "seeds",
    "status": "status",
    "pareto": "front",
}


def shown_columns(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The columns that matter for these rows, by key, with their titles."""
    columns = dict(TITLES)
    if len({row["sweep"] for row in rows}) < 2:
        del columns["sweep"]
    if all(row["val_accuracy_pct"] == "-" for row in rows):
        del columns["val_accuracy_pct"]  # runs from before validation splits
    if all(row["drop_vs_fp32_pct"] == "-" for row in rows):
        del columns["drop_vs_fp32_pct"]  # no FP32 run to compare with
    if all(row["perplexity"] == "-" for row in rows):
        del columns["perplexity"], columns["test_loss"]  # beside accuracy for language models
    return columns


def titled_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the terminal shows them (titles for keys), and their kind, for the HTML
    report."""
    shown = shown_columns(rows)
    columns = {k: shown[k] for k in shown if k in ("sweep", "label")} | {"kind": "kind"} | shown
    return [{title: row[key] for key, title in columns.items()} for row in rows]


def print_summary_table(rows: list[dict[str, Any]]) -> None:
    """The terminal view: the columns that matter, one line per configuration."""
    columns = shown_columns(rows)
    table = Table(
        title="hbfp-dse results: final validation accuracy (what best and search choose on) "
        "and test accuracy, means over seeds, the test's 95% confidence interval (— for one "
        "seed); drop vs FP32 in test points; front: on the test accuracy/density Pareto front"
    )
    for key, title in columns.items():
        table.add_column(
            title,
            justify="left" if key in ("label", "sweep") else "right",
            overflow="fold" if key == "label" else "ellipsis",
        )
    for row in rows:
        style = "bold" if row["pareto"] else None
        table.add_row(*(str(row[key]) for key in columns), style=style)
    print_table(table)


def markdown_table(rows: list[dict[str, Any]], numeric: Collection[str] = ()) -> str:
    """``rows`` (titles for keys, in order) as a GitHub Markdown table; ``numeric`` columns
    right-aligned."""
    if not rows:
        return ""
    titles = list(rows[0])

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = ["---:" if t in numeric else "---" for t in titles]
    body = [line([str(row[t]) for t in titles]) for row in rows]
    return "\n".join([line(titles), line(rule), *body]) + "\n"


def markdown_summary(rows: list[dict[str, Any]]) -> str:
    """The results table as ``report`` prints it, in Markdown."""
    columns = shown_columns(rows)
    shown = [{title: row[key] for key, title in columns.items()} for row in rows]
    text = {"sweep", "configuration", "status", "front"}
    return markdown_table(shown, {t for t in columns.values() if t not in text})
