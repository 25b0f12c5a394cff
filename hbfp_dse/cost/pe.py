"""Processing-element (PE) area per number format, and arithmetic density.

One PE of a systolic array does one multiply-accumulate a cycle, so a format's arithmetic
density is inversely proportional to its PE area. Formulas and assumptions:
docs/cost-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import assert_never

from ..formats import FloatFormat, Format, HBFPFormat, MXFormat, parse_format
from .areas import UnitAreas, default_areas
from .fits import ceil_log2

# The float accumulator of the EPFL model: HBFP block partial sums are added in BF16.
ACCUMULATOR = (8, 7)
# OCP MX scales are E8M0: 8-bit exponents, like HBFP's default shared exponent.
MX_SCALE_BITS = 8
_FLOAT_NAMES = {(8, 23): "fp32", (8, 7): "bf16", (5, 10): "fp16"}


@dataclass(frozen=True)
class PEPart:
    """One unit of the PE, with its area already divided by the PEs that share it."""

    unit: str
    area: float


@dataclass(frozen=True)
class PEArea:
    """A format's PE area (µm²) and the units it is made of."""

    format: str
    parts: tuple[PEPart, ...]

    @property
    def total(self) -> float:
        return math.fsum(p.area for p in self.parts)


def pe_breakdown(fmt: Format | str, areas: UnitAreas | None = None) -> PEArea:
    """The PE of ``fmt`` unit by unit (docs/cost-model.md gives each formula)."""
    fmt = parse_format(fmt)
    areas = default_areas() if areas is None else areas
    match fmt:
        case FloatFormat():
            parts = _float_parts(areas, fmt)
        case HBFPFormat():
            parts = _hbfp_parts(areas, fmt)
        case MXFormat():
            parts = _mx_parts(areas, fmt)
        case _:
            assert_never(fmt)
    return PEArea(fmt.name, tuple(parts))


def pe_area(fmt: Format | str, areas: UnitAreas | None = None) -> float:
    """PE area of ``fmt`` in µm²."""
    return pe_breakdown(fmt, areas).total


def density(
    fmt: Format | str, reference: Format | str = "fp32", areas: UnitAreas | None = None
) -> float:
    """Arithmetic density of ``fmt`` relative to ``reference``: reference PE area / format's."""
    return pe_area(reference, areas) / pe_area(fmt, areas)


def tile_side(block_size: int) -> float:
    """Side b of the PE tile a block of B values maps to: sqrt(B), a real number unless B is a
    perfect square (B = 256 -> the published 16x16 tile)."""
    return math.sqrt(block_size)


def tile_growth_bits(block_size: int) -> int:
    """Accumulator growth over one tile column, ``ceil(log2 b)`` with b = sqrt(B).

    Computed as ``ceil(ceil(log2 B) / 2)``, equal to it for every B and exact in integers.
    """
    return (ceil_log2(block_size) + 1) // 2


def _float_name(exp_bits: int, man_bits: int) -> str:
    return _FLOAT_NAMES.get((exp_bits, man_bits), f"fp_e{exp_bits}m{man_bits}")


def _fp_add(areas: UnitAreas, shape: tuple[int, int], share: float = 1.0) -> PEPart:
    return _shared(f"add {_float_name(*shape)}", areas.fp_add(*shape), share)


def _int_add(areas: UnitAreas, width: int, share: float = 1.0) -> PEPart:
    return _shared(f"add int{width}", areas.int_add(width), share)


def _shared(unit: str, area: float, share: float) -> PEPart:
    # A unit used once per `share` PEs costs 1/share of its area in each.
    return PEPart(unit if share == 1 else f"{unit} / {share:.6g}", area / share)


def _float_parts(areas: UnitAreas, fmt: FloatFormat) -> list[PEPart]:
    # A_FP = mul(f) + add(f) (the contract) for formats at least as precise as BF16. Narrower
    # floats (FP8) cannot hold a running sum, so their products accumulate in BF16.
    shape = (fmt.element.exp_bits, fmt.element.man_bits)
    accumulator = shape if shape[1] >= ACCUMULATOR[1] else ACCUMULATOR
    mul = PEPart(f"multiply {_float_name(*shape)}", areas.fp_mul(*shape))
    return [mul, _fp_add(areas, accumulator)]


def _block_parts(
    areas: UnitAreas, product_bits: int, block_size: int, exp_bits: int
) -> list[PEPart]:
    """The block-level terms shared by HBFP and MX: the fixed-point accumulator of one tile
    column, the float adder that takes each column's block sum, and the shared-exponent adder
    of each pair of blocks (int 10 for 8-bit exponents, as in the contract)."""
    b = tile_side(block_size)
    return [
        _int_add(areas, product_bits + tile_growth_bits(block_size) + 1),
        _fp_add(areas, ACCUMULATOR, share=b),
        _int_add(areas, exp_bits + 2, share=block_size),
    ]


def _hbfp_parts(areas: UnitAreas, fmt: HBFPFormat) -> list[PEPart]:
    # A = mul(int M) + add(int 2M + ceil(log2 b) + 1) + add(bf16)/b + add(int E+2)/b².
    m = fmt.mantissa_bits
    mul = PEPart(f"multiply int{m}", areas.int_mul(m))
    if fmt.sub_block_size is None:
        return [mul, *_block_parts(areas, 2 * m, fmt.block_size, fmt.exponent_bits)]
    # Two levels: sub-blocks of S values map to sqrt(S) x sqrt(S) sub-tiles. Each sub-tile
    # column's partial sum is shifted left by the two micro-exponents (0 .. 2(2^D - 1)) before
    # it joins the block sum, which widens by that shift so the sum stays exact; the two
    # micro-exponents are added once per pair of sub-blocks.
    s, d = fmt.sub_block_size, fmt.micro_exp_bits
    shift = 2 * ((1 << d) - 1)
    sub_sum_bits = 2 * m + tile_growth_bits(s) + 1 + shift
    shifter = areas.shifter(sub_sum_bits, shift.bit_length())
    return [
        mul,
        *_block_parts(areas, 2 * m + shift, fmt.block_size, fmt.exponent_bits),
        _shared(f"shift {sub_sum_bits}b by 0..{shift}", shifter, tile_side(s)),
        _int_add(areas, d + 1, share=s),
    ]


def _mx_parts(areas: UnitAreas, fmt: MXFormat) -> list[PEPart]:
    el = fmt.element
    m = fmt.mantissa_bits  # sign + integer/hidden bit + fraction
    if el.exp_bits == 0:
        # MXINT8 is sign-magnitude fixed point: the HBFP8 datapath on blocks of B.
        mul = PEPart(f"multiply int{m}", areas.int_mul(m))
        return [mul, *_block_parts(areas, 2 * m, fmt.block_size, MX_SCALE_BITS)]
    shape = (el.exp_bits, el.man_bits)
    mul = PEPart(f"multiply {_float_name(*shape)}", areas.fp_mul(shape[0], shape[1]))
    # In-block accumulation: whichever is cheaper of (a) an exact fixed-point sum, each product
    # shifted left by its exponent (0 .. 2(emax - emin)) first, and (b) a BF16 adder per PE.
    shift = 2 * (el.emax - el.emin)
    exact = _block_parts(areas, 2 * m + shift, fmt.block_size, MX_SCALE_BITS)
    aligned = PEPart(
        f"shift {2 * m + shift}b by 0..{shift}",
        areas.shifter(2 * m + shift, shift.bit_length()),
    )
    fixed = [aligned, exact[0]]
    floating = [_fp_add(areas, ACCUMULATOR)]
    inner = min(fixed, floating, key=lambda parts: math.fsum(p.area for p in parts))
    return [mul, *inner, *exact[1:]]
