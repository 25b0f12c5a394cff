"""A slow, independent reference quantizer (docs/formats.md), in exact rational arithmetic.

Works element by element and block by block on plain Python floats with ``Fraction``
and ``math.frexp``; it never calls ``hbfp_dse`` kernels. Torch is used only to move the
blocking dimension last and to rebuild a tensor from lists. Format parameters come from
the format objects' public fields, so the numerics here are independent of the kernels.

Zero results keep the sign of their input (``-0.0`` for a negative value that rounds to
zero), as an IEEE cast does.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from hbfp_dse.formats import FloatFormat, HBFPFormat, MXFormat, NoiseStream, parse_format
from hbfp_dse.formats.noise import uniform_noise

INF = math.inf
NAN = math.nan


@dataclass(frozen=True)
class Element:
    """A narrow element type: float with ``exp_bits``/``man_bits``, or MXINT8's 1.6 fixed point."""

    exp_bits: int
    man_bits: int
    max_normal: Fraction
    has_inf: bool
    saturate: bool  # finite overflow goes to max_normal instead of infinity

    @property
    def emin(self) -> int:
        return 2 - (1 << (self.exp_bits - 1))

    @property
    def emax(self) -> int:
        return floor_log2(self.max_normal)


def _f(text: str) -> Fraction:
    return Fraction(float.fromhex(text))


# Written out from the OCP FP8 / MX v1.0 and IEEE 754 definitions, not from hbfp_dse.
FLOAT_ELEMENTS: dict[str, Element] = {
    "bf16": Element(8, 7, _f("0x1.fep127"), has_inf=True, saturate=False),
    "fp16": Element(5, 10, Fraction(65504), has_inf=True, saturate=False),
    "fp8_e4m3": Element(4, 3, Fraction(448), has_inf=False, saturate=True),
    "fp8_e5m2": Element(5, 2, Fraction(57344), has_inf=True, saturate=False),
}
MX_ELEMENTS: dict[str, Element] = {
    "fp8_e4m3": Element(4, 3, Fraction(448), has_inf=False, saturate=True),
    "fp8_e5m2": Element(5, 2, Fraction(57344), has_inf=True, saturate=True),
    "fp6_e2m3": Element(2, 3, Fraction(15, 2), has_inf=False, saturate=True),
    "fp6_e3m2": Element(3, 2, Fraction(28), has_inf=False, saturate=True),
    "fp4_e2m1": Element(2, 1, Fraction(6), has_inf=False, saturate=True),
    "int8": Element(0, 6, Fraction(127, 64), has_inf=False, saturate=True),
}


# --- exact helpers --------------------------------------------------------------------


def floor_log2(value: float | Fraction) -> int:
    """floor(log2(value)) for value > 0, exact for floats (frexp) and fractions."""
    if isinstance(value, float):
        return math.frexp(value)[1] - 1
    assert value > 0
    e = value.numerator.bit_length() - value.denominator.bit_length()
    # 2**e <= value < 2**(e+1) after at most one correction step.
    if Fraction(2) ** e > value:
        e -= 1
    return e


def pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def round_half_even(v: Fraction) -> int:
    low = math.floor(v)
    frac = v - low
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and low % 2):
        return low + 1
    return low


def round_half_away(v: Fraction) -> int:
    k = math.floor(abs(v) + Fraction(1, 2))
    return -k if v < 0 else k


def clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def to_float32(value: Fraction | float, sign_of: float) -> float:
    """A value that must be exactly an FP32 number (or ±inf); zero takes ``sign_of``'s sign."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    out = float(value)
    assert Fraction(out) == value, f"{value} is not a double"
    if out == 0.0:
        return math.copysign(0.0, sign_of)
    assert struct.unpack("f", struct.pack("f", out))[0] == out, f"{out} is not an FP32 number"
    return out


def is_float32(value: float) -> bool:
    return math.isnan(value) or struct.unpack("f", struct.pack("f", value))[0] == value


# --- element casts -----------------------------------------------------------------------


def element_candidates(v: Fraction, el: Element) -> tuple[Fraction, Fraction]:
    """The two neighbours of v on the element grid (before overflow handling), low <= high."""
    if el.exp_bits == 0:
        step = pow2(-el.man_bits)
    else:
        e = max(floor_log2(abs(v)), el.emin) if v else el.emin
        step = pow2(e - el.man_bits)
    low = math.floor(v / step)
    return low * step, (low + (v / step != low)) * step


def _overflow(q: Fraction, el: Element) -> Fraction | float:
    if abs(q) <= el.max_normal:
        return q
    if el.saturate:
        return el.max_normal if q > 0 else -el.max_normal
    return INF if q > 0 else -INF


def cast_element(
    v: Fraction, el: Element, rounding: str = "nearest", u: float | None = None
) -> Fraction | float:
    """Round an exact value to the element: half-even (half-away for MXINT8), or stochastic."""
    if el.exp_bits == 0:
        step = pow2(-el.man_bits)
        limit = el.max_normal / step
        k = round_half_away(v / step) if rounding == "nearest" else _stochastic(v / step, u)
        return clamp(k, -limit, limit) * step
    if rounding == "nearest":
        if v == 0:
            return Fraction(0)
        e = max(floor_log2(abs(v)), el.emin)
        step = pow2(e - el.man_bits)
        return _overflow(round_half_even(v / step) * step, el)
    low, high = element_candidates(v, el)
    step = high - low
    q = low if step == 0 else low + _stochastic((v - low) / step, u) * step
    return _overflow(q, el)


def _stochastic(v: Fraction, u: float | None) -> int:
    """floor(v) + (u < frac(v)): the rule every stochastic rounding here follows."""
    assert u is not None, "stochastic rounding needs a uniform sample"
    low = math.floor(v)
    return low + (Fraction(u) < v - low)


def cast_float(x: float, name: str, rounding: str = "nearest", u: float | None = None) -> float:
    """Element-wise cast of one FP32 value to fp32/bf16/fp16/fp8_e4m3/fp8_e5m2."""
    if name == "fp32" or math.isnan(x):
        return x
    el = FLOAT_ELEMENTS[name]
    if math.isinf(x):
        return x if el.has_inf else NAN  # OCP e4m3 has no infinity: Inf becomes NaN
    return to_float32(cast_element(Fraction(x), el, rounding, u), x)


# --- block formats -------------------------------------------------------------------------


def _finite_max(values: Sequence[float]) -> float:
    return max((abs(v) for v in values if math.isfinite(v)), default=0.0)


def hbfp_block(
    values: Sequence[float],
    fmt: HBFPFormat,
    rounding: str = "nearest",
    noise: Sequence[float] | None = None,
) -> list[float]:
    """One HBFP block (possibly short); non-finite values pass through."""
    m = fmt.mantissa_bits
    limit = (1 << (m - 1)) - 1
    lo, hi = hbfp_exponent_range(fmt)
    amax = _finite_max(values)
    e_block = clamp(floor_log2(amax), lo, hi) if amax else lo
    exponents = [e_block] * len(values)
    if fmt.sub_block_size is not None:
        s, r = fmt.sub_block_size, (1 << fmt.micro_exp_bits) - 1
        for start in range(0, len(values), s):
            sub_max = _finite_max(values[start : start + s])
            e_sub = clamp(floor_log2(sub_max), e_block - r, e_block) if sub_max else e_block
            exponents[start : start + s] = [e_sub] * len(values[start : start + s])
    out = []
    for i, (x, e) in enumerate(zip(values, exponents, strict=True)):
        if not math.isfinite(x):
            out.append(x)
            continue
        scale = pow2(e - (m - 2))
        v = Fraction(x) / scale
        if rounding == "nearest":
            q = round_half_even(v)
        else:
            q = _stochastic(v, noise[i] if noise is not None else None)
        out.append(to_float32(clamp(q, -limit, limit) * scale, x))
    return out


def hbfp_exponent_range(fmt: HBFPFormat) -> tuple[int, int]:
    """Shared exponents of an E-bit biased field: [2 - 2**(E-1), 2**(E-1) - 1]."""
    half = 1 << (fmt.exponent_bits - 1)
    return 2 - half, half - 1


def hbfp_step(values: Sequence[float], fmt: HBFPFormat) -> list[Fraction]:
    """The grid step each element of an HBFP block is rounded to (for error bounds)."""
    m = fmt.mantissa_bits
    lo, hi = hbfp_exponent_range(fmt)
    amax = _finite_max(values)
    e_block = clamp(floor_log2(amax), lo, hi) if amax else lo
    steps = [pow2(e_block - (m - 2))] * len(values)
    if fmt.sub_block_size is not None:
        s, r = fmt.sub_block_size, (1 << fmt.micro_exp_bits) - 1
        for start in range(0, len(values), s):
            sub_max = _finite_max(values[start : start + s])
            e_sub = clamp(floor_log2(sub_max), e_block - r, e_block) if sub_max else e_block
            n = len(values[start : start + s])
            steps[start : start + s] = [pow2(e_sub - (m - 2))] * n
    return steps


def mx_scale_exponent(values: Sequence[float], fmt: MXFormat) -> int | None:
    """E8M0 scale exponent clamp(floor(log2 amax) - emax_elem, -127, 127); None if amax = 0."""
    amax = _finite_max(values)
    if not amax:
        return None
    return clamp(floor_log2(amax) - MX_ELEMENTS[fmt.element_name].emax, -127, 127)


def mx_block(
    values: Sequence[float],
    fmt: MXFormat,
    rounding: str = "nearest",
    noise: Sequence[float] | None = None,
) -> list[float]:
    """One MX block: a NaN or Inf anywhere makes the whole block NaN."""
    if not all(math.isfinite(v) for v in values):
        return [NAN] * len(values)
    el = MX_ELEMENTS[fmt.element_name]
    shared = mx_scale_exponent(values, fmt)
    if shared is None:
        return [math.copysign(0.0, v) for v in values]
    scale = pow2(shared)
    out = []
    for i, x in enumerate(values):
        u = noise[i] if noise is not None else None
        out.append(to_float32(cast_element(Fraction(x) / scale, el, rounding, u) * scale, x))
    return out


# --- tensor driver -------------------------------------------------------------------------


def _rows(x: torch.Tensor, dim: int) -> tuple[list[list[float]], torch.Size]:
    moved = x.detach().movedim(dim, -1)
    return moved.reshape(-1, moved.shape[-1]).tolist(), moved.shape


def reference_quantize(
    x: torch.Tensor,
    fmt: str | FloatFormat | HBFPFormat | MXFormat,
    dim: int = -1,
    rounding: str = "nearest",
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference ``quantize``: an FP32 result shaped like x.

    ``noise`` (x's shape) holds the uniforms that stochastic rounding compares with.
    """
    fmt = parse_format(fmt)
    if x.dim() == 0:
        n = None if noise is None else noise.reshape(1)
        return reference_quantize(x.reshape(1), fmt, 0, rounding, n).reshape(())
    if x.numel() == 0:
        return x.detach().to(torch.float32).clone()
    rows, moved_shape = _rows(x.to(torch.float32), dim)
    noise_rows = _rows(noise, dim)[0] if noise is not None else [None] * len(rows)
    out_rows = [_quantize_row(r, fmt, rounding, n) for r, n in zip(rows, noise_rows, strict=True)]
    out = torch.tensor(out_rows, dtype=torch.float32).reshape(moved_shape)
    return out.movedim(-1, dim)


def _quantize_row(
    row: list[float],
    fmt: FloatFormat | HBFPFormat | MXFormat,
    rounding: str,
    noise: list[float] | None,
) -> list[float]:
    if isinstance(fmt, FloatFormat):
        us = noise if noise is not None else [None] * len(row)
        return [cast_float(x, fmt.name, rounding, u) for x, u in zip(row, us, strict=True)]
    block: Callable[..., list[float]] = hbfp_block if isinstance(fmt, HBFPFormat) else mx_block
    b = fmt.block_size
    out: list[float] = []
    for start in range(0, len(row), b):  # the last block is simply shorter
        n = noise[start : start + b] if noise is not None else None
        out.extend(block(row[start : start + b], fmt, rounding, n))
    return out


def stochastic_candidates(
    x: torch.Tensor, fmt: str | HBFPFormat | MXFormat | FloatFormat, dim: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two values stochastic rounding may return per element, (down, up)."""
    fmt = parse_format(fmt)
    # u = 0 rounds up every inexact value; u = 1 (never drawn) rounds every value down.
    up = reference_quantize(x, fmt, dim, "stochastic", torch.zeros_like(x))
    down = reference_quantize(x, fmt, dim, "stochastic", torch.ones_like(x))
    return down, up


# --- checks that need only one side -------------------------------------------------------


def _blocks(row: Sequence[float], size: int) -> list[Sequence[float]]:
    return [row[i : i + size] for i in range(0, len(row), size)]


def _multiple_of(value: float, step: Fraction, limit: Fraction | None = None) -> bool:
    k = Fraction(value) / step
    return k.denominator == 1 and (limit is None or abs(k) <= limit)


def representable(v: Fraction, el: Element) -> bool:
    """Whether an exact value is an element of the (finite) element format."""
    if abs(v) > el.max_normal:
        return False
    if el.exp_bits == 0:
        return (v * (1 << el.man_bits)).denominator == 1
    if v == 0:
        return True
    e = max(floor_log2(abs(v)), el.emin)
    return (v / pow2(e - el.man_bits)).denominator == 1


def row_on_grid(out: Sequence[float], fmt: FloatFormat | HBFPFormat | MXFormat) -> bool:
    """Whether a quantized row (blocking along it) lies on the format's grid, judged from
    the output alone: some admissible exponents/scales represent every block exactly."""
    if isinstance(fmt, FloatFormat):
        if fmt.name == "fp32":
            return all(is_float32(y) for y in out)
        el = FLOAT_ELEMENTS[fmt.name]
        finite_ok = all(representable(Fraction(y), el) for y in out if math.isfinite(y))
        return finite_ok and (el.has_inf or not any(math.isinf(y) for y in out))
    if isinstance(fmt, MXFormat):
        return all(_mx_block_on_grid(b, fmt) for b in _blocks(out, fmt.block_size))
    return all(_hbfp_block_on_grid(b, fmt) for b in _blocks(out, fmt.block_size))


def _hbfp_block_on_grid(out: Sequence[float], fmt: HBFPFormat) -> bool:
    m, limit = fmt.mantissa_bits, Fraction((1 << (fmt.mantissa_bits - 1)) - 1)
    lo, hi = hbfp_exponent_range(fmt)
    amax = _finite_max(out)
    if not amax:
        return True
    # The finest admissible block exponent is the best candidate (coarser grids hold less).
    e_block = max(lo, floor_log2(amax))
    if e_block > hi:
        return False
    s = fmt.sub_block_size or len(out)
    r = (1 << fmt.micro_exp_bits) - 1 if fmt.sub_block_size else 0
    for sub in _blocks(out, s):
        sub_max = _finite_max(sub)
        e_sub = max(e_block - r, floor_log2(sub_max)) if sub_max else e_block
        step = pow2(e_sub - (m - 2))
        if not all(_multiple_of(y, step, limit) for y in sub if math.isfinite(y)):
            return False
    return True


def _mx_block_on_grid(out: Sequence[float], fmt: MXFormat) -> bool:
    if any(math.isnan(y) for y in out):
        return all(math.isnan(y) for y in out)
    el = MX_ELEMENTS[fmt.element_name]
    amax = _finite_max(out)
    if any(math.isinf(y) for y in out):
        return False
    if not amax:
        return True
    # The finest scale that keeps amax within max_normal is the best candidate.
    shared = floor_log2(amax) - el.emax
    if Fraction(amax) / pow2(shared) > el.max_normal:
        shared += 1
    shared = max(shared, -127)
    if shared > 127:
        return False
    return all(representable(Fraction(y) / pow2(shared), el) for y in out)


def row_steps(row: Sequence[float], fmt: FloatFormat | HBFPFormat | MXFormat) -> list[Fraction]:
    """Per element: the grid spacing nearest rounding works at, or 0 for a value that would
    saturate (or is not finite), where no half-step bound applies."""
    out: list[Fraction] = []
    if isinstance(fmt, FloatFormat):
        if fmt.name == "fp32":
            return [Fraction(0)] * len(row)
        el = FLOAT_ELEMENTS[fmt.name]
        for x in row:
            ok = math.isfinite(x) and abs(Fraction(x)) <= el.max_normal
            out.append(_element_step(Fraction(x), el) if ok else Fraction(0))
        return out
    if isinstance(fmt, HBFPFormat):
        limit = (1 << (fmt.mantissa_bits - 1)) - 1
        for block in _blocks(row, fmt.block_size):
            for x, step in zip(block, hbfp_step(block, fmt), strict=True):
                ok = math.isfinite(x) and abs(Fraction(x)) <= limit * step
                out.append(step if ok else Fraction(0))
        return out
    el = MX_ELEMENTS[fmt.element_name]
    for block in _blocks(row, fmt.block_size):
        shared = mx_scale_exponent(block, fmt)
        finite = all(math.isfinite(x) for x in block)
        for x in block:
            if not finite or shared is None:
                out.append(Fraction(0))
                continue
            v = Fraction(x) / pow2(shared)
            ok = abs(v) <= el.max_normal
            out.append(_element_step(v, el) * pow2(shared) if ok else Fraction(0))
    return out


def _element_step(v: Fraction, el: Element) -> Fraction:
    if el.exp_bits == 0:
        return pow2(-el.man_bits)
    e = max(floor_log2(abs(v)), el.emin) if v else el.emin
    return pow2(e - el.man_bits)


def drawn_noise(shape: tuple[int, ...] | torch.Size, seed: int) -> torch.Tensor:
    """The uniforms the first call of ``NoiseStream(seed)`` draws for a contiguous tensor of
    ``shape``: what the quantizer compares with each element's fraction."""
    return uniform_noise(tuple(shape), NoiseStream(seed).draw(torch.device("cpu")))
