"""A configuration's model as training, costing and search see it: built, converted, listed.

Only the dataset's shape is needed, never its data, so the cost model and the search can
build the model of any configuration cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..emulation import LayerInfo, convert, layer_infos
from ..errors import UserError
from ..formats import NoiseStream
from .config import FOLDER_DATASET, TEXT_DATASETS, TrainConfig, is_import_path
from .custom import user_dataset, user_language_model
from .data import DATASET_INFO, DATASET_NAMES, DatasetInfo
from .folders import folder_info
from .models import LANGUAGE_MODEL_NAMES, TRANSFORMER_NAMES, build_model
from .text import text_info


@dataclass(frozen=True)
class BuiltModel:
    """An untrained model with its quantized layers in place (all FP32 until formats are
    applied), the dataset it is shaped for, and those layers in module order."""

    model: nn.Module
    info: DatasetInfo
    layers: list[LayerInfo]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: channels, height, width; or the tokens of a text sample."""
        if self.info.kind == "text":
            return (self.info.image_size,)
        return (self.info.in_channels, self.info.image_size, self.info.image_size)

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.int64 if self.info.kind == "text" else torch.float32


def dataset_info(config: TrainConfig) -> DatasetInfo:
    """The facts of the configuration's dataset: a name's, or an image folder's."""
    if config.dataset in TEXT_DATASETS:
        return text_info(config.dataset, config.context_length)
    if is_import_path(config.dataset):
        return user_dataset(config.dataset, config.data_dir).info
    if config.dataset == FOLDER_DATASET:
        root = Path(config.data_dir).expanduser() if config.data_dir is not None else None
        return folder_info(root, config.image_size)
    info = DATASET_INFO.get(config.dataset)
    if info is None:
        names = ", ".join(
            (*DATASET_NAMES, FOLDER_DATASET, *TEXT_DATASETS, "package.module:function")
        )
        raise UserError(f"unknown dataset {config.dataset!r}; accepted names: {names}")
    return info


def model_for(
    config: TrainConfig, *, noise: NoiseStream | None = None, attention: bool = False
) -> BuiltModel:
    """The model of ``config`` on the CPU, initialised from torch's global RNG.

    ``noise`` drives the layers' stochastic rounding; ``attention`` also converts every
    ``nn.MultiheadAttention`` into one quantized layer (training passes
    ``config.quantize_attention``); the shipped Transformers' attention is always converted.
    """
    info = dataset_info(config)
    text = info.kind == "text"
    if is_import_path(config.model) and text:
        model = user_language_model(config.model, info.num_classes, info.image_size)
    elif not is_import_path(config.model) and (config.model in LANGUAGE_MODEL_NAMES) != text:
        kind = "text" if text else "images"
        raise UserError(f"model {config.model!r} does not train on {kind} ({config.dataset})")
    else:
        model = build_model(config.model, info.num_classes, info.in_channels, info.image_size)
    convert(model, noise=noise, attention=attention or config.model in TRANSFORMER_NAMES)
    return BuiltModel(model, info, layer_infos(model))
