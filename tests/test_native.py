"""The CPU's C kernels (``native.c``) give the eager kernels' bits on the operands training
quantizes, in every layout, on one thread or several; without a compiler, the torch kernels."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator

import pytest
import torch
from format_strategies import assert_bitwise_equal

from hbfp_dse.formats import NoiseStream, kernels, native, parse_format, quantize
from hbfp_dse.formats.definitions import BF16
from hbfp_dse.formats.noise import uniform_noise

pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not any(shutil.which(cc) for cc in ("cc", "gcc")),
    reason="no C compiler (CI has one: there these tests must run)",
)

FORMATS = [
    "hbfp4",
    "hbfp8",
    "hbfp4_b576",
    "hbfp6_b16_s4_d2",
    "hbfp4_b64_s16",
    "hbfp16_b3_e10",
    "mxfp4_e2m1",
    "mxfp6_e2m3",
    "mxfp6_e3m2",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxint8",
    "mxfp4_e2m1_b5",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp16",
    "bf16",
]


def hard(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Values over 80 binades, with zeros of both signs, subnormals, ties, NaN and infinities."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * torch.exp2(torch.randint(-40, 40, shape, generator=gen))
    flat = x.view(-1)
    n = flat.numel()
    flat[: n // 50] = 0.0
    flat[n // 50 : n // 25] = -0.0
    flat[n // 25 : n // 20] = torch.randn(n // 20 - n // 25, generator=gen) * 1e-40
    ties = torch.tensor([1.0] + [(k + 0.5) / 64 for k in range(63)])[: n - n // 20]
    flat[n // 20 : n // 20 + len(ties)] = ties
    picks = torch.randperm(n, generator=gen)[:6]
    flat[picks] = torch.tensor([float("nan"), float("inf"), -float("inf"), 3.4e38, -3e38, 1e-45])
    return x[torch.randperm(shape[0], generator=gen)]  # shuffled rows: specials anywhere


# (shape, channels-last, dims): a ResNet stage's activations (blocks of 16 channels along C,
# of the batch along N), an RGB input (3 channels), weights, an FC layer, a sequence, and odd
# extents (a partial block; a strided axis of 300 columns, past one 256-column tile).
OPERANDS = [
    ((32, 16, 8, 8), True, [0, 1]),
    ((16, 3, 9, 9), True, [0, 1]),
    ((16, 32, 4, 4), False, [0, 1, 3]),
    ((64, 32, 3, 3), True, [0, 1]),
    ((10, 64), False, [0, 1]),
    ((3, 7, 100), False, [1, 2]),
    ((70, 300), False, [0, 1]),
    ((2, 5, 3), False, [0, 1, 2]),
]


@pytest.fixture(params=["nearest", "stochastic"])
def rounding(request: pytest.FixtureRequest) -> str:
    return request.param


def both(x: torch.Tensor, fmt: str, dim: int, rounding: str) -> None:
    expected = quantize(x, fmt, dim, rounding, NoiseStream(5, 3), backend="eager")
    actual = quantize(x, fmt, dim, rounding, NoiseStream(5, 3), backend="native")
    assert_bitwise_equal(actual, expected, f"{fmt} {rounding} {list(x.shape)} dim {dim}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_equal_to_eager_on_every_operand(fmt: str, rounding: str) -> None:
    for index, (shape, channels_last, dims) in enumerate(OPERANDS):
        x = hard(shape, index)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for dim in dims:
            both(x, fmt, dim, rounding)


@pytest.mark.parametrize("fmt", ["hbfp4", "hbfp4_b64_s16", "mxfp4_e2m1", "bf16"])
def test_views_of_every_kind(fmt: str, rounding: str) -> None:
    """Dense views (size-1 axes with any stride included) go to the kernels as their memory,
    the layout worked out once per shape; strided slices and broadcasts are copied first."""
    base = hard((8, 6, 64), 3)
    views = [
        base.transpose(0, 2),
        base.permute(1, 2, 0),
        base[:, ::2],
        base[:, :1].expand(8, 5, 64),
        base[:, 2:3],
        base.unsqueeze(1).as_strided((8, 1, 6, 64), (384, 7, 64, 1)),
    ]
    for view in views:
        for dim in range(view.dim()):
            both(view, fmt, dim, rounding)


def test_bf16_nearest_in_the_kernels_is_the_element_kernels_rounding() -> None:
    """The C kernels round BF16 as integers: the bits of the element kernel's arithmetic
    (ties to even included) as well as those of torch's cast, the eager reference above."""
    x = torch.cat([hard((4096,), 4), torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)])])
    actual = native.quantize_dense(x, parse_format("bf16"), (1, x.numel(), 1), None)
    assert_bitwise_equal(actual, kernels.minifloat(x, None, spec=BF16), "bf16 nearest")


def test_bf16_stochastic_rounding_where_the_noise_meets_the_dropped_bits() -> None:
    """BF16's stochastic rounding is integer arithmetic on the dropped bits: each value here
    holds the noise of its position in its low 16 bits (positive values), or its complement
    (negative ones), so that every comparison runs at its boundary, one in 256 of them on it."""
    n = 1 << 16
    noise = (uniform_noise((n,), NoiseStream(5, 3).draw(torch.device("cpu"))) * 2**24).long()
    gen = torch.Generator().manual_seed(0)
    negative = torch.arange(n) % 2
    low = torch.where(negative == 1, (1 << 24) - noise, noise) >> 8
    exponent = torch.randint(0, 255, (n,), generator=gen)  # subnormals too, and the largest
    high = torch.randint(0, 128, (n,), generator=gen)
    bits = (negative << 31) | (exponent << 23) | (high << 16) | (low & 0xFFFF)
    x = torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)
    assert int((noise % 256 == 0).sum()) > 100  # values exactly on a boundary
    both(x, "bf16", 0, "stochastic")


@pytest.mark.parametrize("fmt", ["hbfp4", "hbfp4_b64_s16", "mxfp4_e2m1", "fp8_e4m3"])
def test_threads_share_the_work_without_changing_a_bit(fmt: str, rounding: str) -> None:
    """Above the threading threshold, with one thread and several (both tile kinds)."""
    x = hard((64, 32, 16, 16), 9).contiguous(memory_format=torch.channels_last)
    assert x.numel() >= native._PARALLEL_MIN_NUMEL
    saved = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            results.append(
                [quantize(x, fmt, d, rounding, NoiseStream(1), backend="native") for d in (0, 1)]
            )
    finally:
        torch.set_num_threads(saved)
    for one, several, dim in zip(*results, (0, 1), strict=True):
        assert_bitwise_equal(several, one, f"{fmt} dim {dim}")
        both(x, fmt, dim, rounding)


@pytest.fixture
def no_library(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> Iterator[None]:
    """No cached library and a compiler that does not exist."""
    monkeypatch.setenv("HBFP_DSE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native._library.cache_clear()
    yield
    native._library.cache_clear()


@pytest.mark.usefixtures("no_library")
def test_without_a_compiler_the_torch_kernels_run(caplog: pytest.LogCaptureFixture) -> None:
    x = hard((8, 64), 1)
    with caplog.at_level(logging.WARNING):
        out = quantize(x, "hbfp4", backend="auto")
    assert "native CPU quantizer unavailable" in caplog.text
    assert not native.enabled()
    assert_bitwise_equal(out, quantize(x, "hbfp4", backend="eager"))
    with pytest.raises(RuntimeError, match="native quantizer"):
        quantize(x, "hbfp4", backend="native")


def test_the_library_is_built_once_per_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("HBFP_DSE_CACHE", str(tmp_path))
    real, compiles = native.subprocess.run, []

    def counting(command: list[str], **kw: object) -> object:
        if "--version" not in command:
            compiles.append(command)
        return real(command, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(native.subprocess, "run", counting)
    first = native._build()
    assert first.is_relative_to(tmp_path)
    assert first.exists()
    assert native._build() == first
    assert len(compiles) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no leftovers


def test_turned_off_the_torch_kernels_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> torch.Tensor:
        raise AssertionError("the C kernels ran")

    monkeypatch.setattr(native, "quantize_dense", refuse)
    monkeypatch.setenv("HBFP_DSE_NATIVE", "0")
    x = hard((8, 64), 2)
    assert_bitwise_equal(quantize(x, "mxfp4_e2m1"), quantize(x, "mxfp4_e2m1", backend="eager"))
