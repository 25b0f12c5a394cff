"""``hbfp-dse report``: the stored runs by configuration, with the Pareto front."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import UserError
from ..experiments import precision
from ..experiments.report import (
    ConfigSummary,
    environments,
    run_json,
    search_history,
    summarize,
    summary_json,
    table_order,
)
from ..experiments.store import Store
from ..lazy import lazy_module
from .common import console, err_console, print_json, print_table, user_errors
from .options import DbOption, ReportFormat, ReportFormatOption, SweepOption
from .tables import print_summary_table, summary_rows

# matplotlib loads only for a plot.
plots = lazy_module("hbfp_dse.experiments.plots")

PlotOption = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help="Also draw accuracy against density, or with --layers the heatmaps "
        "(.png, .svg, .pdf, .html).",
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
    layers: LayersOption = False,
    statistic: StatisticOption = "wasserstein",
    operand: OperandOption = "all",
) -> None:
    """Configurations with accuracy (mean over seeds, 95% confidence interval, drop vs FP32),
    density and status; Pareto front marked. With --layers: where each run loses precision,
    per layer and epoch."""
    if not layers and (statistic, operand) != ("wasserstein", "all"):
        raise UserError("--statistic and --operand choose what --layers shows: add --layers")
    if plot is not None:
        _check_plot_path(plot)
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


def _check_plot_path(path: Path) -> None:
    try:
        plots.check_path(path)
    except plots.PlotPathError as err:
        raise UserError(f"--plot {err.path}: {err.reason}") from None


def _save_plot(
    path: Path,
    summaries: list[ConfigSummary],
    history: plots.History | None,
    rows: list[dict[str, Any]],
) -> None:
    plots.save(path, summaries, history, plots.table_html(rows))
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
        plots.write(plot, fig, "hbfp-dse: precision per layer", plots.table_html(rows))
        err_console.print(f"plot written to {plot}", soft_wrap=True, highlight=False)
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
