"""What training produces: plain values that travel to callbacks, the store and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..emulation.schedule import LayerInfo
from ..emulation.statistics import OperandStatistics
from ..formats import Format

TrainStatus = Literal["done", "diverged", "stopped"]


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
    # On the validation split held out of the training set; None without one.
    val_loss: float | None = None
    val_acc: float | None = None
    # With ``analysis`` set: every quantized operand's error over the epoch's sampled steps.
    statistics: list[OperandStatistics] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A checkpoint keeps them as dicts.
        self.statistics = [
            s if isinstance(s, OperandStatistics) else OperandStatistics(**s)
            for s in self.statistics
        ]

    @property
    def selection_acc(self) -> float:
        """The accuracy choices are made on: validation's, test's only without one."""
        return self.test_acc if self.val_acc is None else self.val_acc

    def columns(self) -> dict[str, Any]:
        """The epoch's own values, without its statistics (the store's epoch row)."""
        return {f: getattr(self, f) for f in EPOCH_COLUMNS}


# The epoch's own values: the store's epoch row.
EPOCH_COLUMNS = tuple(f.name for f in fields(EpochRecord) if f.name != "statistics")


@dataclass
class RunResult:
    status: TrainStatus
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

    @property
    def final_val_acc(self) -> float | None:
        return self.epochs[-1].val_acc if self.epochs else None


def format_names(formats: Mapping[str, Format]) -> dict[str, str]:
    """One epoch's ``{layer: format}`` as the names records and the store keep."""
    return {layer: fmt.name for layer, fmt in formats.items()}
