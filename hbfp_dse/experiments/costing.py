"""What a training configuration costs, from its model, data shape and schedule alone."""

from __future__ import annotations

from dataclasses import dataclass

from ..cost.areas import UnitAreas
from ..cost.density import RunCost, run_cost
from ..cost.gemms import AttentionShape
from ..training.config import TrainConfig
from ..training.results import format_names
from .model_shapes import layers_and_macs, shape_of


@dataclass(frozen=True)
class PlannedCost:
    cost: RunCost
    schedule: list[dict[str, str]]  # resolved format names, one dict per epoch
    attention: dict[str, AttentionShape]  # the attention layers' matmuls, by layer name


def config_cost(config: TrainConfig, areas: UnitAreas | None = None) -> PlannedCost:
    """Density and MAC shares of ``config`` without training it (one dry forward pass), its
    layers as training converts them (multi-head attention as one layer where it is)."""
    layers, macs = layers_and_macs(shape_of(config))
    resolved = config.schedule.build().resolve(layers, config.epochs)
    return PlannedCost(
        cost=run_cost(macs, resolved, areas),
        schedule=[format_names(formats) for formats in resolved],
        attention={m.name: m.attention for m in macs if m.attention is not None},
    )
