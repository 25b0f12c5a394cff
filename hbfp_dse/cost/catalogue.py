"""The catalogue of number formats with their storage and the cost of their PEs."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats import Format
from .areas import UnitAreas
from .pe import density, pe_area

# What ``hbfp-dse formats`` lists when no name is given: every family, the published widths.
CATALOGUE = (
    "fp32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    *(f"hbfp{m}" for m in range(2, 9)),
    "hbfp4_b256",
    "hbfp6_b256",
    "hbfp8_b256",
    "hbfp4_s16",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxfp6_e2m3",
    "mxfp6_e3m2",
    "mxfp4_e2m1",
    "mxint8",
)


@dataclass(frozen=True)
class FormatSummary:
    name: str
    kind: str
    bits_per_element: float
    scaling_levels: int
    block_size: int | None
    pe_area_um2: float
    density_vs_fp32: float
    density_vs_bf16: float


def summarize_format(fmt: Format, areas: UnitAreas) -> FormatSummary:
    """A format's storage bits, scaling levels and block, PE area and density (rounded as
    the catalogue shows them)."""
    return FormatSummary(
        name=fmt.name,
        kind=fmt.kind,
        bits_per_element=round(fmt.bits_per_element, 4),
        scaling_levels=fmt.scaling_levels,
        block_size=fmt.block_size,
        pe_area_um2=round(pe_area(fmt, areas), 2),
        density_vs_fp32=round(density(fmt, "fp32", areas), 3),
        density_vs_bf16=round(density(fmt, "bf16", areas), 3),
    )
