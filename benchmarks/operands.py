"""Quantizer speed on the operands of a real training step, as a multiple of ``x * 2.0`` on
the same tensors (the memory-bound floor), for every format family and both roundings.

One emulated ResNet-20 step (batch 128, CIFAR shapes) is run once to record every operand the
layers quantize: 4-D activations and gradients blocked along channels (forward, data gradient)
and along the batch (weight gradient), weights, the FC layer, in the model's memory layout.
Each distinct operand is then timed alternately with ``x * 2.0`` in this process, and the
step's totals are summed with the counts of each. A flat vector is timed too.

    python benchmarks/operands.py [--contiguous] [--repeats 7] [--formats hbfp4_b64 ...]
        [--backends auto native compiled eager] [--device cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from quantize import BACKENDS, FAMILIES, against_floor  # benchmarks/quantize.py, beside this script
from rich.console import Console
from rich.table import Table

import hbfp_dse.emulation.layers as layers
from hbfp_dse.emulation import apply_formats
from hbfp_dse.formats import NoiseStream
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig


@dataclass
class Operand:
    tensor: torch.Tensor
    dim: int
    count: int

    @property
    def label(self) -> str:
        layout = (
            "cl"
            if self.tensor.dim() == 4
            and self.tensor.is_contiguous(memory_format=torch.channels_last)
            and not self.tensor.is_contiguous()
            else "c"
        )
        return f"{list(self.tensor.shape)} dim {self.dim} {layout}"


def emulated_resnet20(
    fmt: str, rounding: str, channels_last: bool, batch: int
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """An emulated ResNet-20 (every GEMM in ``fmt``, every operand rounded by ``rounding``)
    and a CIFAR-shaped batch, in the given memory layout."""
    config = TrainConfig.model_validate(
        {
            "model": "resnet20",
            "dataset": "cifar10",
            "schedule": fmt,
            "forward_rounding": rounding,
            "backward_rounding": rounding,
            "seed": 0,
        }
    )
    built = model_for(config, noise=NoiseStream(1))
    [formats] = config.schedule.build().resolve(built.layers, 1)
    apply_formats(built.model, formats, config.quantization())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = built.model.to(memory_format=memory_format)
    images = torch.randn(batch, *built.input_shape).contiguous(memory_format=memory_format)
    return model, images, torch.randint(0, 10, (batch,))


def record_operands(channels_last: bool, batch: int) -> list[Operand]:
    """Every tensor one emulated training step quantizes, once per shape, stride and dim."""
    model, images, labels = emulated_resnet20("hbfp4_b64", "nearest", channels_last, batch)
    seen: dict[tuple[object, ...], Operand] = {}
    real = layers.quantize

    def recording(t: torch.Tensor, fmt: object, dim: int, *args: object) -> torch.Tensor:
        key = (tuple(t.shape), t.stride(), dim % t.dim())
        if key in seen:
            seen[key].count += 1
        else:
            seen[key] = Operand(t.detach().clone(memory_format=torch.preserve_format), dim, 1)
        return real(t, fmt, dim, *args)  # type: ignore[arg-type]

    layers.quantize = recording  # type: ignore[assignment]
    try:
        F.cross_entropy(model(images), labels).backward()
    finally:
        layers.quantize = real
    return list(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contiguous", action="store_true", help="contiguous, not channels-last")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--formats", nargs="*", default=list(FAMILIES))
    parser.add_argument("--roundings", nargs="*", default=["nearest", "stochastic"])
    parser.add_argument("--flat", type=int, default=2 * 1024 * 1024, help="flat vector length")
    parser.add_argument("--detail", action="store_true", help="a row per operand too")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    parser.add_argument("--device", default="cpu", help="where the operands are timed")
    parser.add_argument("--backends", nargs="*", default=["auto"], choices=BACKENDS)
    args = parser.parse_args()

    device = torch.device(args.device)
    operands = [
        Operand(op.tensor.to(device), op.dim, op.count)  # .to keeps the layout
        for op in record_operands(not args.contiguous, args.batch_size)
    ]
    flat_values = torch.randn(args.flat, generator=torch.Generator().manual_seed(0))
    flat = Operand(flat_values.to(device), 0, 1)
    rows = []
    cases = [(f, r, b) for f in args.formats for r in args.roundings for b in args.backends]
    for fmt, rounding, backend in cases:
        per = [
            (op, *against_floor(op.tensor, fmt, rounding, args.repeats, op.dim, backend))
            for op in operands
        ]
        total_q = sum(op.count * q for op, q, _ in per)
        total_f = sum(op.count * f for op, _, f in per)
        worst = max(per, key=lambda item: item[1] / item[2])
        flat_q, flat_f = against_floor(flat.tensor, fmt, rounding, args.repeats, 0, backend)
        rows.append(
            {
                "format": fmt,
                "rounding": rounding,
                "backend": backend,
                "step_quantize_ms": total_q * 1e3,
                "step_floor_ms": total_f * 1e3,
                "step_ratio": total_q / total_f,
                "worst_operand": worst[0].label,
                "worst_ratio": worst[1] / worst[2],
                "flat_ratio": flat_q / flat_f,
                "operands": [
                    {"operand": op.label, "count": op.count, "ratio": q / f} for op, q, f in per
                ],
            }
        )
        done = rows[-1]  # as it goes: a run cut short keeps what it measured
        print(
            f"{fmt} {rounding} {backend}: step {done['step_ratio']:.2f}x, worst "
            f"{done['worst_ratio']:.1f}x ({done['worst_operand']}), "
            f"flat {done['flat_ratio']:.2f}x",
            file=sys.stderr,
            flush=True,
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    layout = "contiguous" if args.contiguous else "channels-last"
    calls = sum(op.count for op in operands)
    table = Table(
        title=f"quantizer vs x*2.0 on the {calls} operands of a ResNet-20 step ({len(operands)} "
        f"distinct; batch {args.batch_size}, {layout}, "
        + (f"{torch.get_num_threads()} threads)" if device.type == "cpu" else f"{device})")
    )
    for column in ("format", "rounding", "backend", "step ms", "x*2 ms", "step ratio",
                   "worst operand", "worst", f"flat {args.flat:,}"):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("format", "worst operand") else "right"
        )
    for r in rows:
        table.add_row(
            r["format"],
            r["rounding"],
            r["backend"],
            f"{r['step_quantize_ms']:.1f}",
            f"{r['step_floor_ms']:.1f}",
            f"{r['step_ratio']:.2f}x",
            r["worst_operand"],
            f"{r['worst_ratio']:.1f}x",
            f"{r['flat_ratio']:.2f}x",
        )
    Console(width=max(Console().width, 150)).print(table)
    if args.detail:
        for r in rows:
            for op in r["operands"]:
                case = f"{r['format']:14} {r['rounding']:10} {r['backend']:8} {op['operand']:40}"
                print(f"{case} x{op['count']:<3} {op['ratio']:.2f}x")


if __name__ == "__main__":
    main()
