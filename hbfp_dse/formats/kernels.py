"""Pure-torch quantization kernels.

Every function here is written so that ``torch.compile`` fuses it into one pass and
gives the same bits as eager execution: exponents come from ``frexp`` of block maxima,
scales are exact powers of two built from float bits, and nearest rounding adds and
subtracts 1.5 * 2**23 (round-half-to-even in FP32 for |v| < 2**22) after the clamp.
Format parameters arrive as Python ints so that the compiler specialises on them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .spec import ElementSpec

_RNE_MAGIC = 12582912.0  # 1.5 * 2**23
_INF = float("inf")
# Smallest exponent an FP32 power of two can take (the least subnormal, 2**-149).
FP32_MIN_POW2 = -149


def pow2(exponent: Tensor) -> Tensor:
    """Exact FP32 ``2**exponent`` for int32 exponents in [-149, 127], subnormals included."""
    normal = (exponent + 127).clamp(min=1) << 23
    subnormal = torch.ones_like(exponent) << (exponent - FP32_MIN_POW2).clamp(0, 22)
    return torch.where(exponent >= -126, normal, subnormal).view(torch.float32)


def floor_log2(magnitude: Tensor) -> Tensor:
    """``floor(log2(m))`` for m > 0 as int32 (frexp is exact for subnormals too)."""
    return torch.frexp(magnitude).exponent - 1


def round_integer(v: Tensor, lo: float, hi: float, noise: Tensor | None) -> Tensor:
    """Clamp to [lo, hi] and round to an integer: half-to-even, or stochastic with noise.

    Stochastic rounding compares the uniform noise with the fractional part, which is
    exact, instead of ``floor(v + u)`` whose FP32 addition can itself round up.
    A zero result keeps the sign of ``v`` (as an IEEE cast does): the magic-number
    addition and ``-1 + 1`` would otherwise turn ``-0.3`` into ``+0.0``.
    """
    if noise is None:
        q = (v.clamp(lo, hi) + _RNE_MAGIC) - _RNE_MAGIC
    else:
        low = torch.floor(v)
        q = (low + (noise < v - low).to(v.dtype)).clamp(lo, hi)
    return torch.copysign(q, v)


def to_blocks(x: Tensor, block: int) -> Tensor:
    """Split dim 1 of a contiguous [outer, L, inner] tensor into blocks of ``block``:
    [outer, L / block, block, inner], zero-padding the last block (zeros move no maximum)."""
    outer, length, inner = x.shape
    pad = -length % block
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(outer, -1, block, inner)


def from_blocks(blocks: Tensor, length: int) -> Tensor:
    outer, _, _, inner = blocks.shape
    # Contiguous, so that the caller's reshape and permutation are views.
    return blocks.reshape(outer, -1, inner)[:, :length].contiguous()


def _finite_abs(x: Tensor) -> tuple[Tensor, Tensor]:
    magnitude = x.abs()
    finite = magnitude < _INF  # False for NaN and Inf
    return torch.where(finite, magnitude, 0.0), finite


def hbfp(
    x: Tensor,
    noise: Tensor | None,
    *,
    mantissa_bits: int,
    block_size: int,
    exp_lo: int,
    exp_hi: int,
    sub_block_size: int | None,
    micro_range: int,
) -> Tensor:
    """HBFP quantization along dim 1 of [outer, L, inner] (BRIEF §2).

    Non-finite elements pass through.

    ``exp_lo`` already includes the FP32 floor ``mantissa_bits - 151``: below it every
    FP32 value of the block lies on the block's grid, so clamping there changes nothing.
    """
    blocks = to_blocks(x, block_size)
    magnitude, finite = _finite_abs(blocks)
    exponent = floor_log2(magnitude.amax(2, keepdim=True)).clamp(exp_lo, exp_hi)
    if sub_block_size is not None:
        outer, count, _, inner = blocks.shape
        shape = (outer, count, block_size // sub_block_size, sub_block_size, inner)
        sub_max = magnitude.reshape(shape).amax(3, keepdim=True)
        block_exp = exponent.unsqueeze(2)
        floor = (block_exp - micro_range).clamp(min=FP32_MIN_POW2 + mantissa_bits - 2)
        exponent = torch.maximum(floor_log2(sub_max), floor).minimum(block_exp)
        exponent = exponent.expand(shape).reshape(blocks.shape)
    scale = pow2(exponent - (mantissa_bits - 2))
    limit = float((1 << (mantissa_bits - 1)) - 1)
    if noise is not None:
        noise = to_blocks(noise, block_size)
    q = round_integer(blocks / scale, -limit, limit, noise) * scale
    return from_blocks(torch.where(finite, q, blocks), x.shape[1])


def element(v: Tensor, noise: Tensor | None, spec: ElementSpec, saturate: bool) -> Tensor:
    """Element-wise cast of finite FP32 values to a narrow float or fixed-point element.

    Overflow saturates to ``max_normal`` when ``saturate``, else becomes infinite.
    """
    if spec.exp_bits == 0:
        step = 2.0**-spec.man_bits
        limit = spec.max_normal / step
        if noise is None:  # MXINT8 rounds half away from zero
            scaled = v.abs() / step
            low = torch.floor(scaled)
            q = torch.copysign((low + (scaled - low >= 0.5).to(v.dtype)).clamp(max=limit), v)
        else:
            q = round_integer(v / step, -limit, limit, noise)
        return q * step
    magnitude = v.abs()
    exponent = floor_log2(magnitude).clamp(spec.emin, 127)
    step = pow2(exponent - spec.man_bits)
    bound = float(1 << (spec.man_bits + 1))
    q = round_integer(v / step, -bound, bound, noise) * step
    if saturate:
        return q.clamp(-spec.max_normal, spec.max_normal)
    return torch.where(q.abs() > spec.max_normal, q * _INF, q)


def minifloat(x: Tensor, noise: Tensor | None, *, spec: ElementSpec) -> Tensor:
    """Element-wise narrow float cast; NaN stays NaN, Inf stays Inf (NaN without Inf)."""
    _, finite = _finite_abs(x)
    q = element(torch.where(finite, x, 0.0), noise, spec, saturate=not spec.has_inf)
    passthrough = x if spec.has_inf else x - x  # Inf - Inf is NaN
    return torch.where(finite, q, passthrough)


def mx(x: Tensor, noise: Tensor | None, *, spec: ElementSpec, block_size: int) -> Tensor:
    """OCP MX v1.0 along dim 1 of [outer, L, inner]: an E8M0 scale per block, elements cast
    with saturation.

    A block holding NaN or Inf has a NaN scale, so the whole block decodes to NaN.
    """
    blocks = to_blocks(x, block_size)
    magnitude, finite = _finite_abs(blocks)
    all_finite = finite.all(2, keepdim=True)
    shared = (floor_log2(magnitude.amax(2, keepdim=True)) - spec.emax).clamp(-127, 127)
    scale = pow2(shared)
    if noise is not None:
        noise = to_blocks(noise, block_size)
    q = element(torch.where(finite, blocks, 0.0) / scale, noise, spec, saturate=True) * scale
    return from_blocks(torch.where(all_finite, q, float("nan")), x.shape[1])
