"""``hbfp-dse sweep``: run every pending run of a sweep file, resumably."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import Progress, TaskID
from rich.table import Table

from ..errors import UserError
from ..experiments.runner import (
    DATA_CACHE,
    WorkerOptions,
    register_sweep,
    run_fields,
    run_workers,
)
from ..experiments.spec import expand, load_sweep
from ..experiments.store import Store
from ..training.config import TrainConfig
from ..training.trainer import resolve_device
from .common import console, err_console, user_errors
from .progress import training_progress

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL of the results store; default $HBFP_DSE_DB or sqlite:///results.db.",
    ),
]


class SweepProgress:
    """Overall runs, and per worker the current run's epochs with live accuracy."""

    def __init__(self, progress: Progress, total: int, already: int, label: str = "runs") -> None:
        self.progress = progress
        self.overall = progress.add_task(label, total=total, completed=already, status="")
        self.workers: dict[str, TaskID] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind, worker = event["event"], event["worker"]
        if worker not in self.workers:
            self.workers[worker] = self.progress.add_task(
                f"  {worker}", total=None, status="waiting"
            )
        task = self.workers[worker]
        if kind == "start":
            density = event.get("density")
            self.progress.update(
                task,
                description=f"  {event['label']} (seed {event['seed']})",
                total=event["epochs"],
                completed=event["start_epoch"],
                status=f"density {density:.2f}x" if density else "",
            )
        elif kind == "step":
            self.progress.update(
                task,
                status=f"epoch {event['epoch'] + 1} step {event['step']}/{event['steps']} "
                f"loss {event['loss']:.3f}",
            )
        elif kind == "epoch":
            self.progress.update(
                task, completed=event["epoch"] + 1, status=f"test acc {event['test_acc']:.2%}"
            )
        elif kind == "finish":
            status = event["status"]
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != "interrupted":
                self.progress.advance(self.overall)
            self.progress.update(
                self.overall, status=" ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            )
        elif kind == "idle":
            self.progress.update(task, visible=False)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@user_errors
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (YAML).")],
    db: DbOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local worker processes.")] = 1,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda[:N]; overrides the file.")
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir",
            help="Where epoch checkpoints live; every worker must reach it. "
            "Default: beside a SQLite store.",
        ),
    ] = None,
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            min=1.0,
            help="Seconds without a heartbeat before a running run is taken over.",
        ),
    ] = 120.0,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed runs again.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs and their density; write nothing.")
    ] = False,
) -> None:
    """Run every pending run of a sweep file. Rerunning resumes where it stopped."""
    spec, text = load_sweep(file)
    if device is not None:
        check_device(device)
    if dry_run:
        _show_plan(spec)
        return
    for run in expand(spec):
        DATA_CACHE.get(run.config)  # a missing dataset stops us before anything is written
    store = Store(db)
    sweep_id, run_ids = register_sweep(store, spec, text, file, retry_failed)
    counts = store.status_counts(sweep_id)
    finished = sum(counts.get(s, 0) for s in ("done", "diverged", "failed"))
    err_console.print(
        f"sweep [bold]{spec.name}[/]: {len(run_ids)} runs, {finished} already finished; "
        f"store {store.safe_url}"
    )
    options = WorkerOptions(device=device, stale_after=stale_after, checkpoint_dir=checkpoint_dir)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with training_progress() as progress:
            display = SweepProgress(progress, len(run_ids), finished)
            run_workers(store, sweep_id, options, workers, on_event=display)
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted:[/] running runs are marked interrupted; "
            "run the same command again to resume"
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = store.status_counts(sweep_id)
    summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    console.print(f"sweep {spec.name}: {summary}. See 'hbfp-dse report --sweep {spec.name}'.")
    if counts.get("failed"):
        # The error texts are in the store; a failed run is a bug or a broken environment.
        err_console.print(
            f"{counts['failed']} run(s) failed: 'hbfp-dse report --sweep {spec.name} "
            "--format json' shows their errors; --retry-failed runs them again"
        )
        raise typer.Exit(1)


def check_device(device: str) -> None:
    try:
        TrainConfig(device=device)
    except ValidationError as err:
        raise UserError(f"--device {device}: {err.errors()[0]['msg']}") from None
    resolve_device(device)


def _show_plan(spec: Any) -> None:
    table = Table(title=f"sweep {spec.name}: runs (dry run, nothing written)")
    for column in ("#", "label", "kind", "seed", "density vs FP32", "vs BF16", "run hash"):
        table.add_column(column, justify="right" if column in ("#", "seed") else "left")
    for index, run in enumerate(expand(spec), start=1):
        fields = run_fields(run)
        table.add_row(
            str(index),
            run.label,
            run.kind,
            str(run.config.seed),
            f"{fields['density']:.2f}x",
            f"{fields['density_vs_bf16']:.2f}x",
            run.run_hash,
        )
    console.print(table)
