"""Quantized Linear and Conv layers, and converting a model to use them.

Conversion swaps the class of each exact ``nn.Linear``/``nn.ConvNd`` instance, so
parameters, state-dict keys and optimizers are untouched and nothing global is patched.
A layer's ``quant`` (a :class:`QuantSpec` or None for plain FP32) can change at any time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..formats import Format, NoiseStream, quantize
from .functions import ConvGeometry, OperandQuantizer, QuantConvFunction, QuantLinearFunction
from .probe import Probe
from .quant_spec import Operand, Quantization, QuantSpec
from .schedule import FP32, LayerInfo


class QuantizedLayer(nn.Module):
    """Mixin state of a converted layer: its current spec, stochastic rounding's noise and
    the probe that watches its operands (with the layer's name there)."""

    quant: QuantSpec | None = None
    noise: NoiseStream | None = None
    probe: tuple[Probe, str] | None = None

    def operand_quantizer(self, spec: QuantSpec) -> OperandQuantizer:
        noise, probe = self.noise, self.probe

        def quantize_operand(t: Tensor, operand: Operand, dim: int) -> Tensor:
            rounding = spec.rounding(operand)
            q = quantize(t, spec.fmt, dim, rounding, noise)
            if probe is not None and probe[0].enabled:
                probe[0].record(probe[1], operand, spec.fmt, dim, t, q, rounding)
            # quantize returns FP32; a float64 or half layer needs its own dtype back.
            return q.to(t.dtype)

        return quantize_operand

    def gemm_weights(self) -> list[Tensor]:
        """The weight operands of the layer's GEMMs (what wide weight storage rounds)."""
        return [self.weight]

    def active_spec(self) -> QuantSpec | None:
        spec = self.quant
        return None if spec is None or spec.is_identity else spec


class QuantLinear(nn.Linear, QuantizedLayer):
    def forward(self, x: Tensor) -> Tensor:
        spec = self.active_spec()
        if spec is None:
            return super().forward(x)
        return QuantLinearFunction.apply(
            x, self.weight, self.bias, self.operand_quantizer(spec), spec.blocking
        )


class _QuantConvNd(QuantizedLayer):
    weight: Tensor
    bias: Tensor | None
    stride: tuple[int, ...]
    padding: Any
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    _reversed_padding_repeated_twice: list[int]

    def _quant_forward(self, x: Tensor, spec: QuantSpec) -> Tensor:
        if x.dim() == self.weight.dim() - 1:  # unbatched input, as torch's conv layers accept
            return self._quant_forward(x.unsqueeze(0), spec).squeeze(0)
        padding = self.padding
        if isinstance(padding, str) or self.padding_mode != "zeros":
            # 'same' and non-zero padding modes pad explicitly, outside the GEMM.
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
            padding = (0,) * len(self.stride)
        geometry = ConvGeometry(self.stride, tuple(padding), self.dilation, self.groups)
        return QuantConvFunction.apply(
            x,
            self.weight,
            self.bias,
            geometry,
            self.operand_quantizer(spec),
            spec.blocking,
        )


class QuantConv1d(nn.Conv1d, _QuantConvNd):
    def forward(self, x: Tensor) -> Tensor:
        spec = self.active_spec()
        return super().forward(x) if spec is None else self._quant_forward(x, spec)


class QuantConv2d(nn.Conv2d, _QuantConvNd):
    def forward(self, x: Tensor) -> Tensor:
        spec = self.active_spec()
        return super().forward(x) if spec is None else self._quant_forward(x, spec)


class QuantConv3d(nn.Conv3d, _QuantConvNd):
    def forward(self, x: Tensor) -> Tensor:
        spec = self.active_spec()
        return super().forward(x) if spec is None else self._quant_forward(x, spec)


_QUANTIZED_CLASS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: QuantLinear,
    nn.Conv1d: QuantConv1d,
    nn.Conv2d: QuantConv2d,
    nn.Conv3d: QuantConv3d,
}


def convert(
    model: nn.Module,
    spec: QuantSpec | None = None,
    *,
    inplace: bool = True,
    noise: NoiseStream | None = None,
    attention: bool = False,
) -> nn.Module:
    """Make every exact Linear/Conv1d/2d/3d of ``model`` a quantized layer with ``spec``.

    Subclasses with their own ``forward`` are left alone. With ``attention``, every exact
    ``nn.MultiheadAttention`` also becomes one quantized layer whose projections and
    attention matmuls all run on quantized operands. Returns the converted model
    (a deep copy when ``inplace`` is False). Its layers' stochastic rounding draws from
    ``noise`` (one stream for the whole model, call after call).
    """
    from .attention import QuantMultiheadAttention  # it builds on this module

    classes = dict(_QUANTIZED_CLASS)
    if attention:
        classes[nn.MultiheadAttention] = QuantMultiheadAttention
    if not inplace:
        model = copy.deepcopy(model)
    for module in model.modules():
        quantized = classes.get(type(module))
        if quantized is not None:
            module.__class__ = quantized
        if isinstance(module, QuantizedLayer):
            module.quant = spec
            module.noise = noise
    return model


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantizedLayer]]:
    """The converted layers in module order (the order schedules count positions in)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantizedLayer)]


def attach_probe(model: nn.Module, probe: Probe | None) -> None:
    """Let ``probe`` watch every quantized layer of ``model`` (None: stop watching)."""
    for name, layer in quantized_layers(model):
        layer.probe = None if probe is None else (probe, name)


@torch.no_grad()
def round_master_weights(model: nn.Module, fmt: Format | str) -> None:
    """Round the master weights of every quantized layer to a wide storage format.

    Called after each optimizer step; blocks run along the forward reduction axis.
    """
    for _, layer in quantized_layers(model):
        if layer.active_spec() is not None:
            for weight in layer.gemm_weights():
                weight.copy_(quantize(weight, fmt, dim=1).to(weight.dtype))


def layer_infos(model: nn.Module) -> list[LayerInfo]:
    return [LayerInfo(name, _kind(layer)) for name, layer in quantized_layers(model)]


def apply_formats(
    model: nn.Module, formats: Mapping[str, Format], quantization: Quantization
) -> None:
    """Switch each quantized layer to its format in place (model and optimizer untouched)."""
    for name, layer in quantized_layers(model):
        layer.quant = quantization.spec(formats.get(name, FP32))


def _kind(layer: QuantizedLayer) -> str:
    # The original class: QuantConv2d derives from Conv2d.
    return next(c.__name__ for c in type(layer).__mro__[1:] if c.__module__.startswith("torch"))
