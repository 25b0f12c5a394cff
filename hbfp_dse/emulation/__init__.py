"""HBFP emulation: quantized layers, their GEMM operands, and per-layer/per-epoch schedules."""

from .attention import QuantMatmulFunction, QuantMultiheadAttention
from .layers import (
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantizedLayer,
    QuantLinear,
    convert,
    quantized_layers,
    store_weights,
)
from .schedule import LayerInfo, Rule, Schedule, apply_formats, layer_infos
from .spec import BLOCKINGS, Blocking, Operand, QuantSpec

__all__ = [
    "BLOCKINGS",
    "Blocking",
    "LayerInfo",
    "Operand",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantLinear",
    "QuantMatmulFunction",
    "QuantMultiheadAttention",
    "QuantSpec",
    "QuantizedLayer",
    "Rule",
    "Schedule",
    "apply_formats",
    "convert",
    "layer_infos",
    "quantized_layers",
    "store_weights",
]
