"""What a training configuration costs, from its model, data shape and schedule alone."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cost.areas import UnitAreas
from ..cost.density import RunCost, run_cost
from ..cost.macs import LayerMACs, count_macs
from ..emulation import LayerInfo
from ..training.assembly import model_for
from ..training.config import TrainConfig
from ..training.results import format_names


@dataclass(frozen=True)
class PlannedCost:
    cost: RunCost
    schedule: list[dict[str, str]]  # resolved format names, one dict per epoch


@functools.cache
def _layers_and_macs(
    model: str, dataset: str
) -> tuple[tuple[LayerInfo, ...], tuple[LayerMACs, ...]]:
    """Building a model and counting its MACs is most of the cost of pricing a run: once per
    model and dataset (a sweep of 10^4 runs prices one model 10^4 times)."""
    built = model_for(TrainConfig(model=model, dataset=dataset))
    return tuple(built.layers), tuple(count_macs(built.model, built.input_shape))


def config_cost(config: TrainConfig, areas: UnitAreas | None = None) -> PlannedCost:
    """Density and MAC shares of ``config`` without training it (one dry forward pass).

    Attention stays unconverted: the cost model prices module GEMMs only, so a quantized
    ``nn.MultiheadAttention`` would be a scheduled layer it cannot count.
    """
    layers, macs = _layers_and_macs(config.model, config.dataset)
    resolved = config.schedule.build().resolve(layers, config.epochs)
    return PlannedCost(
        cost=run_cost(macs, resolved, areas),
        schedule=[format_names(formats) for formats in resolved],
    )
