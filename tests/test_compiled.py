"""The compiled kernels give the same bits as the eager ones (one format per family)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from devices import DEVICES
from format_strategies import assert_bitwise_equal

from hbfp_dse.formats import NoiseStream, quantize

# Inductor's CPU backend needs a C++ compiler; where there is one, compiling must work.
pytestmark = pytest.mark.skipif(
    os.environ.get("HBFP_DSE_COMPILE") == "0"
    or not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")),
    reason="compilation disabled or no C++ compiler",
)

FORMATS = ["hbfp4", "hbfp6_b16_s4_d2", "mxfp4_e2m1", "mxint8", "fp8_e4m3"]


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    """~70k values: every row ends in a partial block (10003 = 156 * 64 + 19)."""
    gen = torch.Generator().manual_seed(0)
    shape = (7, 10003)
    exponents = torch.randint(-40, 40, shape, generator=gen).float()
    x = torch.randn(shape, generator=gen) * torch.exp2(exponents)
    x[0, :64], x[0, 64:128] = 0.0, -0.0  # zero blocks of both signs
    x[1, :64] = torch.randn(64, generator=gen) * 1e-40  # FP32 subnormals
    x[1, 64:96] = 1e-45
    x[1, 96:128] = 1e-10 * torch.rand(32, generator=gen)
    x[2, 5], x[2, 100], x[3, 200], x[6, -1] = float("nan"), float("inf"), -float("inf"), 1e30
    x[4, :64] = torch.tensor([1.0] + [(k + 0.5) / 64 for k in range(63)])  # ties
    x[5, :64] = torch.rand(64, generator=gen) * 3.4e38  # near the top of FP32
    x[6, 1000:1064] = torch.randn(64, generator=gen) * 1e-39
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_compiled_equals_eager_bitwise(
    data: torch.Tensor, fmt: str, rounding: str, device: str
) -> None:
    """On every device, compiled and eager alike give the CPU's eager bits."""

    def run(backend: str, on: str) -> torch.Tensor:
        noise = NoiseStream(1)
        x = data.to(on)
        return quantize(x, fmt, rounding=rounding, noise=noise, backend=backend).cpu()  # type: ignore[arg-type]

    expected = run("eager", "cpu")
    compiled = run("compiled", device)
    assert_bitwise_equal(compiled, expected, f"{fmt} {rounding} compiled on {device}")
    if device != "cpu":
        assert_bitwise_equal(run("eager", device), expected, f"{fmt} {rounding} on {device}")


def test_compiled_along_another_dim(data: torch.Tensor) -> None:
    # Blocks along dim 0 (7 values: one partial block per column).
    compiled = quantize(data, "hbfp4", dim=0, backend="compiled")
    assert_bitwise_equal(compiled, quantize(data, "hbfp4", dim=0, backend="eager"))
