"""How long planned runs will take, from the epochs the store has timed: a run already trained
takes what it took; another, the mean epoch time of stored runs of the same model, data,
batch size and kind of arithmetic (FP32, a hardware half, or emulated), times its epochs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .store import NewRun, RunRecord

_HARDWARE = {"fp32": "fp32", "bf16": "half", "fp16": "half"}


@dataclass(frozen=True)
class Estimate:
    runs: int
    epochs: int
    seconds: float | None  # None: nothing stored to estimate from
    estimated_runs: int  # the runs the estimate covers


def estimate(planned: Sequence[NewRun], stored: Sequence[RunRecord]) -> Estimate:
    """``stored``: runs read with their epochs."""
    by_hash: dict[str, float] = {}
    per_epoch: dict[tuple[Any, ...], list[float]] = {}
    for run in stored:
        if run.status != "done" or not run.epochs:
            continue
        by_hash[run.run_hash] = sum(e.seconds for e in run.epochs)
        per_epoch.setdefault(_kind(run.config, run.schedule), []).extend(
            e.seconds for e in run.epochs
        )
    total, covered = 0.0, 0
    for run in planned:
        if run.run_hash in by_hash:
            total += by_hash[run.run_hash]
        elif (seconds := per_epoch.get(_kind(run.config, run.schedule))) is not None:
            total += statistics.fmean(seconds) * run.config["epochs"]
        else:
            continue
        covered += 1
    epochs = sum(run.config["epochs"] for run in planned)
    return Estimate(len(planned), epochs, total if covered else None, covered)


def _kind(config: dict[str, Any], schedule: list[Any] | None) -> tuple[Any, ...]:
    formats = {f for segment in schedule or [] for f in segment["formats"].values()}
    arithmetic = {_HARDWARE.get(f, "emulated") for f in formats}
    kind = arithmetic.pop() if len(arithmetic) == 1 else "emulated"
    keys = ("model", "dataset", "train_size", "batch_size", "context_length", "image_size")
    return (*(config.get(k) for k in keys), kind)
