"""``hbfp-dse formats``: the number formats and what their processing elements cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..cost import UnitAreas, default_areas, density, load_areas, pe_area
from ..formats import Format, parse_format
from .common import OutputFormat, console, print_json, user_errors
from .runconfig import AreasOption

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


def describe(fmt: Format, areas: UnitAreas) -> dict[str, object]:
    return {
        "name": fmt.name,
        "kind": fmt.kind,
        "bits_per_element": round(fmt.bits_per_element, 4),
        "scaling_levels": fmt.scaling_levels,
        "block_size": fmt.block_size,
        "pe_area_um2": round(pe_area(fmt, areas), 2),
        "density_vs_fp32": round(density(fmt, "fp32", areas), 3),
        "density_vs_bf16": round(density(fmt, "bf16", areas), 3),
    }


COLUMNS = (
    ("name", "name", "{}"),
    ("kind", "kind", "{}"),
    ("bits/elem", "bits_per_element", "{:.3f}"),
    ("levels", "scaling_levels", "{}"),
    ("block", "block_size", "{}"),
    ("PE µm²", "pe_area_um2", "{:.1f}"),
    ("vs FP32", "density_vs_fp32", "{:.2f}x"),
    ("vs BF16", "density_vs_bf16", "{:.2f}x"),
)


@user_errors
def formats(
    names: Annotated[
        list[str] | None, typer.Argument(help="Formats to show, in order (default: a catalogue).")
    ] = None,
    areas: AreasOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """List number formats: storage bits, scaling levels, block, PE area and density."""
    table_areas = default_areas() if areas is None else load_areas(areas)
    rows = [describe(parse_format(name), table_areas) for name in names or CATALOGUE]
    if output is OutputFormat.json:
        print_json(rows)
        return
    table = Table(title="Number formats (PE areas: docs/cost-model.md)")
    for title, key, _ in COLUMNS:
        table.add_column(title, justify="left" if key in ("name", "kind") else "right")
    for row in rows:
        table.add_row(
            *("-" if row[key] is None else spec.format(row[key]) for _, key, spec in COLUMNS)
        )
    console.print(table)
