"""The configuration of one training run, validated with pydantic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..emulation import Rule, Schedule
from ..formats import parse_format
from .optim import LRScheduleConfig, OptimizerConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _format_name(name: str) -> str:
    return parse_format(name).name


class RuleConfig(_Strict):
    """One schedule rule: ``format`` for the selected ``layers`` in the selected ``epochs``."""

    format: str
    layers: list[str | int] | None = None
    epochs: list[str | int] | None = None

    _canonical = field_validator("format")(_format_name)


class BoosterConfig(_Strict):
    low: str = "hbfp4"
    high: str = "hbfp6"
    last_epochs: int = Field(1, ge=0)

    _canonical = field_validator("low", "high")(_format_name)


class ScheduleConfig(_Strict):
    """Exactly one of: ``format`` (uniform), ``booster``, or ``rules`` (later rules win).

    A bare format name stands for ``{format: NAME}``.
    """

    format: str | None = None
    booster: BoosterConfig | None = None
    rules: list[RuleConfig] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"format": value}
        if isinstance(value, list):
            return {"rules": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleConfig:
        given = [k for k in ("format", "booster", "rules") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'format', 'booster' or 'rules'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.format is not None:
            self.format = _format_name(self.format)
        return self

    def build(self) -> Schedule:
        if self.format is not None:
            return Schedule.uniform(self.format)
        if self.booster is not None:
            b = self.booster
            return Schedule.booster(b.low, b.high, b.last_epochs)
        return Schedule(
            tuple(
                Rule(
                    r.format,
                    None if r.layers is None else tuple(r.layers),
                    None if r.epochs is None else tuple(r.epochs),
                )
                for r in self.rules or ()
            )
        )


class TrainConfig(_Strict):
    """Everything that defines one training run. Defaults: the small CNN on mnist-5k."""

    model: str = "cnn"
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    download: bool = False
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    split_seed: int = 0
    augment: bool | None = None

    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = Field(default_factory=LRScheduleConfig)

    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(format="fp32"))
    blocking: Literal["reduction", "reference"] = "reduction"
    forward_rounding: Literal["nearest", "stochastic"] = "nearest"
    backward_rounding: Literal["nearest", "stochastic"] = "nearest"
    weight_storage: str | None = None
    quantize_attention: bool = False  # also the matmuls inside nn.MultiheadAttention

    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    channels_last: bool = False

    def data_key(self) -> tuple[Any, ...]:
        """The fields that decide which data a run sees (runs sharing it share one load)."""
        return (
            self.dataset,
            self.data_dir,
            self.download,
            self.train_size,
            self.test_size,
            self.split_seed,
        )

    @field_validator("weight_storage")
    @classmethod
    def _storage_format(cls, value: str | None) -> str | None:
        return None if value is None else _format_name(value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not (
            value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit())
        ):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value
