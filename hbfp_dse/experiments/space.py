"""The design space's vocabulary, shared by sweep grids and search spaces.

An axis lists the values one setting may take: mantissa width (sign included), block size,
scaling levels, rounding and boosted final epochs. Their limits come from the format itself
(:class:`~hbfp_dse.formats.HBFPFormat`), so a grid, a search and a format name agree. A grid
walks every combination, a search samples them; both describe a combination as a
:class:`Point` and turn it into a training configuration with :func:`point_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..configfile import StrictModel
from ..emulation import final_epochs
from ..errors import UserError
from ..formats import MANTISSA_BITS, FormatError, HBFPFormat, Rounding, parse_format
from ..training.config import RuleConfig, ScheduleConfig, TrainConfig

T = TypeVar("T")


def distinct(values: list[T], what: str, key: Callable[[T], Hashable] = lambda v: v) -> list[T]:
    keys = [key(v) for v in values]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what} choices must be distinct, got {keys}")
    return values


def _mantissas(values: list[int]) -> list[int]:
    low, high = MANTISSA_BITS
    bad = [m for m in values if not low <= m <= high]
    if bad:
        # The first value for the eye, every bad one for a long list.
        raise ValueError(
            f"mantissa width {bad[0]} is outside {low}..{high} (mantissa widths must be in "
            f"{low}..{high}, got {bad})"
        )
    return values


def _blocks(values: list[int]) -> list[int]:
    for b in values:
        try:
            HBFPFormat(4, block_size=b)
        except FormatError as err:
            raise ValueError(f"block size {b}: {err}") from None
    return values


def _boosts(values: list[int]) -> list[int]:
    if any(n < 0 for n in values):
        raise ValueError(f"boost_last_epochs must be >= 0, got {values}")
    return values


MantissaAxis = Annotated[list[int], Field(min_length=1), AfterValidator(_mantissas)]
BlockAxis = Annotated[list[int], Field(min_length=1), AfterValidator(_blocks)]
BoostAxis = Annotated[list[int], Field(min_length=1), AfterValidator(_boosts)]


class Scaling(StrictModel):
    """One level: one shared exponent per block. Two: a micro-exponent per ``sub_block``."""

    levels: Literal[1, 2] = 1
    sub_block: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _sub_block_iff_two_levels(self) -> Scaling:
        if (self.levels == 2) != (self.sub_block is not None):
            raise ValueError("give 'sub_block' exactly when 'levels' is 2")
        return self


class RoundingPair(StrictModel):
    """The rounding of X and W (``forward``) and of the gradients dY (``backward``); a single
    word sets both."""

    forward: Rounding = "nearest"
    backward: Rounding = "nearest"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"forward": value, "backward": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.forward if self.forward == self.backward else f"{self.forward}/{self.backward}"


def hbfp_name(mantissa_bits: int, block_size: int, sub_block: int | None) -> str:
    """The canonical name of an HBFP format; ``sub_block`` None is one scaling level."""
    name = f"hbfp{mantissa_bits}_b{block_size}" + (f"_s{sub_block}" if sub_block else "")
    return parse_format(name).name


class SharedAxes(StrictModel):
    """The axes a grid and a search space both have."""

    boost_format: str = "hbfp6"
    scaling: list[Scaling] = Field(default_factory=lambda: [Scaling()], min_length=1)
    rounding: list[RoundingPair] = Field(default_factory=lambda: [RoundingPair()], min_length=1)

    @field_validator("boost_format")
    @classmethod
    def _boost_format(cls, value: str) -> str:
        return parse_format(value).name

    @property
    def sub_blocks(self) -> list[int | None]:
        return [s.sub_block for s in self.scaling]

    def check_sub_blocks(self, blocks: Sequence[int], where: str) -> None:
        """Every sub-block must fit every block size it may meet."""
        for b in blocks:
            for s in self.sub_blocks:
                if s is not None and (s >= b or b % s):
                    raise ValueError(
                        f"scaling sub_block {s} must be smaller than and divide every "
                        f"block_size of {where}, and {where} has block_size {b}"
                    )

    def rounding_named(self, label: str) -> RoundingPair:
        return next(r for r in self.rounding if r.label == label)


def check_boost_epochs(boost_last_epochs: Sequence[int], epochs: int, where: str) -> None:
    """Boosted final epochs cannot outnumber the epochs of the run."""
    if max(boost_last_epochs) > epochs:
        raise UserError(
            f"{where}.boost_last_epochs: {max(boost_last_epochs)} is more than the "
            f"{epochs} epochs of base"
        )


@dataclass(frozen=True)
class LayerFormat:
    """One rule of a point: ``format`` for ``layers`` (schedule layer selectors, None: every
    quantized layer), from the first epoch on or, when ``boosted``, in the boosted epochs."""

    format: str
    layers: tuple[str, ...] | None = None
    boosted: bool = False


@dataclass(frozen=True)
class Point:
    """One point of the design space: rules in order (later ones win), the number of boosted
    final epochs and the rounding."""

    rules: tuple[LayerFormat, ...]
    boost_last_epochs: int = 0
    rounding: RoundingPair = field(default_factory=RoundingPair)

    def schedule(self) -> ScheduleConfig:
        """A uniform point is written as a ``format``, as a baseline writes it, so that the same
        run reached both ways has one identity."""
        rules = [r for r in self.rules if not r.boosted or self.boost_last_epochs]
        if len(rules) == 1 and rules[0].layers is None and not rules[0].boosted:
            return ScheduleConfig(format=rules[0].format)
        return ScheduleConfig(rules=[self._rule(r) for r in rules])

    def _rule(self, rule: LayerFormat) -> RuleConfig:
        return RuleConfig(
            format=rule.format,
            layers=None if rule.layers is None else list(rule.layers),
            epochs=[final_epochs(self.boost_last_epochs)] if rule.boosted else None,
        )

    def describe(self) -> str:
        """``layer1.*=hbfp4_b64 first=hbfp6 last1:hbfp6``: the rules, short."""
        parts: list[str] = []
        for rule in self.rules:
            if not rule.boosted:
                parts.append(f"{','.join(rule.layers or ['all'])}={rule.format}")
            elif self.boost_last_epochs:
                part = f"last{self.boost_last_epochs}:{rule.format}"
                if part not in parts:
                    parts.append(part)
        return " ".join(parts)


def point_config(point: Point, base: TrainConfig) -> TrainConfig:
    """The training configuration of a point: ``base`` with its schedule and rounding."""
    return base.model_copy(
        update={
            "schedule": point.schedule(),
            "forward_rounding": point.rounding.forward,
            "backward_rounding": point.rounding.backward,
        }
    )
