"""How long a stored run trained and how fast, from its epochs: each epoch records its
training seconds (evaluation excluded) and its training samples per second (images, or
tokens for the language models), so their product is the samples it trained on."""

from __future__ import annotations

from typing import Any

from .store import RunRecord


def train_seconds(run: RunRecord) -> float | None:
    """Seconds spent training (not evaluating) over the run's recorded epochs."""
    return sum(e.seconds for e in run.epochs) if run.epochs else None


def trained_samples(run: RunRecord) -> int:
    """The training samples of the run's recorded epochs, all of them counted."""
    return round(sum(e.images_per_s * e.seconds for e in run.epochs))


def samples_per_s(run: RunRecord) -> float | None:
    """Training samples per second over all recorded epochs (not the mean of the epochs'
    rates: a slow epoch counts for as long as it took)."""
    seconds = train_seconds(run)
    return trained_samples(run) / seconds if seconds else None


def timing_json(run: RunRecord) -> dict[str, Any]:
    """The timings and throughput of ``report --format json``'s run entries."""
    seconds = train_seconds(run)
    return {
        "timings": {
            "train_seconds": seconds,
            "epoch_seconds": [e.seconds for e in run.epochs],
            "started_at": None if run.started_at is None else run.started_at.isoformat(),
            "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
        },
        "throughput": {
            "samples": trained_samples(run),
            "samples_per_s": samples_per_s(run),
            "seconds_per_epoch": None if seconds is None else seconds / len(run.epochs),
        },
    }
