"""``hbfp-dse analyze``: which layers a narrow format hurts, without a training run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from ..configfile import read_yaml
from ..errors import UserError
from ..experiments.precision import ALL_OPERANDS, mean_of
from ..experiments.search.proposal import DEFAULT_SHARE
from ..experiments.sweepfile import load_sweep
from ..lazy import lazy_module
from ..training.config import TrainConfig, load_train_config
from .common import console, err_console, print_json, print_table, user_errors
from .options import OutputFormat, OutputOption

# Loaded when the command runs: they import torch, which --help does not need.
sensitivity = lazy_module("hbfp_dse.experiments.sensitivity")

FileArgument = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help="A sweep file (its base configuration is analysed) or a training YAML.",
        exists=True,
        dir_okay=False,
    ),
]
FormatsOption = Annotated[
    str,
    typer.Option(
        "--formats", help="Comma-separated formats, e.g. hbfp4,hbfp6: narrowest is ranked."
    ),
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Start from this checkpoint's model weights instead of training the base "
        "configuration first (in FP32, for its epochs).",
    ),
]
BatchesOption = Annotated[
    int, typer.Option("--batches", min=1, help="Training batches each measurement averages.")
]
EpochsOption = Annotated[
    int | None,
    typer.Option("--epochs", min=1, help="Epochs of FP32 training first (default: the file's)."),
]
ShareOption = Annotated[
    float,
    typer.Option(
        "--share",
        min=0.01,
        max=1.0,
        help="Boost the fewest layers that make up this share of the loss increase.",
    ),
]
ProposalOption = Annotated[
    Path | None,
    typer.Option("--proposal", help="Also write the proposed schedule here (YAML)."),
]


@user_errors
def analyze(
    file: FileArgument,
    formats: FormatsOption = "hbfp4,hbfp6",
    checkpoint: CheckpointOption = None,
    batches: BatchesOption = 4,
    epochs: EpochsOption = None,
    share: ShareOption = DEFAULT_SHARE,
    proposal: ProposalOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Per-layer sensitivity: quantize one layer at a time in each format (the rest FP32) and
    measure the loss increase, gradient error and quantization error; rank the layers and
    propose which to boost, as YAML for a sweep file or 'search --from-analysis'."""
    config = _base_config(file)
    if epochs is not None:
        config = config.model_copy(update={"epochs": epochs})
    if checkpoint is not None and not checkpoint.is_file():
        raise UserError(f"--checkpoint {checkpoint} does not exist")
    if proposal is not None and not proposal.parent.is_dir():
        raise UserError(f"--proposal {proposal}: directory {proposal.parent} does not exist")
    names = [name.strip() for name in formats.split(",") if name.strip()]
    with err_console.status("analysing") as status:
        found = sensitivity.analyze(
            config,
            names,
            weights=checkpoint,
            batches=batches,
            share=share,
            progress=lambda what: status.update(f"analysing {what}"),
        )
    text = proposal_yaml(found)
    if proposal is not None:
        proposal.write_text(text)
        err_console.print(f"proposal written to {proposal}", soft_wrap=True, highlight=False)
    if output is OutputFormat.json:
        print_json(as_json(found))
        return
    print_table(_table(found))
    console.print(
        f"proposal (paste under a sweep file's 'baselines:', or give to "
        f"'search --from-analysis'):\n{text}",
        highlight=False,
        soft_wrap=True,
    )


def _base_config(file: Path) -> TrainConfig:
    data = read_yaml(file)
    if isinstance(data, dict) and "base" in data:
        spec, _ = load_sweep(file)
        return spec.base
    return load_train_config(file, {})


def proposal_yaml(found: sensitivity.Sensitivity) -> str:
    share = f"{found.share:.0%}"
    header = (
        f"# hbfp-dse analyze: {found.narrow} everywhere; in {found.wide} the layers that make "
        f"up {share} of the loss increase at {found.narrow}\n"
    )
    return header + yaml.safe_dump({"baselines": [found.proposal()]}, sort_keys=False)


def as_json(found: sensitivity.Sensitivity) -> dict[str, Any]:
    return {
        "fp32_loss": found.fp32_loss,
        "batches": found.batches,
        "formats": found.formats,
        "layers": found.layers,
        "ranking": found.ranking(),
        "boosted": found.boosted,
        "share": found.share,
        "proposal": found.proposal(),
        "results": [asdict(r) for r in found.results],
    }


def _table(found: sensitivity.Sensitivity) -> Table:
    table = Table(
        title=f"layer sensitivity, one layer quantized at a time, the rest FP32 (FP32 loss "
        f"{found.fp32_loss:.4f} on {found.batches} batches); most sensitive first; "
        "W1 = Wasserstein distance / std, both mean over the layer's operands",
        title_justify="left",
    )
    for title in ("rank", "layer", "format", "loss increase", "grad error", "W1", "SQNR dB"):
        table.add_column(title, justify="left" if title in ("layer", "format") else "right")
    table.add_column("boost")
    for rank, layer in enumerate(found.ranking(), 1):
        for fmt in found.formats:
            result = found.result(layer, fmt)
            w1 = mean_of(result.statistics, "wasserstein", ALL_OPERANDS)
            sqnr = mean_of(result.statistics, "sqnr_db", ALL_OPERANDS)
            first = fmt == found.formats[0]
            table.add_row(
                str(rank) if first else "",
                layer if first else "",
                fmt,
                f"{result.loss_increase:+.4f}",
                f"{result.gradient_error:.4f}",
                "-" if w1 is None else f"{w1:.4f}",
                "-" if sqnr is None else f"{sqnr:.1f}",
                "*" if first and layer in found.boosted else "",
                end_section=fmt == found.formats[-1],
            )
    return table
