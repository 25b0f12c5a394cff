"""``hbfp-dse report`` and ``hbfp-dse best``: what the stored runs say."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from ..experiments import plots
from ..experiments.report import (
    ConfigSummary,
    best_for_target,
    parse_target,
    run_json,
    schedule_config,
    search_history,
    summarize,
    summary_json,
)
from ..experiments.store import Run, Store
from .common import console, err_console, print_json, user_errors
from .sweep import DbOption

SweepOption = Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")]


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class BestFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def _load(db: str | None, sweep_name: str | None) -> tuple[Store, list[Run]]:
    store = Store(db, create=False)
    return store, store.runs(sweep_name)


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
    output: Annotated[ReportFormat, typer.Option("--format", help="Output format.")] = (
        ReportFormat.table
    ),
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw accuracy against density (.png, .svg, .html)."),
    ] = None,
) -> None:
    """Runs with accuracy (mean ± std over seeds), density and status; Pareto front marked."""
    _, runs = _load(db, sweep)
    summaries = summarize(runs)
    summaries.sort(key=lambda s: (s.sweep, -(s.density or 0.0), s.label))
    rows = _rows(summaries)
    if plot is not None:
        plots.save(plot, summaries, search_history(runs), plots.table_html(rows))
        err_console.print(f"plot written to {plot}")
    if output is ReportFormat.json:
        print_json(
            {
                "runs": [run_json(r) for r in runs],
                "configurations": [summary_json(s) for s in summaries],
            }
        )
        return
    if output is ReportFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["sweep"])
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
        return
    if not rows:
        console.print("no runs stored yet")
        return
    _print_table(rows)


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


@user_errors
def best(
    target_acc: Annotated[
        float, typer.Option("--target-acc", help="Target accuracy: 0.91 or 91 (percent).")
    ],
    sweep: SweepOption = None,
    db: DbOption = None,
    output: Annotated[BestFormat, typer.Option("--format", help="Output format.")] = (
        BestFormat.table
    ),
) -> None:
    """The densest configuration whose mean accuracy over its seeds reaches the target."""
    target = parse_target(target_acc)
    _, runs = _load(db, sweep)
    winner, closest = best_for_target(summarize(runs), target)
    if winner is None:
        message = f"no configuration reaches {target:.2%}"
        if closest is not None:
            message += (
                f"; the closest is {closest.label!r} ({closest.sweep}) at "
                f"{closest.accuracy:.2%}, density {closest.density:.2f}x"
            )
        err_console.print(message)
        raise typer.Exit(1)
    if output is BestFormat.json:
        print_json(
            {
                "target": target,
                **summary_json(winner),
                "config": winner.config,
            }
        )
    elif output is BestFormat.yaml:
        typer.echo(
            f"# best for target {target:.2%}: {winner.label} ({winner.sweep}), accuracy "
            f"{winner.accuracy:.2%}, density {winner.density:.2f}x FP32\n"
            "# a baseline entry for a sweep file:\n"
            + yaml.safe_dump([schedule_config(winner)], sort_keys=False)
        )
    else:
        console.print(
            f"best for target {target:.2%}: [bold]{winner.label}[/] from sweep {winner.sweep}\n"
            f"accuracy {winner.accuracy:.2%} ± {100 * (winner.accuracy_std or 0):.2f} over "
            f"{len(winner.done)} seed(s), density {winner.density:.2f}x FP32, runs "
            + ", ".join(str(r.id) for r in winner.runs)
        )
        table = Table(title="schedule (epochs are 0-based, inclusive)")
        table.add_column("epochs")
        table.add_column("layer")
        table.add_column("format")
        for segment in winner.schedule or []:
            first, last = segment["epochs"]
            for layer, fmt in segment["formats"].items():
                table.add_row(f"{first}-{last}", layer, fmt)
        console.print(table)
