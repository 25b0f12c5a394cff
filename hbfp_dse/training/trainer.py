"""The trainer: one configuration, epoch by epoch, with callbacks and checkpoints."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..emulation import QuantSpec, apply_formats, convert, layer_infos, store_weights
from ..emulation.schedule import LayerInfo
from ..errors import UserError
from .config import TrainConfig
from .data import DatasetPair, TensorBatches, load_dataset
from .models import build_model
from .optim import build_lr_scheduler, build_optimizer

Status = Literal["done", "diverged", "stopped"]


@dataclass
class EpochRecord:
    epoch: int  # 0-based
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float
    images_per_s: float
    formats: dict[str, str]


@dataclass
class RunResult:
    status: Status
    epochs: list[EpochRecord]
    layers: list[LayerInfo]
    schedule: list[dict[str, str]]  # the resolved format names, one dict per epoch
    device: str
    message: str | None = None

    @property
    def final_test_acc(self) -> float | None:
        return self.epochs[-1].test_acc if self.epochs else None

    @property
    def best_test_acc(self) -> float | None:
        return max((e.test_acc for e in self.epochs), default=None)


class Callback(Protocol):
    """Hooks the sweep runner, Optuna and progress bars use; every method is optional."""

    def on_start(self, total_epochs: int, steps_per_epoch: int, start_epoch: int) -> None: ...

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None: ...

    def on_epoch_end(self, record: EpochRecord) -> bool | None:
        """Return True to stop the run early (status ``stopped``)."""
        ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but CUDA is not available here")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Run:
    """The live state of one run: what a checkpoint saves and restores."""

    config: TrainConfig
    device: torch.device
    data: DatasetPair
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_batches: TensorBatches
    quant_generator: torch.Generator
    layers: list[LayerInfo]
    schedule: list[dict[str, str]]
    template: QuantSpec
    history: list[EpochRecord] = field(default_factory=list)


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


def build_run(config: TrainConfig, data: DatasetPair | None = None) -> _Run:
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_config_data(config)
    info = data.info
    model = build_model(config.model, info.num_classes, info.in_channels, info.image_size)
    quant_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    convert(model, generator=quant_generator, attention=config.quantize_attention)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    layers = layer_infos(model)
    resolved = config.schedule.build().resolve(layers, config.epochs)
    optimizer = build_optimizer(model, config.optimizer)
    train_batches = data.to(device).train_batches(
        config.batch_size, seed=config.seed, augment=config.augment
    )
    scheduler = build_lr_scheduler(
        optimizer, config.lr_schedule, config.epochs, max(len(train_batches), 1)
    )
    return _Run(
        config=config,
        device=device,
        data=data.to(device),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_batches=train_batches,
        quant_generator=quant_generator,
        layers=layers,
        schedule=[{k: f.name for k, f in epoch.items()} for epoch in resolved],
        template=QuantSpec(
            "fp32", config.blocking, config.forward_rounding, config.backward_rounding
        ),
    )


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: Path | None = None,
    data: DatasetPair | None = None,
) -> RunResult:
    """Train one configuration. With ``checkpoint``, state is saved after every epoch and
    a run that finds one there resumes from it. A NaN/Inf loss ends the run as diverged."""
    run = build_run(config, data)
    if checkpoint is not None and checkpoint.exists():
        load_checkpoint(run, checkpoint)
    start = len(run.history)
    for cb in callbacks:
        _call(cb, "on_start", config.epochs, len(run.train_batches), start)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic or deterministic, warn_only=True)
    try:
        for epoch in range(start, config.epochs):
            record = _train_epoch(run, epoch, callbacks)
            if record is None:
                return _result(run, "diverged", f"loss became NaN/Inf in epoch {epoch}")
            run.history.append(record)
            if checkpoint is not None:
                save_checkpoint(run, checkpoint)
            if any(_call(cb, "on_epoch_end", record) for cb in callbacks):
                return _result(run, "stopped", f"stopped by a callback after epoch {epoch}")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return _result(run, "done")


def _result(run: _Run, status: Status, message: str | None = None) -> RunResult:
    return RunResult(status, run.history, run.layers, run.schedule, str(run.device), message)


def _call(callback: Callback, hook: str, *args: Any) -> Any:
    method = getattr(callback, hook, None)
    return method(*args) if method is not None else None


def _to_device(run: _Run, images: torch.Tensor) -> torch.Tensor:
    if run.config.channels_last and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _train_epoch(run: _Run, epoch: int, callbacks: Sequence[Callback]) -> EpochRecord | None:
    formats = run.schedule[epoch]
    apply_formats(run.model, formats, run.template)
    run.model.train()
    run.train_batches.set_epoch(epoch)
    storage = run.config.weight_storage
    started = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    lr = run.optimizer.param_groups[0]["lr"]
    for step, (images, labels) in enumerate(run.train_batches):
        logits = run.model(_to_device(run, images))
        loss = F.cross_entropy(logits, labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            return None
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if storage is not None:
            store_weights(run.model, storage)
        batch = labels.shape[0]
        batch_correct = int((logits.argmax(1) == labels).sum())
        total_loss += loss_value * batch
        correct += batch_correct
        seen += batch
        for cb in callbacks:
            _call(cb, "on_step", epoch, step, loss_value, batch_correct / batch)
    seconds = time.perf_counter() - started
    test_loss, test_acc = evaluate(run)
    return EpochRecord(
        epoch=epoch,
        train_loss=total_loss / max(seen, 1),
        train_acc=correct / max(seen, 1),
        test_loss=test_loss,
        test_acc=test_acc,
        lr=lr,
        seconds=seconds,
        images_per_s=seen / seconds if seconds > 0 else 0.0,
        formats=dict(formats),
    )


@torch.no_grad()
def evaluate(run: _Run) -> tuple[float, float]:
    """Test loss and accuracy, with the layers in the epoch's formats."""
    run.model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in run.data.test_batches(max(run.config.batch_size, 256)):
        logits = run.model(_to_device(run, images))
        total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        seen += labels.shape[0]
    return total_loss / max(seen, 1), correct / max(seen, 1)


def save_checkpoint(run: _Run, path: Path) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "history": [asdict(record) for record in run.history],
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state(),
            "python": _python_state(),
            "quant": run.quant_generator.get_state(),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(run: _Run, path: Path) -> None:
    state = torch.load(path, map_location=run.device, weights_only=True)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.history = [EpochRecord(**record) for record in state["history"]]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    _set_numpy_state(rng["numpy"])
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    run.quant_generator.set_state(rng["quant"].cpu())


# weights_only loading accepts tensors and plain containers, so RNG states travel as those.
def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
