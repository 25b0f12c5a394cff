"""Number formats: parsing names and quantizing tensors (docs/formats.md)."""

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
from .noise import NoiseStream
from .quantize import quantize

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
