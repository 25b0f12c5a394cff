"""PE areas and densities: the published figures, block mapping, and the extended models."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest

from hbfp_dse.cost import density, load_areas, pe_area, pe_breakdown
from hbfp_dse.formats import FormatError

BF16_ADD = 173.1375  # built-in add fp_e8m7
INT10_ADD = 21.384
ROOT32 = math.sqrt(32)


def int_add_fit(width: int) -> float:
    """The built-in adder rows' line, for widths past int16."""
    return 16.767 + (width - 8) * 2.3085


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("fp32", 1494.3),
        ("bf16", 309.0),
        ("hbfp8_b256", 180.4),
        ("hbfp6_b256", 118.0),
        ("hbfp4_b256", 70.1),
    ],
)
def test_published_pe_areas(name, published):
    assert pe_area(name) == pytest.approx(published, rel=0.005)


@pytest.mark.parametrize(
    ("name", "published"),
    [("hbfp4_b256", 21.3), ("hbfp6_b256", 12.7), ("hbfp8_b256", 8.3), ("bf16", 4.8)],
)
def test_published_densities_vs_fp32(name, published):
    assert round(density(name), 1) == published


def test_hbfp4_is_4_4x_bf16():
    assert round(density("hbfp4_b256", reference="bf16"), 1) == 4.4


def test_published_figures_term_by_term():
    # mul(int M) + add(int 2M + 4 + 1) + add(bf16)/16 + add(int10)/256, table rows below int17.
    shared = BF16_ADD / 16 + INT10_ADD / 256
    assert pe_area("hbfp4_b256") == pytest.approx(30.861 + 28.3095 + shared, rel=1e-12)
    assert pe_area("hbfp6_b256") == pytest.approx(69.498 + int_add_fit(17) + shared, rel=1e-12)
    assert pe_area("hbfp8_b256") == pytest.approx(122.715 + int_add_fit(21) + shared, rel=1e-12)
    assert pe_area("fp32") == pytest.approx(485.271 + 1009.0575, rel=1e-12)
    assert pe_area("fp16") == pytest.approx(201.8115 + 234.252, rel=1e-12)


def test_perfect_square_blocks_map_to_square_tiles():
    # B = 64 -> 8x8 tile, accumulator 2*4 + 3 + 1 = int12; B = 144 -> 12x12, 10 + 4 + 1 = int15.
    assert pe_area("hbfp4") == pytest.approx(
        30.861 + 26.001 + BF16_ADD / 8 + INT10_ADD / 64, rel=1e-12
    )
    assert pe_area("hbfp5_b144") == pytest.approx(
        53.217 + 32.9265 + BF16_ADD / 12 + INT10_ADD / 144, rel=1e-12
    )


def test_other_block_sizes_use_a_real_tile_side():
    # B = 32: b = sqrt(32) in the shared terms, ceil(log2 sqrt(32)) = 3 growth bits.
    assert pe_area("hbfp4_b32") == pytest.approx(
        30.861 + 26.001 + BF16_ADD / ROOT32 + INT10_ADD / 32, rel=1e-12
    )
    # B = 576 = 24^2: ceil(log2 24) = 5 -> int14 for M = 4.
    assert pe_area("hbfp4_b576") == pytest.approx(
        30.861 + 30.618 + BF16_ADD / 24 + INT10_ADD / 576, rel=1e-12
    )


def test_hbfp_area_grows_with_mantissa_and_shrinks_with_block_size():
    for m in range(2, 16):
        assert pe_area(f"hbfp{m}") < pe_area(f"hbfp{m + 1}")
    for b in (16, 32, 64, 144, 256, 576):
        assert pe_area(f"hbfp4_b{b}") > pe_area(f"hbfp4_b{4 * b}")


def test_mxint8_is_hbfp8_on_blocks_of_32():
    expected = 122.715 + 44.469 + BF16_ADD / ROOT32 + INT10_ADD / 32  # int20 = 16 + 3 + 1
    assert pe_area("mxint8") == pytest.approx(expected, rel=1e-12)
    assert pe_area("hbfp8_b32") == pytest.approx(expected, rel=1e-12)


def test_breakdown_parts_sum_to_the_area():
    breakdown = pe_breakdown("hbfp4_b256")
    assert breakdown.format == "hbfp4_b256"
    assert [p.unit for p in breakdown.parts] == [
        "multiply int4",
        "add int13",
        "add bf16 / 16",
        "add int10 / 256",
    ]
    # 30.861 + 28.3095 + 10.82109 + 0.08353
    assert breakdown.total == pytest.approx(70.0751, abs=1e-4)


def test_density_against_any_reference():
    assert density("fp32") == 1.0
    assert density("hbfp6_b256", reference="hbfp4_b256") == pytest.approx(
        pe_area("hbfp4_b256") / pe_area("hbfp6_b256"), rel=1e-12
    )


def test_unknown_formats_are_rejected():
    with pytest.raises(FormatError):
        pe_area("hbfp1")


@pytest.fixture(scope="module")
def exact_areas(tmp_path_factory) -> object:
    """Built-in integer rows plus float rows that follow the documented float models exactly:
    add = 2 * (2 w ceil(log2 w)) + 3 e with w = m + 4, mul = p^2 + 2 p + e with p = m + 1.
    So every float unit and shifter (2 per bit-stage) has a hand-computable area."""
    builtin = resources.files("hbfp_dse").joinpath("data", "unit_areas_um2.csv").read_text()
    lines = [line for line in builtin.splitlines() if ",fp_" not in line]
    for e, m, shift_feature in ((10, 7, 88), (11, 52, 672), (5, 10, 112), (8, 23, 270), (8, 7, 88)):
        p = m + 1
        lines += [
            f"add,fp_e{e}m{m},{2 * shift_feature + 3 * e}",
            f"multiply,fp_e{e}m{m},{p * p + 2 * p + e}",
        ]
    path: Path = tmp_path_factory.mktemp("areas") / "exact.csv"
    path.write_text("\n".join(lines) + "\n")
    return load_areas(path)


EXACT_BF16_ADD = 200.0  # 2 * (2 * 11 * 4) + 3 * 8


def test_fp8_accumulates_in_bf16(exact_areas):
    # e4m3 multiplier: p = 4 -> 16 + 8 + 4; e5m2: p = 3 -> 9 + 6 + 5.
    assert pe_area("fp8_e4m3", exact_areas) == pytest.approx(28 + EXACT_BF16_ADD, rel=1e-9)
    assert pe_area("fp8_e5m2", exact_areas) == pytest.approx(20 + EXACT_BF16_ADD, rel=1e-9)
    # BF16 itself: mul p = 8 -> 64 + 16 + 8 = 88, accumulating in BF16.
    assert pe_area("bf16", exact_areas) == pytest.approx(88 + EXACT_BF16_ADD, rel=1e-9)


MX_BLOCK = EXACT_BF16_ADD / ROOT32 + INT10_ADD / 32


def test_mxfp4_sums_products_exactly_in_fixed_point(exact_areas):
    # e2m1: mul p = 2 -> 4 + 4 + 2 = 10. Products of 3-bit signed significands are 6 bits,
    # shifted by 0..2*(2 - 0) = 4 (3 stages over 10 bits: 2 * 30 = 60), summed in
    # int(10 + 3 + 1) = int14 (30.618); 60 + 30.618 < a BF16 adder (200).
    expected = 10 + 60 + 30.618 + MX_BLOCK
    assert pe_area("mxfp4_e2m1", exact_areas) == pytest.approx(expected, rel=1e-9)
    units = [p.unit for p in pe_breakdown("mxfp4_e2m1", exact_areas).parts]
    assert units[1:3] == ["shift 10b by 0..4", "add int14"]


def test_mx_with_wide_exponents_accumulates_in_bf16(exact_areas):
    # e4m3: the fixed-point path needs a 38-bit shifter over 0..28 (5 stages: 380) and an
    # int42 adder, far more than one BF16 adder per PE.
    assert pe_area("mxfp8_e4m3", exact_areas) == pytest.approx(
        28 + EXACT_BF16_ADD + MX_BLOCK, rel=1e-9
    )
    # e3m2: shifter 20 bits over 0..12 (4 stages: 160) + int24 (53.703) = 213.7 > 200.
    assert pe_area("mxfp6_e3m2", exact_areas) == pytest.approx(
        18 + EXACT_BF16_ADD + MX_BLOCK, rel=1e-9
    )
    # e2m3: mul p = 4 -> 16 + 8 + 2 = 26; shifter 14 bits over 0..4 (3 stages: 84) + int18
    # (39.852) = 123.9 < 200.
    assert pe_area("mxfp6_e2m3", exact_areas) == pytest.approx(
        26 + 84 + 39.852 + MX_BLOCK, rel=1e-9
    )


def test_mx_block_size_option(exact_areas):
    # mxint8_b64: 8x8 tiles, int(16 + 3 + 1) accumulator.
    assert pe_area("mxint8_b64", exact_areas) == pytest.approx(
        122.715 + 44.469 + EXACT_BF16_ADD / 8 + INT10_ADD / 64, rel=1e-9
    )


def test_two_level_scaling_pays_for_sub_block_shifters(exact_areas):
    # hbfp4_s16: B = 64, S = 16, D = 1. The block sum widens by the largest shift 2*(2^1 - 1)
    # = 2: int(8 + 3 + 1 + 2) = int14. Each 4x4 sub-tile column sum (8 + 2 + 1 + 2 = 13 bits)
    # is shifted by 0..2 (2 stages: 2 * 26 = 52), once per 4 PEs; the micro-exponents are
    # added in int2 once per 16 PEs.
    expected = 30.861 + 30.618 + EXACT_BF16_ADD / 8 + INT10_ADD / 64 + 52 / 4 + 2.7945 / 16
    assert pe_area("hbfp4_s16", exact_areas) == pytest.approx(expected, rel=1e-9)


def test_two_level_scaling_with_wider_micro_exponents(exact_areas):
    # hbfp6_b256_s4_d2: shifts 0..2*(2^2 - 1) = 6. Block sum int(12 + 4 + 1 + 6) = int23;
    # 2x2 sub-tile sums of 12 + 1 + 1 + 6 = 20 bits, 3 stages (2 * 60 = 120) per 2 PEs;
    # int3 micro-exponent adder per 4 PEs.
    expected = (
        69.498 + int_add_fit(23) + EXACT_BF16_ADD / 16 + INT10_ADD / 256 + 120 / 2 + 5.2245 / 4
    )
    assert pe_area("hbfp6_b256_s4_d2", exact_areas) == pytest.approx(expected, rel=1e-9)


def test_two_levels_cost_more_than_one():
    for name in ("hbfp4_s16", "hbfp4_s8", "hbfp6_b256_s16_d2"):
        single = name.split("_s")[0]
        assert pe_area(name) > pe_area(single)


def test_extended_formats_rank_as_documented():
    # HBFP4 on 8x8 tiles is denser than every MX format; MXFP4 is the densest MX format.
    hbfp4 = density("hbfp4")
    mx = {n: density(n) for n in ("mxfp8_e4m3", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4_e2m1")}
    assert all(d < hbfp4 for d in mx.values())
    assert max(mx, key=mx.__getitem__) == "mxfp4_e2m1"
    assert density("bf16") < density("fp8_e4m3") < density("hbfp8_b256")
