"""Quantization-error statistics: every statistic against an independent computation (numpy,
scipy's Wasserstein distance, block scales by hand), the 6 dB per mantissa bit of Gaussian
data, the scales each element is quantized at, and a probe in training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from hbfp_dse.emulation import Operand, Probe
from hbfp_dse.emulation.probe import operand_sums, wasserstein_1d
from hbfp_dse.formats import parse_format, quantize
from hbfp_dse.formats.scales import element_scales
from hbfp_dse.training.config import TrainConfig
from hbfp_dse.training.trainer import train

pytestmark = pytest.mark.usefixtures("eager_quantizer")


def heavy_tailed(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Values over many binades, with zeros: something to flush and to saturate."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator) * torch.exp2(
        torch.randint(-12, 4, shape, generator=generator).float()
    )
    return torch.where(torch.rand(shape, generator=generator) < 0.05, 0.0, x)


def hbfp_by_hand(x: np.ndarray, mantissa_bits: int, block: int) -> tuple[np.ndarray, ...]:
    """Blocks of ``block`` along the last axis of a 2-D array: each element's shared exponent
    (floor(log2 of the block's largest magnitude)), the largest magnitude representable and
    the step between representable values."""
    rows, length = x.shape
    exponent = np.zeros(x.shape, dtype=np.int64)
    bound = np.zeros(x.shape)
    step = np.zeros(x.shape)
    for r in range(rows):
        for start in range(0, length, block):
            part = np.abs(x[r, start : start + block])
            top = part.max()
            e = math.frexp(float(top))[1] - 1 if top > 0 else -1
            exponent[r, start : start + block] = e
            step[r, start : start + block] = 2.0 ** (e - (mantissa_bits - 2))
    bound = (2 ** (mantissa_bits - 1) - 1) * step
    return exponent, bound, step


@pytest.mark.parametrize(("fmt", "block"), [("hbfp4_b16", 16), ("hbfp6_b64", 64)])
def test_every_statistic_against_an_independent_computation(fmt: str, block: int) -> None:
    x = heavy_tailed((6, 200))
    q = quantize(x, fmt, dim=1)
    probe = Probe(samples=10_000)  # more than the tensor holds: the distance sees all of it
    probe.enabled = True
    probe.record("layer", Operand.X_FORWARD, parse_format(fmt), 1, x, q)
    [found] = probe.take()

    xn, qn = x.double().numpy(), q.double().numpy()
    sqnr = 10 * np.log10((xn**2).sum() / ((xn - qn) ** 2).sum())
    # Squares are rounded to FP32 once before their double sums.
    assert found.sqnr_db == pytest.approx(sqnr, rel=1e-6)
    assert found.rel_l2 == pytest.approx(np.linalg.norm(xn - qn) / np.linalg.norm(xn), rel=1e-6)
    distance = wasserstein_distance(xn.ravel(), qn.ravel()) / xn.std()
    assert found.wasserstein == pytest.approx(distance, rel=1e-9)
    nonzero = xn != 0
    assert found.flushed == pytest.approx((nonzero & (qn == 0)).sum() / nonzero.sum())
    assert 0 < found.flushed < 1  # the data is meant to flush some values

    exponent, bound, step = hbfp_by_hand(xn, parse_format(fmt).mantissa_bits, block)
    clamped = np.abs(xn) > bound + step / 2  # below, nearest rounding gives the bound anyway
    assert found.saturated == pytest.approx(clamped.mean())
    assert (found.saturated > 0) == (fmt == "hbfp4_b16")  # 6 bits: clamped only in 1 of 64
    assert np.all(np.abs(qn[clamped]) == bound[clamped])
    assert (found.exp_min, found.exp_max) == (exponent[nonzero].min(), exponent[nonzero].max())
    assert (found.layer, found.operand, found.format, found.steps) == (
        "layer",
        "x_forward",
        parse_format(fmt).name,  # hbfp6_b64 is hbfp6
        1,
    )


def test_a_probe_sums_its_calls_and_starts_afresh_after_a_take() -> None:
    x1, x2 = heavy_tailed((4, 128), seed=1), heavy_tailed((4, 128), seed=2)
    fmt = parse_format("hbfp4_b64")
    q1, q2 = quantize(x1, fmt, 1), quantize(x2, fmt, 1)
    probe = Probe(samples=10_000)
    for x, q in ((x1, q1), (x2, q2)):
        probe.record("fc", Operand.DY_WGRAD, fmt, 1, x, q)
    [both] = probe.take()
    assert probe.take() == []
    signal = float((x1.double() ** 2).sum() + (x2.double() ** 2).sum())
    noise = float(((x1 - q1).double() ** 2).sum() + ((x2 - q2).double() ** 2).sum())
    assert both.steps == 2
    assert both.sqnr_db == pytest.approx(10 * math.log10(signal / noise), rel=1e-6)
    one = [
        wasserstein_distance(x.ravel().numpy(), q.ravel().numpy()) / x.double().std(correction=0)
        for x, q in ((x1, q1), (x2, q2))
    ]
    assert both.wasserstein == pytest.approx(float(sum(one) / 2), rel=1e-9)


def test_the_distance_is_scipys_on_samples_too() -> None:
    a, b = torch.randn(300, dtype=torch.float64), torch.randn(300, dtype=torch.float64) + 0.5
    assert float(wasserstein_1d(a, b)) == pytest.approx(
        wasserstein_distance(a.numpy(), b.numpy()), rel=1e-12
    )
    x = torch.randn(50_000)
    q = quantize(x, "hbfp4_b64")
    sums, _ = operand_sums(x, q, parse_format("hbfp4_b64"), -1, 4096, torch.Generator())
    whole = wasserstein_distance(x.numpy(), q.numpy()) / float(x.std(correction=0))
    assert float(sums[2]) == pytest.approx(whole, rel=0.25)  # 4,096 samples of 50,000


def test_each_mantissa_bit_adds_about_six_decibels_on_gaussian_data() -> None:
    x = torch.randn(256, 4096, generator=torch.Generator().manual_seed(0))
    sqnr = []
    for bits in range(4, 10):
        fmt = parse_format(f"hbfp{bits}_b64")
        sums, _ = operand_sums(x, quantize(x, fmt), fmt, -1, 4096, torch.Generator())
        sqnr.append(10 * math.log10(float(sums[0]) / float(sums[1])))
    steps = np.diff(sqnr)
    assert np.all(np.abs(steps - 20 * math.log10(2)) < 0.3), steps


def test_no_error_is_an_infinite_sqnr_and_zeros_have_none() -> None:
    x = torch.tensor([[1.0, 2.0, 0.5, 0.0]])
    probe = Probe()
    probe.record("a", Operand.W_FORWARD, parse_format("hbfp8_b16"), 1, x, x)
    probe.record("b", Operand.W_FORWARD, parse_format("hbfp8_b16"), 1, 0 * x, 0 * x)
    exact, zeros = probe.take()
    assert (exact.sqnr_db, exact.rel_l2, exact.flushed) == (math.inf, 0.0, 0.0)
    assert (zeros.sqnr_db, zeros.exp_min, zeros.exp_max) == (None, None, None)


def test_values_that_overflow_to_inf_or_nan_count_as_saturated_and_leave_the_errors() -> None:
    x = torch.tensor([[1.0, 2.0, 70_000.0, -0.5]])  # FP16 overflows above 65,520
    q = quantize(x, "fp16")
    assert torch.isinf(q[0, 2])
    probe = Probe()
    probe.record("a", Operand.X_FORWARD, parse_format("fp16"), 1, x, q)
    mx = torch.tensor([[1.0, float("inf"), 0.25, 3.0]])  # an MX block with an Inf is NaN
    probe.record(
        "b", Operand.X_FORWARD, parse_format("mxfp8_e4m3"), 1, mx, quantize(mx, "mxfp8_e4m3")
    )
    overflow, nan_block = probe.take()
    assert overflow.saturated == pytest.approx(1 / 4)
    assert overflow.sqnr_db == math.inf  # the other three are exact in FP16
    assert nan_block.saturated == pytest.approx(1.0)  # the three finite ones decode to NaN
    assert (nan_block.sqnr_db, nan_block.rel_l2, nan_block.wasserstein) == (None, 0.0, 0.0)


def test_stochastic_rounding_is_clamped_from_the_bound_on() -> None:
    x = torch.tensor([[7.2, 1.0, 0.5, 0.25]])  # hbfp4: scale 2, bound 7 (3.5 steps), 7.2 > 7
    fmt = parse_format("hbfp4_b16")
    q = quantize(x, fmt, 1)
    nearest, stochastic = Probe(), Probe()
    nearest.record("a", Operand.DY_WGRAD, fmt, 1, x, q, "nearest")
    stochastic.record("a", Operand.DY_WGRAD, fmt, 1, x, q, "stochastic")
    assert nearest.take()[0].saturated == 0.0  # 7.2 rounds to 7 without the clamp
    assert stochastic.take()[0].saturated == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("fmt", "magnitude"),
    [
        ("hbfp4_b16", 1.0),
        ("hbfp6_b64_s16", 1.0),
        ("mxfp4_e2m1", 1.0),
        ("mxint8", 1.0),
        ("fp8_e4m3", 64.0),  # an element format saturates at its largest value, 448
        ("bf16", 1.0),  # reaches no bound
    ],
)
def test_quantized_values_stay_within_their_scales_bound_and_reach_it_when_saturated(
    fmt: str, magnitude: float
) -> None:
    x = magnitude * heavy_tailed((8, 96, 5)).permute(0, 2, 1)  # strided, blocked along dim 2
    q = quantize(x, fmt, dim=2)
    scales = element_scales(x, fmt, dim=2)
    assert scales.exponent.shape == scales.bound.shape == x.shape
    assert bool((q.abs() <= scales.bound).all())
    beyond = x.abs() > scales.bound
    assert bool(beyond.any()) == (fmt != "bf16")
    assert torch.equal(q.abs()[beyond], scales.bound[beyond])  # by rounding or by the clamp
    clamped = x.abs() > scales.clamped_above
    if fmt in ("hbfp4_b16", "mxfp4_e2m1", "fp8_e4m3"):  # few values at the top: clamps seen
        assert bool(clamped.any())
    # Half a step lower the unclamped rounding would reach past the bound: bound + 1 step.
    assert bool((2 * scales.clamped_above - scales.bound > scales.bound).all())
    assert not bool((beyond & ~clamped & (q.abs() != scales.bound)).any())


def test_mx_scales_are_the_blocks_shared_exponents() -> None:
    x = heavy_tailed((3, 64))
    spec = parse_format("mxfp8_e4m3").element
    scales = element_scales(x, "mxfp8_e4m3", dim=1)
    for row in range(3):
        for start in (0, 32):
            top = float(x[row, start : start + 32].abs().max())
            shared = math.frexp(top)[1] - 1 - spec.emax
            assert set(scales.exponent[row, start : start + 32].tolist()) == {shared}


def test_training_with_statistics_gives_the_same_run_and_records_every_operand() -> None:
    base = {
        "model": "cnn",
        "train_size": 256,
        "test_size": 64,
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
        "schedule": {"booster": {"low": "hbfp4", "high": "hbfp6", "last_epochs": 1}},
    }
    plain = train(TrainConfig.model_validate(base))
    watched = train(TrainConfig.model_validate(base | {"analysis": {"every": 3}}))
    assert [(e.train_loss, e.test_loss) for e in plain.epochs] == [
        (e.train_loss, e.test_loss) for e in watched.epochs
    ]
    assert all(not e.statistics for e in plain.epochs)
    layers = [layer.name for layer in watched.layers]
    for epoch in watched.epochs:
        found = {(s.layer, s.operand): s for s in epoch.statistics}
        for layer in layers:
            # The first layer has no data gradient: its input needs none.
            wanted = {o.value for o in Operand} - (
                {"dy_dgrad", "w_dgrad"} if layer == layers[0] else set()
            )
            assert {op for name, op in found if name == layer} == wanted
        assert {s.steps for s in epoch.statistics} == {2}  # steps 0 and 3 of 4
        assert {s.format for s in epoch.statistics if s.layer == layers[1]} == {
            epoch.formats[layers[1]]
        }
