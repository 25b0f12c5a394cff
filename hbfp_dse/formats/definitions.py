"""Format objects and the parser for the names users type (docs/formats.md)."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError

Rounding = Literal["nearest", "stochastic"]
# HBFP mantissa widths (sign included) that a format may have.
MANTISSA_BITS = (2, 16)
ROUNDINGS: tuple[str, ...] = ("nearest", "stochastic")


class FormatError(UserError):
    """A format name or parameter that hbfp-dse does not accept."""


@dataclass(frozen=True)
class ElementSpec:
    """A narrow float or a fixed-point element, as used alone or inside an MX block.

    ``exp_bits == 0`` means a sign-magnitude integer whose unit is ``2**-man_bits``
    (MXINT8's 1.6 fixed point). ``emax`` is the exponent of ``max_normal``.
    """

    exp_bits: int
    man_bits: int
    max_normal: float
    has_inf: bool

    @property
    def bits(self) -> int:
        # A fixed-point element also stores its integer bit (MXINT8: sign, 1 integer, 6 fraction).
        return 1 + self.exp_bits + self.man_bits + (self.exp_bits == 0)

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1 if self.exp_bits else 0

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal (also the subnormal exponent)."""
        return 1 - self.bias if self.exp_bits else 0

    @property
    def emax(self) -> int:
        return math.frexp(self.max_normal)[1] - 1


# OCP FP8 (e4m3 saturates, no inf), OCP MX v1.0 element types, IEEE halves.
E4M3 = ElementSpec(4, 3, 448.0, has_inf=False)
E5M2 = ElementSpec(5, 2, 57344.0, has_inf=True)
E2M3 = ElementSpec(2, 3, 7.5, has_inf=False)
E3M2 = ElementSpec(3, 2, 28.0, has_inf=False)
E2M1 = ElementSpec(2, 1, 6.0, has_inf=False)
INT8 = ElementSpec(0, 6, 127 / 64, has_inf=False)
FP16 = ElementSpec(5, 10, 65504.0, has_inf=True)
BF16 = ElementSpec(8, 7, float.fromhex("0x1.fep127"), has_inf=True)
FP32 = ElementSpec(8, 23, float.fromhex("0x1.fffffep127"), has_inf=True)


@dataclass(frozen=True)
class FloatFormat:
    """Element-wise cast to a narrower float, round-to-nearest-even by default."""

    name: str

    kind = "float"
    scaling_levels = 0
    block_size = None

    def __post_init__(self) -> None:
        if self.name not in FLOAT_ELEMENTS:
            raise FormatError(f"unknown float format {self.name!r}")

    @property
    def element(self) -> ElementSpec:
        return FLOAT_ELEMENTS[self.name]

    @property
    def bits_per_element(self) -> float:
        return float(self.element.bits)

    @property
    def mantissa_bits(self) -> int:
        """Significant bits counted like HBFP's M: sign plus stored mantissa plus hidden bit."""
        return self.element.man_bits + 2


@dataclass(frozen=True)
class HBFPFormat:
    """Block floating point: ``block_size`` values share one exponent (docs/formats.md).

    ``mantissa_bits`` counts the sign. With ``sub_block_size`` set, every sub-block
    takes its own exponent at most ``2**micro_exp_bits - 1`` below the block's.
    """

    mantissa_bits: int
    block_size: int = 64
    exponent_bits: int = 8
    sub_block_size: int | None = None
    micro_exp_bits: int = 1

    kind = "hbfp"

    def __post_init__(self) -> None:
        _check_range("mantissa bits M", self.mantissa_bits, *MANTISSA_BITS)
        _check_range("block size B", self.block_size, 1, 1 << 16)
        _check_range("shared exponent bits E", self.exponent_bits, 2, 16)
        _check_range("micro-exponent bits D", self.micro_exp_bits, 1, 8)
        s = self.sub_block_size
        if s is not None:
            _check_range("sub-block size S", s, 1, self.block_size - 1)
            if self.block_size % s:
                raise FormatError(
                    f"sub-block size S={s} must divide the block size B={self.block_size}"
                )
        elif self.micro_exp_bits != 1:
            raise FormatError("micro-exponent bits D need a sub-block size S (_s<S>_d<D>)")

    @property
    def name(self) -> str:
        parts = [f"hbfp{self.mantissa_bits}"]
        if self.block_size != 64:
            parts.append(f"b{self.block_size}")
        if self.exponent_bits != 8:
            parts.append(f"e{self.exponent_bits}")
        if self.sub_block_size is not None:
            parts.append(f"s{self.sub_block_size}")
            if self.micro_exp_bits != 1:
                parts.append(f"d{self.micro_exp_bits}")
        return "_".join(parts)

    @property
    def scaling_levels(self) -> int:
        return 1 if self.sub_block_size is None else 2

    @property
    def bits_per_element(self) -> float:
        bits = self.mantissa_bits + self.exponent_bits / self.block_size
        if self.sub_block_size is not None:
            bits += self.micro_exp_bits / self.sub_block_size
        return bits

    @property
    def exponent_range(self) -> tuple[int, int]:
        """Shared exponents an E-bit biased field holds: FP32's normal range for E=8."""
        half = 1 << (self.exponent_bits - 1)
        return 2 - half, half - 1


@dataclass(frozen=True)
class MXFormat:
    """OCP Microscaling v1.0: ``block_size`` elements share one E8M0 power-of-two scale."""

    element_name: str
    block_size: int = 32

    kind = "mx"
    scaling_levels = 1

    def __post_init__(self) -> None:
        if self.element_name not in MX_ELEMENTS:
            raise FormatError(f"unknown MX element type {self.element_name!r}")
        _check_range("block size B", self.block_size, 1, 1 << 16)

    @property
    def element(self) -> ElementSpec:
        return MX_ELEMENTS[self.element_name]

    @property
    def name(self) -> str:
        base = f"mx{self.element_name}"
        return base if self.block_size == 32 else f"{base}_b{self.block_size}"

    @property
    def bits_per_element(self) -> float:
        return self.element.bits + 8 / self.block_size

    @property
    def mantissa_bits(self) -> int:
        """Significant bits counted like HBFP's M (sign, hidden or integer bit, fraction)."""
        return self.element.man_bits + 2


Format = FloatFormat | HBFPFormat | MXFormat

FLOAT_ELEMENTS: dict[str, ElementSpec] = {
    "fp32": FP32,
    "bf16": BF16,
    "fp16": FP16,
    "fp8_e4m3": E4M3,
    "fp8_e5m2": E5M2,
}
MX_ELEMENTS: dict[str, ElementSpec] = {
    "fp8_e4m3": E4M3,
    "fp8_e5m2": E5M2,
    "fp6_e2m3": E2M3,
    "fp6_e3m2": E3M2,
    "fp4_e2m1": E2M1,
    "int8": INT8,
}

_HBFP_RE = re.compile(r"hbfp(\d+)((?:_[bsed]\d+)*)")
_MX_RE = re.compile(r"mx(" + "|".join(MX_ELEMENTS) + r")(?:_b(\d+))?")
ACCEPTED = (
    "fp32, bf16, fp16, fp8_e4m3, fp8_e5m2; hbfp<M>[_b<B>][_e<E>][_s<S>[_d<D>]] "
    "(e.g. hbfp4, hbfp6_b144, hbfp4_b64_s16_d2); "
    + ", ".join(f"mx{e}" for e in MX_ELEMENTS)
    + " with optional _b<B>"
)


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FormatError(f"{what}={value} is out of range [{low}, {high}]")


def parse_format(name: str | Format) -> Format:
    """Parse a format name (case-insensitive); format objects pass through."""
    if isinstance(name, FloatFormat | HBFPFormat | MXFormat):
        return name
    if not isinstance(name, str):
        raise FormatError(f"a format is a name string, not {type(name).__name__}")
    return _parse_name(name)


@functools.lru_cache(maxsize=1024)
def _parse_name(name: str) -> Format:
    key = name.strip().lower()
    if key in FLOAT_ELEMENTS:
        return FloatFormat(key)
    if m := _MX_RE.fullmatch(key):
        return _build(name, MXFormat, m.group(1), int(m.group(2) or 32))
    if m := _HBFP_RE.fullmatch(key):
        fields: dict[str, int] = {}
        for part in m.group(2).split("_")[1:]:
            if part[0] in fields:
                raise FormatError(f"format {name!r}: '_{part[0]}' is given twice")
            fields[part[0]] = int(part[1:])
        if "d" in fields and "s" not in fields:
            raise FormatError(f"format {name!r}: '_d<D>' needs a sub-block size '_s<S>'")
        return _build(
            name,
            HBFPFormat,
            int(m.group(1)),
            fields.get("b", 64),
            fields.get("e", 8),
            fields.get("s"),
            fields.get("d", 1),
        )
    raise FormatError(f"unknown format {name!r}; accepted: {ACCEPTED}")


def _build(name: str, cls: type, *args: object) -> Format:
    try:
        return cls(*args)
    except FormatError as err:
        raise FormatError(f"format {name!r}: {err}") from None
