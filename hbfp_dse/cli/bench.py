"""``hbfp-dse bench``: FP32 and emulated training steps of one model, side by side."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import torch
import typer

from ..emulation.quant_spec import BLOCKINGS
from ..errors import UserError
from ..formats import parse_format
from ..training.bench import StepBenchmark, benchmark_steps
from .common import console, print_json, user_errors
from .options import OutputFormat, OutputOption

NumberFormatOption = Annotated[
    str, typer.Option("--number-format", help="Number format of the GEMMs.")
]
BlockingOption = Annotated[str, typer.Option("--blocking", help="reduction or reference")]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads of both (default: torch's, all cores)."),
]
ChannelsLastOption = Annotated[
    bool,
    typer.Option(
        "--channels-last/--contiguous",
        help="Memory format of both models (channels-last: the faster on CPU).",
    ),
]


@user_errors
def bench(
    model: Annotated[str, typer.Option("--model")] = "resnet20",
    number_format: NumberFormatOption = "hbfp4_b64",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 128,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps of each.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=1)] = 3,
    blocking: BlockingOption = "reduction",
    device: Annotated[str, typer.Option("--device")] = "auto",
    channels_last: ChannelsLastOption = True,
    threads: ThreadsOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Time FP32 and emulated training steps in one process and print their ratio."""
    if blocking not in BLOCKINGS:
        raise UserError(f"--blocking must be one of {', '.join(BLOCKINGS)}, got {blocking!r}")
    name = parse_format(number_format).name
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with console.status(f"timing {model} steps (warm-up compiles the quantizer)..."):
            result = benchmark_steps(
                model,
                name,
                batch_size=batch_size,
                steps=steps,
                warmup=warmup,
                blocking=blocking,
                device=device,
                channels_last=channels_last,
            )
    finally:
        torch.set_num_threads(default_threads)  # --threads holds for this command only
    if output is OutputFormat.json:
        print_json({**asdict(result), "ratio": result.ratio})
    else:
        console.print(_summary(result))


def _summary(result: StepBenchmark) -> str:
    step = f"{result.format} step"
    width = max(len("fp32 step"), len(step))
    layout = "channels-last" if result.channels_last else "contiguous"
    return (
        f"{result.model}, batch {result.batch_size}, {result.device} ({result.threads} "
        f"threads), {layout}; median of {result.steps} steps each\n"
        f"  {'fp32 step':<{width}} {result.fp32_step_s * 1e3:9.1f} ms\n"
        f"  {step:<{width}} {result.emulated_step_s * 1e3:9.1f} ms  ({result.blocking} blocking)\n"
        f"  {'ratio':<{width}} [bold]{result.ratio:9.3f}[/]"
    )
