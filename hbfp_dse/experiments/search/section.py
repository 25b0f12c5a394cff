"""The ``search:`` section of a sweep file: per layer group the mantissa widths and block sizes
to choose from, the shared axes (boosted epochs, scaling, rounding), the budget, the sampler and
the pruning rule.

Groups: the ``first`` layer, the ``last`` layer and the ``middle`` groups between them (name
globs, or by default one group per top-level module prefix, so ``layer1.*``, ``layer2.*``,
``layer3.*`` for CIFAR ResNets and one group for a small CNN).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ...configfile import StrictModel
from ..space import (
    BlockAxis,
    BoostAxis,
    MantissaAxis,
    RoundingPair,
    Scaling,
    SharedAxes,
    distinct,
)


class Choices(StrictModel):
    """The mantissa widths (sign included) and block sizes one layer group may take."""

    mantissa_bits: MantissaAxis = Field([4, 6, 8])
    block_size: BlockAxis = Field([64])

    @field_validator("mantissa_bits", "block_size")
    @classmethod
    def _distinct(cls, values: list[int], info: ValidationInfo) -> list[int]:
        return distinct(values, str(info.field_name))


class MiddleChoices(Choices):
    """``groups``: ``auto`` (one group per top-level module prefix of the middle layers) or
    layer-name globs, each its own group; later globs win. ``["*"]`` is one group for all."""

    groups: Literal["auto"] | list[str] = "auto"

    @field_validator("groups")
    @classmethod
    def _globs(cls, value: Literal["auto"] | list[str]) -> Literal["auto"] | list[str]:
        if value == "auto":
            return value
        if not value:
            raise ValueError("give at least one glob, or 'auto'")
        for glob in value:
            if glob in ("first", "last") or glob.startswith("type:") or glob.lstrip("-").isdigit():
                raise ValueError(
                    f"middle groups are layer-name globs such as 'layer1.*', not {glob!r}"
                )
        return distinct(value, "groups")


class PruneRule(StrictModel):
    """Stop a trial after epoch ``e`` of ``E`` (1-based) when ``e >= grace_epochs`` and
    ``accuracy + margin + margin_per_epoch * (E - e) < target``: even the margin's optimistic
    gain over the remaining epochs would not reach the target. Accuracies are fractions.
    The final epoch is never stopped: there is nothing left to save."""

    grace_epochs: int = Field(1, ge=0)
    margin: float = Field(0.05, ge=0)
    margin_per_epoch: float = Field(0.02, ge=0)

    def hopeless(self, accuracy: float, done: int, epochs: int, target: float) -> bool:
        remaining = epochs - done
        if done < self.grace_epochs or remaining <= 0:
            return False
        return accuracy + self.margin + self.margin_per_epoch * remaining < target


class SearchSpace(SharedAxes):
    """The choices, the budget and the sampler of a search. Unlike a grid's axes (where a
    repeated value only repeats a run), every choice must be distinct: each is a parameter
    value of the study."""

    first: Choices = Field(default_factory=Choices)
    last: Choices = Field(default_factory=Choices)
    middle: MiddleChoices = Field(default_factory=MiddleChoices)
    boost_last_epochs: BoostAxis = Field([0, 1])

    trials: int = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    seed: int = 0
    population_size: int = Field(10, ge=2, description="NSGA-II generation size")
    prune: PruneRule | None = Field(default_factory=PruneRule)

    @field_validator("boost_last_epochs")
    @classmethod
    def _distinct_boosts(cls, values: list[int]) -> list[int]:
        return distinct(values, "boost_last_epochs")

    @field_validator("scaling")
    @classmethod
    def _distinct_scalings(cls, values: list[Scaling]) -> list[Scaling]:
        return distinct(values, "scaling", key=lambda s: s.sub_block)

    @field_validator("rounding")
    @classmethod
    def _distinct_roundings(cls, values: list[RoundingPair]) -> list[RoundingPair]:
        return distinct(values, "rounding", key=lambda r: r.label)

    @model_validator(mode="after")
    def _sub_blocks_fit(self) -> SearchSpace:
        for group, choices in (("first", self.first), ("last", self.last), ("middle", self.middle)):
            self.check_sub_blocks(choices.block_size, group)
        return self
