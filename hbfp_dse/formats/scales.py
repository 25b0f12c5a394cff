"""The scale each element of a tensor is quantized at, for statistics of where precision goes:
its exponent and the largest magnitude representable there (beyond it a value saturates).

HBFP: the exponent its block (or sub-block) shares, after the format's clamps. MX: the block's
E8M0 exponent. Element formats (FP8, BF16, ...): the element's own exponent, at least the
format's smallest normal one; they saturate at their largest normal value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import kernels
from .definitions import FloatFormat, Format, HBFPFormat, MXFormat, parse_format
from .quantize import BlockedView, _hbfp_parameters, _normalise_dim


@dataclass(frozen=True)
class Scales:
    """Per element of the tensor, in its shape: ``exponent`` (int32) and ``bound`` (FP32)."""

    exponent: Tensor
    bound: Tensor


@torch.no_grad()
def element_scales(x: Tensor, fmt: Format | str, dim: int = -1) -> Scales:
    """The scales ``quantize(x, fmt, dim)`` applies to the finite elements of ``x``."""
    fmt = parse_format(fmt)
    x = x.detach().to(torch.float32)
    if x.dim() == 0:
        found = element_scales(x.reshape(1), fmt, 0)
        return Scales(found.exponent.reshape(()), found.bound.reshape(()))
    if isinstance(fmt, FloatFormat):
        spec = fmt.element
        exponent = kernels.floor_log2(kernels.finite_abs(x)[0]).clamp(spec.emin, 127)
        return Scales(exponent, torch.full_like(x, spec.max_normal))
    view = BlockedView.of(x, fmt, _normalise_dim(dim, x.dim()))
    blocks = kernels.to_blocks(view.blocks, view.fmt.block_size)
    if isinstance(view.fmt, HBFPFormat):
        exponent, bound = _hbfp(blocks, view.fmt)
    else:
        assert isinstance(view.fmt, MXFormat)
        spec = view.fmt.element
        block_max = kernels.finite_abs(blocks)[0].amax(2, keepdim=True)
        exponent = (kernels.floor_log2(block_max) - spec.emax).clamp(-127, 127)
        bound = spec.max_normal * kernels.pow2(exponent)
    per_element = [
        view.restore(kernels.from_blocks(t.expand(blocks.shape).contiguous(), view.blocks))
        for t in (exponent, bound)
    ]
    return Scales(*per_element)


def _hbfp(blocks: Tensor, fmt: HBFPFormat) -> tuple[Tensor, Tensor]:
    (scale,) = kernels.hbfp_scale(blocks, **_hbfp_parameters(fmt), divide=True)
    limit = float((1 << (fmt.mantissa_bits - 1)) - 1)
    # The scale is one step of the mantissa: the shared exponent is mantissa_bits - 2 above.
    return kernels.floor_log2(scale) + (fmt.mantissa_bits - 2), limit * scale
