"""Stored runs made up for the tests of reports and plots: no training, known numbers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from hbfp_dse.experiments.store import Environment, NewRun, Provenance, RunRecord, RunStatus, Store
from hbfp_dse.training.results import EpochRecord

WHEN = datetime(2025, 1, 1)
PROVENANCE = Provenance(
    git_commit=None,
    git_dirty=None,
    python_version="3",
    torch_version="2",
    hbfp_version="0",
    host="test",
)
ENVIRONMENT = Environment(
    **dataclasses.asdict(PROVENANCE), device="cpu", cpu_threads=2, tf32=False, deterministic=False
)
LAYERS = ("conv1", "conv2", "fc")


VALIDATION_GAP = 0.003  # validation accuracy below test accuracy, where a run holds a split


def epochs(
    final_acc: float, count: int, seconds: float = 2.0, rate: float = 500.0, held: bool = True
):
    """``count`` epochs whose test accuracy climbs to ``final_acc`` and loss falls by decades;
    ``held``: with a validation accuracy ``VALIDATION_GAP`` below."""
    return tuple(
        EpochRecord(
            epoch=e,
            train_loss=10.0 ** -(e + 1) * 5,
            train_acc=final_acc * (e + 1) / count,
            test_loss=1.0 / (e + 2),
            test_acc=final_acc * (e + 1) / count,
            lr=0.1,
            seconds=seconds,
            images_per_s=rate,
            formats=dict.fromkeys(LAYERS, "fp32"),
            val_loss=1.0 / (e + 2) if held else None,
            val_acc=final_acc * (e + 1) / count - VALIDATION_GAP if held else None,
        )
        for e in range(count)
    )


def run(
    run_id: int,
    label: str,
    accuracy: float | None,
    density: float,
    *,
    kind: str = "baseline",
    seed: int = 0,
    sweep: str = "paper",
    config: dict[str, Any] | None = None,
    status: RunStatus = "done",
    epoch_count: int = 3,
    held: bool = True,
) -> RunRecord:
    """A run of ``label`` whose every layer trains in the format of that name (grid runs:
    hbfp4), so that a label ``fp32`` is the FP32 configuration."""
    fmt = label if kind == "baseline" else "hbfp4"
    settings = {"model": "cnn", "dataset": "mnist-5k", "epochs": epoch_count, **(config or {})}
    return RunRecord(
        id=run_id,
        sweep_id=1,
        sweep=sweep,
        run_hash=f"hash{run_id}",
        config_id=f"{sweep}-{label}",
        label=label,
        kind=kind,
        config=settings,
        seed=seed,
        status=status,
        trial_number=None,
        search_target=None,
        device="cpu",
        worker=None,
        attempts=1,
        faults=0,
        resumed_from_epoch=None,
        heartbeat_at=None,
        created_at=WHEN,
        started_at=WHEN,
        finished_at=WHEN,
        final_acc=accuracy,
        best_acc=accuracy,
        final_val_acc=None if accuracy is None or not held else accuracy - VALIDATION_GAP,
        density=density,
        density_vs_bf16=density / 4.84,
        mac_share={},
        schedule=[{"epochs": [0, epoch_count - 1], "formats": dict.fromkeys(LAYERS, fmt)}],
        error=None,
        epochs=() if accuracy is None else epochs(accuracy, epoch_count, held=held),
    )


def quick_sweep() -> list[RunRecord]:
    """Baselines and a few grid points, two seeds each, like sweeps/quick.yaml's."""
    points = [
        ("fp32", 0.975, 1.0, "baseline"),
        ("bf16", 0.974, 4.84, "baseline"),
        ("hbfp8", 0.975, 7.9, "baseline"),
        ("hbfp6", 0.972, 11.79, "baseline"),
        ("booster", 0.969, 15.29, "baseline"),
        ("hbfp4", 0.958, 18.95, "baseline"),
        ("hbfp4_b16 boost-ends:hbfp6", 0.970, 14.69, "grid"),
        ("hbfp3_b16", 0.963, 19.42, "grid"),
        ("hbfp3 boost-ends:hbfp6", 0.967, 23.71, "grid"),
        ("hbfp3", 0.956, 26.4, "grid"),
    ]
    return [
        run(2 * i + seed + 1, label, acc + 0.002 * seed, density, kind=kind, seed=seed)
        for i, (label, acc, density, kind) in enumerate(points)
        for seed in (0, 1)
    ]


# label, kind, final accuracy (None: never trained), density[, seed]
StoredRun = tuple[str, str, float | None, float] | tuple[str, str, float | None, float, int]


def new_run(label: str, kind: str, density: float, seed: int = 0) -> NewRun:
    fmt = label if kind == "baseline" else "hbfp4"
    return NewRun(
        run_hash=f"hash-{label}-{seed}",
        config_id=f"config-{label}",
        label=label,
        kind=kind,
        config={"model": "cnn", "dataset": "mnist-5k", "epochs": 3, "seed": seed},
        seed=seed,
        density=density,
        density_vs_bf16=density / 4.84,
        mac_share={fmt: 1.0},
        schedule=[{"epochs": [0, 2], "formats": {"conv": fmt, "fc": fmt}}],
    )


def filled_store(tmp_path_factory: pytest.TempPathFactory, runs: Sequence[StoredRun]) -> str:
    """The URL of a new SQLite store holding ``runs`` (:func:`fill`)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'results.db'}"
    fill(url, runs)
    return url


def fill(url: str, runs: Sequence[StoredRun], sweep: str = "paper") -> None:
    """Registers ``runs`` in ``sweep`` and records the trained ones as a worker would, in
    order: claims go by run id, so that an untrained run (accuracy None) must come last."""
    store = Store(url)
    sweep_id, _ = store.register(
        sweep,
        f"name: {sweep}\n",
        PROVENANCE,
        [new_run(r[0], r[1], r[3], *r[4:]) for r in runs],
    )
    for accuracy in (r[2] for r in runs):
        if accuracy is None:
            continue
        lease = store.claim(sweep_id, "test-host:1").lease
        store.start_attempt(lease, [], ENVIRONMENT)
        for record in epochs(accuracy, 3, seconds=2.0, rate=500.0):
            store.record_epoch(lease, record)
        store.finish(
            lease,
            "done",
            final_acc=accuracy,
            best_acc=accuracy,
            final_val_acc=accuracy - VALIDATION_GAP,
        )
    store.close()
