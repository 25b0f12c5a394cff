"""Off the CPU the kernels scale by multiplying with exact powers of two only (a division may
compile to an approximate one, as Triton's does by default); on the CPU they divide, which is
IEEE-exact there. Both give the same bits."""

from __future__ import annotations

import math

import pytest
import torch
from format_strategies import assert_bitwise_equal
from torch.fx.experimental.proxy_tensor import make_fx

from hbfp_dse.formats import NoiseStream, parse_format
from hbfp_dse.formats.kernels import FP32_MIN_POW2, reciprocal_factors, times
from hbfp_dse.formats.quantizer import _kernel

DIVISIONS = {"div", "true_divide", "reciprocal", "floor_divide", "remainder", "fmod"}
FORMATS = [
    "hbfp4",
    "hbfp8_b576",
    "hbfp4_b64_s16",
    "hbfp6_b16_s4_d2",
    "mxfp4_e2m1",
    "mxfp6_e3m2",
    "mxint8",
    "fp8_e4m3",
    "fp8_e5m2",
]


def aten_ops(fmt: str, rounding: str) -> set[str]:
    kernel = _kernel(parse_format(fmt), False)  # as compiled for a GPU
    x = torch.randn(2, 640, 3)
    key = NoiseStream(5).draw(x.device) if rounding == "stochastic" else None
    graph = make_fx(lambda t: kernel(t, key))(x)
    return {
        str(node.target).split(".")[1]
        for node in graph.graph.nodes
        if node.op == "call_function" and str(node.target).startswith("aten.")
    }


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_kernels_for_gpus_never_divide(fmt: str, rounding: str) -> None:
    ops = aten_ops(fmt, rounding)
    assert "mul" in ops  # the trace saw the arithmetic
    assert not ops & DIVISIONS, f"{fmt} {rounding} divides: {sorted(ops & DIVISIONS)}"


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_multiplying_and_dividing_kernels_give_the_same_bits(fmt: str, rounding: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 1280, 2, generator=gen) * torch.exp2(
        torch.randint(-160, 128, (3, 20, 1, 2), generator=gen).float()
    ).repeat_interleave(64, 1).reshape(3, 1280, 2)  # blocks of every scale, subnormals too
    x[0, :5] = torch.tensor([[0.0, -0.0], [math.inf, -math.inf], [math.nan, 1e-45], [3e38, 1.0],
                             [-1e-40, 2e-39]])  # fmt: skip
    key = NoiseStream(7).draw(x.device) if rounding == "stochastic" else None
    multiplied = _kernel(parse_format(fmt), False)(x, key)
    divided = _kernel(parse_format(fmt), True)(x, key)
    assert_bitwise_equal(multiplied, divided, f"{fmt} {rounding}")


def test_reciprocal_factors_divide_exactly_by_every_fp32_power_of_two() -> None:
    gen = torch.Generator().manual_seed(0)
    mantissas = torch.rand(257, generator=gen) + 1.0
    # Every binade, subnormals and the largest finite values included, both signs.
    binades = torch.arange(-149, 128)
    x = torch.ldexp(mantissas[:, None].expand(-1, len(binades)), binades[None, :]).flatten()
    x = torch.cat([x, -x, torch.tensor([0.0, -0.0, 3.4028235e38, 1e-45])])
    for exponent in range(FP32_MIN_POW2, 128):
        e = torch.full((1,), exponent, dtype=torch.int32)
        factors = reciprocal_factors(e, FP32_MIN_POW2)
        divided = x / torch.ldexp(torch.ones(1), e)  # IEEE division on the CPU
        result = times(x, factors)
        same = (result == divided) | (result.isnan() & divided.isnan())
        assert bool(same.all()), f"2**{exponent}: {x[~same][:4]} -> {result[~same][:4]}"
        assert torch.equal(result.signbit(), divided.signbit())


def test_one_factor_where_the_reciprocal_is_a_float32() -> None:
    e = torch.tensor([-127, 0, 126], dtype=torch.int32)
    assert len(reciprocal_factors(e, -127)) == 1
    assert len(reciprocal_factors(e, -128)) == 2
