"""A run's identity: a hash of its canonical configuration, stable across releases.

The canonical form is the configuration as JSON, keys sorted, with the kind of device in place
of ``device`` (``cuda`` runs on any GPU are one run; a CPU run names no kind, as before kinds
counted, so that its identity stayed where it was). Sweeps pin ``auto`` to a kind before they
hash; an ``auto`` left in a configuration (as stored before kinds counted) is hashed as the CPU
run it was then, on every machine. A field added after hashing was versioned
enters it only where it differs from its default, so that adding a field with a default leaves
every stored run's identity, and so its results, where they were; ``analysis`` (statistics
taken on the side) never enters it. ``HASH_VERSION`` names this scheme; a change to it (or to
a default's value, which changes what a stored configuration means) needs a store revision
that rehashes the stored runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from ..training.config import TrainConfig
from ..training.device_names import device_type

HASH_VERSION = 1

# Every model's fields when the scheme was versioned (hash version 1): these always count.
VERSIONED_FIELDS: dict[str, frozenset[str]] = {
    "TrainConfig": frozenset(
        {
            "augment",
            "backward_rounding",
            "batch_size",
            "blocking",
            "channels_last",
            "data_dir",
            "dataset",
            "deterministic",
            "device",
            "download",
            "epochs",
            "forward_rounding",
            "lr_schedule",
            "model",
            "optimizer",
            "quantize_attention",
            "schedule",
            "seed",
            "split_seed",
            "test_size",
            "train_size",
            "weight_storage",
        }
    ),
    "OptimizerConfig": frozenset({"betas", "lr", "momentum", "name", "nesterov", "weight_decay"}),
    "LRScheduleConfig": frozenset({"gamma", "milestones", "name", "warmup_epochs"}),
    "ScheduleConfig": frozenset({"booster", "format", "rules"}),
    "BoosterConfig": frozenset({"high", "last_epochs", "low"}),
    "RuleConfig": frozenset({"epochs", "format", "layers"}),
}


def config_hash(config: TrainConfig) -> str:
    data = canonical(config, config.model_dump(mode="json"))
    del data["device"]
    data.pop("analysis", None)  # watching a run changes none of its numbers
    if config.device != "auto" and device_type(config.device) != "cpu":
        data["device_type"] = device_type(config.device)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` (``model``'s JSON dump) without the later fields that keep their default."""
    counted = _versioned_fields(type(model))
    kept: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if (
            name not in counted
            and not field.is_required()
            and value == field.get_default(call_default_factory=True)
        ):
            continue
        kept[name] = _canonical_value(value, dumped[name])
    return kept


def _canonical_value(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel):
        return canonical(value, dumped)
    if isinstance(value, list | tuple):
        return [_canonical_value(v, d) for v, d in zip(value, dumped, strict=True)]
    if isinstance(value, dict):
        return {k: _canonical_value(value[k], dumped[k]) for k in value}
    return dumped


def _versioned_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of the model's nearest versioned ancestor; none for a model added later."""
    for cls in model.__mro__:
        if cls.__name__ in VERSIONED_FIELDS:
            return VERSIONED_FIELDS[cls.__name__]
    return frozenset()
