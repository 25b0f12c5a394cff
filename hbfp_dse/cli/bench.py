"""``hbfp-dse bench``: FP32 and emulated training steps of one model, side by side, for one or
more number formats and roundings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ..emulation.quant_spec import BLOCKINGS
from ..errors import UserError
from ..formats import ROUNDINGS, parse_format
from ..lazy import lazy_module
from .common import console, print_json, user_errors
from .options import OutputFormat, OutputOption

# Loaded when the command runs: they import torch, which --help does not need.
torch = lazy_module("torch")
step_bench = lazy_module("hbfp_dse.training.bench")

NumberFormatOption = Annotated[
    list[str] | None,
    typer.Option(
        "--number-format", help="Number format of the GEMMs; repeat it for several (hbfp4_b64)."
    ),
]
BlockingOption = Annotated[str, typer.Option("--blocking", help="reduction, reference or emulator")]
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
    number_format: NumberFormatOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 128,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps of each.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=1)] = 3,
    blocking: BlockingOption = "reduction",
    forward_rounding: Annotated[str, typer.Option("--forward-rounding")] = "nearest",
    backward_rounding: Annotated[str, typer.Option("--backward-rounding")] = "nearest",
    device: Annotated[str, typer.Option("--device")] = "auto",
    channels_last: ChannelsLastOption = True,
    threads: ThreadsOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Time FP32 and emulated training steps in one process and print their ratio, one row
    per number format. The rounding of X and W (forward) and of dY (backward) apply to all."""
    if blocking not in BLOCKINGS:
        raise UserError(f"--blocking must be one of {', '.join(BLOCKINGS)}, got {blocking!r}")
    for flag, rounding in (
        ("--forward-rounding", forward_rounding),
        ("--backward-rounding", backward_rounding),
    ):
        if rounding not in ROUNDINGS:
            raise UserError(f"{flag} must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    names = [parse_format(name).name for name in number_format or ["hbfp4_b64"]]
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    results: list[step_bench.StepBenchmark] = []
    try:
        for name in names:
            with console.status(f"timing {model} steps in {name} (warm-up compiles)..."):
                results.append(
                    step_bench.benchmark_steps(
                        model,
                        name,
                        batch_size=batch_size,
                        steps=steps,
                        warmup=warmup,
                        blocking=blocking,
                        forward_rounding=forward_rounding,
                        backward_rounding=backward_rounding,
                        device=device,
                        channels_last=channels_last,
                    )
                )
    finally:
        torch.set_num_threads(default_threads)  # --threads holds for this command only
    if output is OutputFormat.json:
        print_json([{**asdict(result), "ratio": result.ratio} for result in results])
    else:
        console.print(_table(results))


def _table(results: list[step_bench.StepBenchmark]) -> Table:
    first = results[0]
    layout = "channels-last" if first.channels_last else "contiguous"
    table = Table(
        title=f"{first.model}, batch {first.batch_size}, {first.device} ({first.threads} "
        f"threads), {layout}, {first.blocking} blocking; median of {first.steps} steps each"
    )
    for column in ("format", "forward", "backward", "fp32 ms", "emulated ms", "ratio"):
        table.add_column(column, justify="left" if column == "format" else "right")
    for result in results:
        table.add_row(
            result.format,
            result.forward_rounding,
            result.backward_rounding,
            f"{result.fp32_step_s * 1e3:.1f}",
            f"{result.emulated_step_s * 1e3:.1f}",
            f"[bold]{result.ratio:.3f}[/]",
        )
    return table
