"""Checks of the worker options ``sweep`` and ``search`` share, made before anything is
written. They need the trainer's modules (torch), so the commands import them when they run."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..experiments.placement import parse_gpus, place_workers
from ..experiments.runner import WorkerOptions, check_checkpoint_dir, checkpoint_dir_for
from ..experiments.store import resolve_url
from ..training.device_names import DeviceError
from ..training.devices import resolve_device


def checked_checkpoint_dir(db: str | None, given: Path | None) -> None:
    """The directory the workers will checkpoint to, checked before anything is written."""
    check_checkpoint_dir(checkpoint_dir_for(resolve_url(db), given))


def placed_workers(
    options: WorkerOptions, workers: int, run_device: str, gpus: str | None
) -> list[WorkerOptions]:
    """Each local worker's options, its device among them (``placement.place_workers``)."""
    return place_workers(options, workers, run_device, None if gpus is None else parse_gpus(gpus))


def checked_device(device: str | None) -> str | None:
    """``--device`` where given, checked before anything is written."""
    if device is not None:
        try:
            resolve_device(device)
        except DeviceError as err:
            raise UserError(f"--device {device}: {err.reason}") from None
    return device
