"""What a training configuration costs, from its model, data shape and schedule alone."""

from __future__ import annotations

from dataclasses import dataclass

from ..cost.areas import UnitAreas
from ..cost.density import RunCost, run_cost
from ..cost.macs import count_macs
from ..training.assembly import model_for
from ..training.config import TrainConfig
from ..training.results import format_names


@dataclass(frozen=True)
class PlannedCost:
    cost: RunCost
    schedule: list[dict[str, str]]  # resolved format names, one dict per epoch


def config_cost(config: TrainConfig, areas: UnitAreas | None = None) -> PlannedCost:
    """Density and MAC shares of ``config`` without training it (one dry forward pass).

    Attention stays unconverted: the cost model prices module GEMMs only, so a quantized
    ``nn.MultiheadAttention`` would be a scheduled layer it cannot count.
    """
    built = model_for(config)
    macs = count_macs(built.model, built.input_shape)
    resolved = config.schedule.build().resolve(built.layers, config.epochs)
    return PlannedCost(
        cost=run_cost(macs, resolved, areas),
        schedule=[format_names(formats) for formats in resolved],
    )
