"""``hbfp-dse report``: the stored runs by configuration, with the Pareto front."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import UserError
from ..experiments import latex, precision
from ..experiments.report import (
    environments,
    run_json,
    search_history,
    summarize,
    summary_json,
    table_order,
)
from ..experiments.store import RunRecord, Store
from ..lazy import lazy_module
from .common import console, err_console, print_json, print_table, user_errors
from .options import DbOption, SweepOption, checked_target
from .tables import markdown_summary, print_summary_table, summary_rows, titled_rows

# matplotlib loads only for a plot.
plots = lazy_module("hbfp_dse.experiments.plots")
training_curves = lazy_module("hbfp_dse.experiments.curves")


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    latex = "latex"
    markdown = "markdown"


ReportFormatOption = Annotated[
    ReportFormat,
    typer.Option(
        "--format",
        help="Output format; latex: a booktabs tabular of the table; markdown: the table.",
    ),
]
PlotOption = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help="Also draw accuracy against density, or with --layers the heatmaps "
        "(.png, .svg, .pdf, or .html: interactive, self-contained).",
    ),
]
CurvesOption = Annotated[
    Path | None,
    typer.Option(
        "--curves",
        help="Also draw each run's test accuracy and losses per epoch (.png, .svg, .pdf, .html).",
    ),
]
ReportTargetOption = Annotated[
    str | None,
    typer.Option(
        "--target-acc",
        help="A target accuracy drawn as a line on --plot and --curves: 0.91, 91 or 91%.",
    ),
]
LayersOption = Annotated[
    bool,
    typer.Option(
        "--layers",
        help="Per layer and epoch, the quantization error of runs trained with 'analysis'.",
    ),
]
StatisticOption = Annotated[
    str,
    typer.Option(
        "--statistic",
        help=f"With --layers: what the heatmaps show ({', '.join(precision.HEATMAP_STATISTICS)}).",
    ),
]
OperandOption = Annotated[
    str,
    typer.Option(
        "--operand",
        help="With --layers: the operands averaged in the heatmaps: all, x, w, dy, or one "
        "GEMM operand such as dy_wgrad.",
    ),
]


@user_errors
def report(
    sweep: SweepOption = None,
    db: DbOption = None,
    output: ReportFormatOption = ReportFormat.table,
    plot: PlotOption = None,
    curves: CurvesOption = None,
    target_acc: ReportTargetOption = None,
    layers: LayersOption = False,
    statistic: StatisticOption = "wasserstein",
    operand: OperandOption = "all",
) -> None:
    """Configurations with accuracy (mean over seeds, 95% confidence interval, drop vs FP32),
    density and status; Pareto front marked; as a table, CSV, JSON (each run with its
    configuration, timings and epochs), LaTeX or Markdown. --plot and --curves draw them. With
    --layers: where each run loses precision, per layer and epoch."""
    _check_flags(output, plot, curves, target_acc, layers, (statistic, operand))
    target = None if target_acc is None else checked_target(target_acc)
    for flag, path in (("--plot", plot), ("--curves", curves)):
        if path is not None:
            _check_plot_path(flag, path)
    store = Store(db, create=False)
    runs = store.runs(sweep, with_epochs=True)
    if layers:
        precision.check_statistic(statistic)
        operands = precision.operands_of(operand)
        found = precision.with_statistics(runs, store.operand_statistics([r.id for r in runs]))
        _layers_report(found, output, plot, statistic, (operand, operands))
        return
    attempts = store.attempts([r.id for r in runs])
    summaries = table_order(summarize(runs))
    rows = summary_rows(summaries)
    if plot is not None:
        plots.save(plot, summaries, titled_rows(rows), search_history(runs), target)
        _written(plot)
    if curves is not None:
        _save_curves(curves, runs, target)
    if output is ReportFormat.json:
        print_json(
            {
                "runs": [run_json(r, attempts[r.id]) for r in runs],
                "configurations": [summary_json(s) for s in summaries],
            }
        )
    elif output is ReportFormat.csv:
        typer.echo(_csv(rows), nl=False)
    elif output is ReportFormat.latex:
        typer.echo(latex.tabular(summaries), nl=False)
    elif output is ReportFormat.markdown:
        typer.echo(markdown_summary(rows), nl=False)
    elif not rows:
        console.print("no runs stored yet")
    else:
        print_summary_table(rows)
        _print_environments(environments(attempts))
        unrecorded = sum(not tries for tries in attempts.values())
        if unrecorded:
            console.print(
                f"{unrecorded} run(s) with no environment recorded (not trained yet, or trained "
                "before hbfp-dse recorded attempts)",
                highlight=False,
                soft_wrap=True,
            )


def _check_flags(
    output: ReportFormat,
    plot: Path | None,
    curves: Path | None,
    target_acc: str | None,
    layers: bool,
    layer_choice: tuple[str, str],
) -> None:
    """Flags that mean nothing together: refused, rather than silently ignored."""
    if not layers and layer_choice != ("wasserstein", "all"):
        raise UserError("--statistic and --operand choose what --layers shows: add --layers")
    if layers and (curves is not None or target_acc is not None):
        raise UserError("--curves and --target-acc draw the runs' results: not with --layers")
    if layers and output in (ReportFormat.latex, ReportFormat.markdown):
        raise UserError(f"--format {output} is the results table: not with --layers")
    if target_acc is not None and plot is None and curves is None:
        raise UserError(
            "--target-acc draws a target line on --plot or --curves: add one of them "
            "('best --target-acc' picks the configuration for a target)"
        )


def _check_plot_path(flag: str, path: Path) -> None:
    try:
        plots.check_path(path)
    except plots.PlotPathError as err:
        raise UserError(f"{flag} {err.path}: {err.reason}") from None


def _save_curves(path: Path, runs: list[RunRecord], target: float | None) -> None:
    """The runs that recorded epochs; the others are named, and none at all is an error."""
    drawn = [r for r in runs if r.epochs]
    if not drawn:
        raise UserError(f"--curves {path}: no run has recorded an epoch yet")
    skipped = [str(r.id) for r in runs if not r.epochs]
    if skipped:
        err_console.print(
            f"--curves: {len(skipped)} run(s) without recorded epochs left out: "
            + " ".join(skipped),
            soft_wrap=True,
            highlight=False,
        )
    training_curves.save(path, drawn, target)
    _written(path)


def _written(path: Path) -> None:
    err_console.print(f"plot written to {path}", soft_wrap=True, highlight=False)


def _layers_report(
    found: list[precision.RunStatistics],
    output: ReportFormat,
    plot: Path | None,
    statistic: str,
    operands: tuple[str, tuple[str, ...]],
) -> None:
    if not found:
        raise UserError(
            "no run has layer statistics: train with 'analysis: {every: 50}' in the base "
            "configuration of the sweep file"
        )
    if plot is not None:
        grids = [precision.heatmap_grid(item, statistic, operands[1]) for item in found]
        fig = plots.heatmaps(grids, statistic, operands[0])
        rows = [
            {"run": i.run.id, **{k: _shown(k, v) for k, v in row.items()}}
            for i in found
            for row in precision.layer_summary(i)
        ]
        plots.write(plot, fig, "hbfp-dse: precision per layer", rows)
        _written(plot)
    if output is ReportFormat.json:
        print_json({"statistics": precision.flat_rows(found)})
    elif output is ReportFormat.csv:
        typer.echo(_csv(precision.flat_rows(found)), nl=False)
    else:
        for item in found:
            _print_layer_table(item)


def _print_layer_table(item: precision.RunStatistics) -> None:
    table = Table(
        title=f"{item.title}: mean over epochs; W1 = Wasserstein distance / std",
        title_justify="left",
    )
    table.add_column("layer", overflow="fold")
    table.add_column("formats", overflow="fold")
    for title in ("W1", "SQNR dB", "flushed"):  # the order of layer_summary's statistics
        for role in precision.ROLES:
            table.add_column(f"{title} {role}", justify="right")
    for row in precision.layer_summary(item):
        table.add_row(*(_shown(key, value) for key, value in row.items()))
    print_table(table)


def _shown(key: str, value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return _cell(key, value)
    return str(value)


def _cell(key: str, value: float) -> str:
    if key.startswith("sqnr"):
        return f"{value:.1f}"
    if key.startswith("flushed"):
        return f"{100 * value:.1f}%"
    return f"{value:.4f}"


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["sweep"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
