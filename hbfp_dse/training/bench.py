"""Timing FP32 and emulated training steps of the same model side by side."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..emulation import apply_formats
from ..formats import NoiseStream
from .assembly import model_for
from .config import OptimizerConfig, TrainConfig
from .devices import resolve_device
from .models import LANGUAGE_MODEL_NAMES, build_model
from .optim import build_optimizer


@dataclass(frozen=True)
class StepBenchmark:
    model: str
    format: str
    forward_rounding: str
    backward_rounding: str
    blocking: str
    batch_size: int
    steps: int
    device: str
    channels_last: bool
    threads: int
    fp32_step_s: float
    emulated_step_s: float

    @property
    def ratio(self) -> float:
        return self.emulated_step_s / self.fp32_step_s


def default_dataset(model: str) -> str:
    """The input shape a model is usually trained on: 28x28 digits, 32x32 colour, or text."""
    if model in LANGUAGE_MODEL_NAMES:
        return "pydoc-topics"
    return "mnist-5k" if model in ("cnn", "mlp", "resnet8") else "cifar10"


def benchmark_steps(
    model: str,
    fmt: str,
    *,
    batch_size: int = 128,
    steps: int = 10,
    warmup: int = 3,
    blocking: str = "reduction",
    forward_rounding: str = "nearest",
    backward_rounding: str = "nearest",
    device: str = "auto",
    dataset: str | None = None,
    channels_last: bool = True,
    seed: int = 0,
) -> StepBenchmark:
    """Median step times of the plain model and its emulated copy, measured alternately.

    Both start from the same weights, use the same memory format, threads and optimizer;
    warm-up steps (compilation included) are not timed. Channels-last is the default: on
    CPU it makes the FP32 step of a CNN about twice as fast (and the emulated one too).
    """
    target = resolve_device(device)
    config = TrainConfig.model_validate(
        {
            "model": model,
            "dataset": dataset or default_dataset(model),
            "schedule": fmt,
            "blocking": blocking,
            "forward_rounding": forward_rounding,
            "backward_rounding": backward_rounding,
            "seed": seed,
        }
    )
    torch.manual_seed(config.seed)
    # The emulated model is set up as the trainer sets it up; the plain one copies its weights.
    built = model_for(config, noise=NoiseStream(config.seed + 1))
    [formats] = config.schedule.build().resolve(built.layers, 1)
    apply_formats(built.model, formats, config.quantization())
    info = built.info
    plain = build_model(model, info.num_classes, info.in_channels, info.image_size)
    plain.load_state_dict(built.model.state_dict())  # conversion keeps the state-dict keys
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if info.kind == "text":  # random tokens, each labelled with a random next token
        shape = (batch_size, *built.input_shape)
        images = torch.randint(0, info.num_classes, shape, device=target)
        labels = torch.randint(0, info.num_classes, shape, device=target).flatten()
    else:
        images = torch.randn(batch_size, *built.input_shape)
        images = images.to(target).contiguous(memory_format=memory_format)
        labels = torch.randint(0, info.num_classes, (batch_size,), device=target)
    models = [m.to(target, memory_format=memory_format) for m in (plain, built.model)]
    optimizers = [build_optimizer(m, OptimizerConfig()) for m in models]

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        start = time.perf_counter()
        loss = F.cross_entropy(model(images).flatten(0, -2), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        return time.perf_counter() - start

    for _ in range(warmup):
        for m, o in zip(models, optimizers, strict=True):
            step(m, o)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        for series, m, o in zip(times, models, optimizers, strict=True):
            series.append(step(m, o))
    return StepBenchmark(
        model=model,
        format=fmt,
        forward_rounding=forward_rounding,
        backward_rounding=backward_rounding,
        blocking=blocking,
        batch_size=batch_size,
        steps=steps,
        device=str(target),
        channels_last=channels_last,
        threads=torch.get_num_threads(),
        fp32_step_s=statistics.median(times[0]),
        emulated_step_s=statistics.median(times[1]),
    )
