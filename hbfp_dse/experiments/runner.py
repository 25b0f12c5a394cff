"""Running a sweep's runs: workers claim them from the store, train and record them.

Each worker is a loop of claim → train → record. Every epoch is checkpointed to a directory
all workers share, so a run taken over after a crash resumes from its last finished epoch;
the checkpoint is removed once the run is done. Its name and stamp carry the store's id and
the run's hash: stores sharing a directory never use each other's checkpoints. Workers report
progress as small event dicts through ``emit`` (a queue's ``put`` when they are separate
processes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..training.checkpoint import CheckpointOwner, previous_checkpoint, remove_checkpoint
from ..training.config import TrainConfig
from ..training.device_names import DeviceUnavailableError, device_type
from ..training.devices import resolve_device
from ..training.results import EpochRecord, RunResult
from ..training.trainer import Callback, Data, load_config_data, train
from .provenance import environment
from .store import (
    Lease,
    LostRunError,
    RunRecord,
    RunStatus,
    Store,
    StoreUnavailableError,
    sqlite_path,
    worker_name,
)

Event = dict[str, Any]
Emit = Callable[[Event], None]


class StaleAfterError(UserError):
    """A staleness limit so short that a live worker's run would be taken over."""

    def __init__(self, stale_after: float, heartbeat_every: float) -> None:
        self.minimum = 3 * heartbeat_every
        super().__init__(
            f"a run is stale after {stale_after:g} s without a heartbeat; with a heartbeat every "
            f"{heartbeat_every:g} s that must be at least {self.minimum:g} s (three heartbeats)"
        )
        self.stale_after = stale_after


@dataclass(frozen=True)
class WorkerOptions:
    device: str | None = None  # overrides the configuration's device
    stale_after: float = 120.0  # seconds without a heartbeat before a run is reclaimed
    heartbeat_every: float = 20.0
    checkpoint_dir: Path | None = None
    threads: int | None = None  # torch threads per worker
    max_faults: int = 3  # consecutive faults of its machine before a worker stops
    max_run_faults: int = 3  # attempts of one run stopped by faults before it fails

    def __post_init__(self) -> None:
        # Three missed heartbeats, not one late one (a busy database, a long GC pause).
        if self.stale_after < 3 * self.heartbeat_every:
            raise StaleAfterError(self.stale_after, self.heartbeat_every)


class CheckpointDirError(UserError):
    """A checkpoint directory that cannot be created or written."""

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(f"checkpoint directory {directory}: {reason}")
        self.directory, self.reason = directory, reason


def checkpoint_dir_for(url: str, given: Path | None) -> Path:
    """By default beside a SQLite database (``results.db`` → ``results.checkpoints/``);
    other databases need a directory every worker can reach, default ``./hbfp-checkpoints``."""
    if given is not None:
        return given
    path = sqlite_path(url)
    if path is not None:
        return path.with_suffix(".checkpoints")
    return Path("hbfp-checkpoints")


def check_checkpoint_dir(directory: Path) -> None:
    """A checkpoint directory that cannot be made or written stops the sweep before its first
    run, instead of failing every run. Nothing is created here."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointDirError(directory, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckpointDirError(directory, f"{existing} is not writable")


def _checkpoint_path(directory: Path, store: Store, run: RunRecord) -> Path:
    return directory / f"run-{store.store_id[:12]}-{run.run_hash}.pt"


def _adopt_legacy_checkpoint(directory: Path, run: RunRecord, checkpoint: Path) -> None:
    """Checkpoints were once named ``run-{id}.pt``, unstamped: a run takes its file over when
    it has trained before (a first attempt has none) and has no checkpoint of the new name."""
    legacy = directory / f"run-{run.id}.pt"
    newer = checkpoint.exists() or previous_checkpoint(checkpoint).exists()
    if run.attempts > 1 and legacy.exists() and not newer:
        os.replace(legacy, checkpoint)


class _DataCache:
    """Runs of one sweep mostly share a dataset; load it once per worker."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], Data] = {}

    def get(self, config: TrainConfig) -> Data:
        key = config.data_key()
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = load_config_data(config)
        return self._cache[key]


DATA_CACHE = _DataCache()


class _Heartbeat(threading.Thread):
    """Keeps a claim fresh while the run trains; notes when another worker took it over."""

    def __init__(self, store: Store, lease: Lease, every: float) -> None:
        super().__init__(daemon=True)
        self.store, self.lease, self.every = store, lease, every
        self.stop_event = threading.Event()
        self.lost: LostRunError | None = None

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            try:
                self.store.hold(self.lease)
            except LostRunError as lost:
                self.lost = lost
                return
            except Exception:  # an outage or a database error: the run's own writes say it
                continue


class EnvironmentFaultError(Exception):
    """A run stopped by a fault of where it ran (a full disk, CUDA out of memory, a device
    this machine lacks), not of the run: it is left interrupted, for another attempt."""

    def __init__(self, run_id: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.run_id, self.cause = run_id, cause


# RuntimeErrors of a device or its driver; not a device-side assert (the run's own bug).
_DEVICE_FAULTS = (
    "CUDA out of memory",
    "CUDA error: out of memory",
    "illegal memory access",
    "unspecified launch failure",
    "CUDA driver",
    "no CUDA GPUs are available",
    "busy or unavailable",
    "ECC error",
    "NCCL error",
)


def is_environment_fault(err: BaseException) -> bool:
    """Faults of the machine: another attempt elsewhere, or later, may succeed. A fault that
    is the run's after all (too large a batch for any GPU) fails it after a few attempts."""
    if isinstance(err, (OSError, torch.cuda.OutOfMemoryError, DeviceUnavailableError)):
        return True
    if isinstance(err, NotImplementedError) or not isinstance(err, RuntimeError):
        return False
    return any(m in str(err) for m in _DEVICE_FAULTS)


class _RecordEpochs:
    """The trainer callback that writes every epoch to the store and emits progress; it
    stops the run as soon as the worker has lost it."""

    def __init__(
        self,
        store: Store,
        run: RunRecord,
        config: TrainConfig,
        device: str,
        emit: Emit,
        beat: _Heartbeat,
    ) -> None:
        self.store, self.run, self.config, self.device = store, run, config, device
        self.emit, self.beat = emit, beat
        self.lease = beat.lease
        self.steps = 0
        self.emitted_step = 0  # the last step reported, in the epoch of the last report

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        deterministic = self.config.deterministic or torch.are_deterministic_algorithms_enabled()
        self.store.start_attempt(self.lease, history, environment(self.device, deterministic))
        self.steps = steps_per_epoch
        self.emit(
            {
                "event": "start",
                "worker": self.lease.worker,
                "run_id": self.run.id,
                "label": self.run.label,
                "seed": self.run.seed,
                "density": self.run.density,
                "epochs": total_epochs,
                "start_epoch": len(history),
            }
        )

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        if self.beat.lost is not None:
            raise self.beat.lost
        # Every 10th step; on a GPU the trainer calls every 25 steps, and then every call.
        if (step + 1) // 10 > self.emitted_step // 10 or step + 1 == self.steps:
            self.emitted_step = step + 1
            self.emit(
                {
                    "event": "step",
                    "worker": self.lease.worker,
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": self.steps,
                    "loss": loss,
                }
            )

    def before_checkpoint(self, record: EpochRecord) -> None:
        self.store.hold(self.lease)  # a lost run's checkpoint is the new owner's

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.emitted_step = 0
        self.store.record_epoch(self.lease, record)
        self.emit(
            {
                "event": "epoch",
                "worker": self.lease.worker,
                "run_id": self.run.id,
                "epoch": record.epoch,
                "test_acc": record.test_acc,
                "test_loss": record.test_loss,
                "val_acc": record.val_acc,
                "seconds": record.seconds,
            }
        )


def _on_worker_device(config: TrainConfig, device: str | None) -> TrainConfig:
    """The run on the worker's device, which may pick a device of the run's kind only (the
    kind is part of the run's identity): another kind is a fault of where the worker is."""
    if device is None:
        return config
    kind = device_type(config.device)
    if device_type(device) != kind:
        raise DeviceUnavailableError(device, f"this run was registered to train on {kind}")
    return config.model_copy(update={"device": device})


def execute_run(
    store: Store,
    run: RunRecord,
    options: WorkerOptions,
    *,
    emit: Emit = lambda event: None,
    callbacks: Sequence[Callback] = (),
    data_cache: _DataCache | None = None,
) -> RunResult | None:
    """Train one claimed run and record its outcome; None when it did not finish. Ctrl-C
    marks it interrupted and propagates; a fault of the environment marks it interrupted and
    raises :class:`EnvironmentFaultError`; a run taken over by another worker stops at once and
    writes nothing more; any other error marks it failed."""
    lease = run.lease
    config = TrainConfig.model_validate(run.config)
    directory = checkpoint_dir_for(store.url, options.checkpoint_dir)
    checkpoint = _checkpoint_path(directory, store, run)
    owner = CheckpointOwner(store.store_id, run.run_hash, run.attempts)
    beat = _Heartbeat(store, lease, options.heartbeat_every)
    beat.start()
    finished = {"event": "finish", "worker": lease.worker, "run_id": run.id}
    try:
        _adopt_legacy_checkpoint(directory, run, checkpoint)
        config = _on_worker_device(config, options.device)
        device = str(resolve_device(config.device))
        data = (data_cache or _DataCache()).get(config)
        recorder = _RecordEpochs(store, run, config, device, emit, beat)
        result = train(
            config,
            callbacks=[recorder, *callbacks],
            checkpoint=checkpoint,
            data=data,
            owner=owner,
        )
        # A run stopped by a callback is a search trial pruned for missing its target.
        status: RunStatus = "pruned" if result.status == "stopped" else result.status
        store.finish(
            lease,
            status,
            device=result.device,
            final_acc=result.final_test_acc,
            best_acc=result.best_test_acc,
            final_val_acc=result.final_val_acc,
            error=result.message if status != "done" else None,
        )
    except LostRunError as lost:
        emit({"event": "lost", "worker": lease.worker, "run_id": run.id, "message": str(lost)})
        return None
    except KeyboardInterrupt:
        store.interrupt_now(lease)
        emit({**finished, "status": "interrupted"})
        raise
    except StoreUnavailableError:
        raise  # nothing can be recorded: the worker stops, the run is reclaimed when stale
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else traceback.format_exc(limit=8)
        if is_environment_fault(err):
            # Interrupted for another attempt; at its max_run_faults-th fault a run that
            # faults on every machine is at fault itself, and fails rather than stall the sweep.
            if run.faults + 1 < options.max_run_faults:
                fault = EnvironmentFaultError(run.id, err)
                store.interrupt(lease, fault=f"environment fault: {fault}")
                emit({**finished, "status": "interrupted", "fault": str(fault)})
                raise fault from err
            message = (
                f"{options.max_run_faults} attempts stopped by faults of their machine, so the "
                f"run itself is taken to be at fault; the last: {message}"
            )
        _finish_failed(store, lease, message)
        emit({**finished, "status": "failed"})
        return None
    finally:
        beat.stop_event.set()
    remove_checkpoint(checkpoint)
    emit({**finished, "status": status, "accuracy": result.final_test_acc})
    return result


def _finish_failed(store: Store, lease: Lease, message: str) -> None:
    with contextlib.suppress(LostRunError):  # another worker's now: its outcome is its own
        store.finish(lease, "failed", error=message)


class FaultLimit:
    """A worker's faults of its machine: the runs they stopped (which it leaves to other
    workers) and how many came in a row; at ``limit`` the worker stops instead of draining
    the sweep on a broken machine."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count = limit, 0
        self.faulted: set[int] = set()
        self.last: EnvironmentFaultError | None = None

    def attempt(self, execute: Callable[[], object]) -> bool:
        """Run ``execute``; False when a fault of the machine stopped it."""
        try:
            execute()
        except EnvironmentFaultError as fault:
            self.faulted.add(fault.run_id)
            self.count += 1
            self.last = fault
            return False
        self.count = 0
        return True

    @property
    def stop_reason(self) -> str | None:
        if self.count < self.limit:
            return None
        return f"stopped after {self.count} faults of its machine in a row; the last: {self.last}"


def work(
    store: Store,
    sweep_id: int,
    options: WorkerOptions,
    *,
    emit: Emit = lambda event: None,
    run_ids: Sequence[int] | None = None,
    worker: str | None = None,
) -> None:
    """Claim and train runs of the sweep until none is left, or until this machine's faults
    stop the worker (an event ``stopped`` says why)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    worker = worker or worker_name()
    faults = FaultLimit(options.max_faults)
    while (
        run := store.claim(
            sweep_id,
            worker,
            stale_after=options.stale_after,
            run_ids=run_ids,
            exclude=faults.faulted,
        )
    ) is not None:
        emit({"event": "claim", "worker": worker, "run_id": run.id, "label": run.label})
        faults.attempt(
            functools.partial(execute_run, store, run, options, emit=emit, data_cache=DATA_CACHE)
        )
        if (reason := faults.stop_reason) is not None:
            emit({"event": "stopped", "worker": worker, "reason": reason, "cause": "faults"})
            return
    emit({"event": "idle", "worker": worker})
