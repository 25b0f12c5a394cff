"""``hbfp-dse report``: the stored runs by configuration, with the Pareto front."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import UserError
from ..experiments import plots
from ..experiments.report import (
    ConfigSummary,
    environments,
    run_json,
    search_history,
    summarize,
    summary_json,
)
from ..experiments.store import Store
from .common import console, err_console, print_json, user_errors
from .options import DbOption, ReportFormat, ReportFormatOption, SweepOption

PlotOption = Annotated[
    Path | None,
    typer.Option("--plot", help="Also draw accuracy against density (.png, .svg, .html)."),
]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _rows(summaries: list[ConfigSummary]) -> list[dict[str, Any]]:
    return [
        {
            "sweep": s.sweep,
            "label": s.label,
            "kind": s.kind,
            "accuracy_pct": _pct(s.accuracy),
            "std_pct": _pct(s.accuracy_std),
            "density_vs_fp32": "-" if s.density is None else f"{s.density:.2f}",
            "seeds": f"{len(s.done)}/{len(s.runs)}",
            "status": s.status,
            "pareto": "*" if s.pareto else "",
            "runs": " ".join(str(r.id) for r in s.runs),
        }
        for s in summaries
    ]


@user_errors
def report(
    sweep: SweepOption = None,
    db: DbOption = None,
    output: ReportFormatOption = ReportFormat.table,
    plot: PlotOption = None,
) -> None:
    """Runs with accuracy (mean ± std over seeds), density and status; Pareto front marked."""
    store = Store(db, create=False)
    runs = store.runs(sweep)
    attempts = store.attempts([r.id for r in runs])
    summaries = summarize(runs)
    summaries.sort(key=lambda s: (s.sweep, -(s.density or 0.0), s.label))
    rows = _rows(summaries)
    if plot is not None:
        _save_plot(plot, summaries, search_history(runs), rows)
    if output is ReportFormat.json:
        print_json(
            {
                "runs": [run_json(r, attempts[r.id]) for r in runs],
                "configurations": [summary_json(s) for s in summaries],
            }
        )
    elif output is ReportFormat.csv:
        typer.echo(_csv(rows), nl=False)
    elif not rows:
        console.print("no runs stored yet")
    else:
        _print_table(rows)
        _print_environments(environments(attempts))
        unrecorded = sum(not tries for tries in attempts.values())
        if unrecorded:
            console.print(
                f"{unrecorded} run(s) with no environment recorded (not trained yet, or trained "
                "before hbfp-dse recorded attempts)",
                highlight=False,
                soft_wrap=True,
            )


def _save_plot(
    path: Path,
    summaries: list[ConfigSummary],
    history: plots.History | None,
    rows: list[dict[str, Any]],
) -> None:
    try:
        plots.save(path, summaries, history, plots.table_html(rows))
    except plots.PlotPathError as err:
        raise UserError(f"--plot {err.path}: {err.reason}") from None
    err_console.print(f"plot written to {path}")


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["sweep"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _print_table(rows: list[dict[str, Any]]) -> None:
    """The terminal view: the columns that matter, one line per configuration."""
    columns = {
        "label": "configuration",
        "accuracy_pct": "acc %",
        "std_pct": "± %",
        "density_vs_fp32": "density",
        "seeds": "seeds",
        "status": "status",
        "pareto": "front",
    }
    if len({row["sweep"] for row in rows}) > 1:
        columns = {"sweep": "sweep", **columns}
    table = Table(title="hbfp-dse results (front: on the accuracy/density Pareto front)")
    for key, title in columns.items():
        table.add_column(
            title,
            justify="left" if key in ("label", "sweep") else "right",
            overflow="fold" if key == "label" else "ellipsis",
        )
    for row in rows:
        style = "bold" if row["pareto"] else None
        table.add_row(*(str(row[key]) for key in columns), style=style)
    console.print(table)


def _print_environments(found: list[tuple[str, list[int]]]) -> None:
    """Where the runs trained; a warning when not all in one environment."""
    for label, runs in found:
        console.print(f"trained with {label}: {len(runs)} run(s)", highlight=False, soft_wrap=True)
    if len(found) > 1:
        err_console.print(
            f"[yellow]warning:[/] the runs trained in {len(found)} environments; results can "
            "differ between them for that alone (CPU threads, TF32 and versions change the "
            "arithmetic); 'report --format json' lists each run's attempts"
        )
