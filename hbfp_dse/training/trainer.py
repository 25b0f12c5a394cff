"""The trainer: one configuration, epoch by epoch, with callbacks and checkpoints."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..emulation import (
    LayerInfo,
    Probe,
    Quantization,
    apply_formats,
    attach_probe,
    round_master_weights,
)
from ..errors import UserError
from ..formats import Format, NoiseStream
from . import distributed
from .assembly import model_for
from .checkpoint import (
    CheckpointOwner,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    seed_everything,
)
from .config import FOLDER_DATASET, TEXT_DATASETS, TrainConfig, is_import_path
from .custom import user_dataset
from .data import DatasetPair, TensorBatches, load_dataset, subsets
from .devices import exact_float32, resolve_device
from .distributed import Ranks
from .folders import FolderBatches, FolderDataset, load_folders
from .optim import build_lr_scheduler, build_optimizer
from .results import EpochRecord, RunResult, TrainStatus, format_names
from .text import TextBatches, TextDataset, load_text


class Callback(Protocol):
    """Hooks the sweep runner, Optuna and progress bars use; every method is optional."""

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        """``history``: the epochs a checkpoint restored (the run resumes after them)."""
        ...

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        """After every ``sync_every``-th step and an epoch's last (see :func:`train`): the mean
        training loss and accuracy of the steps since the last call."""
        ...

    def before_checkpoint(self, record: EpochRecord) -> None:
        """Called once an epoch is trained, before it is checkpointed; raise to keep it from
        being saved."""
        ...

    def on_epoch_end(self, record: EpochRecord) -> bool | None:
        """Return True to stop the run early (status ``stopped``)."""
        ...


Data = DatasetPair | FolderDataset | TextDataset


@dataclass
class TrainingState:
    """The live state of one run, on its device; a checkpoint carries part of it."""

    config: TrainConfig
    device: torch.device
    data: Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_batches: TensorBatches | FolderBatches | TextBatches
    quant_noise: NoiseStream
    layers: list[LayerInfo]
    schedule: list[dict[str, Format]]  # the resolved formats, one dict per epoch
    quantization: Quantization
    step_model: nn.Module  # what the steps call: DDP over ``model`` in a run of processes
    ranks: Ranks | None
    probe: Probe | None  # with ``analysis``: watches every quantized operand on sampled steps
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def leader(self) -> bool:
        """Whether this process records (every process of a run alone)."""
        return self.ranks is None or self.ranks.leader

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def stochastic(self) -> bool:
        return "stochastic" in (self.config.forward_rounding, self.config.backward_rounding)


def load_config_data(config: TrainConfig) -> Data:
    """The configuration's data, its validation split held out of the training set."""
    return _load_data(config).with_validation(config.validation, config.split_seed)


def _load_data(config: TrainConfig) -> Data:
    dataset, root = config.dataset, config.data_dir
    sizes = {"train_size": config.train_size, "test_size": config.test_size}
    if dataset in TEXT_DATASETS:
        return load_text(dataset, root, context=config.context_length, **sizes)
    if is_import_path(dataset):
        return subsets(user_dataset(dataset, root), split_seed=config.split_seed, **sizes)
    if dataset == FOLDER_DATASET:
        return load_folders(
            Path(root).expanduser() if root is not None else None,
            image_size=config.image_size,
            workers=config.loader_workers,
            split_seed=config.split_seed,
            **sizes,
        )
    return load_dataset(
        dataset, root=root, download=config.download, split_seed=config.split_seed, **sizes
    )


def _initial_state(config: TrainConfig, data: Data | None) -> TrainingState:
    ranks = distributed.current()
    device = distributed.rank_device(resolve_device(config.device), ranks)
    if ranks is not None and config.batch_size < ranks.world:
        raise UserError(f"batch_size {config.batch_size} is less than the {ranks.world} processes")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # this worker's kernels, caches and context on its GPU
    seed_everything(config.seed)
    if data is None:
        data = load_config_data(config)
    elif data.info.name != config.dataset:
        raise UserError(
            f"the data given is {data.info.name!r} but the configuration trains on "
            f"{config.dataset!r}"
        )
    elif (config.validation > 0) != (data.validation is not None):
        held = "holds a" if data.validation is not None else "holds no"
        raise UserError(
            f"the data given {held} validation split but the configuration's validation is "
            f"{config.validation:g}: load it with load_config_data(config)"
        )
    # A process of its own noise: shares of one batch must not round alike.
    quant_noise = NoiseStream(config.seed + 1 + ((ranks.rank if ranks else 0) << 32))
    built = model_for(config, noise=quant_noise, attention=config.quantize_attention)
    model = built.model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    probe = None
    if config.analysis is not None:
        probe = Probe(config.analysis.samples, seed=config.seed)
        attach_probe(model, probe)
    model, step_model = distributed.prepare(model, device, ranks)
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
        step_model=step_model,
        ranks=ranks,
        probe=probe,
    )


# Steps between reads of the loss off the device: each read waits for the device to finish.
# On the CPU a read costs nothing, so progress and divergence are seen at every step.
SYNC_EVERY_STEPS = 25


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: Path | None = None,
    data: Data | None = None,
    owner: CheckpointOwner | None = None,
    sync_every: int | None = None,
) -> RunResult:
    """Train one configuration. With ``checkpoint``, state is saved after every epoch and
    a run that finds one there resumes from it; ``owner`` stamps the files with their run and
    refuses another run's. Losses and accuracies add up on the device and are read every
    ``sync_every`` steps (default: every step on the CPU, else ``SYNC_EVERY_STEPS``): a NaN/Inf
    loss ends the run as diverged within that many steps. Float32 stays float32 throughout (no
    TF32); ``deterministic`` runs use deterministic algorithms only (an operation without one
    raises). The process's settings are as they were afterwards.

    In a process group (``torchrun``: see ``distributed.py``) this process trains its share of
    every batch; only the leader calls ``callbacks`` and saves checkpoints, which every process
    resumes from."""
    with exact_float32(), _determinism(config.deterministic):
        state = _initial_state(config, data)
        if checkpoint is not None:
            _resume(state, checkpoint, owner)
        if not state.leader:
            callbacks, checkpoint = (), None
        for cb in callbacks:
            _call(cb, "on_start", config.epochs, len(state.train_batches), tuple(state.history))
        if sync_every is None:
            sync_every = _default_sync_every(state.device)
        return _train_epochs(state, callbacks, checkpoint, owner, max(sync_every, 1))


def _default_sync_every(device: torch.device) -> int:
    return 1 if device.type == "cpu" else SYNC_EVERY_STEPS


def trained_state(
    config: TrainConfig, *, weights: Path | None = None, data: Data | None = None
) -> TrainingState:
    """The live state of ``config`` trained for its epochs, or, with ``weights``, untrained
    with the model weights of that checkpoint file: where an analysis starts."""
    with exact_float32(), _determinism(config.deterministic):
        state = _initial_state(config, data)
        if weights is not None:
            load_model_weights(state.model, weights)
            return state
        result = _train_epochs(state, (), None, None, _default_sync_every(state.device))
    if result.status != "done":
        raise UserError(f"training before the analysis failed: {result.message}")
    return state


def _resume(state: TrainingState, checkpoint: Path, owner: CheckpointOwner | None) -> None:
    """Every process restores the checkpoint, the leader first: only it sets unusable files
    aside, so that all restore the same one (checked: they must agree on the epochs done)."""
    if state.leader:
        load_checkpoint(state, checkpoint, owner)
    distributed.barrier(state.ranks)
    if not state.leader:
        load_checkpoint(state, checkpoint, owner)
    if distributed.disagree(len(state.history), state.device, state.ranks):
        raise RuntimeError(f"the processes restored different checkpoints of {checkpoint}")


@contextlib.contextmanager
def _determinism(deterministic: bool) -> Iterator[None]:
    """Deterministic algorithms inside where asked for (cuBLAS needs its workspace setting
    for them), the process's own settings outside."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def _train_epochs(
    state: TrainingState,
    callbacks: Sequence[Callback],
    checkpoint: Path | None,
    owner: CheckpointOwner | None,
    sync_every: int,
) -> RunResult:
    for epoch in range(len(state.history), state.config.epochs):
        record = _train_epoch(state, epoch, callbacks, sync_every)
        if record is None:
            return _result(state, "diverged", f"loss became NaN/Inf in epoch {epoch}")
        state.history.append(record)
        for cb in callbacks:
            _call(cb, "before_checkpoint", record)
        if checkpoint is not None:
            save_checkpoint(state, checkpoint, owner)
        stop = any(_call(cb, "on_epoch_end", record) for cb in callbacks)
        if distributed.any_process(stop, state.device, state.ranks):
            return _result(state, "stopped", f"stopped by a callback after epoch {epoch}")
    return _result(state, "done")


def _result(state: TrainingState, status: TrainStatus, message: str | None = None) -> RunResult:
    schedule = [format_names(formats) for formats in state.schedule]
    return RunResult(status, state.history, state.layers, schedule, str(state.device), message)


def _call(callback: Callback, hook: str, *args: Any) -> Any:
    method = getattr(callback, hook, None)
    return method(*args) if method is not None else None


def model_input(state: TrainingState, images: torch.Tensor) -> torch.Tensor:
    # Batches arrive contiguous; a channels-last model wants its input that way too.
    if state.config.channels_last and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


@dataclass
class _Totals:
    loss: float = 0.0  # summed over the samples
    correct: float = 0.0
    seen: int = 0

    def __iadd__(self, other: _Totals) -> _Totals:
        self.loss += other.loss
        self.correct += other.correct
        self.seen += other.seen
        return self

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)


class _DeviceSums:
    """Losses and correct predictions summed on the device (in float64, as exact as the
    host's sums were) and over a run's processes, read in one transfer: the only wait for
    the device."""

    def __init__(self, device: torch.device, ranks: Ranks | None) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct, bad, n
        self.ranks = ranks

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: torch.Tensor) -> None:
        loss_sum = loss_sum.double()
        correct = (logits.argmax(1) == labels).sum().double()
        bad = (~loss_sum.isfinite()).double()
        count = loss_sum.new_full((), labels.shape[0])  # a fill on the device: no host copy
        self.sums += torch.stack([loss_sum, correct, bad, count])

    def read(self) -> tuple[_Totals, bool]:
        """The sums since the last read, and whether every loss among them was finite."""
        loss, correct, bad, seen = distributed.sum_over_processes(self.sums, self.ranks).tolist()
        self.sums.zero_()
        return _Totals(loss, correct, int(seen)), bad == 0 and math.isfinite(loss)


def _train_epoch(
    state: TrainingState, epoch: int, callbacks: Sequence[Callback], sync_every: int
) -> EpochRecord | None:
    formats = state.schedule[epoch]
    apply_formats(state.model, formats, state.quantization)
    state.model.train()
    state.train_batches.set_epoch(epoch)
    storage = state.config.weight_storage
    started = time.perf_counter()
    window, epoch_totals = _DeviceSums(state.device, state.ranks), _Totals()
    lr = state.optimizer.param_groups[0]["lr"]
    steps = len(state.train_batches)
    probe, every = state.probe, state.config.analysis.every if state.config.analysis else 0
    for step, (global_images, global_labels) in enumerate(state.train_batches):
        if probe is not None:
            probe.enabled = step % every == 0  # so every epoch has its statistics
        images, labels = (distributed.share(t, state.ranks) for t in (global_images, global_labels))
        logits, labels = _per_prediction(state.step_model(model_input(state, images)), labels)
        loss = _step_loss(logits, labels, global_labels.numel(), state.ranks)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        if probe is not None:
            probe.enabled = False
        if storage is not None:
            round_master_weights(state.model, storage)
        window.add(logits.detach(), labels, _loss_sum(loss.detach(), labels, global_labels, state))
        if (step + 1) % sync_every and step + 1 < steps:
            continue
        totals, finite = window.read()
        if not finite:
            return None
        epoch_totals += totals
        for cb in callbacks:
            _call(cb, "on_step", epoch, step, totals.mean_loss, totals.accuracy)
    seconds = time.perf_counter() - started
    batch = max(state.config.batch_size, 256)
    test_loss, test_acc = evaluate(state, state.data.test_batches(batch))
    held = state.data.validation_batches(batch)
    val_loss, val_acc = (None, None) if held is None else evaluate(state, held)
    seen = epoch_totals.seen
    return EpochRecord(
        epoch=epoch,
        train_loss=epoch_totals.mean_loss,
        train_acc=epoch_totals.accuracy,
        test_loss=test_loss,
        test_acc=test_acc,
        val_loss=val_loss,
        val_acc=val_acc,
        lr=lr,
        seconds=seconds,
        images_per_s=seen / seconds if seconds > 0 else 0.0,
        formats=format_names(formats),
        statistics=probe.take() if probe is not None else [],
    )


def _per_prediction(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row of logits per prediction: a language model's N x T x V become N*T x V, each
    token its own sample for the loss and the accuracy."""
    if logits.dim() == 3:
        return logits.flatten(0, 1), labels.flatten()
    return logits, labels


def _step_loss(
    logits: torch.Tensor, labels: torch.Tensor, global_size: int, ranks: Ranks | None
) -> torch.Tensor:
    """The loss a step's gradient comes from: the batch's mean alone; in a run of processes,
    the share's sum scaled so that DDP's mean over the processes is the global batch's mean."""
    if ranks is None:
        return F.cross_entropy(logits, labels)
    return F.cross_entropy(logits, labels, reduction="sum") * (ranks.world / global_size)


def _loss_sum(
    loss: torch.Tensor, labels: torch.Tensor, global_labels: torch.Tensor, state: TrainingState
) -> torch.Tensor:
    """The share's summed loss, from the loss of :func:`_step_loss`."""
    if state.ranks is None:
        return loss.double() * labels.shape[0]
    return loss.double() * (global_labels.numel() / state.ranks.world)


@torch.no_grad()
def evaluate(state: TrainingState, batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """Loss and accuracy on ``batches`` (the test's or the validation's), with the layers in
    the epoch's formats (each process of a run evaluates its share of every batch)."""
    state.model.eval()
    sums = _DeviceSums(state.device, state.ranks)
    for global_images, global_labels in batches:
        images, labels = (distributed.share(t, state.ranks) for t in (global_images, global_labels))
        logits, labels = _per_prediction(state.model(model_input(state, images)), labels)
        sums.add(logits, labels, F.cross_entropy(logits, labels, reduction="sum"))
    totals, _ = sums.read()
    return totals.mean_loss, totals.accuracy
