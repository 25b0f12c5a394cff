"""``hbfp-dse sweep``: run every pending run of a sweep file, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..errors import UserError
from ..experiments.estimate import Estimate, estimate
from ..experiments.report import summarize, table_order
from ..experiments.store import NewRun, RunRecord, Store
from ..experiments.sweepfile import (
    DEFAULT_MAX_RUNS,
    SweepSpec,
    TooManyRunsError,
    load_sweep,
    on_device,
)
from ..lazy import lazy_module
from ..training.device_names import DeviceError
from .common import console, err_console, exit_on_outage, user_errors
from .interrupts import resumable
from .options import (
    CheckpointDirOption,
    DbOption,
    DeviceOption,
    GpusOption,
    StaleAfterOption,
    WorkersOption,
)
from .progress import SweepProgress, training_progress
from .stored import as_registered, stored_runs
from .tables import print_summary_table, summary_rows

if TYPE_CHECKING:
    from ..experiments.runner import WorkerOptions

# Loaded when the command runs: they import torch, which --help does not need.
processes = lazy_module("hbfp_dse.experiments.processes")
registration = lazy_module("hbfp_dse.experiments.registration")
runner = lazy_module("hbfp_dse.experiments.runner")
devices = lazy_module("hbfp_dse.training.devices")
worker_checks = lazy_module("hbfp_dse.cli.workers")

RetryFailedOption = Annotated[bool, typer.Option("--retry-failed", help="Run failed runs again.")]
MaxRunsOption = Annotated[
    int, typer.Option("--max-runs", min=1, help="Refuse a sweep of more runs than this.")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="List the runs and their density; write nothing.")
]


@user_errors
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (YAML).")],
    db: DbOption = None,
    workers: WorkersOption = 1,
    device: DeviceOption = None,
    gpus: GpusOption = None,
    checkpoint_dir: CheckpointDirOption = None,
    stale_after: StaleAfterOption = 120.0,
    retry_failed: RetryFailedOption = False,
    max_runs: MaxRunsOption = DEFAULT_MAX_RUNS,
    dry_run: DryRunOption = False,
) -> None:
    """Run every pending run of a sweep file. Rerunning resumes where it stopped."""
    spec, text = load_sweep(file)
    device = worker_checks.checked_device(device)
    spec = as_registered(db, on_device(spec, device), text)
    options = _worker_options(device, stale_after, checkpoint_dir)
    placed = worker_checks.placed_workers(options, workers, spec.base.device, gpus)
    runs = _planned(spec, max_runs)
    if dry_run:
        console.print(_plan_table(spec.name, runs))
        console.print(
            _totals(estimate(runs, stored_runs(db, with_epochs=True))),
            highlight=False,
            soft_wrap=True,
        )
        return
    registration.check_data(spec)
    worker_checks.checked_checkpoint_dir(db, checkpoint_dir)
    store = Store(db)
    sweep_id, run_ids = registration.register_sweep(store, spec, text, file, runs, retry_failed)
    _check_trainable_here(spec, store.safe_url)
    finished = store.count_finished(sweep_id, run_ids)
    err_console.print(
        f"sweep [bold]{spec.name}[/]: {len(run_ids)} runs, {finished} already finished; "
        f"store {store.safe_url}"
    )
    _note_dropped(spec.name, store.runs(spec.name), run_ids)
    resume = "running runs are marked interrupted; run the same command again to resume"
    with resumable(resume), training_progress() as progress:
        display = SweepProgress(progress, len(run_ids), finished)
        processes.run_workers(store, sweep_id, placed, on_event=display)
    exit_on_outage(display.outage)
    summaries = table_order(summarize(store.runs(spec.name, with_epochs=True)))
    if summaries:
        print_summary_table(summary_rows(summaries))
    _finish(spec.name, store.status_counts(sweep_id), display.stopped)


def _note_dropped(name: str, stored: list[RunRecord], planned: list[int]) -> None:
    """Runs an earlier version of the file registered stay in the store (and in reports);
    a search's trials belong to no version of the file."""
    planned_ids = set(planned)
    kept = {r.config_id for r in stored if r.id in planned_ids}
    dropped = sorted(
        {
            r.label
            for r in stored
            if r.trial_number is None and r.id not in planned_ids and r.config_id not in kept
        }
    )
    if dropped:
        err_console.print(
            f"note: {name} also holds {len(dropped)} configuration(s) this file no longer "
            f"has, kept and reported: {', '.join(dropped)}",
            highlight=False,
            soft_wrap=True,
        )


def _check_trainable_here(spec: SweepSpec, url: str) -> None:
    """Runs for a device this machine lacks are registered (for the workers of machines that
    have one, sharing the store), but not attempted here: a worker would only set them aside."""
    try:
        devices.resolve_device(spec.base.device)
    except DeviceError as err:
        raise UserError(
            f"sweep {spec.name}: its runs train on {spec.base.device}, and {err.reason}; they "
            f"are registered in {url}: run the same command where there is one, with this --db"
        ) from None


def _worker_options(
    device: str | None, stale_after: float, checkpoint_dir: Path | None
) -> WorkerOptions:
    try:
        return runner.WorkerOptions(device, stale_after, checkpoint_dir=checkpoint_dir)
    except runner.StaleAfterError as err:
        raise UserError(f"--stale-after {err.stale_after:g}: at least {err.minimum:g}") from None


def _planned(spec: SweepSpec, max_runs: int) -> list[NewRun]:
    try:
        return registration.plan_sweep(spec, max_runs)
    except TooManyRunsError as err:
        raise UserError(f"{err}; raise the limit with --max-runs {err.count}") from None


def _finish(name: str, counts: dict[str, int], stopped: list[str]) -> None:
    """The sweep's statuses; exit 1 where runs failed or a worker stopped on faults."""
    summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    console.print(f"sweep {name}: {summary}. See 'hbfp-dse report --sweep {name}'.")
    if counts.get("failed"):
        # The error texts are in the store; a failed run is a bug or a broken environment.
        err_console.print(
            f"{counts['failed']} run(s) failed: 'hbfp-dse report --sweep {name} "
            "--format json' shows their errors; --retry-failed runs them again"
        )
    if stopped:
        err_console.print(
            f"{len(stopped)} worker(s) stopped before the sweep was done (see above); "
            "run the same command again to resume",
            soft_wrap=True,
        )
    if counts.get("failed") or stopped:
        raise typer.Exit(1)


def _totals(found: Estimate) -> str:
    line = f"{found.runs} runs, {found.epochs} epochs"
    if found.seconds is None:
        return line + "; no stored run to estimate the time from"
    hours, rest = divmod(round(found.seconds), 3600)
    time = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
    covered = "" if found.estimated_runs == found.runs else f" for {found.estimated_runs} of them"
    return (
        f"{line}; about {time}{covered} on one worker, from the epoch times of stored runs "
        "of the same model, data and arithmetic"
    )


def _plan_table(name: str, runs: list[NewRun]) -> Table:
    table = Table(title=f"sweep {name}: runs (dry run, nothing written)")
    for column in ("#", "label", "kind", "seed", "density vs FP32", "vs BF16", "run hash"):
        table.add_column(column, justify="right" if column in ("#", "seed") else "left")
    for index, run in enumerate(runs, start=1):
        table.add_row(
            str(index),
            run.label,
            run.kind,
            str(run.seed),
            f"{run.density:.2f}x",
            f"{run.density_vs_bf16:.2f}x",
            run.run_hash,
        )
    return table
