"""Quantizer speed as a multiple of ``x * 2.0`` on the same tensor (the memory-bound floor).

Both are timed alternately in one process, so machine load affects them alike.
    python benchmarks/quantize.py [--numel 2097152] [--repeats 30] [--devices cpu cuda]
        [--backends auto native compiled eager] [--json]

``--backends`` times each kernel kind side by side (``auto``: the CPU's C kernels, compiled
elsewhere; see ``quantize``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from hbfp_dse.formats import NoiseStream, quantize

BACKENDS = ("auto", "native", "compiled", "eager")
FAMILIES = (
    "hbfp4_b64",
    "hbfp8_b64",
    "hbfp4_b576",
    "hbfp4_b64_s16",
    "mxfp4_e2m1",
    "mxfp6_e2m3",
    "mxint8",
    "fp8_e4m3",
    "bf16",
)


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return run


def against_floor(
    x: torch.Tensor, name: str, rounding: str, repeats: int, dim: int = -1, backend: str = "auto"
) -> tuple[float, float]:
    """Median seconds of quantizing ``x`` along ``dim`` and of ``x * 2.0``, timed alternately
    after three untimed calls of each (compilation, the allocator)."""
    timed = timer(x.device)
    noise = NoiseStream(0)

    def quantized() -> object:
        return quantize(x, name, dim, rounding, noise, backend=backend)  # type: ignore[arg-type]

    def floor() -> object:
        return x * 2.0

    for _ in range(3):
        quantized()
        floor()
    floors, times = [], []
    for _ in range(repeats):
        floors.append(timed(floor))
        times.append(timed(quantized))
    return statistics.median(times), statistics.median(floors)


def measure(
    x: torch.Tensor, name: str, rounding: str, repeats: int, backend: str
) -> dict[str, object]:
    q, f = against_floor(x, name, rounding, repeats, backend=backend)
    return {
        "device": x.device.type,
        "backend": backend,
        "format": name,
        "rounding": rounding,
        "quantize_ms": q * 1e3,
        "floor_ms": f * 1e3,
        "ratio": q / f,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--formats", nargs="*", default=list(FAMILIES))
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    parser.add_argument("--backends", nargs="*", default=["auto"], choices=BACKENDS)
    parser.add_argument(
        "--devices", nargs="*", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    )
    args = parser.parse_args()

    devices = [torch.device(name) for name in args.devices]
    rows = []
    for device in devices:
        x = torch.randn(args.numel, generator=torch.Generator().manual_seed(0)).to(device)
        for name in args.formats:
            for rounding in ("nearest", "stochastic"):
                for backend in args.backends:
                    rows.append(measure(x, name, rounding, args.repeats, backend))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    title = f"quantize vs x * 2.0 on {args.numel:,} float32 values (medians)"
    print_ratios(title, rows, ("device", "backend", "format", "rounding"), 3)


def print_ratios(
    title: str, rows: list[dict[str, object]], labels: tuple[str, ...], digits: int
) -> None:
    """A table of ``rows``: their ``labels``, then the quantizer's and ``x * 2.0``'s ms and
    their ratio."""
    table = Table(title=title)
    for column in (*labels, "quantize ms", "x*2 ms", "ratio"):
        table.add_column(column, justify="right" if column.endswith(("ms", "ratio")) else "left")
    for r in rows:
        table.add_row(
            *(str(r[label]) for label in labels),
            f"{r['quantize_ms']:.{digits}f}",
            f"{r['floor_ms']:.{digits}f}",
            f"{r['ratio']:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
