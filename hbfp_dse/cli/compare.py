"""``hbfp-dse compare``: stored configurations against a reference, with the confidence
interval of each difference."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from ..experiments.comparison import Difference, compare, find, of_sweep, reference_of
from ..experiments.report import summarize, table_order
from ..experiments.store import Store
from .common import console, print_json, print_table, user_errors
from .options import DbOption, SweepOption
from .tables import markdown_table


class CompareFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


LabelsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Configurations (report's labels) to compare; default: all.", show_default=False
    ),
]
AgainstOption = Annotated[
    str | None,
    typer.Option("--against", help="The reference configuration; default: the FP32 one."),
]
CompareFormatOption = Annotated[CompareFormat, typer.Option("--format", help="Output format.")]


@user_errors
def compare_command(
    labels: LabelsArgument = None,
    sweep: SweepOption = None,
    against: AgainstOption = None,
    db: DbOption = None,
    output: CompareFormatOption = CompareFormat.table,
) -> None:
    """Each configuration's mean test accuracy minus the reference's, with the 95% confidence
    interval of that difference over seeds (Welch), a verdict (higher, lower, or no
    difference detected at this number of seeds) and the density ratio. Only configurations
    of the reference's sweep are compared."""
    summaries = table_order(summarize(Store(db, create=False).runs(sweep)))
    reference = reference_of(summaries, against)
    candidates = of_sweep(summaries, reference.sweep)
    chosen = candidates if not labels else [find(candidates, label) for label in labels]
    differences = compare(chosen, reference)
    rows = [_row(d) for d in differences]
    if not rows and output is not CompareFormat.json:
        console.print(f"no other finished configuration to compare with {reference.label}")
    elif output is CompareFormat.json:
        print_json({"reference": reference.label, "differences": [_json(d) for d in differences]})
    elif output is CompareFormat.markdown:
        typer.echo(
            markdown_table(rows, set(rows[0]) - {"configuration", "verdict"}),
            nl=False,
        )
    else:
        table = Table(
            title=f"test accuracy against {reference.label} (sweep {reference.sweep}): "
            "difference of the means over seeds in points, its 95% confidence interval (Welch)"
        )
        for title in rows[0]:
            table.add_column(
                title, justify="left" if title in ("configuration", "verdict") else "right"
            )
        for row in rows:
            table.add_row(*row.values())
        print_table(table)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _row(d: Difference) -> dict[str, str]:
    interval = d.interval
    ratio = d.density_ratio
    return {
        "configuration": d.summary.label,
        "test acc %": f"{100 * d.summary.accuracy:.2f}",  # type: ignore[operator]
        "seeds": str(len(d.summary.done)),
        f"vs {d.reference.label}": _points(d.difference),
        "95% CI": "—" if interval is None else f"[{_points(interval[0])}, {_points(interval[1])}]",
        "verdict": d.verdict,
        "density": "-" if d.summary.density is None else f"{d.summary.density:.2f}x",
        f"x {d.reference.label}": "-" if ratio is None else f"{ratio:.2f}",
    }


def _json(d: Difference) -> dict[str, Any]:
    return {
        "configuration": d.summary.label,
        "sweep": d.summary.sweep,
        "test_accuracy": d.summary.accuracy,
        "seeds": len(d.summary.done),
        "difference": d.difference,
        "ci95": d.interval,
        "verdict": d.verdict,
        "density": d.summary.density,
        "density_ratio": d.density_ratio,
    }
