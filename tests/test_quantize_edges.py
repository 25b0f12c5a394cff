"""Edge cases of ``quantize`` with hand-computed expectations (docs/formats.md)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from format_strategies import assert_bitwise_equal, quantize_both
from reference import drawn_noise, reference_quantize, stochastic_candidates

from hbfp_dse.formats import NoiseStream, kernels, quantize

NAN, INF = math.nan, math.inf
ONE_PER_FAMILY = ["hbfp4", "hbfp6_b16_s4_d2", "mxfp4_e2m1", "mxint8", "fp8_e4m3"]
EVERY_FAMILY = [
    "fp32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    "hbfp2",
    "hbfp4",
    "hbfp8_b32",
    "hbfp16_b16",
    "hbfp4_e4",
    "hbfp8_e10",
    "hbfp6_b16_s4_d2",
    "hbfp4_b64_s16",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxfp6_e2m3",
    "mxfp6_e3m2",
    "mxfp4_e2m1",
    "mxint8",
]
ROUNDINGS = ["nearest", "stochastic"]


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def q(x: torch.Tensor, fmt: str, **kw: object) -> torch.Tensor:
    return quantize_both(x, fmt, **kw)


def p2(k: int, m: float = 1.0) -> float:
    return math.ldexp(m, k)


def check(fmt: str, x: list[float], expected: list[float]) -> None:
    """Quantize one row and compare bitwise with hand-computed values (and the reference)."""
    out = q(t(*x), fmt)
    assert_bitwise_equal(out, t(*expected), f"{fmt} {x}")
    assert_bitwise_equal(reference_quantize(t(*x), fmt), t(*expected), f"reference {fmt} {x}")


# --- HBFP: the shared exponent -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # max 1.0 = 2**0: scale 2**(0-2); 0.3/0.25 = 1.2 -> 1; 0.125/0.25 = 0.5 ties to 0
        ("hbfp4_b4", [1.0, 0.3, -0.6, 0.125], [1.0, 0.25, -0.5, 0.0]),
        # max -4 = -2**2: scale 1; 0.75 -> 1, 0.5 ties to even 0, 2.5 ties to even 2
        ("hbfp4_b4", [-4.0, 0.75, 0.5, 2.5], [-4.0, 1.0, 0.0, 2.0]),
        # max just below 1: exponent -1, scale 1/8, 7.99.. clamps to 7: 0.875
        ("hbfp4_b2", [1.0 - 2**-24, 0.3], [0.875, 0.25]),
        # hbfp8: max 1040 has exponent 10, scale 16; 8/16 ties to 0, 24/16 = 1.5 -> 2
        ("hbfp8_b4", [1024.0, -1040.0, 8.0, 24.0], [1024.0, -1040.0, 0.0, 32.0]),
        # a ceil(log2) exponent would double the scale here: 1.25 needs scale 1/4
        ("hbfp5_b2", [2.0, 1.25], [2.0, 1.25]),
    ],
)
def test_block_max_at_and_near_a_power_of_two(
    fmt: str, x: list[float], expected: list[float]
) -> None:
    check(fmt, x, expected)


def test_largest_value_keeps_m_minus_1_significant_bits() -> None:
    # hbfp6: q in [-31, 31]; max in [16, 32) * 2**k keeps 5 bits.
    x = [p2(-20, 31.0), p2(-20, 17.0), p2(-20, 16.5), p2(-20, 1.25)]
    check("hbfp6_b4", x, [p2(-20, 31.0), p2(-20, 17.0), p2(-20, 16.0), p2(-20, 1.0)])


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # 1e-10 has exponent -34: scale 2**-36; 6.87 -> 7, 2.06 -> 2, -0.07 -> -0
        ("hbfp4_b4", [1e-10, 3e-11, -1e-12], [p2(-36, 7), p2(-35), -0.0]),
        # FP32 subnormals with E=8: the exponent stops at -126, so scale 2**-132
        ("hbfp8_b4", [p2(-134, 3), p2(-139), p2(-141, 5)], [p2(-132), 0.0, 0.0]),
        # with E=10 the exponent -133 is allowed: scale 2**-139, precision is kept
        ("hbfp8_b4_e10", [p2(-134, 3), p2(-139), p2(-141, 5)], [p2(-134, 3), p2(-139), p2(-139)]),
        # the least subnormal 1e-45 = 2**-149 alone: kept with E=10 and 16, lost with E=8
        ("hbfp4_e10", [1e-45], [p2(-149)]),
        ("hbfp16_e16", [1e-45, -1e-45], [p2(-149), -p2(-149)]),
        ("hbfp4", [1e-45, -1e-45], [0.0, -0.0]),
        ("hbfp8", [1e-40, 5e-41], [p2(-132), 0.0]),  # 1e-40 / 2**-132 = 0.54 -> 1
        # E=4: exponents [-6, 7]; 0.01 has exponent -7, so scale 2**-8: 2.56 -> 3
        ("hbfp4_e4_b2", [0.01, 0.001], [3 / 256, 0.0]),
    ],
)
def test_tiny_blocks(fmt: str, x: list[float], expected: list[float]) -> None:
    check(fmt, x, expected)


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # E=4: exponent 11 saturates at 7, scale 2**5, q clamps at 7: the largest value 224
        ("hbfp4_e4_b4", [1000.0, -3000.0, 100.0, 50.0], [224.0, -224.0, 96.0, 64.0]),
        ("hbfp4_e4_b1", [3.0e38], [224.0]),
        # E=2: exponents [0, 1], M=2: q in {-1, 0, 1}
        ("hbfp2_e2_b2", [5.0, -0.6], [2.0, -0.0]),
        ("hbfp2_e2_b2", [-1.4, 0.6], [-1.0, 1.0]),
        # E=8 at FP32's top: FP32 max / 2**125 = 7.99.. clamps to 7
        ("hbfp4_b2", [3.4028234663852886e38, -1e38], [p2(125, 7), -p2(126)]),
    ],
)
def test_huge_values_and_exponent_saturation(
    fmt: str, x: list[float], expected: list[float]
) -> None:
    check(fmt, x, expected)


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # e_B = 4 (max 20); sub-blocks of 2 with D=1: e_j in [3, 4].
        # [20, 3]: e=4, scale 2**(4-4)=1 -> 20, 3; [0.9, -0.4]: e_j=3 (floor), scale 0.5
        ("hbfp6_b4_s2", [20.0, 3.0, 0.9, -0.4], [20.0, 3.0, 1.0, -0.5]),
        # D=2: e_j in [1, 4]; [0.9, -0.4]: e_j = 1, scale 2**-3: 7.2 -> 7, -3.2 -> -3
        ("hbfp6_b4_s2_d2", [20.0, 3.0, 0.9, -0.4], [20.0, 3.0, 0.875, -0.375]),
        # D=3: e_j in [-3, 4]: [0.9, -0.4] has its own exponent -1: scale 2**-5
        ("hbfp6_b4_s2_d3", [20.0, 3.0, 0.9, -0.4], [20.0, 3.0, p2(-5, 29), p2(-5, -13)]),
        # an all-zero sub-block stays zero; a NaN sub-block does not affect the others
        ("hbfp6_b4_s2_d3", [0.0, -0.0, 1.0, 0.3], [0.0, -0.0, 1.0, p2(-4, 5)]),
        ("hbfp6_b4_s2_d3", [NAN, INF, 1.0, 0.3], [NAN, INF, 1.0, p2(-4, 5)]),
    ],
)
def test_two_level_scaling(fmt: str, x: list[float], expected: list[float]) -> None:
    check(fmt, x, expected)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("length", [3, 16, 20, 47])
def test_a_two_level_block_longer_than_its_axis_pads_only_the_sub_blocks_it_needs(
    length: int, rounding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(length)
    x = torch.randn(6, length, 5, generator=gen) * torch.exp2(torch.randint(-30, 30, (6, 1, 5)))
    padded: list[int] = []
    to_blocks = kernels.to_blocks

    def recording(t: torch.Tensor, block: int) -> torch.Tensor:
        blocks = to_blocks(t, block)
        padded.append(blocks.shape[1] * blocks.shape[2])
        return blocks

    monkeypatch.setattr(kernels, "to_blocks", recording)
    u = drawn_noise(x.shape, 2) if rounding == "stochastic" else None
    for fmt in ("hbfp4_b65536_s16", "hbfp6_b576_s16_d2"):
        out = quantize(x, fmt, dim=1, rounding=rounding, noise=NoiseStream(2), backend="eager")
        expected = reference_quantize(x, fmt, dim=1, rounding=rounding, noise=u)
        assert_bitwise_equal(out, expected, fmt)
    sub_blocks = max(2, -(-length // 16))
    assert set(padded) == {sub_blocks * 16}  # not 65,536 or 576 values


# --- zeros, NaN and Inf --------------------------------------------------------------------


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", EVERY_FAMILY)
def test_zero_blocks_stay_zero_with_their_signs(fmt: str, rounding: str) -> None:
    x = torch.zeros(3, 70)
    x[1, ::3] = -0.0
    x[2, 64:] = 1.0  # a zero block next to a non-zero one
    out = q(x, fmt, rounding=rounding, noise=NoiseStream(0))
    assert_bitwise_equal(out[:2], x[:2])
    assert_bitwise_equal(out[2, :32], x[2, :32])


def _with_specials() -> torch.Tensor:
    x = torch.randn(3, 80, generator=torch.Generator().manual_seed(1))
    x[0, 1], x[1, 5], x[2, 79], x[2, 0] = NAN, INF, -INF, NAN
    x[1, 64:] = NAN  # a whole block of NaN
    return x


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", EVERY_FAMILY)
def test_nan_and_inf_never_become_finite(fmt: str, rounding: str) -> None:
    x = _with_specials()
    out = q(x, fmt, rounding=rounding, noise=NoiseStream(0))
    special = ~x.isfinite()
    assert not out[special].isfinite().any()
    if fmt.startswith("hbfp") or fmt in ("fp32", "bf16", "fp16", "fp8_e5m2"):
        assert_bitwise_equal(out[special], x[special])  # NaN stays NaN, ±Inf stays ±Inf
    elif fmt == "fp8_e4m3":
        assert out[special].isnan().all()  # OCP E4M3 has no infinity
    if fmt.startswith("hbfp"):
        # The finite elements are quantized with the max of the finite ones only.
        zeroed = q(torch.where(special, 0.0, x), fmt, rounding=rounding, noise=NoiseStream(0))
        assert_bitwise_equal(out[~special], zeroed[~special])
    if fmt.startswith("mx"):
        # MX: a NaN or Inf anywhere in a block makes the whole block NaN, no other block.
        for row in range(3):
            for start in range(0, 80, 32):
                block = slice(start, start + 32)
                has_special = bool(special[row, block].any())
                assert bool(out[row, block].isnan().all()) == has_special, (row, start)
                assert bool(out[row, block].isfinite().all()) == (not has_special)


# --- block layout ----------------------------------------------------------------------------


def test_last_partial_block_is_not_padded_with_neighbours() -> None:
    # [8, 8, 8, 8] is one block; 0.3 alone has exponent -2, scale 2**-4: 4.8 -> 5
    check("hbfp4_b4", [8.0, 8.0, 8.0, 8.0, 0.3], [8.0, 8.0, 8.0, 8.0, 0.3125])
    # MX: [0.3] alone has scale 2**-4 (e2m1 emax 2): 4.8 -> 4 (step 2 there) -> 0.25
    check("mxfp4_e2m1_b4", [6.0, 6.0, 6.0, 6.0, 0.3], [6.0, 6.0, 6.0, 6.0, 0.25])


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize(
    ("fmt", "n", "block"),
    [("hbfp4", 70, 64), ("hbfp6_b16_s4_d2", 22, 16), ("mxfp4_e2m1", 40, 32), ("mxint8", 33, 32)],
)
def test_last_partial_block_equals_the_short_block_alone(
    fmt: str, n: int, block: int, rounding: str
) -> None:
    x = torch.randn(4, n, generator=torch.Generator().manual_seed(2))
    x[:, -1] *= 1000  # the tail's max differs from the full blocks' max
    out = q(x, fmt, rounding=rounding, noise=NoiseStream(3))
    down, up = stochastic_candidates(x[:, block:], fmt)
    if rounding == "nearest":
        assert_bitwise_equal(out[:, block:], q(x[:, block:], fmt))
    else:
        tail = out[:, block:]
        assert ((tail == down) | (tail == up)).all()
    assert_bitwise_equal(q(x, fmt), reference_quantize(x, fmt))


@pytest.mark.parametrize("fmt", ONE_PER_FAMILY)
def test_dims_of_3d_and_4d_tensors(fmt: str) -> None:
    gen = torch.Generator().manual_seed(4)
    for shape in [(5, 37, 3), (2, 3, 33, 4)]:
        x = torch.randn(shape, generator=gen) * torch.exp2(torch.randn(shape, generator=gen) * 4)
        for dim in range(-len(shape), len(shape)):
            out = q(x, fmt, dim=dim)
            assert_bitwise_equal(out, q(x.movedim(dim, -1), fmt).movedim(-1, dim), f"dim {dim}")
            if dim in (1, -1):
                assert_bitwise_equal(out, reference_quantize(x, fmt, dim=dim), f"dim {dim}")
        # Stochastic noise is drawn per element of x, whatever the blocking dim.
        sto = q(x, fmt, dim=1, rounding="stochastic", noise=NoiseStream(5))
        u = drawn_noise(shape, 5)
        assert_bitwise_equal(sto, reference_quantize(x, fmt, 1, "stochastic", u))


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", ["fp32", "bf16", *ONE_PER_FAMILY])
def test_empty_tensors_keep_their_shape(fmt: str, rounding: str) -> None:
    for shape, dim in [((0,), 0), ((3, 0), -1), ((0, 5), -1), ((2, 0, 3), 1), ((2, 0, 3), 0)]:
        out = quantize(torch.empty(shape), fmt, dim=dim, rounding=rounding)
        assert out.shape == shape
        assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("hbfp4", 0.3125),  # exponent -2, scale 2**-4: 4.8 -> 5
        ("mxfp4_e2m1", 0.25),  # scale 2**-4: 4.8 -> 4 (e2m1 step 2 in [4, 6])
        ("mxint8", 77 / 256),  # scale 2**-2: 1.2 * 64 = 76.8 -> 77
        ("fp8_e4m3", 0.3125),  # exponent -2, 3 mantissa bits: step 2**-5, 9.6 -> 10
        ("fp32", 0.30000001192092896),
    ],
)
def test_zero_dim_tensors(fmt: str, expected: float) -> None:
    out = q(torch.tensor(0.3), fmt)
    assert out.shape == ()
    assert out.dtype == torch.float32
    assert out.item() == expected
    sto = q(torch.tensor(-0.3), fmt, rounding="stochastic", noise=NoiseStream(0))
    assert sto.shape == ()
    down, up = stochastic_candidates(torch.tensor(-0.3), fmt)
    assert sto.item() in (down.item(), up.item())


def test_input_dtypes_and_autograd() -> None:
    x64 = torch.tensor([1.0, 0.3, -2.5], dtype=torch.float64, requires_grad=True)
    out = q(x64, "hbfp4_b3")
    assert out.dtype == torch.float32
    assert not out.requires_grad
    assert_bitwise_equal(out, q(x64.detach().float(), "hbfp4_b3"))
    ints = torch.tensor([7, -3, 100])
    # max 100: exponent 6, scale 2**4; 7/16 -> 0, -3/16 -> -0, 6.25 -> 6
    assert_bitwise_equal(q(ints, "hbfp4_b3"), t(0.0, -0.0, 96.0))


# --- stochastic rounding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        "hbfp4",
        "hbfp6_b16_s4_d2",
        "fp8_e4m3",
        "fp8_e5m2",
        "bf16",
        "fp16",
        "mxint8",
        "mxfp4_e2m1",
        "mxfp6_e3m2",
    ],
)
def test_stochastic_rounding_of_a_fixed_value_is_unbiased(fmt: str) -> None:
    n = 1 << 16
    x = torch.full((n,), 0.3)  # the FP32 value nearest 0.3, between two grid points
    out = q(x, fmt, rounding="stochastic", noise=NoiseStream(7))
    down, up = (c[0].item() for c in stochastic_candidates(x[:1], fmt))
    assert down < 0.3 < up
    assert set(out.unique().tolist()) == {down, up}
    p = float((Fraction(x[0].item()) - Fraction(down)) / (Fraction(up) - Fraction(down)))
    mean = out.double().mean().item()
    # The mean of n Bernoulli(p) draws, scaled by the step: 5 standard deviations.
    sigma = (up - down) * math.sqrt(p * (1 - p) / n)
    assert abs(mean - x[0].item()) < 5 * sigma, (mean, x[0].item(), sigma)


@pytest.mark.parametrize("fmt", ["hbfp4", "hbfp6_b16_s4_d2", "mxint8", "fp8_e4m3"])
def test_stochastic_rounding_is_unbiased_over_many_values(fmt: str) -> None:
    gen = torch.Generator().manual_seed(8)
    exponents = torch.randint(-8, 8, (16, 1), generator=gen).float()
    x = torch.randn(16, 64, generator=gen) * torch.exp2(exponents)
    down, up = stochastic_candidates(x, fmt)
    inside = (down <= x) & (x <= up)  # saturated values lie outside their candidates
    assert inside.float().mean() > 0.95
    d, u, xs = down[inside].double(), up[inside].double(), x[inside].double()
    p = torch.where(u > d, (xs - d) / (u - d).clamp(min=1e-300), 0.0)
    repeats = 64
    total, variance = 0.0, float(((u - d) ** 2 * p * (1 - p)).sum()) * repeats
    noise = NoiseStream(8)  # one call after another, as in training
    for _ in range(repeats):
        out = q(x, fmt, rounding="stochastic", noise=noise)
        total += float((out[inside].double() - xs).sum())
    # The summed error is a sum of independent zero-mean terms: |z| < 5.
    z = total / math.sqrt(variance)
    assert abs(z) < 5, z


@pytest.mark.parametrize("fmt", [*ONE_PER_FAMILY, "bf16"])
def test_stochastic_rounding_is_reproducible_per_seed(fmt: str) -> None:
    x = torch.randn(8, 128, generator=torch.Generator().manual_seed(9))

    def run(seed: int) -> torch.Tensor:
        return q(x, fmt, rounding="stochastic", noise=NoiseStream(seed))

    assert_bitwise_equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    # Without a stream, one is seeded from torch's global generator (seeded the usual way).
    torch.manual_seed(11)
    first = q(x, fmt, rounding="stochastic")
    torch.manual_seed(11)
    assert_bitwise_equal(q(x, fmt, rounding="stochastic"), first)


# --- HBFP8 and MXINT8 share a grid -----------------------------------------------------------


def test_hbfp8_b32_and_mxint8_differ_only_at_ties() -> None:
    gen = torch.Generator().manual_seed(10)
    exponents = torch.randint(-100, 100, (64, 1), generator=gen).float()
    x = torch.randn(64, 32, generator=gen) * torch.exp2(exponents)
    # Row 0: max 1.0 (scale 2**-6) and ties (k + 1/2) / 64 for k = 0..30.
    x[0] = t(1.0, *[(k + 0.5) / 64 for k in range(31)])
    # Row 1: max -1.5 * 2**-3 (scale 2**-9) and negative ties.
    x[1] = t(-0.1875, *[-(k + 0.5) * 2**-9 for k in range(31)])
    hbfp, mx = q(x, "hbfp8_b32"), q(x, "mxint8")
    # Half-even and half-away differ exactly at ties whose integer part is even.
    scale = torch.exp2(torch.frexp(x.abs().amax(-1, keepdim=True)).exponent - 7.0)
    v = (x / scale).abs()
    ties = v - v.floor() == 0.5
    differ = hbfp != mx
    assert torch.equal(differ, ties & (v.floor() % 2 == 0))
    assert differ[0].sum() == 16
    assert differ[1].sum() == 16
    # At a tie, MXINT8 is one step further from zero.
    assert torch.equal((mx - hbfp)[differ].abs(), scale.expand_as(x)[differ])
    assert ((mx.abs() > hbfp.abs()) == differ).all()


def test_hbfp8_and_mxint8_scales_differ_below_the_hbfp_exponent_range() -> None:
    # max 1.5 * 2**-128: HBFP8 (E=8) stops at exponent -126 (scale 2**-132), while E8M0
    # reaches 2**-127 (step 2**-133): 3 * 2**-135 rounds to 0 and to 2**-133.
    x = [p2(-129, 3), p2(-135, 3)]
    check("hbfp8_b2", x, [p2(-129, 3), 0.0])
    check("mxint8_b2", x, [p2(-129, 3), p2(-133)])


# --- MX element formats, written out by hand --------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # E2M1 grid: 0, 0.5, 1, 1.5, 2, 3, 4, 6. max 5.9: exponent 2 - emax 2 -> scale 1
        ("mxfp4_e2m1_b4", [1.0, 0.3, -2.6, 5.9], [1.0, 0.5, -3.0, 6.0]),
        # ties to even: 0.25 -> 0, 0.75 -> 1, 2.5 -> 2, 5 -> 4
        ("mxfp4_e2m1_b4", [0.25, 0.75, 2.5, 5.0], [0.0, 1.0, 2.0, 4.0]),
        # max 20: scale 2**(4-2) = 4; 3, 0.75 -> 1, 0.125 -> 0, -5 -> -4
        ("mxfp4_e2m1_b4", [12.0, 3.0, 0.5, -20.0], [12.0, 4.0, 0.0, -16.0]),
        # saturation: 7.9 and 7.0 round to 8 > 6, 6.9 -> 6
        ("mxfp4_e2m1_b4", [7.9, 7.0, 6.9, -7.5], [6.0, 6.0, 6.0, -6.0]),
        # E2M3 (max 7.5, emax 2): steps 1/8 below 2, 1/4 in [2, 4), 1/2 in [4, 8)
        ("mxfp6_e2m3_b4", [7.7, 0.0625, 3.1, -4.25], [7.5, 0.0, 3.0, -4.0]),
        # E3M2 (max 28, emax 4, emin -2): 30 -> 32 saturates to 28; 0.05 is subnormal
        ("mxfp6_e3m2_b4", [30.0, 0.3, 1.1, -0.05], [28.0, 0.3125, 1.0, -0.0625]),
        # E4M3 (max 448, emax 8): 500 -> 512 saturates; max 1000: scale 2, 500 -> 448
        ("mxfp8_e4m3_b2", [500.0, 1.0], [448.0, 1.0]),
        ("mxfp8_e4m3_b2", [1000.0, 3.0], [896.0, 3.0]),
        # E8M0 lower clamp: max 2**-130 wants scale 2**-138 but gets 2**-127, so the
        # elements are 2**-3, 2**-13 (-> 0), -2**-10 (tie -> -0), 3 * 2**-9 (subnormal)
        (
            "mxfp8_e4m3_b4",
            [p2(-130), p2(-140), -p2(-137), p2(-136, 3)],
            [p2(-130), 0.0, -0.0, p2(-136, 3)],
        ),
        # E5M2 (max 57344, emax 15): MX saturates where the plain FP8 cast overflows
        ("mxfp8_e5m2_b2", [60000.0, 1.0], [57344.0, 1.0]),
        ("mxfp8_e5m2_b2", [65000.0, 3.0], [57344.0, 3.0]),
        # MXINT8 (1.6 fixed point, emax 0): ties away from zero, saturation at 127/64
        ("mxint8_b4", [1.0, 32.5 / 64, -1.5 / 64, 127.5 / 64], [1.0, 33 / 64, -2 / 64, 127 / 64]),
        # max 3: scale 2; (1/64) / 2 is half a unit (1/64): away from zero -> 1/64 * 2
        ("mxint8_b2", [-3.0, 1 / 64], [-3.0, 1 / 32]),
    ],
)
def test_mx_blocks_by_hand(fmt: str, x: list[float], expected: list[float]) -> None:
    check(fmt, x, expected)


# --- element-wise floats and torch's own casts -------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "x", "expected"),
    [
        # OCP E4M3: 464 ties to 448 (even); larger values saturate; Inf has no encoding
        ("fp8_e4m3", [464.0, 470.0, 1e6, -1e30], [448.0, 448.0, 448.0, -448.0]),
        ("fp8_e4m3", [INF, -INF, NAN], [NAN, NAN, NAN]),
        # subnormal step 2**-9: 2**-10 ties to 0, 1.5 * 2**-10 -> 2**-9, 1.5 * 2**-9 -> 2**-8
        ("fp8_e4m3", [p2(-10), p2(-10, 1.5), p2(-9, 1.5), -p2(-11)], [0.0, p2(-9), p2(-8), -0.0]),
        # E5M2: 61440 ties to 65536, beyond max: inf (IEEE-like)
        ("fp8_e5m2", [57344.0, 61439.0, 61440.0, -1e6], [57344.0, 57344.0, INF, -INF]),
        ("fp8_e5m2", [INF, -INF, NAN], [INF, -INF, NAN]),
        ("fp8_e5m2", [p2(-17), p2(-17, 3), p2(-16, 1.5)], [0.0, p2(-15), p2(-15)]),
        # FP16: 65520 ties to 65536 = inf; subnormal step 2**-24
        ("fp16", [65504.0, 65519.0, 65520.0], [65504.0, 65504.0, INF]),
        ("fp16", [p2(-25), p2(-25, 3), -p2(-26)], [0.0, p2(-23), -0.0]),
        ("bf16", [3.4028234663852886e38, 1.00390625, 1.01171875], [INF, 1.0, 1.015625]),
    ],
)
def test_float_formats_by_hand(fmt: str, x: list[float], expected: list[float]) -> None:
    check(fmt, x, expected)


def _wide_values(seed: int, low: int, high: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    exponents = torch.randint(low, high, (8192,), generator=gen).float()
    x = torch.randn(8192, generator=gen) * torch.exp2(exponents)
    x[:4] = t(NAN, INF, -INF, -0.0)
    return x


@pytest.mark.parametrize(
    ("fmt", "dtype", "low", "high"),
    [
        ("bf16", torch.bfloat16, -140, 128),
        ("fp16", torch.float16, -30, 17),
        ("fp8_e5m2", torch.float8_e5m2, -20, 17),
        ("fp8_e4m3", torch.float8_e4m3fn, -12, 8),
    ],
)
def test_float_formats_agree_with_torch_casts(
    fmt: str, dtype: torch.dtype, low: int, high: int
) -> None:
    x = _wide_values(12, low, high)
    if dtype == torch.float8_e4m3fn:
        x = x[x.isnan() | (x.abs() <= 448)]  # torch's E4M3 overflow is not part of OCP
    expected = x.to(dtype).float()
    assert_bitwise_equal(q(x, fmt), expected, fmt)
    assert_bitwise_equal(reference_quantize(x, fmt), expected, f"reference {fmt}")
