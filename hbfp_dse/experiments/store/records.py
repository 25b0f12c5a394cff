"""What enters and leaves the results store: frozen plain values, no database objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ...training.results import EpochRecord

# ``pruned``: a search trial stopped early because it could no longer reach the target.
RunStatus = Literal["pending", "running", "done", "failed", "diverged", "interrupted", "pruned"]
# A finished run is never claimed again (``--retry-failed`` makes failed runs pending first).
FINISHED_STATUSES: frozenset[RunStatus] = frozenset({"done", "failed", "diverged", "pruned"})


@dataclass(frozen=True)
class Provenance:
    """Where and with what a sweep was registered."""

    git_commit: str | None
    git_dirty: bool | None
    python_version: str
    torch_version: str
    hbfp_version: str
    host: str


@dataclass(frozen=True)
class Environment(Provenance):
    """Where and with what one attempt at a run trained: what decides its numbers beside
    its configuration (results differ with the CPU thread count, TF32 and determinism)."""

    device: str
    cpu_threads: int
    tf32: bool  # TF32 allowed in CUDA matmuls or cuDNN convolutions
    deterministic: bool


@dataclass(frozen=True)
class AttemptRecord(Environment):
    """One attempt at a run, as the store keeps it: the worker, where it started (0, or the
    epoch it resumed from) and its environment."""

    run_id: int
    attempt: int
    worker: str
    start_epoch: int
    started_at: datetime


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a claimed run: every write of the run is conditional on it, so a
    worker whose run was taken over can write nothing more (fencing)."""

    run_id: int
    worker: str
    attempt: int


@dataclass(frozen=True)
class NewRun:
    """A planned run as it is registered: what it trains and what it is modelled to cost."""

    run_hash: str
    config_id: str
    label: str
    kind: str  # baseline, grid or search
    config: dict[str, Any]
    seed: int
    density: float
    density_vs_bf16: float
    mac_share: dict[str, float]
    schedule: list[dict[str, Any]]  # segments of equal formats: [{epochs: [a, b], formats}]
    trial_number: int | None = None
    search_target: float | None = None


@dataclass(frozen=True)
class SweepRecord(Provenance):
    """A stored sweep: its name, the resolved file and where it was registered."""

    id: int
    name: str
    spec_yaml: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """A stored run; ``sweep`` is its sweep's name. ``epochs`` is empty unless the run was
    read with its epochs."""

    id: int
    sweep_id: int
    sweep: str
    run_hash: str
    config_id: str
    label: str
    kind: str
    config: dict[str, Any]
    seed: int
    status: RunStatus
    trial_number: int | None
    search_target: float | None
    device: str | None
    worker: str | None
    attempts: int
    faults: int  # attempts a fault of their machine stopped
    resumed_from_epoch: int | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    final_acc: float | None
    best_acc: float | None
    final_val_acc: float | None  # on the validation split; None without one
    density: float | None
    density_vs_bf16: float | None
    mac_share: dict[str, Any] | None
    schedule: list[Any] | None
    error: str | None
    epochs: tuple[EpochRecord, ...]

    @property
    def selection_acc(self) -> float | None:
        """The final accuracy choices are made on: validation's, test's only for a run that
        held out no validation split."""
        return self.final_acc if self.final_val_acc is None else self.final_val_acc

    @property
    def lease(self) -> Lease:
        """The hold of the worker that claimed this run (read right after its claim)."""
        if self.worker is None:
            raise ValueError(f"run {self.id} was never claimed")
        return Lease(self.id, self.worker, self.attempts)
