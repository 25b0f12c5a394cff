"""HBFP emulation: quantized layers, their GEMM operands, and per-layer/per-epoch schedules."""

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .quant_spec import BLOCKINGS, Blocking, Operand, Quantization, QuantSpec
from .schedule import LayerInfo, Rule, Schedule, final_epochs
from .statistics import STATISTICS, OperandStatistics

if TYPE_CHECKING:
    from .attention import QuantMatmulFunction, QuantMultiheadAttention
    from .layers import (
        QuantConv1d,
        QuantConv2d,
        QuantConv3d,
        QuantizedLayer,
        QuantLinear,
        apply_formats,
        attach_probe,
        convert,
        layer_infos,
        quantized_layers,
        round_master_weights,
    )
    from .probe import Probe

_TORCH_MODULES = {
    "QuantMatmulFunction": "attention",
    "QuantMultiheadAttention": "attention",
    "Probe": "probe",
    **dict.fromkeys(
        (
            "QuantConv1d",
            "QuantConv2d",
            "QuantConv3d",
            "QuantizedLayer",
            "QuantLinear",
            "apply_formats",
            "attach_probe",
            "convert",
            "layer_infos",
            "quantized_layers",
            "round_master_weights",
        ),
        "layers",
    ),
}
__getattr__ = lazy_attributes(__name__, _TORCH_MODULES)

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
