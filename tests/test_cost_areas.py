"""The unit-area table: built-in rows, integer and float fits, user tables, bad files."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from hbfp_dse.cost import AreaTableError, default_areas, load_areas, pe_area
from hbfp_dse.errors import UserError

BUILTIN = resources.files("hbfp_dse").joinpath("data", "unit_areas_um2.csv").read_text("utf-8")
HEADER = "unit,operand_type,area_um2"
# The built-in integer multiplier rows, int8..int16.
MUL_8_16 = [122.715, 164.1465, 189.4185, 239.2335, 275.9265, 336.555, 377.622, 448.578, 493.4115]
FP_ROWS = [line for line in BUILTIN.splitlines() if ",fp_" in line and not line.startswith("relu")]


def write(tmp_path: Path, lines: list[str], name: str = "areas.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_builtin_rows_are_used_verbatim():
    areas = default_areas()
    assert areas.int_add(8) == 16.767
    assert areas.int_add(1) == 0.972
    assert areas.int_mul(16) == 493.4115
    assert areas.int_mul(3) == 13.2435
    assert areas.fp_add(8, 23) == 485.271
    assert areas.fp_mul(8, 7) == 135.837
    assert areas.fp_mul(5, 10) == 234.252


def test_default_areas_is_loaded_once():
    assert default_areas() is default_areas()
    assert default_areas().source == "built-in unit_areas_um2.csv"


def test_integer_adders_beyond_the_table_come_from_the_linear_fit():
    # The built-in int8..16 adder rows lie on a line: slope (35.235 - 16.767) / 8 = 2.3085.
    areas = default_areas()
    assert areas.int_add(17) == pytest.approx(35.235 + 2.3085, rel=1e-12)
    assert areas.int_add(21) == pytest.approx(35.235 + 5 * 2.3085, rel=1e-12)
    assert areas.int_add(40) == pytest.approx(16.767 + 32 * 2.3085, rel=1e-12)


def test_integer_multiplier_fit_reproduces_the_table_and_extrapolates():
    areas = default_areas()
    model = areas.int_mul_model
    for width, area in zip(range(8, 17), MUL_8_16, strict=True):
        # The synthesized areas are not a smooth parabola; 4% bounds the fit's worst row.
        assert model(width) == pytest.approx(area, rel=0.04)
    parabola = np.polyfit(np.arange(8, 17), MUL_8_16, 2)
    for width in (17, 18, 24):
        assert areas.int_mul(width) == pytest.approx(np.polyval(parabola, width), rel=1e-9)
    assert areas.int_mul(16) < areas.int_mul(17) < areas.int_mul(18)


def test_integer_fits_use_only_widths_8_to_16(tmp_path):
    # Rows exactly on add = 3w + 1 and mul = w^2 + w within 8..16, plus far-off rows outside
    # that must neither disturb the fit nor be replaced by it.
    lines = [HEADER, *FP_ROWS, "add,int2,50", "multiply,int3,70"]
    lines += [f"add,int{w},{3 * w + 1}" for w in range(8, 17)]
    lines += [f"multiply,int{w},{w * w + w}" for w in range(8, 17)]
    areas = load_areas(write(tmp_path, lines))
    assert areas.int_add(30) == pytest.approx(91, rel=1e-9)
    assert areas.int_add(5) == pytest.approx(16, rel=1e-9)
    assert areas.int_add(2) == 50
    assert areas.int_mul(20) == pytest.approx(420, rel=1e-9)
    assert areas.int_mul(4) == pytest.approx(20, rel=1e-9)
    assert areas.int_mul(3) == 70


def test_float_fit_reproduces_the_table_rows():
    areas = default_areas()
    assert len(areas.fp_add_rows) == len(areas.fp_mul_rows) == 5
    for (e, m), area in areas.fp_add_rows.items():
        assert areas.fp_add_model(e, m) == pytest.approx(area, rel=0.015), (e, m)
    for (e, m), area in areas.fp_mul_rows.items():
        assert areas.fp_mul_model(e, m) == pytest.approx(area, rel=0.015), (e, m)


def test_float_fit_recovers_an_exact_model(tmp_path):
    # Rows built exactly from the documented features: add = 2 * (2 w ceil(log2 w)) + 3 e
    # with w = m + 4, mul = p^2 + 2 p + e with p = m + 1.
    # (e, m) -> (2 w ceil(log2 w), p)
    shapes = {(10, 7): (88, 8), (11, 52): (672, 53), (5, 10): (112, 11)}
    shapes |= {(8, 23): (270, 24), (8, 7): (88, 8)}
    lines = [HEADER, *(line for line in BUILTIN.splitlines() if ",int" in line)]
    for (e, m), (shift_bits, p) in shapes.items():
        lines += [
            f"add,fp_e{e}m{m},{2 * shift_bits + 3 * e}",
            f"multiply,fp_e{e}m{m},{p * p + 2 * p + e}",
        ]
    areas = load_areas(write(tmp_path, lines))
    # e4m3: w = 7, 3 stages -> 2 * 42 + 12 = 96; p = 4 -> 16 + 8 + 4 = 28.
    assert areas.fp_add(4, 3) == pytest.approx(96, rel=1e-9)
    assert areas.fp_mul(4, 3) == pytest.approx(28, rel=1e-9)
    # e2m1: w = 5, 3 stages -> 2 * 30 + 6 = 66; p = 2 -> 4 + 4 + 2 = 10.
    assert areas.fp_add(2, 1) == pytest.approx(66, rel=1e-9)
    assert areas.fp_mul(2, 1) == pytest.approx(10, rel=1e-9)
    # The shifter price is the adder fit's cost per shifter bit-stage.
    assert areas.shifter(10, 3) == pytest.approx(60, rel=1e-9)


def test_narrow_float_units_are_modelled_between_their_integer_and_bf16_neighbours():
    areas = default_areas()
    # FP8 e4m3 has a 4-bit significand: more than an int4 multiplier, far less than BF16's.
    assert areas.int_mul(4) < areas.fp_mul(4, 3) < areas.fp_mul(8, 7) / 2
    assert areas.fp_mul(2, 1) < areas.fp_mul(3, 2) < areas.fp_mul(2, 3)
    assert 0 < areas.fp_add(2, 1) < areas.fp_add(4, 3) < areas.fp_add(8, 7)


def test_user_table_replaces_the_builtin_one(tmp_path):
    lines = BUILTIN.replace("add,int13,28.3095", "add,int13,100").splitlines()
    path = write(tmp_path, lines)
    for source in (path, str(path)):
        areas = load_areas(source)
        assert areas.source == str(path)
        assert areas.int_add(13) == 100
        # HBFP4 on 16x16 tiles accumulates in int13 (2*4 + 4 + 1).
        assert pe_area("hbfp4_b256", areas) == pytest.approx(
            pe_area("hbfp4_b256") + 100 - 28.3095, rel=1e-12
        )


def test_user_float_rows_refit_the_float_model(tmp_path):
    doubled = [
        f"{unit},{operand},{2 * float(area)}"
        for unit, operand, area in (row.split(",") for row in FP_ROWS)
    ]
    ints = [line for line in BUILTIN.splitlines() if ",int" in line]
    areas = load_areas(write(tmp_path, [HEADER, *ints, *doubled]))
    builtin = default_areas()
    assert areas.fp_mul(4, 3) == pytest.approx(2 * builtin.fp_mul(4, 3), rel=1e-9)
    assert areas.fp_add(5, 2) == pytest.approx(2 * builtin.fp_add(5, 2), rel=1e-9)


def test_comments_blank_lines_and_spaces_are_accepted(tmp_path):
    text = BUILTIN.replace(HEADER, f"\n  {HEADER} \n").replace(
        "add,int10,21.384", " add , int10 , 22 "
    )
    areas = load_areas(write(tmp_path, ["# first line", *text.splitlines(), "", "# last"]))
    assert areas.int_add(10) == 22
    assert areas.int_add(11) == 23.6925


BAD_TABLES = {
    "wrong header": (["unit,type,area", "add,int8,1"], "line 1: expected the header"),
    "field count": ([HEADER, "add,int8"], "line 2: expected 3 fields, got 2"),
    "unknown unit": ([HEADER, "mul,int8,3"], "line 2: unit 'mul' is not one of"),
    "operand type": ([HEADER, "add,float8,3"], "line 2: operand_type 'float8'"),
    "zero width": ([HEADER, "add,int0,3"], "line 2: operand_type 'int0'"),
    "not a number": ([HEADER, "add,int8,abc"], "line 2: area 'abc' is not a number"),
    "negative": ([HEADER, "add,int8,-1"], "line 2: area '-1' must be a positive"),
    "nan": ([HEADER, "add,int8,nan"], "line 2: area 'nan' must be a positive"),
    "duplicate": ([HEADER, "add,int8,1", "# x", "add,int8,2"], "line 4: add int8 is given twice"),
    "empty": (["# only a comment"], "empty area table"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_table_names_file_and_line(tmp_path, case):
    lines, message = BAD_TABLES[case]
    path = write(tmp_path, lines, name="bad.csv")
    with pytest.raises(AreaTableError, match=message) as err:
        load_areas(path)
    assert str(err.value).startswith(f"{path}")
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, UserError)  # the CLI's one-line error, exit code 2


def test_table_without_rows_in_the_fitted_range_is_rejected(tmp_path):
    no_int_adders = [line for line in BUILTIN.splitlines() if not line.startswith("add,int")]
    path = write(tmp_path, [*no_int_adders, "add,int2,2.7945", "add,int9,19.0755"])
    with pytest.raises(AreaTableError, match=r"integer adder fit needs at least 2 rows.*8\.\.16"):
        load_areas(path)
    one_fp_multiplier = [
        line for line in BUILTIN.splitlines() if not line.startswith("multiply,fp")
    ]
    path = write(tmp_path, [*one_fp_multiplier, "multiply,fp_e8m7,135.837"])
    message = f"{path}: the float multiplier fit needs at least 3"
    with pytest.raises(AreaTableError, match=re.escape(message)):
        load_areas(path)


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(AreaTableError, match=r"nowhere\.csv: cannot read the area table"):
        load_areas(path)


def test_non_positive_extrapolation_is_an_error_naming_the_table(tmp_path):
    # With only int8..16 multipliers, the parabola is negative at width 2.
    lines = [line for line in BUILTIN.splitlines() if not line.startswith("multiply,int")]
    lines += [f"multiply,int{w},{a}" for w, a in zip(range(8, 17), MUL_8_16, strict=True)]
    areas = load_areas(write(tmp_path, lines))
    assert areas.int_mul(4) > 0
    with pytest.raises(AreaTableError, match=r"areas\.csv: the fitted integer multiplier model"):
        areas.int_mul(2)


def test_impossible_unit_shapes_are_rejected():
    with pytest.raises(ValueError, match="no integer adder of shape"):
        default_areas().int_add(0)
    with pytest.raises(ValueError, match="no float multiplier of shape"):
        default_areas().fp_mul(0, 3)
