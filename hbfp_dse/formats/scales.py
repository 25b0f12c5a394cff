"""The scale each element of a tensor is quantized at, for statistics of where precision goes:
its exponent, the largest magnitude representable there, and the magnitude beyond which
nearest rounding is clamped (half a step above the largest: below it a value rounds to the
largest anyway).

HBFP: the exponent its block (or sub-block) shares, after the format's clamps. MX: the block's
E8M0 exponent. Element formats (FP8, BF16, ...): the element's own exponent, at least the
format's smallest normal one; they saturate (or overflow) at their largest normal value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import kernels
from .definitions import ElementSpec, FloatFormat, Format, HBFPFormat, MXFormat, parse_format
from .quantizer import BlockedView, hbfp_parameters, normalise_dim


@dataclass(frozen=True)
class Scales:
    """Per element of the tensor, in its shape: ``exponent`` (int32), ``bound`` (FP32) and
    ``clamped_above`` (FP32: where nearest rounding would pass ``bound``, ties aside)."""

    exponent: Tensor
    bound: Tensor
    clamped_above: Tensor


@torch.no_grad()
def element_scales(x: Tensor, fmt: Format | str, dim: int = -1) -> Scales:
    """The scales ``quantize(x, fmt, dim)`` applies to the finite elements of ``x``."""
    fmt = parse_format(fmt)
    x = x.detach().to(torch.float32)
    if x.dim() == 0:
        found = element_scales(x.reshape(1), fmt, 0)
        return Scales(*(t.reshape(()) for t in (found.exponent, found.bound, found.clamped_above)))
    if isinstance(fmt, FloatFormat):
        spec = fmt.element
        exponent = kernels.floor_log2(kernels.finite_abs(x)[0]).clamp(spec.emin, 127)
        bound = torch.full_like(x, spec.max_normal)
        return Scales(exponent, bound, bound + _top_step(spec) / 2)
    view = BlockedView.of(x, fmt, normalise_dim(dim, x.dim()))
    blocks = kernels.to_blocks(view.blocks, view.fmt.block_size)
    if isinstance(view.fmt, HBFPFormat):
        exponent, bound, step = _hbfp(blocks, view.fmt)
    else:
        assert isinstance(view.fmt, MXFormat)
        spec = view.fmt.element
        block_max = kernels.finite_abs(blocks)[0].amax(2, keepdim=True)
        exponent = (kernels.floor_log2(block_max) - spec.emax).clamp(-127, 127)
        scale = kernels.pow2(exponent)
        bound, step = spec.max_normal * scale, _top_step(spec) * scale
    per_element = [
        view.restore(kernels.from_blocks(t.expand(blocks.shape).contiguous(), view.blocks))
        for t in (exponent, bound, bound + step / 2)
    ]
    return Scales(*per_element)


def _top_step(spec: ElementSpec) -> float:
    """The spacing of an element format's values just below its largest."""
    if spec.exp_bits == 0:  # fixed point (MXINT8)
        return 2.0**-spec.man_bits
    return 2.0 ** (spec.emax - spec.man_bits)


def _hbfp(blocks: Tensor, fmt: HBFPFormat) -> tuple[Tensor, Tensor, Tensor]:
    (scale,) = kernels.hbfp_scale(blocks, **hbfp_parameters(fmt), divide=True)
    limit = float((1 << (fmt.mantissa_bits - 1)) - 1)
    # The scale is one step of the mantissa: the shared exponent is mantissa_bits - 2 above.
    return kernels.floor_log2(scale) + (fmt.mantissa_bits - 2), limit * scale, scale
