"""``hbfp-dse formats``: the number formats and what they cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..formats import Format, parse_format
from .common import OutputFormat, console, print_json, user_errors

CATALOGUE = (
    "fp32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    *(f"hbfp{m}" for m in range(2, 9)),
    "hbfp4_b256",
    "hbfp4_s16",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxfp6_e2m3",
    "mxfp6_e3m2",
    "mxfp4_e2m1",
    "mxint8",
)


def describe(fmt: Format) -> dict[str, object]:
    return {
        "name": fmt.name,
        "kind": fmt.kind,
        "bits_per_element": round(fmt.bits_per_element, 4),
        "scaling_levels": fmt.scaling_levels,
        "block_size": fmt.block_size,
    }


@user_errors
def formats(
    names: Annotated[
        list[str] | None, typer.Argument(help="Formats to show (default: a catalogue).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
) -> None:
    """List number formats: bits per element, scaling levels, block size."""
    rows = [describe(parse_format(name)) for name in names or CATALOGUE]
    if output is OutputFormat.json:
        print_json(rows)
        return
    table = Table(title="Number formats")
    for column, justify in (
        ("name", "left"),
        ("kind", "left"),
        ("bits/element", "right"),
        ("scaling levels", "right"),
        ("block", "right"),
    ):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            f"{row['bits_per_element']:.3f}",
            str(row["scaling_levels"]),
            "-" if row["block_size"] is None else str(row["block_size"]),
        )
    console.print(table)
