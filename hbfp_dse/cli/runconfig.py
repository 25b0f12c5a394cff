"""Building a TrainConfig from an optional YAML file plus command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..configfile import read_yaml, validate
from ..training.config import TrainConfig

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


def schedule_from_text(text: str) -> Any:
    """``hbfp4`` is uniform; ``booster`` or ``booster:hbfp4:hbfp6:1`` is Accuracy Booster."""
    if text.split(":")[0] != "booster":
        return text
    parts = text.split(":")[1:]
    keys = ("low", "high", "last_epochs")
    return {"booster": dict(zip(keys, parts, strict=False))}


def build_config(path: Path | None, **overrides: Any) -> TrainConfig:
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    if isinstance(data, dict):
        if overrides.get("schedule") is not None:
            overrides["schedule"] = schedule_from_text(overrides["schedule"])
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return validate(TrainConfig, data, source)
