"""Sweep files: a base training configuration, baselines and a grid, expanded into runs.

A run's identity is a hash of its resolved training configuration (the device excluded, since
the same run may execute anywhere); runs that differ only in their seed share a ``config_id``
so that reports can average over seeds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..configfile import parse_yaml, read_yaml, validate
from ..errors import UserError
from ..formats import parse_format
from ..training.config import RuleConfig, ScheduleConfig, TrainConfig
from .search import RoundingPair, Scaling, SearchSpace

LayerPlan = Literal["all", "boost_ends", "fp32_ends"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grid(_Strict):
    """The cross product of these axes, each run an HBFP schedule.

    ``layers``: ``all`` quantizes every layer to the grid format; ``boost_ends`` puts the first
    and last layers in ``boost_format``; ``fp32_ends`` leaves them in FP32.
    ``boost_last_epochs``: that many final epochs run everywhere in ``boost_format``.
    """

    mantissa_bits: list[int] = Field(min_length=1)
    block_size: list[int] = Field([64], min_length=1)
    scaling: list[Scaling] = Field(default_factory=lambda: [Scaling()], min_length=1)
    layers: list[LayerPlan] = Field(["all"], min_length=1)
    boost_last_epochs: list[int] = Field([0], min_length=1)
    boost_format: str = "hbfp6"
    rounding: list[RoundingPair] = Field(default_factory=lambda: [RoundingPair()], min_length=1)

    @field_validator("mantissa_bits")
    @classmethod
    def _mantissas(cls, values: list[int]) -> list[int]:
        for m in values:
            if not 2 <= m <= 16:
                raise ValueError(f"mantissa width {m} is outside 2..16")
        return values

    @field_validator("block_size")
    @classmethod
    def _blocks(cls, values: list[int]) -> list[int]:
        for b in values:
            if not 1 <= b <= 4096:
                raise ValueError(f"block size {b} is outside 1..4096")
        return values

    @field_validator("boost_last_epochs")
    @classmethod
    def _boosts(cls, values: list[int]) -> list[int]:
        if any(n < 0 for n in values):
            raise ValueError("boost_last_epochs must be >= 0")
        return values

    @field_validator("boost_format")
    @classmethod
    def _boost_format(cls, value: str) -> str:
        return parse_format(value).name

    @model_validator(mode="after")
    def _formats_exist(self) -> Grid:
        for m, b, scaling in itertools.product(self.mantissa_bits, self.block_size, self.scaling):
            try:
                hbfp_name(m, b, scaling)
            except UserError as err:
                raise ValueError(f"mantissa {m}, block {b}, {scaling}: {err}") from None
        return self


class Baseline(_Strict):
    label: str | None = None
    schedule: ScheduleConfig

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value == "booster":
                return {"label": "booster", "schedule": {"booster": {}}}
            return {"schedule": value}
        return value


class SweepSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    base: TrainConfig = Field(default_factory=TrainConfig)
    baselines: list[Baseline] = Field(default_factory=list)
    grid: Grid | None = None
    seeds: list[int] = Field([0], min_length=1)
    search: SearchSpace | None = None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, values: list[int]) -> list[int]:
        if len(set(values)) != len(values):
            raise ValueError("seeds must be distinct")
        return values


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its resolved configuration and a short label."""

    label: str
    kind: Literal["baseline", "grid", "search"]
    config: TrainConfig

    @property
    def run_hash(self) -> str:
        return config_hash(self.config)

    @property
    def config_id(self) -> str:
        return config_hash(self.config.model_copy(update={"seed": 0}))


def config_hash(config: TrainConfig) -> str:
    data = config.model_dump(mode="json", exclude={"device"})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hbfp_name(mantissa_bits: int, block_size: int, scaling: Scaling) -> str:
    name = f"hbfp{mantissa_bits}_b{block_size}"
    if scaling.levels == 2:
        name += f"_s{scaling.sub_block}"
    return parse_format(name).name


def grid_schedule(
    fmt: str, layers: LayerPlan, boost_last: int, boost_format: str
) -> ScheduleConfig:
    """A grid point's schedule; a uniform one is written as the ``format`` a baseline uses,
    so that the same run reached both ways has one identity."""
    if layers == "all" and not boost_last:
        return ScheduleConfig(format=fmt)
    rules = [RuleConfig(format=fmt)]
    if layers != "all":
        ends = boost_format if layers == "boost_ends" else "fp32"
        rules.append(RuleConfig(format=ends, layers=["first", "last"]))
    if boost_last:
        rules.append(RuleConfig(format=boost_format, epochs=[f"-{boost_last}:"]))
    return ScheduleConfig(rules=rules)


def _grid_runs(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    grid = spec.grid
    if grid is None:
        return []
    out = []
    for m, b, scaling, layers, boost, rounding in itertools.product(
        grid.mantissa_bits,
        grid.block_size,
        grid.scaling,
        grid.layers,
        grid.boost_last_epochs,
        grid.rounding,
    ):
        fmt = hbfp_name(m, b, scaling)
        parts = [fmt]
        if layers != "all":
            parts.append(f"{layers.replace('_', '-')}:{grid.boost_format}")
        if boost:
            parts.append(f"last{boost}:{grid.boost_format}")
        if rounding.label != "nearest":
            parts.append(rounding.label)
        update = {
            "schedule": grid_schedule(fmt, layers, boost, grid.boost_format),
            "forward_rounding": rounding.forward,
            "backward_rounding": rounding.backward,
        }
        out.append((" ".join(parts), update))
    return out


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the sweep: baselines, then the grid, each once per seed; duplicates
    (the same resolved configuration reached twice) are kept once."""
    variants: list[tuple[str, Literal["baseline", "grid"], dict[str, Any]]] = []
    for baseline in spec.baselines:
        label = baseline.label or baseline.schedule.format or "custom"
        variants.append((label, "baseline", {"schedule": baseline.schedule}))
    variants += [(label, "grid", update) for label, update in _grid_runs(spec)]
    runs: dict[str, PlannedRun] = {}
    for label, kind, update in variants:
        for seed in spec.seeds:
            config = spec.base.model_copy(update={**update, "seed": seed})
            # Re-validate so that the stored configuration is exactly what a user could write.
            config = TrainConfig.model_validate(config.model_dump(mode="json"))
            run = PlannedRun(label, kind, config)
            runs.setdefault(run.run_hash, run)
    return list(runs.values())


def load_sweep(path: Path) -> tuple[SweepSpec, str]:
    """The validated sweep file and its text (stored with the sweep)."""
    data = read_yaml(path)
    spec = _validate(data, str(path))
    return spec, path.read_text()


def parse_sweep(text: str, source: str = "<sweep>") -> SweepSpec:
    return _validate(parse_yaml(text, source), source)


def _validate(data: Any, source: str) -> SweepSpec:
    if isinstance(data, dict) and "name" not in data and source.endswith((".yaml", ".yml")):
        data = {**data, "name": Path(source).stem}
    spec = validate(SweepSpec, data, source)
    if not spec.baselines and spec.grid is None and spec.search is None:
        raise UserError(f"{source}: the sweep has no runs: give 'baselines', 'grid' or 'search'")
    if spec.grid is not None and max(spec.grid.boost_last_epochs) > spec.base.epochs:
        raise UserError(
            f"{source}: grid.boost_last_epochs: {max(spec.grid.boost_last_epochs)} is more "
            f"than the {spec.base.epochs} epochs of base"
        )
    return spec
