"""The unit-area table: synthesized adder and multiplier areas, plus fits for what it lacks.

The built-in table (package data ``data/unit_areas_um2.csv``) comes from the public EPFL HBFP
hardware model. A user table of the same shape replaces it wholesale: its rows are looked up
and all four fits below are redone on its rows.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import AreaTableError
from .fits import (
    AreaModel,
    Features,
    fit,
    float_adder_features,
    float_multiplier_features,
    int_adder_features,
    int_multiplier_features,
)

BUILTIN_TABLE = "unit_areas_um2.csv"
HEADER = ("unit", "operand_type", "area_um2")
# relu rows are part of the source table; the PE model does not use them.
UNITS = ("add", "multiply", "relu")
# The source model fits integer units over these widths only.
INT_FIT_WIDTHS = range(8, 17)

_INT_RE = re.compile(r"int([1-9]\d*)")
_FP_RE = re.compile(r"fp_e([1-9]\d*)m(\d+)")


@dataclass(frozen=True, eq=False)
class UnitAreas:
    """Unit areas in µm²: table rows where present, fitted models elsewhere.

    Integer units are keyed by width (``int8`` -> 8, sign included), float units by
    ``(exp_bits, man_bits)`` with ``man_bits`` the stored mantissa (``fp_e8m7`` -> (8, 7)).
    """

    source: str
    int_add_rows: Mapping[int, float]
    int_mul_rows: Mapping[int, float]
    fp_add_rows: Mapping[tuple[int, int], float]
    fp_mul_rows: Mapping[tuple[int, int], float]
    int_add_model: AreaModel
    int_mul_model: AreaModel
    fp_add_model: AreaModel
    fp_mul_model: AreaModel

    def int_add(self, width: int) -> float:
        return self._lookup(self.int_add_rows, self.int_add_model, (width,))

    def int_mul(self, width: int) -> float:
        return self._lookup(self.int_mul_rows, self.int_mul_model, (width,))

    def fp_add(self, exp_bits: int, man_bits: int) -> float:
        return self._lookup(self.fp_add_rows, self.fp_add_model, (exp_bits, man_bits))

    def fp_mul(self, exp_bits: int, man_bits: int) -> float:
        return self._lookup(self.fp_mul_rows, self.fp_mul_model, (exp_bits, man_bits))

    def shifter(self, width: int, stages: int) -> float:
        """A barrel shifter: one 2:1 multiplexer per output bit and stage.

        Priced at the float-adder fit's cost per shifter bit-stage, the one place the table
        measures shifters.
        """
        return self.fp_add_model.coefficients[0] * width * stages

    def _lookup(self, rows: Mapping[Any, float], model: AreaModel, shape: tuple[int, ...]) -> float:
        # An integer width or a float's exponent width is at least 1, a stored mantissa 0.
        if shape[0] < 1 or min(shape) < 0:
            raise ValueError(f"there is no {model.name} of shape {shape}")
        key = shape[0] if len(shape) == 1 else shape
        if key in rows:
            return rows[key]
        area = model(*shape)
        if not area > 0:
            raise AreaTableError(
                f"{self.source}: the fitted {model.name} model gives {area:.4g} µm² for shape "
                f"{shape}; add a row for it to the table"
            )
        return area


def load_areas(path: str | os.PathLike[str] | None = None) -> UnitAreas:
    """Load a unit-area table: the built-in one, or a user CSV of the same shape.

    The CSV has the header ``unit,operand_type,area_um2``; ``#`` lines and blank lines are
    skipped; ``unit`` is add, multiply or relu; ``operand_type`` is ``int<N>`` or
    ``fp_e<E>m<M>``; areas are positive µm². Raises AreaTableError (a ValueError) naming the
    file and line of the first problem.
    """
    if path is None:
        text = resources.files("hbfp_dse").joinpath("data", BUILTIN_TABLE).read_text("utf-8")
        return _build(text, f"built-in {BUILTIN_TABLE}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AreaTableError(f"{os.fspath(path)}: cannot read the area table: {err}") from None
    return _build(text, os.fspath(path))


@functools.cache
def default_areas() -> UnitAreas:
    """The built-in table, loaded once."""
    return load_areas()


def _build(text: str, source: str) -> UnitAreas:
    int_rows: dict[str, dict[int, float]] = {"add": {}, "multiply": {}}
    fp_rows: dict[str, dict[tuple[int, int], float]] = {"add": {}, "multiply": {}}
    for line, unit, operand, area in _rows(text, source):
        int_match = _INT_RE.fullmatch(operand)
        fp_match = _FP_RE.fullmatch(operand)
        if not (int_match or fp_match):
            raise AreaTableError(
                f"{source}, line {line}: operand_type {operand!r} is neither int<N> nor fp_e<E>m<M>"
            )
        if unit == "relu":
            continue
        if int_match:
            int_rows[unit][int(int_match.group(1))] = area
        elif fp_match:
            fp_rows[unit][int(fp_match.group(1)), int(fp_match.group(2))] = area

    def int_fit(unit: str, name: str, features: Features) -> AreaModel:
        samples = {(w,): a for w, a in int_rows[unit].items() if w in INT_FIT_WIDTHS}
        return _fit(source, name, features, samples, relative=False)

    def fp_fit(unit: str, name: str, features: Features) -> AreaModel:
        return _fit(source, name, features, fp_rows[unit], relative=True)

    return UnitAreas(
        source=source,
        int_add_rows=MappingProxyType(int_rows["add"]),
        int_mul_rows=MappingProxyType(int_rows["multiply"]),
        fp_add_rows=MappingProxyType(fp_rows["add"]),
        fp_mul_rows=MappingProxyType(fp_rows["multiply"]),
        int_add_model=int_fit("add", "integer adder", int_adder_features),
        int_mul_model=int_fit("multiply", "integer multiplier", int_multiplier_features),
        fp_add_model=fp_fit("add", "float adder", float_adder_features),
        fp_mul_model=fp_fit("multiply", "float multiplier", float_multiplier_features),
    )


def _fit(
    source: str,
    name: str,
    features: Features,
    samples: Mapping[tuple[int, ...], float],
    *,
    relative: bool,
) -> AreaModel:
    try:
        return fit(name, features, samples, relative=relative)
    except ValueError as err:
        where = " (integer fits use widths 8..16)" if name.startswith("integer") else ""
        raise AreaTableError(f"{source}: {err}{where}") from None


def _rows(text: str, source: str) -> Iterator[tuple[int, str, str, float]]:
    """Yield ``(line number, unit, operand_type, area)`` for each data row, checked."""
    seen: dict[tuple[str, str], int] = {}
    header_seen = False
    for number, raw in enumerate(io.StringIO(text), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([stripped]))]
        where = f"{source}, line {number}"
        if not header_seen:
            if tuple(fields) != HEADER:
                raise AreaTableError(f"{where}: expected the header {','.join(HEADER)!r}")
            header_seen = True
            continue
        if len(fields) != len(HEADER):
            raise AreaTableError(f"{where}: expected 3 fields, got {len(fields)}")
        unit, operand, value = fields
        if unit not in UNITS:
            raise AreaTableError(f"{where}: unit {unit!r} is not one of {', '.join(UNITS)}")
        try:
            area = float(value)
        except ValueError:
            raise AreaTableError(f"{where}: area {value!r} is not a number") from None
        if not (math.isfinite(area) and area > 0):
            raise AreaTableError(f"{where}: area {value!r} must be a positive number of µm²")
        if (unit, operand) in seen:
            raise AreaTableError(
                f"{where}: {unit} {operand} is given twice (first on line {seen[unit, operand]})"
            )
        seen[unit, operand] = number
        yield number, unit, operand, area
    if not header_seen:
        raise AreaTableError(f"{source}: empty area table (no header {','.join(HEADER)!r})")
