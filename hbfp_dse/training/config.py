"""The configuration of one training run, validated with pydantic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..configfile import StrictModel, read_yaml, validate
from ..emulation import Blocking, Quantization, Rule, Schedule
from ..emulation.statistics import SAMPLES
from ..formats import Rounding, parse_format
from .device_names import DeviceError, check_device_name

DEFAULT_IMAGE_SIZE = 224  # an image folder's crops
DEFAULT_LOADER_WORKERS = 4
DEFAULT_CONTEXT_LENGTH = 64  # tokens a text sample holds
FOLDER_DATASET = "imagefolder"  # train/ and val/ folders of images
TEXT_DATASETS = ("pydoc-topics", "text")
# A sweep's validation share unless its file gives one. It is in every such run's identity:
# changing it would train every stored sweep's runs again.
DEFAULT_VALIDATION = 0.1
TORCHVISION_PREFIX = "tv:"  # model: tv:resnet18, a torchvision model
# Seeds are stored in 32-bit integer columns (PostgreSQL's INTEGER).
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


def _format_name(name: str) -> str:
    return parse_format(name).name


def is_import_path(name: str) -> bool:
    """A model or dataset of the user's own, ``package.module:function`` (``custom.py``)."""
    return ":" in name and not name.startswith(TORCHVISION_PREFIX)


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class LRScheduleConfig(StrictModel):
    """Linear warm-up, then ``constant``, ``step`` (x ``gamma`` at each milestone epoch),
    ``cosine`` (to zero at the last epoch) or ``onecycle`` (up over ``warmup_epochs`` or
    30% of training, then cosine down to zero)."""

    name: Literal["constant", "step", "cosine", "onecycle"] = "onecycle"
    warmup_epochs: float = Field(0.0, ge=0)
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _milestones_sorted(self) -> LRScheduleConfig:
        if self.milestones != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        return self


class RuleConfig(StrictModel):
    """One schedule rule: ``format`` for the selected ``layers`` in the selected ``epochs``."""

    format: str
    layers: list[str | int] | None = None
    epochs: list[str | int] | None = None

    _canonical = field_validator("format")(_format_name)


class BoosterConfig(StrictModel):
    low: str = "hbfp4"
    high: str = "hbfp6"
    last_epochs: int = Field(1, ge=0)

    _canonical = field_validator("low", "high")(_format_name)


def schedule_shorthand(value: Any) -> Any:
    """The one shorthand grammar of schedules, in YAML and on the command line: a format name
    (``hbfp4``) is uniform, ``booster`` or ``booster:LOW:HIGH:LAST_EPOCHS`` (trailing parts
    optional) is Accuracy Booster, a list is the rules; anything else is the full mapping."""
    if isinstance(value, list):
        return {"rules": value}
    if not isinstance(value, str):
        return value
    name, *parts = value.strip().split(":")
    if name.lower() != "booster":
        return {"format": value}
    if len(parts) > 3:
        raise ValueError(f"{value!r}: booster takes at most booster:LOW:HIGH:LAST_EPOCHS")
    return {"booster": dict(zip(("low", "high", "last_epochs"), parts, strict=False))}


class ScheduleConfig(StrictModel):
    """Exactly one of: ``format`` (uniform), ``booster``, or ``rules`` (later rules win);
    or a shorthand (:func:`schedule_shorthand`)."""

    format: str | None = None
    booster: BoosterConfig | None = None
    rules: list[RuleConfig] | None = None

    _shorthand = model_validator(mode="before")(staticmethod(schedule_shorthand))

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

    @property
    def short_name(self) -> str | None:
        """The shorthand that writes this schedule, where there is one."""
        if self.format is not None:
            return self.format
        if self.booster is None:
            return None
        b = self.booster
        default = BoosterConfig()
        return "booster" if b == default else f"booster:{b.low}:{b.high}:{b.last_epochs}"

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


class AnalysisConfig(StrictModel):
    """Quantization-error statistics of every quantized operand, on every ``every``-th
    training step (``emulation.statistics``); the distance on ``samples`` elements each."""

    every: int = Field(50, ge=1)
    samples: int = Field(SAMPLES, ge=16, le=1 << 20)


class TrainConfig(StrictModel):
    """Everything that defines one training run. Defaults: the small CNN on mnist-5k."""

    model: str = "cnn"
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    download: bool = False
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    split_seed: Seed = 0
    # The share of the training set held out as a validation set (seeded by split_seed), on
    # which sweeps, searches and `best` choose; the test set is only reported. Sweeps default
    # to DEFAULT_VALIDATION; 0 holds out nothing (as runs stored before it existed).
    validation: float = Field(0.0, ge=0.0, lt=1.0)
    augment: bool | None = None
    image_size: int | None = Field(None, ge=8, le=4096)  # imagefolder's crops (default 224)
    loader_workers: int = Field(DEFAULT_LOADER_WORKERS, ge=0, le=64)  # imagefolder's decoders
    context_length: int | None = Field(None, ge=2, le=4096)  # text datasets' (default 64)

    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = Field(default_factory=LRScheduleConfig)

    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(format="fp32"))
    blocking: Blocking = "reduction"
    forward_rounding: Rounding = "nearest"
    backward_rounding: Rounding = "nearest"
    weight_storage: str | None = None
    quantize_attention: bool = False  # also the matmuls inside nn.MultiheadAttention

    # Watching changes no number of the run, so it is no part of the run's identity.
    analysis: AnalysisConfig | None = None

    seed: Seed = 0
    device: str = "auto"
    deterministic: bool = False
    channels_last: bool = False

    def quantization(self) -> Quantization:
        """How every quantized layer blocks and rounds, whatever its format."""
        return Quantization(self.blocking, self.forward_rounding, self.backward_rounding)

    def data_key(self) -> tuple[Any, ...]:
        """The fields that decide which data a run sees (runs sharing it share one load)."""
        return (
            self.dataset,
            self.data_dir,
            self.download,
            self.train_size,
            self.test_size,
            self.split_seed,
            self.validation,
            self.image_size,
            self.loader_workers,
            self.context_length,
        )

    @model_validator(mode="after")
    def _folder_settings(self) -> TrainConfig:
        """Image folders' and text's settings: refused elsewhere, and a default given is the
        default, so that a setting that changes nothing never changes a run's identity."""
        folders = self.dataset == FOLDER_DATASET
        if self.image_size is not None and not folders:
            raise ValueError("image_size applies to dataset imagefolder only")
        if self.loader_workers != DEFAULT_LOADER_WORKERS and not folders:
            raise ValueError("loader_workers applies to dataset imagefolder only")
        if self.image_size == DEFAULT_IMAGE_SIZE:
            self.image_size = None
        text = self.dataset in TEXT_DATASETS
        if self.context_length is not None and not text:
            raise ValueError("context_length applies to the text datasets only")
        if self.context_length == DEFAULT_CONTEXT_LENGTH:
            self.context_length = None
        if text and self.validation:  # any share selects the corpus's validation stretch
            self.validation = DEFAULT_VALIDATION
        return self

    @field_validator("weight_storage")
    @classmethod
    def _storage_format(cls, value: str | None) -> str | None:
        return None if value is None else _format_name(value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        try:
            return check_device_name(value)
        except DeviceError as err:
            raise ValueError(err.reason) from None


def load_train_config(path: Path | None, overrides: Mapping[str, Any]) -> TrainConfig:
    """A training YAML file (or none) with values given elsewhere (the command line) on top;
    ``None`` values are not given. ``lr`` is the optimizer's peak learning rate."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    given = {key: value for key, value in overrides.items() if value is not None}
    if isinstance(data, dict):
        optimizer = data.get("optimizer") or {}
        if "lr" in given and isinstance(optimizer, dict):  # else validation names the key
            data = {**data, "optimizer": {**optimizer, "lr": given.pop("lr")}}
        data = {**data, **given}
    return validate(TrainConfig, data, source)
