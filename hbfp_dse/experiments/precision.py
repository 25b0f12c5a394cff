"""Where runs lose precision: the stored operand statistics of their layers, per epoch, as
flat rows (JSON, CSV), per-layer summaries by operand role, and heatmap grids."""

from __future__ import annotations

import math
import statistics as stats
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from ..emulation.quant_spec import Operand
from ..emulation.statistics import STATISTICS, OperandStatistics
from ..errors import UserError
from .store import RunRecord

# The operands by the tensor they quantize: activations, weights, output gradients.
ROLES: dict[str, tuple[str, ...]] = {
    "x": (Operand.X_FORWARD.value, Operand.X_WGRAD.value),
    "w": (Operand.W_FORWARD.value, Operand.W_DGRAD.value),
    "dy": (Operand.DY_DGRAD.value, Operand.DY_WGRAD.value),
}
ALL_OPERANDS = tuple(o.value for o in Operand)
OPERAND_CHOICES = ("all", *ROLES, *ALL_OPERANDS)
HEATMAP_STATISTICS = tuple(s for s in STATISTICS if not s.startswith("exp_"))

Entries = Sequence[tuple[int, OperandStatistics]]  # (epoch, statistics) of one run


@dataclass(frozen=True)
class RunStatistics:
    """A run with its stored statistics."""

    run: RunRecord
    entries: Entries

    @property
    def title(self) -> str:
        return f"{self.run.label} (run {self.run.id}, seed {self.run.seed})"

    @property
    def layers(self) -> list[str]:
        """Layers in module order (as the run's epochs name them), then any others."""
        order = list(self.run.epochs[0].formats) if self.run.epochs else []
        seen = {s.layer for _, s in self.entries}
        return [name for name in order if name in seen] + sorted(seen - set(order))

    @property
    def epochs(self) -> list[int]:
        return sorted({epoch for epoch, _ in self.entries})


def with_statistics(
    runs: Sequence[RunRecord], found: dict[int, list[tuple[int, OperandStatistics]]]
) -> list[RunStatistics]:
    """The runs that have statistics, in the order given."""
    return [RunStatistics(run, found[run.id]) for run in runs if found.get(run.id)]


def operands_of(choice: str) -> tuple[str, ...]:
    """The operand values a ``--operand`` choice stands for."""
    if choice == "all":
        return ALL_OPERANDS
    if choice in ROLES:
        return ROLES[choice]
    if choice in ALL_OPERANDS:
        return (choice,)
    raise UserError(f"--operand {choice!r} is not one of {', '.join(OPERAND_CHOICES)}")


def check_statistic(name: str) -> str:
    if name not in HEATMAP_STATISTICS:
        raise UserError(f"--statistic {name!r} is not one of {', '.join(HEATMAP_STATISTICS)}")
    return name


def flat_rows(found: Sequence[RunStatistics]) -> list[dict[str, object]]:
    """One row per run, epoch, layer and operand."""
    return [
        {
            "sweep": item.run.sweep,
            "run": item.run.id,
            "label": item.run.label,
            "seed": item.run.seed,
            "epoch": epoch,
            **asdict(entry),
        }
        for item in found
        for epoch, entry in item.entries
    ]


def mean_of(
    entries: Iterable[OperandStatistics], statistic: str, operands: Sequence[str]
) -> float | None:
    """The mean of ``statistic`` over the entries of the operands (finite values only: an
    operand quantized without error has an infinite SQNR)."""
    values = [getattr(e, statistic) for e in entries if e.operand in operands]
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return stats.fmean(finite) if finite else None


def layer_summary(item: RunStatistics) -> list[dict[str, object]]:
    """Per layer: its formats and, per operand role, the mean Wasserstein distance, SQNR and
    flushed share over the epochs."""
    rows = []
    for layer in item.layers:
        entries = [e for _, e in item.entries if e.layer == layer]
        row: dict[str, object] = {"layer": layer, "formats": _formats(entries)}
        for statistic in ("wasserstein", "sqnr_db", "flushed"):
            for role, operands in ROLES.items():
                row[f"{statistic}_{role}"] = mean_of(entries, statistic, operands)
        rows.append(row)
    return rows


def _formats(entries: Sequence[OperandStatistics]) -> str:
    return ",".join(dict.fromkeys(e.format for e in entries))


@dataclass(frozen=True)
class Grid:
    """A heatmap of one run: ``values[i][j]`` for layer i in epoch j (None: no data)."""

    title: str
    layers: list[str]
    epochs: list[int]
    values: list[list[float | None]]


def heatmap_grid(item: RunStatistics, statistic: str, operands: Sequence[str]) -> Grid:
    cells: dict[tuple[str, int], list[OperandStatistics]] = {}
    for epoch, entry in item.entries:
        cells.setdefault((entry.layer, epoch), []).append(entry)
    layers, epochs = item.layers, item.epochs
    values = [
        [mean_of(cells.get((layer, epoch), ()), statistic, operands) for epoch in epochs]
        for layer in layers
    ]
    return Grid(item.title, layers, epochs, values)
