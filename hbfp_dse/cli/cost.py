"""``hbfp-dse cost``: density, MAC shares and a per-layer breakdown, without training."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..cost import default_areas, load_areas
from ..cost.plan import config_cost
from .common import OutputFormat, console, print_json, user_errors
from .runconfig import (
    AreasOption,
    ConfigFile,
    DatasetOption,
    EpochsOption,
    ModelOption,
    ScheduleOption,
    build_config,
)


def share_label(key: int | str) -> str:
    return "fp32" if key == "fp32" else f"{key}-bit"


@user_errors
def cost(
    config_file: ConfigFile = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    epochs: EpochsOption = None,
    schedule: ScheduleOption = None,
    areas: AreasOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """Price a model and schedule in silicon area: density vs FP32/BF16, MACs per mantissa
    width and per layer."""
    config = build_config(
        config_file, model=model, dataset=dataset, epochs=epochs, schedule=schedule
    )
    planned = config_cost(config, default_areas() if areas is None else load_areas(areas))
    result = planned.cost
    layers = [
        {
            "name": layer.name,
            "type": layer.module_type,
            "macs_per_sample": layer.macs,
            "mac_fraction": layer.macs / result.macs,
            "density_vs_fp32": layer.density,
            "formats": list(layer.formats),
        }
        for layer in result.layers
    ]
    if output is OutputFormat.json:
        print_json(
            {
                "model": config.model,
                "dataset": config.dataset,
                "epochs": config.epochs,
                "density_vs_fp32": result.density_vs_fp32,
                "density_vs_bf16": result.density_vs_bf16,
                "macs_per_sample": result.macs,
                "mac_share": {share_label(k): v for k, v in result.mac_share.items()},
                "layers": layers,
            }
        )
        return
    console.print(
        f"[bold]{config.model}[/] on {config.dataset}, {config.epochs} epochs: "
        f"density [bold green]{result.density_vs_fp32:.2f}x[/] FP32, "
        f"{result.density_vs_bf16:.2f}x BF16; {result.macs:,} MACs per sample"
    )
    console.print(
        "MACs by mantissa width: "
        + ", ".join(f"{share_label(k)} {v:.2%}" for k, v in result.mac_share.items())
    )
    table = Table(title="Per layer (all epochs, all three GEMMs)")
    for column in ("layer", "type", "MACs/sample", "share", "density", "formats"):
        table.add_column(
            column, justify="right" if column in ("MACs/sample", "share", "density") else "left"
        )
    for layer in layers:
        table.add_row(
            str(layer["name"]),
            str(layer["type"]),
            f"{layer['macs_per_sample']:,}",
            f"{layer['mac_fraction']:.1%}",
            f"{layer['density_vs_fp32']:.2f}x",
            ", ".join(layer["formats"]),
        )
    console.print(table)
