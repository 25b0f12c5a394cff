"""Number formats: parsing names and quantizing tensors (docs/formats.md)."""

from .definitions import (
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
from .quantize import quantize

__all__ = [
    "ROUNDINGS",
    "ElementSpec",
    "FloatFormat",
    "Format",
    "FormatError",
    "HBFPFormat",
    "MXFormat",
    "Rounding",
    "parse_format",
    "quantize",
]
