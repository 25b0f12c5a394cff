"""The kernels scale by multiplying with exact powers of two only: a division may compile to
an approximate one on some backends (Triton's, by default)."""

from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from hbfp_dse.formats import NoiseStream, parse_format
from hbfp_dse.formats.kernels import FP32_MIN_POW2, reciprocal_factors, times
from hbfp_dse.formats.quantize import _kernel

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
    kernel = _kernel(parse_format(fmt))
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
def test_kernels_never_divide(fmt: str, rounding: str) -> None:
    ops = aten_ops(fmt, rounding)
    assert "mul" in ops  # the trace saw the arithmetic
    assert not ops & DIVISIONS, f"{fmt} {rounding} divides: {sorted(ops & DIVISIONS)}"


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
