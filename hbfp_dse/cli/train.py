"""``hbfp-dse train``: train one configuration with progress bars."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import UserError
from ..lazy import lazy_module
from ..training.config import TrainConfig, load_train_config
from ..training.device_names import device_type
from ..training.results import RunResult
from .common import console, print_json, user_errors
from .options import (
    ConfigFile,
    DatasetOption,
    DeviceOption,
    EpochsOption,
    ModelOption,
    OutputFormat,
    OutputOption,
    ScheduleOption,
)
from .progress import TrainingBars, training_progress

# Loaded when the command runs: they import torch, which --help does not need.
costing = lazy_module("hbfp_dse.experiments.costing")
training_data = lazy_module("hbfp_dse.training.data")
distributed = lazy_module("hbfp_dse.training.distributed")
trainer = lazy_module("hbfp_dse.training.trainer")

CheckpointOption = Annotated[
    Path | None, typer.Option("--checkpoint", help="Save after every epoch; resume if it exists.")
]


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
    device: DeviceOption = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    checkpoint: CheckpointOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Train one configuration (a YAML file and/or flags) and report every epoch. Under
    torchrun (--nproc-per-node N) the N processes train it together, with DDP."""
    overrides = {"model": model, "dataset": dataset, "epochs": epochs, "schedule": schedule}
    overrides |= {"batch_size": batch_size, "lr": lr, "seed": seed, "device": device}
    config = load_train_config(config_file, overrides | {"data_dir": data_dir})
    density = costing.config_cost(config).cost.density_vs_fp32
    try:
        data = trainer.load_config_data(config)
    except training_data.DatasetNotFoundError as err:
        raise UserError(f"{err}, or pass --data-dir DIR") from None
    with distributed.process_group(device_type(config.device)) as ranks:
        if ranks is not None and not ranks.leader:  # the leader reports
            trainer.train(config, checkpoint=checkpoint, data=data)
            return
        with training_progress() as progress:
            bars = TrainingBars(progress, f"{config.model} / {config.dataset}")
            result = trainer.train(config, callbacks=[bars], checkpoint=checkpoint, data=data)
            bars.close()
    if output is OutputFormat.json:
        print_json(_json(result, density))
    else:
        console.print(_table(config, result))
        console.print(
            f"status [bold]{result.status}[/]"
            + (f" ({result.message})" if result.message else "")
            + f"; final test accuracy {result.final_test_acc or 0:.2%}; "
            f"density {density:.2f}x FP32"
        )
    if result.status == "diverged":
        raise typer.Exit(1)


def _json(result: RunResult, density: float) -> dict[str, object]:
    return {
        "status": result.status,
        "message": result.message,
        "device": result.device,
        "final_test_acc": result.final_test_acc,
        "best_test_acc": result.best_test_acc,
        "density_vs_fp32": density,
        "epochs": [asdict(record) for record in result.epochs],
    }


def _table(config: TrainConfig, result: RunResult) -> Table:
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
    return table
