"""Number formats: parsing names and quantizing tensors (docs/formats.md)."""

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .definitions import (
    MANTISSA_BITS,
    ROUNDINGS,
    ElementSpec,
    FloatFormat,
    Format,
    FormatError,
    HBFPFormat,
    MXFormat,
    Rounding,
    parse_format,
)

if TYPE_CHECKING:
    from .noise import NoiseStream
    from .quantizer import quantize

__getattr__ = lazy_attributes(__name__, {"NoiseStream": "noise", "quantize": "quantizer"})

__all__ = [
    "MANTISSA_BITS",
    "ROUNDINGS",
    "ElementSpec",
    "FloatFormat",
    "Format",
    "FormatError",
    "HBFPFormat",
    "MXFormat",
    "NoiseStream",
    "Rounding",
    "parse_format",
    "quantize",
]
