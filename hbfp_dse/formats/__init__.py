"""Number formats: parsing names and quantizing tensors (BRIEF §2)."""

from .quantize import quantize
from .spec import (
    ROUNDINGS,
    ElementSpec,
    FloatFormat,
    Format,
    FormatError,
    HBFPFormat,
    MXFormat,
    parse_format,
)

__all__ = [
    "ROUNDINGS",
    "ElementSpec",
    "FloatFormat",
    "Format",
    "FormatError",
    "HBFPFormat",
    "MXFormat",
    "parse_format",
    "quantize",
]
