"""``hbfp-dse best``: the densest stored configuration that reaches a target accuracy."""

from __future__ import annotations

import typer
import yaml
from rich.table import Table

from ..experiments.report import (
    ConfigSummary,
    best_for_target,
    decision_warnings,
    schedule_config,
    summarize,
    summary_json,
)
from ..experiments.store import Store
from .common import console, err_console, print_json, user_errors
from .options import (
    BestFormat,
    BestFormatOption,
    DbOption,
    SweepOption,
    TargetAccOption,
    checked_target,
)


@user_errors
def best(
    target_acc: TargetAccOption,
    sweep: SweepOption = None,
    db: DbOption = None,
    output: BestFormatOption = BestFormat.table,
) -> None:
    """The densest configuration whose mean validation accuracy over its seeds reaches the
    target (test accuracy is reported beside it, never chosen on)."""
    target = checked_target(target_acc)
    summaries = summarize(Store(db, create=False).runs(sweep))
    winner, closest = best_for_target(summaries, target)
    for warning in decision_warnings(summaries, winner, target):
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if winner is None:
        message = f"no configuration reaches {target:.2%}"
        if closest is not None:
            message += (
                f"; the closest is {closest.label!r} ({closest.sweep}) at "
                f"{closest.selection_accuracy:.2%} {closest.selected_on} accuracy, density "
                f"{closest.density:.2f}x"
            )
        err_console.print(message)
        raise typer.Exit(1)
    if output is BestFormat.json:
        print_json({"target": target, **summary_json(winner), "config": winner.config})
    elif output is BestFormat.yaml:
        typer.echo(
            f"# best for target {target:.2%}: {winner.label} ({winner.sweep}), "
            f"{_accuracies(winner)}, density {winner.density:.2f}x FP32\n"
            "# a baseline entry for a sweep file:\n"
            + yaml.safe_dump([schedule_config(winner)], sort_keys=False)
        )
    else:
        console.print(
            f"best for target {target:.2%}: [bold]{winner.label}[/] from sweep {winner.sweep}\n"
            f"{_accuracies(winner)} over {len(winner.done)} seed(s), density "
            f"{winner.density:.2f}x FP32, runs " + ", ".join(str(r.id) for r in winner.runs)
        )
        console.print(_schedule_table(winner))


def _accuracies(summary: ConfigSummary) -> str:
    """What it was chosen on, and the test accuracy reported beside it."""
    test = f"test accuracy {summary.accuracy:.2%}{_interval(summary.accuracy_ci)}"
    if summary.validation_accuracy is None:
        return test + " (chosen on it: no validation split)"
    validation = f"{summary.validation_accuracy:.2%}{_interval(summary.selection_ci)}"
    return f"validation accuracy {validation} (chosen on it), {test}"


def _interval(half: float | None) -> str:
    return "" if half is None else f" ± {100 * half:.2f} (95% CI)"


def _schedule_table(winner: ConfigSummary) -> Table:
    table = Table(title="schedule (epochs are 0-based, inclusive)")
    table.add_column("epochs")
    table.add_column("layer")
    table.add_column("format")
    for segment in winner.schedule or []:
        first, last = segment["epochs"]
        for layer, fmt in segment["formats"].items():
            table.add_row(f"{first}-{last}", layer, fmt)
    return table
