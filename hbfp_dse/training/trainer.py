"""The trainer: one configuration, epoch by epoch, with callbacks and checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..emulation import LayerInfo, Quantization, apply_formats, round_master_weights
from ..errors import UserError
from ..formats import Format, NoiseStream
from .assembly import model_for
from .checkpoint import CheckpointOwner, load_checkpoint, save_checkpoint, seed_everything
from .config import TrainConfig
from .data import DatasetPair, TensorBatches, load_dataset
from .devices import exact_float32, resolve_device
from .optim import build_lr_scheduler, build_optimizer
from .results import EpochRecord, RunResult, TrainStatus, format_names


class Callback(Protocol):
    """Hooks the sweep runner, Optuna and progress bars use; every method is optional."""

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        """``history``: the epochs a checkpoint restored (the run resumes after them)."""
        ...

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None: ...

    def before_checkpoint(self, record: EpochRecord) -> None:
        """Called once an epoch is trained, before it is checkpointed; raise to keep it from
        being saved."""
        ...

    def on_epoch_end(self, record: EpochRecord) -> bool | None:
        """Return True to stop the run early (status ``stopped``)."""
        ...


@dataclass
class TrainingState:
    """The live state of one run, on its device; a checkpoint carries part of it."""

    config: TrainConfig
    device: torch.device
    data: DatasetPair
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_batches: TensorBatches
    quant_noise: NoiseStream
    layers: list[LayerInfo]
    schedule: list[dict[str, Format]]  # the resolved formats, one dict per epoch
    quantization: Quantization
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def stochastic(self) -> bool:
        return "stochastic" in (self.config.forward_rounding, self.config.backward_rounding)


def load_config_data(config: TrainConfig) -> DatasetPair:
    dataset, root, download, train_size, test_size, split_seed = config.data_key()
    return load_dataset(
        dataset,
        root=root,
        download=download,
        train_size=train_size,
        test_size=test_size,
        split_seed=split_seed,
    )


def _initial_state(config: TrainConfig, data: DatasetPair | None) -> TrainingState:
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_config_data(config)
    elif data.info.name != config.dataset:
        raise UserError(
            f"the data given is {data.info.name!r} but the configuration trains on "
            f"{config.dataset!r}"
        )
    quant_noise = NoiseStream(config.seed + 1)
    built = model_for(config, noise=quant_noise, attention=config.quantize_attention)
    model = built.model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optimizer)
    data = data.to(device)
    train_batches = data.train_batches(config.batch_size, seed=config.seed, augment=config.augment)
    scheduler = build_lr_scheduler(
        optimizer, config.lr_schedule, config.epochs, max(len(train_batches), 1)
    )
    return TrainingState(
        config=config,
        device=device,
        data=data,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_batches=train_batches,
        quant_noise=quant_noise,
        layers=built.layers,
        schedule=config.schedule.build().resolve(built.layers, config.epochs),
        quantization=config.quantization(),
    )


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: Path | None = None,
    data: DatasetPair | None = None,
    owner: CheckpointOwner | None = None,
) -> RunResult:
    """Train one configuration. With ``checkpoint``, state is saved after every epoch and
    a run that finds one there resumes from it; ``owner`` stamps the files with their run and
    refuses another run's. A NaN/Inf loss ends the run as diverged. Float32 stays float32
    throughout (no TF32), and the process's settings are as they were afterwards."""
    with exact_float32():
        state = _initial_state(config, data)
        if checkpoint is not None:
            load_checkpoint(state, checkpoint, owner)
        for cb in callbacks:
            _call(cb, "on_start", config.epochs, len(state.train_batches), tuple(state.history))
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(config.deterministic or deterministic, warn_only=True)
        try:
            return _train_epochs(state, callbacks, checkpoint, owner)
        finally:
            torch.use_deterministic_algorithms(deterministic)


def _train_epochs(
    state: TrainingState,
    callbacks: Sequence[Callback],
    checkpoint: Path | None,
    owner: CheckpointOwner | None,
) -> RunResult:
    for epoch in range(len(state.history), state.config.epochs):
        record = _train_epoch(state, epoch, callbacks)
        if record is None:
            return _result(state, "diverged", f"loss became NaN/Inf in epoch {epoch}")
        state.history.append(record)
        for cb in callbacks:
            _call(cb, "before_checkpoint", record)
        if checkpoint is not None:
            save_checkpoint(state, checkpoint, owner)
        if any(_call(cb, "on_epoch_end", record) for cb in callbacks):
            return _result(state, "stopped", f"stopped by a callback after epoch {epoch}")
    return _result(state, "done")


def _result(state: TrainingState, status: TrainStatus, message: str | None = None) -> RunResult:
    schedule = [format_names(formats) for formats in state.schedule]
    return RunResult(status, state.history, state.layers, schedule, str(state.device), message)


def _call(callback: Callback, hook: str, *args: Any) -> Any:
    method = getattr(callback, hook, None)
    return method(*args) if method is not None else None


def _model_input(state: TrainingState, images: torch.Tensor) -> torch.Tensor:
    # Batches arrive contiguous; a channels-last model wants its input that way too.
    if state.config.channels_last and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _train_epoch(
    state: TrainingState, epoch: int, callbacks: Sequence[Callback]
) -> EpochRecord | None:
    formats = state.schedule[epoch]
    apply_formats(state.model, formats, state.quantization)
    state.model.train()
    state.train_batches.set_epoch(epoch)
    storage = state.config.weight_storage
    started = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    lr = state.optimizer.param_groups[0]["lr"]
    for step, (images, labels) in enumerate(state.train_batches):
        logits = state.model(_model_input(state, images))
        loss = F.cross_entropy(logits, labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            return None
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        if storage is not None:
            round_master_weights(state.model, storage)
        batch = labels.shape[0]
        batch_correct = int((logits.argmax(1) == labels).sum())
        total_loss += loss_value * batch
        correct += batch_correct
        seen += batch
        for cb in callbacks:
            _call(cb, "on_step", epoch, step, loss_value, batch_correct / batch)
    seconds = time.perf_counter() - started
    test_loss, test_acc = evaluate(state)
    return EpochRecord(
        epoch=epoch,
        train_loss=total_loss / max(seen, 1),
        train_acc=correct / max(seen, 1),
        test_loss=test_loss,
        test_acc=test_acc,
        lr=lr,
        seconds=seconds,
        images_per_s=seen / seconds if seconds > 0 else 0.0,
        formats=format_names(formats),
    )


@torch.no_grad()
def evaluate(state: TrainingState) -> tuple[float, float]:
    """Test loss and accuracy, with the layers in the epoch's formats."""
    state.model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in state.data.test_batches(max(state.config.batch_size, 256)):
        logits = state.model(_model_input(state, images))
        total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        seen += labels.shape[0]
    return total_loss / max(seen, 1), correct / max(seen, 1)
