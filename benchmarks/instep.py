"""The quantizer inside real training steps, as a multiple of ``x * 2.0`` on the same operands
at the same points of the step: the operands as training leaves them (cold, or still in
cache), which ``operands.py``, timing each operand over and over, does not see.

Steps of an emulated ResNet-20 (batch 128) alternate: in one, every quantize call is timed; in
the next, ``x * 2.0`` of each operand is timed where the call comes and the call then runs
untimed. Each row gives the medians of the steps' totals, and the median ratio of neighbouring
steps' totals.

    python benchmarks/instep.py [--contiguous] [--steps 6] [--formats hbfp4_b64 ...]
        [--roundings nearest stochastic] [--device cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from operands import emulated_resnet20  # benchmarks/operands.py, beside this script
from quantize import FAMILIES, print_ratios, timer

import hbfp_dse.emulation.layers as layers


def step_total(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    floor: bool,
    timed: Callable[[Callable[[], object]], float],
) -> float:
    """Seconds of one forward and backward pass spent in the quantizer's calls, or with
    ``floor``, in ``x * 2.0`` of the same operands at the same points."""
    total = 0.0
    real = layers.quantize

    def timing(t: torch.Tensor, *args: object) -> torch.Tensor:
        nonlocal total
        if floor:
            total += timed(lambda: t * 2.0)
            return real(t, *args)  # type: ignore[arg-type]
        out: list[torch.Tensor] = []
        total += timed(lambda: out.append(real(t, *args)))  # type: ignore[arg-type]
        return out[0]

    layers.quantize = timing  # type: ignore[assignment]
    try:
        F.cross_entropy(model(images), labels).backward()
    finally:
        layers.quantize = real
    model.zero_grad(set_to_none=True)
    return total


def measure(
    fmt: str, rounding: str, channels_last: bool, steps: int, device: torch.device
) -> dict[str, object]:
    model, images, labels = emulated_resnet20(fmt, rounding, channels_last, 128)
    model, images, labels = model.to(device), images.to(device), labels.to(device)
    timed = timer(device)
    for _ in range(2):  # compilation, the allocator
        step_total(model, images, labels, False, timed)
    quantized, floors = [], []
    for _ in range(steps):
        quantized.append(step_total(model, images, labels, False, timed))
        floors.append(step_total(model, images, labels, True, timed))
    return {
        "format": fmt,
        "rounding": rounding,
        "quantize_ms": statistics.median(quantized) * 1e3,
        "floor_ms": statistics.median(floors) * 1e3,
        # of each pair of neighbouring steps: the machine's load drifts over seconds
        "ratio": statistics.median(q / f for q, f in zip(quantized, floors, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contiguous", action="store_true", help="contiguous, not channels-last")
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each kind")
    parser.add_argument("--formats", nargs="*", default=list(FAMILIES))
    parser.add_argument("--roundings", nargs="*", default=["nearest", "stochastic"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    args = parser.parse_args()

    device = torch.device(args.device)
    rows = []
    for fmt in args.formats:
        for rounding in args.roundings:
            rows.append(measure(fmt, rounding, not args.contiguous, args.steps, device))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    layout = "contiguous" if args.contiguous else "channels-last"
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    title = (
        f"quantizer vs x*2.0 within ResNet-20 steps (batch 128, {layout}, {where}; "
        "medians of per-step totals; ratio: of neighbouring steps)"
    )
    print_ratios(title, rows, ("format", "rounding"), 1)


if __name__ == "__main__":
    main()
