"""Rich progress bars: a run's epochs and steps with live loss and accuracy, and a sweep's or
search's runs with each worker's current run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..training.results import EpochRecord
from .common import err_console

# The remaining time follows the mean speed since a task began: with rich's default window of
# 30 s, a sweep whose runs each take longer had no estimate at all.
_SPEED_WINDOW_S = 7 * 24 * 3600.0


def training_progress() -> Progress:
    """Bars on stderr for training, sweeps and searches: label, bar, n/total, status, times.
    Off a terminal (a log file, a pipe) no bar is drawn: the sweep's and search's events are
    written as lines instead (:class:`SweepProgress`)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        speed_estimate_period=_SPEED_WINDOW_S,
        disable=not err_console.is_terminal,
    )


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 07 s`` or ``2 h 05 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class TrainingBars:
    """A trainer callback drawing an epoch bar and a step bar."""

    def __init__(self, progress: Progress, label: str = "epochs") -> None:
        self.progress = progress
        self.label = label
        self.epochs: TaskID | None = None
        self.steps: TaskID | None = None
        self.epoch = -1
        self.loss = 0.0  # summed over the epoch's steps so far
        self.correct = 0.0
        self.count = 0  # the epoch's steps so far

    def on_start(
        self, total_epochs: int, steps_per_epoch: int, history: Sequence[EpochRecord]
    ) -> None:
        self.epochs = self.progress.add_task(
            self.label, total=total_epochs, completed=len(history), status=""
        )
        self.steps = self.progress.add_task("  steps", total=steps_per_epoch, status="")

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        # The trainer reports the mean of the steps since its last report (each step on the
        # CPU, every 25 on a GPU): weighted by their number, over this epoch's steps.
        if epoch != self.epoch:
            self.epoch, self.loss, self.correct, self.count = epoch, 0.0, 0.0, 0
        window = step + 1 - self.count
        self.loss += loss * window
        self.correct += accuracy * window
        self.count = step + 1
        assert self.steps is not None
        self.progress.update(
            self.steps,
            completed=step + 1,
            status=f"epoch {epoch + 1} loss {self.loss / self.count:.3f} "
            f"acc {self.correct / self.count:.1%}",
        )

    def on_epoch_end(self, record: EpochRecord) -> bool:
        assert self.epochs is not None
        self.progress.update(
            self.epochs,
            advance=1,
            status=f"{_validation(record.val_acc)}test acc {record.test_acc:.2%} "
            f"loss {record.test_loss:.3f}",
        )
        return False

    def close(self) -> None:
        for task in (self.steps, self.epochs):
            if task is not None:
                self.progress.remove_task(task)


class SweepProgress:
    """Overall runs, and per worker the current run's epochs with live accuracy."""

    def __init__(self, progress: Progress, total: int, already: int, label: str = "runs") -> None:
        self.progress = progress
        self.overall = progress.add_task(label, total=total, completed=already, status="")
        self.total, self.already, self.done = total, already, already
        self.lines = progress.disable  # a log: one line per run started, epoch and run done
        self.started = time.monotonic()
        self.current: dict[str, dict[str, Any]] = {}  # each worker's run: its start event
        self.workers: dict[str, TaskID] = {}
        self.counts: dict[str, int] = {}
        self.stopped: list[str] = []  # why workers stopped before the sweep was done
        self.outage: str | None = None  # why the database is given up on, if it was

    def __call__(self, event: dict[str, Any]) -> None:
        self._show(event)
        if self.lines:
            self._line(event)

    def _show(self, event: dict[str, Any]) -> None:
        kind, worker = event["event"], event["worker"]
        if worker not in self.workers:
            self.workers[worker] = self.progress.add_task(
                f"  {worker}", total=None, status="waiting"
            )
        task = self.workers[worker]
        if kind == "start":
            density = event.get("density")
            self.current[worker] = {**event, "at": time.monotonic()}
            self.progress.reset(  # a fresh clock for each run
                task,
                description=f"  {event['label']} (seed {event['seed']})",
                total=event["epochs"],
                completed=event["start_epoch"],
                status=f"density {density:.2f}x" if density else "",
            )
        elif kind == "step":
            self.progress.update(
                task,
                status=f"epoch {event['epoch'] + 1} step {event['step']}/{event['steps']} "
                f"loss {event['loss']:.3f}",
            )
        elif kind == "epoch":
            self.progress.update(
                task,
                completed=event["epoch"] + 1,
                status=f"{_validation(event.get('val_acc'))}test acc {event['test_acc']:.2%}",
            )
        elif kind == "finish":
            status = event["status"]
            self.counts[status] = self.counts.get(status, 0) + 1
            if status != "interrupted":
                self.done += 1
                self.progress.advance(self.overall)
            self.progress.update(
                self.overall, status=" ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            )
        elif kind == "lost":
            message = f"[yellow]warning:[/] {escape(event['message'])}"
            self.progress.console.print(message, soft_wrap=True)
        elif kind == "stopped" and event.get("cause") == "database":
            self.outage = event["reason"]
            self.progress.update(task, visible=False)
        elif kind == "stopped":
            self.stopped.append(f"worker {worker} {event['reason']}")
            self.progress.console.print(f"[bold red]{escape(self.stopped[-1])}[/]", soft_wrap=True)
            self.progress.update(task, visible=False)
        elif kind == "idle":
            self.progress.update(task, visible=False)

    def _line(self, event: dict[str, Any]) -> None:
        """The event as one line of a log, or nothing for events a log need not hold."""
        kind, worker = event["event"], event["worker"]
        run = self.current.get(worker, {})
        name = f"run {run.get('run_id', event.get('run_id', '?'))} {run.get('label', '')}".rstrip()
        if kind == "start":
            density = event.get("density")
            resumed = (
                f", resumed after epoch {event['start_epoch']}" if event["start_epoch"] else ""
            )
            cost = f", density {density:.2f}x" if density else ""
            line = (
                f"run {event['run_id']} {event['label']} (seed {event['seed']}) started: "
                f"{event['epochs']} epochs{cost}{resumed}"
            )
        elif kind == "epoch":
            line = (
                f"{name} epoch {event['epoch'] + 1}/{run.get('epochs', '?')}: "
                f"{_validation(event.get('val_acc'))}test acc {event['test_acc']:.2%}, "
                f"loss {event['test_loss']:.4f}, "
                f"{duration(event['seconds'])}"
            )
        elif kind == "finish":
            now = time.monotonic()
            took = duration(now - run["at"]) if "at" in run else "?"
            accuracy = event.get("accuracy")
            result = f", test acc {accuracy:.2%}" if accuracy is not None else ""
            line = f"{name} {event['status']}{result} in {took}; {self.done}/{self.total} finished"
            line += self._eta(now)
        else:
            return
        self.progress.console.print(escape(line), highlight=False, soft_wrap=True)

    def _eta(self, now: float) -> str:
        """The time left at the pace of the runs this process finished so far."""
        finished, left = self.done - self.already, self.total - self.done
        if left <= 0 or finished <= 0:
            return ""
        pace = (now - self.started) / finished
        return f", about {duration(pace * left)} left"


def _validation(accuracy: float | None) -> str:
    return "" if accuracy is None else f"val acc {accuracy:.2%}, "
