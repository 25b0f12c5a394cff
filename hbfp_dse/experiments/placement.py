"""Which device each local worker trains on: a GPU each, in turn, where the runs train on CUDA;
the CPU's threads shared where they train on the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from ..errors import UserError
from ..training.device_names import device_type
from .runner import WorkerOptions


def parse_gpus(text: str) -> list[int]:
    """``--gpus 0,1,3``: distinct GPU indices."""
    try:
        gpus = [int(part) for part in text.split(",")]
    except ValueError:
        gpus = []
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus {text!r}: give distinct GPU indices separated by commas, e.g. 0,1")
    return gpus


def place_workers(
    options: WorkerOptions,
    workers: int,
    run_device: str,
    gpus: Sequence[int] | None = None,
    gpu_count: int | None = None,
) -> list[WorkerOptions]:
    """The options of each of ``workers`` local workers training runs registered for
    ``run_device`` (``options.device`` overrides it). On CUDA, worker i trains on the i-th of
    ``gpus`` (default: every GPU here, ``gpu_count`` of them), in turn, unless one GPU was
    named (``cuda:N``), which they all share. Several workers share the CPU's threads."""
    if workers > 1 and options.threads is None:
        options = replace(options, threads=max(1, torch.get_num_threads() // workers))
    device = options.device or run_device
    if device_type(device) != "cuda":
        if gpus is not None:
            raise UserError(f"--gpus: these runs train on {device}, not on CUDA")
        return [options] * workers
    if gpus is not None and ":" in device:
        raise UserError(f"--gpus: the device is {device}, one GPU; give --device cuda")
    if gpus is not None and len(gpus) > workers:
        raise UserError(f"--gpus names {len(gpus)} GPUs for {workers} worker(s); give --workers")
    count = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpus is None:
        if ":" in device:  # one GPU asked for
            return [replace(options, device=device)] * workers
        if count == 0:  # the runs fault where they are, and their workers stop
            return [options] * workers
        gpus = range(count)
    missing = [gpu for gpu in gpus if gpu >= count]
    if missing:
        raise UserError(f"--gpus: GPU {missing[0]} is not here; this machine has {count} GPU(s)")
    return [replace(options, device=f"cuda:{gpus[i % len(gpus)]}") for i in range(workers)]
