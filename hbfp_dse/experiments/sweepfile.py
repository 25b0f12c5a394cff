"""Sweep files: a base training configuration, baselines and a grid, expanded into runs.

A run's identity is a hash of its resolved training configuration (of the device only its kind,
pinned when the sweep is planned: :func:`on_device`); runs that differ only in their seed share
a ``config_id`` so that reports can average over seeds. Reading a sweep file imports neither
Optuna nor the models and datasets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..configfile import StrictModel, parse_yaml, read_yaml, validate
from ..emulation import Blocking
from ..errors import UserError
from ..training.config import DEFAULT_VALIDATION, ScheduleConfig, Seed, TrainConfig
from ..training.device_names import device_type
from .identity import config_hash
from .search.section import SearchSpace
from .space import (
    BlockAxis,
    BoostAxis,
    LayerFormat,
    MantissaAxis,
    Point,
    RoundingPair,
    SharedAxes,
    check_boost_epochs,
    hbfp_name,
    point_config,
)

LayerPlan = Literal["all", "boost_ends", "fp32_ends"]
RunKind = Literal["baseline", "grid", "search"]
# Sweeps larger than this are refused unless asked for: a typo in a grid can mean 10^6 runs.
DEFAULT_MAX_RUNS = 10_000


class TooManyRunsError(UserError):
    """A sweep that expands to more runs than the limit allows."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the sweep expands to {count:,} runs, more than the limit of {limit:,}")
        self.count, self.limit = count, limit


class Grid(SharedAxes):
    """The cross product of these axes, each run an HBFP schedule.

    ``layers``: ``all`` quantizes every layer to the grid format; ``boost_ends`` puts the first
    and last layers in ``boost_format``; ``fp32_ends`` leaves them in FP32.
    ``boost_last_epochs``: that many final epochs run everywhere in ``boost_format``.
    """

    mantissa_bits: MantissaAxis
    block_size: BlockAxis = Field([64])
    layers: list[LayerPlan] = Field(["all"], min_length=1)
    boost_last_epochs: BoostAxis = Field([0])

    @model_validator(mode="after")
    def _sub_blocks_fit(self) -> Grid:
        self.check_sub_blocks(self.block_size, "grid")
        return self

    @property
    def size(self) -> int:
        """The number of points, without walking them."""
        axes = (self.mantissa_bits, self.block_size, self.scaling, self.layers)
        return math.prod(map(len, (*axes, self.boost_last_epochs, self.rounding)))

    def points(self) -> Iterator[tuple[str, Point]]:
        """Every point of the grid with its label, in axis order."""
        for m, b, sub_block, layers, boost, rounding in itertools.product(
            self.mantissa_bits,
            self.block_size,
            self.sub_blocks,
            self.layers,
            self.boost_last_epochs,
            self.rounding,
        ):
            fmt = hbfp_name(m, b, sub_block)
            rules = [LayerFormat(fmt)]
            parts = [fmt]
            if layers != "all":
                ends = self.boost_format if layers == "boost_ends" else "fp32"
                rules.append(LayerFormat(ends, ("first", "last")))
                parts.append(f"{layers.replace('_', '-')}:{self.boost_format}")
            rules.append(LayerFormat(self.boost_format, boosted=True))
            if boost:
                parts.append(f"last{boost}:{self.boost_format}")
            if rounding.label != "nearest":
                parts.append(rounding.label)
            yield " ".join(parts), Point(tuple(rules), boost, rounding)


class Baseline(StrictModel):
    """A schedule to compare against; a bare shorthand (``hbfp4``, ``booster``) is one.
    ``rounding`` and ``blocking``, where given, override the base's for this baseline only, so
    that one sweep compares the same schedule under both."""

    label: str | None = None
    schedule: ScheduleConfig
    rounding: RoundingPair | None = None
    blocking: Blocking | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"schedule": value} if isinstance(value, str) else value

    def name_in(self, base: TrainConfig) -> str:
        """The label of this baseline's runs: its own, or its schedule's name followed by the
        rounding and blocking it overrides where they differ from ``base``'s."""
        if self.label:
            return self.label
        parts = [self.schedule.short_name or "custom"]
        rounding = self.rounding
        if rounding is not None and (rounding.forward, rounding.backward) != (
            base.forward_rounding,
            base.backward_rounding,
        ):
            parts.append(rounding.label)
        if self.blocking is not None and self.blocking != base.blocking:
            parts.append(self.blocking)
        return " ".join(parts)

    def config(self, base: TrainConfig) -> TrainConfig:
        """``base`` with this baseline's schedule and overrides."""
        update: dict[str, Any] = {"schedule": self.schedule}
        if self.rounding is not None:
            update["forward_rounding"] = self.rounding.forward
            update["backward_rounding"] = self.rounding.backward
        if self.blocking is not None:
            update["blocking"] = self.blocking
        return base.model_copy(update=update)


class SweepSpec(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    base: TrainConfig = Field(default_factory=lambda: TrainConfig(validation=DEFAULT_VALIDATION))
    baselines: list[Baseline] = Field(default_factory=list)
    grid: Grid | None = None
    seeds: list[Seed] = Field([0], min_length=1)
    search: SearchSpace | None = None

    @property
    def run_count(self) -> int:
        """The runs the sweep expands to at most (equal ones are kept once), without
        expanding it."""
        grid = self.grid.size if self.grid is not None else 0
        return (len(self.baselines) + grid) * len(self.seeds)

    @field_validator("base", mode="before")
    @classmethod
    def _validation_split(cls, value: Any) -> Any:
        """A sweep chooses on a validation split unless its file sets ``validation``."""
        if isinstance(value, dict) and "validation" not in value:
            return {**value, "validation": DEFAULT_VALIDATION}
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, values: list[int]) -> list[int]:
        if len(set(values)) != len(values):
            raise ValueError("seeds must be distinct")
        return values


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep as the sweep file defines it: its label, kind and resolved training
    configuration (the store registers it as a :class:`~.store.NewRun`, its cost added)."""

    label: str
    kind: RunKind
    config: TrainConfig

    @property
    def run_hash(self) -> str:
        return config_hash(self.config)

    @property
    def config_id(self) -> str:
        return config_hash(self.config.model_copy(update={"seed": 0}))


def _variants(spec: SweepSpec) -> Iterator[tuple[str, RunKind, TrainConfig]]:
    for baseline in spec.baselines:
        yield baseline.name_in(spec.base), "baseline", baseline.config(spec.base)
    if spec.grid is not None:
        for label, point in spec.grid.points():
            yield label, "grid", point_config(point, spec.base)


def expand(spec: SweepSpec, max_runs: int = DEFAULT_MAX_RUNS) -> list[PlannedRun]:
    """Every run of the sweep: baselines, then the grid, each once per seed; duplicates
    (the same resolved configuration reached twice) are kept once. A sweep of more than
    ``max_runs`` runs is refused before it is expanded."""
    if spec.run_count > max_runs:
        raise TooManyRunsError(spec.run_count, max_runs)
    runs: dict[str, PlannedRun] = {}
    for label, kind, variant in _variants(spec):
        for seed in spec.seeds:
            config = variant.model_copy(update={"seed": seed})
            # Re-validate so that the stored configuration is exactly what a user could write.
            config = TrainConfig.model_validate(config.model_dump(mode="json"))
            run = PlannedRun(label, kind, config)
            runs.setdefault(run.run_hash, run)
    return list(runs.values())


def check_labels(spec: SweepSpec) -> None:
    """Refuses two different configurations under one label: reports and comparisons find a
    configuration by its label."""
    labelled: dict[str, str] = {}  # label -> config_id
    for label, kind, variant in _variants(spec):
        config_id = PlannedRun(label, kind, variant).config_id
        if labelled.setdefault(label, config_id) != config_id:
            raise UserError(
                f"two different configurations are both labelled {label!r}: "
                "give one of them a 'label'"
            )


def on_device(spec: SweepSpec, device: str | None) -> SweepSpec:
    """The sweep with its runs' device pinned: ``device`` (the command line's) or the file's,
    ``auto`` becoming the kind of device this machine has, so that every run registered has
    one kind of device in its identity and a worker elsewhere trains it on that kind."""
    name = device or spec.base.device
    pinned = device_type(name) if name == "auto" else name
    return spec.model_copy(update={"base": spec.base.model_copy(update={"device": pinned})})


def kept_without_validation(
    spec: SweepSpec, text: str, stored_configs: Sequence[Mapping[str, Any]]
) -> SweepSpec | None:
    """The sweep without a validation split where it was registered before validation splits
    existed (``stored_configs``, its stored runs' configurations, all lack the field) and its
    file does not set one: a sweep resumes as it started rather than training every run again.
    Runs stored since hold ``validation: 0.0`` explicitly, so the values decide, not the key.
    None where the sweep stands as written."""
    data = parse_yaml(text, "<sweep>")
    base = data.get("base") if isinstance(data, dict) else None
    given = isinstance(base, dict) and "validation" in base
    held_out = any(c.get("validation", 0.0) for c in stored_configs)
    if given or not stored_configs or held_out:
        return None
    return spec.model_copy(update={"base": spec.base.model_copy(update={"validation": 0.0})})


def load_sweep(path: Path) -> tuple[SweepSpec, str]:
    """The validated sweep file and its text (stored with the sweep)."""
    data = read_yaml(path)
    spec = _validate(data, str(path))
    return spec, path.read_text()


def parse_sweep(text: str, source: str = "<sweep>") -> SweepSpec:
    return _validate(parse_yaml(text, source), source)


def _validate(data: Any, source: str) -> SweepSpec:
    if data is None:  # an empty file: what it lacks is named below
        data = {}
    if isinstance(data, dict) and "name" not in data and source.endswith((".yaml", ".yml")):
        data = {**data, "name": Path(source).stem}
    spec = validate(SweepSpec, data, source)
    if not spec.baselines and spec.grid is None and spec.search is None:
        raise UserError(f"{source}: the sweep has no runs: give 'baselines', 'grid' or 'search'")
    try:
        for where, axes in (("grid", spec.grid), ("search", spec.search)):
            if axes is not None:
                check_boost_epochs(axes.boost_last_epochs, spec.base.epochs, where)
        if spec.run_count <= DEFAULT_MAX_RUNS:  # a larger sweep is refused when expanded
            check_labels(spec)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    return spec
