"""``hbfp-dse search``: Optuna looks for the densest schedule that reaches a target accuracy."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..experiments.search.proposal import read_proposal
from ..experiments.store import Store
from ..experiments.sweepfile import load_sweep, on_device
from ..lazy import lazy_module
from .common import console, err_console, exit_on_outage, print_json, user_errors
from .interrupts import resumable
from .options import (
    CheckpointDirOption,
    DbOption,
    DeviceOption,
    GpusOption,
    OutputFormat,
    OutputOption,
    TargetAccOption,
    WorkersOption,
    checked_target,
)
from .progress import SweepProgress, training_progress
from .stored import as_registered

if TYPE_CHECKING:
    from ..experiments.search.trials import SearchJob, SearchOutcome

# Loaded when the command runs: they import torch, which --help does not need.
optuna = lazy_module("optuna")
runner = lazy_module("hbfp_dse.experiments.runner")
search_trials = lazy_module("hbfp_dse.experiments.search.trials")
worker_checks = lazy_module("hbfp_dse.cli.workers")

TrialsOption = Annotated[
    int | None, typer.Option("--trials", min=1, help="Total trials of the study.")
]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", min=1.0, help="Stop after this many seconds.")
]
FromAnalysisOption = Annotated[
    Path | None,
    typer.Option(
        "--from-analysis",
        help="Try this proposal of 'hbfp-dse analyze' (--proposal YAML or --format json) "
        "first, as the nearest point of the space.",
    ),
]
StudyOption = Annotated[
    str | None, typer.Option("--study", help="Optuna study name; default NAME@TARGET.")
]


@user_errors
def search(
    file: Annotated[Path, typer.Argument(help="Sweep file with a 'search:' section.")],
    target_acc: TargetAccOption,
    trials: TrialsOption = None,
    timeout: TimeoutOption = None,
    workers: WorkersOption = 1,
    db: DbOption = None,
    study: StudyOption = None,
    device: DeviceOption = None,
    gpus: GpusOption = None,
    checkpoint_dir: CheckpointDirOption = None,
    output: OutputOption = OutputFormat.table,
    from_analysis: FromAnalysisOption = None,
) -> None:
    """Search the file's 'search:' space for the densest schedule with accuracy >= target.

    Every trial is also a run of the sweep in the store, so 'report' and 'best' include it.
    Rerunning the same command resumes the study; several processes (or machines sharing a
    PostgreSQL --db) can work on one study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bars say it better
    target = checked_target(target_acc)
    spec, text = load_sweep(file)
    device = worker_checks.checked_device(device)
    spec = as_registered(db, on_device(spec, device), text)
    proposal = read_proposal(from_analysis) if from_analysis is not None else None
    job = search_trials.SearchJob.for_sweep(
        spec, text, file, target, study, trials, timeout, proposal
    )
    options = runner.WorkerOptions(device=device, checkpoint_dir=checkpoint_dir)
    placed = worker_checks.placed_workers(options, workers, spec.base.device, gpus)
    search_trials.check_search(job)
    worker_checks.checked_checkpoint_dir(db, checkpoint_dir)
    store = Store(db)
    sweep_id = search_trials.prepare(store, job)
    _banner(job, store)
    resume = "run the same command again to resume the study"
    with resumable(resume), warnings.catch_warnings(), training_progress() as progress:
        warnings.simplefilter("ignore", UserWarning)  # anchors skipped are shown below
        display = SweepProgress(progress, job.total_trials, 0, label="trials")
        outcome = search_trials.run_search_workers(store, sweep_id, job, placed, display)
    exit_on_outage(display.outage)
    if output is OutputFormat.json:
        print_json(_json(outcome))
    else:
        console.print(_summary(outcome, spec.name))
    if outcome.best is None or display.stopped:
        raise typer.Exit(1)


def _banner(job: SearchJob, store: Store) -> None:
    err_console.print(
        f"search [bold]{job.study_name}[/]: up to {job.total_trials} trials for accuracy >= "
        f"{job.target:.2%}; store {store.safe_url}"
    )


def _json(outcome: SearchOutcome) -> dict[str, object]:
    best = outcome.best
    return {
        "study": outcome.study_name,
        "target": outcome.target,
        "trials": outcome.evaluated,
        "best": None
        if best is None
        else {
            "trial": best.number,
            "accuracy": best.accuracy,
            "test_accuracy": best.test_accuracy,
            "density": best.density,
            "schedule": best.schedule,
            "params": best.params,
        },
        "history": [{"trial": t, "best_density": d} for t, d in outcome.history],
    }


def _summary(outcome: search_trials.SearchOutcome, sweep: str) -> str:
    best = outcome.best
    if best is None:
        return f"no trial of {outcome.study_name} reached {outcome.target:.2%} yet"
    return (
        f"best of {outcome.evaluated} evaluated trials: trial {best.number}, accuracy "
        f"{best.accuracy:.2%}{_test(best.test_accuracy)}, density {best.density:.2f}x FP32\n"
        f"see 'hbfp-dse best --sweep {sweep} --target-acc {outcome.target:g}' and "
        f"'hbfp-dse report --sweep {sweep} --plot search.png'"
    )


def _test(accuracy: float | None) -> str:
    return "" if accuracy is None else f" (test {accuracy:.2%})"
