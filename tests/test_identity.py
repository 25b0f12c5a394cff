"""Run identities: the hash of a configuration is the one every earlier release gave, and a
field added with a default leaves it unchanged, so upgrading never re-registers stored runs."""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from hbfp_dse.experiments.identity import VERSIONED_FIELDS, config_hash
from hbfp_dse.experiments.sweepfile import expand, load_sweep
from hbfp_dse.training.config import TrainConfig

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))


def hash_before_versioning(config: TrainConfig) -> str:
    """How releases before hash versioning named a run (an independent reference)."""
    data = config.model_dump(mode="json", exclude={"device"})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending = [root]
    while pending:
        model = pending.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            annotations = [field.annotation]
            while annotations:
                annotation = annotations.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    pending.append(annotation)
                annotations.extend(typing.get_args(annotation))
    return found


def test_a_configuration_keeps_the_hash_earlier_releases_gave() -> None:
    config = TrainConfig.model_validate(
        {"model": "resnet20", "dataset": "cifar10", "epochs": 160, "seed": 3}
    )
    assert config_hash(config) == hash_before_versioning(config) == "836e50f83a36c3db"


@pytest.mark.parametrize("sweep", SWEEPS, ids=[path.stem for path in SWEEPS])
def test_every_run_of_the_shipped_sweeps_keeps_its_hash(sweep: Path) -> None:
    spec, _ = load_sweep(sweep)
    for run in expand(spec):
        assert run.run_hash == hash_before_versioning(run.config)


def test_the_device_is_not_part_of_a_runs_identity() -> None:
    cpu = TrainConfig.model_validate({"model": "mlp", "device": "cpu"})
    assert config_hash(cpu) == config_hash(cpu.model_copy(update={"device": "cuda:1"}))


class GrownConfig(TrainConfig):
    """A later release's configuration: one more field, with a default."""

    label_smoothing: float = 0.0


def test_a_field_added_with_its_default_leaves_the_hash_alone() -> None:
    data = {"model": "mlp", "epochs": 3, "seed": 1}
    today = config_hash(TrainConfig.model_validate(data))
    assert config_hash(GrownConfig.model_validate(data)) == today
    # Set to anything else, it is part of what the run is.
    assert config_hash(GrownConfig.model_validate({**data, "label_smoothing": 0.1})) != today


def test_fields_added_since_versioning_have_defaults() -> None:
    # A later field without a default would be in every hash: every stored run re-registered.
    # Never add a new field to VERSIONED_FIELDS: that too changes the hashes.
    found = models(TrainConfig)
    assert set(VERSIONED_FIELDS) <= set(found)
    for name, model in found.items():
        versioned = VERSIONED_FIELDS.get(name, frozenset())
        assert versioned <= set(model.model_fields), f"{name} lost a field its hash counts"
        later = [f for n, f in model.model_fields.items() if n not in versioned]
        assert not [f for f in later if f.is_required()], name
