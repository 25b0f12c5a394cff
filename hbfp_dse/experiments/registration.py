"""Registering a sweep: its planned runs with their modelled cost, and where they came from.
Everything is checked before the first write, so bad input leaves the store untouched."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cost.areas import UnitAreas
from .costing import config_cost
from .provenance import provenance
from .runner import DATA_CACHE
from .store import NewRun, Store
from .sweepfile import DEFAULT_MAX_RUNS, PlannedRun, SweepSpec, expand


def compress_schedule(epochs: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """Per-epoch formats as segments of equal epochs: ``[{epochs: [a, b], formats}]``,
    epochs a..b inclusive, 0-based."""
    segments: list[dict[str, Any]] = []
    for epoch, formats in enumerate(epochs):
        if segments and segments[-1]["formats"] == formats:
            segments[-1]["epochs"][1] = epoch
        else:
            segments.append({"epochs": [epoch, epoch], "formats": dict(formats)})
    return segments


def new_run(planned: PlannedRun, areas: UnitAreas | None = None) -> NewRun:
    """A planned run as the store registers it, its modelled cost included."""
    cost = config_cost(planned.config, areas)
    return NewRun(
        run_hash=planned.run_hash,
        config_id=planned.config_id,
        label=planned.label,
        kind=planned.kind,
        config=planned.config.model_dump(mode="json"),
        seed=planned.config.seed,
        density=cost.cost.density_vs_fp32,
        density_vs_bf16=cost.cost.density_vs_bf16,
        mac_share={str(k): v for k, v in cost.cost.mac_share.items()},
        schedule=compress_schedule(cost.schedule),
    )


def plan_sweep(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS) -> list[NewRun]:
    """Every run of the sweep as the store would register it (what a dry run shows)."""
    return [new_run(run) for run in expand(spec, max_runs)]


def check_data(spec: SweepSpec) -> None:
    """Load the sweep's dataset, so that a missing one stops the sweep before anything is
    written. Every run reads the data of ``base``: baselines and grids vary the schedule."""
    DATA_CACHE.get(spec.base)


def register_sweep(
    store: Store,
    spec: SweepSpec,
    spec_yaml: str,
    source: Path | None,
    runs: Sequence[NewRun],
    retry_failed: bool,
) -> tuple[int, list[int]]:
    """Create or update the sweep and add its planned runs (:func:`plan_sweep`)."""
    return store.register(spec.name, spec_yaml, provenance(source), runs, retry_failed=retry_failed)
