"""Pure-torch quantization kernels.

Every function here is written so that ``torch.compile`` fuses it into one pass and
gives the same bits as eager execution on every backend: exponents of block maxima come from
their float bits (no ``frexp``, which compiles to a scalar loop), scales are exact powers of two
built from float bits, and nearest rounding is ``torch.round`` (half to even) after the clamp.
Dividing by a scale is either a division (``divide=True``: the CPU's, IEEE-exact, and faster
there) or a multiplication by exact reciprocal factors (elsewhere: a compiled division may be
approximate, as Triton's is by default); the two give the same bits.
Format parameters arrive as Python ints so that the compiler specialises on them.
Stochastic rounding takes a ``key`` (see ``noise.py``) and makes its noise in the same pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .definitions import ElementSpec
from .noise import uniform_noise

_INF = float("inf")
_MIN_NORMAL = 2.0**-126
_EXP_FIELD = 23  # an FP32 exponent field starts at bit 23 (bias 127)
# Smallest exponent an FP32 power of two can take (the least subnormal, 2**-149).
FP32_MIN_POW2 = -149


def pow2(exponent: Tensor) -> Tensor:
    """Exact FP32 ``2**exponent`` for int32 exponents in [-149, 127], subnormals included."""
    normal = (exponent + 127).clamp(min=1) << 23
    subnormal = torch.ones_like(exponent) << (exponent - FP32_MIN_POW2).clamp(0, 22)
    return torch.where(exponent >= -126, normal, subnormal).view(torch.float32)


def reciprocal_factors(exponent: Tensor, lowest: int) -> list[Tensor]:
    """Exact powers of two whose product is ``2**-exponent``, for int32 exponents in
    [``lowest``, 127]: one factor, or, where ``-lowest`` passes FP32's largest power of two
    (2**127), a first factor of 2**64 for the exponents below -127 (1 elsewhere) and a second.
    Multiplying by them in turn rounds once, as dividing by ``2**exponent`` would: the first
    product is exact (scaling up) or already infinite, as the quotient then is too."""
    if -lowest <= 127:
        return [pow2(-exponent)]
    tiny = exponent < -127
    return [torch.where(tiny, 2.0**64, 1.0), pow2(torch.where(tiny, -exponent - 64, -exponent))]


def times(x: Tensor, factors: list[Tensor]) -> Tensor:
    for factor in factors:
        x = x * factor
    return x


def divided(x: Tensor, exponent: Tensor, lowest: int, divide: bool) -> Tensor:
    """``x / 2**exponent``, rounded once: by division, or by the reciprocal factors."""
    if divide:
        return x / pow2(exponent)
    return times(x, reciprocal_factors(exponent, lowest))


def floor_log2(magnitude: Tensor) -> Tensor:
    """``floor(log2(m))`` for finite m > 0 as int32, exact for subnormals too; -1 for m = 0
    (``frexp(m).exponent - 1`` in all these cases).

    Read from the exponent field; a subnormal is first scaled by 2**64 (exactly) into the
    normal range.
    """
    tiny = magnitude < _MIN_NORMAL
    normal = torch.where(tiny, magnitude * 2.0**64, magnitude)
    exponent = (normal.view(torch.int32) >> _EXP_FIELD) - 127
    exponent = torch.where(tiny, exponent - 64, exponent)
    return torch.where(magnitude == 0, -1, exponent)


def round_integer(v: Tensor, lo: float, hi: float, noise: Tensor | None) -> Tensor:
    """Clamp to [lo, hi] and round to an integer: half-to-even, or stochastic with noise.

    Stochastic rounding compares the uniform noise with the fractional part, which is
    exact, instead of ``floor(v + u)`` whose FP32 addition can itself round up.
    A zero result keeps the sign of ``v`` (as an IEEE cast does): ``torch.round`` does so
    itself (one vector instruction when compiled); in stochastic rounding ``-1 + 1`` would
    otherwise turn ``-0.3`` into ``+0.0``.
    """
    if noise is None:
        return torch.round(v.clamp(lo, hi))
    low = torch.floor(v)
    q = (low + (noise < v - low).to(v.dtype)).clamp(lo, hi)
    return torch.copysign(q, v)


def to_blocks(x: Tensor, block: int) -> Tensor:
    """Split dim 1 of a contiguous [outer, L, inner] tensor into blocks of ``block``:
    [outer, L / block, block, inner], zero-padding the last block (zeros move no maximum).

    A 4-D ``x`` is already blocked by the caller and is returned as it is.
    """
    if x.dim() == 4:
        return x
    outer, length, inner = x.shape
    pad = -length % block
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(outer, -1, block, inner)


def from_blocks(blocks: Tensor, x: Tensor) -> Tensor:
    """The blocked result of a kernel in the shape of its input ``x``."""
    if x.dim() == 4:
        return blocks
    outer, _, _, inner = blocks.shape
    length = x.shape[1]
    # Contiguous, so that the caller's reshape and permutation are views.
    return blocks.reshape(outer, -1, inner)[:, :length].contiguous()


def finite_abs(x: Tensor) -> tuple[Tensor, Tensor]:
    magnitude = x.abs()
    finite = magnitude < _INF  # False for NaN and Inf
    return torch.where(finite, magnitude, 0.0), finite


def hbfp(
    x: Tensor,
    key: Tensor | None,
    *,
    mantissa_bits: int,
    block_size: int,
    exp_lo: int,
    exp_hi: int,
    sub_block_size: int | None,
    micro_range: int,
    divide: bool = False,
) -> Tensor:
    """HBFP quantization along dim 1 of [outer, L, inner] (docs/formats.md), or of a 4-D
    [outer, L / B, B, inner] that the caller blocked (B = ``block_size``; one block shorter
    than B, [outer, 1, L, inner], only without sub-blocks).

    Non-finite elements pass through.

    ``exp_lo`` already includes the FP32 floor ``mantissa_bits - 151``: below it every
    FP32 value of the block lies on the block's grid, so clamping there changes nothing.
    """
    scale = hbfp_scale(
        x,
        mantissa_bits=mantissa_bits,
        block_size=block_size,
        exp_lo=exp_lo,
        exp_hi=exp_hi,
        sub_block_size=sub_block_size,
        micro_range=micro_range,
        divide=divide,
    )
    return hbfp_apply(x, key, *scale, mantissa_bits=mantissa_bits, block_size=block_size)


def hbfp_scale(
    x: Tensor,
    *,
    mantissa_bits: int,
    block_size: int,
    exp_lo: int,
    exp_hi: int,
    sub_block_size: int | None,
    micro_range: int,
    divide: bool = False,
) -> tuple[Tensor, ...]:
    """The first half of ``hbfp``: the power-of-two scale of each block, [outer, L / B, 1,
    inner] (with sub-blocks, one per element: [outer, L / B, B, inner]), followed, unless
    ``divide``, by the factors that divide by it (``reciprocal_factors``)."""
    blocks = to_blocks(x, block_size)
    magnitude, _ = finite_abs(blocks)
    exponent = floor_log2(magnitude.amax(2, keepdim=True)).clamp(exp_lo, exp_hi)
    if sub_block_size is not None:
        outer, count, _, inner = blocks.shape
        shape = (outer, count, block_size // sub_block_size, sub_block_size, inner)
        sub_max = magnitude.reshape(shape).amax(3, keepdim=True)
        block_exp = exponent.unsqueeze(2)
        floor = (block_exp - micro_range).clamp(min=FP32_MIN_POW2 + mantissa_bits - 2)
        exponent = torch.maximum(floor_log2(sub_max), floor).minimum(block_exp)
        exponent = exponent.expand(shape).reshape(blocks.shape)
    step = mantissa_bits - 2
    lowest = exp_lo if sub_block_size is None else FP32_MIN_POW2 + step  # sub-blocks reach it
    scale_exponent = exponent - step
    if divide:
        return (pow2(scale_exponent),)
    return pow2(scale_exponent), *reciprocal_factors(scale_exponent, lowest - step)


def hbfp_apply(
    x: Tensor,
    key: Tensor | None,
    scale: Tensor,
    *reciprocal: Tensor,
    mantissa_bits: int,
    block_size: int,
) -> Tensor:
    """The second half of ``hbfp``: round every element on its block's ``scale``
    (``reciprocal``: the factors that divide by it; without them, a division)."""
    blocks = to_blocks(x, block_size)
    limit = float((1 << (mantissa_bits - 1)) - 1)
    noise = None if key is None else to_blocks(uniform_noise(x.shape, key), block_size)
    scaled = times(blocks, list(reciprocal)) if reciprocal else blocks / scale
    q = round_integer(scaled, -limit, limit, noise) * scale
    return from_blocks(torch.where(blocks.abs() < _INF, q, blocks), x)


def element(
    v: Tensor, noise: Tensor | None, spec: ElementSpec, saturate: bool, divide: bool = False
) -> Tensor:
    """Element-wise cast of finite FP32 values to a narrow float or fixed-point element.

    Overflow saturates to ``max_normal`` when ``saturate``, else becomes infinite.
    """
    if spec.exp_bits == 0:
        step, steps_per_unit = 2.0**-spec.man_bits, float(1 << spec.man_bits)
        limit = spec.max_normal * steps_per_unit
        if noise is None:  # MXINT8 rounds half away from zero
            scaled = v.abs() * steps_per_unit
            low = torch.floor(scaled)
            q = torch.copysign((low + (scaled - low >= 0.5).to(v.dtype)).clamp(max=limit), v)
        else:
            q = round_integer(v * steps_per_unit, -limit, limit, noise)
        return q * step
    magnitude = v.abs()
    step_exponent = floor_log2(magnitude).clamp(spec.emin, 127) - spec.man_bits
    step = pow2(step_exponent)
    steps = divided(v, step_exponent, spec.emin - spec.man_bits, divide)
    bound = float(1 << (spec.man_bits + 1))
    q = round_integer(steps, -bound, bound, noise) * step
    if saturate:
        return q.clamp(-spec.max_normal, spec.max_normal)
    return torch.where(q.abs() > spec.max_normal, q * _INF, q)


def minifloat(x: Tensor, key: Tensor | None, *, spec: ElementSpec, divide: bool = False) -> Tensor:
    """Element-wise narrow float cast; NaN stays NaN, Inf stays Inf (NaN without Inf)."""
    _, finite = finite_abs(x)
    noise = None if key is None else uniform_noise(x.shape, key)
    q = element(torch.where(finite, x, 0.0), noise, spec, not spec.has_inf, divide)
    passthrough = x if spec.has_inf else x - x  # Inf - Inf is NaN
    return torch.where(finite, q, passthrough)


def mx(
    x: Tensor, key: Tensor | None, *, spec: ElementSpec, block_size: int, divide: bool = False
) -> Tensor:
    """OCP MX v1.0 along dim 1 of [outer, L, inner] (or pre-blocked 4-D, as for ``hbfp``):
    an E8M0 scale per block, elements cast with saturation.

    A block holding NaN or Inf has a NaN scale, so the whole block decodes to NaN.
    """
    blocks = to_blocks(x, block_size)
    magnitude, finite = finite_abs(blocks)
    all_finite = finite.all(2, keepdim=True)
    shared = (floor_log2(magnitude.amax(2, keepdim=True)) - spec.emax).clamp(-127, 127)
    scale = pow2(shared)
    noise = None if key is None else to_blocks(uniform_noise(x.shape, key), block_size)
    elements = divided(torch.where(finite, blocks, 0.0), shared, -127, divide)
    q = element(elements, noise, spec, True, divide) * scale
    return from_blocks(torch.where(all_finite, q, float("nan")), x)
