"""Options several commands share, each defined once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..cost import UnitAreas, default_areas, load_areas
from ..errors import UserError
from ..experiments.target import HOW, TargetError, parse_target


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class BestFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
BestFormatOption = Annotated[BestFormat, typer.Option("--format", help="Output format.")]

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL of the results store; default $HBFP_DSE_DB or sqlite:///results.db.",
    ),
]
SweepOption = Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda[:N]; overrides the file.")
]
WorkersOption = Annotated[int, typer.Option("--workers", min=1, help="Local worker processes.")]
GpusOption = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        help="GPUs the local workers of CUDA runs use, e.g. 0,1,3 (default: every GPU); "
        "worker i trains on the i-th, in turn.",
    ),
]
CheckpointDirOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint-dir",
        help="Where epoch checkpoints live; every worker must reach it. "
        "Default: beside a SQLite store.",
    ),
]
StaleAfterOption = Annotated[
    float,
    typer.Option(
        "--stale-after",
        min=1.0,
        help="Seconds without a heartbeat before a running run is taken over "
        "(at least three heartbeats: 60).",
    ),
]
TargetAccOption = Annotated[
    str, typer.Option("--target-acc", help="Target accuracy: 0.91, 91 or 91%.")
]

ConfigFile = Annotated[
    Path | None, typer.Argument(help="A training YAML file (keys of TrainConfig).")
]
ModelOption = Annotated[str | None, typer.Option("--model", help="Model name, e.g. cnn.")]
DatasetOption = Annotated[str | None, typer.Option("--dataset", help="Dataset name.")]
EpochsOption = Annotated[int | None, typer.Option("--epochs", help="Number of epochs.")]
ScheduleOption = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="A format name for a uniform schedule, or booster[:LOW:HIGH:LAST_EPOCHS].",
    ),
]
AreasOption = Annotated[
    Path | None, typer.Option("--areas", help="Unit-area CSV replacing the built-in table.")
]


def areas_table(path: Path | None) -> UnitAreas:
    return default_areas() if path is None else load_areas(path)


def checked_target(value: str) -> float:
    """``--target-acc`` as a fraction; a bad one is named by its flag."""
    try:
        return parse_target(value)
    except TargetError as err:
        raise UserError(f"--target-acc {err.text} {err.problem}: {HOW}") from None
