"""Hypothesis strategies and comparison helpers shared by the quantizer tests."""

from __future__ import annotations

import math
import os
import struct
from typing import Any

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hbfp_dse.formats import NoiseStream, native, quantize

# Examples are small (tens of values) because the reference is exact and slow.
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

FLOAT_NAMES = ("fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2")
MX_ELEMENT_NAMES = ("fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2", "fp4_e2m1", "int8")
SMALL_BLOCKS = (1, 2, 3, 4, 5, 8, 16)


@st.composite
def hbfp_names(draw: st.DrawFn, min_exponent_bits: int = 2) -> str:
    """HBFP names over the whole parameter space, with small blocks so tests see many."""
    m = draw(st.integers(2, 16))
    b = draw(st.sampled_from(SMALL_BLOCKS))
    e = draw(st.sampled_from([x for x in (2, 3, 4, 5, 8, 9, 10, 16) if x >= min_exponent_bits]))
    name = f"hbfp{m}_b{b}_e{e}"
    divisors = [s for s in range(1, b) if b % s == 0]
    if divisors and draw(st.booleans()):
        name += f"_s{draw(st.sampled_from(divisors))}_d{draw(st.integers(1, 3))}"
    return name


@st.composite
def mx_names(draw: st.DrawFn) -> str:
    return f"mx{draw(st.sampled_from(MX_ELEMENT_NAMES))}_b{draw(st.sampled_from(SMALL_BLOCKS))}"


def format_names(min_exponent_bits: int = 2) -> st.SearchStrategy[str]:
    return st.one_of(hbfp_names(min_exponent_bits), mx_names(), st.sampled_from(FLOAT_NAMES))


def as_float32(value: float) -> float:
    """Round a double to the nearest FP32 value (overflow becomes ±inf)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


@st.composite
def values(
    draw: st.DrawFn,
    min_size: int = 1,
    max_size: int = 40,
    exponents: tuple[int, int] = (-160, 115),
    specials: bool = True,
    wide: bool = True,
) -> list[float]:
    """FP32 values clustered around one magnitude (so blocks are interesting), with
    exact ties on fine grids, zeros of both signs, subnormals and optional NaN/±Inf."""
    base = draw(st.integers(*exponents))
    spread = draw(st.integers(0, 30))
    grid = st.builds(
        lambda n, k: as_float32(math.ldexp(n, base - k)),
        st.integers(-(1 << 12), 1 << 12),
        st.integers(0, spread),
    )
    choices = [grid, grid, st.sampled_from([0.0, -0.0])]
    if wide:  # any finite FP32 value, far from the block's magnitude or not
        choices.append(st.floats(width=32, allow_nan=False, allow_infinity=False))
    if specials:
        choices.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return draw(st.lists(st.one_of(*choices), min_size=min_size, max_size=max_size))


@st.composite
def tensors(
    draw: st.DrawFn,
    exponents: tuple[int, int] = (-160, 115),
    specials: bool = True,
    max_rows: int = 3,
    wide: bool = True,
) -> torch.Tensor:
    """A (rows, n) FP32 tensor; rows share a magnitude so each row is one test case."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, 24))
    data = [draw(values(n, n, exponents, specials, wide)) for _ in range(rows)]
    return torch.tensor(data, dtype=torch.float32)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The FP32 bit patterns, with every NaN mapped to one pattern."""
    t = t.to(torch.float32)
    return torch.where(t.isnan(), torch.full_like(t, math.nan), t).view(torch.int32)


def assert_bitwise_equal(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """Exact equality including the sign of zero; any NaN equals any NaN."""
    assert actual.dtype == torch.float32, actual.dtype
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a, e = bits(actual), bits(expected)
    if not torch.equal(a, e):
        bad = (a != e).nonzero()[:5].tolist()
        detail = [(i, actual[tuple(i)].item(), expected[tuple(i)].item()) for i in bad]
        raise AssertionError(f"{msg} first differences (index, actual, expected): {detail}")


def quantize_both(x: torch.Tensor, fmt: str, **kw: Any) -> torch.Tensor:
    """``quantize`` by the eager kernels, checked bit for bit against the CPU's C kernels on the
    same input and noise: every test through this helper tests both. The noise stream (or,
    without one, torch's global generator) advances once, as for one call."""
    noise: NoiseStream | None = kw.pop("noise", None)
    stochastic = kw.get("rounding") == "stochastic"
    rng = torch.get_rng_state()
    twin = None if noise is None else NoiseStream(noise.seed, noise.calls)
    eager = quantize(x, fmt, noise=noise, backend="eager", **kw)
    if x.device.type == "cpu" and (native.enabled() or os.environ.get("CI")):
        after = torch.get_rng_state()
        if stochastic and noise is None:
            torch.set_rng_state(rng)
        c_kernels = quantize(x, fmt, noise=twin, backend="native", **kw)
        torch.set_rng_state(after)
        assert_bitwise_equal(c_kernels, eager, f"C kernels vs eager, {fmt} {kw}")
    return eager
