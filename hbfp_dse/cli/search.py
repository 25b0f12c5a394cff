"""``hbfp-dse search``: Optuna looks for the densest schedule that reaches a target accuracy."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path
from typing import Annotated

import optuna
import typer

from ..errors import UserError
from ..experiments.report import parse_target
from ..experiments.runner import WorkerOptions
from ..experiments.search import best_feasible_trial, search_history
from ..experiments.searching import SearchJob, default_study_name, prepare, run_search_workers
from ..experiments.spec import load_sweep
from ..experiments.store import Store
from .common import OutputFormat, console, err_console, print_json, user_errors
from .progress import training_progress
from .sweep import DbOption, SweepProgress, check_device, raise_interrupt


@user_errors
def search(
    file: Annotated[Path, typer.Argument(help="Sweep file with a 'search:' section.")],
    target_acc: Annotated[
        float, typer.Option("--target-acc", help="Target accuracy: 0.91 or 91 (percent).")
    ],
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Total trials of the study.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1.0, help="Stop after this many seconds.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Local processes sharing the study.")
    ] = 1,
    db: DbOption = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Optuna study name; default NAME@TARGET.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda[:N].")] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Where epoch checkpoints live.")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """Search the file's 'search:' space for the densest schedule with accuracy >= target.

    Every trial is also a run of the sweep in the store, so 'report' and 'best' include it.
    Rerunning the same command resumes the study; several processes (or machines sharing a
    PostgreSQL --db) can work on one study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bars say it better
    target = parse_target(target_acc)
    spec, text = load_sweep(file)
    if spec.search is None:
        raise UserError(f"{file}: no 'search:' section to search")
    if device is not None:
        check_device(device)
    job = SearchJob(
        spec, text, file, target, study or default_study_name(spec, target), trials, timeout
    )
    store = Store(db)
    sweep_id = prepare(store, job)
    options = WorkerOptions(device=device, checkpoint_dir=checkpoint_dir)
    total = trials or spec.search.trials
    err_console.print(
        f"search [bold]{job.study_name}[/]: up to {total} trials for accuracy >= {target:.2%}; "
        f"store {store.safe_url}"
    )
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with warnings.catch_warnings(), training_progress() as progress:
            warnings.simplefilter("ignore", UserWarning)  # anchors skipped are shown below
            display = SweepProgress(progress, total, 0, label="trials")
            found = run_search_workers(store, sweep_id, job, options, workers, display)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted:[/] run the same command again to resume the study")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    best = best_feasible_trial(found)
    history = search_history(found)
    # Skipped repeats and failures are finished trials too; only evaluated ones count.
    evaluated = sum(t.state == optuna.trial.TrialState.COMPLETE for t in found.trials)
    if output is OutputFormat.json:
        print_json(
            {
                "study": job.study_name,
                "target": target,
                "trials": evaluated,
                "best": None
                if best is None
                else {
                    "trial": best.number,
                    "accuracy": best.user_attrs["accuracy"],
                    "density": best.user_attrs["density"],
                    "schedule": best.user_attrs["schedule"],
                    "params": best.params,
                },
                "history": [{"trial": t, "best_density": d} for t, d in history],
            }
        )
    elif best is None:
        console.print(f"no trial of {job.study_name} reached {target:.2%} yet")
    else:
        console.print(
            f"best of {evaluated} evaluated trials: trial {best.number}, accuracy "
            f"{best.user_attrs['accuracy']:.2%}, density {best.user_attrs['density']:.2f}x FP32\n"
            f"see 'hbfp-dse best --sweep {spec.name} --target-acc {target:g}' and "
            f"'hbfp-dse report --sweep {spec.name} --plot search.png'"
        )
    if best is None:
        raise typer.Exit(1)
