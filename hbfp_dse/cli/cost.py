"""``hbfp-dse cost``: density, MAC shares and a per-layer breakdown, without training."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.table import Table

from ..cost.density import RunCost
from ..cost.gemms import GEMM_ROLES, AttentionShape
from ..lazy import lazy_module
from ..training.config import load_train_config
from .common import console, print_json, user_errors
from .options import (
    AreasOption,
    ConfigFile,
    DatasetOption,
    EpochsOption,
    ModelOption,
    OutputFormat,
    OutputOption,
    ScheduleOption,
    areas_table,
)

# Loaded when the command runs: they import torch, which --help does not need.
costing = lazy_module("hbfp_dse.experiments.costing")


@user_errors
def cost(
    config_file: ConfigFile = None,
    model: ModelOption = None,
    dataset: DatasetOption = None,
    epochs: EpochsOption = None,
    schedule: ScheduleOption = None,
    areas: AreasOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Price a model and schedule in silicon area: density vs FP32/BF16, MACs per mantissa
    width and per layer."""
    overrides = {"model": model, "dataset": dataset, "epochs": epochs, "schedule": schedule}
    config = load_train_config(config_file, overrides)
    planned = costing.config_cost(config, areas_table(areas))
    result = planned.cost
    if output is OutputFormat.json:
        print_json(
            {
                "model": config.model,
                "dataset": config.dataset,
                "epochs": config.epochs,
                "density_vs_fp32": result.density_vs_fp32,
                "density_vs_bf16": result.density_vs_bf16,
                "macs_per_sample": result.macs,
                "mac_share": result.mac_share_by_label(),
                "layers": _layers(result, planned.attention),
            }
        )
        return
    console.print(
        f"[bold]{config.model}[/] on {config.dataset}, {config.epochs} epochs: "
        f"density [bold green]{result.density_vs_fp32:.2f}x[/] FP32, "
        f"{result.density_vs_bf16:.2f}x BF16; {result.macs:,} MACs per sample"
    )
    shares = result.mac_share_by_label().items()
    console.print("MACs by mantissa width: " + ", ".join(f"{k} {v:.2%}" for k, v in shares))
    console.print(_layer_table(result))
    if planned.attention:
        console.print(_attention_table(result, planned.attention))


def _layers(result: RunCost, attention: dict[str, AttentionShape]) -> list[dict[str, Any]]:
    layers = []
    for layer in result.layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "type": layer.module_type,
            "macs_per_sample": layer.macs,
            "mac_fraction": result.mac_fraction(layer),
            "density_vs_fp32": layer.density,
            "formats": list(layer.formats),
        }
        shape = attention.get(layer.name)
        if shape is not None:
            entry["attention"] = {
                **asdict(shape),
                "matmul_macs_per_sample": {  # each of Q·Kᵀ and P·V, each epoch
                    role: shape.matmul_macs for role in GEMM_ROLES
                },
            }
        layers.append(entry)
    return layers


def _attention_table(result: RunCost, attention: dict[str, AttentionShape]) -> Table:
    table = Table(title="Attention matmuls (per sample and epoch; each of forward, dgrad, wgrad)")
    for column in ("layer", "heads x dim", "queries x keys", "Q·Kᵀ MACs", "P·V MACs", "formats"):
        table.add_column(column, justify="left" if column in ("layer", "formats") else "right")
    formats = {layer.name: layer.formats for layer in result.layers}
    for name, shape in attention.items():
        table.add_row(
            name,
            f"{shape.heads} x {shape.head_dim}",
            f"{shape.queries} x {shape.keys}",
            f"{shape.matmul_macs:,}",
            f"{shape.matmul_macs:,}",
            ", ".join(formats[name]),
        )
    return table


def _layer_table(result: RunCost) -> Table:
    table = Table(title="Per layer (all epochs, all three GEMMs)")
    for column in ("layer", "type", "MACs/sample", "share", "density", "formats"):
        table.add_column(
            column, justify="right" if column in ("MACs/sample", "share", "density") else "left"
        )
    for layer in result.layers:
        table.add_row(
            layer.name,
            layer.module_type,
            f"{layer.macs:,}",
            f"{result.mac_fraction(layer):.1%}",
            f"{layer.density:.2f}x",
            ", ".join(layer.formats),
        )
    return table
