"""Counting what the quantized layers quantize in one emulated training step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import hbfp_dse.emulation.layers as layers
from hbfp_dse.emulation import apply_formats
from hbfp_dse.formats import Format
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig


def step_quantizations(config: TrainConfig, monkeypatch: pytest.MonkeyPatch) -> list[Format]:
    """The format of every operand quantization in one forward and backward pass of four
    samples (random images, or random tokens each labelled with itself) in epoch 0's formats."""
    built = model_for(config)
    [formats] = config.schedule.build().resolve(built.layers, 1)
    apply_formats(built.model, formats, config.quantization())
    calls: list[Format] = []
    real = layers.quantize

    def counting(t: torch.Tensor, fmt: Format, *args: Any) -> torch.Tensor:
        calls.append(fmt)
        return real(t, fmt, *args)

    monkeypatch.setattr(layers, "quantize", counting)
    if built.info.kind == "text":
        tokens = torch.randint(0, built.info.num_classes, (4, *built.input_shape))
        logits, labels = built.model(tokens).flatten(0, 1), tokens.flatten()
    else:
        logits, labels = built.model(torch.randn(4, *built.input_shape)), torch.arange(4)
    F.cross_entropy(logits, labels).backward()
    monkeypatch.setattr(layers, "quantize", real)
    return calls
