"""``hbfp-dse formats``: the number formats and what their processing elements cost."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ..cost.catalogue import CATALOGUE, FormatSummary, summarize_format
from ..formats import parse_format
from .common import console, print_json, user_errors
from .options import AreasOption, OutputFormat, OutputOption, areas_table

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
    output: OutputOption = OutputFormat.table,
) -> None:
    """List number formats: storage bits, scaling levels, block, PE area and density."""
    table_areas = areas_table(areas)
    rows = [summarize_format(parse_format(name), table_areas) for name in names or CATALOGUE]
    if output is OutputFormat.json:
        print_json([asdict(row) for row in rows])
    else:
        console.print(_table(rows))


def _table(rows: list[FormatSummary]) -> Table:
    table = Table(title="Number formats (PE areas: docs/cost-model.md)")
    for title, key, _ in COLUMNS:
        table.add_column(title, justify="left" if key in ("name", "kind") else "right")
    for row in rows:
        values = asdict(row)
        table.add_row(
            *("-" if values[key] is None else spec.format(values[key]) for _, key, spec in COLUMNS)
        )
    return table
