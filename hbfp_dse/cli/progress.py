"""Rich progress for training: epochs, steps, live loss and accuracy."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..training.trainer import EpochRecord
from .common import err_console


def training_progress() -> Progress:
    """Bars on stderr for training, sweeps and searches: label, bar, n/total, status, times."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


class TrainingBars:
    """A trainer callback drawing an epoch bar and a step bar."""

    def __init__(self, progress: Progress, label: str = "epochs") -> None:
        self.progress = progress
        self.label = label
        self.epochs: TaskID | None = None
        self.steps: TaskID | None = None
        self.loss = 0.0
        self.correct = 0.0
        self.count = 0

    def on_start(self, total_epochs: int, steps_per_epoch: int, start_epoch: int) -> None:
        self.epochs = self.progress.add_task(
            self.label, total=total_epochs, completed=start_epoch, status=""
        )
        self.steps = self.progress.add_task("  steps", total=steps_per_epoch, status="")

    def on_step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        if step == 0:
            self.loss, self.correct, self.count = 0.0, 0.0, 0
        self.loss += loss
        self.correct += accuracy
        self.count += 1
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
            status=f"test acc {record.test_acc:.2%} loss {record.test_loss:.3f}",
        )
        return False

    def close(self) -> None:
        for task in (self.steps, self.epochs):
            if task is not None:
                self.progress.remove_task(task)
