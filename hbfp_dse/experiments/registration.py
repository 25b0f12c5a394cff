"""Registering a sweep: its planned runs with their modelled cost, and where they came from.
Everything is checked before the first write, so bad input leaves the store untouched."""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..cost.areas import UnitAreas
from .costing import config_cost
from .runner import DATA_CACHE
from .store import NewRun, Provenance, Store
from .sweepfile import DEFAULT_MAX_RUNS, PlannedRun, SweepSpec, expand


def provenance(source: Path | None) -> Provenance:
    commit, dirty = _git_state(source.parent if source else Path.cwd())
    return Provenance(
        git_commit=commit,
        git_dirty=dirty,
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        hbfp_version=__version__,
        host=socket.gethostname(),
    )


def _git_state(where: Path) -> tuple[str | None, bool | None]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


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
