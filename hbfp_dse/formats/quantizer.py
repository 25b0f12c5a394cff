"""``quantize``: one entry point for every format, eager or compiled."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import types
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

from . import kernels, native
from .definitions import (
    ROUNDINGS,
    FloatFormat,
    Format,
    FormatError,
    HBFPFormat,
    MXFormat,
    parse_format,
)
from .noise import NoiseStream

Backend = Literal["auto", "eager", "compiled", "native"]
Kernel = Callable[[Tensor, Tensor | None], Tensor]

log = logging.getLogger(__name__)

# On the CPU, below this many elements a compiled call's guard checks cost more than eager ops;
# on a GPU every call is compiled, since there each eager op is a kernel launch.
COMPILE_MIN_NUMEL = 1 << 15
# Each format (and size-1 outer or inner extent) is its own compiled specialisation.
_RECOMPILE_LIMIT = 256
_FP32 = FloatFormat("fp32")
# (format, device type) pairs whose compilation failed: those stay eager, with one warning.
_compile_failures: set[tuple[Format, str]] = set()


def quantize(
    x: Tensor,
    fmt: Format | str,
    dim: int = -1,
    rounding: str = "nearest",
    noise: NoiseStream | None = None,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Quantize ``x`` to ``fmt`` and return the dequantized FP32 values, shaped like ``x``.

    Block formats block along ``dim``; a short last block is not padded into its
    neighbours. ``rounding`` is ``"nearest"`` (half to even) or ``"stochastic"``, whose
    noise is the next call of ``noise`` (default: a stream seeded from torch's global
    generator), made inside the kernel (see ``noise.py``). ``backend``
    ``"auto"`` uses, on the CPU, the one-pass C kernels (``native.py``; ``HBFP_DSE_NATIVE=0``
    turns them off), elsewhere (or without them) the compiled kernel (on the CPU for large
    tensors only) unless compiling fails for the format on the device, which then stays eager;
    a failure that ran out of memory is raised. ``HBFP_DSE_COMPILE=0`` makes the compiled
    kernel eager. ``"native"``, ``"compiled"`` and ``"eager"`` each force one kernel.
    The result carries no autograd history: use ``hbfp_dse.emulation`` for training.
    """
    fmt = parse_format(fmt)
    if rounding not in ROUNDINGS:
        raise FormatError(f"rounding {rounding!r} is not one of {', '.join(ROUNDINGS)}")
    if x.requires_grad:
        x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    if fmt == _FP32 or x.numel() == 0:
        return x.clone()
    if x.dim() == 0:
        return quantize(x.reshape(1), fmt, 0, rounding, noise, backend=backend).reshape(())
    dim = normalise_dim(dim, x.dim())
    stream = (noise or NoiseStream.from_global_rng()) if rounding == "stochastic" else None
    if _use_native(backend, x, stream is not None):  # x is detached: no autograd to turn off
        plan = _native_plan(fmt, x.shape, x.stride(), dim)
        host_key = None if stream is None else stream.draw_host()
        if plan is not None:  # a dense tensor: its memory is the kernel's view
            return native.quantize_dense(x, plan.fmt, plan.extents, host_key)
        view = BlockedView.of(x, fmt, dim)
        blocks = view.blocks  # not dense (a strided slice, a broadcast): copied
        flat = blocks.reshape(blocks.shape[0], -1, blocks.shape[-1]).contiguous()
        return view.restore(native.quantize_dense(flat, view.fmt, flat.shape, host_key))
    if stream is None and isinstance(fmt, FloatFormat) and fmt.name in ("bf16", "fp16"):
        return x.to(torch.bfloat16 if fmt.name == "bf16" else torch.float16).float()
    key = None if stream is None else stream.draw(x.device)
    view = BlockedView.of(x, fmt, dim)
    with torch.no_grad():
        return view.restore(_run(view.fmt, backend, view.blocks, key))


@dataclasses.dataclass(frozen=True)
class _NativePlan:
    """A dense tensor's memory as the C kernels' contiguous [outer, L, inner], and the
    format as they apply it."""

    extents: tuple[int, int, int]
    fmt: Format


@functools.lru_cache(maxsize=4096)
def _native_plan(
    fmt: Format, shape: torch.Size, stride: tuple[int, ...], dim: int
) -> _NativePlan | None:
    """Worked out once per layer shape: the Python of a call costs more than a small
    tensor's kernel. None for a tensor that is not dense."""
    order = _memory_order(shape, stride)
    if order is None:
        return None
    position = order.index(dim)
    permuted = [shape[d] for d in order]
    outer, length = math.prod(permuted[:position]), permuted[position]
    inner = math.prod(permuted[position + 1 :])
    return _NativePlan((outer, length, inner), _covering_block(fmt, length))


@dataclasses.dataclass(frozen=True)
class BlockedView:
    """What the kernels see of a tensor: a contiguous [outer, L, inner] view blocked along L
    (or the 4-D view of ``_blocked_view``). Any dense layout (channels-last included) gets
    there by a permutation, without a copy, and the few shapes this leaves keep the compiled
    kernels from recompiling for every layer. ``fmt`` is the format as the kernels apply it
    (``_covering_block``)."""

    blocks: Tensor
    fmt: Format
    shape: torch.Size  # of the permuted tensor
    order: list[int]

    @classmethod
    def of(cls, x: Tensor, fmt: Format, dim: int) -> BlockedView:
        """``x``: FP32 of rank >= 1; ``dim``: normalised."""
        order = _dense_order(x)
        x = x.permute(order)
        dim = order.index(dim)
        shape = x.shape
        fmt = _covering_block(fmt, shape[dim])
        outer, inner = shape[:dim].numel(), shape[dim + 1 :].numel()
        return cls(x.reshape(_blocked_view(fmt, outer, shape[dim], inner)), fmt, shape, order)

    def restore(self, out: Tensor) -> Tensor:
        """A kernel's result (shaped like ``blocks``) in the shape and layout of the input."""
        return out.reshape(self.shape).permute(_inverse(self.order))


def _use_native(backend: Backend, x: Tensor, stochastic: bool) -> bool:
    if backend == "native":
        if not native.supports(x, stochastic) or not native.enabled():
            raise RuntimeError(
                "the native quantizer runs on the CPU, where it was built, and rounds "
                "stochastically below 2**32 values"
            )
        return True
    return backend == "auto" and native.supports(x, stochastic) and native.enabled()


def _run(fmt: Format, backend: Backend, x: Tensor, key: Tensor | None) -> Tensor:
    device = x.device.type
    if _use_compiled(backend, x, (fmt, device)):
        try:
            return _compiled(fmt, device)(x, key)
        except torch._dynamo.exc.TorchDynamoException as err:
            if backend == "compiled" or _caused_by_out_of_memory(err):
                raise
            _compile_failures.add((fmt, device))
            log.warning("%s on %s: compiled quantizer unavailable, eager: %s", fmt, device, err)
    return _kernel(fmt, _divides(device))(x, key)


def _divides(device: str) -> bool:
    """The CPU divides by scales: its division is IEEE-exact and faster than the reciprocal
    factors; elsewhere a compiled division may be approximate (kernels.py)."""
    return device == "cpu"


def _caused_by_out_of_memory(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, torch.OutOfMemoryError):
            return True
        err = err.__cause__ or err.__context__
    return False


def _covering_block(fmt: Format, length: int) -> Format:
    """A two-level format over an axis shorter than its block: the same format with a block
    of the sub-blocks that cover the axis (at least two, as the format has), which quantizes
    alike, since the zeros that pad a block move no maximum, without padding a 16-channel
    axis to 4096 values."""
    if not isinstance(fmt, HBFPFormat) or fmt.sub_block_size is None or length >= fmt.block_size:
        return fmt
    sub_blocks = max(2, -(-length // fmt.sub_block_size))
    return dataclasses.replace(fmt, block_size=sub_blocks * fmt.sub_block_size)


def _blocked_view(fmt: Format, outer: int, length: int, inner: int) -> tuple[int, ...]:
    """[outer, L, inner], or [outer, L / B, B, inner] when blocks of B tile L exactly (one
    shorter block when L < B, for single-level formats): a view that the kernel returns in
    its own shape. Within a compiled kernel, a view between these two shapes would cost a
    copy, since the compiler cannot prove that B divides a dynamic L.
    """
    single_level = isinstance(fmt, MXFormat) or (
        isinstance(fmt, HBFPFormat) and fmt.sub_block_size is None
    )
    if single_level:
        block = fmt.block_size
        if length < block:
            return (outer, 1, length, inner)
        if length % block == 0:
            return (outer, length // block, block, inner)
    return (outer, length, inner)


def _dense_order(x: Tensor) -> list[int]:
    """Dimensions from the largest stride to the smallest: the order in which the tensor
    is contiguous when it is dense in any layout, else the logical order."""
    return _memory_order(x.shape, x.stride()) or list(range(x.dim()))


def _memory_order(shape: torch.Size, stride: tuple[int, ...]) -> list[int] | None:
    """The dimensions in memory order (largest stride first; ties keep their order) where
    they lay the tensor out densely, as ``permute(order).is_contiguous()`` tells; else None."""
    order = sorted(range(len(shape)), key=lambda d: -stride[d])
    expected = 1
    for d in reversed(order):
        if shape[d] != 1 and stride[d] != expected:
            return None
        expected *= shape[d]
    return order


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, d in enumerate(order):
        inverse[d] = position
    return inverse


def normalise_dim(dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise IndexError(f"dim {dim} is out of range for a tensor of rank {rank}")
    return dim % rank


@contextlib.contextmanager
def eager_only() -> Iterator[None]:
    """``"auto"`` runs eager inside (in every thread): for work too short to repay the
    compilation of each format, such as a sensitivity analysis of a few batches."""
    global _eager_only
    saved, _eager_only = _eager_only, True
    try:
        yield
    finally:
        _eager_only = saved


_eager_only = False


def _use_compiled(backend: Backend, x: Tensor, where: tuple[Format, str]) -> bool:
    if backend == "eager" or where in _compile_failures:
        return False
    if backend == "compiled":
        return True
    if _eager_only or os.environ.get("HBFP_DSE_COMPILE") == "0":
        return False
    return x.device.type != "cpu" or x.numel() >= COMPILE_MIN_NUMEL


@functools.cache
def _kernel(fmt: Format, divide: bool) -> Kernel:
    if isinstance(fmt, HBFPFormat):
        return functools.partial(kernels.hbfp, **hbfp_parameters(fmt), divide=divide)
    if isinstance(fmt, MXFormat):
        block = fmt.block_size
        return functools.partial(kernels.mx, spec=fmt.element, block_size=block, divide=divide)
    return functools.partial(kernels.minifloat, spec=fmt.element, divide=divide)


def hbfp_parameters(fmt: HBFPFormat) -> dict[str, int | None]:
    lo, hi = fmt.exponent_range
    return {
        "mantissa_bits": fmt.mantissa_bits,
        "block_size": fmt.block_size,
        "exp_lo": max(lo, kernels.FP32_MIN_POW2 + fmt.mantissa_bits - 2),
        "exp_hi": hi,
        "sub_block_size": fmt.sub_block_size,
        "micro_range": (1 << fmt.micro_exp_bits) - 1,
    }


@functools.cache
def _compiled(fmt: Format, device: str) -> Kernel:
    from torch._dynamo import config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, _RECOMPILE_LIMIT)
    _silence_cuda_home_notice()
    single_level_hbfp = isinstance(fmt, HBFPFormat) and fmt.sub_block_size is None
    if device != "cpu" or not single_level_hbfp:
        return _compile(_kernel(fmt, _divides(device)), f"quantize_{fmt.name}")
    # On the CPU, two compiled graphs, the block scales stored in between: as one graph, the
    # compiler redoes the scale's integer arithmetic for every element instead of once per
    # block. Measured in ResNet-20 training steps, the two graphs are 1.5-3x as fast for
    # blocks along a strided axis, and 1.5x for contiguous blocks too (where one graph
    # would read the data once, but spends more on each block's short reduction). A GPU
    # runs one graph: one launch, the block reduced in registers.
    parameters = hbfp_parameters(fmt)
    scale = _compile(
        functools.partial(kernels.hbfp_scale, **parameters, divide=True),
        f"quantize_{fmt.name}_scale",
    )
    apply = _compile(
        functools.partial(
            kernels.hbfp_apply, mantissa_bits=fmt.mantissa_bits, block_size=fmt.block_size
        ),
        f"quantize_{fmt.name}_apply",
    )

    def hbfp(x: Tensor, key: Tensor | None) -> Tensor:
        return apply(x, key, *scale(x))

    return hbfp


class _NoCudaHomeNotice(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." warning, which a CUDA
    build of torch logs on a machine without a GPU when compilation first imports its C++
    extension module: noise for a CPU run, which needs no CUDA runtime."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


def _silence_cuda_home_notice() -> None:
    cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaHomeNotice) for f in cpp_extension_log.filters):
        cpp_extension_log.addFilter(_NoCudaHomeNotice())


def _compile(kernel: Callable[..., Tensor], name: str) -> Callable[..., Tensor]:
    """``torch.compile`` of ``kernel`` through a function with a code object of its own.

    Compiled graphs are cached, and looked up guard by guard on every call, per code object.
    Compiled directly, every partial shares the code of one torch wrapper, so that each call
    would check the graphs of every format, stage and shape compiled so far.
    """

    def call(*args: Tensor | None) -> Tensor:
        return kernel(*args)

    code = call.__code__.replace(co_name=name, co_qualname=name)
    own = types.FunctionType(code, call.__globals__, name, None, call.__closure__)
    return torch.compile(own, fullgraph=True, dynamic=True)
