"""``hbfp-dse train``: train one configuration with progress bars."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..cost.plan import config_cost
from ..training.trainer import train as run_training
from .common import OutputFormat, console, print_json, user_errors
from .progress import TrainingBars, training_progress
from .runconfig import (
    ConfigFile,
    DatasetOption,
    EpochsOption,
    ModelOption,
    ScheduleOption,
    build_config,
)


@user_errors
def train(
    config_file: ConfigFile = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    epochs: EpochsOption = None,
    schedule: ScheduleOption = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda[:N]")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Save after every epoch; resume if it exists."),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """Train one configuration (a YAML file and/or flags) and report every epoch."""
    overrides = {
        "model": model,
        "dataset": dataset,
        "epochs": epochs,
        "schedule": schedule,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "data_dir": data_dir,
    }
    config = build_config(config_file, **overrides)
    if lr is not None:
        config = config.model_copy(
            update={"optimizer": config.optimizer.model_copy(update={"lr": lr})}
        )
    planned = config_cost(config)
    with training_progress() as progress:
        bars = TrainingBars(progress, f"{config.model} / {config.dataset}")
        result = run_training(config, callbacks=[bars], checkpoint=checkpoint)
        bars.close()
    density = planned.cost.density_vs_fp32
    if output is OutputFormat.json:
        print_json(
            {
                "status": result.status,
                "message": result.message,
                "device": result.device,
                "final_test_acc": result.final_test_acc,
                "best_test_acc": result.best_test_acc,
                "density_vs_fp32": density,
                "epochs": [asdict(record) for record in result.epochs],
            }
        )
    else:
        table = Table(title=f"{config.model} on {config.dataset} ({result.device})")
        for column in ("epoch", "train loss", "train acc", "test loss", "test acc", "lr", "s"):
            table.add_column(column, justify="right")
        table.add_column("formats")
        for r in result.epochs:
            table.add_row(
                str(r.epoch + 1),
                f"{r.train_loss:.4f}",
                f"{r.train_acc:.2%}",
                f"{r.test_loss:.4f}",
                f"{r.test_acc:.2%}",
                f"{r.lr:.4g}",
                f"{r.seconds:.1f}",
                ", ".join(sorted(set(r.formats.values()))),
            )
        console.print(table)
        console.print(
            f"status [bold]{result.status}[/]"
            + (f" ({result.message})" if result.message else "")
            + f"; final test accuracy {result.final_test_acc or 0:.2%}; "
            f"density {density:.2f}x FP32"
        )
    if result.status == "diverged":
        raise typer.Exit(1)
