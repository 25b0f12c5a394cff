"""HBFP emulation: quantized layers, their GEMM operands, and per-layer/per-epoch schedules."""

from .attention import QuantMatmulFunction, QuantMultiheadAttention
from .layers import (
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantizedLayer,
    QuantLinear,
    attach_probe,
    convert,
    quantized_layers,
    round_master_weights,
)
from .quant_spec import BLOCKINGS, Blocking, Operand, Quantization, QuantSpec
from .schedule import LayerInfo, Rule, Schedule, apply_formats, final_epochs, layer_infos
from .statistics import STATISTICS, OperandStatistics, Probe

__all__ = [
    "BLOCKINGS",
    "STATISTICS",
    "Blocking",
    "LayerInfo",
    "Operand",
    "OperandStatistics",
    "Probe",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantLinear",
    "QuantMatmulFunction",
    "QuantMultiheadAttention",
    "QuantSpec",
    "Quantization",
    "QuantizedLayer",
    "Rule",
    "Schedule",
    "apply_formats",
    "attach_probe",
    "convert",
    "final_epochs",
    "layer_infos",
    "quantized_layers",
    "round_master_weights",
]
