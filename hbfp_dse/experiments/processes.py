"""Worker processes on this machine: spawned, given their share of the CPU threads, and
relaying their progress events to the parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from ..errors import UserError
from .runner import Emit, WorkerOptions, work
from .store import Store, StoreUnavailableError, worker_name

STOP_TIMEOUT_S = 30.0
"""How long interrupted workers may take to mark their runs before they are killed."""


def _worker_process(
    url: str,
    sweep_id: int,
    options: WorkerOptions,
    run_ids: Sequence[int] | None,
    events: Any,
) -> None:
    store = Store(url, create=False)
    worker = worker_name()
    try:
        with reporting_outage(events.put, worker):
            work(store, sweep_id, options, emit=events.put, run_ids=run_ids, worker=worker)
    finally:
        store.close()


@contextlib.contextmanager
def reporting_outage(emit: Emit, worker: str) -> Iterator[None]:
    """In a worker process: a database that stayed away ends the worker with an event that
    the parent reports, instead of a traceback."""
    try:
        yield
    except StoreUnavailableError as err:
        emit({"event": "stopped", "worker": worker, "reason": str(err), "cause": "database"})


def run_workers(
    store: Store,
    sweep_id: int,
    workers: Sequence[WorkerOptions],
    *,
    on_event: Emit = lambda event: None,
    run_ids: Sequence[int] | None = None,
) -> None:
    """Run one worker loop per options (``placement.place_workers``): in this process for
    one, else as spawned processes."""
    if len(workers) == 1:
        work(store, sweep_id, workers[0], emit=on_event, run_ids=run_ids)
    else:
        arguments = [(store.url, sweep_id, options, run_ids) for options in workers]
        spawn_workers(_worker_process, arguments, on_event)


def spawn_workers(
    target: Callable[..., None], arguments: Sequence[tuple[Any, ...]], on_event: Emit
) -> None:
    """Run ``target(*args, events)`` in a spawned process for each ``args`` of ``arguments``,
    relaying the events they put on the queue to ``on_event``. However this ends early
    (Ctrl-C, SIGTERM, an error), the workers still running are interrupted, so that each
    marks its run interrupted, and waited for."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    processes = [
        context.Process(target=_interruptible, args=(target, *args, events)) for args in arguments
    ]
    try:
        for process in processes:
            process.start()
        _relay(events, processes, on_event)
    finally:
        _stop(processes, events)
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if failed:
        raise UserError(f"{len(failed)} worker process(es) exited with codes {failed}")


def _relay(events: Any, processes: Sequence[BaseProcess], on_event: Emit) -> None:
    while any(p.is_alive() for p in processes) or not events.empty():
        with contextlib.suppress(queue.Empty):
            on_event(events.get(timeout=0.2))


def _stop(processes: Sequence[BaseProcess], events: Any) -> None:
    """SIGTERM the workers still running and wait, at most ``STOP_TIMEOUT_S``, while they mark
    their runs interrupted; then, or at a second interrupt, kill those left."""
    running = [p for p in processes if p.is_alive()]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(KeyboardInterrupt):
        while any(p.is_alive() for p in running) and time.monotonic() < deadline:
            # Events are dropped but read: a worker exits only once its queue is flushed.
            with contextlib.suppress(queue.Empty):
                events.get(timeout=0.2)
    for process in running:
        if process.is_alive():
            process.kill()
        process.join()


def _interruptible(target: Callable[..., None], *args: Any) -> None:
    """A worker process: SIGTERM (from the parent, or a scheduler's to the process group)
    counts as Ctrl-C, which the worker answers by marking its run interrupted."""
    handler = _InterruptOnce()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # The parent reports the interruption.
    with contextlib.suppress(KeyboardInterrupt):
        target(*args)


class _InterruptOnce:
    """Raises KeyboardInterrupt at the first signal only: Ctrl-C reaches a worker both from the
    terminal and from the parent, and a second one would cut short marking its run."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.raised:
            self.raised = True
            raise KeyboardInterrupt
