"""Autograd functions whose three GEMMs run on quantized operands, accumulating in FP32.

Blocking along a GEMM's reduction axis, for a convolution, orders that axis with the
kernel tap outermost: forward and data-gradient blocks run along channels at one tap,
weight-gradient blocks along the batch at one pixel. No block then spans two taps or
two pixels, so quantizing X, W and dY as tensors and running the native convolution is
exactly the blocked GEMM, without unfolding patches. With groups, blocks stay within
a group. Linear layers block along features (forward, data gradient) and along the
flattened batch and sequence rows (weight gradient).

The ``blocking`` of a call (``quant_spec.Blocking``): ``reduction`` as above; ``reference``
quantizes X and W once in the forward pass (along its reduction axes) and dY once, and the
backward GEMMs reuse them; ``emulator`` does the same but blocks every tensor along its last
dimension, as the authors' public emulator does (a convolution's activations and output
gradients along the image width, its weights along the kernel width).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .quant_spec import Blocking, Operand

# quantize_operand(tensor, operand, dim) -> quantized tensor of the same shape.
OperandQuantizer = Callable[[Tensor, Operand, int], Tensor]


def _grouped(
    quantize: OperandQuantizer, t: Tensor, operand: Operand, dim: int, groups: int
) -> Tensor:
    """Quantize along ``dim`` with blocks that never cross a group boundary."""
    if groups == 1:
        return quantize(t, operand, dim)
    shape = t.shape
    split = (*shape[:dim], groups, shape[dim] // groups, *shape[dim + 1 :])
    return quantize(t.reshape(split), operand, dim + 1).reshape(shape)


class QuantLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        quantize: OperandQuantizer,
        blocking: Blocking,
    ) -> Tensor:
        # Features are the last dimension of x, of the weight and of dY: in emulator
        # blocking, a Linear layer blocks as in reference blocking.
        xq = quantize(x, Operand.X_FORWARD, -1)
        wq = quantize(weight, Operand.W_FORWARD, 1)
        reference = blocking != "reduction"
        ctx.quantize, ctx.reference, ctx.has_bias = quantize, reference, bias is not None
        if reference:
            ctx.save_for_backward(xq, wq)
        else:
            ctx.save_for_backward(x, weight)
        return F.linear(xq, wq, bias)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        quantize: OperandQuantizer = ctx.quantize
        dy2 = dy.reshape(-1, dy.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        dx = dw = db = None
        if ctx.reference:
            dy_d = dy_w = quantize(dy2, Operand.DY_DGRAD, 1)
            w_d, x_w = weight, x2
        else:
            dy_d = quantize(dy2, Operand.DY_DGRAD, 1) if ctx.needs_input_grad[0] else None
            w_d = quantize(weight, Operand.W_DGRAD, 0) if ctx.needs_input_grad[0] else None
            dy_w = quantize(dy2, Operand.DY_WGRAD, 0) if ctx.needs_input_grad[1] else None
            x_w = quantize(x2, Operand.X_WGRAD, 0) if ctx.needs_input_grad[1] else None
        if ctx.needs_input_grad[0]:
            dx = (dy_d @ w_d).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            dw = dy_w.t() @ x_w
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db, None, None


@dataclass(frozen=True)
class ConvGeometry:
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


class QuantConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        geometry: ConvGeometry,
        quantize: OperandQuantizer,
        blocking: Blocking,
    ) -> Tensor:
        g = geometry.groups
        reference = blocking != "reduction"
        if blocking == "emulator":  # rows of the image and of the kernel never span groups
            xq = quantize(x, Operand.X_FORWARD, -1)
            wq = quantize(weight, Operand.W_FORWARD, -1)
        else:
            xq = _grouped(quantize, x, Operand.X_FORWARD, 1, g)
            wq = quantize(weight, Operand.W_FORWARD, 1)
        ctx.geometry, ctx.quantize, ctx.reference = geometry, quantize, reference
        ctx.emulator = blocking == "emulator"
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        if reference:
            ctx.save_for_backward(xq, wq)
        else:
            ctx.save_for_backward(x, weight)
        conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
        return conv(xq, wq, bias, geometry.stride, geometry.padding, geometry.dilation, g)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        geometry: ConvGeometry = ctx.geometry
        quantize: OperandQuantizer = ctx.quantize
        g = geometry.groups
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        if ctx.emulator:
            dy_d = dy_w = quantize(dy, Operand.DY_DGRAD, -1)
            w_d, x_w = weight, x
        elif ctx.reference:
            dy_d = dy_w = _grouped(quantize, dy, Operand.DY_DGRAD, 1, g)
            w_d, x_w = weight, x
        else:
            dy_d = _grouped(quantize, dy, Operand.DY_DGRAD, 1, g) if need_dx else None
            w_d = _grouped(quantize, weight, Operand.W_DGRAD, 0, g) if need_dx else None
            dy_w = quantize(dy, Operand.DY_WGRAD, 0) if need_dw else None
            x_w = quantize(x, Operand.X_WGRAD, 0) if need_dw else None

        def convolution_backward(grad: Tensor, inp: Tensor, w: Tensor, mask: list[bool]) -> Any:
            return torch.ops.aten.convolution_backward(
                grad,
                inp,
                w,
                ctx.bias_sizes,
                list(geometry.stride),
                list(geometry.padding),
                list(geometry.dilation),
                False,
                [0] * (x.dim() - 2),
                g,
                mask,
            )

        dx = dw = db = None
        if need_dx:
            dx = convolution_backward(dy_d, x, w_d, [True, False, False])[0]
        if need_dw:
            dw = convolution_backward(dy_w, x_w, weight, [False, True, False])[1]
        if need_db and ctx.bias_sizes is not None:
            db = dy.sum(dim=[0, *range(2, dy.dim())])
        return dx, dw, db, None, None, None
