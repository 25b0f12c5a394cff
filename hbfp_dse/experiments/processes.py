"""Worker processes on this machine: spawned, given their share of the CPU threads, and
relaying their progress events to the parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..errors import UserError
from .runner import Emit, WorkerOptions, work
from .store import Store


def _worker_process(
    url: str,
    sweep_id: int,
    options: WorkerOptions,
    run_ids: Sequence[int] | None,
    events: Any,
) -> None:
    store = Store(url, create=False)
    try:
        work(store, sweep_id, options, emit=events.put, run_ids=run_ids)
    finally:
        store.close()


def run_workers(
    store: Store,
    sweep_id: int,
    options: WorkerOptions,
    workers: int,
    *,
    on_event: Emit = lambda event: None,
    run_ids: Sequence[int] | None = None,
) -> None:
    """Run ``workers`` worker loops: in this process for one, else as spawned processes."""
    if workers <= 1:
        work(store, sweep_id, options, emit=on_event, run_ids=run_ids)
    else:
        options = split_threads(options, workers)
        spawn_workers(_worker_process, (store.url, sweep_id, options, run_ids), workers, on_event)


def split_threads(options: WorkerOptions, workers: int) -> WorkerOptions:
    """Share this machine's torch threads among local worker processes."""
    if options.threads is not None:
        return options
    return replace(options, threads=max(1, torch.get_num_threads() // workers))


def spawn_workers(
    target: Callable[..., None], args: tuple[Any, ...], workers: int, on_event: Emit
) -> None:
    """Run ``target(*args, events)`` in ``workers`` spawned processes, relaying the events
    they put on the queue to ``on_event``. Ctrl-C reaches the children too (one process
    group); each marks its run interrupted before it exits."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    processes = [
        context.Process(target=_quiet_interrupt, args=(target, *args, events))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes) or not events.empty():
            try:
                on_event(events.get(timeout=0.2))
            except queue.Empty:
                continue
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if failed:
        raise UserError(f"{len(failed)} worker process(es) exited with codes {failed}")


def _quiet_interrupt(target: Callable[..., None], *args: Any) -> None:
    # The run is marked interrupted by the worker; the parent reports it.
    with contextlib.suppress(KeyboardInterrupt):
        target(*args)
