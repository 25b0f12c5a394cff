"""Format names (docs/formats.md): parsing, canonical names, defaults, storage bits, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hbfp_dse.formats import (
    FloatFormat,
    FormatError,
    HBFPFormat,
    MXFormat,
    parse_format,
    quantize,
)

FLOAT_NAMES = ["fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"]
MX_NAMES = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4_e2m1", "mxint8"]
HBFP_NAMES = [
    *(f"hbfp{m}" for m in range(2, 17)),
    "hbfp4_b64",
    "hbfp6_b144",
    "hbfp4_b576",
    "hbfp4_b16",
    "hbfp8_b32",
    "hbfp8_e10",
    "hbfp4_e4",
    "hbfp4_b64_s16",
    "hbfp4_b64_s16_d2",
    "hbfp6_b16_s4_d2",
    "hbfp4_b64_e8_s16_d3",
]
VALID_NAMES = FLOAT_NAMES + MX_NAMES + [f"{n}_b16" for n in MX_NAMES] + HBFP_NAMES


@pytest.mark.parametrize("name", VALID_NAMES)
def test_every_valid_name_parses_and_round_trips(name: str) -> None:
    fmt = parse_format(name)
    assert parse_format(fmt.name) == fmt
    assert parse_format(fmt) is fmt  # format objects pass through
    assert hash(parse_format(fmt.name)) == hash(fmt)
    assert parse_format(name.upper()) == fmt  # names are case-insensitive
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.name = "other"  # type: ignore[misc]


def test_families_are_the_right_classes() -> None:
    assert all(isinstance(parse_format(n), FloatFormat) for n in FLOAT_NAMES)
    assert all(isinstance(parse_format(n), MXFormat) for n in MX_NAMES)
    assert all(isinstance(parse_format(n), HBFPFormat) for n in HBFP_NAMES)


def test_hbfp_fields_and_defaults() -> None:
    assert parse_format("hbfp4") == parse_format("hbfp4_b64") == parse_format("hbfp4_b64_e8")
    assert parse_format("hbfp4") == HBFPFormat(4, 64, 8)
    assert parse_format("hbfp4_b64_e8").name == "hbfp4"  # the canonical name drops defaults
    assert parse_format("hbfp4_s16") == parse_format("hbfp4_s16_d1")
    fmt = parse_format("hbfp6_b144_e10_s12_d3")
    assert (fmt.mantissa_bits, fmt.block_size, fmt.exponent_bits) == (6, 144, 10)
    assert (fmt.sub_block_size, fmt.micro_exp_bits) == (12, 3)
    assert fmt.name == "hbfp6_b144_e10_s12_d3"
    assert len({parse_format(n) for n in ["hbfp4", "hbfp4_b64", "hbfp4_e8", "HBFP4"]}) == 1


def test_mx_defaults_to_blocks_of_32() -> None:
    assert parse_format("mxint8") == parse_format("mxint8_b32") == MXFormat("int8", 32)
    assert parse_format("mxint8_b32").name == "mxint8"
    assert parse_format("mxfp4_e2m1_b16").block_size == 16


@pytest.mark.parametrize(
    ("name", "bits"),
    [
        ("fp32", 32),
        ("bf16", 16),
        ("fp16", 16),
        ("fp8_e4m3", 8),
        ("fp8_e5m2", 8),
        ("hbfp4", 4 + 8 / 64),
        ("hbfp8", 8 + 8 / 64),
        ("hbfp6_b144", 6 + 8 / 144),
        ("hbfp8_b32_e10", 8 + 10 / 32),
        ("hbfp4_b64_s16", 4 + 8 / 64 + 1 / 16),
        ("hbfp4_b64_s16_d2", 4 + 8 / 64 + 2 / 16),
        ("mxfp8_e4m3", 8 + 8 / 32),
        ("mxfp8_e5m2", 8 + 8 / 32),
        ("mxfp6_e2m3", 6 + 8 / 32),
        ("mxfp6_e3m2", 6 + 8 / 32),
        ("mxfp4_e2m1", 4 + 8 / 32),
        ("mxint8", 8 + 8 / 32),  # sign + 7 bits (1.6 fixed point) + the E8M0 scale
        ("mxfp4_e2m1_b16", 4 + 8 / 16),
    ],
)
def test_bits_per_element(name: str, bits: float) -> None:
    assert parse_format(name).bits_per_element == pytest.approx(bits, rel=0, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "levels"),
    [("fp32", 0), ("fp8_e4m3", 0), ("hbfp4", 1), ("hbfp4_s16", 2), ("mxfp4_e2m1", 1)],
)
def test_scaling_levels(name: str, levels: int) -> None:
    assert parse_format(name).scaling_levels == levels


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("hbfp1", ["M=1", "[2, 16]"]),
        ("hbfp17", ["M=17", "[2, 16]"]),
        ("hbfp4_b0", ["B=0"]),
        ("hbfp4_s3", ["S=3", "B=64", "divide"]),  # 3 does not divide the default 64
        ("hbfp4_b64_s64", ["S=64"]),  # a sub-block must be smaller than the block
        ("hbfp4_d2", ["_d", "_s"]),  # D without S
        ("hbfp4_e1", ["E=1"]),
        ("hbfp4_b32_b64", ["twice"]),
        ("hbfp4_s8_s16", ["twice"]),
        ("mxint8_b0", ["B=0"]),
        ("mxfp5", ["accepted", "mxfp4_e2m1", "hbfp"]),
        ("foo", ["accepted", "fp8_e4m3", "hbfp"]),
        ("", ["accepted"]),
        ("hbfp", ["accepted"]),
        ("hbfp4_x3", ["accepted"]),
        ("hbfp4_b", ["accepted"]),
        ("fp8", ["accepted"]),
    ],
)
def test_bad_names_say_what_is_wrong(name: str, words: list[str]) -> None:
    with pytest.raises(FormatError) as info:
        parse_format(name)
    message = str(info.value)
    assert repr(name) in message or name in message
    for word in words:
        assert word in message, (word, message)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(FormatError, ValueError)
    with pytest.raises(FormatError, match="name string"):
        parse_format(4)  # type: ignore[arg-type]


def test_quantize_rejects_unknown_rounding_and_names() -> None:
    x = torch.ones(4)
    with pytest.raises(FormatError, match="nearest"):
        quantize(x, "hbfp4", rounding="truncate")
    with pytest.raises(FormatError, match="accepted"):
        quantize(x, "hbfp4_q3")
    with pytest.raises(IndexError):
        quantize(x, "hbfp4", dim=1)
