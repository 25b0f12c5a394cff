"""When the quantizer compiles, and what a failed compilation changes: that format on that
device stays eager, with a warning; running out of memory is no compilation failure."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import pytest
import torch
from torch._dynamo.exc import BackendCompilerFailed

from hbfp_dse.formats import Format, parse_format, quantize

quantize_module = importlib.import_module("hbfp_dse.formats.quantizer")
LARGE = torch.randn(4, quantize_module.COMPILE_MIN_NUMEL // 4)


class FakeCompiler:
    """Stands in for ``_compiled``: raises the error set for a format, else runs the eager
    kernel and records the call."""

    def __init__(self) -> None:
        self.errors: dict[str, BaseException] = {}
        self.calls: list[str] = []

    def __call__(self, fmt: Format, device: str) -> Callable[..., torch.Tensor]:
        def kernel(x: torch.Tensor, key: torch.Tensor | None) -> torch.Tensor:
            if fmt.name in self.errors:
                raise self.errors[fmt.name]
            self.calls.append(f"{fmt.name}@{device}")
            return quantize_module._kernel(fmt, True)(x, key)

        return kernel


@pytest.fixture
def compiler(monkeypatch: pytest.MonkeyPatch) -> FakeCompiler:
    fake = FakeCompiler()
    monkeypatch.setattr(quantize_module, "_compiled", fake)
    monkeypatch.setattr(quantize_module, "_compile_failures", set())
    monkeypatch.delenv("HBFP_DSE_COMPILE", raising=False)
    monkeypatch.setenv("HBFP_DSE_NATIVE", "0")  # the torch kernels' policy, without the C ones
    return fake


def compile_error() -> BackendCompilerFailed:
    return BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler"), None)


def test_on_the_cpu_only_large_tensors_compile(compiler: FakeCompiler) -> None:
    quantize(LARGE, "hbfp4")
    quantize(LARGE[:1, :100], "hbfp4")
    assert compiler.calls == ["hbfp4@cpu"]


def test_on_other_devices_every_tensor_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HBFP_DSE_COMPILE", raising=False)
    small = torch.empty(3, device="meta")
    assert quantize_module._use_compiled("auto", small, (parse_format("hbfp4"), "meta"))


def test_a_failed_compilation_makes_only_that_format_eager(
    compiler: FakeCompiler, caplog: pytest.LogCaptureFixture
) -> None:
    compiler.errors["hbfp4"] = compile_error()
    with caplog.at_level(logging.WARNING):
        first = quantize(LARGE, "hbfp4")
    assert torch.equal(first, quantize(LARGE, "hbfp4", backend="eager"))
    assert "compiled quantizer unavailable" in caplog.text
    del compiler.errors["hbfp4"]  # would compile now, but the format stays eager
    quantize(LARGE, "hbfp4")
    quantize(LARGE, "mxfp4_e2m1")  # another format still compiles
    assert compiler.calls == ["mxfp4_e2m1@cpu"]
    assert quantize_module._compile_failures == {(parse_format("hbfp4"), "cpu")}


def test_running_out_of_memory_is_raised_not_a_fallback(compiler: FakeCompiler) -> None:
    wrapped = compile_error()
    wrapped.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    compiler.errors["hbfp4"] = wrapped
    with pytest.raises(BackendCompilerFailed):
        quantize(LARGE, "hbfp4")
    compiler.errors["hbfp4"] = torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(torch.OutOfMemoryError):
        quantize(LARGE, "hbfp4")
    assert not quantize_module._compile_failures


def test_errors_other_than_compilation_are_raised(compiler: FakeCompiler) -> None:
    compiler.errors["hbfp4"] = ValueError("a bug")
    with pytest.raises(ValueError, match="a bug"):
        quantize(LARGE, "hbfp4")
    assert not quantize_module._compile_failures


def test_asking_for_compiled_raises_the_compilation_error(compiler: FakeCompiler) -> None:
    compiler.errors["hbfp4"] = compile_error()
    with pytest.raises(BackendCompilerFailed):
        quantize(LARGE, "hbfp4", backend="compiled")
    assert not quantize_module._compile_failures


def test_hbfp_is_one_compiled_graph_on_a_gpu_and_two_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch.compile compiles at the first call: building the kernels needs no GPU.
    compiled: list[str] = []

    def counting(kernel: Callable[..., torch.Tensor], name: str) -> Callable[..., torch.Tensor]:
        compiled.append(name)
        return kernel

    monkeypatch.setattr(quantize_module, "_compile", counting)
    fmt = parse_format("hbfp4_b32")
    quantize_module._compiled.__wrapped__(fmt, "cuda")
    assert compiled == ["quantize_hbfp4_b32"]  # one launch per operand
    compiled.clear()
    quantize_module._compiled.__wrapped__(fmt, "cpu")
    assert compiled == ["quantize_hbfp4_b32_scale", "quantize_hbfp4_b32_apply"]
