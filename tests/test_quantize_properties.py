"""Property tests: ``quantize`` against the exact reference and the format's algebra."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from devices import DEVICES
from format_strategies import (
    PROPERTY_SETTINGS,
    assert_bitwise_equal,
    format_names,
    hbfp_names,
    mx_names,
    quantize_both,
    tensors,
    values,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import (
    drawn_noise,
    hbfp_exponent_range,
    mx_scale_exponent,
    reference_quantize,
    row_on_grid,
    row_steps,
    stochastic_candidates,
)

from hbfp_dse.formats import HBFPFormat, MXFormat, NoiseStream, parse_format


def q(x: torch.Tensor, fmt: str, **kw: object) -> torch.Tensor:
    return quantize_both(x, fmt, **kw)


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors())
def test_nearest_equals_reference(fmt: str, x: torch.Tensor, device: str) -> None:
    assert_bitwise_equal(q(x.to(device), fmt).cpu(), reference_quantize(x, fmt), fmt)


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors(), seed=st.integers(0, 2**32))
def test_stochastic_equals_reference_given_the_same_uniforms(
    fmt: str, x: torch.Tensor, seed: int, device: str
) -> None:
    # quantize draws one U[0,1) per element of x, in x's layout, from the noise stream;
    # the reference applies floor(v) + (u < frac(v)) to the same numbers, on every device.
    out = q(x.to(device), fmt, rounding="stochastic", noise=NoiseStream(seed)).cpu()
    u = drawn_noise(x.shape, seed)
    assert_bitwise_equal(out, reference_quantize(x, fmt, rounding="stochastic", noise=u), fmt)


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors(), seed=st.integers(0, 2**32))
def test_stochastic_returns_one_of_the_two_neighbours(fmt: str, x: torch.Tensor, seed: int) -> None:
    out = q(x, fmt, rounding="stochastic", noise=NoiseStream(seed))
    down, up = stochastic_candidates(x, fmt)
    same = (out == down) | (out == up) | (out.isnan() & down.isnan())
    assert same.all(), (fmt, x[~same], out[~same], down[~same], up[~same])


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors(), rounding=st.sampled_from(["nearest", "stochastic"]))
def test_output_lies_on_the_format_grid(fmt: str, x: torch.Tensor, rounding: str) -> None:
    out = q(x, fmt, rounding=rounding, noise=NoiseStream(0))
    spec = parse_format(fmt)
    for row in out.tolist():
        assert row_on_grid(row, spec), (fmt, row)


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors())
def test_nearest_is_idempotent(fmt: str, x: torch.Tensor) -> None:
    once = q(x, fmt)
    assert_bitwise_equal(q(once, fmt), once, fmt)


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors(), seed=st.integers(0, 2**32))
def test_error_is_within_half_a_step_nearest_and_one_step_stochastic(
    fmt: str, x: torch.Tensor, seed: int
) -> None:
    spec = parse_format(fmt)
    nearest = q(x, fmt).tolist()
    stochastic = q(x, fmt, rounding="stochastic", noise=NoiseStream(seed)).tolist()
    for row, near_row, sto_row in zip(x.tolist(), nearest, stochastic, strict=True):
        for xv, n, s, step in zip(row, near_row, sto_row, row_steps(row, spec), strict=True):
            if step == 0:  # saturating or non-finite: no rounding bound applies
                continue
            assert abs(Fraction(n) - Fraction(xv)) <= step / 2, (fmt, xv, n, step)
            err = abs(Fraction(s) - Fraction(xv))
            assert err < step, (fmt, xv, s, step)


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors())
def test_nearest_is_sign_symmetric(fmt: str, x: torch.Tensor) -> None:
    # Half-to-even and MXINT8's half-away-from-zero are both symmetric; zeros keep signs.
    assert_bitwise_equal(q(-x, fmt), -q(x, fmt), fmt)


def _exponents_stay_in_range(x: torch.Tensor, fmt: HBFPFormat | MXFormat, k: int) -> bool:
    """Whether every block's shared exponent is unclamped before and after scaling by 2**k."""
    for row in x.tolist():
        for start in range(0, len(row), fmt.block_size):
            block = [v for v in row[start : start + fmt.block_size] if math.isfinite(v)]
            amax = max(map(abs, block), default=0.0)
            if not amax:
                continue
            e = math.frexp(amax)[1] - 1
            if isinstance(fmt, HBFPFormat):
                lo, hi = hbfp_exponent_range(fmt)
            else:
                lo, hi = -127, 127
                e = mx_scale_exponent(block, fmt)  # type: ignore[assignment]
                if e in (-127, 127):
                    return False
            if not (lo <= e <= hi and lo <= e + k <= hi):
                return False
    return True


@PROPERTY_SETTINGS
@given(
    fmt=st.one_of(hbfp_names(min_exponent_bits=8), mx_names()),
    x=tensors(exponents=(-80, 80), wide=False),
    k=st.integers(-25, 25),
)
def test_scaling_by_a_power_of_two_scales_the_output(fmt: str, x: torch.Tensor, k: int) -> None:
    spec = parse_format(fmt)
    assert isinstance(spec, HBFPFormat | MXFormat)
    # The grid simply moves only while FP32 holds x * 2**k exactly (no subnormals) and
    # every shared exponent stays inside its range.
    finite = x.isfinite()
    magnitudes = x[finite & (x != 0)].abs().double()
    if len(magnitudes):
        smallest = magnitudes.min().item()
        assume(min(smallest, smallest * 2.0**k) >= 2.0**-126)
    assume(_exponents_stay_in_range(x, spec, k))
    expected = q(x, fmt) * 2.0**k
    assert_bitwise_equal(q(x * 2.0**k, fmt), expected, fmt)


@PROPERTY_SETTINGS
@given(fmt=format_names(), x=tensors(max_rows=1), split=st.integers(1, 6))
def test_blocks_are_independent_of_their_neighbours(fmt: str, x: torch.Tensor, split: int) -> None:
    # Cutting the row at a block boundary and quantizing the parts alone changes nothing,
    # so the last partial block is a short block, not padded with its neighbours' data.
    spec = parse_format(fmt)
    block = getattr(spec, "block_size", None) or 1
    cut = min(split * block, x.shape[-1])
    parts = torch.cat([q(x[:, :cut], fmt), q(x[:, cut:], fmt)], dim=-1)
    assert_bitwise_equal(q(x, fmt), parts, fmt)


@pytest.mark.parametrize("fmt", ["hbfp4_b4", "hbfp6_b8_s2_d2", "mxfp4_e2m1_b4", "fp8_e5m2"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_dim_of_a_higher_rank_tensor(fmt: str, data: st.DataObject) -> None:
    shape = data.draw(st.lists(st.integers(1, 6), min_size=3, max_size=4), label="shape")
    x = torch.tensor(
        data.draw(values(math.prod(shape), math.prod(shape), (-140, 100))), dtype=torch.float32
    ).reshape(shape)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    out = q(x, fmt, dim=dim)
    moved = q(x.movedim(dim, -1).contiguous(), fmt).movedim(-1, dim)
    assert_bitwise_equal(out, moved, fmt)
    assert_bitwise_equal(out, reference_quantize(x, fmt, dim=dim), fmt)
