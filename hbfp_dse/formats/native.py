"""The CPU's one-pass quantization kernels (``native.c``), built on first use and cached.

``torch.compile`` makes two passes of a block format on the CPU (the block scales, then the
rounding) and pays a guard check on every call; the C kernels read each block once, while it
is in cache, and cost a few microseconds a call. They give the bits of ``kernels.py``
(``tests/test_native.py``). Built with the C compiler that Inductor uses too, with FMA
contraction and fast math off; where no compiler works the quantizer keeps to its torch
kernels, with one warning. ``HBFP_DSE_NATIVE=0`` turns them off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from ..cache import cache_dir
from .definitions import ElementSpec, FloatFormat, Format, HBFPFormat, MXFormat
from .noise import GOLDEN, MASK32, mix32

log = logging.getLogger(__name__)

_FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-trapping-math",
    "-fopenmp",
    "-fPIC",
    "-shared",
    "-std=c11",
)
# Below this many values a call runs on one thread: waking the others costs more.
_PARALLEL_MIN_NUMEL = 1 << 16


class _Params(ctypes.Structure):
    _fields_ = (
        [
            ("kind", ctypes.c_int32),
            ("stochastic", ctypes.c_int32),
            ("k0", ctypes.c_uint32),
            ("k1", ctypes.c_uint32),
        ]
        + [
            (name, ctypes.c_int32)
            for name in (
                "mantissa_bits",
                "block_size",
                "exp_lo",
                "exp_hi",
                "sub_block_size",
                "micro_range",
                "exp_bits",
                "man_bits",
                "emin",
                "emax",
                "has_inf",
            )
        ]
        + [("max_normal", ctypes.c_float)]
    )


_HBFP, _MX, _MINIFLOAT = 0, 1, 2


def enabled() -> bool:
    """Whether the CPU quantizes with the C kernels (built now if they are not yet)."""
    return os.environ.get("HBFP_DSE_NATIVE") != "0" and _library() is not None


def supports(x: Tensor, stochastic: bool) -> bool:
    """Whether the C kernels take ``x``: on the CPU, and for stochastic rounding below 2**32
    values (their noise positions are 32-bit)."""
    return x.is_cpu and (not stochastic or x.numel() < 1 << 32)


def quantize_dense(
    x: Tensor, fmt: Format, extents: tuple[int, int, int], key: tuple[int, int] | None
) -> Tensor:
    """``fmt`` along the middle axis of ``x``'s memory seen as a contiguous [outer, L, inner]
    (``extents``; a narrow float ignores them), with the noise of ``key`` = (seed, call)
    (noise.py). ``x``: a dense FP32 CPU tensor in any layout; the result has its strides."""
    library = _library()
    assert library is not None, "quantize_dense without the library (see enabled())"
    out = torch.empty_strided(x.shape, x.stride())  # dense: x's memory, element for element
    params = _params(fmt)
    if key is not None:
        params = _Params.from_buffer_copy(params)
        params.stochastic = 1
        params.k0, params.k1 = noise_keys(*key)
    numel = x.numel()
    threads = 1 if numel < _PARALLEL_MIN_NUMEL else torch.get_num_threads()
    if isinstance(fmt, FloatFormat):
        library.hbfp_dse_quantize_elements(x.data_ptr(), out.data_ptr(), numel, params, threads)
    else:
        library.hbfp_dse_quantize_blocks(x.data_ptr(), out.data_ptr(), *extents, params, threads)
    return out


def noise_keys(seed: int, call: int) -> tuple[int, int]:
    """The two 32-bit keys of ``noise.uniform_noise`` for [seed, call]."""
    k0 = mix32((seed & MASK32) ^ mix32(call & MASK32))
    k1 = mix32(k0 ^ (seed >> 32) ^ ((call >> 32) & MASK32) ^ GOLDEN)
    return k0, k1


@functools.cache
def _params(fmt: Format) -> _Params:
    """The kernel's parameters of ``fmt``, noise keys aside (callers copy them)."""
    params = _Params()
    if isinstance(fmt, HBFPFormat):
        from .quantizer import hbfp_parameters

        h = hbfp_parameters(fmt)
        params.kind = _HBFP
        params.mantissa_bits, params.block_size = h["mantissa_bits"], h["block_size"]
        params.exp_lo, params.exp_hi = h["exp_lo"], h["exp_hi"]
        params.sub_block_size = h["sub_block_size"] or 0
        params.micro_range = h["micro_range"]
        return params
    spec: ElementSpec = fmt.element
    params.kind = _MX if isinstance(fmt, MXFormat) else _MINIFLOAT
    params.block_size = fmt.block_size or 0
    params.exp_bits, params.man_bits = spec.exp_bits, spec.man_bits
    params.emin, params.emax, params.max_normal = spec.emin, spec.emax, spec.max_normal
    params.has_inf = int(spec.has_inf)
    return params


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        log.warning("native CPU quantizer unavailable, using the torch kernels: %s", detail)
        return None
    pointer, i64, params = ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(_Params)
    library.hbfp_dse_quantize_blocks.argtypes = [
        pointer,
        pointer,
        i64,
        i64,
        i64,
        params,
        ctypes.c_int32,
    ]
    library.hbfp_dse_quantize_elements.argtypes = [pointer, pointer, i64, params, ctypes.c_int32]
    return library


def _build() -> Path:
    """The shared library for this source, compiler and CPU, compiled once into the cache."""
    source = resources.files(__package__).joinpath("native.c").read_bytes()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=True
    ).stdout
    identity = b"\0".join([source, version.encode(), " ".join(_FLAGS).encode(), _cpu().encode()])
    path = _library_dir() / f"native-{hashlib.sha256(identity).hexdigest()[:16]}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the native CPU quantizer (once for this compiler and CPU): %s", path)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        c_file = Path(work) / "native.c"
        c_file.write_bytes(source)
        built = Path(work) / path.name
        subprocess.run(
            [compiler, *_FLAGS, str(c_file), "-o", str(built), "-lm"],
            capture_output=True,
            text=True,
            check=True,
        )
        os.replace(built, path)  # atomic: concurrent builders each install a whole library
    return path


def _cpu() -> str:
    """What ``-march=native`` depends on: the machine and its instruction-set flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in info.splitlines() if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {flags}"


def _library_dir() -> Path:
    """The cache, or with the cache off a directory of this process's own."""
    return cache_dir() or Path(_private_dir())


@functools.cache
def _private_dir() -> str:
    return tempfile.mkdtemp(prefix="hbfp-dse-native-")
