"""What a training configuration costs, from its model, data shape and schedule alone."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..cost.areas import UnitAreas
from ..cost.density import RunCost, run_cost
from ..cost.macs import AttentionShape, LayerMACs, count_macs
from ..emulation import LayerInfo
from ..training.assembly import model_for
from ..training.config import TrainConfig
from ..training.results import format_names


@dataclass(frozen=True)
class PlannedCost:
    cost: RunCost
    schedule: list[dict[str, str]]  # resolved format names, one dict per epoch
    attention: dict[str, AttentionShape]  # the attention layers' matmuls, by layer name


# What decides a model's layers and their shapes.
_SHAPE_FIELDS = (
    "model",
    "dataset",
    "data_dir",
    "image_size",
    "context_length",
    "quantize_attention",
)


@functools.cache
def _layers_and_macs(
    shape: tuple[tuple[str, object], ...],
) -> tuple[tuple[LayerInfo, ...], tuple[LayerMACs, ...]]:
    """Building a model and counting its MACs is most of the cost of pricing a run: once per
    model and data shape (a sweep of 10^4 runs prices one model 10^4 times)."""
    config = TrainConfig.model_validate(dict(shape))
    built = model_for(config, attention=config.quantize_attention)
    macs = count_macs(built.model, built.input_shape, input_dtype=built.input_dtype)
    return tuple(built.layers), tuple(macs)


def config_cost(config: TrainConfig, areas: UnitAreas | None = None) -> PlannedCost:
    """Density and MAC shares of ``config`` without training it (one dry forward pass), its
    layers as training converts them (multi-head attention as one layer where it is)."""
    shape = tuple((name, getattr(config, name)) for name in _SHAPE_FIELDS)
    layers, macs = _layers_and_macs(shape)
    resolved = config.schedule.build().resolve(layers, config.epochs)
    return PlannedCost(
        cost=run_cost(macs, resolved, areas),
        schedule=[format_names(formats) for formats in resolved],
        attention={m.name: m.attention for m in macs if m.attention is not None},
    )
