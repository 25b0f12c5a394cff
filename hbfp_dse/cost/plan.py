"""What a training configuration costs, from its model, data shape and schedule alone."""

from __future__ import annotations

from dataclasses import dataclass

from ..emulation import convert, layer_infos
from ..errors import UserError
from ..training.config import TrainConfig
from ..training.data import DATASET_INFO
from ..training.models import build_model
from .areas import UnitAreas
from .density import RunCost, run_cost
from .macs import count_macs


@dataclass(frozen=True)
class PlannedCost:
    cost: RunCost
    schedule: list[dict[str, str]]  # resolved format names, one dict per epoch


def config_cost(config: TrainConfig, areas: UnitAreas | None = None) -> PlannedCost:
    """Density and MAC shares of ``config`` without training it (one dry forward pass)."""
    info = DATASET_INFO.get(config.dataset)
    if info is None:
        raise UserError(f"unknown dataset {config.dataset!r}")
    model = convert(build_model(config.model, info.num_classes, info.in_channels, info.image_size))
    macs = count_macs(model, (info.in_channels, info.image_size, info.image_size))
    resolved = config.schedule.build().resolve(layer_infos(model), config.epochs)
    return PlannedCost(
        cost=run_cost(macs, resolved, areas),
        schedule=[{name: fmt.name for name, fmt in epoch.items()} for epoch in resolved],
    )
